//! The SQLite [`Store`]: the embedded default, one database file.
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous = FULL`, so a SQLite
//! transaction is on disk (the WAL fsynced) when its `COMMIT` returns. Nothing
//! is acknowledged, shown to a reader or sent to a watcher before that.
//!
//! # Group commit
//!
//! One writer thread owns the only writing connection. [`Store::commit`] puts
//! the txn on the writer's queue *inside the call*, so call order is commit
//! order. The writer takes whatever is queued (up to
//! [`SqliteOptions::max_batch_txns`] txns or [`SqliteOptions::max_batch_bytes`]),
//! and runs the whole batch in ONE SQLite transaction: each txn's compares see
//! the writes of the txns before it in the batch; the txns whose compares hold
//! get consecutive revisions, the others get [`StoreError::Conflict`]. After the
//! single `COMMIT` (one fsync for the batch) it publishes the new revision,
//! sends the batch's events to watchers, and only then resolves the callers'
//! futures. While one batch syncs, the next one queues up, so the batch size
//! grows with the load and the fsync cost is shared.
//!
//! Checkpoints (copying the WAL into the database file) run on a separate
//! thread with its own connection, so a commit costs a WAL append and one
//! fsync, not the occasional multi-megabyte copy; see `Checkpointer` for how
//! the WAL is still kept short (about 16 MiB).
//!
//! # Failures
//!
//! If anything in a batch fails in SQLite (I/O error, disk full, corruption),
//! the SQLite transaction is rolled back and *every* caller of that batch gets
//! the error, conflicts included (their verdict may have depended on writes
//! that did not happen). Nothing of the batch is acknowledged or published.
//! The writer then carries on with the next batch, which starts again from
//! the durable state on disk (each batch re-reads the revision inside its
//! transaction), so a transient failure such as a full disk heals without a
//! restart, and a persistent one fails every commit without acknowledging any.
//!
//! # Reads and watch
//!
//! `range` and `get` use a second, read-only connection: WAL lets it read the
//! last committed state while the writer works, and what is committed is
//! durable. A bounded change log (the last [`SqliteOptions::history`]
//! revisions, pruned in the same transaction that writes) lets a watcher catch
//! up from a past revision, also after a restart.
//!
//! # Schema
//!
//! - `meta`: one row: the latest `revision`, and `compacted`, the revision up
//!   to which the change log has been pruned;
//! - `kv`: the current value of every live key, with its create and mod revisions;
//! - `changes`: the change log, one row per event (`value` NULL for a delete).
//!
//! Keys are stored as BLOBs so that SQLite orders them bytewise, exactly as
//! Rust orders `str`, and a prefix maps onto a plain index range.
//!
//! One process at a time may open a database file. A second one would not
//! corrupt it (revisions and compares come from the database inside each
//! batch's transaction), but each process's watchers would miss the other's
//! changes; the writer logs an error when it notices. The server should hold
//! its data directory exclusively.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use tokio::sync::{mpsc as watch_mpsc, oneshot};
use tracing::{debug, error, info, trace, warn};

use crate::engine::{self, lock, prefix_upper_bound, Observed, Outcome, Tables, Watchers};
use crate::{CommitFuture, Event, KeyValue, Revision, Store, StoreError, Txn};

/// Revisions of change history kept for watch catch-up by default.
pub const DEFAULT_HISTORY: u64 = 10_000;

/// How long a connection waits on a lock held by another before giving up.
/// Only checkpoints and a second process can hold one; this is a backstop.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The `user_version` this code writes and understands.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision, compacted) VALUES (0, 0, 0);
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY,
    revision INTEGER NOT NULL,
    key BLOB NOT NULL,
    value BLOB,
    create_revision INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_revision ON changes (revision);
PRAGMA user_version = 1;
COMMIT;
";

/// Tuning for [`SqliteStore::open_with`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Revisions of change history kept for [`Store::watch`] catch-up. A
    /// watch from further back gets [`StoreError::Compacted`]. 0 keeps no
    /// change log at all (every value is written once, not twice): live
    /// watches still see every change, but only from the current revision.
    pub history: u64,
    /// The most txns one batch (one fsync) takes.
    pub max_batch_txns: usize,
    /// A batch stops taking txns once their keys and values add up to this
    /// many bytes, to bound the writer's memory and a batch's latency.
    pub max_batch_bytes: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            history: DEFAULT_HISTORY,
            max_batch_txns: 1024,
            max_batch_bytes: 4 << 20,
        }
    }
}

/// The SQLite [`Store`]. See the [module docs](self).
///
/// Dropping it (or [`close`](SqliteStore::close)) lets the writer finish every
/// commit already queued, then ends watch streams.
pub struct SqliteStore {
    path: PathBuf,
    /// `None` once closed; sending under this lock keeps close() from racing
    /// a commit.
    queue: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Mutex<Connection>,
    shared: Arc<Shared>,
    /// Held by a test to make the writer wait, so that several txns are sure
    /// to land in one batch.
    #[cfg(test)]
    gate: Arc<Mutex<()>>,
}

/// What the writer publishes after each durable batch.
struct Shared {
    /// Held by the writer through each batch, from deciding whether anyone
    /// watches (and so whether the batch makes events) until the batch's
    /// events are dispatched; a new watch takes it first, so no watcher is
    /// ever handed a batch that was written as unwatched. Taken before
    /// `published`.
    batch: Mutex<()>,
    published: Mutex<Published>,
    /// Set (under `published`) when the store is closed.
    closed: AtomicBool,
}

struct Published {
    /// The latest durable revision.
    revision: Revision,
    watchers: Watchers,
}

struct Request {
    txn: Txn,
    reply: oneshot::Sender<Result<Revision, StoreError>>,
}

impl Request {
    fn size(&self) -> usize {
        let ops: usize = self
            .txn
            .ops
            .iter()
            .map(|op| match op {
                crate::Op::Put { key, value } => key.len() + value.len(),
                crate::Op::Delete { key } => key.len(),
            })
            .sum();
        let compares: usize = self
            .txn
            .compares
            .iter()
            .map(|c| match c {
                crate::Compare::Absent(key) | crate::Compare::ModRevision(key, _) => key.len(),
            })
            .sum();
        ops + compares
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` with the default
    /// [`SqliteOptions`]. SQLite keeps its `-wal` and `-shm` files beside it.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Io(io::Error::other(format!(
                "{}: SQLite would not switch to WAL mode (journal_mode is {mode})",
                path.display()
            ))));
        }
        // FULL: fsync the WAL on every commit; NORMAL would lose the last
        // commits on power loss, and we acknowledge on commit.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The writer re-reads the pages of the key index it touches all the
        // time; a cache saves those reads (negative = KiB). Not a bigger one:
        // while the database is under 1 GiB, a commit after a B-tree rebalance
        // scans the whole cache (SQLite's balance_nonroot swaps page numbers
        // through the lock-byte page's number, past the end of the database,
        // and the commit then drops every cached page beyond the end). With
        // 64 MiB that scan was 5% of the control plane's CPU at a million
        // tasks; writes mostly append, so their pages fit in far less.
        conn.pragma_update(None, "cache_size", -16384)?;
        // Checkpoints run on their own thread (see `Checkpointer`), not
        // inside the writer's COMMIT, where they would stall every caller.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Io(io::Error::other(format!(
                "{}: schema version {version} is newer than this Flotilla understands ({SCHEMA_VERSION})",
                path.display()
            ))));
        }
        conn.execute_batch(SCHEMA)?;
        // A new database file is only durable once its directory entry is.
        sync_parent_dir(path)?;
        let revision: Revision =
            conn.query_row("SELECT revision FROM meta WHERE id = 0", [], |r| r.get(0))?;

        let reader = Connection::open(path)?;
        reader.busy_timeout(BUSY_TIMEOUT)?;
        reader.pragma_update(None, "query_only", true)?;

        let shared = Arc::new(Shared {
            batch: Mutex::new(()),
            published: Mutex::new(Published {
                revision,
                watchers: Watchers::default(),
            }),
            closed: AtomicBool::new(false),
        });
        let (queue_tx, queue_rx) = mpsc::channel();
        #[cfg(test)]
        let gate = Arc::new(Mutex::new(()));
        let checkpointer = Checkpointer::start(path)?;
        let writer = Writer {
            checkpointer,
            revision,
            conn,
            queue: queue_rx,
            shared: Arc::clone(&shared),
            options,
            #[cfg(test)]
            gate: Arc::clone(&gate),
        };
        let handle = std::thread::Builder::new()
            .name("flotilla-store-writer".into())
            .spawn(move || writer.run())?;
        info!(path = %path.display(), revision, "store opened");
        Ok(SqliteStore {
            path: path.to_owned(),
            queue: Mutex::new(Some(queue_tx)),
            writer: Mutex::new(Some(handle)),
            reader: Mutex::new(reader),
            shared,
            #[cfg(test)]
            gate,
        })
    }

    /// The latest durable revision.
    pub fn revision(&self) -> Revision {
        lock(&self.shared.published).revision
    }

    /// Stops taking commits, waits until every commit already queued is
    /// durable and answered, and ends watch streams. Later calls get
    /// [`StoreError::Closed`]. Blocks for at most one batch per queued one;
    /// idempotent. Also run on drop.
    pub fn close(&self) {
        // Dropping the sender ends the writer's loop once the queue is empty.
        drop(lock(&self.queue).take());
        {
            // Joined under the lock, so a concurrent close() waits too.
            let mut writer = lock(&self.writer);
            let Some(handle) = writer.take() else { return };
            if handle.join().is_err() {
                error!(path = %self.path.display(), "store writer thread panicked");
            }
        }
        let mut published = lock(&self.shared.published);
        self.shared.closed.store(true, Ordering::SeqCst);
        published.watchers.clear();
        info!(path = %self.path.display(), revision = published.revision, "store closed");
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    #[cfg(test)]
    pub(crate) fn hold_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.gate)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl Store for SqliteStore {
    fn commit(&self, txn: Txn) -> CommitFuture {
        let (reply, answer) = oneshot::channel();
        let queued = match &*lock(&self.queue) {
            Some(queue) => queue.send(Request { txn, reply }).is_ok(),
            None => false,
        };
        if !queued {
            return Box::pin(std::future::ready(Err(StoreError::Closed)));
        }
        // A dropped reply means the writer died without answering.
        Box::pin(async move { answer.await.unwrap_or(Err(StoreError::Closed)) })
    }

    fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        self.check_open()?;
        let mut conn = lock(&self.reader);
        // One read transaction, so the rows and the revision are one snapshot.
        let tx = conn.transaction()?;
        let revision: Revision =
            tx.query_row("SELECT revision FROM meta WHERE id = 0", [], |r| r.get(0))?;
        let kvs = {
            let lower = prefix.as_bytes();
            let mut rows = Vec::new();
            match prefix_upper_bound(prefix) {
                Some(upper) => {
                    let mut stmt = tx.prepare_cached(
                        "SELECT key, value, create_revision, mod_revision FROM kv
                         WHERE key >= ?1 AND key < ?2 ORDER BY key",
                    )?;
                    for kv in stmt.query_map(params![lower, upper], key_value)? {
                        rows.push(kv?);
                    }
                }
                None => {
                    let mut stmt = tx.prepare_cached(
                        "SELECT key, value, create_revision, mod_revision FROM kv ORDER BY key",
                    )?;
                    for kv in stmt.query_map([], key_value)? {
                        rows.push(kv?);
                    }
                }
            }
            rows
        };
        tx.commit()?;
        Ok((kvs, revision))
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.check_open()?;
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare_cached(
            "SELECT key, value, create_revision, mod_revision FROM kv WHERE key = ?1",
        )?;
        Ok(stmt.query_row([key.as_bytes()], key_value).optional()?)
    }

    fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<watch_mpsc::UnboundedReceiver<Event>, StoreError> {
        // Holding `published` keeps the writer from publishing while we catch
        // up, so the catch-up ends exactly where live events begin. The writer
        // keeps committing meanwhile; only its acks wait. The catch-up is
        // bounded by the history size, and watches are opened rarely. A
        // batch in flight is finished first (see `Shared::batch`).
        let _batch = lock(&self.shared.batch);
        let mut published = lock(&self.shared.published);
        self.check_open()?;
        let (tx, rx) = watch_mpsc::unbounded_channel();
        if after < published.revision {
            let mut conn = lock(&self.reader);
            let read = conn.transaction()?;
            // The snapshot may be ahead of `published` (a batch committed but
            // not yet published); it is never behind. Its `compacted` matches
            // its rows, so this check cannot miss a just-pruned revision.
            let compacted: Revision =
                read.query_row("SELECT compacted FROM meta WHERE id = 0", [], |r| r.get(0))?;
            if after < compacted {
                return Err(StoreError::Compacted(after));
            }
            let upper = prefix_upper_bound(prefix);
            let mut stmt = read.prepare_cached(
                "SELECT revision, key, value, create_revision FROM changes
                 WHERE revision > ?1 AND revision <= ?2 AND key >= ?3 AND (?4 IS NULL OR key < ?4)
                 ORDER BY revision, seq",
            )?;
            let rows = stmt.query_map(
                params![after, published.revision, prefix.as_bytes(), upper],
                change_event,
            )?;
            for event in rows {
                // We hold the receiver, so the send cannot fail.
                let _ = tx.send(event?);
            }
        }
        published.watchers.add(prefix, after, tx);
        debug!(
            prefix,
            after,
            watchers = published.watchers.len(),
            "watch opened"
        );
        Ok(rx)
    }
}

