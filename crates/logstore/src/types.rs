//! Requests and results of the engine's operations, in plain Rust.
//!
//! Each field's doc comment names the CloudWatch Logs model member it carries
//! (`shared/reference/aws-models/logs/service-2.json`), so that the handler
//! layer's translation is mechanical. Timestamps are milliseconds since the
//! Unix epoch, as in the model (`Timestamp` is a `long`).

use std::collections::BTreeMap;
use std::fmt;

use crate::error::LogsError;

/// Who owns a resource: the signer's account and the signature's region.
/// Two scopes never see each other's groups.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub account_id: String,
    pub region: String,
}

impl Scope {
    pub fn new(account_id: impl Into<String>, region: impl Into<String>) -> Scope {
        Scope {
            account_id: account_id.into(),
            region: region.into(),
        }
    }

    /// `arn:aws:logs:REGION:ACCOUNT:log-group:NAME` (the `logGroupArn` form,
    /// also the tagging APIs' `resourceArn`).
    pub fn log_group_arn(&self, group: &str) -> String {
        format!(
            "arn:aws:logs:{}:{}:log-group:{group}",
            self.region, self.account_id
        )
    }

    /// `arn:aws:logs:REGION:ACCOUNT:log-group:GROUP:log-stream:STREAM`.
    pub fn log_stream_arn(&self, group: &str, stream: &str) -> String {
        format!("{}:log-stream:{stream}", self.log_group_arn(group))
    }
}

/// `LogGroupClass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogGroupClass {
    #[default]
    Standard,
    InfrequentAccess,
    Delivery,
    Essentials,
}

impl LogGroupClass {
    pub fn as_str(self) -> &'static str {
        match self {
            LogGroupClass::Standard => "STANDARD",
            LogGroupClass::InfrequentAccess => "INFREQUENT_ACCESS",
            LogGroupClass::Delivery => "DELIVERY",
            LogGroupClass::Essentials => "ESSENTIALS",
        }
    }

    pub fn parse(s: &str) -> Result<LogGroupClass, LogsError> {
        match s {
            "STANDARD" => Ok(LogGroupClass::Standard),
            "INFREQUENT_ACCESS" => Ok(LogGroupClass::InfrequentAccess),
            "DELIVERY" => Ok(LogGroupClass::Delivery),
            "ESSENTIALS" => Ok(LogGroupClass::Essentials),
            other => Err(LogsError::constraint(
                "logGroupClass",
                other,
                "Member must satisfy enum value set: [STANDARD, INFREQUENT_ACCESS, DELIVERY, ESSENTIALS]",
            )),
        }
    }
}

impl fmt::Display for LogGroupClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Tags`: tag key to value.
pub type Tags = BTreeMap<String, String>;

/// `CreateLogGroupRequest`.
#[derive(Debug, Clone, Default)]
pub struct CreateLogGroupRequest {
    /// `logGroupName` (required).
    pub log_group_name: String,
    /// `kmsKeyId`: stored and returned; Flotilla does not encrypt with it.
    pub kms_key_id: Option<String>,
    /// `tags`.
    pub tags: Option<Tags>,
    /// `logGroupClass` (default STANDARD).
    pub log_group_class: Option<LogGroupClass>,
    /// `deletionProtectionEnabled`.
    pub deletion_protection_enabled: Option<bool>,
}

/// `DescribeLogGroupsRequest`. `accountIdentifiers` and
/// `includeLinkedAccounts` (cross-account observability) have no local
/// meaning and are not carried.
#[derive(Debug, Clone, Default)]
pub struct DescribeLogGroupsRequest {
    /// `logGroupNamePrefix`.
    pub log_group_name_prefix: Option<String>,
    /// `logGroupNamePattern`: a case-sensitive substring (the model's
    /// wording); with it only `arn`, `creationTime` and `logGroupName` are
    /// returned.
    pub log_group_name_pattern: Option<String>,
    /// `nextToken`.
    pub next_token: Option<String>,
    /// `limit` (1–50, default 50).
    pub limit: Option<i32>,
    /// `logGroupClass`.
    pub log_group_class: Option<LogGroupClass>,
    /// `logGroupIdentifiers`: names or ARNs (1–50).
    pub log_group_identifiers: Option<Vec<String>>,
}

/// `LogGroup`. The `Option` members are absent when `logGroupNamePattern`
/// was given (as AWS does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroup {
    /// `logGroupName`.
    pub log_group_name: String,
    /// `creationTime`.
    pub creation_time: i64,
    /// `retentionInDays` (absent: never expire).
    pub retention_in_days: Option<i32>,
    /// `metricFilterCount` (metric filters are not built: always 0).
    pub metric_filter_count: Option<i32>,
    /// `arn`: the group's ARN with a trailing `:*`.
    pub arn: String,
    /// `storedBytes`: bytes the group's events take on disk (compressed).
    pub stored_bytes: Option<i64>,
    /// `kmsKeyId`.
    pub kms_key_id: Option<String>,
    /// `logGroupClass`.
    pub log_group_class: Option<LogGroupClass>,
    /// `logGroupArn`: the ARN without `:*`.
    pub log_group_arn: Option<String>,
    /// `deletionProtectionEnabled`.
    pub deletion_protection_enabled: Option<bool>,
}

/// `DescribeLogGroupsResponse`.
#[derive(Debug, Clone, Default)]
pub struct DescribeLogGroupsOutput {
    /// `logGroups`.
    pub log_groups: Vec<LogGroup>,
    /// `nextToken`: absent on the last page.
    pub next_token: Option<String>,
}

/// `OrderBy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderBy {
    #[default]
    LogStreamName,
    LastEventTime,
}

