//! [`LogShipper`]: one follower task per container whose log driver is
//! awslogs. A follower reads the container's output through the container
//! runtime ([`ContainerRuntime::logs`]), turns it into events
//! ([`super::assemble`]), sends them in batches ([`super::batch`]) to a
//! [`LogSink`] one request at a time, and keeps its place durably
//! ([`super::checkpoint`]), until the container has stopped and everything
//! it wrote is shipped.
//!
//! Back-pressure: in blocking mode a follower reads only while fewer than
//! [`QUEUE_LIMIT`] bytes of events wait to be sent, so a slow or absent
//! control plane leaves the rest in the container's log file (nothing is
//! dropped, the container never waits). In non-blocking mode it keeps
//! reading and drops the oldest waiting events beyond `max-buffer-size`,
//! counting them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::assemble::{Assembler, Cursor, Event};
use super::batch::take_batch;
use super::checkpoint::{self, Checkpoint, InFlight};
use super::options::{AwsLogsOptions, Mode};
use super::sink::{InputLogEvent, LogSink, SinkError, StreamTarget};
use crate::runtime::{ContainerRuntime, LogRecord, RunState, RuntimeError, RuntimeResult};

/// Bytes of events a blocking-mode follower holds before it stops reading:
/// two full batches, so the next is ready when one is answered.
pub const QUEUE_LIMIT: usize = 2 * super::batch::MAX_BATCH_BYTES;

/// What an engine needs to ship logs: where to, and where to keep its place.
#[derive(Clone)]
pub struct LogShipping {
    pub sink: Arc<dyn LogSink>,
    /// The folder for checkpoints (in the agent's state folder).
    pub state_dir: PathBuf,
}

impl std::fmt::Debug for LogShipping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogShipping")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// Why a container's log stream could not be set up before it starts.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{0}")]
    Sink(SinkError),
    #[error("recording the log stream in the agent's state folder: {0}")]
    State(std::io::Error),
}

