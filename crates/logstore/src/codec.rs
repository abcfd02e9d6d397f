//! Byte and text formats: how a batch of events is stored (a frame), and
//! the strings clients see and send back (event ids, sequence tokens,
//! paging tokens). Decoding never trusts its input: corrupt bytes and
//! foreign tokens are errors, never panics.

use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::types::InputLogEvent;

/// A stored event's position in the total order readers return events in:
/// timestamp first, then the store-wide sequence number, which is unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey {
    pub ts: i64,
    pub seq: u64,
}

impl EventKey {
    pub const fn new(ts: i64, seq: u64) -> EventKey {
        EventKey { ts, seq }
    }

    /// The next key up (saturating), for turning an inclusive bound into
    /// an exclusive one.
    pub fn succ(self) -> EventKey {
        if self.seq == u64::MAX {
            EventKey::new(self.ts.saturating_add(1), 0)
        } else {
            EventKey::new(self.ts, self.seq + 1)
        }
    }

    /// The next key down (saturating).
    pub fn pred(self) -> EventKey {
        if self.seq == 0 {
            EventKey::new(self.ts.saturating_sub(1), u64::MAX)
        } else {
            EventKey::new(self.ts, self.seq - 1)
        }
    }

    /// 56 decimal digits: the timestamp (20) then the sequence number (36).
    fn digits(self) -> String {
        format!("{:020}{:036}", self.ts.max(0), self.seq)
    }

    fn from_digits(s: &str) -> Option<EventKey> {
        if s.len() != 56 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let ts: i64 = s[..20].parse().ok()?;
        let seq: u64 = s[20..].parse().ok()?;
        Some(EventKey::new(ts, seq))
    }
}

/// `eventId`: stable (it is the event's key) and unique (the sequence
/// number is), a 56-digit decimal string like AWS's.
pub fn event_id(key: EventKey) -> String {
    key.digits()
}

/// A stream's `uploadSequenceToken` after `count` accepted batches: the
/// stream's id and the count, 56 digits. Ids are never reused, so a token
/// of one stream never matches another (or a deleted namesake).
pub fn sequence_token(stream_id: u64, count: u64) -> Option<String> {
    (count > 0).then(|| format!("{stream_id:020}{count:036}"))
}

/// Direction of a paging token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// GetLogEvents tokens: `f/` + key (events after it) or `b/` + key
/// (events before it), as AWS shapes them.
pub fn get_token(direction: Direction, key: EventKey) -> String {
    match direction {
        Direction::Forward => format!("f/{}", key.digits()),
        Direction::Backward => format!("b/{}", key.digits()),
    }
}

pub fn parse_get_token(token: &str) -> Option<(Direction, EventKey)> {
    let (direction, digits) = if let Some(rest) = token.strip_prefix("f/") {
        (Direction::Forward, rest)
    } else if let Some(rest) = token.strip_prefix("b/") {
        (Direction::Backward, rest)
    } else {
        return None;
    };
    Some((direction, EventKey::from_digits(digits)?))
}

/// FilterLogEvents tokens: a direction digit (1 forward, 2 backward) and
/// the key of the last event looked at (exclusive).
pub fn filter_token(direction: Direction, key: EventKey) -> String {
    let d = match direction {
        Direction::Forward => '1',
        Direction::Backward => '2',
    };
    format!("{d}{}", key.digits())
}

pub fn parse_filter_token(token: &str) -> Option<(Direction, EventKey)> {
    let direction = match token.as_bytes().first()? {
        b'1' => Direction::Forward,
        b'2' => Direction::Backward,
        _ => return None,
    };
    Some((direction, EventKey::from_digits(token.get(1..)?)?))
}

/// Describe* paging tokens: the last name returned, hex-encoded (names may
/// hold any character but `:` and `*`), after a one-letter kind.
pub fn name_token(kind: char, name: &str) -> String {
    format!("{kind}{}", hex::encode(name))
}

pub fn parse_name_token(kind: char, token: &str) -> Option<String> {
    let rest = token.strip_prefix(kind)?;
    String::from_utf8(hex::decode(rest).ok()?).ok()
}

/// DescribeLogStreams by LastEventTime: the last stream's event time and
/// name.
pub fn time_name_token(ts: i64, name: &str) -> String {
    format!("t{:020}{}", ts.max(0), hex::encode(name))
}

