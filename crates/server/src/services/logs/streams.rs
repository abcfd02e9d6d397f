//! Log streams: CreateLogStream, DeleteLogStream, DescribeLogStreams.

use flotilla_logstore::{self as store, LogStore, Scope};
use flotilla_model::wire::logs;

use super::{logs_error, required, Empty};
use crate::error::ApiResult;

pub async fn create_log_stream(
    logs: &LogStore,
    scope: &Scope,
    req: logs::CreateLogStreamRequest,
) -> ApiResult<Empty> {
    let group = required(req.log_group_name, "logGroupName")?;
    let stream = required(req.log_stream_name, "logStreamName")?;
    logs.create_log_stream(scope, &group, &stream)
        .await
        .map_err(logs_error)?;
    Ok(Empty {})
}

pub async fn delete_log_stream(
    logs: &LogStore,
    scope: &Scope,
    req: logs::DeleteLogStreamRequest,
) -> ApiResult<Empty> {
    let group = required(req.log_group_name, "logGroupName")?;
    let stream = required(req.log_stream_name, "logStreamName")?;
    logs.delete_log_stream(scope, &group, &stream)
        .await
        .map_err(logs_error)?;
    Ok(Empty {})
}

pub async fn describe_log_streams(
    logs: &LogStore,
    scope: &Scope,
    req: logs::DescribeLogStreamsRequest,
) -> ApiResult<logs::DescribeLogStreamsResponse> {
    let request = store::DescribeLogStreamsRequest {
        log_group_name: req.log_group_name,
        log_group_identifier: req.log_group_identifier,
        log_stream_name_prefix: req.log_stream_name_prefix,
        order_by: req
            .order_by
            .map(|o| store::OrderBy::parse(o.as_str()))
            .transpose()
            .map_err(logs_error)?,
        descending: req.descending,
        next_token: req.next_token,
        limit: req.limit,
    };
    let out = logs
        .describe_log_streams(scope, &request)
        .map_err(logs_error)?;
    Ok(logs::DescribeLogStreamsResponse {
        log_streams: Some(out.log_streams.into_iter().map(log_stream).collect()),
        next_token: out.next_token,
    })
}

fn log_stream(s: store::LogStream) -> logs::LogStream {
    logs::LogStream {
        log_stream_name: Some(s.log_stream_name),
        creation_time: Some(s.creation_time),
        first_event_timestamp: s.first_event_timestamp,
        last_event_timestamp: s.last_event_timestamp,
        last_ingestion_time: s.last_ingestion_time,
        upload_sequence_token: s.upload_sequence_token,
        arn: Some(s.arn),
        stored_bytes: Some(s.stored_bytes),
    }
}
