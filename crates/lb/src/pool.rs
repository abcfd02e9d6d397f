//! Keep-alive connections to targets, pooled by target address (one pool
//! per worker thread, kept across config versions so a change keeps the
//! warm connections), and the HTTP/1.1 client side of the proxy.
//!
//! The client side is written here rather than taken from hyper: a proxy
//! knows its request's target address already and forwards one request at
//! a time per connection, so it writes the request head into the
//! connection's reused buffer, parses the response head with `httparse`,
//! and reads the response body straight from the target's socket as the
//! client side asks for it ([`PooledBody`]). A request thus goes out and
//! its answer comes back on the client connection's task, without a
//! hand-off between tasks or channels (nginx's model: one event loop per
//! connection pair).
//!
//! Framing, as RFC 9112 §6: request bodies go as received (`Content-Length`)
//! or chunked (a client's chunked body, whose `Transfer-Encoding` is
//! hop-by-hop); response bodies are read by `Content-Length`, chunked
//! (decoded; the client side encodes again) or until the target closes;
//! answers to `HEAD`, 1xx, 204 and 304 have none. Interim 1xx answers
//! (`100 Continue`) are skipped.
//!
//! A connection goes back to the pool when its response body has been read
//! to the end, the request body was sent whole and neither side said
//! `Connection: close`; one whose body was dropped early is closed. An idle
//! connection in the pool is read by no one; the next request first checks
//! whether the target closed it meanwhile (without a system call unless the
//! socket turned readable). A request that finds a reused connection closed
//! before any answer came goes again on a new one if it has no body and
//! its method is idempotent (RFC 9110 §9.2.2).

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Connecting to a target longer than this counts as a failed connection
/// (502), as ALB's 10 s connection timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An idle pooled connection is closed after this long, below the 60 s
/// keep-alive of common servers, so the pool rarely hands out a connection
/// the target is closing.
const POOL_IDLE: Duration = Duration::from_secs(50);

/// Idle connections kept per target at most.
const MAX_IDLE_PER_TARGET: usize = 1024;

/// Stale pooled connections tried for one request before a new one is made.
const MAX_STALE_TRIES: usize = 8;

/// A response head larger than this is refused (502).
const MAX_HEAD: usize = 64 * 1024;

/// Headers in a response head at most (more: 502).
const MAX_HEADERS: usize = 128;

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// Body data up to this size is copied out of the read buffer (which then
/// stays the connection's own, reused); larger data is split off without a
/// copy.
const COPY_BELOW: usize = 4 * 1024;

/// One HTTP/1.1 connection to a target.
struct TargetConn {
    stream: TcpStream,
    /// Bytes read from the target and not consumed yet.
    buf: BytesMut,
    /// The request head being written (reused across requests).
    out: Vec<u8>,
}

/// How an exchange on a connection failed.
enum ExchangeError {
    /// The connection was closed before any answer, and the request can go
    /// again on another one.
    Stale(String),
    /// A 502.
    Failed(String),
}

/// How a response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    Chunked(Chunk),
    /// Until the target closes the connection.
    UntilClose,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
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

