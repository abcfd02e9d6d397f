//! The durable layer: one SQLite database (WAL, `synchronous = FULL`) with a
//! writer thread that commits in groups, and a pool of read connections.
//!
//! # Why SQLite
//!
//! The data outgrows memory (15 days of one-minute data for 10,000 series is
//! over 200 million rows), so it needs an on-disk index ordered by series and
//! time; SQLite's B-trees are exactly that, crash-safe, already in the
//! workspace (bundled), and with WAL a reader never waits for the writer.
//! Tables are `WITHOUT ROWID` with the key (series, ts, unit), so a write is
//! one B-tree insert and a query one range scan.
//!
//! # Group commit
//!
//! Callers put a job on the writer's queue and await its reply. The writer
//! takes every queued job (up to [`MAX_BATCH_JOBS`] / [`MAX_BATCH_SAMPLES`]),
//! applies them in ONE transaction and commits it (one WAL fsync for the
//! batch). Only after the commit does it publish what changed to memory
//! (new series, alarm changes through each job's `then`) and answer the
//! callers: nothing is acknowledged or visible before it is durable. If the
//! commit fails, every job of the batch gets the error and nothing is
//! published; the next batch starts again from what is on disk.
//!
//! # Layout
//!
//! - `meta(k, v)`: the tier floors (see `tiers`) and the schema version;
//! - `series(id, account, region, namespace, name, dims, last_ts)`;
//! - one table per tier partition (`raw_N`, `m1_N`, `m5_N`, `h1_N`) with
//!   `(series, ts, unit, count, sum, min, max, dist)`; `raw` rows also carry
//!   `seq`, the batch that wrote them (raw rows are appended, the others
//!   merged);
//! - `meta` also holds `seq`, the last batch number.
//! - `alarms(account, region, name, body)`: each alarm as JSON;
//! - `history(id, account, region, alarm_name, alarm_type, ts, kind,
//!   summary, data)`: alarm history, kept 30 days.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use flotilla_model::arn::Scope;
use parking_lot::{Mutex, RwLock};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::error::{MetricsError, Result};
use crate::ingest::Sample;
use crate::series::{Catalog, MetricId, SeriesId};
use crate::stat::{dist_from_blob, dist_to_blob, Aggregate};
use crate::tiers::{Floors, Tier};
use crate::types::{AlarmType, HistoryItemType, StandardUnit, Timestamp};

/// Jobs one batch takes at most.
const MAX_BATCH_JOBS: usize = 4096;
/// Samples one batch takes at most (a batch's write time stays bounded).
const MAX_BATCH_SAMPLES: usize = 200_000;
/// Rows one maintenance step moves at most (one transaction, ~tens of ms).
pub(crate) const MAINTENANCE_STEP_ROWS: usize = 20_000;
/// Alarm history is kept this long, as CloudWatch keeps it.
pub(crate) const HISTORY_RETENTION_SECS: i64 = 30 * 86_400;
/// A series' `last_ts` on disk may lag this much behind memory.
const LAST_TS_SLACK_MS: i64 = 60_000;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL, region TEXT NOT NULL,
    namespace TEXT NOT NULL, name TEXT NOT NULL, dims TEXT NOT NULL,
    last_ts INTEGER NOT NULL,
    UNIQUE (account, region, namespace, name, dims)
);
CREATE TABLE IF NOT EXISTS alarms (
    account TEXT NOT NULL, region TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (account, region, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL, region TEXT NOT NULL, alarm_name TEXT NOT NULL,
    alarm_type TEXT NOT NULL, ts INTEGER NOT NULL, kind INTEGER NOT NULL,
    summary TEXT NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_time ON history (account, region, ts, id);
CREATE INDEX IF NOT EXISTS history_by_alarm ON history (account, region, alarm_name, ts, id);
CREATE INDEX IF NOT EXISTS history_age ON history (ts);
";

/// A stored row of a tier table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub ts: i64,
    pub unit: StandardUnit,
    pub aggregate: Aggregate,
}

/// An alarm history item as stored.
#[derive(Debug, Clone)]
pub(crate) struct HistoryRecord {
    pub id: i64,
    pub scope: Scope,
    pub alarm_name: String,
    pub alarm_type: AlarmType,
    pub ts: Timestamp,
    pub kind: HistoryItemType,
    pub summary: String,
    pub data: String,
}

/// A change to the alarm tables.
#[derive(Debug, Clone)]
pub(crate) enum AlarmOp {
    Put {
        scope: Scope,
        name: String,
        body: String,
    },
    Delete {
        scope: Scope,
        name: String,
    },
    History(HistoryRecord),
}

/// What runs on the writer thread once a job's batch is durable.
pub(crate) type AfterCommit = Box<dyn FnOnce() + Send>;

enum Job {
    Samples {
        scope: Scope,
        samples: Vec<Sample>,
        reply: oneshot::Sender<Result<()>>,
    },
    Alarms {
        ops: Vec<AlarmOp>,
        then: Option<AfterCommit>,
        reply: oneshot::Sender<Result<()>>,
    },
    Maintain {
        now: Timestamp,
        reply: oneshot::Sender<Result<MaintenanceStep>>,
    },
}

impl Job {
    fn samples(&self) -> usize {
        match self {
            Job::Samples { samples, .. } => samples.len(),
            Job::Alarms { ops, .. } => ops.len(),
            Job::Maintain { .. } => 0,
        }
    }
}

/// What one maintenance step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceStep {
    /// Rows moved from a closed partition into the next tier.
    pub rows_rolled: usize,
    /// Partition tables dropped (emptied, or past the last tier's retention).
    pub tables_dropped: usize,
    /// History items and series deleted for age.
    pub expired: usize,
    /// Whether there is nothing left to do at this `now`.
    pub done: bool,
}

