//! What each write does to the catalog: the rules that need the current
//! state (existence, sequence tokens, retention, limits), applied by the
//! writer to its working catalog one request at a time. Pure: no I/O. The
//! bytes to store and the files to create or remove are collected in the
//! [`Round`] for the writer to carry out.

use std::collections::BTreeSet;
use std::ops::Range;

use crate::catalog::{
    Catalog, Change, Changes, GroupId, GroupInfo, SegmentId, SegmentInfo, StreamId, StreamInfo,
};
use crate::codec::{self, sequence_token};
use crate::error::LogsError;
use crate::types::{
    CreateLogGroupRequest, InputLogEvent, PutLogEventsOutput, RetentionReport, Scope, Tags,
};
use crate::validate::{self, DAY_MS, MAX_TAGS};

/// Engine limits that rules depend on (see [`crate::StoreOptions`]).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_groups_per_scope: usize,
    pub segment_duration_ms: i64,
    pub segment_max_bytes: u64,
}

/// A write request, checked for shape already (see `validate`).
#[derive(Debug)]
pub enum Command {
    CreateGroup {
        scope: Scope,
        request: CreateLogGroupRequest,
    },
    DeleteGroup {
        scope: Scope,
        name: String,
    },
    PutRetention {
        scope: Scope,
        name: String,
        days: i32,
    },
    DeleteRetention {
        scope: Scope,
        name: String,
    },
    PutDeletionProtection {
        scope: Scope,
        name: String,
        enabled: bool,
    },
    Tag {
        scope: Scope,
        name: String,
        tags: Tags,
    },
    Untag {
        scope: Scope,
        name: String,
        keys: Vec<String>,
    },
    CreateStream {
        scope: Scope,
        group: String,
        stream: String,
    },
    DeleteStream {
        scope: Scope,
        group: String,
        stream: String,
    },
    Put(PutCommand),
    EnforceRetention {
        now: i64,
    },
}

/// PutLogEvents, with the work that needs no state done by the caller.
#[derive(Debug)]
pub struct PutCommand {
    pub scope: Scope,
    pub group: String,
    pub stream: String,
    pub sequence_token: Option<String>,
    pub events: Vec<InputLogEvent>,
    /// [`codec::batch_hash`] of `events`.
    pub hash: [u8; 32],
    /// `events` encoded whole, used when none is rejected.
    pub frame: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Put(PutLogEventsOutput),
    Retention(RetentionReport),
}

/// A frame to append to a segment file.
#[derive(Debug)]
pub struct PendingFrame {
    pub group: GroupId,
    pub segment: SegmentId,
    /// The sequence number of its first event; the next ones follow.
    pub seq: u64,
    pub stream: StreamId,
    pub min_ts: i64,
    pub max_ts: i64,
    pub count: u32,
    pub ingestion: i64,
    pub data: Vec<u8>,
}

/// Everything one group commit does.
#[derive(Debug, Default)]
pub struct Round {
    pub changes: Changes,
    pub frames: Vec<PendingFrame>,
    /// Segment files to create before the frames are written.
    pub created_segments: Vec<(GroupId, SegmentId)>,
    /// Segments that stop taking writes (their writer connections close).
    pub sealed_segments: Vec<(GroupId, SegmentId)>,
    /// Directories and files to remove once the round is durable.
    pub removed_groups: Vec<(GroupId, Vec<SegmentId>)>,
    pub removed_segments: Vec<(GroupId, SegmentId)>,
}

impl Round {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.frames.is_empty()
    }
}

impl Catalog {
    fn record(&mut self, round: &mut Round, change: Change) {
        self.apply(&change);
        round.changes.push(change);
    }

    fn group_or_not_found(&self, scope: &Scope, name: &str) -> Result<GroupId, LogsError> {
        self.group_id(scope, name)
            .ok_or_else(LogsError::group_not_found)
    }

    fn info(&self, id: GroupId) -> GroupInfo {
        self.groups[&id].info.clone()
    }

