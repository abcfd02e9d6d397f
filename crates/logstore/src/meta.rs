//! The metadata database (`meta.db`): groups, streams, segments, stream
//! membership and the id and sequence counters. Its commit is the commit
//! point of every round: a round is durable, and acknowledged, once this
//! transaction is; segment rows with a sequence number at or past the
//! committed `next_seq` belong to a round that never committed and are
//! deleted at open.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};

use crate::catalog::{Catalog, Change, GroupInfo, SegmentInfo, StreamInfo};
use crate::error::StoreError;
use crate::types::{LogGroupClass, Scope, Tags};

const SCHEMA: &str = "
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS counters (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    next_id INTEGER NOT NULL,
    next_seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (id, next_id, next_seq) VALUES (0, 1, 1);
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    creation_time INTEGER NOT NULL,
    retention_days INTEGER,
    kms_key_id TEXT,
    class TEXT NOT NULL,
    deletion_protection INTEGER NOT NULL,
    tags TEXT NOT NULL,
    purging TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    creation_time INTEGER NOT NULL,
    first_ts INTEGER,
    last_ts INTEGER,
    last_ingestion INTEGER,
    batches INTEGER NOT NULL,
    last_hash BLOB
);
CREATE INDEX IF NOT EXISTS streams_by_group ON streams (group_id);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL,
    created INTEGER NOT NULL,
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    max_span INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    events INTEGER NOT NULL,
    sealed INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_by_group ON segments (group_id);
CREATE TABLE IF NOT EXISTS members (
    stream_id INTEGER NOT NULL,
    segment_id INTEGER NOT NULL,
    PRIMARY KEY (stream_id, segment_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_segment ON members (segment_id);
PRAGMA user_version = 1;
COMMIT;
";

const SCHEMA_VERSION: i64 = 1;

/// Opens `path` for writing: WAL, and `synchronous = FULL` so that a
/// commit is on disk when it returns. The connection keeps an exclusive
/// lock on the file for its whole life (only the writer ever opens it), so
/// a second process opening the same store fails instead of interleaving
/// its rounds with ours.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_millis(500))?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) => StoreError::Corrupt(format!(
                "{}: the log store is open in another process",
                path.display()
            )),
            _ => e.into(),
        })?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "{}: SQLite would not switch to WAL mode",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "{}: schema version {version} is newer than this code understands",
            path.display()
        )));
    }
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn json_error(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// Reads the whole catalog.
pub fn load(conn: &Connection) -> Result<Catalog, StoreError> {
    let (next_id, next_seq): (u64, u64) = conn.query_row(
        "SELECT next_id, next_seq FROM counters WHERE id = 0",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut catalog = Catalog {
        next_id,
        next_seq,
        ..Default::default()
    };
    let mut stmt = conn.prepare(
        "SELECT id, account, region, name, creation_time, retention_days, kms_key_id, class,
                deletion_protection, tags, purging FROM groups",
    )?;
    let groups = stmt.query_map([], |r| {
        let tags: String = r.get(9)?;
        let purging: String = r.get(10)?;
        let class: String = r.get(7)?;
        Ok(GroupInfo {
            id: r.get(0)?,
            scope: Scope::new(r.get::<_, String>(1)?, r.get::<_, String>(2)?),
            name: r.get(3)?,
            creation_time: r.get(4)?,
            retention_days: r.get(5)?,
            kms_key_id: r.get(6)?,
            class: LogGroupClass::parse(&class).unwrap_or_default(),
            deletion_protection: r.get(8)?,
            tags: serde_json::from_str::<Tags>(&tags).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    9,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
            purging: serde_json::from_str::<BTreeMap<u64, BTreeSet<u64>>>(&purging).map_err(
                |e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        10,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                },
            )?,
        })
    })?;
    for group in groups {
        catalog.apply(&Change::Group(group?));
    }
    let mut stmt = conn.prepare(
        "SELECT id, group_id, created, min_ts, max_ts, max_span, bytes, frames, events, sealed FROM segments",
    )?;
    let segments = stmt.query_map([], |r| {
        Ok(SegmentInfo {
            id: r.get(0)?,
            group: r.get(1)?,
            created: r.get(2)?,
            min_ts: r.get(3)?,
            max_ts: r.get(4)?,
            max_span: r.get(5)?,
            bytes: r.get(6)?,
            frames: r.get(7)?,
            events: r.get(8)?,
            sealed: r.get(9)?,
        })
    })?;
    for segment in segments {
        catalog.apply(&Change::Segment(segment?));
    }
    let mut members: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT stream_id, segment_id FROM members")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, u64>(0)?, r.get::<_, u64>(1)?)))? {
        let (stream, segment) = row?;
        members.entry(stream).or_default().insert(segment);
    }
    let mut stmt = conn.prepare(
        "SELECT id, group_id, name, creation_time, first_ts, last_ts, last_ingestion, batches, last_hash FROM streams",
    )?;
    let streams = stmt.query_map([], |r| {
        let hash: Option<Vec<u8>> = r.get(8)?;
        Ok(StreamInfo {
            id: r.get(0)?,
            group: r.get(1)?,
            name: r.get(2)?,
            creation_time: r.get(3)?,
            first_ts: r.get(4)?,
            last_ts: r.get(5)?,
            last_ingestion: r.get(6)?,
            batches: r.get(7)?,
            last_hash: hash.and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok()),
            segments: BTreeSet::new(),
        })
    })?;
    for stream in streams {
        let mut stream = stream?;
        stream.segments = members.remove(&stream.id).unwrap_or_default();
        catalog.apply(&Change::Stream(stream));
    }
    // Purge entries for segments that retention removed meanwhile.
    for group in catalog.groups.values_mut() {
        let segments = &group.segments;
        for pending in group.info.purging.values_mut() {
            pending.retain(|s| segments.contains_key(s));
        }
        group.info.purging.retain(|_, s| !s.is_empty());
    }
    Ok(catalog)
}

