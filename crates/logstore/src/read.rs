//! GetLogEvents and FilterLogEvents: resolve names under a brief read lock
//! of the published catalog, scan without any lock, then name the streams
//! of the events found. Blocking; the async API runs these on tokio's
//! blocking pool.

use std::collections::{BTreeSet, HashSet};

use crate::catalog::{Catalog, Group, SegmentInfo};
use crate::codec::{self, Direction, EventKey};
use crate::describe::group_ref;
use crate::error::LogsError;
use crate::pattern::FilterPattern;
use crate::scan::{ScanEvent, ScanSpec, Scanner};
use crate::types::{
    FilterLogEventsOutput, FilterLogEventsRequest, FilteredLogEvent, GetLogEventsOutput,
    GetLogEventsRequest, OutputLogEvent, Scope,
};
use crate::validate::{self, DAY_MS, EVENT_OVERHEAD_BYTES, MAX_FILTER_PATTERN_CHARS};
use crate::writer::Shared;

/// A page holds at most this many events...
pub const MAX_PAGE_EVENTS: usize = 10_000;
/// ...and at most this many bytes (messages plus 26 bytes each).
pub const MAX_PAGE_BYTES: usize = 1_048_576;
/// FilterLogEvents: `startFromHead = false` needs a `startTime` from 2024 on.
const NEWEST_FIRST_FROM: i64 = 1_704_067_200_000;

fn bad_token() -> LogsError {
    LogsError::invalid("The specified nextToken is invalid.")
}

/// The oldest timestamp a group's retention still shows.
fn retention_floor(group: &Group, now: i64) -> i64 {
    match group.info.retention_days {
        Some(days) => now - i64::from(days) * DAY_MS,
        None => 0,
    }
}

fn segments_of(group: &Group, ids: Option<&BTreeSet<u64>>) -> Vec<SegmentInfo> {
    match ids {
        Some(ids) => ids
            .iter()
            .filter_map(|id| group.segments.get(id).cloned())
            .collect(),
        None => group.segments.values().cloned().collect(),
    }
}

