//! From a container's log records to CloudWatch events, and where each
//! event ends in the container's output. Pure: no I/O, no clock (the
//! caller says when a pending multiline event is due).
//!
//! - **Records** come from the engine in order, each tagged with its output
//!   (stdout, stderr) and the engine's timestamp. A line longer than 16 KiB
//!   arrives in pieces without a newline; the pieces are joined again.
//! - **Lines → events**: one event per line (the newline dropped; empty
//!   lines make none, as in Docker's driver). With a multiline pattern, a
//!   line matching it starts a new event and the others join the event
//!   before them, each followed by `\n`. An event is at most
//!   [`MAX_EVENT_BYTES`]; longer text is split (on character boundaries).
//!   Each output is assembled on its own, so a stack trace on stderr is
//!   never interleaved with stdout lines (Docker's driver joins across both).
//! - **Positions**: the engine can only replay output from a whole second
//!   on, and several records may share one timestamp, so a record is known
//!   by (output, timestamp, its rank among that output's records with that
//!   timestamp). A [`Positions`] says how much of each output is consumed;
//!   a [`Cursor`] skips what a position covers when the output is read
//!   again after a restart. Within one output the engine's timestamps do
//!   not go back (one copier per output), so this is exact; across outputs
//!   they may interleave slightly, which is why each has its own position.

use serde::{Deserialize, Serialize};

use crate::runtime::{LogRecord, OutputStream};

/// CloudWatch's limit for one event: 256 KiB less the 26 bytes of overhead
/// every event counts for (Docker's driver splits at the same size).
pub const MAX_EVENT_BYTES: usize = 262_144 - 26;

/// How far one output has been consumed: every record with a timestamp
/// before `timestamp`, and the first `rank` records at `timestamp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// Nanoseconds since the epoch.
    pub timestamp: i64,
    pub rank: u32,
}

/// How far stdout and stderr have been consumed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    pub stdout: Position,
    pub stderr: Position,
}

impl Positions {
    pub fn get(&self, stream: OutputStream) -> Position {
        match stream {
            OutputStream::Stdout => self.stdout,
            OutputStream::Stderr => self.stderr,
        }
    }

    /// Moves `stream`'s position forward to `to` (never back).
    pub fn advance(&mut self, stream: OutputStream, to: Position) {
        let slot = match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        };
        *slot = (*slot).max(to);
    }

    /// The whole second to replay the output from so that nothing past
    /// these positions is missed.
    pub fn replay_from(&self) -> i64 {
        self.stdout.timestamp.min(self.stderr.timestamp).max(0) / 1_000_000_000
    }
}

/// Numbers records as they are read and tells which ones a [`Positions`]
/// already covers.
#[derive(Debug, Clone)]
pub struct Cursor {
    consumed: Positions,
    /// Per output: the last timestamp seen on this read and its rank.
    last: [Position; 2],
}

fn index(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    }
}

impl Cursor {
    /// A cursor for a read that replays from [`Positions::replay_from`].
    pub fn new(consumed: Positions) -> Cursor {
        Cursor {
            consumed,
            last: [Position::default(); 2],
        }
    }

    /// The record's position, or `None` if it was consumed before.
    pub fn admit(&mut self, stream: OutputStream, timestamp: i64) -> Option<Position> {
        let last = &mut self.last[index(stream)];
        let rank = if last.timestamp == timestamp {
            last.rank + 1
        } else {
            1
        };
        *last = Position { timestamp, rank };
        let here = *last;
        if here <= self.consumed.get(stream) {
            return None;
        }
        self.consumed.advance(stream, here);
        Some(here)
    }

    /// Starts a new read of the output (after the engine's stream broke):
    /// what was admitted stays consumed.
    pub fn reread(&mut self) {
        self.last = [Position::default(); 2];
    }

    pub fn consumed(&self) -> Positions {
        self.consumed
    }
}

/// One event for CloudWatch, with what it consumed of its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub stream: OutputStream,
    /// Milliseconds since the epoch: when its (first) line was logged.
    pub timestamp: i64,
    pub message: String,
    /// The position of its last record.
    pub end: Position,
}

impl Event {
    /// What it counts for in a PutLogEvents batch.
    pub fn size(&self) -> usize {
        self.message.len() + super::batch::EVENT_OVERHEAD
    }
}

/// A multiline event still taking lines.
#[derive(Debug)]
struct Pending {
    timestamp: i64,
    text: String,
    end: Position,
}

/// Pieces of one line.
#[derive(Debug)]
struct Partial {
    /// Timestamp of the first piece (ns).
    timestamp: i64,
    bytes: Vec<u8>,
    /// Position of the last piece.
    end: Position,
}

/// Assembles one output's events.
#[derive(Debug)]
struct Output {
    stream: OutputStream,
    /// A line whose end has not arrived yet.
    partial: Option<Partial>,
    pending: Option<Pending>,
}

/// Turns records into events for one container (see the module docs).
#[derive(Debug)]
pub struct Assembler {
    multiline: Option<regex::Regex>,
    outputs: [Output; 2],
}