/// State the writer publishes and readers share.
pub(crate) struct Shared {
    pub catalog: RwLock<Catalog>,
}

/// The database: the writer's queue and the readers' pool.
pub(crate) struct Db {
    path: PathBuf,
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Reader>>,
    pub shared: Arc<Shared>,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(MetricsError::Internal(format!(
                "{}: SQLite would not switch to WAL mode (journal_mode is {mode})",
                path.display()
            )));
        }
        // FULL: the WAL is fsynced at every commit; we acknowledge on commit.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "cache_size", -16384)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Checkpoints run on their own thread (see `Checkpointer`), not
        // inside the writer's COMMIT, where they would stall every caller.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.set_prepared_statement_cache_capacity(256);
        conn.execute_batch(SCHEMA)?;
        let version: Option<i64> = conn
            .query_row("SELECT v FROM meta WHERE k = 'schema'", [], |r| r.get(0))
            .optional()?;
        match version {
            None => {
                conn.execute(
                    "INSERT INTO meta (k, v) VALUES ('schema', ?1)",
                    [SCHEMA_VERSION],
                )?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(MetricsError::Internal(format!(
                "{}: schema version {v} is newer than this Flotilla understands ({SCHEMA_VERSION})",
                path.display()
            )))
            }
            Some(_) => {}
        }
        sync_parent_dir(path)?;

        let mut floors: Floors = [0; 4];
        for tier in Tier::ALL {
            let key = format!("floor_{}", tier.prefix());
            floors[tier.index()] = conn
                .query_row("SELECT v FROM meta WHERE k = ?1", [&key], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
        }
        let mut catalog = Catalog::default();
        {
            let mut stmt = conn.prepare(
                "SELECT id, account, region, namespace, name, dims, last_ts FROM series",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    Scope::new(r.get::<_, String>(1)?, r.get::<_, String>(2)?),
                    MetricId::from_stored(r.get(3)?, r.get(4)?, &r.get::<_, String>(5)?),
                    r.get::<_, i64>(6)?,
                ))
            })?;
            for row in rows {
                let (id, scope, metric, last_ts) = row?;
                catalog.insert(id, scope, Arc::new(metric), last_ts);
            }
        }
        let next_series: i64 =
            conn.query_row("SELECT coalesce(max(id), 0) + 1 FROM series", [], |r| {
                r.get(0)
            })?;
        let seq: i64 = conn
            .query_row("SELECT v FROM meta WHERE k = 'seq'", [], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let tables = list_tables(&conn)?;
        info!(
            path = %path.display(),
            series = catalog.len(),
            partitions = tables.values().map(BTreeSet::len).sum::<usize>(),
            "metric store opened"
        );
        let shared = Arc::new(Shared {
            catalog: RwLock::new(catalog),
        });
        let (queue, jobs) = mpsc::channel();
        let checkpointer = Checkpointer::start(path)?;
        let writer = Writer {
            checkpointer,
            conn,
            jobs,
            shared: Arc::clone(&shared),
            floors,
            tables,
            next_series,
            seq,
            deferred: None,
        };
        let handle = std::thread::Builder::new()
            .name("flotilla-metrics-writer".into())
            .spawn(move || writer.run())?;
        Ok(Db {
            path: path.to_path_buf(),
            queue: Mutex::new(Some(queue)),
            writer: Mutex::new(Some(handle)),
            readers: Mutex::new(Vec::new()),
            shared,
        })
    }

    fn send(&self, job: Job) -> Result<()> {
        match &*self.queue.lock() {
            Some(queue) => queue.send(job).map_err(|_| closed()),
            None => Err(closed()),
        }
    }

    /// Stores samples; resolves once they are durable.
    pub async fn write_samples(&self, scope: Scope, samples: Vec<Sample>) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Samples {
            scope,
            samples,
            reply,
        })?;
        answer.await.map_err(|_| closed())?
    }

    /// Applies alarm changes; `then` runs on the writer thread after the
    /// commit and before this resolves, whether or not the caller still waits.
    pub async fn write_alarms(&self, ops: Vec<AlarmOp>, then: Option<AfterCommit>) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Alarms { ops, then, reply })?;
        answer.await.map_err(|_| closed())?
    }

    pub async fn maintain_step(&self, now: Timestamp) -> Result<MaintenanceStep> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Maintain { now, reply })?;
        answer.await.map_err(|_| closed())?
    }

    /// Runs `f` with a read connection inside a read transaction (one
    /// consistent snapshot).
    pub fn read<T>(&self, f: impl FnOnce(&mut Snapshot<'_>) -> Result<T>) -> Result<T> {
        let mut reader = match self.readers.lock().pop() {
            Some(reader) => reader,
            None => Reader::open(&self.path)?,
        };
        let result = reader.with_snapshot(f);
        self.readers.lock().push(reader);
        result
    }

    /// Every stored alarm: (scope, name, JSON body).
    pub fn load_alarms(&self) -> Result<Vec<(Scope, String, String)>> {
        self.read(|snap| {
            let mut stmt = snap
                .conn
                .prepare("SELECT account, region, name, body FROM alarms")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    Scope::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Stops the writer after the jobs already queued.
    pub fn close(&self) {
        self.queue.lock().take();
        if let Some(handle) = self.writer.lock().take() {
            if handle.join().is_err() {
                error!(path = %self.path.display(), "metric store writer panicked");
            }
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.close();
    }
}

fn closed() -> MetricsError {
    MetricsError::Internal("the metric store is closed".into())
}

fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The partition tables that exist, by tier.
fn list_tables(conn: &Connection) -> Result<BTreeMap<Tier, BTreeSet<i64>>> {
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut tables: BTreeMap<Tier, BTreeSet<i64>> = BTreeMap::new();
    for name in names {
        if let Some((tier, partition)) = Tier::parse_table(&name?) {
            tables.entry(tier).or_default().insert(partition);
        }
    }
    Ok(tables)
}

fn create_table_sql(tier: Tier, table: &str) -> String {
    let (seq, key) = if tier == Tier::Raw {
        ("seq INTEGER NOT NULL,", "series, ts, unit, seq")
    } else {
        ("", "series, ts, unit")
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            series INTEGER NOT NULL, ts INTEGER NOT NULL, unit INTEGER NOT NULL, {seq}
            count REAL NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
            dist BLOB,
            PRIMARY KEY ({key})
        ) WITHOUT ROWID"
    )
}

/// Appends a row to a `raw` table.
fn append_row(
    conn: &Connection,
    table: &str,
    key: (SeriesId, i64, i64),
    seq: i64,
    aggregate: &Aggregate,
) -> Result<()> {
    let mut insert = conn.prepare_cached(&format!(
        "INSERT INTO {table} (series, ts, unit, seq, count, sum, min, max, dist)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))?;
    let mut stored = aggregate.clone();
    stored.compress();
    insert.execute(params![
        key.0,
        key.1,
        key.2,
        seq,
        stored.count,
        stored.sum,
        stored.min,
        stored.max,
        dist_to_blob(&stored.dist)
    ])?;
    Ok(())
}

/// Adds `aggregate` to the row (series, ts, unit) of `table`, creating it.
fn merge_row(
    conn: &Connection,
    table: &str,
    series: SeriesId,
    ts: i64,
    unit: i64,
    aggregate: &Aggregate,
) -> Result<()> {
    let mut insert = conn.prepare_cached(&format!(
        "INSERT INTO {table} (series, ts, unit, count, sum, min, max, dist)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (series, ts, unit) DO NOTHING"
    ))?;
    let mut stored = aggregate.clone();
    stored.compress();
    let inserted = insert.execute(params![
        series,
        ts,
        unit,
        stored.count,
        stored.sum,
        stored.min,
        stored.max,
        dist_to_blob(&stored.dist)
    ])?;
    if inserted == 1 {
        return Ok(());
    }
    let mut select = conn.prepare_cached(&format!(
        "SELECT count, sum, min, max, dist FROM {table} WHERE series = ?1 AND ts = ?2 AND unit = ?3"
    ))?;
    let mut existing = select.query_row(params![series, ts, unit], row_aggregate(0))?;
    existing.merge(aggregate);
    existing.compress();
    let mut update = conn.prepare_cached(&format!(
        "UPDATE {table} SET count = ?4, sum = ?5, min = ?6, max = ?7, dist = ?8
         WHERE series = ?1 AND ts = ?2 AND unit = ?3"
    ))?;
    update.execute(params![
        series,
        ts,
        unit,
        existing.count,
        existing.sum,
        existing.min,
        existing.max,
        dist_to_blob(&existing.dist)
    ])?;
    Ok(())
}

/// Reads (count, sum, min, max, dist) starting at column `first`.
fn row_aggregate(first: usize) -> impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<Aggregate> {
    move |r| {
        let blob: Option<Vec<u8>> = r.get(first + 4)?;
        Ok(Aggregate {
            count: r.get(first)?,
            sum: r.get(first + 1)?,
            min: r.get(first + 2)?,
            max: r.get(first + 3)?,
            dist: dist_from_blob(blob.as_deref()),
        })
    }
}

/// The writer thread's state.
struct Writer {
    checkpointer: Checkpointer,
    conn: Connection,
    jobs: mpsc::Receiver<Job>,
    shared: Arc<Shared>,
    floors: Floors,
    tables: BTreeMap<Tier, BTreeSet<i64>>,
    next_series: SeriesId,
    /// The number of the last batch that appended `raw` rows.
    seq: i64,
    /// A maintenance job drained while gathering a batch, run after it.
    deferred: Option<Job>,
}

/// What a batch adds to memory once it is durable.
#[derive(Default)]
struct Publish {
    new_series: Vec<(SeriesId, Scope, Arc<MetricId>, i64)>,
    touched: HashMap<SeriesId, i64>,
    persisted: Vec<(SeriesId, i64)>,
}

impl Writer {
    fn run(mut self) {
        loop {
            let first = match self.deferred.take() {
                Some(job) => job,
                None => match self.jobs.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            self.checkpointer.restart_wal_if_due(&self.conn);
            if let Job::Maintain { now, reply } = first {
                let result = self.maintain(now);
                if let Err(e) = &result {
                    error!(error = %e, "metric store maintenance failed");
                }
                let _ = reply.send(result);
                self.checkpointer.wake();
                continue;
            }
            let mut batch = vec![first];
            let mut size = batch[0].samples();
            while batch.len() < MAX_BATCH_JOBS && size < MAX_BATCH_SAMPLES {
                match self.jobs.try_recv() {
                    Ok(job @ Job::Maintain { .. }) => {
                        self.deferred = Some(job);
                        break;
                    }
                    Ok(job) => {
                        size += job.samples();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
            self.checkpointer.wake();
        }
        self.checkpointer.stop();
        debug!("metric store writer stopped: queue closed and empty");
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        let tables_before = self.tables.clone();
        let next_series_before = self.next_series;
        let seq_before = self.seq;
        let mut publish = Publish::default();
        let mut replies = Vec::with_capacity(batch.len());
        let mut work = Vec::with_capacity(batch.len());
        for job in batch {
            match job {
                Job::Samples {
                    scope,
                    samples,
                    reply,
                } => {
                    replies.push(reply);
                    work.push((Some((scope, samples)), Vec::new(), None));
                }
                Job::Alarms { ops, then, reply } => {
                    replies.push(reply);
                    work.push((None, ops, then));
                }
                Job::Maintain { .. } => unreachable!("maintenance runs alone"),
            }
        }
        let started = std::time::Instant::now();
        let result = self.write_batch(&mut work, &mut publish);
        match result {
            Ok(samples) => {
                {
                    let mut catalog = self.shared.catalog.write();
                    for (id, scope, metric, last_ts) in publish.new_series.drain(..) {
                        catalog.insert(id, scope, metric, last_ts);
                    }
                    for (id, ts) in &publish.touched {
                        catalog.touch(*id, *ts);
                    }
                    for (id, ts) in &publish.persisted {
                        catalog.mark_persisted(*id, *ts);
                    }
                }
                for (_, _, then) in work.iter_mut() {
                    if let Some(then) = then.take() {
                        then();
                    }
                }
                tracing::trace!(
                    jobs = replies.len(),
                    samples,
                    micros = started.elapsed().as_micros() as u64,
                    "metric batch durable"
                );
                for reply in replies {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                error!(error = %e, jobs = replies.len(), "metric store batch failed and was rolled back");
                self.tables = tables_before;
                self.next_series = next_series_before;
                self.seq = seq_before;
                for reply in replies {
                    let _ = reply.send(Err(MetricsError::Internal(e.to_string())));
                }
            }
        }
    }

    /// Applies a batch in one transaction; returns the number of samples.
    #[allow(clippy::type_complexity)]
    fn write_batch(
        &mut self,
        work: &mut [(
            Option<(Scope, Vec<Sample>)>,
            Vec<AlarmOp>,
            Option<AfterCommit>,
        )],
        publish: &mut Publish,
    ) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Merge the batch's samples per row first: a busy series costs one
        // row write per batch, not one per call.
        let mut rows: BTreeMap<(Tier, SeriesId, i64, i64), Aggregate> = BTreeMap::new();
        let mut new_ids: HashMap<(Scope, Arc<MetricId>), SeriesId> = HashMap::new();
        let mut count = 0;
        {
            let catalog = self.shared.catalog.read();
            for (samples, _, _) in work.iter() {
                let Some((scope, samples)) = samples else {
                    continue;
                };
                for sample in samples {
                    count += 1;
                    let id = match catalog.get(scope, &sample.metric) {
                        Some(id) => id,
                        None => {
                            let key = (scope.clone(), Arc::clone(&sample.metric));
                            match new_ids.get(&key) {
                                Some(id) => *id,
                                None => {
                                    let id = self.next_series;
                                    self.next_series += 1;
                                    new_ids.insert(key, id);
                                    id
                                }
                            }
                        }
                    };
                    let Some(tier) = crate::tiers::route(sample.ts, &self.floors) else {
                        warn!(
                            ts = sample.ts,
                            "sample older than every retained tier dropped"
                        );
                        continue;
                    };
                    let ts = tier.align(sample.ts);
                    let entry = publish.touched.entry(id).or_insert(sample.ts);
                    *entry = (*entry).max(sample.ts);
                    rows.entry((tier, id, ts, sample.unit.code()))
                        .and_modify(|a| a.merge(&sample.aggregate))
                        .or_insert_with(|| sample.aggregate.clone());
                }
            }
            for ((scope, metric), id) in &new_ids {
                let last_ts = publish.touched.get(id).copied().unwrap_or(0);
                tx.prepare_cached(
                    "INSERT INTO series (id, account, region, namespace, name, dims, last_ts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    id,
                    scope.account,
                    scope.region,
                    metric.namespace,
                    metric.metric_name,
                    metric.dims_text(),
                    last_ts
                ])?;
                publish
                    .new_series
                    .push((*id, scope.clone(), Arc::clone(metric), last_ts));
            }
            // (New series are not in the catalog yet: their row has it.)
            for (id, ts) in &publish.touched {
                if let Some(entry) = catalog.entry(*id) {
                    if *ts >= entry.persisted_last_ts + LAST_TS_SLACK_MS {
                        tx.prepare_cached("UPDATE series SET last_ts = ?2 WHERE id = ?1")?
                            .execute(params![id, ts])?;
                        publish.persisted.push((*id, *ts));
                    }
                }
            }
        }
        if rows.keys().any(|k| k.0 == Tier::Raw) {
            self.seq += 1;
            tx.execute(
                "INSERT INTO meta (k, v) VALUES ('seq', ?1) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                [self.seq],
            )?;
        }
        for ((tier, id, ts, unit), aggregate) in &rows {
            let partition = tier.partition_of(*ts);
            let table = tier.table(partition);
            if self.tables.entry(*tier).or_default().insert(partition) {
                tx.execute_batch(&create_table_sql(*tier, &table))?;
            }
            if *tier == Tier::Raw {
                append_row(&tx, &table, (*id, *ts, *unit), self.seq, aggregate)?;
            } else {
                merge_row(&tx, &table, *id, *ts, *unit, aggregate)?;
            }
        }
        for (_, ops, _) in work.iter() {
            for op in ops {
                apply_alarm_op(&tx, op)?;
            }
        }
        tx.commit()?;
        Ok(count)
    }

    /// One bounded step of roll-up and retention at `now`.
    fn maintain(&mut self, now: Timestamp) -> Result<MaintenanceStep> {
        let mut step = MaintenanceStep::default();
        let mut floors = self.floors;
        for tier in Tier::ALL {
            floors[tier.index()] = floors[tier.index()].max(tier.floor_at(now));
        }
        if floors != self.floors {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for tier in Tier::ALL {
                tx.execute(
                    "INSERT INTO meta (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                    params![format!("floor_{}", tier.prefix()), floors[tier.index()]],
                )?;
            }
            tx.commit()?;
            debug!(?floors, "tier floors raised");
            self.floors = floors;
        }
        // The oldest closed partition of any tier.
        let closed = Tier::ALL.into_iter().find_map(|tier| {
            let floor = self.floors[tier.index()];
            self.tables
                .get(&tier)?
                .iter()
                .find(|p| tier.partition_start(p.saturating_add(1)) <= floor)
                .map(|p| (tier, *p))
        });
        if let Some((tier, partition)) = closed {
            self.roll(tier, partition, &mut step)?;
            return Ok(step);
        }
        step.expired = self.expire(now)?;
        step.done = step.expired == 0;
        Ok(step)
    }

    /// Moves up to [`MAINTENANCE_STEP_ROWS`] rows of a closed partition into
    /// the next tier (aggregated to its resolution), dropping the table once
    /// it is empty. The last tier's partitions are dropped outright.
    fn roll(&mut self, tier: Tier, partition: i64, step: &mut MaintenanceStep) -> Result<()> {
        let table = tier.table(partition);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut created = Vec::new();
        if tier.next().is_some() {
            // The key of a raw row includes the batch that wrote it.
            let (key, key_width) = if tier == Tier::Raw {
                ("series, ts, unit, seq", 4)
            } else {
                ("series, ts, unit", 3)
            };
            let rows: Vec<(SeriesId, i64, i64, i64, Aggregate)> = {
                let mut stmt = tx.prepare(&format!(
                    "SELECT {key}, count, sum, min, max, dist FROM {table} ORDER BY {key} LIMIT ?1"
                ))?;
                let read = stmt.query_map([MAINTENANCE_STEP_ROWS as i64], |r| {
                    let seq = if key_width == 4 { r.get(3)? } else { 0 };
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        seq,
                        row_aggregate(key_width)(r)?,
                    ))
                })?;
                read.collect::<rusqlite::Result<_>>()?
            };
            let mut merged: BTreeMap<(Tier, SeriesId, i64, i64), Aggregate> = BTreeMap::new();
            for (series, ts, unit, _, aggregate) in &rows {
                // The next tier that still keeps this time; none: it expires.
                let Some(target) = Tier::ALL
                    .into_iter()
                    .filter(|t| *t > tier)
                    .find(|t| *ts >= self.floors[t.index()])
                else {
                    continue;
                };
                merged
                    .entry((target, *series, target.align(*ts), *unit))
                    .and_modify(|a| a.merge(aggregate))
                    .or_insert_with(|| aggregate.clone());
            }
            for ((target, series, ts, unit), aggregate) in &merged {
                let p = target.partition_of(*ts);
                if self.tables.entry(*target).or_default().insert(p) {
                    tx.execute_batch(&create_table_sql(*target, &target.table(p)))?;
                    created.push((*target, p));
                }
                merge_row(&tx, &target.table(p), *series, *ts, *unit, aggregate)?;
            }
            if let Some((series, ts, unit, seq, _)) = rows.last() {
                if key_width == 4 {
                    tx.execute(
                        &format!(
                            "DELETE FROM {table} WHERE (series, ts, unit, seq) <= (?1, ?2, ?3, ?4)"
                        ),
                        params![series, ts, unit, seq],
                    )?;
                } else {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE (series, ts, unit) <= (?1, ?2, ?3)"),
                        params![series, ts, unit],
                    )?;
                }
            }
            step.rows_rolled = rows.len();
            if rows.len() == MAINTENANCE_STEP_ROWS {
                if let Err(e) = tx.commit() {
                    self.forget(&created);
                    return Err(e.into());
                }
                return Ok(());
            }
        }
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {table}"))?;
        if let Err(e) = tx.commit() {
            self.forget(&created);
            return Err(e.into());
        }
        if let Some(set) = self.tables.get_mut(&tier) {
            set.remove(&partition);
        }
        step.tables_dropped = 1;
        debug!(
            table,
            rows = step.rows_rolled,
            "partition rolled up and dropped"
        );
        Ok(())
    }

    fn forget(&mut self, created: &[(Tier, i64)]) {
        for (tier, p) in created {
            if let Some(set) = self.tables.get_mut(tier) {
                set.remove(p);
            }
        }
    }

    /// Deletes alarm history older than 30 days and series with nothing
    /// retained, a bounded number per step.
    fn expire(&mut self, now: Timestamp) -> Result<usize> {
        let limit = MAINTENANCE_STEP_ROWS as i64;
        let history_horizon = now.minus_secs(HISTORY_RETENTION_SECS).millis();
        let series_horizon = Timestamp(now.millis().saturating_sub(Tier::H1.retention_ms()));
        let mut expired_series = self.shared.catalog.read().expired(series_horizon);
        expired_series.truncate(MAINTENANCE_STEP_ROWS);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let history = tx.execute(
            "DELETE FROM history WHERE id IN (SELECT id FROM history WHERE ts < ?1 LIMIT ?2)",
            params![history_horizon, limit],
        )?;
        for id in &expired_series {
            tx.prepare_cached("DELETE FROM series WHERE id = ?1")?
                .execute([id])?;
        }
        tx.commit()?;
        if !expired_series.is_empty() {
            let mut catalog = self.shared.catalog.write();
            for id in &expired_series {
                catalog.remove(*id);
            }
        }
        Ok(history + expired_series.len())
    }
}

fn apply_alarm_op(conn: &Connection, op: &AlarmOp) -> Result<()> {
    match op {
        AlarmOp::Put { scope, name, body } => {
            conn.prepare_cached(
                "INSERT INTO alarms (account, region, name, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account, region, name) DO UPDATE SET body = excluded.body",
            )?
            .execute(params![scope.account, scope.region, name, body])?;
        }
        AlarmOp::Delete { scope, name } => {
            conn.prepare_cached(
                "DELETE FROM alarms WHERE account = ?1 AND region = ?2 AND name = ?3",
            )?
            .execute(params![scope.account, scope.region, name])?;
        }
        AlarmOp::History(h) => {
            conn.prepare_cached(
                "INSERT INTO history (account, region, alarm_name, alarm_type, ts, kind, summary, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                h.scope.account,
                h.scope.region,
                h.alarm_name,
                h.alarm_type.as_str(),
                h.ts.millis(),
                h.kind.code(),
                h.summary,
                h.data
            ])?;
        }
    }
    Ok(())
}

/// A read connection with the partition tables it has seen.
struct Reader {
    conn: Connection,
    schema_version: i64,
    tables: BTreeMap<Tier, BTreeSet<i64>>,
}

impl Reader {
    fn open(path: &Path) -> Result<Reader> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.set_prepared_statement_cache_capacity(256);
        Ok(Reader {
            conn,
            schema_version: -1,
            tables: BTreeMap::new(),
        })
    }

    fn with_snapshot<T>(&mut self, f: impl FnOnce(&mut Snapshot<'_>) -> Result<T>) -> Result<T> {
        let tx = self.conn.unchecked_transaction()?;
        // The schema version is part of the snapshot: reload the table list
        // when partitions were created or dropped since this reader looked.
        let version: i64 = tx.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
        if version != self.schema_version {
            self.tables = list_tables(&tx)?;
            self.schema_version = version;
        }
        let result = f(&mut Snapshot {
            conn: &tx,
            tables: &self.tables,
        });
        tx.finish()?;
        result
    }
}

/// One consistent read view of the database.
pub(crate) struct Snapshot<'a> {
    pub conn: &'a Connection,
    tables: &'a BTreeMap<Tier, BTreeSet<i64>>,
}

impl Snapshot<'_> {
    /// Every stored row of `series` with `start <= ts < end`, from every
    /// tier, oldest first per tier.
    pub fn rows(&self, series: SeriesId, start: i64, end: i64) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        if end <= start {
            return Ok(out);
        }
        for (tier, partitions) in self.tables {
            let (first, last) = (tier.partition_of(start), tier.partition_of(end - 1));
            for partition in partitions.range(first..=last) {
                let table = tier.table(*partition);
                let mut stmt = self.conn.prepare_cached(&format!(
                    "SELECT ts, unit, count, sum, min, max, dist FROM {table}
                     WHERE series = ?1 AND ts >= ?2 AND ts < ?3"
                ))?;
                let rows = stmt.query_map(params![series, start, end], |r| {
                    Ok(Row {
                        ts: r.get(0)?,
                        unit: StandardUnit::from_code(r.get(1)?),
                        aggregate: row_aggregate(2)(r)?,
                    })
                })?;
                for row in rows {
                    out.push(row?);
                }
            }
        }
        Ok(out)
    }

    /// Alarm history, newest or oldest first, after a cursor id.
    #[allow(clippy::too_many_arguments)]
    pub fn history(
        &self,
        scope: &Scope,
        alarm_name: Option<&str>,
        kind: Option<HistoryItemType>,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
        ascending: bool,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>> {
        let mut sql = String::from(
            "SELECT id, alarm_name, alarm_type, ts, kind, summary, data FROM history
             WHERE account = ?1 AND region = ?2",
        );
        let mut args: Vec<rusqlite::types::Value> =
            vec![scope.account.clone().into(), scope.region.clone().into()];
        let mut arg = |sql: &mut String, clause: &str, value: rusqlite::types::Value| {
            args.push(value);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(name) = alarm_name {
            arg(&mut sql, " AND alarm_name = ?", name.to_string().into());
        }
        if let Some(kind) = kind {
            arg(&mut sql, " AND kind = ?", kind.code().into());
        }
        if let Some(start) = start {
            arg(&mut sql, " AND ts >= ?", start.millis().into());
        }
        if let Some(end) = end {
            arg(&mut sql, " AND ts <= ?", end.millis().into());
        }
        if let Some((ts, id)) = after {
            let op = if ascending { ">" } else { "<" };
            args.push(ts.into());
            let ts_arg = args.len();
            args.push(id.into());
            sql.push_str(&format!(" AND (ts, id) {op} (?{ts_arg}, ?{})", args.len()));
        }
        let order = if ascending { "ASC" } else { "DESC" };
        sql.push_str(&format!(" ORDER BY ts {order}, id {order} LIMIT {limit}"));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
            Ok(HistoryRecord {
                id: r.get(0)?,
                scope: scope.clone(),
                alarm_name: r.get(1)?,
                alarm_type: AlarmType::parse(&r.get::<_, String>(2)?, "AlarmType")
                    .unwrap_or(AlarmType::MetricAlarm),
                ts: Timestamp(r.get(3)?),
                kind: HistoryItemType::from_code(r.get(4)?),
                summary: r.get(5)?,
                data: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

/// Once a checkpoint finds the WAL this long (16 MiB of 4 KiB pages), it is
/// time to start the WAL over.
const WAL_RESTART_FRAMES: u64 = 4096;

/// Copies WAL frames into the database file on its own thread and
/// connection, so that a commit costs a WAL append and one fsync, not the
/// occasional multi-megabyte copy and database fsync. (The same design as
/// `flotilla-store`'s.)
///
/// SQLite starts the WAL over only when a write begins with every frame
/// checkpointed, which a background checkpoint never achieves against a busy
/// writer, so once the WAL is long the background thread stands aside and
/// the writer, between two batches, checkpoints the few frames left.
struct Checkpointer {
    wake: mpsc::SyncSender<()>,
    /// Set by the background thread when the WAL is long; cleared by the
    /// writer once it has checkpointed.
    restart_due: Arc<std::sync::atomic::AtomicBool>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer> {
        use std::sync::atomic::Ordering;
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // A checkpoint's own syncs follow the setting of its connection.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let (wake, woken) = mpsc::sync_channel(1);
        let restart_due = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let due = Arc::clone(&restart_due);
        let thread = std::thread::Builder::new()
            .name("flotilla-metrics-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    if due.load(Ordering::Acquire) {
                        continue; // the writer's turn
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
        use std::sync::atomic::Ordering;
        if !self.restart_due.load(Ordering::Acquire) {
            return;
        }
        match checkpoint(conn) {
            Ok((log, done)) => debug!(
                frames = log,
                checkpointed = done,
                "WAL checkpointed by the writer"
            ),
            Err(e) => warn!(error = %e, "checkpoint failed; the WAL still holds the data"),
        }
        self.restart_due.store(false, Ordering::Release);
    }

    fn stop(self) {
        drop(self.wake);
        if self.thread.join().is_err() {
            error!("metric store checkpoint thread panicked");
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
