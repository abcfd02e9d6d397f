//! Segment files: one SQLite database per group and ingestion period,
//! `segments/GROUP/SEGMENT.db`, holding frames (one per PutLogEvents, the
//! accepted events of one stream, compressed) and the indexes readers seek
//! with: by first and by last timestamp, for the group and per stream.
//! Retention deletes a segment by deleting its file.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::catalog::{GroupId, SegmentId, StreamId};
use crate::commands::PendingFrame;
use crate::error::StoreError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS frames (
    seq INTEGER PRIMARY KEY,
    stream INTEGER NOT NULL,
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    count INTEGER NOT NULL,
    ingestion INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS frames_by_min ON frames (min_ts);
CREATE INDEX IF NOT EXISTS frames_by_max ON frames (max_ts);
CREATE INDEX IF NOT EXISTS frames_by_stream_min ON frames (stream, min_ts);
CREATE INDEX IF NOT EXISTS frames_by_stream_max ON frames (stream, max_ts);
";

pub fn segments_dir(root: &Path) -> PathBuf {
    root.join("segments")
}

pub fn group_dir(root: &Path, group: GroupId) -> PathBuf {
    segments_dir(root).join(group.to_string())
}

pub fn path(root: &Path, group: GroupId, segment: SegmentId) -> PathBuf {
    group_dir(root, group).join(format!("{segment}.db"))
}

fn configure(conn: &Connection, writer: bool) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5))?;
    // Small caches: many segments may be open at once, and frames are
    // read once per query.
    conn.pragma_update(None, "cache_size", -1024)?;
    if writer {
        conn.pragma_update(None, "synchronous", "FULL")?;
    } else {
        conn.pragma_update(None, "query_only", true)?;
    }
    Ok(())
}

/// Creates a new segment file with its schema and makes its directory
/// entry durable, so that registering it afterwards cannot name a file a
/// crash lost.
pub fn create(root: &Path, group: GroupId, segment: SegmentId) -> Result<Connection, StoreError> {
    let dir = group_dir(root, group);
    if !dir.exists() {
        fs::create_dir_all(&dir)?;
        sync_dir(&segments_dir(root))?;
    }
    let path = path(root, group, segment);
    let conn = Connection::open(&path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "{}: not in WAL mode",
            path.display()
        )));
    }
    configure(&conn, true)?;
    conn.execute_batch(SCHEMA)?;
    sync_dir(&dir)?;
    Ok(conn)
}

/// Opens an existing segment for writing.
pub fn open_writer(
    root: &Path,
    group: GroupId,
    segment: SegmentId,
) -> Result<Connection, StoreError> {
    let path = path(root, group, segment);
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn, true)?;
    Ok(conn)
}

