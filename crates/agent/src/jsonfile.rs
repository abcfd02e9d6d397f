//! Reading a container's Docker `json-file` log directly (as Fluent Bit's
//! tail input does), instead of through the Engine API's
//! `GET /containers/ID/logs`, which costs dockerd about 4 µs of CPU per
//! line to read the same file back and re-encode it.
//!
//! The file (`LogPath` in `docker inspect`) holds one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2026-12-06T19:35:07.123456789Z"}`
//! (RFC 3339 with nanoseconds, trailing zeros trimmed; `attrs` may appear
//! and is ignored). Docker rotates it at `max-size`: under its writer's
//! lock it closes the file, renames `LOG.(n-1)` → `LOG.n` … `LOG` → `LOG.1`
//! (deleting the oldest past `max-file`), and creates a new `LOG`. So:
//!
//! - a [`JsonFileReader`] holds its file open, and knows it by inode: at
//!   the end of the file, if `LOG` is now another file, ours was rotated;
//!   it reads ours to its end once more (Docker wrote it whole before the
//!   rename) and goes on with the file that came after it, found by
//!   looking for our inode among `LOG.1`, `LOG.2`… (the next is the one
//!   before it; if ours is gone, every file present is newer);
//! - a listing opens the files newest first and is retried if an inode
//!   shows up twice (a rotation happened while listing), so no file is
//!   skipped by a rotation racing the listing;
//! - it starts at second `since` (the same records the API's `since`
//!   gives: every record whose time is not before it), skipping rotated
//!   files that end earlier and bisecting the first file read.
//!
//! Records come out exactly as the API gives them (output, Docker's
//! nanosecond timestamp, the logged bytes), so positions and checkpoints
//! are the same whichever way a container's output is read.
//! Compressed rotated files (`compress` log option) are not read; the
//! agent never asks for them.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use crate::runtime::{LogRecord, OutputStream};

/// Bytes read from the file at a time.
const CHUNK: usize = 256 * 1024;
/// Records a little out of order across stdout and stderr (each output has
/// its own copier in Docker) are found by starting this much before `since`.
const SKEW_NS: i64 = 5_000_000_000;
/// Rotated files looked for: `LOG.1` … `LOG.MAX_ROTATED`.
const MAX_ROTATED: usize = 64;

/// What one [`JsonFileReader::step`] found.
#[derive(Debug)]
pub enum Step {
    /// Records, in file order (at least one).
    Records(Vec<LogRecord>),
    /// At the end of the newest file: nothing more for now.
    Idle,
}

#[derive(Debug)]
struct Open {
    file: File,
    ino: (u64, u64),
}

/// Follows one container's json-file log and its rotations.
#[derive(Debug)]
pub struct JsonFileReader {
    base: PathBuf,
    cur: Open,
    /// Files after `cur`, oldest first, opened by the listing that found it.
    next: VecDeque<Open>,
    /// `LOG` was seen to be another file than `cur` (after `cur`'s end).
    rotated: bool,
    buf: Vec<u8>,
    /// Unparsed bytes are `buf[start..]`.
    start: usize,
    since_ns: i64,
    out: BytesMut,
    /// Lines that were not Docker's JSON (skipped).
    pub bad_lines: u64,
}

fn ino(file: &File) -> std::io::Result<(u64, u64)> {
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}

fn rotated_name(base: &Path, n: usize) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The log's files, oldest first, all opened (see the module docs).
fn list(base: &Path) -> std::io::Result<Vec<Open>> {
    'retry: for _ in 0..100 {
        let mut files: Vec<Open> = Vec::new();
        for n in 0..=MAX_ROTATED {
            let path = if n == 0 {
                base.to_path_buf()
            } else {
                rotated_name(base, n)
            };
            match File::open(&path) {
                Ok(file) => {
                    let ino = ino(&file)?;
                    if files.iter().any(|f| f.ino == ino) {
                        continue 'retry;
                    }
                    files.push(Open { file, ino });
                }
                // `LOG` itself may be missing for a moment during a rotation.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && n == 0 => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(e),
            }
        }
        files.reverse();
        return Ok(files);
    }
    Err(std::io::Error::other(format!(
        "{} kept rotating while it was listed",
        base.display()
    )))
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

/// Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Docker's `time`: `YYYY-MM-DDTHH:MM:SS[.fraction]Z` quickly, anything
/// else RFC 3339 allows through the `time` crate. Nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    fast_time(s.as_bytes()).or_else(|| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .ok()
            .and_then(|t| i64::try_from(t.unix_timestamp_nanos()).ok())
    })
}

