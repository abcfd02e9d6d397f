//! HTTP/1.1 message framing (RFC 9112), shared by both sides of the proxy:
//! the client side ([`crate::front`]) reads request bodies with it, the
//! target side ([`crate::pool`]) response bodies.

use std::io::ErrorKind;

use bytes::{Buf, BytesMut};

/// How a message body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// This many bytes are left.
    Length(u64),
    Chunked(Chunk),
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of chunk data are left.
    Data(u64),
    /// The CRLF after a chunk's data is next.
    DataEnd,
    /// Trailer lines (dropped) until an empty one.
    Trailers,
    Done,
}

/// Chunk-size and trailer lines longer than this are refused.
const MAX_LINE: usize = 4096;

impl Framing {
    /// A chunked body, from its start.
    pub const CHUNKED: Framing = Framing::Chunked(Chunk::Size);

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        matches!(self, Framing::Length(0) | Framing::Chunked(Chunk::Done))
    }

    /// Whether the body's length is not known from the head (it streams).
    pub fn is_streamed(&self) -> bool {
        !matches!(self, Framing::Length(_))
    }

    /// Decodes from the front of `buf`: `Some(n)` when the next `n` bytes
    /// of `buf` are body data (the caller consumes exactly them), `None`
    /// when more must be read first or the body ended ([`Framing::is_done`]).
    /// Chunk-size lines, chunk delimiters and trailers are consumed here.
    pub fn next_data(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<usize>> {
        loop {
            match self {
                Framing::Length(0) => return Ok(None),
                Framing::Length(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = (*left).min(buf.len() as u64) as usize;
                    *left -= n as u64;
                    return Ok(Some(n));
                }
                Framing::UntilClose => {
                    return Ok((!buf.is_empty()).then_some(buf.len()));
                }
                Framing::Chunked(state) => match *state {
                    Chunk::Done => return Ok(None),
                    Chunk::Data(left) => {
                        if buf.is_empty() {
                            return Ok(None);
                        }
                        let n = left.min(buf.len() as u64) as usize;
                        *state = if n as u64 == left {
                            Chunk::DataEnd
                        } else {
                            Chunk::Data(left - n as u64)
                        };
                        return Ok(Some(n));
                    }
                    Chunk::DataEnd => {
                        if buf.len() < 2 {
                            return Ok(None);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(invalid("no CRLF after a chunk"));
                        }
                        buf.advance(2);
                        *state = Chunk::Size;
                    }
                    Chunk::Size | Chunk::Trailers => {
                        let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                            if buf.len() > MAX_LINE {
                                return Err(invalid("a chunk-size or trailer line too long"));
                            }
                            return Ok(None);
                        };
                        let line = &buf[..end];
                        *state = if *state == Chunk::Trailers {
                            if line.is_empty() {
                                Chunk::Done
                            } else {
                                Chunk::Trailers
                            }
                        } else {
                            let hex = line.split(|b| *b == b';').next().unwrap_or(&[]);
                            let size = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
                                .ok_or_else(|| invalid("an invalid chunk size"))?;
                            if size == 0 {
                                Chunk::Trailers
                            } else {
                                Chunk::Data(size)
                            }
                        };
                        buf.advance(end + 2);
                    }
                },
            }
        }
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidData, format!("message body: {what}"))
}

/// Appends `data` to `out` as one chunk of a chunked body.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    write_hex(out, data.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn write_hex(out: &mut Vec<u8>, n: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = DIGITS[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends a decimal number.
pub fn write_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Writes `HTTP/1.1 <status> <reason>\r\n`.
pub fn status_line(out: &mut Vec<u8>, status: u16, reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// The standard reason phrase of a status ("" if none).
pub fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// Appends `name: value\r\n`.
pub fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `date: <now>\r\n` (IMF-fixdate), formatted once a second per
/// thread.
pub fn write_date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        write_header(out, b"date", text.as_bytes());
    });
}

