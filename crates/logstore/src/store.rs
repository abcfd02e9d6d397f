//! [`LogStore`]: the engine's API. Writes check what needs no state, then
//! queue a command for the writer thread and await its durable answer;
//! metadata reads answer from the published catalog; event reads run on
//! tokio's blocking pool, a few at a time.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, Semaphore};
use tracing::{error, info, warn};

use crate::catalog::Catalog;
use crate::clock::{Clock, SystemClock};
use crate::codec;
use crate::commands::{Command, Limits, Outcome, PutCommand};
use crate::describe;
use crate::error::{LogsError, StoreError};
use crate::meta;
use crate::read;
use crate::scan::ReaderPool;
use crate::segment;
use crate::types::*;
use crate::validate;
use crate::writer::{self, Request, Shared, Writer};

/// Tuning and limits. The defaults suit a control plane.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// CreateLogGroup fails with LimitExceededException past this many
    /// groups in one account and region (AWS: 1,000,000).
    pub max_log_groups_per_scope: usize,
    /// A group's active segment is sealed and a new one started after this
    /// long. Retention deletes whole segments, so events outlive their
    /// retention by up to this much (plus the 2 hours events may come
    /// early); they are hidden from reads once expired.
    pub segment_duration: Duration,
    /// ...or once it holds this many bytes.
    pub segment_max_bytes: u64,
    /// The most requests one group commit takes.
    pub max_round_requests: usize,
    /// The most event bytes one group commit takes (bounds its latency).
    pub max_round_bytes: usize,
    /// FilterLogEvents looks at most this many events per page before it
    /// returns what it found with a `nextToken`.
    pub filter_scan_budget: usize,
    /// Event reads running at once; more wait their turn.
    pub concurrent_reads: usize,
    /// Idle read connections kept open.
    pub reader_pool_size: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_log_groups_per_scope: 1_000_000,
            segment_duration: Duration::from_secs(24 * 3600),
            segment_max_bytes: 256 << 20,
            max_round_requests: 4096,
            max_round_bytes: 32 << 20,
            filter_scan_budget: 1_000_000,
            concurrent_reads: 4,
            reader_pool_size: 64,
        }
    }
}

/// The CloudWatch Logs storage engine. Cheap to clone (a handle); the
/// writer stops when the last handle is closed or dropped.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    queue: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reads: Semaphore,
    /// Batches being hashed and compressed at once: bounded, so a flood of
    /// writes cannot crowd readers off the CPU.
    encodes: Semaphore,
    options: StoreOptions,
}

impl Drop for Inner {
    fn drop(&mut self) {
        close(&self.queue, &self.writer);
    }
}

fn close(queue: &Mutex<Option<mpsc::Sender<Request>>>, writer: &Mutex<Option<JoinHandle<()>>>) {
    drop(queue.lock().take());
    if let Some(handle) = writer.lock().take() {
        if handle.join().is_err() {
            error!("log store writer thread panicked");
        }
    }
}

/// Blocking pool work that panicked or was cancelled.
fn join_error(e: tokio::task::JoinError) -> LogsError {
    LogsError::unavailable(format!("read task failed: {e}"))
}

impl LogStore {
    /// Opens (creating if needed) the store in `dir` with default options
    /// and the system clock.
    pub fn open(dir: &Path) -> Result<LogStore, LogsError> {
        Self::open_with(dir, StoreOptions::default(), Arc::new(SystemClock))
    }