struct Follower {
    done: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The followers of one engine. Dropping it stops them (as killing the
/// agent would); their checkpoints let the next agent carry on.
pub struct LogShipper<R> {
    runtime: Arc<R>,
    sink: Arc<dyn LogSink>,
    dir: PathBuf,
    /// For options without `awslogs-region`.
    region: String,
    followers: Mutex<HashMap<String, Follower>>,
}

impl<R> Drop for LogShipper<R> {
    fn drop(&mut self) {
        if let Ok(followers) = self.followers.lock() {
            for f in followers.values() {
                f.task.abort();
            }
        }
    }
}

impl<R: ContainerRuntime> LogShipper<R> {
    pub fn new(runtime: Arc<R>, shipping: &LogShipping, region: &str) -> LogShipper<R> {
        if let Err(e) = std::fs::create_dir_all(&shipping.state_dir) {
            // Every save will say so again, with the container it concerns.
            tracing::error!(dir = %shipping.state_dir.display(), error = %e, "cannot create the log checkpoint folder");
        }
        LogShipper {
            runtime,
            sink: shipping.sink.clone(),
            dir: shipping.state_dir.clone(),
            region: region.to_string(),
            followers: Mutex::new(HashMap::new()),
        }
    }

    /// The stream one container's output goes to.
    pub fn target(
        &self,
        options: &AwsLogsOptions,
        container_name: &str,
        task_id: &str,
        container_id: &str,
    ) -> StreamTarget {
        StreamTarget {
            endpoint: options.endpoint.clone(),
            region: options
                .region
                .clone()
                .unwrap_or_else(|| self.region.clone()),
            group: options.group.clone(),
            stream: options.stream_name(container_name, task_id, container_id),
        }
    }

    /// Before a container starts: creates its group (with
    /// `awslogs-create-group`) and stream, and records the container's
    /// checkpoint, so nothing it writes can be missed by a restarted agent.
    /// A refusal (e.g. the group does not exist) is an error, as Docker's
    /// driver fails the container; an unreachable service is not (the
    /// follower creates the stream once it is back).
    pub async fn prepare(
        &self,
        container_id: &str,
        target: &StreamTarget,
        raw_options: &BTreeMap<String, String>,
        options: &AwsLogsOptions,
    ) -> Result<(), PrepareError> {
        let mut cp = Checkpoint::new(target.clone(), raw_options.clone());
        match ensure_stream(&*self.sink, target, options.create_group).await {
            Ok(()) => cp.stream_ready = true,
            Err(SinkError::Unavailable(e)) => {
                tracing::warn!(group = %target.group, stream = %target.stream, error = %e,
                    "CloudWatch Logs unreachable; the log stream will be created when it is back")
            }
            Err(e) => return Err(PrepareError::Sink(e)),
        }
        let (dir, id) = (self.dir.clone(), container_id.to_string());
        tokio::task::spawn_blocking(move || checkpoint::save(&dir, &id, &cp))
            .await
            .map_err(|e| PrepareError::State(std::io::Error::other(e)))?
            .map_err(PrepareError::State)
    }

    /// Ships the container's output from where its checkpoint says (from
    /// the start, into `start`'s stream, if it has none yet). Does nothing
    /// if it is followed already, or has no checkpoint and no `start`.
    pub fn follow(
        &self,
        container_id: &str,
        start: Option<(StreamTarget, BTreeMap<String, String>)>,
    ) {
        let Ok(mut followers) = self.followers.lock() else {
            return;
        };
        if followers.contains_key(container_id) {
            return;
        }
        let (done_tx, done) = watch::channel(false);
        let run = Run {
            runtime: self.runtime.clone(),
            sink: self.sink.clone(),
            dir: self.dir.clone(),
            id: container_id.to_string(),
        };
        let task = tokio::spawn(async move {
            run.follow(start).await;
            let _ = done_tx.send(true);
        });
        followers.insert(container_id.to_string(), Follower { done, task });
    }

    /// Follows a container that has a checkpoint (and so was shipping
    /// before the agent restarted). Returns whether it has one.
    pub fn resume(&self, container_id: &str) -> bool {
        let has = checkpoint::path(&self.dir, container_id).is_some_and(|p| p.exists());
        if has {
            self.follow(container_id, None);
        }
        has
    }

    /// Resolves once the container's follower is done: everything the
    /// container wrote is shipped (at once for a container not followed).
    pub fn drained(&self, container_id: &str) -> impl Future<Output = ()> + Send + 'static {
        let done = self
            .followers
            .lock()
            .ok()
            .and_then(|f| f.get(container_id).map(|f| f.done.clone()));
        async move {
            if let Some(mut done) = done {
                // An error means the follower is gone (aborted): nothing to wait for.
                let _ = done.wait_for(|d| *d).await;
            }
        }
    }

    /// The container is removed: its follower and checkpoint go too.
    pub fn forget(&self, container_id: &str) {
        if let Ok(mut followers) = self.followers.lock() {
            if let Some(f) = followers.remove(container_id) {
                f.task.abort();
            }
        }
        checkpoint::remove(&self.dir, container_id);
    }

    /// Removes the checkpoints of containers that no longer exist
    /// (removed while no agent was running).
    pub fn sweep(&self, existing: &HashSet<String>) {
        for id in checkpoint::list(&self.dir) {
            if !existing.contains(&id) {
                tracing::debug!(container = %id, "removing the log checkpoint of a container that is gone");
                checkpoint::remove(&self.dir, &id);
            }
        }
    }
}

/// Creates the group (if asked) and the stream; "already exists" is fine.
async fn ensure_stream(
    sink: &dyn LogSink,
    target: &StreamTarget,
    create_group: bool,
) -> Result<(), SinkError> {
    if create_group {
        match sink.create_log_group(target).await {
            Ok(()) | Err(SinkError::AlreadyExists) => {}
            Err(e) => return Err(e),
        }
    }
    match sink.create_log_stream(target).await {
        Ok(()) | Err(SinkError::AlreadyExists) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Doubling waits for retries.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Backoff {
        Backoff {
            next: Duration::from_millis(100),
            max,
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn next_record(
    reader: &mut Option<BoxStream<'static, RuntimeResult<LogRecord>>>,
) -> Option<RuntimeResult<LogRecord>> {
    match reader {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

async fn settled(sending: &mut Option<BoxFuture<'static, Checkpoint>>) -> Checkpoint {
    match sending {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Saves, retrying until the disk takes it: shipping must not run ahead
/// of its record.
async fn save_until_done(dir: &Path, id: &str, cp: &Checkpoint) {
    let mut backoff = Backoff::new(Duration::from_secs(5));
    // Encoded here once (not cloned for the writer thread).
    let bytes = match checkpoint::encode(cp) {
        Ok(b) => std::sync::Arc::new(b),
        Err(e) => {
            // Plain data: serde_json does not fail on it.
            tracing::error!(container = id, error = %e, "cannot encode the log checkpoint");
            return;
        }
    };
    loop {
        let (d, i, b) = (dir.to_path_buf(), id.to_string(), bytes.clone());
        match tokio::task::spawn_blocking(move || checkpoint::save_encoded(&d, &i, &b)).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => {
                tracing::error!(container = id, error = %e, "cannot save the log checkpoint; retrying")
            }
            Err(e) => tracing::error!(container = id, error = %e, "log checkpoint writer failed"),
        }
        backoff.wait().await;
    }
}

/// One container's follower.
struct Run<R> {
    runtime: Arc<R>,
    sink: Arc<dyn LogSink>,
    dir: PathBuf,
    id: String,
}

impl<R: ContainerRuntime> Run<R> {
    async fn follow(self, start: Option<(StreamTarget, BTreeMap<String, String>)>) {
        let mut cp = match checkpoint::load(&self.dir, &self.id) {
            Some(cp) => cp,
            None => match start {
                Some((target, options)) => Checkpoint::new(target, options),
                None => return,
            },
        };
        if cp.finished {
            return;
        }
        let options = match AwsLogsOptions::parse(&cp.options) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(container = %self.id, error = %e, "not shipping the logs of a container with bad awslogs options");
                return;
            }
        };
        let target = cp.target.clone();
        tracing::debug!(container = %self.id, group = %target.group, stream = %target.stream, "following container output");
        if !cp.stream_ready {
            let mut backoff = Backoff::new(Duration::from_secs(30));
            while let Err(e) = ensure_stream(&*self.sink, &target, options.create_group).await {
                tracing::warn!(container = %self.id, group = %target.group, stream = %target.stream, error = %e, "cannot create the log stream; retrying");
                backoff.wait().await;
            }
            cp.stream_ready = true;
            save_until_done(&self.dir, &self.id, &cp).await;
        }
        if cp.in_flight.is_some() {
            // Sent before the agent stopped, perhaps accepted: send it again
            // with its token (see the checkpoint module).
            cp = self.send(cp, options.create_group).await;
        }
        self.ship(cp, &options).await;
    }

    /// The batch in `wal.in_flight`: recorded, then sent until settled.
    /// Returns the checkpoint with the next token and nothing in flight.
    fn send(&self, wal: Checkpoint, create_group: bool) -> BoxFuture<'static, Checkpoint> {
        let (sink, dir, id) = (self.sink.clone(), self.dir.clone(), self.id.clone());
        Box::pin(async move {
            save_until_done(&dir, &id, &wal).await;
            let mut cp = wal;
            if let Some(batch) = cp.in_flight.take() {
                cp.sequence_token =
                    put_until_settled(&*sink, &cp.target, &batch, create_group, &id).await;
            }
            cp
        })
    }

    async fn ship(&self, mut cp: Checkpoint, options: &AwsLogsOptions) {
        let mut cursor = Cursor::new(cp.shipped);
        let mut assembler = Assembler::new(options.multiline.clone());
        let mut queue: VecDeque<Event> = VecDeque::new();
        let mut queued = 0usize;
        let mut fresh: Vec<Event> = Vec::new();
        let mut sending: Option<BoxFuture<'static, Checkpoint>> = None;
        let mut reader = Some(self.runtime.logs(&self.id, cp.shipped.replay_from()));
        let mut reopen_at: Option<Instant> = None;
        // Records this read of the output admitted: a read that ends with
        // the container stopped is trusted to have reached the end only if
        // it found nothing new (see below).
        let mut admitted = 0u64;
        let mut ended = false;
        let mut dropped = cp.dropped;
        let flush_ms = options.flush_interval.as_millis() as i64;
        loop {
            if sending.is_none() && !queue.is_empty() {
                let batch = take_batch(&mut queue);
                queued -= batch.iter().map(Event::size).sum::<usize>();
                let mut wal = cp.clone();
                for e in &batch {
                    wal.shipped.advance(e.stream, e.end);
                }
                wal.dropped = dropped;
                wal.in_flight = Some(InFlight {
                    sequence_token: cp.sequence_token.clone(),
                    events: batch
                        .into_iter()
                        .map(|e| InputLogEvent {
                            timestamp: e.timestamp,
                            message: e.message,
                        })
                        .collect(),
                });
                sending = Some(self.send(wal, options.create_group));
            }
            if sending.is_none() && queue.is_empty() && ended {
                cp.finished = true;
                cp.dropped = dropped;
                save_until_done(&self.dir, &self.id, &cp).await;
                tracing::debug!(container = %self.id, "container output shipped to its end");
                return;
            }
            let room = options.mode == Mode::NonBlocking || queued < QUEUE_LIMIT;
            let reading = reader.is_some();
            let is_sending = sending.is_some();
            let reopening = !reading && !ended;
            let far = Instant::now() + Duration::from_secs(3600);
            let flush_at = assembler.pending_since().map(|since| {
                let wait = (since + flush_ms - now_ms()).max(0) as u64;
                Instant::now() + Duration::from_millis(wait)
            });
            tokio::select! {
                item = next_record(&mut reader), if room && reading => match item {
                    Some(Ok(record)) => {
                        if let Some(position) = cursor.admit(record.stream, record.timestamp) {
                            admitted += 1;
                            assembler.push(&record, position, &mut fresh);
                        }
                    }
                    Some(Err(RuntimeError::NotFound(_))) => {
                        reader = None;
                        ended = true;
                        assembler.finish(&mut fresh);
                    }
                    Some(Err(e)) => {
                        tracing::debug!(container = %self.id, error = %e, "log stream broke; reading again");
                        reader = None;
                        reopen_at = Some(Instant::now() + Duration::from_secs(1));
                    }
                    None => {
                        reader = None;
                        match self.runtime.inspect(&self.id).await {
                            Ok(info) if info.state == RunState::Running => {
                                reopen_at = Some(Instant::now() + Duration::from_millis(200));
                            }
                            // Docker (20.10 at least) may end a follow
                            // early when the container stops while the
                            // reader is behind. Reading a stopped
                            // container's log does not follow: it goes to
                            // the end. So read again until a read finds
                            // nothing new.
                            Ok(_) if admitted > 0 => reopen_at = Some(Instant::now()),
                            Ok(_) | Err(RuntimeError::NotFound(_)) => {
                                ended = true;
                                assembler.finish(&mut fresh);
                            }
                            Err(e) => {
                                tracing::debug!(container = %self.id, error = %e, "inspect failed; reading again");
                                reopen_at = Some(Instant::now() + Duration::from_secs(1));
                            }
                        }
                    }
                },
                done = settled(&mut sending), if is_sending => {
                    sending = None;
                    cp = done;
                    cp.dropped = dropped;
                    if queue.is_empty() && fresh.is_empty() && !ended {
                        // Caught up: record it, so a restart need not resend.
                        save_until_done(&self.dir, &self.id, &cp).await;
                    }
                }
                _ = tokio::time::sleep_until(flush_at.unwrap_or(far)), if flush_at.is_some() => {
                    assembler.flush_pending(now_ms() - flush_ms, &mut fresh);
                }
                _ = tokio::time::sleep_until(reopen_at.unwrap_or(far)), if reopening => {
                    reopen_at = None;
                    admitted = 0;
                    cursor.reread();
                    reader = Some(self.runtime.logs(&self.id, cursor.consumed().replay_from()));
                }
            }
            for e in fresh.drain(..) {
                queued += e.size();
                queue.push_back(e);
            }
            if options.mode == Mode::NonBlocking {
                while queued > options.max_buffer_size {
                    let Some(old) = queue.pop_front() else { break };
                    queued -= old.size();
                    dropped += 1;
                    if dropped == 1 || dropped.is_multiple_of(1000) {
                        tracing::warn!(container = %self.id, dropped, max_buffer_size = options.max_buffer_size,
                            "non-blocking awslogs buffer full: dropping the oldest log events");
                    }
                }
            }
        }
    }
}

/// Sends one batch until the sink has settled it; returns the token for
/// the next batch.
async fn put_until_settled(
    sink: &dyn LogSink,
    target: &StreamTarget,
    batch: &InFlight,
    create_group: bool,
    container: &str,
) -> Option<String> {
    let mut token = batch.sequence_token.clone();
    let mut backoff = Backoff::new(Duration::from_secs(5));
    loop {
        match sink
            .put_log_events(target, &batch.events, token.as_deref())
            .await
        {
            Ok(outcome) => {
                crate::telemetry::LOG_EVENTS_SHIPPED.fetch_add(
                    batch.events.len() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                if let Some(info) = outcome.rejected_log_events_info {
                    tracing::warn!(container, stream = %target.stream, %info, "CloudWatch Logs refused some events of a batch");
                }
                return outcome.next_sequence_token;
            }
            Err(SinkError::AlreadyAccepted { expected }) => {
                tracing::debug!(container, stream = %target.stream, "a resent batch was already accepted");
                return expected;
            }
            Err(SinkError::InvalidToken { expected }) => {
                // Someone else's token: the stream's history is not the one
                // this agent recorded (its state was lost, or another writer).
                // Sending with the expected token may repeat lines; not
                // sending would lose them.
                tracing::warn!(container, stream = %target.stream, ?expected,
                    "the log stream expects another sequence token; resending with it (lines may repeat)");
                if expected == token {
                    backoff.wait().await;
                }
                token = expected;
            }
            Err(SinkError::NotFound(message)) => {
                tracing::warn!(container, group = %target.group, stream = %target.stream, %message,
                    "the log stream is gone; creating it again");
                if let Err(e) = ensure_stream(sink, target, create_group).await {
                    tracing::warn!(container, error = %e, "cannot create the log stream");
                }
                token = None;
                backoff.wait().await;
            }
            Err(SinkError::Unavailable(e)) => {
                tracing::debug!(container, error = %e, "CloudWatch Logs unavailable; retrying the batch");
                backoff.wait().await;
            }
            Err(e @ (SinkError::Rejected { .. } | SinkError::AlreadyExists)) => {
                tracing::error!(container, stream = %target.stream, events = batch.events.len(), error = %e,
                    "CloudWatch Logs refused a batch; its events are dropped");
                return token;
            }
        }
    }
}