pub fn parse_time_name_token(token: &str) -> Option<(i64, String)> {
    let rest = token.strip_prefix('t')?;
    let digits = rest.get(..20)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ts: i64 = digits.parse().ok()?;
    let name = String::from_utf8(hex::decode(&rest[20..]).ok()?).ok()?;
    Some((ts, name))
}

/// SHA-256 of a batch as sent (every event, in order, length-prefixed), to
/// recognize a resend of the same batch.
pub fn batch_hash(events: &[InputLogEvent]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for event in events {
        hasher.update(event.timestamp.to_le_bytes());
        hasher.update((event.message.len() as u64).to_le_bytes());
        hasher.update(event.message.as_bytes());
    }
    hasher.finalize().into()
}

/// Frame layout: one byte of format, then the events. Raw events are, for
/// each: the timestamp's increase over the previous one (the first over
/// the frame's `min_ts`) and the message length as LEB128 varints, then
/// the message bytes. LZ4 frames hold the raw bytes compressed, behind
/// their length (4 bytes, little endian).
const FORMAT_RAW: u8 = 0;
const FORMAT_LZ4: u8 = 1;
/// Compress only what is worth it.
const COMPRESS_FROM_BYTES: usize = 512;
/// No frame decodes to more than this (a batch is at most 1 MiB of
/// messages); a larger declared size is corruption, not a reason to
/// allocate.
const MAX_RAW_BYTES: usize = 4 << 20;

/// Encodes chronological events into a frame's bytes.
pub fn encode_frame(events: &[InputLogEvent]) -> Vec<u8> {
    let min_ts = events.first().map(|e| e.timestamp).unwrap_or(0);
    let size: usize = events.iter().map(|e| e.message.len() + 6).sum();
    let mut raw = Vec::with_capacity(size);
    let mut prev = min_ts;
    for event in events {
        put_varint(&mut raw, (event.timestamp - prev) as u64);
        prev = event.timestamp;
        put_varint(&mut raw, event.message.len() as u64);
        raw.extend_from_slice(event.message.as_bytes());
    }
    if raw.len() >= COMPRESS_FROM_BYTES {
        let compressed = lz4_flex::compress_prepend_size(&raw);
        if compressed.len() < raw.len() {
            let mut out = Vec::with_capacity(compressed.len() + 1);
            out.push(FORMAT_LZ4);
            out.extend_from_slice(&compressed);
            return out;
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 1);
    out.push(FORMAT_RAW);
    out.extend_from_slice(&raw);
    out
}

/// One decoded event of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEvent {
    pub ts: i64,
    pub message: String,
}

