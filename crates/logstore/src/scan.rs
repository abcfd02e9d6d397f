//! Reading events in timestamp order across segments, frames and streams.
//!
//! A scan is a k-way merge over lazily opened sources, each with a bound
//! on the key of the next event it can yield: a segment not yet opened
//! (bound: its first timestamp), a segment's frame cursor (the next
//! frame's first timestamp), a frame not yet read (its first event), a
//! decoded frame (its next event). The heap pops the smallest bound; only
//! a decoded frame's event is emitted, and only when nothing else can hold
//! a smaller key. Events of one frame are in order (PutLogEvents requires
//! chronological batches), which is what makes each frame a sorted run.
//! Backward scans are the mirror image. Only the frames around the scan's
//! position are in memory at a time.
//!
//! Readers never lock the writer out: they read segment files through
//! their own SQLite connections (WAL snapshots), and ignore frames past
//! the durable sequence number they were given.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::path::Path;

use parking_lot::Mutex;
use rusqlite::Connection;

use crate::catalog::{GroupId, SegmentId, SegmentInfo, StreamId};
use crate::codec::{self, DecodedEvent, Direction, EventKey};
use crate::error::StoreError;
use crate::segment::{self, FrameMeta, FrameQuery};

/// Frames fetched per segment query.
const FRAME_PAGE: usize = 64;

/// Idle read connections, by segment, so a query does not pay for opening
/// SQLite files every time.
pub struct ReaderPool {
    idle: Mutex<HashMap<SegmentId, Vec<Connection>>>,
    max_idle: usize,
}

impl ReaderPool {
    pub fn new(max_idle: usize) -> ReaderPool {
        ReaderPool {
            idle: Mutex::new(HashMap::new()),
            max_idle,
        }
    }

    fn take(
        &self,
        root: &Path,
        group: GroupId,
        seg: SegmentId,
    ) -> Result<Option<Connection>, StoreError> {
        if let Some(conn) = self.idle.lock().get_mut(&seg).and_then(Vec::pop) {
            return Ok(Some(conn));
        }
        segment::open_reader(root, group, seg)
    }

    fn give_back(&self, seg: SegmentId, conn: Connection) {
        let mut idle = self.idle.lock();
        let count: usize = idle.values().map(Vec::len).sum();
        if count >= self.max_idle {
            // Make room: drop the connections of some other segment.
            if let Some(other) = idle.keys().find(|&&k| k != seg).copied() {
                idle.remove(&other);
            } else {
                return;
            }
        }
        idle.entry(seg).or_default().push(conn);
    }

    /// Drops the idle connections of a deleted segment.
    pub fn forget(&self, seg: SegmentId) {
        self.idle.lock().remove(&seg);
    }
}

/// What to scan.
#[derive(Debug, Clone)]
pub struct ScanSpec {
    pub group: GroupId,
    /// Segments that may hold wanted events.
    pub segments: Vec<SegmentInfo>,
    /// Only this stream (SQL-level filter).
    pub stream: Option<StreamId>,
    /// Only these streams (frame-level filter).
    pub streams: Option<HashSet<StreamId>>,
    /// Deleted streams whose frames remain.
    pub skip: HashSet<StreamId>,
    /// Events wanted have timestamps in `[lower, upper]`.
    pub lower: i64,
    pub upper: i64,
    pub direction: Direction,
    /// Exclusive starting point in the scan's direction.
    pub after: Option<EventKey>,
    /// The durable sequence number: frames at or past it are invisible.
    pub visible: u64,
}

/// One event, in scan order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEvent {
    pub key: EventKey,
    pub stream: StreamId,
    pub ingestion: i64,
    pub message: String,
}

struct SegmentCursor {
    info: SegmentInfo,
    query: FrameQuery,
    buffer: VecDeque<FrameMeta>,
    cursor: Option<(i64, u64)>,
    exhausted: bool,
}

struct LoadedFrame {
    meta: FrameMeta,
    events: Vec<DecodedEvent>,
    /// Index of the next event in scan order.
    next: usize,
    remaining: usize,
}

enum Source {
    Segment(SegmentInfo),
    Cursor(Box<SegmentCursor>),
    Frame(FrameMeta, SegmentId),
    Loaded(Box<LoadedFrame>),
}

impl Source {
    /// Expand lazy sources before emitting on a tie.
    fn rank(&self) -> u8 {
        match self {
            Source::Segment(_) => 0,
            Source::Cursor(_) => 1,
            Source::Frame(..) => 2,
            Source::Loaded(_) => 3,
        }
    }
}