    /// Opens the store in `dir`, recovering from a crash: frames of a
    /// round that never committed are deleted, and files no committed
    /// round registered are removed.
    pub fn open_with(
        dir: &Path,
        options: StoreOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<LogStore, LogsError> {
        Ok(Self::open_inner(dir, options, clock)?)
    }

    fn open_inner(
        dir: &Path,
        options: StoreOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<LogStore, StoreError> {
        fs::create_dir_all(segment::segments_dir(dir))?;
        segment::sync_dir(dir)?;
        let meta_conn = meta::open(&dir.join("meta.db"))?;
        segment::sync_dir(dir)?;
        let catalog = meta::load(&meta_conn)?;
        sweep_orphans(dir, &catalog)?;
        let purged = writer::purge_uncommitted(dir, &catalog)?;
        if purged > 0 {
            warn!(
                frames = purged,
                "deleted frames of a round that never committed (a crash before its commit)"
            );
        }
        let shared = Arc::new(Shared {
            root: dir.to_owned(),
            published: RwLock::new(catalog.clone()),
            readers: ReaderPool::new(options.reader_pool_size),
            clock,
            #[cfg(test)]
            fail_next_commit: Default::default(),
        });
        let limits = Limits {
            max_groups_per_scope: options.max_log_groups_per_scope,
            segment_duration_ms: i64::try_from(options.segment_duration.as_millis())
                .unwrap_or(i64::MAX),
            segment_max_bytes: options.segment_max_bytes,
        };
        let (tx, rx) = mpsc::channel();
        let groups = catalog.groups.len();
        let writer = Writer::new(
            Arc::clone(&shared),
            meta_conn,
            catalog,
            limits,
            options.max_round_requests,
            options.max_round_bytes,
            rx,
        );
        let handle = std::thread::Builder::new()
            .name("flotilla-logstore-writer".into())
            .spawn(move || writer.run())?;
        info!(dir = %dir.display(), groups, "log store opened");
        Ok(LogStore {
            inner: Arc::new(Inner {
                shared,
                queue: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                reads: Semaphore::new(options.concurrent_reads.max(1)),
                encodes: Semaphore::new(
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                ),
                options,
            }),
        })
    }

    /// Stops taking writes and waits until every write already queued is
    /// durable and answered. Later writes fail; reads keep working.
    pub fn close(&self) {
        close(&self.inner.queue, &self.inner.writer);
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.root
    }

    async fn submit(&self, command: Command, bytes: usize) -> Result<Outcome, LogsError> {
        let (reply, answer) = oneshot::channel();
        let sent = match &*self.inner.queue.lock() {
            Some(queue) => queue
                .send(Request {
                    command,
                    bytes,
                    reply,
                })
                .is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Closed.into());
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Closed.into()))
    }

    async fn submit_unit(&self, command: Command) -> Result<(), LogsError> {
        self.submit(command, 0).await.map(|_| ())
    }

    /// CreateLogGroup.
    pub async fn create_log_group(
        &self,
        scope: &Scope,
        request: CreateLogGroupRequest,
    ) -> Result<(), LogsError> {
        validate::new_log_group_name(&request.log_group_name)?;
        if let Some(kms) = &request.kms_key_id {
            if kms.chars().count() > 256 {
                return Err(LogsError::constraint(
                    "kmsKeyId",
                    kms,
                    "Member must have length less than or equal to 256",
                ));
            }
        }
        if let Some(tags) = &request.tags {
            validate::tags("tags", tags)?;
        }
        self.submit_unit(Command::CreateGroup {
            scope: scope.clone(),
            request,
        })
        .await
    }

    /// DeleteLogGroup: the group, its streams and every event in it.
    pub async fn delete_log_group(
        &self,
        scope: &Scope,
        log_group_name: &str,
    ) -> Result<(), LogsError> {
        validate::log_group_name("logGroupName", log_group_name)?;
        self.submit_unit(Command::DeleteGroup {
            scope: scope.clone(),
            name: log_group_name.to_owned(),
        })
        .await
    }

    /// DescribeLogGroups.
    pub fn describe_log_groups(
        &self,
        scope: &Scope,
        request: &DescribeLogGroupsRequest,
    ) -> Result<DescribeLogGroupsOutput, LogsError> {
        describe::log_groups(&self.inner.shared.published.read(), scope, request)
    }

    /// PutRetentionPolicy. Enforced by [`LogStore::enforce_retention`].
    pub async fn put_retention_policy(
        &self,
        scope: &Scope,
        log_group_name: &str,
        retention_in_days: i32,
    ) -> Result<(), LogsError> {
        validate::log_group_name("logGroupName", log_group_name)?;
        validate::retention_in_days(retention_in_days)?;
        self.submit_unit(Command::PutRetention {
            scope: scope.clone(),
            name: log_group_name.to_owned(),
            days: retention_in_days,
        })
        .await
    }

    /// DeleteRetentionPolicy: events never expire again.
    pub async fn delete_retention_policy(
        &self,
        scope: &Scope,
        log_group_name: &str,
    ) -> Result<(), LogsError> {
        validate::log_group_name("logGroupName", log_group_name)?;
        self.submit_unit(Command::DeleteRetention {
            scope: scope.clone(),
            name: log_group_name.to_owned(),
        })
        .await
    }