impl Assembler {
    pub fn new(multiline: Option<regex::Regex>) -> Assembler {
        let output = |stream| Output {
            stream,
            partial: None,
            pending: None,
        };
        Assembler {
            multiline,
            outputs: [output(OutputStream::Stdout), output(OutputStream::Stderr)],
        }
    }

    /// Takes one admitted record at `position`; appends the events it
    /// completes to `out`.
    pub fn push(&mut self, record: &LogRecord, position: Position, out: &mut Vec<Event>) {
        let output = &mut self.outputs[index(record.stream)];
        let bytes = &record.bytes[..];
        let (timestamp, line) = match bytes.strip_suffix(b"\n") {
            Some(rest) => match output.partial.take() {
                Some(mut partial) => {
                    partial.bytes.extend_from_slice(rest);
                    (partial.timestamp, partial.bytes)
                }
                None => (record.timestamp, rest.to_vec()),
            },
            None => {
                let partial = output.partial.get_or_insert_with(|| Partial {
                    timestamp: record.timestamp,
                    bytes: Vec::new(),
                    end: position,
                });
                partial.bytes.extend_from_slice(bytes);
                partial.end = position;
                if partial.bytes.len() < MAX_EVENT_BYTES {
                    return;
                }
                // A line with no end in sight: what is there goes out.
                let partial = output.partial.take().expect("just filled");
                (partial.timestamp, partial.bytes)
            }
        };
        let line = utf8(line);
        line_to_events(
            self.multiline.as_ref(),
            output,
            timestamp / 1_000_000,
            line,
            position,
            out,
        );
    }

    /// The instant (a record's millisecond timestamp) the oldest pending
    /// multiline event began, if any.
    pub fn pending_since(&self) -> Option<i64> {
        self.outputs
            .iter()
            .filter_map(|o| o.pending.as_ref().map(|p| p.timestamp))
            .min()
    }

    /// Ends the pending multiline events that began at or before
    /// `started_by` (milliseconds): no more lines will join them.
    pub fn flush_pending(&mut self, started_by: i64, out: &mut Vec<Event>) {
        for output in &mut self.outputs {
            if output
                .pending
                .as_ref()
                .is_some_and(|p| p.timestamp <= started_by)
            {
                emit_pending(output, out);
            }
        }
    }

    /// The output ended: everything still held becomes events.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        let multiline = self.multiline.clone();
        for output in &mut self.outputs {
            if let Some(partial) = output.partial.take() {
                let line = utf8(partial.bytes);
                line_to_events(
                    multiline.as_ref(),
                    output,
                    partial.timestamp / 1_000_000,
                    line,
                    partial.end,
                    out,
                );
            }
            emit_pending(output, out);
        }
    }
}

/// The bytes as text, invalid UTF-8 as U+FFFD (valid text is not copied).
fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn emit_pending(output: &mut Output, out: &mut Vec<Event>) {
    if let Some(p) = output.pending.take() {
        split_into(out, output.stream, p.timestamp, p.text, p.end);
    }
}

fn line_to_events(
    multiline: Option<&regex::Regex>,
    output: &mut Output,
    timestamp: i64,
    line: String,
    end: Position,
    out: &mut Vec<Event>,
) {
    let Some(pattern) = multiline else {
        split_into(out, output.stream, timestamp, line, end);
        return;
    };
    let too_big = output
        .pending
        .as_ref()
        .is_some_and(|p| p.text.len() + line.len() + 1 > MAX_EVENT_BYTES);
    if pattern.is_match(&line) || too_big {
        emit_pending(output, out);
    }
    let pending = output.pending.get_or_insert_with(|| Pending {
        timestamp,
        text: String::new(),
        end,
    });
    pending.text.push_str(&line);
    pending.text.push('\n');
    pending.end = end;
}

