//! Events: PutLogEvents, GetLogEvents, FilterLogEvents (what
//! `aws logs tail` and `aws logs get-log-events` call).

use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_logstore::{self as store, LogStore, Scope};
use flotilla_model::wire::logs;

use super::{logs_error, required};
use crate::error::ApiResult;

/// `entity` (the entity an event is about, for CloudWatch's explore
/// features) has no local meaning and is ignored, so `rejectedEntityInfo`
/// is never sent.
/// Events stored by PutLogEvents since the process started (for
/// `GET /metrics`).
pub static EVENTS_STORED: AtomicU64 = AtomicU64::new(0);
/// Their message bytes.
pub static EVENT_BYTES_STORED: AtomicU64 = AtomicU64::new(0);
/// PutLogEvents calls answered with success.
pub static PUTS_ACCEPTED: AtomicU64 = AtomicU64::new(0);

pub async fn put_log_events(
    logs: &LogStore,
    scope: &Scope,
    req: logs::PutLogEventsRequest,
) -> ApiResult<logs::PutLogEventsResponse> {
    let log_events: Vec<store::InputLogEvent> = required(req.log_events, "logEvents")?
        .into_iter()
        .map(|e| {
            // Both members are required by the shape rules checked at decode.
            store::InputLogEvent::new(e.timestamp.unwrap_or(0), e.message.unwrap_or_default())
        })
        .collect();
    let sizes: Vec<usize> = log_events.iter().map(|e| e.message.len()).collect();
    let request = store::PutLogEventsRequest {
        log_group_name: required(req.log_group_name, "logGroupName")?,
        log_stream_name: required(req.log_stream_name, "logStreamName")?,
        log_events,
        sequence_token: req.sequence_token,
    };
    let out = logs
        .put_log_events(scope, request)
        .await
        .map_err(logs_error)?;
    count_stored(&sizes, out.rejected_log_events_info.as_ref());
    Ok(logs::PutLogEventsResponse {
        next_sequence_token: out.next_sequence_token,
        rejected_log_events_info: out.rejected_log_events_info.map(|r| {
            logs::RejectedLogEventsInfo {
                too_new_log_event_start_index: r.too_new_log_event_start_index,
                too_old_log_event_end_index: r.too_old_log_event_end_index,
                expired_log_event_end_index: r.expired_log_event_end_index,
            }
        }),
        rejected_entity_info: None,
    })
}

/// Adds the events a PutLogEvents stored (those not reported rejected) to
/// the counters.
fn count_stored(sizes: &[usize], rejected: Option<&store::RejectedLogEventsInfo>) {
    let kept = sizes
        .get(stored_range(sizes.len(), rejected))
        .unwrap_or(&[]);
    EVENTS_STORED.fetch_add(kept.len() as u64, Ordering::Relaxed);
    EVENT_BYTES_STORED.fetch_add(kept.iter().sum::<usize>() as u64, Ordering::Relaxed);
    PUTS_ACCEPTED.fetch_add(1, Ordering::Relaxed);
}

/// The indexes of a batch of `n` events that were stored, given what
/// `rejectedLogEventsInfo` reported.
fn stored_range(
    n: usize,
    rejected: Option<&store::RejectedLogEventsInfo>,
) -> std::ops::Range<usize> {
    let (mut from, mut to) = (0, n);
    if let Some(r) = rejected {
        for end in [r.too_old_log_event_end_index, r.expired_log_event_end_index]
            .into_iter()
            .flatten()
        {
            // Exclusive: the events before it were not stored.
            from = from.max(usize::try_from(end).unwrap_or(0));
        }
        if let Some(start) = r.too_new_log_event_start_index {
            // Inclusive: it and the events after it were not stored.
            to = to.min(usize::try_from(start).unwrap_or(0));
        }
    }
    from.min(n)..to.max(from).min(n)
}

/// `unmask` (data protection) has no local meaning: events are stored and
/// returned as sent.
pub async fn get_log_events(
    logs: &LogStore,
    scope: &Scope,
    req: logs::GetLogEventsRequest,
) -> ApiResult<logs::GetLogEventsResponse> {
    let request = store::GetLogEventsRequest {
        log_group_name: req.log_group_name,
        log_group_identifier: req.log_group_identifier,
        log_stream_name: required(req.log_stream_name, "logStreamName")?,
        start_time: req.start_time,
        end_time: req.end_time,
        next_token: req.next_token,
        limit: req.limit,
        start_from_head: req.start_from_head,
    };
    let out = logs
        .get_log_events(scope, request)
        .await
        .map_err(logs_error)?;
    Ok(logs::GetLogEventsResponse {
        events: Some(
            out.events
                .into_iter()
                .map(|e| logs::OutputLogEvent {
                    timestamp: Some(e.timestamp),
                    message: Some(e.message),
                    ingestion_time: Some(e.ingestion_time),
                })
                .collect(),
        ),
        next_forward_token: Some(out.next_forward_token),
        next_backward_token: Some(out.next_backward_token),
    })
}

/// `interleaved` is accepted and ignored, as AWS does since 2019: events
/// always come interleaved in timestamp order. `searchedLogStreams` is
/// always empty, as AWS sends it.
pub async fn filter_log_events(
    logs: &LogStore,
    scope: &Scope,
    req: logs::FilterLogEventsRequest,
) -> ApiResult<logs::FilterLogEventsResponse> {
    let request = store::FilterLogEventsRequest {
        log_group_name: req.log_group_name,
        log_group_identifier: req.log_group_identifier,
        log_stream_names: req.log_stream_names,
        log_stream_name_prefix: req.log_stream_name_prefix,
        start_time: req.start_time,
        end_time: req.end_time,
        filter_pattern: req.filter_pattern,
        next_token: req.next_token,
        limit: req.limit,
        start_from_head: req.start_from_head,
    };
    let out = logs
        .filter_log_events(scope, request)
        .await
        .map_err(logs_error)?;
    Ok(logs::FilterLogEventsResponse {
        events: Some(
            out.events
                .into_iter()
                .map(|e| logs::FilteredLogEvent {
                    log_stream_name: Some(e.log_stream_name),
                    timestamp: Some(e.timestamp),
                    message: Some(e.message),
                    ingestion_time: Some(e.ingestion_time),
                    event_id: Some(e.event_id),
                })
                .collect(),
        ),
        searched_log_streams: Some(Vec::new()),
        next_token: out.next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        new: Option<i32>,
        old: Option<i32>,
        expired: Option<i32>,
    ) -> store::RejectedLogEventsInfo {
        store::RejectedLogEventsInfo {
            too_new_log_event_start_index: new,
            too_old_log_event_end_index: old,
            expired_log_event_end_index: expired,
        }
    }

    #[test]
    fn the_stored_events_are_those_not_reported_rejected() {
        assert_eq!(stored_range(6, None), 0..6);
        // Too old before 2 (exclusive), expired before 1, too new from 4.
        assert_eq!(
            stored_range(6, Some(&info(Some(4), Some(2), Some(1)))),
            2..4
        );
        assert_eq!(stored_range(6, Some(&info(None, None, Some(3)))), 3..6);
        // Everything rejected: nothing stored, never a reversed range.
        assert!(stored_range(6, Some(&info(Some(2), Some(5), None))).is_empty());
        assert!(stored_range(3, Some(&info(None, Some(3), None))).is_empty());
    }
}