    /// PutLogGroupDeletionProtection (`logGroupIdentifier`: name or ARN).
    pub async fn put_log_group_deletion_protection(
        &self,
        scope: &Scope,
        log_group_identifier: &str,
        deletion_protection_enabled: bool,
    ) -> Result<(), LogsError> {
        let name = describe::group_identifier(scope, "logGroupIdentifier", log_group_identifier)?;
        self.submit_unit(Command::PutDeletionProtection {
            scope: scope.clone(),
            name,
            enabled: deletion_protection_enabled,
        })
        .await
    }

    /// TagResource (`resourceArn`: a log group ARN without `:*`).
    pub async fn tag_resource(
        &self,
        scope: &Scope,
        resource_arn: &str,
        tags: Tags,
    ) -> Result<(), LogsError> {
        let name = describe::tagged_group(scope, resource_arn)?;
        self.tag_log_group(scope, &name, tags).await
    }

    /// UntagResource.
    pub async fn untag_resource(
        &self,
        scope: &Scope,
        resource_arn: &str,
        tag_keys: Vec<String>,
    ) -> Result<(), LogsError> {
        let name = describe::tagged_group(scope, resource_arn)?;
        if tag_keys.len() > validate::MAX_TAGS {
            return Err(LogsError::constraint(
                "tagKeys",
                &format!("{} keys", tag_keys.len()),
                "Member must have length less than or equal to 50",
            ));
        }
        self.untag(scope, &name, tag_keys).await
    }

    /// ListTagsForResource.
    pub fn list_tags_for_resource(
        &self,
        scope: &Scope,
        resource_arn: &str,
    ) -> Result<Tags, LogsError> {
        let name = describe::tagged_group(scope, resource_arn)?;
        self.list_tags_log_group(scope, &name)
    }

    /// TagLogGroup (deprecated API, same effect as TagResource).
    pub async fn tag_log_group(
        &self,
        scope: &Scope,
        log_group_name: &str,
        tags: Tags,
    ) -> Result<(), LogsError> {
        validate::log_group_name("logGroupName", log_group_name)?;
        validate::tags("tags", &tags)?;
        self.submit_unit(Command::Tag {
            scope: scope.clone(),
            name: log_group_name.to_owned(),
            tags,
        })
        .await
    }

    /// UntagLogGroup (deprecated API).
    pub async fn untag_log_group(
        &self,
        scope: &Scope,
        log_group_name: &str,
        tags: Vec<String>,
    ) -> Result<(), LogsError> {
        validate::log_group_name("logGroupName", log_group_name)?;
        if tags.is_empty() {
            return Err(LogsError::constraint(
                "tags",
                "[]",
                "Member must have length greater than or equal to 1",
            ));
        }
        self.untag(scope, log_group_name, tags).await
    }

    async fn untag(&self, scope: &Scope, name: &str, keys: Vec<String>) -> Result<(), LogsError> {
        for key in &keys {
            validate::tag_key("tagKeys.member", key)?;
        }
        self.submit_unit(Command::Untag {
            scope: scope.clone(),
            name: name.to_owned(),
            keys,
        })
        .await
    }

    /// ListTagsLogGroup (deprecated API).
    pub fn list_tags_log_group(
        &self,
        scope: &Scope,
        log_group_name: &str,
    ) -> Result<Tags, LogsError> {
        validate::log_group_name("logGroupName", log_group_name)?;
        describe::tags(&self.inner.shared.published.read(), scope, log_group_name)
    }

    /// CreateLogStream.
    pub async fn create_log_stream(
        &self,
        scope: &Scope,
        log_group_name: &str,
        log_stream_name: &str,
    ) -> Result<(), LogsError> {
        validate::log_group_name("logGroupName", log_group_name)?;
        validate::log_stream_name("logStreamName", log_stream_name)?;
        self.submit_unit(Command::CreateStream {
            scope: scope.clone(),
            group: log_group_name.to_owned(),
            stream: log_stream_name.to_owned(),
        })
        .await
    }

    /// DescribeLogStreams.
    pub fn describe_log_streams(
        &self,
        scope: &Scope,
        request: &DescribeLogStreamsRequest,
    ) -> Result<DescribeLogStreamsOutput, LogsError> {
        describe::log_streams(&self.inner.shared.published.read(), scope, request)
    }

    /// DeleteLogStream: the stream disappears at once; its events are
    /// deleted from the segment files in the background.
    pub async fn delete_log_stream(
        &self,
        scope: &Scope,
        log_group_name: &str,
        log_stream_name: &str,
    ) -> Result<(), LogsError> {
        validate::log_group_name("logGroupName", log_group_name)?;
        validate::log_stream_name("logStreamName", log_stream_name)?;
        self.submit_unit(Command::DeleteStream {
            scope: scope.clone(),
            group: log_group_name.to_owned(),
            stream: log_stream_name.to_owned(),
        })
        .await
    }