/// `text` as events of at most [`MAX_EVENT_BYTES`], split on character
/// boundaries; nothing for empty text.
fn split_into(
    out: &mut Vec<Event>,
    stream: OutputStream,
    timestamp: i64,
    text: String,
    end: Position,
) {
    if text.len() <= MAX_EVENT_BYTES {
        // The common case: the text is the event (no copy).
        if !text.is_empty() {
            out.push(Event {
                stream,
                timestamp,
                message: text,
                end,
            });
        }
        return;
    }
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let mut cut = rest.len().min(MAX_EVENT_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        out.push(Event {
            stream,
            timestamp,
            message: piece.to_string(),
            end,
        });
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: OutputStream = OutputStream::Stdout;
    const ERR: OutputStream = OutputStream::Stderr;

    fn rec(stream: OutputStream, ms: i64, text: &str) -> LogRecord {
        LogRecord {
            stream,
            timestamp: ms * 1_000_000,
            bytes: bytes::Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    /// Feeds records through a fresh cursor and assembler.
    fn run(multiline: Option<&str>, records: &[LogRecord]) -> Vec<Event> {
        let mut cursor = Cursor::new(Positions::default());
        let mut asm = Assembler::new(multiline.map(|p| regex::Regex::new(p).unwrap()));
        let mut out = Vec::new();
        for r in records {
            let pos = cursor.admit(r.stream, r.timestamp).unwrap();
            asm.push(r, pos, &mut out);
        }
        asm.finish(&mut out);
        out
    }

    fn messages(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.message.as_str()).collect()
    }

    #[test]
    fn one_event_per_line_and_none_for_empty_lines() {
        let events = run(
            None,
            &[
                rec(OUT, 1, "a\n"),
                rec(ERR, 2, "b\n"),
                rec(OUT, 3, "\n"),
                rec(OUT, 4, "c\r\n"),
            ],
        );
        assert_eq!(messages(&events), ["a", "b", "c\r"]);
        assert_eq!(events[1].stream, ERR);
        assert_eq!(events[2].timestamp, 4);
        assert_eq!(
            events[2].end,
            Position {
                timestamp: 4_000_000,
                rank: 1
            }
        );
    }

    #[test]
    fn pieces_of_a_long_line_are_joined() {
        let events = run(
            None,
            &[
                rec(OUT, 1, "abc"),
                rec(ERR, 2, "x\n"),
                rec(OUT, 3, "def\n"),
                rec(OUT, 4, "tail"),
            ],
        );
        assert_eq!(messages(&events), ["x", "abcdef", "tail"]);
        // The joined line has its first piece's time and its last piece's end.
        assert_eq!(
            (events[1].timestamp, events[1].end.timestamp),
            (1, 3_000_000)
        );
    }

    #[test]
    fn multiline_joins_lines_until_the_next_start_per_output() {
        let records = [
            rec(OUT, 1, "2024 first\n"),
            rec(OUT, 2, "  at a\n"),
            rec(ERR, 3, "2024 on stderr\n"),
            rec(OUT, 4, "  at b\n"),
            rec(OUT, 5, "2024 second\n"),
        ];
        let events = run(Some("^2024"), &records);
        assert_eq!(
            messages(&events),
            [
                "2024 first\n  at a\n  at b\n",
                "2024 second\n",
                "2024 on stderr\n"
            ]
        );
        assert_eq!(events[0].end.timestamp, 4_000_000);
        assert_eq!(events[0].timestamp, 1);
    }

    #[test]
    fn pending_events_flush_when_due() {
        let mut cursor = Cursor::new(Positions::default());
        let mut asm = Assembler::new(Some(regex::Regex::new("^S").unwrap()));
        let mut out = Vec::new();
        for r in [rec(OUT, 10, "S1\n"), rec(OUT, 20, "more\n")] {
            let pos = cursor.admit(r.stream, r.timestamp).unwrap();
            asm.push(&r, pos, &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(asm.pending_since(), Some(10));
        asm.flush_pending(9, &mut out);
        assert!(out.is_empty());
        asm.flush_pending(10, &mut out);
        assert_eq!(messages(&out), ["S1\nmore\n"]);
        assert_eq!(asm.pending_since(), None);
    }

    #[test]
    fn long_text_is_split_on_character_boundaries() {
        let line = "é".repeat(MAX_EVENT_BYTES / 2 + 10) + "\n";
        let events = run(None, &[rec(OUT, 1, &line)]);
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.message.len() <= MAX_EVENT_BYTES));
        assert_eq!(
            events[0].message.len() + events[1].message.len(),
            line.len() - 1
        );
        // Invalid UTF-8 becomes U+FFFD rather than an error.
        let bad = LogRecord {
            stream: OUT,
            timestamp: 1,
            bytes: bytes::Bytes::from_static(b"a\xffb\n"),
        };
        assert_eq!(messages(&run(None, &[bad])), ["a\u{fffd}b"]);
    }

    #[test]
    fn a_cursor_skips_exactly_what_was_consumed_even_within_one_timestamp() {
        // Three stdout records share a timestamp; two stderr ones share another.
        let records = [(OUT, 5), (OUT, 5), (ERR, 4), (OUT, 5), (ERR, 4), (OUT, 6)];
        let mut first = Cursor::new(Positions::default());
        let positions: Vec<Position> = records
            .iter()
            .map(|(s, t)| first.admit(*s, *t).unwrap())
            .collect();
        assert_eq!(
            positions[3],
            Position {
                timestamp: 5,
                rank: 3
            }
        );
        // Shipped up to the second stdout record and the first stderr one.
        let shipped = Positions {
            stdout: positions[1],
            stderr: positions[2],
        };
        let mut again = Cursor::new(shipped);
        let admitted: Vec<usize> = records
            .iter()
            .enumerate()
            .filter_map(|(i, (s, t))| again.admit(*s, *t).map(|_| i))
            .collect();
        assert_eq!(admitted, [3, 4, 5]);
        assert_eq!(shipped.replay_from(), 0);
        let later = Positions {
            stdout: Position {
                timestamp: 7_500_000_000,
                rank: 1,
            },
            stderr: Position {
                timestamp: 9_000_000_000,
                rank: 2,
            },
        };
        assert_eq!(later.replay_from(), 7);
    }
}