pub fn get_log_events(
    shared: &Shared,
    scope: &Scope,
    req: &GetLogEventsRequest,
) -> Result<GetLogEventsOutput, LogsError> {
    let group_name = group_ref(
        scope,
        req.log_group_name.as_deref(),
        req.log_group_identifier.as_deref(),
    )?;
    validate::log_stream_name("logStreamName", &req.log_stream_name)?;
    if let Some(limit) = req.limit {
        validate::limit("limit", limit, 1, MAX_PAGE_EVENTS as i32)?;
    }
    if let Some(t) = req.start_time {
        validate::timestamp("startTime", t)?;
    }
    if let Some(t) = req.end_time {
        validate::timestamp("endTime", t)?;
    }
    let token = match &req.next_token {
        Some(t) => {
            validate::token("nextToken", t)?;
            Some(codec::parse_get_token(t).ok_or_else(bad_token)?)
        }
        None => None,
    };
    let now = shared.clock.now_millis();
    let spec = {
        let catalog = shared.published.read();
        let group = catalog
            .group(scope, &group_name)
            .ok_or_else(LogsError::group_not_found)?;
        let stream = group
            .stream(&req.log_stream_name)
            .ok_or_else(LogsError::stream_not_found)?;
        let lower = req.start_time.unwrap_or(0).max(retention_floor(group, now));
        // endTime is exclusive.
        let upper = req.end_time.map_or(i64::MAX, |t| t - 1);
        let (direction, after) = match token {
            Some((direction, key)) => (direction, Some(key)),
            None if req.start_from_head == Some(true) => (Direction::Forward, None),
            None => (Direction::Backward, None),
        };
        ScanSpec {
            group: group.info.id,
            segments: segments_of(group, Some(&stream.segments)),
            stream: Some(stream.id),
            streams: None,
            skip: HashSet::new(),
            lower,
            upper,
            direction,
            after,
            visible: catalog.next_seq,
        }
    };
    let limit = req.limit.map_or(MAX_PAGE_EVENTS, |l| l as usize);
    let (direction, after, lower, upper) = (spec.direction, spec.after, spec.lower, spec.upper);
    let mut scanner = Scanner::new(&shared.root, &shared.readers, spec);
    let mut found: Vec<ScanEvent> = Vec::new();
    let mut bytes = 0;
    while found.len() < limit {
        let Some(event) = scanner.next_event()? else {
            break;
        };
        let size = event.message.len() + EVENT_OVERHEAD_BYTES;
        if bytes + size > MAX_PAGE_BYTES && !found.is_empty() {
            break;
        }
        bytes += size;
        found.push(event);
    }
    drop(scanner);
    if direction == Direction::Backward {
        found.reverse();
    }
    // Tokens are positions between events: forward = after the last event
    // returned, backward = before the first. At the end of the stream the
    // token passed in comes back, which is how clients know to stop.
    let (forward, backward) = match (found.first(), found.last()) {
        (Some(first), Some(last)) => (last.key, first.key),
        _ => match (direction, after) {
            (Direction::Forward, Some(key)) => (key, key.succ()),
            (Direction::Backward, Some(key)) => (key.pred(), key),
            (Direction::Forward, None) => {
                let start = EventKey::new(lower, 0);
                (start, start)
            }
            (Direction::Backward, None) => {
                let end = EventKey::new(upper.min(i64::MAX - 1), u64::MAX);
                (end, end)
            }
        },
    };
    Ok(GetLogEventsOutput {
        events: found
            .into_iter()
            .map(|e| OutputLogEvent {
                timestamp: e.key.ts,
                message: e.message,
                ingestion_time: e.ingestion,
            })
            .collect(),
        next_forward_token: codec::get_token(Direction::Forward, forward),
        next_backward_token: codec::get_token(Direction::Backward, backward),
    })
}