impl TargetConn {
    fn new(stream: TcpStream) -> TargetConn {
        TargetConn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(1024),
        }
    }

    /// Whether an idle connection may take a request: the target has not
    /// closed it nor sent anything unasked.
    fn is_open(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        // Without readiness seen by the reactor this makes no system call.
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock)
    }

    /// Reads what the target sent into `buf`; `Ok(0)` when it closed.
    ///
    /// Through tokio's `AsyncRead`, which takes a read that did not fill
    /// the buffer as the socket drained and forgets its readiness: the
    /// check of an idle connection at its next use then makes no system
    /// call (`try_read_buf` would leave the readiness set).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        // The future only borrows: made afresh on every poll.
        std::pin::pin!(self.stream.read_buf(&mut self.buf)).poll(cx)
    }

    /// Writes `req`'s head and body, then reads the response head (interim
    /// 1xx answers skipped). `reused`: the connection served before.
    async fn exchange(
        &mut self,
        req: &mut Request<Incoming>,
        extra: &[ExtraHeader<'_>],
        reused: bool,
    ) -> Result<(Response<()>, Framing, bool), ExchangeError> {
        let retry = reused && req.body().is_end_stream() && is_idempotent(req.method());
        let stale = |e: String| {
            if retry {
                ExchangeError::Stale(e)
            } else {
                ExchangeError::Failed(e)
            }
        };
        let chunked = encode_head(&mut self.out, req, extra);
        self.stream
            .write_all(&self.out)
            .await
            .map_err(|e| stale(format!("writing the request: {e}")))?;
        if !req.body().is_end_stream() {
            self.send_body(req.body_mut(), chunked)
                .await
                .map_err(ExchangeError::Failed)?;
        }
        let head_request = req.method() == Method::HEAD;
        loop {
            let parsed = parse_head(&self.buf, head_request).map_err(ExchangeError::Failed)?;
            if let Some((len, head)) = parsed {
                self.buf.advance(len);
                match head {
                    Some(head) => return Ok(head),
                    // An interim answer: the real one follows.
                    None => continue,
                }
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(ExchangeError::Failed(
                    "the response head is too large".into(),
                ));
            }
            let got_nothing = self.buf.is_empty();
            match poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) if got_nothing => {
                    return Err(stale(
                        "the target closed the connection without a response".into(),
                    ))
                }
                Ok(0) => {
                    return Err(ExchangeError::Failed(
                        "the target closed the connection within the response head".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) if got_nothing => return Err(stale(format!("reading the response: {e}"))),
                Err(e) => return Err(ExchangeError::Failed(format!("reading the response: {e}"))),
            }
        }
    }

    /// Sends the request body as it arrives from the client.
    async fn send_body(&mut self, body: &mut Incoming, chunked: bool) -> Result<(), String> {
        loop {
            let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
            let data = match frame {
                None => break,
                Some(Err(e)) => return Err(format!("reading the request body: {e}")),
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => d,
                    // Trailers are not forwarded.
                    Err(_) => continue,
                },
            };
            if data.is_empty() {
                continue;
            }
            let write = if chunked {
                self.out.clear();
                self.out
                    .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                self.out.extend_from_slice(&data);
                self.out.extend_from_slice(b"\r\n");
                self.stream.write_all(&self.out).await
            } else {
                self.stream.write_all(&data).await
            };
            write.map_err(|e| format!("writing the request body: {e}"))?;
        }
        if chunked {
            self.stream
                .write_all(b"0\r\n\r\n")
                .await
                .map_err(|e| format!("writing the request body: {e}"))?;
        }
        Ok(())
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// A header added to a forwarded request as it is written (rather than
/// inserted into its header map first): its name and its value's pieces,
/// written one after the other.
pub struct ExtraHeader<'a>(pub &'static str, pub &'a [&'a [u8]]);