/// Writes a round's changes and the counters in one durable transaction.
pub fn persist<'a>(
    conn: &mut Connection,
    changes: impl Iterator<Item = &'a Change>,
    next_id: u64,
    next_seq: u64,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for change in changes {
        write_change(&tx, change)?;
    }
    tx.prepare_cached("UPDATE counters SET next_id = ?1, next_seq = ?2 WHERE id = 0")?
        .execute(params![next_id, next_seq])?;
    tx.commit()?;
    Ok(())
}

fn write_change(tx: &Connection, change: &Change) -> rusqlite::Result<()> {
    match change {
        Change::Group(g) => {
            let tags = serde_json::to_string(&g.tags).map_err(json_error)?;
            let purging = serde_json::to_string(&g.purging).map_err(json_error)?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO groups (id, account, region, name, creation_time, retention_days,
                     kms_key_id, class, deletion_protection, tags, purging)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                g.id,
                g.scope.account_id,
                g.scope.region,
                g.name,
                g.creation_time,
                g.retention_days,
                g.kms_key_id,
                g.class.as_str(),
                g.deletion_protection,
                tags,
                purging
            ])?;
        }
        Change::GroupDeleted(id) => {
            tx.prepare_cached(
                "DELETE FROM members WHERE segment_id IN (SELECT id FROM segments WHERE group_id = ?1)",
            )?
            .execute([id])?;
            tx.prepare_cached("DELETE FROM segments WHERE group_id = ?1")?
                .execute([id])?;
            tx.prepare_cached("DELETE FROM streams WHERE group_id = ?1")?
                .execute([id])?;
            tx.prepare_cached("DELETE FROM groups WHERE id = ?1")?
                .execute([id])?;
        }
        Change::Stream(s) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO streams (id, group_id, name, creation_time, first_ts, last_ts,
                     last_ingestion, batches, last_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                s.id,
                s.group,
                s.name,
                s.creation_time,
                s.first_ts,
                s.last_ts,
                s.last_ingestion,
                s.batches,
                s.last_hash.as_ref().map(|h| h.as_slice())
            ])?;
        }
        Change::StreamDeleted { stream, .. } => {
            tx.prepare_cached("DELETE FROM members WHERE stream_id = ?1")?
                .execute([stream])?;
            tx.prepare_cached("DELETE FROM streams WHERE id = ?1")?
                .execute([stream])?;
        }
        Change::Segment(s) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO segments (id, group_id, created, min_ts, max_ts, max_span,
                     bytes, frames, events, sealed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                s.id, s.group, s.created, s.min_ts, s.max_ts, s.max_span, s.bytes, s.frames,
                s.events, s.sealed
            ])?;
        }
        Change::SegmentDeleted { segment, .. } => {
            tx.prepare_cached("DELETE FROM members WHERE segment_id = ?1")?
                .execute([segment])?;
            tx.prepare_cached("DELETE FROM segments WHERE id = ?1")?
                .execute([segment])?;
        }
        Change::Member {
            stream, segment, ..
        } => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO members (stream_id, segment_id) VALUES (?1, ?2)",
            )?
            .execute(params![stream, segment])?;
        }
    }
    Ok(())
}
