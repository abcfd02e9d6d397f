//! The client side of an ALB listener: HTTP/1.1 requests read from a
//! client connection, and responses written back.
//!
//! Written here rather than taken from hyper's server, as the target side
//! was ([`crate::pool`]): a proxy reads a request head with `httparse`
//! into the connection's buffer, forwards its header lines as they came
//! (no header map is built), and writes the target's response head, which
//! the target side has already filtered into the connection's write
//! buffer, with the body behind it in one write when it is all there.
//!
//! What it implements of RFC 9112: keep-alive (HTTP/1.1 unless
//! `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`),
//! pipelined requests (answered in order), request bodies framed by
//! `Content-Length` or chunked (decoded), `Expect: 100-continue`, response
//! bodies of unknown length chunked to HTTP/1.1 clients and ended by a
//! close for HTTP/1.0 clients. A malformed request head gets a 400 (431
//! when too large), and the connection is closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::h1::{self, Framing};
use crate::pool::{Answer, Outgoing, PooledBody, RequestBody, TargetPool};

/// Headers in a request head at most (more: 431), as hyper's default.
pub const MAX_HEADERS: usize = 100;

/// A request head larger than this gets a 431.
const MAX_HEAD: usize = 64 * 1024;

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;

/// A request body left unread by a load balancer's own answer is read and
/// dropped up to this size; a larger one closes the connection instead.
const DISCARD_LIMIT: u64 = 64 * 1024;

/// Body data up to this size is copied out of the read buffer (which then
/// stays the connection's own); larger data is split off without a copy.
const COPY_BELOW: usize = 4 * 1024;

/// One client connection.
pub struct ClientConn<'a> {
    pub reader: Reader<'a>,
    /// The response being written (reused across requests).
    pub out: Vec<u8>,
    /// The forwarded request's head (reused across requests).
    pub up: Vec<u8>,
}

/// The reading half of a client connection, and the request body being
/// read ([`RequestBody`]).
pub struct Reader<'a> {
    stream: TcpStream,
    buf: BytesMut,
    /// What is left of the current request's body, if any.
    body: Option<Framing>,
    /// Bumped on every read and write that moved bytes (the idle timeout).
    ops: &'a AtomicU64,
}

/// `Content-Type` of the load balancer's own plain-text answers.
pub const TEXT: &[u8] = b"content-type: text/plain; charset=utf-8\r\n";

/// Why no request head came.
#[derive(Debug)]
enum HeadError {
    /// The connection failed or was closed within a head.
    Io,
    /// A malformed or too large head: answer with this status and close.
    Refused(u16),
}

/// A parsed request head, borrowing its bytes.
pub struct Request<'h> {
    pub method: &'h str,
    /// The path (origin-form, absolute-form's path, or `*`).
    pub path: &'h str,
    /// The raw query string, without `?`.
    pub query: Option<&'h str>,
    pub http10: bool,
    pub headers: &'h [httparse::Header<'h>],
    /// How its body is framed (`None`: it has none).
    pub body: Option<Framing>,
    /// Whether the client asked to keep the connection open after it.
    pub keep_alive: bool,
    pub expect_continue: bool,
    connection: h1::Connection,
}