/// Headers meaningful for one connection only (RFC 9110 §7.6.1), never
/// forwarded; the headers a `Connection` header names are too
/// ([`Connection`]).
pub fn is_hop_by_hop(name: &str) -> bool {
    const NAMES: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
    ];
    // Most names are longer than any of these ("proxy-authenticate" is
    // the longest): one length test first.
    name.len() <= 18 && NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// What a message's `Connection` headers say.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub close: bool,
    pub keep_alive: bool,
    /// Whether they name other headers (to be dropped when forwarding).
    pub names_others: bool,
}

impl Connection {
    /// Takes in one `Connection` header's value.
    pub fn add(&mut self, value: &[u8]) {
        for token in value.split(|b| *b == b',') {
            let token = token.trim_ascii();
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if !token.is_empty() {
                self.names_others = true;
            }
        }
    }
}

/// Whether one of `headers`' `Connection` headers names `name` (only to be
/// asked when [`Connection::names_others`]).
pub fn named_by_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|b| *b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
}

/// A `Content-Length` value.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Whether a `Transfer-Encoding` value ends in `chunked` (the coding that
/// frames the body, RFC 9112 §6.1).
pub fn ends_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|b| *b == b',')
        .next()
        .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(framing: Framing, wire: &[u8], step: usize) -> (Vec<u8>, Framing, usize) {
        let mut f = framing;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(step) {
            buf.extend_from_slice(piece);
            while let Some(n) = f.next_data(&mut buf).unwrap() {
                out.extend_from_slice(&buf[..n]);
                buf.advance(n);
            }
        }
        (out, f, buf.len())
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_reads() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: a\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, wire.len()] {
            let (body, f, left) = decode(Framing::CHUNKED, wire, step);
            assert_eq!(body, b"hello world", "step {step}");
            assert!(f.is_done(), "step {step}");
            assert_eq!(left, 4, "the next message stays: step {step}");
        }
        let mut bad = BytesMut::from(&b"zz\r\n"[..]);
        let mut f = Framing::CHUNKED;
        assert!(f.next_data(&mut bad).is_err());
        let mut bad = BytesMut::from(&b"2\r\nabXX"[..]);
        let mut f = Framing::CHUNKED;
        assert_eq!(f.next_data(&mut bad).unwrap(), Some(2));
        bad.advance(2);
        assert!(f.next_data(&mut bad).is_err());
    }

    #[test]
    fn lengths_stop_at_the_body_end() {
        let (body, f, left) = decode(Framing::Length(5), b"helloGET /", 3);
        assert_eq!(
            (body.as_slice(), f.is_done(), left),
            (&b"hello"[..], true, 5)
        );
    }

    #[test]
    fn encodings_and_header_values() {
        let mut out = Vec::new();
        write_chunk(&mut out, &[b'x'; 300]);
        assert!(out.starts_with(b"12c\r\nxxx"));
        assert!(out.ends_with(b"x\r\n"));
        let mut n = Vec::new();
        write_decimal(&mut n, 0);
        write_decimal(&mut n, 18446744073709551615);
        assert_eq!(n, b"018446744073709551615");
        assert_eq!(content_length(b" 42 "), Some(42));
        assert_eq!(content_length(b"+42"), None);
        assert_eq!(content_length(b"4 2"), None);
        assert!(ends_chunked(b"gzip, Chunked"));
        assert!(!ends_chunked(b"chunked, gzip"));
        assert!(is_hop_by_hop("Transfer-Encoding") && !is_hop_by_hop("content-length"));
        assert!(is_hop_by_hop("Proxy-Authenticate") && is_hop_by_hop("te"));
        let mut c = Connection::default();
        c.add(b"keep-alive, X-Secret");
        assert!(c.keep_alive && c.names_others && !c.close);
        let headers = [httparse::Header {
            name: "Connection",
            value: b"keep-alive, X-Secret",
        }];
        assert!(named_by_connection(&headers, "x-secret"));
        assert!(!named_by_connection(&headers, "x-other"));
    }
}