struct Entry {
    order: u128,
    rank: u8,
    source: Source,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.order, self.rank).cmp(&(other.order, other.rank))
    }
}

/// A merge in progress. Pull events with [`Scanner::next_event`].
pub struct Scanner<'a> {
    root: &'a Path,
    pool: &'a ReaderPool,
    spec: ScanSpec,
    heap: BinaryHeap<Reverse<Entry>>,
    conns: HashMap<SegmentId, Connection>,
    /// Events returned so far, for the caller's budget.
    pub examined: usize,
    /// The key of the last event returned.
    pub last_key: Option<EventKey>,
}

impl<'a> Scanner<'a> {
    pub fn new(root: &'a Path, pool: &'a ReaderPool, spec: ScanSpec) -> Scanner<'a> {
        let mut scanner = Scanner {
            root,
            pool,
            heap: BinaryHeap::new(),
            conns: HashMap::new(),
            examined: 0,
            last_key: None,
            spec,
        };
        if scanner.spec.lower <= scanner.spec.upper {
            for seg in scanner.spec.segments.clone() {
                if seg.frames == 0
                    || seg.max_ts < scanner.spec.lower
                    || seg.min_ts > scanner.spec.upper
                {
                    continue;
                }
                let bound = match scanner.spec.direction {
                    Direction::Forward => EventKey::new(seg.min_ts, 0),
                    Direction::Backward => EventKey::new(seg.max_ts, u64::MAX),
                };
                scanner.push(bound, Source::Segment(seg));
            }
        }
        scanner
    }

    /// Scan order as one number: smaller comes first in either direction.
    fn order(&self, key: EventKey) -> u128 {
        let forward = (u128::from(key.ts.max(0) as u64) << 64) | u128::from(key.seq);
        match self.spec.direction {
            Direction::Forward => forward,
            Direction::Backward => u128::MAX - forward,
        }
    }

    fn push(&mut self, bound: EventKey, source: Source) {
        let entry = Entry {
            order: self.order(bound),
            rank: source.rank(),
            source,
        };
        self.heap.push(Reverse(entry));
    }

    /// Whether `key` lies beyond the starting point, in scan order.
    fn past_start(&self, key: EventKey) -> bool {
        match (self.spec.after, self.spec.direction) {
            (None, _) => true,
            (Some(after), Direction::Forward) => key > after,
            (Some(after), Direction::Backward) => key < after,
        }
    }

    /// Whether `key` is past the far end of the range (so is everything after it).
    fn beyond_end(&self, key: EventKey) -> bool {
        match self.spec.direction {
            Direction::Forward => key.ts > self.spec.upper,
            Direction::Backward => key.ts < self.spec.lower,
        }
    }

    /// The next event in scan order, or `None` when the range is done.
    pub fn next_event(&mut self) -> Result<Option<ScanEvent>, StoreError> {
        while let Some(Reverse(entry)) = self.heap.pop() {
            match entry.source {
                Source::Segment(info) => self.open_segment(info)?,
                Source::Cursor(cursor) => self.advance_cursor(cursor)?,
                Source::Frame(meta, seg) => self.load_frame(meta, seg)?,
                Source::Loaded(mut frame) => {
                    let event = &frame.events[frame.next];
                    let key = EventKey::new(event.ts, frame.meta.seq + frame.next as u64);
                    if self.beyond_end(key) {
                        // Everything left in the heap sorts after this.
                        self.heap.clear();
                        return Ok(None);
                    }
                    let in_range = key.ts >= self.spec.lower && key.ts <= self.spec.upper;
                    let emit = in_range && self.past_start(key);
                    if emit {
                        // Skipping up to the resume point is not progress.
                        self.examined += 1;
                        self.last_key = Some(key);
                    }
                    let message = if emit {
                        Some(event.message.clone())
                    } else {
                        None
                    };
                    let stream = frame.meta.stream;
                    let ingestion = frame.meta.ingestion;
                    frame.remaining -= 1;
                    if frame.remaining > 0 {
                        frame.next = match self.spec.direction {
                            Direction::Forward => frame.next + 1,
                            Direction::Backward => frame.next - 1,
                        };
                        let next = &frame.events[frame.next];
                        let bound = EventKey::new(next.ts, frame.meta.seq + frame.next as u64);
                        self.push(bound, Source::Loaded(frame));
                    }
                    if let Some(message) = message {
                        return Ok(Some(ScanEvent {
                            key,
                            stream,
                            ingestion,
                            message,
                        }));
                    }
                }
            }
        }
        Ok(None)
    }

    fn conn(&mut self, seg: SegmentId) -> Result<Option<&Connection>, StoreError> {
        if !self.conns.contains_key(&seg) {
            match self.pool.take(self.root, self.spec.group, seg)? {
                Some(conn) => {
                    self.conns.insert(seg, conn);
                }
                None => return Ok(None),
            }
        }
        Ok(self.conns.get(&seg))
    }

    fn open_segment(&mut self, info: SegmentInfo) -> Result<(), StoreError> {
        let (mut lower, mut upper) = (self.spec.lower, self.spec.upper);
        // Start the frame query at the resume point, not the range's start.
        if let Some(after) = self.spec.after {
            match self.spec.direction {
                Direction::Forward => lower = lower.max(after.ts),
                Direction::Backward => upper = upper.min(after.ts),
            }
        }
        let cursor = SegmentCursor {
            query: FrameQuery {
                stream: self.spec.stream,
                lower,
                upper,
                span: info.max_span,
                visible: self.spec.visible,
            },
            info,
            buffer: VecDeque::new(),
            cursor: None,
            exhausted: false,
        };
        self.advance_cursor(Box::new(cursor))
    }

    /// Hands the cursor's next frame to the heap and puts the cursor back.
    fn advance_cursor(&mut self, mut cursor: Box<SegmentCursor>) -> Result<(), StoreError> {
        if cursor.buffer.is_empty() && !cursor.exhausted {
            let direction = self.spec.direction;
            let seg = cursor.info.id;
            let Some(conn) = self.conn(seg)? else {
                return Ok(()); // deleted meanwhile: nothing to read
            };
            let page = match direction {
                Direction::Forward => {
                    segment::frames_forward(conn, &cursor.query, cursor.cursor, FRAME_PAGE)?
                }
                Direction::Backward => {
                    segment::frames_backward(conn, &cursor.query, cursor.cursor, FRAME_PAGE)?
                }
            };
            cursor.exhausted = page.len() < FRAME_PAGE;
            if let Some(last) = page.last() {
                cursor.cursor = Some(match direction {
                    Direction::Forward => (last.min_ts, last.seq),
                    Direction::Backward => (last.max_ts, last.seq),
                });
            }
            cursor.buffer.extend(page);
        }
        let Some(frame) = cursor.buffer.pop_front() else {
            return Ok(());
        };
        let seg = cursor.info.id;
        if self.wanted(&frame) {
            let bound = self.frame_bound(&frame);
            self.push(bound, Source::Frame(frame, seg));
        }
        if let Some(next) = cursor.buffer.front() {
            let bound = self.frame_bound(next);
            self.push(bound, Source::Cursor(cursor));
        } else if !cursor.exhausted {
            // The next page starts at or after the last frame's bound.
            let bound = self.frame_bound(&frame);
            self.push(bound, Source::Cursor(cursor));
        }
        Ok(())
    }

    fn frame_bound(&self, frame: &FrameMeta) -> EventKey {
        match self.spec.direction {
            Direction::Forward => EventKey::new(frame.min_ts, frame.seq),
            Direction::Backward => {
                EventKey::new(frame.max_ts, frame.seq + u64::from(frame.count.max(1)) - 1)
            }
        }
    }

    fn wanted(&self, frame: &FrameMeta) -> bool {
        if self.spec.skip.contains(&frame.stream) {
            return false;
        }
        match &self.spec.streams {
            Some(streams) => streams.contains(&frame.stream),
            None => true,
        }
    }

    fn load_frame(&mut self, meta: FrameMeta, seg: SegmentId) -> Result<(), StoreError> {
        let Some(conn) = self.conn(seg)? else {
            return Ok(());
        };
        let Some(data) = segment::frame_data(conn, meta.seq)? else {
            return Ok(()); // purged meanwhile
        };
        let events = codec::decode_frame(&data, meta.min_ts, meta.count as usize)?;
        if events.is_empty() {
            return Ok(());
        }
        let next = match self.spec.direction {
            Direction::Forward => 0,
            Direction::Backward => events.len() - 1,
        };
        let bound = EventKey::new(events[next].ts, meta.seq + next as u64);
        let remaining = events.len();
        self.push(
            bound,
            Source::Loaded(Box::new(LoadedFrame {
                meta,
                events,
                next,
                remaining,
            })),
        );
        Ok(())
    }
}

impl Drop for Scanner<'_> {
    fn drop(&mut self) {
        for (seg, conn) in self.conns.drain() {
            // A segment deleted during the scan is not pooled again.
            if segment::path(self.root, self.spec.group, seg).exists() {
                self.pool.give_back(seg, conn);
            }
        }
    }
}