/// The writer thread: owns the writing connection and the queue's receiving end.
struct Writer {
    checkpointer: Checkpointer,
    /// The revision of the last batch this writer committed.
    revision: Revision,
    conn: Connection,
    queue: mpsc::Receiver<Request>,
    shared: Arc<Shared>,
    options: SqliteOptions,
    #[cfg(test)]
    gate: Arc<Mutex<()>>,
}

/// What a batch did, once it is durable.
struct Written {
    /// The latest revision after the batch.
    revision: Revision,
    /// Per txn, in queue order: its revision, or the key of its failed compare.
    results: Vec<Result<Revision, String>>,
    events: Vec<Event>,
}

impl Writer {
    fn run(mut self) {
        while let Ok(first) = self.queue.recv() {
            #[cfg(test)]
            let gate = Arc::clone(&self.gate);
            #[cfg(test)]
            let _held = lock(&gate);
            self.checkpointer.restart_wal_if_due(&self.conn);
            let batch = self.drain(first);
            self.commit_batch(batch);
            self.checkpointer.wake();
        }
        self.checkpointer.stop();
        debug!("store writer stopped: queue closed and empty");
    }

    /// `first` and whatever else is queued, up to the batch limits.
    fn drain(&self, first: Request) -> Vec<Request> {
        let mut bytes = first.size();
        let mut batch = vec![first];
        while batch.len() < self.options.max_batch_txns && bytes < self.options.max_batch_bytes {
            match self.queue.try_recv() {
                Ok(request) => {
                    bytes += request.size();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        batch
    }

    fn commit_batch(&mut self, batch: Vec<Request>) {
        let (txns, replies): (Vec<Txn>, Vec<_>) =
            batch.into_iter().map(|r| (r.txn, r.reply)).unzip();
        let count = txns.len();
        let _batch = lock(&self.shared.batch);
        let observed =
            if self.options.history > 0 || !lock(&self.shared.published).watchers.is_empty() {
                Observed::Yes
            } else {
                Observed::No
            };
        match write_batch(
            &mut self.conn,
            txns,
            self.options.history,
            self.revision,
            observed,
        ) {
            Ok(written) => {
                trace!(txns = count, revision = written.revision, "batch durable");
                self.revision = written.revision;
                {
                    let mut published = lock(&self.shared.published);
                    published.revision = written.revision;
                    published.watchers.dispatch(&written.events);
                }
                for (reply, result) in replies.into_iter().zip(written.results) {
                    // The caller may have dropped its future; the commit stands.
                    let _ = reply.send(result.map_err(|key| StoreError::Conflict { key }));
                }
            }
            Err(err) => {
                error!(error = %err, txns = count, "store batch failed and was rolled back; failing its commits");
                for reply in replies {
                    let _ = reply.send(Err(duplicate(&err)));
                }
            }
        }
    }
}

/// Runs `txns` in one SQLite transaction and commits it (durably).
/// `expected` is the revision this writer last wrote.
fn write_batch(
    conn: &mut Connection,
    txns: Vec<Txn>,
    history: u64,
    expected: Revision,
    observed: Observed,
) -> Result<Written, StoreError> {
    // IMMEDIATE takes the write lock now rather than on the first write, so a
    // lock problem shows up before any work is done.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (base, compacted): (Revision, Revision) = tx.query_row(
        "SELECT revision, compacted FROM meta WHERE id = 0",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if base != expected {
        // Revisions stay gapless and compares stay right (both come from the
        // database), but this process's watchers missed the other's changes.
        error!(
            expected,
            found = base,
            "another process has written to this store; one process per database file"
        );
    }
    let mut revision = base;
    let mut results = Vec::with_capacity(txns.len());
    let mut events = Vec::new();
    for txn in txns {
        match engine::execute(
            &mut SqlTables {
                conn: &tx,
                log: history > 0,
            },
            txn,
            revision + 1,
            observed,
        )? {
            Outcome::Applied(mut applied) => {
                revision += 1;
                results.push(Ok(revision));
                events.append(&mut applied);
            }
            Outcome::Conflict(key) => results.push(Err(key)),
        }
    }
    if revision > base {
        let compact_to = revision.saturating_sub(history).max(compacted);
        if compact_to > compacted {
            tx.prepare_cached("DELETE FROM changes WHERE revision <= ?1")?
                .execute([compact_to])?;
        }
        tx.prepare_cached("UPDATE meta SET revision = ?1, compacted = ?2 WHERE id = 0")?
            .execute(params![revision, compact_to])?;
        tx.commit()?;
    }
    // Otherwise every txn conflicted against durable state and nothing was
    // written: dropping `tx` rolls back, which only releases the lock.
    Ok(Written {
        revision,
        results,
        events,
    })
}

/// The `kv` table inside the batch's SQLite transaction; with `log`, every
/// write also appends to the change log.
struct SqlTables<'a> {
    conn: &'a Connection,
    log: bool,
}

impl Tables for SqlTables<'_> {
    fn lookup(&mut self, key: &str) -> Result<Option<(Revision, Revision)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT create_revision, mod_revision FROM kv WHERE key = ?1")?;
        Ok(stmt
            .query_row([key.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn put(&mut self, key: &str, value: &[u8], revision: Revision) -> Result<Revision, StoreError> {
        let create_revision: Revision = self
            .conn
            .prepare_cached(
                "INSERT INTO kv (key, value, create_revision, mod_revision) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision
                 RETURNING create_revision",
            )?
            .query_row(params![key.as_bytes(), value, revision], |r| r.get(0))?;
        if self.log {
            self.conn
                .prepare_cached("INSERT INTO changes (revision, key, value, create_revision) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![revision, key.as_bytes(), value, create_revision])?;
        }
        Ok(create_revision)
    }

    /// An insert, and only if the key exists an update. The upsert above
    /// took 1.5 to 2 times as long, for its `RETURNING` (2M puts in a
    /// standalone test: 6.6-7.5 s all new keys, 9 s half updates; this: 4.3 s
    /// and 5.7-6.3 s). Insert first, because most writes at scale make new
    /// keys: new tasks and their progress records.
    fn put_unobserved(
        &mut self,
        key: &str,
        value: &[u8],
        revision: Revision,
    ) -> Result<(), StoreError> {
        debug_assert!(!self.log, "the change log needs each put's create revision");
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO kv (key, value, create_revision, mod_revision) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (key) DO NOTHING",
            )?
            .execute(params![key.as_bytes(), value, revision])?;
        if inserted == 0 {
            self.conn
                .prepare_cached("UPDATE kv SET value = ?2, mod_revision = ?3 WHERE key = ?1")?
                .execute(params![key.as_bytes(), value, revision])?;
        }
        Ok(())
    }

    fn delete(&mut self, key: &str, revision: Revision) -> Result<bool, StoreError> {
        let deleted = self
            .conn
            .prepare_cached("DELETE FROM kv WHERE key = ?1")?
            .execute([key.as_bytes()])?;
        if deleted == 0 {
            return Ok(false);
        }
        if !self.log {
            return Ok(true);
        }
        self.conn
            .prepare_cached("INSERT INTO changes (revision, key, value, create_revision) VALUES (?1, ?2, NULL, 0)")?
            .execute(params![revision, key.as_bytes()])?;
        Ok(true)
    }
}

fn key_from_blob(row: &Row<'_>, idx: usize) -> rusqlite::Result<String> {
    let bytes: Vec<u8> = row.get(idx)?;
    String::from_utf8(bytes)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Blob, Box::new(e)))
}

/// A `kv` row: key, value, create_revision, mod_revision.
fn key_value(row: &Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: key_from_blob(row, 0)?,
        value: row.get(1)?,
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
    })
}