impl OrderBy {
    pub fn parse(s: &str) -> Result<OrderBy, LogsError> {
        match s {
            "LogStreamName" => Ok(OrderBy::LogStreamName),
            "LastEventTime" => Ok(OrderBy::LastEventTime),
            other => Err(LogsError::constraint(
                "orderBy",
                other,
                "Member must satisfy enum value set: [LogStreamName, LastEventTime]",
            )),
        }
    }
}

/// `DescribeLogStreamsRequest`.
#[derive(Debug, Clone, Default)]
pub struct DescribeLogStreamsRequest {
    /// `logGroupName` (this or `logGroupIdentifier`).
    pub log_group_name: Option<String>,
    /// `logGroupIdentifier`: a name or an ARN.
    pub log_group_identifier: Option<String>,
    /// `logStreamNamePrefix` (not with `orderBy` LastEventTime).
    pub log_stream_name_prefix: Option<String>,
    /// `orderBy` (default LogStreamName).
    pub order_by: Option<OrderBy>,
    /// `descending` (default false).
    pub descending: Option<bool>,
    /// `nextToken`.
    pub next_token: Option<String>,
    /// `limit` (1–50, default 50).
    pub limit: Option<i32>,
}

/// `LogStream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStream {
    /// `logStreamName`.
    pub log_stream_name: String,
    /// `creationTime`.
    pub creation_time: i64,
    /// `firstEventTimestamp`: the earliest stored event's timestamp.
    pub first_event_timestamp: Option<i64>,
    /// `lastEventTimestamp`: the latest stored event's timestamp.
    pub last_event_timestamp: Option<i64>,
    /// `lastIngestionTime`.
    pub last_ingestion_time: Option<i64>,
    /// `uploadSequenceToken`: absent until the first PutLogEvents.
    pub upload_sequence_token: Option<String>,
    /// `arn`.
    pub arn: String,
    /// `storedBytes`: always 0, as AWS reports it since 2019.
    pub stored_bytes: i64,
}

/// `DescribeLogStreamsResponse`.
#[derive(Debug, Clone, Default)]
pub struct DescribeLogStreamsOutput {
    /// `logStreams`.
    pub log_streams: Vec<LogStream>,
    /// `nextToken`.
    pub next_token: Option<String>,
}

/// `InputLogEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputLogEvent {
    /// `timestamp` (required).
    pub timestamp: i64,
    /// `message` (required, at least one character).
    pub message: String,
}

impl InputLogEvent {
    pub fn new(timestamp: i64, message: impl Into<String>) -> InputLogEvent {
        InputLogEvent {
            timestamp,
            message: message.into(),
        }
    }
}

/// `PutLogEventsRequest`. `entity` is not carried (no local meaning).
#[derive(Debug, Clone, Default)]
pub struct PutLogEventsRequest {
    /// `logGroupName`.
    pub log_group_name: String,
    /// `logStreamName`.
    pub log_stream_name: String,
    /// `logEvents` (1–10,000).
    pub log_events: Vec<InputLogEvent>,
    /// `sequenceToken`: optional; see [`crate::LogStore::put_log_events`].
    pub sequence_token: Option<String>,
}