fn fast_time(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut v = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    let nanos = match frac.split_first() {
        None => 0,
        Some((b'.', digits)) if !digits.is_empty() && digits.len() <= 9 => {
            let mut v = 0i64;
            for &c in digits {
                if !c.is_ascii_digit() {
                    return None;
                }
                v = v * 10 + i64::from(c - b'0');
            }
            v * 10i64.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    Some(secs * 1_000_000_000 + nanos)
}

/// The time of one line of the file, without its message.
fn line_time(line: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct TimeOnly<'a> {
        #[serde(borrow)]
        time: Cow<'a, str>,
    }
    let t: TimeOnly = serde_json::from_slice(line).ok()?;
    parse_time(&t.time)
}

/// Reads up to `len` bytes at `offset`.
fn read_at(file: &mut File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len);
    file.by_ref().take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The first complete line starting at or after `at`: (start, end past its
/// newline, time).
fn line_after(file: &mut File, at: u64) -> std::io::Result<Option<(u64, u64, Option<i64>)>> {
    let from = at.saturating_sub(1);
    let mut window = CHUNK;
    loop {
        let buf = read_at(file, from, window)?;
        let start = if at == 0 {
            Some(0)
        } else {
            buf.iter().position(|&c| c == b'\n').map(|i| i + 1)
        };
        let Some(start) = start else {
            if buf.len() < window {
                return Ok(None);
            }
            window *= 4;
            continue;
        };
        let Some(len) = buf[start..].iter().position(|&c| c == b'\n') else {
            if buf.len() < window {
                return Ok(None);
            }
            window *= 4;
            continue;
        };
        let line = &buf[start..start + len];
        let base = if at == 0 { 0 } else { from };
        return Ok(Some((
            base + start as u64,
            base + (start + len + 1) as u64,
            line_time(line),
        )));
    }
}

/// The time of the file's last complete line.
fn last_time(file: &mut File) -> std::io::Result<Option<i64>> {
    let len = file.metadata()?.len();
    let mut window = CHUNK as u64;
    loop {
        let from = len.saturating_sub(window);
        let buf = read_at(file, from, window as usize)?;
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        match body.iter().rposition(|&c| c == b'\n') {
            Some(i) => return Ok(line_time(&body[i + 1..])),
            None if from == 0 => return Ok(line_time(body)),
            None => window *= 4,
        }
    }
}

/// The offset of the first line whose time is at or after `target` (lines
/// are in time order, give or take [`SKEW_NS`]).
fn seek_time(file: &mut File, target: i64) -> std::io::Result<u64> {
    let (mut lo, mut hi) = (0u64, file.metadata()?.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match line_after(file, mid)? {
            Some((s, e, t)) if s < hi => {
                if t.is_some_and(|t| t < target) {
                    lo = e;
                } else {
                    hi = s;
                }
            }
            _ => hi = mid,
        }
    }
    Ok(lo)
}

impl JsonFileReader {
    /// Opens the log at `base` to read the records of second `since` (epoch
    /// seconds) on.
    pub fn open(base: &Path, since: i64) -> std::io::Result<JsonFileReader> {
        let since_ns = since.max(0).saturating_mul(1_000_000_000);
        let mut files: VecDeque<Open> = list(base)?.into();
        if files.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", base.display()),
            ));
        }
        let from = since_ns.saturating_sub(SKEW_NS);
        if since_ns > 0 {
            // Rotated files that end before `since` hold nothing wanted.
            while files.len() > 1 {
                let ends = last_time(&mut files[0].file)?;
                if ends.is_some_and(|t| t < from) {
                    files.pop_front();
                } else {
                    break;
                }
            }
        }
        let mut cur = files.pop_front().expect("not empty");
        let offset = if since_ns > 0 {
            seek_time(&mut cur.file, from)?
        } else {
            0
        };
        cur.file.seek(SeekFrom::Start(offset))?;
        Ok(JsonFileReader {
            base: base.to_path_buf(),
            cur,
            next: files,
            rotated: false,
            buf: Vec::new(),
            start: 0,
            since_ns,
            out: BytesMut::new(),
            bad_lines: 0,
        })
    }

    /// Reads on: the next records, or [`Step::Idle`] at the end of the log.
    pub fn step(&mut self) -> std::io::Result<Step> {
        let mut records = Vec::new();
        loop {
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let have = self.buf.len();
            self.buf.resize(have + CHUNK, 0);
            let n = match self.cur.file.read(&mut self.buf[have..]) {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(e);
                }
            };
            self.buf.truncate(have + n);
            if n > 0 {
                self.parse(&mut records);
                if !records.is_empty() {
                    return Ok(Step::Records(records));
                }
                continue;
            }
            // The end of `cur`.
            if let Some(next) = self.next.pop_front() {
                self.switch(next);
                continue;
            }
            if self.rotated {
                // `cur` was read to its end after the rotation was seen.
                let mut later = self.after_cur()?;
                if let Some(next) = later.pop_front() {
                    self.next = later;
                    self.switch(next);
                    continue;
                }
                // The new `LOG` is not there yet.
                return Ok(Step::Idle);
            }
            match std::fs::metadata(&self.base) {
                Ok(m) if (m.dev(), m.ino()) != self.cur.ino => {
                    // Read `cur` to its end once more, then move on.
                    self.rotated = true;
                    continue;
                }
                Ok(_) => return Ok(Step::Idle),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Step::Idle),
                Err(e) => return Err(e),
            }
        }
    }

    /// The files that came after `cur`, oldest first.
    fn after_cur(&self) -> std::io::Result<VecDeque<Open>> {
        let mut files = list(&self.base)?;
        match files.iter().position(|f| f.ino == self.cur.ino) {
            Some(i) => {
                files.drain(..=i);
            }
            None => {
                tracing::warn!(log = %self.base.display(),
                    "a json-file log was rotated out before it was read to its end; lines were lost");
            }
        }
        Ok(files.into())
    }

    fn switch(&mut self, next: Open) {
        if self.buf.len() > self.start {
            // Docker writes whole lines: this is a torn write it never finished.
            self.bad_lines += 1;
        }
        self.buf.clear();
        self.start = 0;
        self.cur = next;
        self.rotated = false;
    }

    /// Parses the complete lines in the buffer.
    fn parse(&mut self, records: &mut Vec<LogRecord>) {
        let mut at = self.start;
        while let Some(len) = self.buf[at..].iter().position(|&c| c == b'\n') {
            let line = &self.buf[at..at + len];
            at += len + 1;
            if line.is_empty() {
                continue;
            }
            let Ok(parsed) = serde_json::from_slice::<Line>(line) else {
                self.bad_lines += 1;
                if self.bad_lines == 1 || self.bad_lines.is_multiple_of(1000) {
                    tracing::warn!(log = %self.base.display(), bad = self.bad_lines,
                        "skipping a line of a json-file log that is not Docker's JSON");
                }
                continue;
            };
            let stream = match &*parsed.stream {
                "stdout" => OutputStream::Stdout,
                "stderr" => OutputStream::Stderr,
                _ => continue,
            };
            let Some(timestamp) = parse_time(&parsed.time) else {
                self.bad_lines += 1;
                continue;
            };
            if timestamp < self.since_ns {
                continue;
            }
            self.out.extend_from_slice(parsed.log.as_bytes());
            let bytes: Bytes = self.out.split().freeze();
            records.push(LogRecord {
                stream,
                timestamp,
                bytes,
            });
        }
        self.start = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const T0: i64 = 1_765_000_000; // 2025-12-06T05:46:40Z

    fn stamp(ns: i64) -> String {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128).unwrap();
        // Docker's RFC3339Nano: trailing zeros trimmed.
        let s = t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        s.replace("+00:00", "Z")
    }

    fn line(stream: &str, ns: i64, text: &str) -> String {
        format!(
            "{}\n",
            serde_json::json!({"log": text, "stream": stream, "time": stamp(ns)})
        )
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Docker's rotation with `max-file` `keep`.
    fn rotate(base: &Path, keep: usize) {
        for n in (1..keep).rev() {
            let from = if n == 1 {
                base.to_path_buf()
            } else {
                rotated_name(base, n - 1)
            };
            if from.exists() {
                std::fs::rename(&from, rotated_name(base, n)).unwrap();
            }
        }
        std::fs::File::create(base).unwrap();
    }

    fn drain(r: &mut JsonFileReader) -> Vec<LogRecord> {
        let mut all = Vec::new();
        while let Step::Records(mut v) = r.step().unwrap() {
            all.append(&mut v);
        }
        all
    }

    fn texts(records: &[LogRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8(r.bytes.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn parses_dockers_times() {
        assert_eq!(parse_time("2025-12-06T05:46:40Z"), Some(T0 * 1_000_000_000));
        assert_eq!(
            parse_time("2025-12-06T05:46:40.5Z"),
            Some(T0 * 1_000_000_000 + 500_000_000)
        );
        assert_eq!(
            parse_time("2025-12-06T05:46:40.000000123Z"),
            Some(T0 * 1_000_000_000 + 123)
        );
        assert_eq!(
            parse_time("2025-12-06T06:46:40.25+01:00"),
            Some(T0 * 1_000_000_000 + 250_000_000)
        );
        for ns in [
            0,
            1,
            999_999_999,
            86_399_123_456_789,
            T0 * 1_000_000_000 + 7,
        ] {
            assert_eq!(parse_time(&stamp(ns)), Some(ns), "{}", stamp(ns));
        }
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn reads_records_with_escapes_and_follows_appends() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c-json.log");
        let ns = T0 * 1_000_000_000;
        append(&base, &line("stdout", ns, "a \"quoted\" é\n"));
        append(&base, &line("stderr", ns + 1, "no newline"));
        // A line being written: not read until it is whole.
        let third = line("stdout", ns + 2, "third\n");
        append(&base, &third[..10]);
        let mut r = JsonFileReader::open(&base, 0).unwrap();
        let got = drain(&mut r);
        assert_eq!(texts(&got), ["a \"quoted\" é\n", "no newline"]);
        assert_eq!(got[1].stream, OutputStream::Stderr);
        assert_eq!(got[1].timestamp, ns + 1);
        append(&base, &third[10..]);
        assert_eq!(texts(&drain(&mut r)), ["third\n"]);
        assert!(matches!(r.step().unwrap(), Step::Idle));
        assert_eq!(r.bad_lines, 0);
    }

    #[test]
    fn follows_rotations_without_losing_or_repeating_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c-json.log");
        let ns = T0 * 1_000_000_000;
        let mut written = 0;
        let mut write = |n: usize| {
            for _ in 0..n {
                written += 1;
                append(
                    &base,
                    &line("stdout", ns + written, &format!("{written}\n")),
                );
            }
        };
        write(10);
        let mut r = JsonFileReader::open(&base, 0).unwrap();
        let mut got = texts(&drain(&mut r));
        // One rotation, read after.
        write(5);
        rotate(&base, 4);
        write(5);
        got.extend(texts(&drain(&mut r)));
        // Two rotations while the reader is behind: its file is LOG.2 now.
        write(5);
        rotate(&base, 4);
        write(5);
        rotate(&base, 4);
        write(5);
        got.extend(texts(&drain(&mut r)));
        // A rotation with the new file not created yet, then created.
        write(3);
        for n in (2..4).rev() {
            std::fs::rename(rotated_name(&base, n - 1), rotated_name(&base, n)).unwrap();
        }
        std::fs::rename(&base, rotated_name(&base, 1)).unwrap();
        got.extend(texts(&drain(&mut r)));
        write(4);
        got.extend(texts(&drain(&mut r)));
        let want: Vec<String> = (1..=42).map(|i| format!("{i}\n")).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn starts_at_a_second_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c-json.log");
        let ns = T0 * 1_000_000_000;
        // 40 seconds of lines, 50 a second, rotated every 10 seconds.
        for s in 0..40i64 {
            if s > 0 && s % 10 == 0 {
                rotate(&base, 4);
            }
            for i in 0..50i64 {
                let t = ns + s * 1_000_000_000 + i * 20_000_000;
                append(&base, &line("stdout", t, &format!("{s}.{i}\n")));
            }
        }
        for since in [0, T0 + 3, T0 + 10, T0 + 17, T0 + 39, T0 + 45] {
            let mut r = JsonFileReader::open(&base, since).unwrap();
            let got = drain(&mut r);
            let first = (since - T0).max(0);
            let want = (40 - first).max(0) as usize * 50;
            assert_eq!(got.len(), want, "since {since}");
            if let Some(r0) = got.first() {
                assert_eq!(r0.timestamp, ns + first * 1_000_000_000);
            }
            assert!(got.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
        }
    }

    #[test]
    fn skips_what_is_not_dockers_json() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c-json.log");
        let ns = T0 * 1_000_000_000;
        append(&base, "garbage\n");
        append(&base, &line("stdout", ns, "ok\n"));
        let mut r = JsonFileReader::open(&base, 0).unwrap();
        assert_eq!(texts(&drain(&mut r)), ["ok\n"]);
        assert_eq!(r.bad_lines, 1);
        assert!(JsonFileReader::open(&dir.path().join("none"), 0).is_err());
    }
}
