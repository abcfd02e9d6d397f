//! The model's constraints and AWS's documented rules on input, checked
//! before a request reaches the writer. Pure functions; every rejection
//! names the field and the rule in AWS's wording.

use std::sync::LazyLock;

use regex::Regex;

use crate::error::LogsError;
use crate::types::{InputLogEvent, Tags};

/// Longest group and stream name (`LogGroupName`, `LogStreamName`: max 512).
pub const MAX_NAME_CHARS: usize = 512;
/// Most events in one PutLogEvents (`InputLogEvents`: max 10,000).
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Most bytes in one PutLogEvents: messages in UTF-8 plus 26 per event.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// What each event adds to the batch size on top of its message.
pub const EVENT_OVERHEAD_BYTES: usize = 26;
/// A batch's events may span at most this much time.
pub const MAX_BATCH_SPAN_MS: i64 = 24 * HOUR_MS;
/// Events further in the future than this are rejected (too new).
pub const MAX_FUTURE_MS: i64 = 2 * HOUR_MS;
/// Events older than this are rejected (too old).
pub const MAX_AGE_MS: i64 = 14 * DAY_MS;
/// Most tags on one resource.
pub const MAX_TAGS: usize = 50;
/// Longest `filterPattern`.
pub const MAX_FILTER_PATTERN_CHARS: usize = 1024;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// `Days`: the retention periods PutRetentionPolicy accepts.
pub const RETENTION_DAYS: [i32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

const GROUP_NAME_PATTERN: &str = r"[\.\-_/#A-Za-z0-9]+";

fn length(field: &str, value: &str, min: usize, max: usize) -> Result<(), LogsError> {
    let chars = value.chars().count();
    if chars < min {
        return Err(LogsError::constraint(
            field,
            value,
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    if chars > max {
        return Err(LogsError::constraint(
            field,
            value,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

fn is_group_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#')
}

/// `LogGroupName`: 1–512 characters of `[\.\-_/#A-Za-z0-9]`.
pub fn log_group_name(field: &str, name: &str) -> Result<(), LogsError> {
    length(field, name, 1, MAX_NAME_CHARS)?;
    if !name.chars().all(is_group_name_char) {
        return Err(LogsError::constraint(
            field,
            name,
            &format!("Member must satisfy regular expression pattern: {GROUP_NAME_PATTERN}"),
        ));
    }
    Ok(())
}

/// CreateLogGroup's extra rule: names can't start with `aws/` (reserved
/// for AWS services' own groups).
pub fn new_log_group_name(name: &str) -> Result<(), LogsError> {
    log_group_name("logGroupName", name)?;
    if name.starts_with("aws/") {
        return Err(LogsError::invalid(
            "Log group names can't start with the string aws/",
        ));
    }
    Ok(())
}

/// `LogGroupNamePattern` and a prefix: the group name alphabet, and may be
/// empty (pattern) — an empty prefix is rejected by the model's min 1.
pub fn log_group_name_pattern(field: &str, pattern: &str) -> Result<(), LogsError> {
    length(field, pattern, 0, MAX_NAME_CHARS)?;
    if !pattern.chars().all(is_group_name_char) {
        return Err(LogsError::constraint(
            field,
            pattern,
            r"Member must satisfy regular expression pattern: [\.\-_/#A-Za-z0-9]*",
        ));
    }
    Ok(())
}

/// `LogStreamName`: 1–512 characters, none of them `:` or `*`.
pub fn log_stream_name(field: &str, name: &str) -> Result<(), LogsError> {
    length(field, name, 1, MAX_NAME_CHARS)?;
    if name.contains([':', '*']) {
        return Err(LogsError::constraint(
            field,
            name,
            "Member must satisfy regular expression pattern: [^:*]*",
        ));
    }
    Ok(())
}

/// `Days`: one of [`RETENTION_DAYS`].
pub fn retention_in_days(days: i32) -> Result<(), LogsError> {
    if RETENTION_DAYS.contains(&days) {
        return Ok(());
    }
    let allowed: Vec<String> = RETENTION_DAYS.iter().map(|d| d.to_string()).collect();
    Err(LogsError::constraint(
        "retentionInDays",
        &days.to_string(),
        &format!(
            "Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        ),
    ))
}

/// A `limit` within `[min, max]`.
pub fn limit(field: &str, value: i32, min: i32, max: i32) -> Result<(), LogsError> {
    if value < min {
        return Err(LogsError::constraint(
            field,
            &value.to_string(),
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if value > max {
        return Err(LogsError::constraint(
            field,
            &value.to_string(),
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    Ok(())
}

/// `Timestamp`: min 0.
pub fn timestamp(field: &str, value: i64) -> Result<(), LogsError> {
    if value < 0 {
        return Err(LogsError::constraint(
            field,
            &value.to_string(),
            "Member must have value greater than or equal to 0",
        ));
    }
    Ok(())
}

/// `NextToken` and `SequenceToken`: min length 1.
pub fn token(field: &str, value: &str) -> Result<(), LogsError> {
    length(field, value, 1, usize::MAX)
}

static TAG_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]+)$").expect("valid regex"));
static TAG_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$").expect("valid regex"));

/// `TagKey`: 1–128 characters of letters, separators, digits and `_.:/=+-@`,
/// not starting with the reserved `aws:`.
pub fn tag_key(field: &str, key: &str) -> Result<(), LogsError> {
    length(field, key, 1, 128)?;
    if !TAG_KEY.is_match(key) {
        return Err(LogsError::constraint(
            field,
            key,
            r"Member must satisfy regular expression pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]+)$",
        ));
    }
    if key.starts_with("aws:") {
        return Err(LogsError::invalid(format!(
            "Tag key '{key}' is not allowed: tag keys starting with 'aws:' are reserved"
        )));
    }
    Ok(())
}

/// `TagValue`: 0–256 characters of the same alphabet.
pub fn tag_value(field: &str, value: &str) -> Result<(), LogsError> {
    length(field, value, 0, 256)?;
    if !TAG_VALUE.is_match(value) {
        return Err(LogsError::constraint(
            field,
            value,
            r"Member must satisfy regular expression pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$",
        ));
    }
    Ok(())
}

/// `Tags`: 1–50 valid keys and values.
pub fn tags(field: &str, tags: &Tags) -> Result<(), LogsError> {
    if tags.is_empty() {
        return Err(LogsError::constraint(
            field,
            "{}",
            "Member must have length greater than or equal to 1",
        ));
    }
    if tags.len() > MAX_TAGS {
        return Err(LogsError::constraint(
            field,
            &format!("{} tags", tags.len()),
            &format!("Member must have length less than or equal to {MAX_TAGS}"),
        ));
    }
    for (key, value) in tags {
        tag_key(&format!("{field}.key"), key)?;
        tag_value(&format!("{field}.{key}"), value)?;
    }
    Ok(())
}

/// PutLogEvents' rules on the batch as a whole, in the order AWS applies
/// them: count, size (messages in UTF-8 + 26 bytes each), each message
/// non-empty and each timestamp ≥ 0, chronological order. Rules that
/// depend on the clock or the group (too old, too new, expired, and the
/// 24-hour span of what is kept: [`span`]) are applied by the writer.
pub fn log_events(events: &[InputLogEvent]) -> Result<(), LogsError> {
    if events.is_empty() {
        return Err(LogsError::constraint(
            "logEvents",
            "[]",
            "Member must have length greater than or equal to 1",
        ));
    }
    if events.len() > MAX_BATCH_EVENTS {
        return Err(LogsError::constraint(
            "logEvents",
            &format!("{} events", events.len()),
            &format!("Member must have length less than or equal to {MAX_BATCH_EVENTS}"),
        ));
    }
    let size: usize = events
        .iter()
        .map(|e| e.message.len() + EVENT_OVERHEAD_BYTES)
        .sum();
    if size > MAX_BATCH_BYTES {
        return Err(LogsError::invalid(format!(
            "Upload too large: {size} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    for (i, event) in events.iter().enumerate() {
        if event.message.is_empty() {
            return Err(LogsError::constraint(
                &format!("logEvents.{}.member.message", i + 1),
                "",
                "Member must have length greater than or equal to 1",
            ));
        }
        timestamp(
            &format!("logEvents.{}.member.timestamp", i + 1),
            event.timestamp,
        )?;
    }
    if events.windows(2).any(|w| w[1].timestamp < w[0].timestamp) {
        return Err(LogsError::invalid(
            "Log events in a single PutLogEvents request must be in chronological order.",
        ));
    }
    Ok(())
}

/// The span rule, on the events that are kept (AWS: "for valid events
/// (within 14 days in the past to 2 hours in future), the time span in a
/// single batch cannot exceed 24 hours").
pub fn span(kept: &[InputLogEvent]) -> Result<(), LogsError> {
    if let (Some(first), Some(last)) = (kept.first(), kept.last()) {
        if last.timestamp - first.timestamp > MAX_BATCH_SPAN_MS {
            return Err(LogsError::invalid(
                "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
            ));
        }
    }
    Ok(())
}

/// Which events of a valid (chronological) batch are stored, given the
/// clock and the group's retention: the half-open index range, and what to
/// report for the rest. Too old (over 14 days) and expired (over the
/// retention period) are prefixes; too new (over 2 hours ahead) a suffix.
pub fn classify(
    events: &[InputLogEvent],
    now: i64,
    retention_days: Option<i32>,
) -> (
    std::ops::Range<usize>,
    Option<crate::types::RejectedLogEventsInfo>,
) {
    let too_old = events.partition_point(|e| e.timestamp < now - MAX_AGE_MS);
    let expired = match retention_days {
        Some(days) => events.partition_point(|e| e.timestamp < now - i64::from(days) * DAY_MS),
        None => 0,
    };
    let too_new = events.partition_point(|e| e.timestamp <= now + MAX_FUTURE_MS);
    let start = too_old.max(expired).min(too_new);
    let end = too_new;
    let index = |i: usize| i32::try_from(i).unwrap_or(i32::MAX);
    let info = crate::types::RejectedLogEventsInfo {
        too_new_log_event_start_index: (too_new < events.len()).then(|| index(too_new)),
        too_old_log_event_end_index: (too_old > 0).then(|| index(too_old)),
        expired_log_event_end_index: (expired > 0).then(|| index(expired)),
    };
    let rejected = info != crate::types::RejectedLogEventsInfo::default();
    (start..end.max(start), rejected.then_some(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: i64, msg: &str) -> InputLogEvent {
        InputLogEvent::new(ts, msg)
    }

    #[test]
    fn group_names_follow_the_model() {
        assert!(log_group_name("logGroupName", "/ecs/app-1_x.y#z").is_ok());
        let e = log_group_name("logGroupName", "a b").unwrap_err();
        assert_eq!(e.code(), "InvalidParameterException");
        assert!(e.to_string().contains("at 'logGroupName'"), "{e}");
        assert!(e.to_string().contains("regular expression pattern"), "{e}");
        assert!(log_group_name("logGroupName", "").is_err());
        assert!(log_group_name("logGroupName", &"a".repeat(512)).is_ok());
        let e = log_group_name("logGroupName", &"a".repeat(513)).unwrap_err();
        assert!(e.to_string().contains("less than or equal to 512"), "{e}");
        assert!(log_group_name("logGroupName", "é").is_err());
        assert!(new_log_group_name("aws/lambda/x").is_err());
        assert!(new_log_group_name("/aws/lambda/x").is_ok());
    }

    #[test]
    fn stream_names_refuse_colon_and_star() {
        assert!(log_stream_name("logStreamName", "web/app/0123abcd é").is_ok());
        assert!(log_stream_name("logStreamName", "a:b").is_err());
        assert!(log_stream_name("logStreamName", "a*").is_err());
        assert!(log_stream_name("logStreamName", "").is_err());
        assert!(log_stream_name("logStreamName", &"é".repeat(512)).is_ok());
        assert!(log_stream_name("logStreamName", &"é".repeat(513)).is_err());
    }

    #[test]
    fn retention_days_are_the_models_set() {
        for d in RETENTION_DAYS {
            assert!(retention_in_days(d).is_ok());
        }
        for d in [0, 2, 4, 8, 366, 3654, -1] {
            let e = retention_in_days(d).unwrap_err();
            assert!(e.to_string().contains("enum value set: [1, 3, 5"), "{e}");
        }
    }

    #[test]
    fn tags_follow_the_model() {
        let mut t = Tags::new();
        t.insert("team".into(), "web ops".into());
        t.insert("ключ".into(), "".into());
        assert!(tags("tags", &t).is_ok());
        t.insert("bad!".into(), "x".into());
        assert!(tags("tags", &t).is_err());
        assert!(tags("tags", &Tags::new()).is_err());
        let many: Tags = (0..51).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(tags("tags", &many).is_err());
        assert!(tag_key("tagKeys", "aws:reserved").is_err());
        assert!(tag_value("tags.k", &"v".repeat(257)).is_err());
    }

    #[test]
    fn batch_rules() {
        assert!(log_events(&[ev(1, "a"), ev(1, "b"), ev(2, "c")]).is_ok());
        assert!(log_events(&[]).is_err());
        let e = log_events(&[ev(2, "a"), ev(1, "b")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Log events in a single PutLogEvents request must be in chronological order."
        );
        let e = span(&[ev(0, "a"), ev(MAX_BATCH_SPAN_MS + 1, "b")]).unwrap_err();
        assert!(e.to_string().contains("cannot span more than 24 hours"));
        assert!(span(&[ev(0, "a"), ev(MAX_BATCH_SPAN_MS, "b")]).is_ok());
        assert!(span(&[]).is_ok());
        assert!(log_events(&[ev(0, "")]).is_err());
        assert!(log_events(&[ev(-1, "a")]).is_err());
        let many: Vec<_> = (0..10_001).map(|i| ev(i, "x")).collect();
        assert!(log_events(&many).is_err());
        assert!(log_events(&many[..10_000]).is_ok());
    }

    #[test]
    fn batch_size_counts_utf8_plus_26() {
        // Exactly at the limit: 10 events of (message + 26) = 1,048,576.
        let per = MAX_BATCH_BYTES / 8 - EVENT_OVERHEAD_BYTES;
        let at: Vec<_> = (0..8).map(|i| ev(i, &"x".repeat(per))).collect();
        assert!(log_events(&at).is_ok());
        let mut over = at.clone();
        over[0].message.push('x');
        let e = log_events(&over).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Upload too large: 1048577 bytes exceeds limit of 1048576"
        );
        // Multi-byte characters count in bytes, not characters.
        let e = log_events(&[ev(0, &"é".repeat(MAX_BATCH_BYTES / 2))]).unwrap_err();
        assert!(e.to_string().starts_with("Upload too large"));
    }

    #[test]
    fn classify_too_old_too_new_expired() {
        let now = 100 * DAY_MS;
        let events = vec![
            ev(now - 15 * DAY_MS, "too old"),
            ev(now - 14 * DAY_MS, "exactly 14 days: kept"),
            ev(now, "now"),
            ev(now + MAX_FUTURE_MS, "exactly 2 h ahead: kept"),
            ev(now + MAX_FUTURE_MS + 1, "too new"),
        ];
        let (range, info) = classify(&events, now, None);
        assert_eq!(range, 1..4);
        let info = info.unwrap();
        assert_eq!(info.too_old_log_event_end_index, Some(1));
        assert_eq!(info.too_new_log_event_start_index, Some(4));
        assert_eq!(info.expired_log_event_end_index, None);

        let (range, info) = classify(&events, now, Some(1));
        assert_eq!(range, 2..4);
        let info = info.unwrap();
        assert_eq!(info.expired_log_event_end_index, Some(2));
        assert_eq!(info.too_old_log_event_end_index, Some(1));

        let fine = vec![ev(now, "a"), ev(now + 1, "b")];
        assert_eq!(classify(&fine, now, Some(1)), (0..2, None));

        let all_old = vec![ev(0, "a"), ev(1, "b")];
        let (range, info) = classify(&all_old, now, None);
        assert!(range.is_empty());
        assert_eq!(info.unwrap().too_old_log_event_end_index, Some(2));
    }
}