/// Decodes a frame of `count` events whose first timestamp is `min_ts`.
pub fn decode_frame(
    data: &[u8],
    min_ts: i64,
    count: usize,
) -> Result<Vec<DecodedEvent>, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("frame: {what}"));
    let (&format, body) = data.split_first().ok_or_else(|| corrupt("empty"))?;
    let decompressed;
    let raw: &[u8] = match format {
        FORMAT_RAW => body,
        FORMAT_LZ4 => {
            let declared = body
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(|| corrupt("short LZ4 header"))?;
            if declared > MAX_RAW_BYTES {
                return Err(corrupt("declared size too large"));
            }
            decompressed = lz4_flex::decompress_size_prepended(body)
                .map_err(|e| corrupt(&format!("LZ4: {e}")))?;
            &decompressed
        }
        _ => return Err(corrupt("unknown format")),
    };
    let mut events = Vec::with_capacity(count.min(10_000));
    let mut pos = 0;
    let mut ts = min_ts;
    for _ in 0..count {
        let delta = get_varint(raw, &mut pos).ok_or_else(|| corrupt("timestamp"))?;
        ts = i64::try_from(delta)
            .ok()
            .and_then(|d| ts.checked_add(d))
            .ok_or_else(|| corrupt("timestamp overflow"))?;
        let len = get_varint(raw, &mut pos).ok_or_else(|| corrupt("length"))?;
        let len = usize::try_from(len).map_err(|_| corrupt("length"))?;
        let end = pos
            .checked_add(len)
            .filter(|&e| e <= raw.len())
            .ok_or_else(|| corrupt("message past the end"))?;
        let message = std::str::from_utf8(&raw[pos..end])
            .map_err(|_| corrupt("message is not UTF-8"))?
            .to_owned();
        pos = end;
        events.push(DecodedEvent { ts, message });
    }
    if pos != raw.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(events)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_raw_and_compressed() {
        let small = vec![InputLogEvent::new(5, "a"), InputLogEvent::new(7, "é")];
        let data = encode_frame(&small);
        assert_eq!(data[0], FORMAT_RAW);
        let back = decode_frame(&data, 5, 2).unwrap();
        assert_eq!(
            back[0],
            DecodedEvent {
                ts: 5,
                message: "a".into()
            }
        );
        assert_eq!(
            back[1],
            DecodedEvent {
                ts: 7,
                message: "é".into()
            }
        );

        let big: Vec<_> = (0..1000)
            .map(|i| {
                InputLogEvent::new(
                    1_700_000_000_000 + i / 10,
                    format!("GET /index.html 200 {i}"),
                )
            })
            .collect();
        let data = encode_frame(&big);
        assert_eq!(data[0], FORMAT_LZ4);
        let raw_size: usize = big.iter().map(|e| e.message.len()).sum();
        assert!(data.len() < raw_size / 2, "{} vs {raw_size}", data.len());
        let back = decode_frame(&data, big[0].timestamp, big.len()).unwrap();
        for (a, b) in big.iter().zip(&back) {
            assert_eq!(
                (a.timestamp, a.message.as_str()),
                (b.ts, b.message.as_str())
            );
        }
    }

    #[test]
    fn corrupt_frames_are_errors() {
        let data = encode_frame(&[InputLogEvent::new(1, "hello")]);
        assert!(decode_frame(&data, 1, 2).is_err(), "count too high");
        assert!(decode_frame(&data, 1, 0).is_err(), "trailing bytes");
        assert!(decode_frame(&[], 0, 1).is_err());
        assert!(decode_frame(&[9, 1, 2], 0, 1).is_err());
        assert!(decode_frame(&[FORMAT_LZ4, 0xff, 0xff, 0xff, 0x7f, 1], 0, 1).is_err());
        let mut bad = data.clone();
        bad.truncate(bad.len() - 1);
        assert!(decode_frame(&bad, 1, 1).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64), count in 0usize..20) {
            let _ = decode_frame(&data, 0, count);
        }
    }

    #[test]
    fn tokens_round_trip_and_refuse_garbage() {
        let key = EventKey::new(1_700_000_000_123, 42);
        let id = event_id(key);
        assert_eq!(id.len(), 56);
        assert!(id.bytes().all(|b| b.is_ascii_digit()));
        for dir in [Direction::Forward, Direction::Backward] {
            assert_eq!(parse_get_token(&get_token(dir, key)), Some((dir, key)));
            assert_eq!(
                parse_filter_token(&filter_token(dir, key)),
                Some((dir, key))
            );
        }
        assert!(get_token(Direction::Forward, key).starts_with("f/"));
        assert!(get_token(Direction::Backward, key).starts_with("b/"));
        for bad in [
            "",
            "f/",
            "x/123",
            "f/12a",
            "3",
            "1abc",
            &format!("f/{}", "9".repeat(56)),
        ] {
            assert_eq!(parse_get_token(bad), None, "{bad}");
            assert_eq!(parse_filter_token(bad), None, "{bad}");
        }
        assert_eq!(
            parse_name_token('g', &name_token('g', "/ecs/é")),
            Some("/ecs/é".into())
        );
        assert_eq!(parse_name_token('g', "gzz"), None);
        assert_eq!(
            parse_time_name_token(&time_name_token(7, "s")),
            Some((7, "s".into()))
        );
        assert_eq!(sequence_token(3, 0), None);
        assert_ne!(sequence_token(3, 1), sequence_token(4, 1));
        assert_eq!(sequence_token(3, 1).unwrap().len(), 56);
    }

    #[test]
    fn keys_order_and_step() {
        let k = EventKey::new(5, 7);
        assert!(k.pred() < k && k < k.succ());
        assert_eq!(EventKey::new(5, u64::MAX).succ(), EventKey::new(6, 0));
        assert_eq!(EventKey::new(5, 0).pred(), EventKey::new(4, u64::MAX));
    }

    #[test]
    fn batch_hash_depends_on_every_event() {
        let a = vec![InputLogEvent::new(1, "ab"), InputLogEvent::new(2, "c")];
        let b = vec![InputLogEvent::new(1, "a"), InputLogEvent::new(2, "bc")];
        let c = vec![InputLogEvent::new(1, "ab"), InputLogEvent::new(3, "c")];
        assert_ne!(batch_hash(&a), batch_hash(&b));
        assert_ne!(batch_hash(&a), batch_hash(&c));
        assert_eq!(batch_hash(&a), batch_hash(&a.clone()));
    }
}