impl<'a> ClientConn<'a> {
    pub fn new(stream: TcpStream, ops: &'a AtomicU64) -> ClientConn<'a> {
        ClientConn {
            reader: Reader {
                stream,
                buf: BytesMut::with_capacity(READ_CHUNK),
                body: None,
                ops,
            },
            out: Vec::with_capacity(READ_CHUNK),
            up: Vec::with_capacity(1024),
        }
    }

    /// The next request's head; `None` when the connection is over: the
    /// client closed it or it failed, or a head was refused (answered
    /// with a 400 or 431 here).
    pub async fn read_head(&mut self) -> Option<Bytes> {
        match self.try_read_head().await {
            Ok(head) => head,
            Err(HeadError::Io) => None,
            Err(HeadError::Refused(status)) => {
                self.refuse(status).await;
                None
            }
        }
    }

    async fn try_read_head(&mut self) -> Result<Option<Bytes>, HeadError> {
        let r = &mut self.reader;
        r.body = None;
        // The head is parsed when a read brought a line's end (or it is
        // the first read, so that what is not HTTP at all is refused at
        // once): one sent a byte at a time is parsed once per line (at
        // most 100), not once per read.
        let mut seen = 0;
        loop {
            let fresh = &r.buf[seen..];
            let due = seen == 0 || fresh.contains(&b'\n') || r.buf.len() >= MAX_HEAD;
            if !fresh.is_empty() && due {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match httparse::Request::new(&mut headers).parse(&r.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        return Ok(Some(r.buf.split_to(len).freeze()))
                    }
                    Ok(httparse::Status::Partial) if r.buf.len() >= MAX_HEAD => {
                        return Err(HeadError::Refused(431))
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(httparse::Error::TooManyHeaders) => return Err(HeadError::Refused(431)),
                    Err(_) => return Err(HeadError::Refused(400)),
                }
            }
            seen = r.buf.len();
            let had = r.buf.len();
            match r.read().await {
                Ok(0) if had == 0 => return Ok(None),
                Ok(0) | Err(_) => return Err(HeadError::Io),
                Ok(_) => {}
            }
        }
    }

    /// Answers a request that cannot be served (`status`: 400, 431, 501)
    /// and closes the connection (its framing cannot be trusted).
    pub async fn refuse(&mut self, status: u16) {
        let body = format!("{status} {}\n", h1::reason(status));
        self.respond(None, status, TEXT, body.as_bytes()).await;
    }

    /// Parses the request head [`ClientConn::read_head`] returned (see
    /// [`parse`]); its body is then read through [`ClientConn::reader`].
    pub fn parse<'h>(
        &mut self,
        raw: &'h [u8],
        headers: &'h mut [httparse::Header<'h>; MAX_HEADERS],
    ) -> Result<Request<'h>, u16> {
        let req = parse(raw, headers)?;
        self.reader.body = req.body.filter(|f| !f.is_done());
        Ok(req)
    }

    /// Answers an `Expect: 100-continue` before the body is forwarded.
    async fn start_body(&mut self, req: &Request<'_>) -> std::io::Result<()> {
        if req.expect_continue && !req.http10 && self.reader.body.is_some() {
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        Ok(())
    }

    /// Forwards `req` to `target` through `pool` (see
    /// [`Request::write_upstream`] for what the target gets). The answer's
    /// head is then in [`ClientConn::out`], ready for what the load
    /// balancer adds and [`ClientConn::relay`].
    pub async fn send(
        &mut self,
        pool: &Arc<TargetPool>,
        target: SocketAddr,
        req: &Request<'_>,
        host: &str,
        fwd: &Forwarded<'_>,
    ) -> Result<Answer, String> {
        req.write_upstream(&mut self.up, host, fwd);
        self.start_body(req)
            .await
            .map_err(|e| format!("answering Expect: 100-continue: {e}"))?;
        let outgoing = Outgoing {
            head: &self.up,
            head_request: req.method == "HEAD",
            idempotent: req.is_idempotent(),
        };
        pool.send(target, &outgoing, &mut self.reader, &mut self.out)
            .await
    }

    /// Writes a response the load balancer makes itself. `headers` are
    /// lines already written (`name: value\r\n`). Returns whether the
    /// connection may serve another request.
    pub async fn respond(
        &mut self,
        req: Option<&Request<'_>>,
        status: u16,
        headers: &[u8],
        body: &[u8],
    ) -> bool {
        // What is left of a body the client sent for nothing is read
        // first, or the connection closed after the answer (also when the
        // client waits for a 100 Continue before sending it).
        let mut keep = req.is_some_and(|r| r.keep_alive);
        if keep && self.reader.body.is_some() {
            keep =
                !req.is_some_and(|r| r.expect_continue) && self.reader.discard(DISCARD_LIMIT).await;
        }
        let out = &mut self.out;
        out.clear();
        h1::status_line(out, status, h1::reason(status).as_bytes());
        h1::write_date(out);
        out.extend_from_slice(headers);
        out.extend_from_slice(b"content-length: ");
        h1::write_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
        connection_header(out, keep, req.is_some_and(|r| r.http10));
        out.extend_from_slice(b"\r\n");
        if req.is_none_or(|r| r.method != "HEAD") {
            out.extend_from_slice(body);
        }
        self.flush().await.is_ok() && keep
    }

    /// Writes a target's response: its head is in `out` already (status
    /// line and header lines, as [`crate::pool`] filtered them, and any
    /// the load balancer added), the body comes from the target as it is
    /// read. Returns whether the connection may serve another request.
    pub async fn relay(&mut self, req: &Request<'_>, mut body: PooledBody) -> bool {
        let streamed = body.is_streamed();
        // A body of unknown length is chunked to HTTP/1.1 clients; an
        // HTTP/1.0 client learns its end from the close. A request body
        // not sent whole leaves the connection unusable.
        let chunked = streamed && !req.http10;
        let keep = req.keep_alive && !(streamed && req.http10) && self.reader.body.is_none();
        if chunked {
            self.out
                .extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        connection_header(&mut self.out, keep, req.http10);
        self.out.extend_from_slice(b"\r\n");
        loop {
            match body.fill(&mut self.out, chunked).await {
                Ok(true) => {
                    if chunked {
                        self.out.extend_from_slice(h1::LAST_CHUNK);
                    }
                    return self.flush().await.is_ok() && keep;
                }
                Ok(false) => {
                    if self.flush().await.is_err() {
                        return false;
                    }
                }
                Err(e) => {
                    // The client sees the body cut short, then the close.
                    tracing::debug!(error = %e, "target response body failed");
                    let _ = self.flush().await;
                    return false;
                }
            }
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let r = self.reader.write_all(&self.out).await;
        self.out.clear();
        r
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.write_all(bytes).await
    }
}

impl Reader<'_> {
    fn bump(&self) {
        // Only this connection's task writes it: a plain load and store.
        let n = self.ops.load(Ordering::Relaxed);
        self.ops.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    /// Writes `bytes` to the client, counting every write that moved some
    /// (a slow reader is not idle).
    async fn write_all(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let n = self.stream.write(bytes).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.bump();
            bytes = &bytes[n..];
        }
        Ok(())
    }

    async fn read(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        self.bump();
        Ok(n)
    }

    /// Reads and drops the rest of the request body, up to `limit` bytes;
    /// whether it ended within them.
    async fn discard(&mut self, limit: u64) -> bool {
        let mut dropped = 0u64;
        loop {
            match self.next_chunk().await {
                Ok(Some(data)) => {
                    dropped += data.len() as u64;
                    if dropped > limit {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    async fn next_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            let Some(framing) = self.body.as_mut() else {
                return Ok(None);
            };
            if let Some(n) = framing.next_data(&mut self.buf)? {
                let data = if n < COPY_BELOW {
                    let b = Bytes::copy_from_slice(&self.buf[..n]);
                    self.buf.advance(n);
                    b
                } else {
                    self.buf.split_to(n).freeze()
                };
                return Ok(Some(data));
            }
            if framing.is_done() {
                self.body = None;
                return Ok(None);
            }
            if self.read().await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the client closed the connection within the request body",
                ));
            }
        }
    }
}

impl RequestBody for Reader<'_> {
    fn is_empty(&self) -> bool {
        self.body.is_none()
    }

    fn is_chunked(&self) -> bool {
        matches!(self.body, Some(Framing::Chunked(_)))
    }

    async fn next(&mut self) -> std::io::Result<Option<Bytes>> {
        self.next_chunk().await
    }
}