    /// Runs one command against this (working) catalog at time `now`.
    pub fn execute(
        &mut self,
        round: &mut Round,
        command: Command,
        now: i64,
        limits: &Limits,
    ) -> Result<Outcome, LogsError> {
        match command {
            Command::CreateGroup { scope, request } => {
                if self.group_id(&scope, &request.log_group_name).is_some() {
                    return Err(LogsError::ResourceAlreadyExists {
                        message: "The specified log group already exists".into(),
                    });
                }
                if self.group_count(&scope) >= limits.max_groups_per_scope {
                    return Err(LogsError::LimitExceeded {
                        message: "Resource limit exceeded.".into(),
                    });
                }
                let id = self.take_id();
                let info = GroupInfo {
                    id,
                    scope,
                    name: request.log_group_name,
                    creation_time: now,
                    retention_days: None,
                    kms_key_id: request.kms_key_id,
                    class: request.log_group_class.unwrap_or_default(),
                    deletion_protection: request.deletion_protection_enabled.unwrap_or(false),
                    tags: request.tags.unwrap_or_default(),
                    purging: Default::default(),
                };
                self.record(round, Change::Group(info));
                Ok(Outcome::Done)
            }
            Command::DeleteGroup { scope, name } => {
                let id = self.group_or_not_found(&scope, &name)?;
                if self.groups[&id].info.deletion_protection {
                    return Err(LogsError::Validation {
                        message: format!(
                            "Log group {name} has deletion protection enabled; disable it with PutLogGroupDeletionProtection first"
                        ),
                    });
                }
                let segments = self.groups[&id].segments.keys().copied().collect();
                self.record(round, Change::GroupDeleted(id));
                round.removed_groups.push((id, segments));
                Ok(Outcome::Done)
            }
            Command::PutRetention { scope, name, days } => {
                let id = self.group_or_not_found(&scope, &name)?;
                let mut info = self.info(id);
                info.retention_days = Some(days);
                self.record(round, Change::Group(info));
                Ok(Outcome::Done)
            }
            Command::DeleteRetention { scope, name } => {
                let id = self.group_or_not_found(&scope, &name)?;
                let mut info = self.info(id);
                info.retention_days = None;
                self.record(round, Change::Group(info));
                Ok(Outcome::Done)
            }
            Command::PutDeletionProtection {
                scope,
                name,
                enabled,
            } => {
                let id = self.group_or_not_found(&scope, &name)?;
                let mut info = self.info(id);
                info.deletion_protection = enabled;
                self.record(round, Change::Group(info));
                Ok(Outcome::Done)
            }
            Command::Tag { scope, name, tags } => {
                let id = self.group_or_not_found(&scope, &name)?;
                let mut info = self.info(id);
                info.tags.extend(tags);
                if info.tags.len() > MAX_TAGS {
                    return Err(LogsError::TooManyTags {
                        message: format!("A resource can have no more than {MAX_TAGS} tags."),
                        resource_name: scope.log_group_arn(&name),
                    });
                }
                self.record(round, Change::Group(info));
                Ok(Outcome::Done)
            }
            Command::Untag { scope, name, keys } => {
                let id = self.group_or_not_found(&scope, &name)?;
                let mut info = self.info(id);
                for key in &keys {
                    info.tags.remove(key);
                }
                self.record(round, Change::Group(info));
                Ok(Outcome::Done)
            }
            Command::CreateStream {
                scope,
                group,
                stream,
            } => {
                let gid = self.group_or_not_found(&scope, &group)?;
                if self.groups[&gid].stream(&stream).is_some() {
                    return Err(LogsError::ResourceAlreadyExists {
                        message: "The specified log stream already exists".into(),
                    });
                }
                let id = self.take_id();
                let info = StreamInfo {
                    id,
                    group: gid,
                    name: stream,
                    creation_time: now,
                    first_ts: None,
                    last_ts: None,
                    last_ingestion: None,
                    batches: 0,
                    last_hash: None,
                    segments: BTreeSet::new(),
                };
                self.record(round, Change::Stream(info));
                Ok(Outcome::Done)
            }
            Command::DeleteStream {
                scope,
                group,
                stream,
            } => {
                let gid = self.group_or_not_found(&scope, &group)?;
                let info = self.groups[&gid]
                    .stream(&stream)
                    .cloned()
                    .ok_or_else(LogsError::stream_not_found)?;
                self.record(
                    round,
                    Change::StreamDeleted {
                        group: gid,
                        stream: info.id,
                    },
                );
                if !info.segments.is_empty() {
                    let mut group_info = self.info(gid);
                    group_info.purging.insert(info.id, info.segments);
                    self.record(round, Change::Group(group_info));
                }
                Ok(Outcome::Done)
            }
            Command::Put(put) => self.put(round, put, now, limits).map(Outcome::Put),
            Command::EnforceRetention { now } => Ok(Outcome::Retention(self.expire(round, now))),
        }
    }