/// Writes the request line and headers into `out`; `true` if the body is
/// to be sent chunked (it has no `Content-Length`).
fn encode_head(out: &mut Vec<u8>, req: &Request<Incoming>, extra: &[ExtraHeader<'_>]) -> bool {
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_length = false;
    for (name, value) in req.headers() {
        if name == header::CONTENT_LENGTH {
            has_length = true;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for ExtraHeader(name, pieces) in extra {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        for p in *pieces {
            out.extend_from_slice(p);
        }
        out.extend_from_slice(b"\r\n");
    }
    let chunked = !has_length && !req.body().is_end_stream();
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    chunked
}

/// A parsed response head: the response, its body's framing, and whether
/// the connection may serve another request after it.
type Head = (Response<()>, Framing, bool);

/// Parses a response head at the start of `buf`: `None` if incomplete, else
/// its length and the head (`None` for an interim 1xx answer).
#[allow(clippy::type_complexity)]
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<(usize, Option<Head>)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("an invalid response head: {e}")),
    };
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| format!("an invalid status {code}"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err("the target switched protocols (not supported)".into());
    }
    if status.is_informational() {
        return Ok(Some((len, None)));
    }
    let http10 = parsed.version == Some(0);
    // One allocation for every header value, shared by slices of it.
    let head = Bytes::copy_from_slice(&buf[..len]);
    let mut map = HeaderMap::with_capacity(parsed.headers.len());
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive = false;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("an invalid header name {:?}", h.name))?;
        let start = h.value.as_ptr() as usize - buf.as_ptr() as usize;
        let value = HeaderValue::from_maybe_shared(head.slice(start..start + h.value.len()))
            .map_err(|_| format!("an invalid value of {name}"))?;
        if name == header::CONTENT_LENGTH {
            let n = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or("an invalid Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length headers".into());
            }
            length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            // Chunked is the last coding when present (RFC 9112 §6.1).
            chunked = value
                .as_bytes()
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if !chunked {
                return Err("a transfer coding other than chunked".into());
            }
        } else if name == header::CONNECTION {
            for token in value.as_bytes().split(|b| *b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        map.append(name, value);
    }
    let bodiless =
        head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::Length(0)
    } else if chunked {
        // Transfer-Encoding overrides Content-Length, which must not reach
        // the client next to a re-chunked body.
        map.remove(header::CONTENT_LENGTH);
        Framing::Chunked(Chunk::Size)
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let reusable = !close && (!http10 || keep_alive) && framing != Framing::UntilClose;
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    *resp.headers_mut() = map;
    Ok(Some((len, Some((resp, framing, reusable)))))
}

struct Idle {
    conn: Box<TargetConn>,
    since: Instant,
}

impl Idle {
    fn is_fresh(&self) -> bool {
        self.since.elapsed() < POOL_IDLE && self.conn.is_open()
    }
}

#[derive(Default)]
pub struct TargetPool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

impl TargetPool {
    /// Sends `req` (origin-form URI, Host set, hop-by-hop headers removed)
    /// with the `extra` headers after its own to `target` on a pooled
    /// connection, or a new one. The error says what failed (a 502).
    pub async fn send(
        self: &Arc<Self>,
        target: SocketAddr,
        mut req: Request<Incoming>,
        extra: &[ExtraHeader<'_>],
    ) -> Result<Response<PooledBody>, String> {
        for _ in 0..MAX_STALE_TRIES {
            let Some(mut conn) = self.checkout(target) else {
                break;
            };
            match conn.exchange(&mut req, extra, true).await {
                Ok(head) => return Ok(self.wrap(target, conn, head)),
                Err(ExchangeError::Stale(e)) => {
                    tracing::debug!(%target, error = %e, "a pooled connection was closed; trying another");
                }
                Err(ExchangeError::Failed(e)) => return Err(e),
            }
        }
        let mut conn = connect(target).await?;
        match conn.exchange(&mut req, extra, false).await {
            Ok(head) => Ok(self.wrap(target, conn, head)),
            Err(ExchangeError::Stale(e) | ExchangeError::Failed(e)) => Err(e),
        }
    }

    fn checkout(&self, target: SocketAddr) -> Option<Box<TargetConn>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&target)?;
        while let Some(i) = list.pop() {
            if i.is_fresh() {
                return Some(i.conn);
            }
        }
        None
    }

    /// Closes connections idle longer than the pool keeps them or that the
    /// target closed, for every target (also those no version names any
    /// more). Called periodically.
    pub fn prune(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        for list in idle.values_mut() {
            list.retain(Idle::is_fresh);
        }
        idle.retain(|_, list| !list.is_empty());
    }

    fn give_back(&self, target: SocketAddr, conn: Box<TargetConn>) {
        if !conn.buf.is_empty() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(target).or_default();
        if list.len() >= MAX_IDLE_PER_TARGET {
            list.retain(Idle::is_fresh);
        }
        if list.len() < MAX_IDLE_PER_TARGET {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn wrap(
        self: &Arc<Self>,
        target: SocketAddr,
        conn: Box<TargetConn>,
        (resp, framing, reusable): Head,
    ) -> Response<PooledBody> {
        let mut body = PooledBody {
            framing,
            reusable,
            conn: Some(conn),
            pool: Arc::clone(self),
            target,
        };
        if framing == Framing::Length(0) {
            body.release();
        }
        resp.map(|()| body)
    }
}

async fn connect(target: SocketAddr) -> Result<Box<TargetConn>, String> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Err(_) => {
            return Err(format!(
                "connecting to {target} took longer than {CONNECT_TIMEOUT:?}"
            ))
        }
        Ok(Err(e)) => return Err(format!("connecting to {target}: {e}")),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    // Boxed once: it moves between the pool and response bodies.
    Ok(Box::new(TargetConn::new(stream)))
}