    /// PutLogEvents. Returns once the stored events are durable (and
    /// searchable).
    ///
    /// Sequence tokens make resends safe: a request without a token is
    /// always accepted (as AWS does today); one carrying the stream's
    /// current `uploadSequenceToken` is accepted and advances it; the
    /// previous token with the same batch gets DataAlreadyAcceptedException
    /// (the batch is not stored twice); any other token gets
    /// InvalidSequenceTokenException. Both carry `expectedSequenceToken`.
    pub async fn put_log_events(
        &self,
        scope: &Scope,
        request: PutLogEventsRequest,
    ) -> Result<PutLogEventsOutput, LogsError> {
        validate::log_group_name("logGroupName", &request.log_group_name)?;
        validate::log_stream_name("logStreamName", &request.log_stream_name)?;
        if let Some(token) = &request.sequence_token {
            validate::token("sequenceToken", token)?;
        }
        validate::log_events(&request.log_events)?;
        let bytes: usize = request.log_events.iter().map(|e| e.message.len()).sum();
        let events = request.log_events;
        // Hashing and compressing a large batch takes milliseconds: not on
        // a runtime thread, and not on the writer's.
        let (hash, frame, events) = if bytes >= 64 << 10 {
            let _slot = self
                .inner
                .encodes
                .acquire()
                .await
                .map_err(|_| LogsError::from(StoreError::Closed))?;
            tokio::task::spawn_blocking(move || {
                (
                    codec::batch_hash(&events),
                    codec::encode_frame(&events),
                    events,
                )
            })
            .await
            .map_err(join_error)?
        } else {
            (
                codec::batch_hash(&events),
                codec::encode_frame(&events),
                events,
            )
        };
        let command = Command::Put(PutCommand {
            scope: scope.clone(),
            group: request.log_group_name,
            stream: request.log_stream_name,
            sequence_token: request.sequence_token,
            events,
            hash,
            frame,
        });
        match self.submit(command, bytes).await? {
            Outcome::Put(out) => Ok(out),
            other => Err(LogsError::unavailable(format!(
                "unexpected writer answer {other:?}"
            ))),
        }
    }

    /// GetLogEvents.
    pub async fn get_log_events(
        &self,
        scope: &Scope,
        request: GetLogEventsRequest,
    ) -> Result<GetLogEventsOutput, LogsError> {
        let _slot = self
            .inner
            .reads
            .acquire()
            .await
            .map_err(|_| LogsError::from(StoreError::Closed))?;
        let inner = Arc::clone(&self.inner);
        let scope = scope.clone();
        tokio::task::spawn_blocking(move || read::get_log_events(&inner.shared, &scope, &request))
            .await
            .map_err(join_error)?
    }

    /// FilterLogEvents. A page stops early (with a `nextToken`) after
    /// [`StoreOptions::filter_scan_budget`] events looked at.
    pub async fn filter_log_events(
        &self,
        scope: &Scope,
        request: FilterLogEventsRequest,
    ) -> Result<FilterLogEventsOutput, LogsError> {
        let _slot = self
            .inner
            .reads
            .acquire()
            .await
            .map_err(|_| LogsError::from(StoreError::Closed))?;
        let inner = Arc::clone(&self.inner);
        let scope = scope.clone();
        tokio::task::spawn_blocking(move || {
            read::filter_log_events(
                &inner.shared,
                &scope,
                &request,
                inner.options.filter_scan_budget,
            )
        })
        .await
        .map_err(join_error)?
    }

    /// Deletes every segment file whose events are all older than its
    /// group's retention at `now` (ms). The server's controller calls this
    /// periodically (hourly is plenty: segments are long).
    pub async fn enforce_retention(&self, now: i64) -> Result<RetentionReport, LogsError> {
        match self.submit(Command::EnforceRetention { now }, 0).await? {
            Outcome::Retention(report) => Ok(report),
            other => Err(LogsError::unavailable(format!(
                "unexpected writer answer {other:?}"
            ))),
        }
    }
}

