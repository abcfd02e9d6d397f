//! The read-only metadata operations (DescribeLogGroups,
//! DescribeLogStreams, ListTags*), answered from the published catalog,
//! and the resolution of the ways requests name a group.

use std::collections::HashSet;

use crate::catalog::{Catalog, Group, StreamInfo};
use crate::codec::{self, sequence_token};
use crate::error::LogsError;
use crate::types::{
    DescribeLogGroupsOutput, DescribeLogGroupsRequest, DescribeLogStreamsOutput,
    DescribeLogStreamsRequest, LogGroup, LogGroupClass, LogStream, OrderBy, Scope, Tags,
};
use crate::validate;

const DEFAULT_DESCRIBE_LIMIT: i32 = 50;

/// The group named by a request's `logGroupName` or `logGroupIdentifier`
/// (a name or an ARN, exactly one of the two).
pub fn group_ref(
    scope: &Scope,
    name: Option<&str>,
    identifier: Option<&str>,
) -> Result<String, LogsError> {
    match (name, identifier) {
        (Some(_), Some(_)) => Err(LogsError::invalid(
            "LogGroup name and LogGroup identifier are mutually exclusive parameters.",
        )),
        (None, None) => Err(LogsError::invalid(
            "Either logGroupName or logGroupIdentifier must be specified.",
        )),
        (Some(name), None) => {
            validate::log_group_name("logGroupName", name)?;
            Ok(name.to_owned())
        }
        (None, Some(identifier)) => group_identifier(scope, "logGroupIdentifier", identifier),
    }
}

/// A group name, or a group ARN (with or without the trailing `:*`) of
/// this scope. An ARN of another account or region names no group here.
pub fn group_identifier(scope: &Scope, field: &str, identifier: &str) -> Result<String, LogsError> {
    if !identifier.starts_with("arn:") {
        validate::log_group_name(field, identifier)?;
        return Ok(identifier.to_owned());
    }
    let name = parse_group_arn(identifier).ok_or_else(|| {
        LogsError::invalid(format!(
            "{field} '{identifier}' is not a log group ARN (arn:aws:logs:REGION:ACCOUNT:log-group:NAME)"
        ))
    })?;
    let (region, account, name) = name;
    if region != scope.region || account != scope.account_id {
        return Err(LogsError::group_not_found());
    }
    validate::log_group_name(field, &name)?;
    Ok(name)
}

/// `arn:PARTITION:logs:REGION:ACCOUNT:log-group:NAME[:*]` → (region,
/// account, name).
fn parse_group_arn(arn: &str) -> Option<(String, String, String)> {
    let mut parts = arn.splitn(6, ':');
    let (_arn, _partition, service, region, account, rest) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if service != "logs" {
        return None;
    }
    let name = rest.strip_prefix("log-group:")?;
    let name = name.strip_suffix(":*").unwrap_or(name);
    if name.is_empty() || name.contains(':') {
        return None;
    }
    Some((region.to_owned(), account.to_owned(), name.to_owned()))
}

/// The tagging APIs' `resourceArn`: a log group ARN (destinations are not
/// built).
pub fn tagged_group(scope: &Scope, resource_arn: &str) -> Result<String, LogsError> {
    if !resource_arn.starts_with("arn:") {
        return Err(LogsError::invalid(format!(
            "resourceArn '{resource_arn}' is not an ARN; log groups are tagged by arn:aws:logs:REGION:ACCOUNT:log-group:NAME"
        )));
    }
    group_identifier(scope, "resourceArn", resource_arn)
}

fn log_group(scope: &Scope, group: &Group, minimal: bool) -> LogGroup {
    let arn = scope.log_group_arn(&group.info.name);
    let info = &group.info;
    LogGroup {
        log_group_name: info.name.clone(),
        creation_time: info.creation_time,
        retention_in_days: if minimal { None } else { info.retention_days },
        metric_filter_count: (!minimal).then_some(0),
        arn: format!("{arn}:*"),
        stored_bytes: (!minimal).then(|| i64::try_from(group.stored_bytes()).unwrap_or(i64::MAX)),
        kms_key_id: if minimal {
            None
        } else {
            info.kms_key_id.clone()
        },
        log_group_class: (!minimal).then_some(info.class),
        log_group_arn: (!minimal).then_some(arn),
        deletion_protection_enabled: (!minimal).then_some(info.deletion_protection),
    }
}

fn describe_limit(limit: Option<i32>) -> Result<usize, LogsError> {
    let limit = limit.unwrap_or(DEFAULT_DESCRIBE_LIMIT);
    validate::limit("limit", limit, 1, 50)?;
    Ok(limit as usize)
}

