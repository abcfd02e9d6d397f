//! Log groups: CreateLogGroup, DeleteLogGroup, DescribeLogGroups,
//! Put/DeleteRetentionPolicy, and both tagging APIs (the deprecated
//! TagLogGroup family by name, and TagResource by ARN).

use flotilla_logstore::{self as store, LogStore, Scope};
use flotilla_model::wire::logs;

use super::{logs_error, required, Empty};
use crate::error::ApiResult;

pub async fn create_log_group(
    logs: &LogStore,
    scope: &Scope,
    req: logs::CreateLogGroupRequest,
) -> ApiResult<Empty> {
    let request = store::CreateLogGroupRequest {
        log_group_name: required(req.log_group_name, "logGroupName")?,
        kms_key_id: req.kms_key_id,
        tags: req.tags,
        log_group_class: req
            .log_group_class
            .map(|c| store::LogGroupClass::parse(c.as_str()))
            .transpose()
            .map_err(logs_error)?,
        deletion_protection_enabled: req.deletion_protection_enabled,
    };
    logs.create_log_group(scope, request)
        .await
        .map_err(logs_error)?;
    Ok(Empty {})
}

pub async fn delete_log_group(
    logs: &LogStore,
    scope: &Scope,
    req: logs::DeleteLogGroupRequest,
) -> ApiResult<Empty> {
    let name = required(req.log_group_name, "logGroupName")?;
    logs.delete_log_group(scope, &name)
        .await
        .map_err(logs_error)?;
    Ok(Empty {})
}

/// `accountIdentifiers` and `includeLinkedAccounts` (cross-account
/// observability) have no meaning on one Flotilla: the caller's own groups
/// are listed.
pub async fn describe_log_groups(
    logs: &LogStore,
    scope: &Scope,
    req: logs::DescribeLogGroupsRequest,
) -> ApiResult<logs::DescribeLogGroupsResponse> {
    let request = store::DescribeLogGroupsRequest {
        log_group_name_prefix: req.log_group_name_prefix,
        log_group_name_pattern: req.log_group_name_pattern,
        next_token: req.next_token,
        limit: req.limit,
        log_group_class: req
            .log_group_class
            .map(|c| store::LogGroupClass::parse(c.as_str()))
            .transpose()
            .map_err(logs_error)?,
        log_group_identifiers: req.log_group_identifiers,
    };
    let out = logs
        .describe_log_groups(scope, &request)
        .map_err(logs_error)?;
    Ok(logs::DescribeLogGroupsResponse {
        log_groups: Some(out.log_groups.into_iter().map(log_group).collect()),
        next_token: out.next_token,
    })
}

fn log_group(g: store::LogGroup) -> logs::LogGroup {
    logs::LogGroup {
        log_group_name: Some(g.log_group_name),
        creation_time: Some(g.creation_time),
        retention_in_days: g.retention_in_days,
        metric_filter_count: g.metric_filter_count,
        arn: Some(g.arn),
        stored_bytes: g.stored_bytes,
        kms_key_id: g.kms_key_id,
        log_group_class: g
            .log_group_class
            .and_then(|c| logs::LogGroupClass::parse(c.as_str())),
        log_group_arn: g.log_group_arn,
        deletion_protection_enabled: g.deletion_protection_enabled,
        ..Default::default()
    }
}

pub async fn put_retention_policy(
    logs: &LogStore,
    scope: &Scope,
    req: logs::PutRetentionPolicyRequest,
) -> ApiResult<Empty> {
    let name = required(req.log_group_name, "logGroupName")?;
    let days = required(req.retention_in_days, "retentionInDays")?;
    logs.put_retention_policy(scope, &name, days)
        .await
        .map_err(logs_error)?;
    Ok(Empty {})
}

pub async fn delete_retention_policy(
    logs: &LogStore,
    scope: &Scope,
    req: logs::DeleteRetentionPolicyRequest,
) -> ApiResult<Empty> {
    let name = required(req.log_group_name, "logGroupName")?;
    logs.delete_retention_policy(scope, &name)
        .await
        .map_err(logs_error)?;
    Ok(Empty {})
}

pub async fn tag_log_group(
    logs: &LogStore,
    scope: &Scope,
    req: logs::TagLogGroupRequest,
) -> ApiResult<Empty> {
    let name = required(req.log_group_name, "logGroupName")?;
    let tags = required(req.tags, "tags")?;
    logs.tag_log_group(scope, &name, tags)
        .await
        .map_err(logs_error)?;
    Ok(Empty {})
}

pub async fn untag_log_group(
    logs: &LogStore,
    scope: &Scope,
    req: logs::UntagLogGroupRequest,
) -> ApiResult<Empty> {
    let name = required(req.log_group_name, "logGroupName")?;
    let keys = required(req.tags, "tags")?;
    logs.untag_log_group(scope, &name, keys)
        .await
        .map_err(logs_error)?;
    Ok(Empty {})
}

pub async fn list_tags_log_group(
    logs: &LogStore,
    scope: &Scope,
    req: logs::ListTagsLogGroupRequest,
) -> ApiResult<logs::ListTagsLogGroupResponse> {
    let name = required(req.log_group_name, "logGroupName")?;
    let tags = logs.list_tags_log_group(scope, &name).map_err(logs_error)?;
    Ok(logs::ListTagsLogGroupResponse { tags: Some(tags) })
}

pub async fn tag_resource(
    logs: &LogStore,
    scope: &Scope,
    req: logs::TagResourceRequest,
) -> ApiResult<Empty> {
    let arn = required(req.resource_arn, "resourceArn")?;
    let tags = required(req.tags, "tags")?;
    logs.tag_resource(scope, &arn, tags)
        .await
        .map_err(logs_error)?;
    Ok(Empty {})
}

pub async fn untag_resource(
    logs: &LogStore,
    scope: &Scope,
    req: logs::UntagResourceRequest,
) -> ApiResult<Empty> {
    let arn = required(req.resource_arn, "resourceArn")?;
    let keys = required(req.tag_keys, "tagKeys")?;
    logs.untag_resource(scope, &arn, keys)
        .await
        .map_err(logs_error)?;
    Ok(Empty {})
}

pub async fn list_tags_for_resource(
    logs: &LogStore,
    scope: &Scope,
    req: logs::ListTagsForResourceRequest,
) -> ApiResult<logs::ListTagsForResourceResponse> {
    let arn = required(req.resource_arn, "resourceArn")?;
    let tags = logs
        .list_tags_for_resource(scope, &arn)
        .map_err(logs_error)?;
    Ok(logs::ListTagsForResourceResponse { tags: Some(tags) })
}
