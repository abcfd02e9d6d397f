//! The log retention controller: CloudWatch Logs retention policies
//! (PutRetentionPolicy) are enforced by deleting, on a schedule, every
//! segment file of the log store whose events are all past their group's
//! retention (`LogStore::enforce_retention`).
//!
//! Why a schedule and not a reaction to writes: what expires depends only
//! on the clock, segments cover a day of ingestion each, and readers
//! already hide expired events, so a pass every few minutes deletes files
//! at most that much later than they could be, at the cost of one walk of
//! the catalog in the log store's writer. One key (the whole store): the
//! pass is cheap and the store decides per group.

use std::collections::BTreeSet;
use std::time::Duration;

use flotilla_logstore::LogStore;

use super::runtime::{Controller, Next};
use crate::core::State;

pub struct LogRetention {
    logs: LogStore,
    every: Duration,
    /// When the next pass is due (seconds since the epoch); a full resync
    /// before then does nothing.
    due: f64,
}

impl LogRetention {
    pub fn new(logs: LogStore, every: Duration) -> Self {
        LogRetention {
            logs,
            every,
            due: 0.0,
        }
    }
}

impl Controller for LogRetention {
    /// The whole log store.
    type Key = ();

    fn name(&self) -> &'static str {
        "log-retention"
    }

    /// Cluster state changes never make log events expire.
    fn touched(&mut self) -> BTreeSet<()> {
        BTreeSet::new()
    }

    fn all(&mut self, _: &State) -> BTreeSet<()> {
        BTreeSet::from([()])
    }

    async fn reconcile(&mut self, _: &State, keys: BTreeSet<()>, now: f64) -> Vec<((), Next)> {
        if keys.is_empty() {
            return Vec::new();
        }
        if now < self.due {
            return vec![((), Next::At(self.due))];
        }
        let now_ms = (now * 1000.0) as i64;
        match self.logs.enforce_retention(now_ms).await {
            Ok(report) => {
                if report.segments_deleted > 0 {
                    tracing::info!(
                        segments = report.segments_deleted,
                        bytes = report.bytes_deleted,
                        "deleted log segments past their group's retention"
                    );
                }
                self.due = now + self.every.as_secs_f64();
                vec![((), Next::At(self.due))]
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not enforce log retention");
                vec![((), Next::Retry)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flotilla_logstore::{
        CreateLogGroupRequest, FilterLogEventsRequest, InputLogEvent, ManualClock,
        PutLogEventsRequest, Scope, StoreOptions,
    };
    use flotilla_store::memory::MemoryStore;

    use super::*;

    const NOW: i64 = 1_750_000_000_000;
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    async fn put(logs: &LogStore, scope: &Scope, ts: i64, message: &str) {
        logs.put_log_events(
            scope,
            PutLogEventsRequest {
                log_group_name: "g".into(),
                log_stream_name: "s".into(),
                log_events: vec![InputLogEvent::new(ts, message)],
                sequence_token: None,
            },
        )
        .await
        .unwrap();
    }

    async fn stored(logs: &LogStore, scope: &Scope) -> Vec<String> {
        let out = logs
            .filter_log_events(
                scope,
                FilterLogEventsRequest {
                    log_group_name: Some("g".into()),
                    start_time: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        out.events.into_iter().map(|e| e.message).collect()
    }

    /// A pass deletes the segment whose events are all past the retention,
    /// keeps the newer one, and the next pass waits for its due time.
    #[tokio::test]
    async fn expired_segments_are_deleted_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(NOW));
        let options = StoreOptions {
            segment_duration: Duration::from_secs(3600),
            ..Default::default()
        };
        let logs = LogStore::open_with(dir.path(), options, clock.clone()).unwrap();
        let scope = Scope::new("123456789012", "us-east-1");
        logs.create_log_group(
            &scope,
            CreateLogGroupRequest {
                log_group_name: "g".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        logs.create_log_stream(&scope, "g", "s").await.unwrap();
        put(&logs, &scope, NOW, "old").await;
        clock.advance(DAY + 12 * HOUR);
        put(&logs, &scope, NOW + DAY + 12 * HOUR, "new").await;
        logs.put_retention_policy(&scope, "g", 1).await.unwrap();

        let state = State::open(Arc::new(MemoryStore::new())).unwrap();
        let mut controller = LogRetention::new(logs.clone(), Duration::from_secs(600));
        let at = (NOW + 2 * DAY + HOUR) as f64 / 1000.0;
        let keys = controller.all(&state);
        let next = controller.reconcile(&state, keys, at).await;
        assert_eq!(next, [((), Next::At(at + 600.0))]);
        assert_eq!(stored(&logs, &scope).await, ["new"]);
        let segments = std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .flat_map(|g| std::fs::read_dir(g.unwrap().path()).unwrap())
            .filter(|f| {
                f.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|e| e == "db")
            })
            .count();
        assert_eq!(segments, 1, "the expired segment's file is gone");

        // Before its due time a full resync does nothing.
        let keys = controller.all(&state);
        let next = controller.reconcile(&state, keys, at + 300.0).await;
        assert_eq!(next, [((), Next::At(at + 600.0))]);
        assert_eq!(stored(&logs, &scope).await, ["new"]);
        logs.close();
    }
}