/// `RejectedLogEventsInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RejectedLogEventsInfo {
    /// `tooNewLogEventStartIndex` (inclusive): events from here on are more
    /// than 2 hours in the future.
    pub too_new_log_event_start_index: Option<i32>,
    /// `tooOldLogEventEndIndex` (exclusive): events before it are more than
    /// 14 days old.
    pub too_old_log_event_end_index: Option<i32>,
    /// `expiredLogEventEndIndex` (exclusive): events before it are older
    /// than the group's retention period.
    pub expired_log_event_end_index: Option<i32>,
}

/// `PutLogEventsResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutLogEventsOutput {
    /// `nextSequenceToken`.
    pub next_sequence_token: Option<String>,
    /// `rejectedLogEventsInfo`: absent when every event was stored.
    pub rejected_log_events_info: Option<RejectedLogEventsInfo>,
}

/// `GetLogEventsRequest`.
#[derive(Debug, Clone, Default)]
pub struct GetLogEventsRequest {
    /// `logGroupName` (this or `logGroupIdentifier`).
    pub log_group_name: Option<String>,
    /// `logGroupIdentifier`: a name or an ARN.
    pub log_group_identifier: Option<String>,
    /// `logStreamName` (required).
    pub log_stream_name: String,
    /// `startTime`: events at or after it.
    pub start_time: Option<i64>,
    /// `endTime`: events strictly before it.
    pub end_time: Option<i64>,
    /// `nextToken`: a `nextForwardToken` or `nextBackwardToken`.
    pub next_token: Option<String>,
    /// `limit` (1–10,000; default: as many as fit in 1 MB, up to 10,000).
    pub limit: Option<i32>,
    /// `startFromHead` (default false: the latest events).
    pub start_from_head: Option<bool>,
}

/// `OutputLogEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLogEvent {
    /// `timestamp`.
    pub timestamp: i64,
    /// `message`.
    pub message: String,
    /// `ingestionTime`.
    pub ingestion_time: i64,
}

/// `GetLogEventsResponse`. Both tokens are always present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetLogEventsOutput {
    /// `events`, in timestamp order.
    pub events: Vec<OutputLogEvent>,
    /// `nextForwardToken`: the same token that was passed in once the end
    /// of the stream is reached.
    pub next_forward_token: String,
    /// `nextBackwardToken`.
    pub next_backward_token: String,
}

/// `FilterLogEventsRequest`. `interleaved` is ignored, as in AWS: events
/// from all streams always come interleaved in timestamp order.
#[derive(Debug, Clone, Default)]
pub struct FilterLogEventsRequest {
    /// `logGroupName` (this or `logGroupIdentifier`).
    pub log_group_name: Option<String>,
    /// `logGroupIdentifier`: a name or an ARN.
    pub log_group_identifier: Option<String>,
    /// `logStreamNames` (1–100; not with `logStreamNamePrefix`).
    pub log_stream_names: Option<Vec<String>>,
    /// `logStreamNamePrefix`.
    pub log_stream_name_prefix: Option<String>,
    /// `startTime`: events at or after it.
    pub start_time: Option<i64>,
    /// `endTime`: events at or before it.
    pub end_time: Option<i64>,
    /// `filterPattern` (at most 1,024 characters; empty matches all).
    pub filter_pattern: Option<String>,
    /// `nextToken`.
    pub next_token: Option<String>,
    /// `limit` (1–10,000, default 10,000).
    pub limit: Option<i32>,
    /// `startFromHead` (default true: oldest first). A `nextToken` carries
    /// its own direction.
    pub start_from_head: Option<bool>,
}

/// `FilteredLogEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredLogEvent {
    /// `logStreamName`.
    pub log_stream_name: String,
    /// `timestamp`.
    pub timestamp: i64,
    /// `message`.
    pub message: String,
    /// `ingestionTime`.
    pub ingestion_time: i64,
    /// `eventId`: unique and stable, a 56-digit decimal string.
    pub event_id: String,
}

/// `FilterLogEventsResponse`. `searchedLogStreams` is always empty in AWS
/// since 2020 and is left to the handler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterLogEventsOutput {
    /// `events`.
    pub events: Vec<FilteredLogEvent>,
    /// `nextToken`: absent once everything in range was returned.
    pub next_token: Option<String>,
}

/// What one [`crate::LogStore::enforce_retention`] pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segment files deleted.
    pub segments_deleted: usize,
    /// Their size, as counted in `storedBytes`.
    pub bytes_deleted: u64,
}