/// Parses a request head that [`ClientConn::read_head`] found complete.
/// The error is the status to refuse it with.
pub fn parse<'h>(
    raw: &'h [u8],
    headers: &'h mut [httparse::Header<'h>; MAX_HEADERS],
) -> Result<Request<'h>, u16> {
    let mut parsed = httparse::Request::new(headers);
    match parsed.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(400),
    }
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(400);
    };
    let headers: &'h [httparse::Header<'h>] = parsed.headers;
    let http10 = version == 0;
    // The request target as a path (RFC 9112 §3.2): origin-form, or
    // absolute-form's path; `*` for OPTIONS.
    let origin = if target.starts_with('/') || target == "*" {
        target
    } else if let Some(rest) = strip_scheme(target) {
        rest.find(['/', '?']).map_or("/", |i| &rest[i..])
    } else {
        return Err(400);
    };
    let (path, query) = match origin.split_once('?') {
        Some((p, q)) => (if p.is_empty() { "/" } else { p }, Some(q)),
        None => (origin, None),
    };
    let mut length = None;
    let mut chunked = false;
    let mut connection = h1::Connection::default();
    let mut expect_continue = false;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = h1::content_length(h.value).ok_or(400u16)?;
            if length.is_some_and(|l| l != n) {
                return Err(400);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !h1::ends_chunked(h.value) {
                return Err(501);
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            connection.add(h.value);
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    // Transfer-Encoding overrides Content-Length; such a message may be
    // smuggling, so the connection is not kept (RFC 9112 §6.3).
    let body = if chunked {
        Some(Framing::CHUNKED)
    } else {
        length.filter(|n| *n > 0).map(Framing::Length)
    };
    let keep_alive = !(chunked && length.is_some())
        && if http10 {
            connection.keep_alive && !connection.close
        } else {
            !connection.close
        };
    Ok(Request {
        method,
        path,
        query,
        http10,
        headers,
        body,
        keep_alive,
        expect_continue,
        connection,
    })
}

fn strip_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// The `X-Forwarded-*` values of a connection (RFC 7239's order: the
/// client's address after any the request brought).
pub struct Forwarded<'a> {
    /// The client's address (`X-Forwarded-For`).
    pub client_ip: &'a [u8],
    /// The listener's port (`X-Forwarded-Port`).
    pub port: &'a [u8],
}