fn bad_token() -> LogsError {
    LogsError::invalid("The specified nextToken is invalid.")
}

/// DescribeLogGroups: ASCII order by name, with prefix or pattern.
pub fn log_groups(
    catalog: &Catalog,
    scope: &Scope,
    req: &DescribeLogGroupsRequest,
) -> Result<DescribeLogGroupsOutput, LogsError> {
    let limit = describe_limit(req.limit)?;
    if let Some(prefix) = &req.log_group_name_prefix {
        validate::log_group_name("logGroupNamePrefix", prefix)?;
    }
    if let Some(pattern) = &req.log_group_name_pattern {
        validate::log_group_name_pattern("logGroupNamePattern", pattern)?;
    }
    if req.log_group_name_prefix.is_some() && req.log_group_name_pattern.is_some() {
        return Err(LogsError::invalid(
            "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters.",
        ));
    }
    let identifiers = match &req.log_group_identifiers {
        Some(ids) => {
            if req.log_group_name_prefix.is_some() || req.log_group_name_pattern.is_some() {
                return Err(LogsError::invalid(
                    "logGroupIdentifiers cannot be combined with logGroupNamePrefix or logGroupNamePattern.",
                ));
            }
            if ids.is_empty() || ids.len() > 50 {
                return Err(LogsError::constraint(
                    "logGroupIdentifiers",
                    &format!("{} identifiers", ids.len()),
                    "Member must have length between 1 and 50",
                ));
            }
            let mut names = HashSet::new();
            for id in ids {
                match group_identifier(scope, "logGroupIdentifiers", id) {
                    Ok(name) => {
                        names.insert(name);
                    }
                    Err(LogsError::ResourceNotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Some(names)
        }
        None => None,
    };
    let after = match &req.next_token {
        Some(token) => Some(codec::parse_name_token('g', token).ok_or_else(bad_token)?),
        None => None,
    };
    let prefix = req.log_group_name_prefix.as_deref().unwrap_or("");
    let minimal = req.log_group_name_pattern.is_some();
    let mut out = DescribeLogGroupsOutput::default();
    let Some(names) = catalog.names.get(scope) else {
        return Ok(out);
    };
    let start = match &after {
        Some(after) if after.as_str() >= prefix => after.clone(),
        _ => prefix.to_owned(),
    };
    let mut more = false;
    for (name, id) in names.range(start..) {
        if after.as_deref() == Some(name.as_str()) {
            continue;
        }
        if !name.starts_with(prefix) {
            break;
        }
        if let Some(pattern) = &req.log_group_name_pattern {
            if !name.contains(pattern.as_str()) {
                continue;
            }
        }
        if let Some(names) = &identifiers {
            if !names.contains(name) {
                continue;
            }
        }
        let group = &catalog.groups[id];
        if let Some(class) = req.log_group_class {
            let wanted = match class {
                LogGroupClass::InfrequentAccess | LogGroupClass::Essentials => matches!(
                    group.info.class,
                    LogGroupClass::InfrequentAccess | LogGroupClass::Essentials
                ),
                other => group.info.class == other,
            };
            if !wanted {
                continue;
            }
        }
        if out.log_groups.len() == limit {
            more = true;
            break;
        }
        out.log_groups.push(log_group(scope, group, minimal));
    }
    if more {
        if let Some(last) = out.log_groups.last() {
            out.next_token = Some(codec::name_token('g', &last.log_group_name));
        }
    }
    Ok(out)
}

fn log_stream(scope: &Scope, group: &str, stream: &StreamInfo) -> LogStream {
    LogStream {
        log_stream_name: stream.name.clone(),
        creation_time: stream.creation_time,
        first_event_timestamp: stream.first_ts,
        last_event_timestamp: stream.last_ts,
        last_ingestion_time: stream.last_ingestion,
        upload_sequence_token: sequence_token(stream.id, stream.batches),
        arn: scope.log_stream_arn(group, &stream.name),
        stored_bytes: 0,
    }
}

/// DescribeLogStreams: by name (with a prefix) or by last event time.
pub fn log_streams(
    catalog: &Catalog,
    scope: &Scope,
    req: &DescribeLogStreamsRequest,
) -> Result<DescribeLogStreamsOutput, LogsError> {
    let group_name = group_ref(
        scope,
        req.log_group_name.as_deref(),
        req.log_group_identifier.as_deref(),
    )?;
    let limit = describe_limit(req.limit)?;
    if let Some(prefix) = &req.log_stream_name_prefix {
        validate::log_stream_name("logStreamNamePrefix", prefix)?;
    }
    let order = req.order_by.unwrap_or_default();
    if order == OrderBy::LastEventTime && req.log_stream_name_prefix.is_some() {
        return Err(LogsError::invalid(
            "Cannot order by LastEventTime with a logStreamNamePrefix.",
        ));
    }
    let descending = req.descending.unwrap_or(false);
    let group = catalog
        .group(scope, &group_name)
        .ok_or_else(LogsError::group_not_found)?;
    let mut out = DescribeLogStreamsOutput::default();
    match order {
        OrderBy::LogStreamName => {
            let after = match &req.next_token {
                Some(t) => Some(codec::parse_name_token('n', t).ok_or_else(bad_token)?),
                None => None,
            };
            let prefix = req.log_stream_name_prefix.as_deref().unwrap_or("");
            let in_prefix = |name: &&String| name.starts_with(prefix);
            let items: Box<dyn Iterator<Item = (&String, &u64)>> = match (&after, descending) {
                (None, false) => Box::new(group.streams.range(prefix.to_owned()..)),
                (Some(a), false) => Box::new(group.streams.range::<String, _>((
                    std::ops::Bound::Excluded(a.clone()),
                    std::ops::Bound::Unbounded,
                ))),
                (None, true) => Box::new(group.streams.iter().rev()),
                (Some(a), true) => Box::new(group.streams.range::<String, _>(..a.clone()).rev()),
            };
            let mut more = false;
            for (name, id) in items {
                if !in_prefix(&name) {
                    if !descending && name.as_str() > prefix {
                        break;
                    }
                    continue;
                }
                if out.log_streams.len() == limit {
                    more = true;
                    break;
                }
                out.log_streams
                    .push(log_stream(scope, &group_name, &group.stream_data[id]));
            }
            if more {
                if let Some(last) = out.log_streams.last() {
                    out.next_token = Some(codec::name_token('n', &last.log_stream_name));
                }
            }
        }
        OrderBy::LastEventTime => {
            let after = match &req.next_token {
                Some(t) => Some(codec::parse_time_name_token(t).ok_or_else(bad_token)?),
                None => None,
            };
            let mut streams: Vec<(i64, &str, &StreamInfo)> = group
                .stream_data
                .values()
                .map(|s| (s.last_ts.unwrap_or(0), s.name.as_str(), s))
                .collect();
            streams.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            if descending {
                streams.reverse();
            }
            let mut more = false;
            for (ts, name, stream) in streams {
                if let Some((ats, aname)) = &after {
                    let past = if descending {
                        (ts, name) < (*ats, aname.as_str())
                    } else {
                        (ts, name) > (*ats, aname.as_str())
                    };
                    if !past {
                        continue;
                    }
                }
                if out.log_streams.len() == limit {
                    more = true;
                    break;
                }
                out.log_streams.push(log_stream(scope, &group_name, stream));
            }
            if more {
                if let Some(last) = out.log_streams.last() {
                    out.next_token = Some(codec::time_name_token(
                        last.last_event_timestamp.unwrap_or(0),
                        &last.log_stream_name,
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// A group's tags.
pub fn tags(catalog: &Catalog, scope: &Scope, group: &str) -> Result<Tags, LogsError> {
    Ok(catalog
        .group(scope, group)
        .ok_or_else(LogsError::group_not_found)?
        .info
        .tags
        .clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_arns() {
        let scope = Scope::new("123456789012", "us-east-1");
        assert_eq!(
            group_identifier(
                &scope,
                "f",
                "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/a"
            )
            .unwrap(),
            "/ecs/a"
        );
        assert_eq!(
            group_identifier(
                &scope,
                "f",
                "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/a:*"
            )
            .unwrap(),
            "/ecs/a"
        );
        assert_eq!(group_identifier(&scope, "f", "/ecs/a").unwrap(), "/ecs/a");
        let other = group_identifier(
            &scope,
            "f",
            "arn:aws:logs:eu-west-1:123456789012:log-group:a",
        );
        assert_eq!(other.unwrap_err().code(), "ResourceNotFoundException");
        for bad in [
            "arn:aws:ecs:us-east-1:123456789012:log-group:a",
            "arn:aws:logs:us-east-1:123456789012:destination:a",
            "arn:aws:logs:us-east-1",
            "arn:aws:logs:us-east-1:123456789012:log-group:",
        ] {
            assert_eq!(
                group_identifier(&scope, "f", bad).unwrap_err().code(),
                "InvalidParameterException",
                "{bad}"
            );
        }
        assert!(tagged_group(&scope, "plain-name").is_err());
        assert!(group_ref(&scope, Some("a"), Some("a")).is_err());
        assert!(group_ref(&scope, None, None).is_err());
    }
}