/// Opens an existing segment for reading; `None` if it is gone (deleted
/// by retention or with its group after the reader looked it up).
pub fn open_reader(
    root: &Path,
    group: GroupId,
    segment: SegmentId,
) -> Result<Option<Connection>, StoreError> {
    let path = path(root, group, segment);
    if !path.exists() {
        return Ok(None);
    }
    // No CREATE flag: a file deleted meanwhile must not come back empty.
    match Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(conn) => {
            configure(&conn, false)?;
            Ok(Some(conn))
        }
        Err(_) if !path.exists() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Appends frames in one transaction; durable when it returns.
pub fn insert_frames(conn: &mut Connection, frames: &[&PendingFrame]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO frames (seq, stream, min_ts, max_ts, count, ingestion, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for f in frames {
            stmt.execute(params![
                f.seq,
                f.stream,
                f.min_ts,
                f.max_ts,
                f.count,
                f.ingestion,
                f.data
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Deletes frames of a round that never committed (sequence numbers at or
/// past the durable `next_seq`).
pub fn purge_uncommitted(conn: &Connection, next_seq: u64) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM frames WHERE seq >= ?1", [next_seq])?)
}

/// Deletes up to `limit` frames of a deleted stream; fewer means done.
pub fn purge_stream(
    conn: &Connection,
    stream: StreamId,
    limit: usize,
) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM frames WHERE seq IN (SELECT seq FROM frames WHERE stream = ?1 LIMIT ?2)",
        params![stream, limit as i64],
    )?)
}

/// Copies the WAL into the database and empties it: done when a segment
/// is sealed, so a finished segment is one file.
pub fn checkpoint(conn: &Connection) -> Result<(), StoreError> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// A frame's summary, without its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    pub seq: u64,
    pub stream: StreamId,
    pub min_ts: i64,
    pub max_ts: i64,
    pub count: u32,
    pub ingestion: i64,
}

/// Which frames a scan wants from one segment.
#[derive(Debug, Clone, Copy)]
pub struct FrameQuery {
    /// Only this stream's frames (GetLogEvents), else all.
    pub stream: Option<StreamId>,
    /// Events wanted lie in `[lower, upper]`.
    pub lower: i64,
    pub upper: i64,
    /// The segment's widest frame: a frame holding an event at `t` has
    /// `min_ts >= t - span` and `max_ts <= t + span`.
    pub span: i64,
    /// Frames at or past this sequence number are not durable yet.
    pub visible: u64,
}

fn frame_meta(r: &rusqlite::Row<'_>) -> rusqlite::Result<FrameMeta> {
    Ok(FrameMeta {
        seq: r.get(0)?,
        stream: r.get(1)?,
        min_ts: r.get(2)?,
        max_ts: r.get(3)?,
        count: r.get(4)?,
        ingestion: r.get(5)?,
    })
}

/// Frames overlapping the query, in `(min_ts, seq)` order, after `cursor`.
pub fn frames_forward(
    conn: &Connection,
    q: &FrameQuery,
    cursor: Option<(i64, u64)>,
    limit: usize,
) -> Result<Vec<FrameMeta>, StoreError> {
    let lo = q.lower.saturating_sub(q.span);
    let (cmin, cseq) = cursor.unwrap_or((lo.saturating_sub(1), 0));
    let sql_all = "SELECT seq, stream, min_ts, max_ts, count, ingestion FROM frames
         WHERE min_ts >= ?1 AND min_ts <= ?2 AND max_ts >= ?3 AND seq < ?4 AND (min_ts, seq) > (?5, ?6)
         ORDER BY min_ts, seq LIMIT ?7";
    let sql_stream = "SELECT seq, stream, min_ts, max_ts, count, ingestion FROM frames
         WHERE stream = ?8 AND min_ts >= ?1 AND min_ts <= ?2 AND max_ts >= ?3 AND seq < ?4 AND (min_ts, seq) > (?5, ?6)
         ORDER BY min_ts, seq LIMIT ?7";
    let rows = match q.stream {
        None => conn
            .prepare_cached(sql_all)?
            .query_map(
                params![lo, q.upper, q.lower, q.visible, cmin, cseq, limit as i64],
                frame_meta,
            )?
            .collect::<Result<Vec<_>, _>>()?,
        Some(stream) => conn
            .prepare_cached(sql_stream)?
            .query_map(
                params![
                    lo,
                    q.upper,
                    q.lower,
                    q.visible,
                    cmin,
                    cseq,
                    limit as i64,
                    stream
                ],
                frame_meta,
            )?
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(rows)
}

/// Frames overlapping the query, in descending `(max_ts, seq)` order,
/// before `cursor`.
pub fn frames_backward(
    conn: &Connection,
    q: &FrameQuery,
    cursor: Option<(i64, u64)>,
    limit: usize,
) -> Result<Vec<FrameMeta>, StoreError> {
    let hi = q.upper.saturating_add(q.span);
    let (cmax, cseq) = cursor.unwrap_or((hi.saturating_add(1), 0));
    let sql_all = "SELECT seq, stream, min_ts, max_ts, count, ingestion FROM frames
         WHERE max_ts <= ?1 AND max_ts >= ?3 AND min_ts <= ?2 AND seq < ?4 AND (max_ts, seq) < (?5, ?6)
         ORDER BY max_ts DESC, seq DESC LIMIT ?7";
    let sql_stream = "SELECT seq, stream, min_ts, max_ts, count, ingestion FROM frames
         WHERE stream = ?8 AND max_ts <= ?1 AND max_ts >= ?3 AND min_ts <= ?2 AND seq < ?4 AND (max_ts, seq) < (?5, ?6)
         ORDER BY max_ts DESC, seq DESC LIMIT ?7";
    let rows = match q.stream {
        None => conn
            .prepare_cached(sql_all)?
            .query_map(
                params![hi, q.upper, q.lower, q.visible, cmax, cseq, limit as i64],
                frame_meta,
            )?
            .collect::<Result<Vec<_>, _>>()?,
        Some(stream) => conn
            .prepare_cached(sql_stream)?
            .query_map(
                params![
                    hi,
                    q.upper,
                    q.lower,
                    q.visible,
                    cmax,
                    cseq,
                    limit as i64,
                    stream
                ],
                frame_meta,
            )?
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(rows)
}

/// A frame's bytes.
pub fn frame_data(conn: &Connection, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT data FROM frames WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))
        .optional()?)
}

/// Removes a segment's files (database, WAL, shared memory).
pub fn remove(root: &Path, group: GroupId, segment: SegmentId) -> io::Result<()> {
    let db = path(root, group, segment);
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.clone().into_os_string();
        name.push(suffix);
        match fs::remove_file(PathBuf::from(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes a directory's entries (files created or removed in it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