    fn put(
        &mut self,
        round: &mut Round,
        put: PutCommand,
        now: i64,
        limits: &Limits,
    ) -> Result<PutLogEventsOutput, LogsError> {
        let gid = self.group_or_not_found(&put.scope, &put.group)?;
        let group = &self.groups[&gid];
        let mut stream = group
            .stream(&put.stream)
            .cloned()
            .ok_or_else(LogsError::stream_not_found)?;
        let current = sequence_token(stream.id, stream.batches);
        if let Some(token) = &put.sequence_token {
            if Some(token) != current.as_ref() {
                let previous = stream
                    .batches
                    .checked_sub(1)
                    .and_then(|n| sequence_token(stream.id, n));
                if previous.as_ref() == Some(token) && stream.last_hash == Some(put.hash) {
                    return Err(LogsError::DataAlreadyAccepted {
                        expected_sequence_token: current,
                    });
                }
                return Err(LogsError::InvalidSequenceToken {
                    expected_sequence_token: current,
                });
            }
        }
        let (range, rejected) = validate::classify(&put.events, now, group.info.retention_days);
        validate::span(&put.events[range.clone()])?;
        if !range.is_empty() {
            let frame = if range == (0..put.events.len()) {
                put.frame
            } else {
                codec::encode_frame(&put.events[range.clone()])
            };
            self.append(
                round,
                gid,
                &mut stream,
                &put.events,
                range,
                frame,
                now,
                limits,
            );
        }
        stream.batches += 1;
        stream.last_hash = Some(put.hash);
        let next = sequence_token(stream.id, stream.batches);
        self.record(round, Change::Stream(stream));
        Ok(PutLogEventsOutput {
            next_sequence_token: next,
            rejected_log_events_info: rejected,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        round: &mut Round,
        gid: GroupId,
        stream: &mut StreamInfo,
        events: &[InputLogEvent],
        range: Range<usize>,
        frame: Vec<u8>,
        now: i64,
        limits: &Limits,
    ) {
        let events = &events[range];
        let min_ts = events[0].timestamp;
        let max_ts = events[events.len() - 1].timestamp;
        let mut segment = self.segment_for_append(round, gid, now, limits);
        if segment.frames == 0 {
            segment.min_ts = min_ts;
            segment.max_ts = max_ts;
        } else {
            segment.min_ts = segment.min_ts.min(min_ts);
            segment.max_ts = segment.max_ts.max(max_ts);
        }
        segment.max_span = segment.max_span.max(max_ts - min_ts);
        segment.bytes += frame.len() as u64;
        segment.frames += 1;
        segment.events += events.len() as u64;
        let segment_id = segment.id;
        self.record(round, Change::Segment(segment));
        if stream.segments.insert(segment_id) {
            round.changes.push(Change::Member {
                group: gid,
                stream: stream.id,
                segment: segment_id,
            });
        }
        stream.first_ts = Some(stream.first_ts.map_or(min_ts, |t| t.min(min_ts)));
        stream.last_ts = Some(stream.last_ts.map_or(max_ts, |t| t.max(max_ts)));
        stream.last_ingestion = Some(now);
        let seq = self.next_seq;
        self.next_seq += events.len() as u64;
        round.frames.push(PendingFrame {
            group: gid,
            segment: segment_id,
            seq,
            stream: stream.id,
            min_ts,
            max_ts,
            count: events.len() as u32,
            ingestion: now,
            data: frame,
        });
    }

    /// The group's active segment, or a new one when there is none or it is
    /// due to roll (old or big enough).
    fn segment_for_append(
        &mut self,
        round: &mut Round,
        gid: GroupId,
        now: i64,
        limits: &Limits,
    ) -> SegmentInfo {
        let active = self.groups[&gid].active_segment().cloned();
        if let Some(segment) = &active {
            if now - segment.created < limits.segment_duration_ms
                && segment.bytes < limits.segment_max_bytes
            {
                return segment.clone();
            }
        }
        if let Some(mut old) = active {
            old.sealed = true;
            round.sealed_segments.push((gid, old.id));
            self.record(round, Change::Segment(old));
        }
        let segment = SegmentInfo {
            id: self.take_id(),
            group: gid,
            created: now,
            min_ts: 0,
            max_ts: 0,
            max_span: 0,
            bytes: 0,
            frames: 0,
            events: 0,
            sealed: false,
        };
        round.created_segments.push((gid, segment.id));
        segment
    }

    /// Deletes every segment whose events are all older than its group's
    /// retention period.
    fn expire(&mut self, round: &mut Round, now: i64) -> RetentionReport {
        let mut doomed = Vec::new();
        for group in self.groups.values() {
            let Some(days) = group.info.retention_days else {
                continue;
            };
            let cutoff = now - i64::from(days) * DAY_MS;
            for segment in group.segments.values() {
                if segment.frames > 0 && segment.max_ts < cutoff {
                    doomed.push((group.info.id, segment.id, segment.bytes));
                }
            }
        }
        let mut report = RetentionReport::default();
        for (group, segment, bytes) in doomed {
            self.record(round, Change::SegmentDeleted { group, segment });
            round.removed_segments.push((group, segment));
            report.segments_deleted += 1;
            report.bytes_deleted += bytes;
        }
        report
    }

    /// The idle writer finished deleting a deleted stream's frames from
    /// one segment.
    pub fn purged(
        &mut self,
        round: &mut Round,
        group: GroupId,
        stream: StreamId,
        segment: SegmentId,
    ) {
        let Some(g) = self.groups.get(&group) else {
            return;
        };
        let mut info = g.info.clone();
        if let Some(segments) = info.purging.get_mut(&stream) {
            segments.remove(&segment);
            if segments.is_empty() {
                info.purging.remove(&stream);
            }
            self.record(round, Change::Group(info));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RejectedLogEventsInfo;
    use crate::validate::HOUR_MS;

    const NOW: i64 = 1_000 * DAY_MS;

    fn limits() -> Limits {
        Limits {
            max_groups_per_scope: 3,
            segment_duration_ms: DAY_MS,
            segment_max_bytes: 1 << 20,
        }
    }

    fn scope() -> Scope {
        Scope::new("123456789012", "us-east-1")
    }

    fn run(catalog: &mut Catalog, command: Command) -> Result<Outcome, LogsError> {
        run_at(catalog, command, NOW)
    }

    fn run_at(catalog: &mut Catalog, command: Command, now: i64) -> Result<Outcome, LogsError> {
        let mut round = Round::default();
        catalog.execute(&mut round, command, now, &limits())
    }

    fn setup() -> Catalog {
        let mut c = Catalog {
            next_id: 1,
            next_seq: 1,
            ..Default::default()
        };
        run(
            &mut c,
            Command::CreateGroup {
                scope: scope(),
                request: CreateLogGroupRequest {
                    log_group_name: "g".into(),
                    ..Default::default()
                },
            },
        )
        .unwrap();
        run(
            &mut c,
            Command::CreateStream {
                scope: scope(),
                group: "g".into(),
                stream: "s".into(),
            },
        )
        .unwrap();
        c
    }

    fn put(token: Option<&str>, events: Vec<InputLogEvent>) -> Command {
        Command::Put(PutCommand {
            scope: scope(),
            group: "g".into(),
            stream: "s".into(),
            sequence_token: token.map(str::to_owned),
            hash: codec::batch_hash(&events),
            frame: codec::encode_frame(&events),
            events,
        })
    }

    fn put_ok(
        c: &mut Catalog,
        token: Option<&str>,
        events: Vec<InputLogEvent>,
    ) -> PutLogEventsOutput {
        match run(c, put(token, events)).unwrap() {
            Outcome::Put(out) => out,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn groups_and_streams_exist_once() {
        let mut c = setup();
        let again = run(
            &mut c,
            Command::CreateGroup {
                scope: scope(),
                request: CreateLogGroupRequest {
                    log_group_name: "g".into(),
                    ..Default::default()
                },
            },
        );
        assert_eq!(again.unwrap_err().code(), "ResourceAlreadyExistsException");
        // The same name in another account is another group.
        let other = Scope::new("210987654321", "us-east-1");
        run(
            &mut c,
            Command::CreateGroup {
                scope: other.clone(),
                request: CreateLogGroupRequest {
                    log_group_name: "g".into(),
                    ..Default::default()
                },
            },
        )
        .unwrap();
        let again = run(
            &mut c,
            Command::CreateStream {
                scope: scope(),
                group: "g".into(),
                stream: "s".into(),
            },
        );
        assert_eq!(again.unwrap_err().code(), "ResourceAlreadyExistsException");
        let missing = run(
            &mut c,
            Command::CreateStream {
                scope: scope(),
                group: "nope".into(),
                stream: "s".into(),
            },
        );
        assert_eq!(missing.unwrap_err(), LogsError::group_not_found());
    }

    #[test]
    fn group_limit_per_scope() {
        let mut c = setup();
        for name in ["b", "c"] {
            run(
                &mut c,
                Command::CreateGroup {
                    scope: scope(),
                    request: CreateLogGroupRequest {
                        log_group_name: name.into(),
                        ..Default::default()
                    },
                },
            )
            .unwrap();
        }
        let e = run(
            &mut c,
            Command::CreateGroup {
                scope: scope(),
                request: CreateLogGroupRequest {
                    log_group_name: "d".into(),
                    ..Default::default()
                },
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "LimitExceededException");
    }

    #[test]
    fn sequence_tokens_make_resends_idempotent() {
        let mut c = setup();
        let batch1 = vec![InputLogEvent::new(NOW, "one")];
        let out1 = put_ok(&mut c, None, batch1.clone());
        let t1 = out1.next_sequence_token.clone().unwrap();
        assert_eq!(out1.rejected_log_events_info, None);

        let batch2 = vec![InputLogEvent::new(NOW, "two")];
        let out2 = put_ok(&mut c, Some(&t1), batch2.clone());
        let t2 = out2.next_sequence_token.clone().unwrap();
        assert_ne!(t1, t2);

        // The same batch with the token it was accepted with: already accepted.
        let e = run(&mut c, put(Some(&t1), batch2.clone())).unwrap_err();
        assert_eq!(
            e,
            LogsError::DataAlreadyAccepted {
                expected_sequence_token: Some(t2.clone())
            }
        );
        // The previous token with another batch, or any other token: invalid.
        let e = run(&mut c, put(Some(&t1), batch1.clone())).unwrap_err();
        assert_eq!(
            e,
            LogsError::InvalidSequenceToken {
                expected_sequence_token: Some(t2.clone())
            }
        );
        let e = run(&mut c, put(Some("12345"), batch1.clone())).unwrap_err();
        assert_eq!(e.code(), "InvalidSequenceTokenException");
        // Without a token: always accepted (modern clients).
        let out3 = put_ok(&mut c, None, batch1.clone());
        assert_ne!(out3.next_sequence_token.unwrap(), t2);
        let stream = c.group(&scope(), "g").unwrap().stream("s").unwrap();
        assert_eq!(stream.batches, 3);
        assert_eq!(c.next_seq, 4, "three events stored");
    }

    #[test]
    fn a_token_for_a_fresh_stream_is_invalid_with_no_expected_token() {
        let mut c = setup();
        let e = run(&mut c, put(Some("1"), vec![InputLogEvent::new(NOW, "x")])).unwrap_err();
        assert_eq!(
            e,
            LogsError::InvalidSequenceToken {
                expected_sequence_token: None
            }
        );
    }

    #[test]
    fn rejected_events_are_reported_and_the_rest_stored() {
        let mut c = setup();
        let events = vec![
            InputLogEvent::new(NOW - 15 * DAY_MS, "old"),
            InputLogEvent::new(NOW - HOUR_MS, "kept 1"),
            InputLogEvent::new(NOW, "kept 2"),
            InputLogEvent::new(NOW + 3 * HOUR_MS, "new"),
        ];
        let mut round = Round::default();
        let out = match c
            .execute(&mut round, put(None, events), NOW, &limits())
            .unwrap()
        {
            Outcome::Put(out) => out,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            out.rejected_log_events_info,
            Some(RejectedLogEventsInfo {
                too_new_log_event_start_index: Some(3),
                too_old_log_event_end_index: Some(1),
                expired_log_event_end_index: None,
            })
        );
        assert_eq!(round.frames.len(), 1);
        let frame = &round.frames[0];
        assert_eq!(
            (frame.count, frame.min_ts, frame.max_ts),
            (2, NOW - HOUR_MS, NOW)
        );
        let decoded = codec::decode_frame(&frame.data, frame.min_ts, 2).unwrap();
        assert_eq!(decoded[0].message, "kept 1");
        let stream = c.group(&scope(), "g").unwrap().stream("s").unwrap();
        assert_eq!(stream.first_ts, Some(NOW - HOUR_MS));
        assert_eq!(stream.last_ts, Some(NOW));
        assert_eq!(stream.last_ingestion, Some(NOW));
    }

    #[test]
    fn the_24_hour_span_applies_to_the_events_kept() {
        let mut c = setup();
        // 15 days apart, but the old one is rejected: the rest spans 0.
        let events = vec![
            InputLogEvent::new(NOW - 15 * DAY_MS, "old"),
            InputLogEvent::new(NOW, "kept"),
        ];
        assert!(run(&mut c, put(None, events)).is_ok());
        let events = vec![
            InputLogEvent::new(NOW - 2 * DAY_MS, "a"),
            InputLogEvent::new(NOW, "b"),
        ];
        let e = run(&mut c, put(None, events)).unwrap_err();
        assert!(
            e.to_string().contains("cannot span more than 24 hours"),
            "{e}"
        );
        let stream = c.group(&scope(), "g").unwrap().stream("s").unwrap();
        assert_eq!(
            stream.batches, 1,
            "a refused batch does not advance the token"
        );
    }

    #[test]
    fn a_batch_entirely_rejected_stores_nothing_but_advances_the_token() {
        let mut c = setup();
        let mut round = Round::default();
        let out = match c
            .execute(
                &mut round,
                put(None, vec![InputLogEvent::new(0, "ancient")]),
                NOW,
                &limits(),
            )
            .unwrap()
        {
            Outcome::Put(out) => out,
            other => panic!("{other:?}"),
        };
        assert!(round.frames.is_empty());
        assert!(out.next_sequence_token.is_some());
        assert_eq!(
            out.rejected_log_events_info
                .unwrap()
                .too_old_log_event_end_index,
            Some(1)
        );
    }

    #[test]
    fn segments_roll_by_age_and_size() {
        let mut c = setup();
        let e = || vec![InputLogEvent::new(NOW, "x")];
        run_at(&mut c, put(None, e()), NOW).unwrap();
        run_at(&mut c, put(None, e()), NOW + 1).unwrap();
        assert_eq!(c.group(&scope(), "g").unwrap().segments.len(), 1);
        let mut round = Round::default();
        c.execute(&mut round, put(None, e()), NOW + DAY_MS, &limits())
            .unwrap();
        let group = c.group(&scope(), "g").unwrap();
        assert_eq!(group.segments.len(), 2);
        assert_eq!(round.sealed_segments.len(), 1);
        assert_eq!(round.created_segments.len(), 1);
        assert_eq!(group.segments.values().filter(|s| !s.sealed).count(), 1);
        assert_eq!(group.stream("s").unwrap().segments.len(), 2);
    }

    #[test]
    fn retention_deletes_whole_expired_segments() {
        let mut c = setup();
        let e = |ts| vec![InputLogEvent::new(ts, "x")];
        run_at(&mut c, put(None, e(NOW)), NOW).unwrap();
        run_at(&mut c, put(None, e(NOW + 2 * DAY_MS)), NOW + 2 * DAY_MS).unwrap();
        run(
            &mut c,
            Command::PutRetention {
                scope: scope(),
                name: "g".into(),
                days: 1,
            },
        )
        .unwrap();
        let mut round = Round::default();
        let out = c
            .execute(
                &mut round,
                Command::EnforceRetention {
                    now: NOW + 2 * DAY_MS + 1,
                },
                NOW,
                &limits(),
            )
            .unwrap();
        let Outcome::Retention(report) = out else {
            panic!()
        };
        assert_eq!(report.segments_deleted, 1);
        assert_eq!(round.removed_segments.len(), 1);
        let group = c.group(&scope(), "g").unwrap();
        assert_eq!(group.segments.len(), 1);
        assert_eq!(group.stream("s").unwrap().segments.len(), 1);
        // The expired events of a batch are reported as such.
        let mut round = Round::default();
        let out = c
            .execute(
                &mut round,
                put(None, e(NOW + DAY_MS - 1)),
                NOW + 2 * DAY_MS,
                &limits(),
            )
            .unwrap();
        let Outcome::Put(out) = out else { panic!() };
        assert_eq!(
            out.rejected_log_events_info
                .unwrap()
                .expired_log_event_end_index,
            Some(1)
        );
    }

    #[test]
    fn deleting_a_stream_schedules_its_frames_for_purging() {
        let mut c = setup();
        run(&mut c, put(None, vec![InputLogEvent::new(NOW, "x")])).unwrap();
        run(
            &mut c,
            Command::DeleteStream {
                scope: scope(),
                group: "g".into(),
                stream: "s".into(),
            },
        )
        .unwrap();
        let group = c.group(&scope(), "g").unwrap();
        assert!(group.stream("s").is_none());
        assert_eq!(group.info.purging.len(), 1);
        let (&sid, segs) = group.info.purging.iter().next().unwrap();
        let seg = *segs.iter().next().unwrap();
        let gid = group.info.id;
        let mut round = Round::default();
        c.purged(&mut round, gid, sid, seg);
        assert!(c.group(&scope(), "g").unwrap().info.purging.is_empty());
        let e = run(
            &mut c,
            Command::DeleteStream {
                scope: scope(),
                group: "g".into(),
                stream: "s".into(),
            },
        )
        .unwrap_err();
        assert_eq!(e, LogsError::stream_not_found());
    }

    #[test]
    fn deletion_protection_blocks_delete() {
        let mut c = setup();
        run(
            &mut c,
            Command::PutDeletionProtection {
                scope: scope(),
                name: "g".into(),
                enabled: true,
            },
        )
        .unwrap();
        let e = run(
            &mut c,
            Command::DeleteGroup {
                scope: scope(),
                name: "g".into(),
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "ValidationException");
    }

    #[test]
    fn tags_merge_and_are_capped() {
        let mut c = setup();
        let tags: Tags = (0..50).map(|i| (format!("k{i}"), "v".into())).collect();
        run(
            &mut c,
            Command::Tag {
                scope: scope(),
                name: "g".into(),
                tags,
            },
        )
        .unwrap();
        let one: Tags = [("extra".to_string(), "v".to_string())].into();
        let e = run(
            &mut c,
            Command::Tag {
                scope: scope(),
                name: "g".into(),
                tags: one.clone(),
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "TooManyTagsException");
        assert_eq!(
            c.group(&scope(), "g").unwrap().info.tags.len(),
            50,
            "unchanged"
        );
        run(
            &mut c,
            Command::Untag {
                scope: scope(),
                name: "g".into(),
                keys: vec!["k0".into(), "absent".into()],
            },
        )
        .unwrap();
        run(
            &mut c,
            Command::Tag {
                scope: scope(),
                name: "g".into(),
                tags: one,
            },
        )
        .unwrap();
        let tags = &c.group(&scope(), "g").unwrap().info.tags;
        assert_eq!(tags.len(), 50);
        assert!(tags.contains_key("extra") && !tags.contains_key("k0"));
    }
}