impl Request<'_> {
    /// The request as the target gets it, written into `up`: origin-form,
    /// HTTP/1.1, hop-by-hop headers and those `Connection` names left out,
    /// as is `Expect: 100-continue` (answered here); a `Host` header (the
    /// target's address when the client sent none); `X-Forwarded-For`
    /// (the first non-empty one the client sent, then the client's
    /// address), `-Proto` and `-Port` written last, in place of any the
    /// client sent.
    pub fn write_upstream(&self, up: &mut Vec<u8>, host: &str, fwd: &Forwarded<'_>) {
        up.clear();
        up.extend_from_slice(self.method.as_bytes());
        up.push(b' ');
        up.extend_from_slice(self.path.as_bytes());
        if let Some(q) = self.query {
            up.push(b'?');
            up.extend_from_slice(q.as_bytes());
        }
        up.extend_from_slice(b" HTTP/1.1\r\n");
        let mut has_host = false;
        let mut prior_for = None;
        let chunked = matches!(self.body, Some(Framing::Chunked(_)));
        for h in self.headers {
            let name = h.name;
            if h1::is_hop_by_hop(name)
                || (self.connection.names_others && h1::named_by_connection(self.headers, name))
            {
                continue;
            }
            if let Some(rest) = strip_prefix_ignore_case(name.as_bytes(), b"x-forwarded-") {
                if rest.eq_ignore_ascii_case(b"for") {
                    if prior_for.is_none() && !h.value.trim_ascii().is_empty() {
                        prior_for = Some(h.value);
                    }
                    continue;
                }
                if rest.eq_ignore_ascii_case(b"proto") || rest.eq_ignore_ascii_case(b"port") {
                    continue;
                }
            }
            if (self.expect_continue && name.eq_ignore_ascii_case("expect"))
                || (chunked && name.eq_ignore_ascii_case("content-length"))
            {
                continue;
            }
            has_host |= name.eq_ignore_ascii_case("host");
            h1::write_header(up, name.as_bytes(), h.value);
        }
        if !has_host {
            h1::write_header(up, b"host", host.as_bytes());
        }
        up.extend_from_slice(b"x-forwarded-for: ");
        if let Some(prior) = prior_for {
            up.extend_from_slice(prior.trim_ascii());
            up.extend_from_slice(b", ");
        }
        up.extend_from_slice(fwd.client_ip);
        up.extend_from_slice(b"\r\nx-forwarded-proto: http\r\nx-forwarded-port: ");
        up.extend_from_slice(fwd.port);
        up.extend_from_slice(b"\r\n");
        if chunked {
            up.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        up.extend_from_slice(b"\r\n");
    }

    /// The values of the headers named `name`.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Whether the method is idempotent (RFC 9110 §9.2.2): such a request
    /// without a body may go again on another target connection.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        )
    }
}