/// A target's response body, read from the target's socket as it is
/// polled; the connection goes back to the pool once the body has been
/// read to the end.
pub struct PooledBody {
    framing: Framing,
    /// Whether the connection may serve another request after this body.
    reusable: bool,
    /// The connection the body comes on, until the body ends.
    conn: Option<Box<TargetConn>>,
    pool: Arc<TargetPool>,
    target: SocketAddr,
}

impl PooledBody {
    /// The body ended: the connection goes back to the pool if it may.
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.reusable {
                self.pool.give_back(self.target, conn);
            }
        }
    }

    fn is_done(&self) -> bool {
        matches!(
            self.framing,
            Framing::Length(0) | Framing::Chunked(Chunk::Done)
        ) || self.conn.is_none()
    }

    /// The next piece of body data from what has been read, if any; moves
    /// the framing on. `Ok(None)`: more must be read first (or the body
    /// ended: see `is_done`).
    fn take_data(&mut self) -> std::io::Result<Option<Bytes>> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let buf = &mut conn.buf;
        loop {
            match &mut self.framing {
                Framing::Length(0) => return Ok(None),
                Framing::Length(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = (*left).min(buf.len() as u64) as usize;
                    *left -= n as u64;
                    return Ok(Some(split(buf, n)));
                }
                Framing::UntilClose => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = buf.len();
                    return Ok(Some(split(buf, n)));
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
                        return Ok(Some(split(buf, n)));
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
                            if buf.len() > 4096 {
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

/// The first `n` bytes of `buf`: copied when small, so the buffer stays the
/// connection's own.
fn split(buf: &mut BytesMut, n: usize) -> Bytes {
    if n < COPY_BELOW {
        let b = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        b
    } else {
        buf.split_to(n).freeze()
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidData, format!("response body: {what}"))
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        loop {
            let data = match this.take_data() {
                Ok(d) => d,
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            };
            if this.is_done() {
                this.release();
            }
            if let Some(data) = data {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if this.framing == Framing::UntilClose => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the target closed the connection within the response body",
                    ))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A front server whose every request goes through `pool` to `target`
    /// (requests need an `Incoming` body: they come from a real server side).
    async fn front(pool: Arc<TargetPool>, target: SocketAddr) -> SocketAddr {
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = front.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = front.accept().await.unwrap();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let pool = pool.clone();
                async move {
                    // A failure is a 502 saying why, as the listener's.
                    let resp = match pool.send(target, req, &[]).await {
                        Ok(r) => r.map(crate::http::Body::Target),
                        Err(e) => {
                            let mut r = Response::new(crate::http::Body::Local(
                                http_body_util::Full::new(Bytes::from(e)),
                            ));
                            *r.status_mut() = StatusCode::BAD_GATEWAY;
                            r
                        }
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
        addr
    }

    /// `n` GETs on one keep-alive connection to `front`, `pause` apart;
    /// their bodies.
    async fn gets(front: SocketAddr, n: usize, pause: Duration) -> Vec<Bytes> {
        let stream = TcpStream::connect(front).await.unwrap();
        let (mut client, conn) = hyper::client::conn::http1::handshake::<
            _,
            http_body_util::Empty<Bytes>,
        >(TokioIo::new(stream))
        .await
        .unwrap();
        tokio::spawn(conn);
        let mut bodies = Vec::new();
        for _ in 0..n {
            client.ready().await.unwrap();
            let req = Request::builder()
                .uri("/")
                .header("host", "x")
                .body(http_body_util::Empty::new())
                .unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(30), client.send_request(req))
                .await
                .unwrap()
                .unwrap();
            bodies.push(resp.into_body().collect().await.unwrap().to_bytes());
            tokio::time::sleep(pause).await;
        }
        bodies
    }

    /// A real keep-alive target: one connection serves every request, the
    /// pool hands it back after each body, and prune keeps a fresh one.
    #[tokio::test]
    async fn connections_are_reused_after_the_body_ends() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            Bytes::from_static(b"hello"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        let pool = Arc::new(TargetPool::default());
        let front = front(pool.clone(), addr).await;
        let bodies = gets(front, 5, Duration::ZERO).await;
        assert!(bodies.iter().all(|b| &b[..] == b"hello"), "{bodies:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        pool.prune();
        assert_eq!(pool.idle.lock().unwrap().get(&addr).map(Vec::len), Some(1));
        server.abort();
    }

    /// Idle pooled connections are driven by no one: one the target closed
    /// meanwhile is noticed when the next request drives it, and that
    /// request goes on a new connection instead of failing.
    #[tokio::test]
    async fn a_connection_the_target_closed_while_idle_is_not_used() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        // Answers one request per connection as if keeping it alive, then
        // closes it (as a server whose keep-alive timeout is short).
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                        .await;
                });
            }
        });
        let pool = Arc::new(TargetPool::default());
        let front = front(pool.clone(), addr).await;
        // The pause lets each close arrive before the next request.
        let bodies = gets(front, 3, Duration::from_millis(200)).await;
        assert!(bodies.iter().all(|b| &b[..] == b"hello"), "{bodies:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        // The last one, closed too, is dropped by the prune.
        pool.prune();
        assert!(pool.idle.lock().unwrap().get(&addr).is_none());
        server.abort();
    }

    /// What a scripted target saw: each connection's bytes, request after
    /// request.
    type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

    /// A target on 127.0.11.1 that reads each request (head, and a body by
    /// `Content-Length` or chunked) and writes `answer(request head)` on the
    /// same connection; after an answer for which `close(head)` holds it
    /// closes the connection. Returns its address and what it saw.
    async fn scripted(answer: fn(&str) -> Vec<u8>, close: fn(&str) -> bool) -> (SocketAddr, Seen) {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.11.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen2.clone();
                let index = {
                    let mut v = seen.lock().unwrap();
                    v.push(Vec::new());
                    v.len() - 1
                };
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        // One request: its head, then its body.
                        let head_end = loop {
                            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => data.extend_from_slice(&buf[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&data[..head_end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map(|v| v.trim().parse::<usize>().unwrap());
                        let chunked = head.contains("transfer-encoding: chunked");
                        let end = loop {
                            let body = &data[head_end..];
                            let done = match (length, chunked) {
                                (Some(n), _) => (body.len() >= n).then_some(head_end + n),
                                (None, true) => body
                                    .windows(5)
                                    .position(|w| w == b"0\r\n\r\n")
                                    .map(|i| head_end + i + 5),
                                (None, false) => Some(head_end),
                            };
                            if let Some(end) = done {
                                break end;
                            }
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => data.extend_from_slice(&buf[..n]),
                            }
                        };
                        seen.lock().unwrap()[index].extend_from_slice(&data[..end]);
                        data.drain(..end);
                        if s.write_all(&answer(&head)).await.is_err() || close(&head) {
                            return;
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    /// One request on a new connection to `front`: status and body (or the
    /// error reading it).
    async fn one(
        front: SocketAddr,
        req: Request<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>,
    ) -> (StatusCode, Result<Bytes, String>) {
        try_one(front, req).await.unwrap()
    }

    /// As `one`, with the error if the response head did not come.
    async fn try_one(
        front: SocketAddr,
        req: Request<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>,
    ) -> Result<(StatusCode, Result<Bytes, String>), String> {
        let stream = TcpStream::connect(front).await.unwrap();
        let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let resp = tokio::time::timeout(Duration::from_secs(30), client.send_request(req))
            .await
            .unwrap()
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
            .await
            .unwrap()
            .map(|b| b.to_bytes())
            .map_err(|e| e.to_string());
        Ok((status, body))
    }

    fn get(
        method: &str,
    ) -> Request<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>> {
        Request::builder()
            .method(method)
            .uri("/")
            .header("host", "x")
            .body(http_body_util::Empty::new().boxed())
            .unwrap()
    }

    /// A front that serves every connection (the other `front` serves one).
    async fn front_many(pool: Arc<TargetPool>, target: SocketAddr) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.11.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let pool = pool.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let pool = pool.clone();
                        async move {
                            let resp = match pool.send(target, req, &[]).await {
                                Ok(r) => r.map(crate::http::Body::Target),
                                Err(e) => {
                                    let mut r = Response::new(crate::http::Body::Local(
                                        http_body_util::Full::new(Bytes::from(e)),
                                    ));
                                    *r.status_mut() = StatusCode::BAD_GATEWAY;
                                    r
                                }
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        addr
    }

    fn never(_: &str) -> bool {
        false
    }

    /// Chunked answers (with chunk extensions and trailers) are decoded and
    /// relayed whole, and the connection serves the next request.
    #[tokio::test]
    async fn chunked_responses_are_relayed_and_the_connection_reused() {
        let (target, seen) = scripted(
            |_| {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nX-T: a\r\n\r\n"
                    .to_vec()
            },
            never,
        )
        .await;
        let front = front_many(Arc::new(TargetPool::default()), target).await;
        for _ in 0..3 {
            let (status, body) = one(front, get("GET")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(&body.unwrap()[..], b"hello world");
        }
        assert_eq!(seen.lock().unwrap().len(), 1, "one target connection");
    }

    /// A large `Content-Length` body arrives whole (in many reads); a
    /// `HEAD` answer and a 204 have no body, and the connection serves on.
    #[tokio::test]
    async fn content_length_head_and_204_are_framed() {
        let (target, seen) = scripted(
            |head| {
                if head.starts_with("head ") {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec()
                } else if head.starts_with("delete ") {
                    b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
                } else {
                    let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec();
                    r.extend((0..1_000_000u32).map(|i| (i % 251) as u8));
                    r
                }
            },
            never,
        )
        .await;
        let front = front_many(Arc::new(TargetPool::default()), target).await;
        let (status, body) = one(front, get("GET")).await;
        assert_eq!(status, StatusCode::OK);
        let body = body.unwrap();
        assert_eq!(body.len(), 1_000_000);
        assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        let (status, body) = one(front, get("HEAD")).await;
        assert_eq!((status, body.unwrap().len()), (StatusCode::OK, 0));
        let (status, body) = one(front, get("DELETE")).await;
        assert_eq!((status, body.unwrap().len()), (StatusCode::NO_CONTENT, 0));
        let (status, body) = one(front, get("GET")).await;
        assert_eq!((status, body.unwrap().len()), (StatusCode::OK, 1_000_000));
        assert_eq!(seen.lock().unwrap().len(), 1, "one target connection");
    }

    /// Request bodies reach the target framed: by their `Content-Length`,
    /// or chunked when the client sent them without one.
    #[tokio::test]
    async fn request_bodies_are_forwarded() {
        let (target, seen) = scripted(
            |_| {
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
                    .to_vec()
            },
            never,
        )
        .await;
        let front = front_many(Arc::new(TargetPool::default()), target).await;
        let req = Request::builder()
            .method("POST")
            .uri("/a?b=c")
            .header("host", "x")
            .body(http_body_util::Full::new(Bytes::from_static(b"fixed body")).boxed())
            .unwrap();
        let (status, body) = one(front, req).await;
        assert_eq!(
            (status, &body.unwrap()[..]),
            (StatusCode::CREATED, &b"ok"[..])
        );
        let frames = futures_util::stream::iter(["chunk one,", " chunk two"].map(|c| {
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(c.as_bytes())))
        }));
        let req = Request::builder()
            .method("POST")
            .uri("/streamed")
            .header("host", "x")
            .body(http_body_util::StreamBody::new(frames).boxed())
            .unwrap();
        let (status, body) = one(front, req).await;
        assert_eq!(
            (status, &body.unwrap()[..]),
            (StatusCode::CREATED, &b"ok"[..])
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "one target connection");
        let text = String::from_utf8_lossy(&seen[0]).to_lowercase();
        assert!(text.starts_with("post /a?b=c http/1.1\r\n"), "{text}");
        assert!(
            text.contains("content-length: 10\r\n\r\nfixed body"),
            "{text}"
        );
        let second = &text[text.find("post /streamed").expect(&text)..];
        assert!(
            second.contains("transfer-encoding: chunked\r\n"),
            "{second}"
        );
        // Decoded, the chunks are the body sent.
        let body = &second[second.find("\r\n\r\n").unwrap() + 4..];
        let mut decoded = String::new();
        let mut rest = body;
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let size = usize::from_str_radix(size, 16).unwrap();
            if size == 0 {
                break;
            }
            decoded.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        assert_eq!(decoded, "chunk one, chunk two");
    }

    /// A target that closes before its response head is complete is a 502;
    /// one that closes within the body breaks the client's response; one
    /// that says `Connection: close` (or frames its body by closing) is
    /// not reused.
    #[tokio::test]
    async fn closes_by_the_target() {
        let (target, _) = scripted(|_| b"HTTP/1.1 200 OK\r\nContent-Le".to_vec(), |_| true).await;
        let front = front_many(Arc::new(TargetPool::default()), target).await;
        let (status, _) = one(front, get("GET")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);

        let (target, _) = scripted(
            |_| b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial".to_vec(),
            |_| true,
        )
        .await;
        let front = front_many(Arc::new(TargetPool::default()), target).await;
        // The head may not have reached the client before its connection
        // was cut.
        let answer = try_one(front, get("GET")).await;
        assert!(
            matches!(answer, Err(_) | Ok((StatusCode::OK, Err(_)))),
            "{answer:?}"
        );

        let (target, seen) = scripted(
            |head| {
                if head.starts_with("get /close ") {
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok".to_vec()
                } else {
                    b"HTTP/1.0 200 OK\r\n\r\nuntil close".to_vec()
                }
            },
            |_| true,
        )
        .await;
        let pool = Arc::new(TargetPool::default());
        let front = front_many(pool.clone(), target).await;
        let mut req = get("GET");
        *req.uri_mut() = "/close".parse().unwrap();
        let (status, body) = one(front, req).await;
        assert_eq!((status, &body.unwrap()[..]), (StatusCode::OK, &b"ok"[..]));
        let (status, body) = one(front, get("GET")).await;
        assert_eq!(
            (status, &body.unwrap()[..]),
            (StatusCode::OK, &b"until close"[..])
        );
        let (status, _) = one(front, get("GET")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seen.lock().unwrap().len(), 3, "a connection per request");
        assert!(
            pool.idle.lock().unwrap().get(&target).is_none(),
            "none pooled"
        );
    }
}