/// A `changes` row: revision, key, value (NULL for a delete), create_revision.
fn change_event(row: &Row<'_>) -> rusqlite::Result<Event> {
    let revision: Revision = row.get(0)?;
    let key = key_from_blob(row, 1)?;
    let value: Option<Vec<u8>> = row.get(2)?;
    Ok(match value {
        Some(value) => Event::Put(KeyValue {
            key,
            value,
            create_revision: row.get(3)?,
            mod_revision: revision,
        }),
        None => Event::Delete { key, revision },
    })
}

/// The same failure for each caller of a failed batch (`StoreError` is not
/// `Clone`, because `rusqlite::Error` is not).
fn duplicate(err: &StoreError) -> StoreError {
    match err {
        StoreError::Conflict { key } => StoreError::Conflict { key: key.clone() },
        StoreError::Compacted(revision) => StoreError::Compacted(*revision),
        StoreError::Closed => StoreError::Closed,
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, message)) => {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(*code, message.clone()))
        }
        StoreError::Sqlite(other) => StoreError::Io(io::Error::other(format!("sqlite: {other}"))),
        StoreError::Io(io) => StoreError::Io(io::Error::new(io.kind(), io.to_string())),
    }
}

fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Once a checkpoint finds the WAL this long (16 MiB of 4 KiB pages), it is
/// time to start the WAL over.
const WAL_RESTART_FRAMES: u64 = 4096;