/// Stops a FilterLogEvents page early so that a selective pattern over a
/// large range answers in bounded time; the token resumes the scan.
pub fn filter_log_events(
    shared: &Shared,
    scope: &Scope,
    req: &FilterLogEventsRequest,
    scan_budget: usize,
) -> Result<FilterLogEventsOutput, LogsError> {
    let group_name = group_ref(
        scope,
        req.log_group_name.as_deref(),
        req.log_group_identifier.as_deref(),
    )?;
    if req.log_stream_names.is_some() && req.log_stream_name_prefix.is_some() {
        return Err(LogsError::invalid(
            "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
        ));
    }
    if let Some(names) = &req.log_stream_names {
        if names.is_empty() || names.len() > 100 {
            return Err(LogsError::constraint(
                "logStreamNames",
                &format!("{} names", names.len()),
                "Member must have length between 1 and 100",
            ));
        }
        for name in names {
            validate::log_stream_name("logStreamNames.member", name)?;
        }
    }
    if let Some(prefix) = &req.log_stream_name_prefix {
        validate::log_stream_name("logStreamNamePrefix", prefix)?;
    }
    if let Some(limit) = req.limit {
        validate::limit("limit", limit, 1, MAX_PAGE_EVENTS as i32)?;
    }
    if let Some(t) = req.start_time {
        validate::timestamp("startTime", t)?;
    }
    if let Some(t) = req.end_time {
        validate::timestamp("endTime", t)?;
    }
    let pattern = req.filter_pattern.as_deref().unwrap_or("");
    if pattern.chars().count() > MAX_FILTER_PATTERN_CHARS {
        return Err(LogsError::constraint(
            "filterPattern",
            pattern,
            "Member must have length less than or equal to 1024",
        ));
    }
    let pattern = FilterPattern::parse(pattern)
        .map_err(|e| LogsError::invalid(format!("Invalid filter pattern: {e}")))?;
    let token = match &req.next_token {
        Some(t) => {
            validate::token("nextToken", t)?;
            Some(codec::parse_filter_token(t).ok_or_else(bad_token)?)
        }
        None => None,
    };
    let newest_first = req.start_from_head == Some(false);
    if newest_first && token.is_none() && req.start_time.is_some_and(|t| t < NEWEST_FIRST_FROM) {
        return Err(LogsError::invalid(
            "startFromHead false is supported only with a startTime on or after 2024-01-01T00:00:00Z.",
        ));
    }
    let now = shared.clock.now_millis();
    let spec = {
        let catalog: &Catalog = &shared.published.read();
        let group = catalog
            .group(scope, &group_name)
            .ok_or_else(LogsError::group_not_found)?;
        let selected: Option<Vec<&crate::catalog::StreamInfo>> =
            match (&req.log_stream_names, &req.log_stream_name_prefix) {
                (Some(names), _) => Some(names.iter().filter_map(|n| group.stream(n)).collect()),
                (None, Some(prefix)) => Some(
                    group
                        .streams
                        .range(prefix.clone()..)
                        .take_while(|(name, _)| name.starts_with(prefix.as_str()))
                        .filter_map(|(_, id)| group.stream_data.get(id))
                        .collect(),
                ),
                (None, None) => None,
            };
        let (segments, streams) = match &selected {
            Some(streams) => {
                let mut ids = BTreeSet::new();
                for s in streams {
                    ids.extend(s.segments.iter().copied());
                }
                (
                    segments_of(group, Some(&ids)),
                    Some(streams.iter().map(|s| s.id).collect::<HashSet<_>>()),
                )
            }
            None => (segments_of(group, None), None),
        };
        let (direction, after) = match token {
            Some((direction, key)) => (direction, Some(key)),
            None if newest_first => (Direction::Backward, None),
            None => (Direction::Forward, None),
        };
        ScanSpec {
            group: group.info.id,
            segments,
            stream: None,
            streams,
            skip: group.info.purging.keys().copied().collect(),
            lower: req.start_time.unwrap_or(0).max(retention_floor(group, now)),
            upper: req.end_time.unwrap_or(i64::MAX),
            direction,
            after,
            visible: catalog.next_seq,
        }
    };
    let direction = spec.direction;
    let limit = req.limit.map_or(MAX_PAGE_EVENTS, |l| l as usize);
    let mut scanner = Scanner::new(&shared.root, &shared.readers, spec);
    let mut found: Vec<ScanEvent> = Vec::new();
    let mut bytes = 0;
    let mut resume: Option<EventKey> = None;
    loop {
        if found.len() == limit {
            resume = found.last().map(|e| e.key);
            break;
        }
        if scanner.examined >= scan_budget {
            resume = scanner.last_key;
            break;
        }
        let Some(event) = scanner.next_event()? else {
            break;
        };
        if !pattern.matches(&event.message) {
            continue;
        }
        let size = event.message.len() + EVENT_OVERHEAD_BYTES;
        if bytes + size > MAX_PAGE_BYTES && !found.is_empty() {
            // This event starts the next page.
            resume = Some(match direction {
                Direction::Forward => event.key.pred(),
                Direction::Backward => event.key.succ(),
            });
            break;
        }
        bytes += size;
        found.push(event);
    }
    drop(scanner);
    let catalog = shared.published.read();
    let group = catalog.group(scope, &group_name);
    let events = found
        .into_iter()
        .filter_map(|e| {
            let name = group?.stream_data.get(&e.stream)?.name.clone();
            Some(FilteredLogEvent {
                log_stream_name: name,
                timestamp: e.key.ts,
                message: e.message,
                ingestion_time: e.ingestion,
                event_id: codec::event_id(e.key),
            })
        })
        .collect();
    Ok(FilterLogEventsOutput {
        events,
        next_token: resume.map(|key| codec::filter_token(direction, key)),
    })
}
