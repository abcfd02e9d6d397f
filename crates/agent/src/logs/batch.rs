//! PutLogEvents' batch rules (from the CloudWatch Logs model): at most
//! 10,000 events and 1,048,576 bytes (each event's UTF-8 message plus 26),
//! a span of at most 24 hours, in chronological order.

use std::collections::VecDeque;

use super::assemble::Event;

pub const MAX_BATCH_EVENTS: usize = 10_000;
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// What every event counts for besides its message.
pub const EVENT_OVERHEAD: usize = 26;
/// Widest span between a batch's first and last event, ms.
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 3600 * 1000;

/// Takes the longest run of events from the front of `queue` that makes a
/// valid batch, and returns it in chronological order (stable, so events
/// with one timestamp keep the order they were written in).
///
/// Events that end at the same position of the same output (the pieces of
/// one line too long for one event) are never split between two batches:
/// a batch's end must be a position in the container's output.
pub fn take_batch(queue: &mut VecDeque<Event>) -> Vec<Event> {
    let mut count = 0;
    let mut bytes = 0;
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    // The longest prefix that may end the batch.
    let mut cut = 0;
    for (i, e) in queue.iter().enumerate() {
        let (lo, hi) = (first.min(e.timestamp), last.max(e.timestamp));
        if count + 1 > MAX_BATCH_EVENTS
            || bytes + e.size() > MAX_BATCH_BYTES
            || hi - lo > MAX_BATCH_SPAN_MS
        {
            break;
        }
        count += 1;
        bytes += e.size();
        (first, last) = (lo, hi);
        let continues = queue
            .get(i + 1)
            .is_some_and(|next| next.stream == e.stream && next.end == e.end);
        if !continues {
            cut = i + 1;
        }
    }
    if cut == 0 {
        // A group too big for any batch (the assembler never makes one, but
        // nothing may stall the queue): take what fits of it.
        cut = count.min(queue.len());
    }
    let mut batch: Vec<Event> = queue.drain(..cut).collect();
    batch.sort_by_key(|e| e.timestamp);
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::assemble::Position;
    use crate::runtime::OutputStream;

    fn event(stream: OutputStream, ms: i64, len: usize, rank: u32) -> Event {
        Event {
            stream,
            timestamp: ms,
            message: "x".repeat(len),
            end: Position {
                timestamp: ms * 1_000_000,
                rank,
            },
        }
    }

    fn out(ms: i64, len: usize) -> Event {
        event(OutputStream::Stdout, ms, len, 1)
    }

    #[test]
    fn at_most_ten_thousand_events() {
        let mut q: VecDeque<Event> = (0..10_001).map(|i| out(i, 1)).collect();
        assert_eq!(take_batch(&mut q).len(), 10_000);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn at_most_a_mebibyte_counting_26_bytes_per_event() {
        // Four events of 262,118 bytes: 4 × 262,144 = 1,048,576 exactly.
        let mut q: VecDeque<Event> = (0..5).map(|i| out(i, 262_118)).collect();
        let b = take_batch(&mut q);
        assert_eq!(b.len(), 4);
        assert_eq!(b.iter().map(Event::size).sum::<usize>(), MAX_BATCH_BYTES);
        let mut q: VecDeque<Event> = (0..5).map(|i| out(i, 262_119)).collect();
        assert_eq!(take_batch(&mut q).len(), 3);
    }

    #[test]
    fn at_most_a_day_apart_and_sorted() {
        let day = MAX_BATCH_SPAN_MS;
        let mut q: VecDeque<Event> = [
            out(1_000, 1),
            event(OutputStream::Stderr, 500, 1, 1),
            out(500 + day, 1),
            out(501 + day, 1),
        ]
        .into_iter()
        .collect();
        let b = take_batch(&mut q);
        let times: Vec<i64> = b.iter().map(|e| e.timestamp).collect();
        assert_eq!(times, [500, 1_000, 500 + day]);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn pieces_of_one_line_stay_together() {
        // Three pieces of one line (same output, same end) after a small event:
        // they do not all fit, so the batch ends before them.
        let piece = |_| event(OutputStream::Stdout, 7, 400_000, 9);
        let mut q: VecDeque<Event> = std::iter::once(out(1, 10))
            .chain((0..3).map(piece))
            .collect();
        assert_eq!(take_batch(&mut q).len(), 1);
        assert_eq!(q.len(), 3);
        // Two pieces fit together.
        let mut q: VecDeque<Event> = std::iter::once(out(1, 10))
            .chain((0..2).map(piece))
            .collect();
        assert_eq!(take_batch(&mut q).len(), 3);
        // A group that fits no batch at all is cut rather than stalling.
        let mut q: VecDeque<Event> = (0..3).map(piece).collect();
        assert_eq!(take_batch(&mut q).len(), 2);
    }
}