/// Removes group directories and segment files no committed round
/// registered (a crash between creating them and the commit, or between a
/// delete's commit and the removal).
fn sweep_orphans(root: &Path, catalog: &Catalog) -> Result<(), StoreError> {
    let dir = segment::segments_dir(root);
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        let path = entry.path();
        let group = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
            .and_then(|id| catalog.groups.get(&id));
        let Some(group) = group else {
            warn!(path = %path.display(), "removing files of a group that no longer exists");
            remove_path(&path)?;
            continue;
        };
        for file in fs::read_dir(&path)? {
            let file = file?;
            let name = file.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.split('.').next())
                .and_then(|n| n.parse::<u64>().ok());
            if id.is_some_and(|id| group.segments.contains_key(&id)) {
                continue;
            }
            warn!(path = %file.path().display(), "removing a file no committed round registered");
            remove_path(&file.path())?;
        }
    }
    for group in catalog.groups.values() {
        for seg in group.segments.keys() {
            let path: PathBuf = segment::path(root, group.info.id, *seg);
            if !path.exists() {
                return Err(StoreError::Corrupt(format!(
                    "segment file {} is registered but missing",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

fn remove_path(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::Ordering;

    const NOW: i64 = 1_750_000_000_000;

    fn frames_in(dir: &Path) -> usize {
        let mut count = 0;
        for group in fs::read_dir(segment::segments_dir(dir)).unwrap() {
            for file in fs::read_dir(group.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                if path.extension().is_some_and(|e| e == "db") {
                    let conn = rusqlite::Connection::open(&path).unwrap();
                    count += conn
                        .query_row("SELECT count(*) FROM frames", [], |r| r.get::<_, i64>(0))
                        .unwrap() as usize;
                }
            }
        }
        count
    }

    /// A round whose metadata commit fails after its frames reached the
    /// segment files: every caller gets ServiceUnavailable, nothing of the
    /// round is visible or kept, and the store carries on (the sequence
    /// numbers the round used are used again without conflict).
    #[tokio::test]
    async fn a_failed_round_is_undone_and_the_store_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(NOW));
        let options = StoreOptions {
            segment_duration: Duration::from_secs(3600),
            ..Default::default()
        };
        let store = LogStore::open_with(dir.path(), options, clock.clone()).unwrap();
        let scope = Scope::new("123456789012", "us-east-1");
        for g in ["a", "b"] {
            store
                .create_log_group(
                    &scope,
                    CreateLogGroupRequest {
                        log_group_name: g.into(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            store.create_log_stream(&scope, g, "s").await.unwrap();
        }
        let put = |group: &str, message: &str, token: Option<String>| PutLogEventsRequest {
            log_group_name: group.into(),
            log_stream_name: "s".into(),
            log_events: vec![InputLogEvent::new(NOW, message)],
            sequence_token: token,
        };
        let first = store
            .put_log_events(&scope, put("a", "kept", None))
            .await
            .unwrap();
        assert_eq!(frames_in(dir.path()), 1);

        // The failing round also rolls group a to a new segment file.
        clock.advance(2 * 3_600_000);
        let group_a = store
            .inner
            .shared
            .published
            .read()
            .group(&scope, "a")
            .unwrap()
            .info
            .id;
        let files = || {
            fs::read_dir(segment::group_dir(dir.path(), group_a))
                .unwrap()
                .filter(|f| {
                    f.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|e| e == "db")
                })
                .count()
        };
        let before = files();
        store
            .inner
            .shared
            .fail_next_commit
            .store(true, Ordering::SeqCst);
        let e = store
            .put_log_events(&scope, put("a", "lost", first.next_sequence_token.clone()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "ServiceUnavailableException");
        assert_eq!(
            frames_in(dir.path()),
            1,
            "the failed round's frame is deleted"
        );
        assert_eq!(files(), before, "and its new segment file");

        // The token did not advance; the same request now succeeds.
        let retry = store
            .put_log_events(
                &scope,
                put("a", "retried", first.next_sequence_token.clone()),
            )
            .await
            .unwrap();
        store
            .put_log_events(&scope, put("b", "other group", None))
            .await
            .unwrap();
        assert_ne!(retry.next_sequence_token, first.next_sequence_token);
        let got = store
            .filter_log_events(
                &scope,
                FilterLogEventsRequest {
                    log_group_name: Some("a".into()),
                    start_time: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let messages: Vec<_> = got.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["kept", "retried"]);
        store.close();

        // And a reopen agrees.
        let store = LogStore::open(dir.path()).unwrap();
        let streams = store
            .describe_log_streams(
                &scope,
                &DescribeLogStreamsRequest {
                    log_group_name: Some("a".into()),

                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            streams.log_streams[0].upload_sequence_token,
            retry.next_sequence_token
        );
        assert_eq!(frames_in(dir.path()), 3);
    }
}