/// Copies WAL frames into the database file on its own thread and connection,
/// so that the writer's commits only append to the WAL and fsync it, and do
/// not stall while a checkpoint copies and syncs the database file.
///
/// SQLite starts the WAL over only when a write begins with every frame
/// checkpointed, which a background checkpoint never achieves against a busy
/// writer: the WAL would grow without bound. So once the WAL is long, the
/// background thread stands aside and the writer, between two batches,
/// checkpoints the few frames the background one has not copied yet.
struct Checkpointer {
    wake: mpsc::SyncSender<()>,
    /// Set by the background thread when the WAL is long; cleared by the
    /// writer once it has checkpointed everything.
    restart_due: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // A checkpoint's own syncs (the WAL before copying, the database
        // file after) follow the setting of the connection that runs it.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let (wake, woken) = mpsc::sync_channel(1);
        let restart_due = Arc::new(AtomicBool::new(false));
        let due = Arc::clone(&restart_due);
        let thread = std::thread::Builder::new()
            .name("flotilla-store-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    if due.load(Ordering::Acquire) {
                        continue; // the writer's turn; competing would make it fail
                    }
                    match checkpoint(&conn) {
                        Ok((log, _)) if log >= WAL_RESTART_FRAMES => due.store(true, Ordering::Release),
                        Ok(_) => {}
                        Err(e) => warn!(error = %e, "background checkpoint failed; the WAL still holds the data"),
                    }
                }
            })?;
        Ok(Checkpointer {
            wake,
            restart_due,
            thread,
        })
    }

    /// After each batch: one pending wake-up is enough.
    fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Before each batch, on the writer's connection.
    fn restart_wal_if_due(&self, conn: &Connection) {
        if !self.restart_due.load(Ordering::Acquire) {
            return;
        }
        match checkpoint(conn) {
            Ok((log, done)) if log == done => debug!(
                frames = log,
                "WAL fully checkpointed; the next commit starts it over"
            ),
            // A reader still needed old frames: the background thread will
            // find the WAL long again and hand back.
            Ok((log, done)) => debug!(
                frames = log,
                checkpointed = done,
                "WAL not fully checkpointed"
            ),
            Err(e) => warn!(error = %e, "checkpoint failed; the WAL still holds the data"),
        }
        self.restart_due.store(false, Ordering::Release);
    }

    fn stop(self) {
        drop(self.wake);
        if self.thread.join().is_err() {
            error!("store checkpoint thread panicked");
        }
    }
}

/// A passive checkpoint (it never waits for the writer): the WAL's length and
/// how much of it is now in the database file, in frames.
fn checkpoint(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        let log: i64 = r.get(1)?;
        let done: i64 = r.get(2)?;
        Ok((
            u64::try_from(log).unwrap_or(0),
            u64::try_from(done).unwrap_or(0),
        ))
    })
}