fn strip_prefix_ignore_case<'s>(s: &'s [u8], prefix: &[u8]) -> Option<&'s [u8]> {
    let (head, rest) = s.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// The `Connection` header a response needs: `close` when the connection
/// ends after it, `keep-alive` for an HTTP/1.0 client that keeps it.
fn connection_header(out: &mut Vec<u8>, keep: bool, http10: bool) {
    if !keep {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &[u8], check: impl FnOnce(Result<Request<'_>, u16>)) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        check(parse(raw, &mut headers));
    }

    #[test]
    fn request_heads() {
        parsed(
            b"GET http://Example.com:8080/a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            |r| {
                let r = r.unwrap();
                assert_eq!((r.path, r.query), ("/a/b", Some("x=1")));
                assert!(r.keep_alive && !r.http10 && r.body.is_none());
            },
        );
        parsed(b"GET /?q HTTP/1.0\r\n\r\n", |r| {
            let r = r.unwrap();
            assert_eq!((r.path, r.query, r.keep_alive), ("/", Some("q"), false));
        });
        parsed(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", |r| {
            assert!(r.unwrap().keep_alive)
        });
        parsed(
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            |r| assert_eq!(r.unwrap().body, Some(Framing::Length(5))),
        );
        parsed(
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            |r| assert_eq!(r.err(), Some(400)),
        );
        parsed(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", |r| {
            assert_eq!(r.err(), Some(501))
        });
        parsed(
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            |r| {
                let r = r.unwrap();
                assert_eq!(r.body, Some(Framing::CHUNKED));
                assert!(!r.keep_alive, "a smuggling-shaped request closes");
            },
        );
        parsed(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", |r| {
            assert_eq!(r.err(), Some(400))
        });
    }

    #[test]
    fn upstream_heads() {
        parsed(
            b"POST http://h/p?q HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\n\
              X-Secret: 1\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\
              Expect: 100-continue\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\
              Keep-Alive: timeout=5\r\nCookie: a=b\r\n\r\n",
            |r| {
                let r = r.unwrap();
                let mut up = Vec::new();
                let fwd = Forwarded {
                    client_ip: b"10.9.9.9",
                    port: b"80",
                };
                r.write_upstream(&mut up, "10.1.1.1:80", &fwd);
                assert_eq!(
                    String::from_utf8(up).unwrap(),
                    "POST /p?q HTTP/1.1\r\nHost: h\r\nCookie: a=b\r\n\
                     x-forwarded-for: 10.0.0.1, 10.9.9.9\r\nx-forwarded-proto: http\r\n\
                     x-forwarded-port: 80\r\ntransfer-encoding: chunked\r\n\r\n"
                );
            },
        );
        parsed(b"GET / HTTP/1.0\r\n\r\n", |r| {
            let mut up = Vec::new();
            let fwd = Forwarded {
                client_ip: b"::1",
                port: b"8080",
            };
            r.unwrap().write_upstream(&mut up, "10.1.1.1:80", &fwd);
            assert_eq!(
                String::from_utf8(up).unwrap(),
                "GET / HTTP/1.1\r\nhost: 10.1.1.1:80\r\nx-forwarded-for: ::1\r\n\
                 x-forwarded-proto: http\r\nx-forwarded-port: 8080\r\n\r\n"
            );
        });
    }
}
