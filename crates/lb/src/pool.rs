//! Keep-alive connections to targets, pooled by target address (one pool
//! per worker thread, kept across config versions so a change keeps the
//! warm connections), and the HTTP/1.1 client side of the proxy.
//!
//! The client side is written here rather than taken from hyper: a proxy
//! knows its request's target address already and forwards one request at
//! a time per connection, so it writes the request head the client side
//! prepared ([`crate::front`]), parses the response head with `httparse`
//! straight into the client's write buffer (hop-by-hop headers left out),
//! and reads the response body from the target's socket as the client
//! side asks for it ([`PooledBody`]). A request thus goes out and its
//! answer comes back on the client connection's task, without a hand-off
//! between tasks or channels, and without a header map (nginx's model: one
//! event loop per connection pair, header lines copied as they came).
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
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::h1::{self, Framing};

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

/// A request body, read from the client as it is sent.
pub trait RequestBody {
    /// Whether nothing (more) is to be sent.
    fn is_empty(&self) -> bool;
    /// Whether it goes chunked (its length was not given).
    fn is_chunked(&self) -> bool;
    /// Its next piece; `None` at its end.
    fn next(&mut self) -> impl Future<Output = std::io::Result<Option<Bytes>>>;
}

/// A request to forward.
pub struct Outgoing<'a> {
    /// Its head as the target gets it (request line, headers, blank line).
    pub head: &'a [u8],
    /// Whether it is a `HEAD` request (the answer has no body).
    pub head_request: bool,
    /// Whether it may go again on another connection (RFC 9110 §9.2.2),
    /// when it has no body.
    pub idempotent: bool,
}

/// A target's answer: its status and its body. The head went into the
/// caller's buffer.
pub struct Answer {
    pub status: u16,
    pub body: PooledBody,
}

/// One HTTP/1.1 connection to a target.
struct TargetConn {
    stream: TcpStream,
    /// Bytes read from the target and not consumed yet.
    buf: BytesMut,
    /// A chunk being written (reused).
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

impl TargetConn {
    fn new(stream: TcpStream) -> TargetConn {
        TargetConn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::new(),
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

    /// Writes the request's head and body, then reads the response head
    /// (interim 1xx answers skipped) into `head_out`. `reused`: the
    /// connection served before.
    async fn exchange<B: RequestBody>(
        &mut self,
        req: &Outgoing<'_>,
        body: &mut B,
        reused: bool,
        head_out: &mut Vec<u8>,
    ) -> Result<(u16, Framing, bool), ExchangeError> {
        let retry = reused && body.is_empty() && req.idempotent;
        let stale = |e: String| {
            if retry {
                ExchangeError::Stale(e)
            } else {
                ExchangeError::Failed(e)
            }
        };
        self.stream
            .write_all(req.head)
            .await
            .map_err(|e| stale(format!("writing the request: {e}")))?;
        if !body.is_empty() {
            self.send_body(body).await.map_err(ExchangeError::Failed)?;
        }
        loop {
            let parsed =
                parse_head(&self.buf, req.head_request, head_out).map_err(ExchangeError::Failed)?;
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
    async fn send_body<B: RequestBody>(&mut self, body: &mut B) -> Result<(), String> {
        let chunked = body.is_chunked();
        while let Some(data) = body
            .next()
            .await
            .map_err(|e| format!("reading the request body: {e}"))?
        {
            let write = if chunked {
                self.out.clear();
                h1::write_chunk(&mut self.out, &data);
                self.stream.write_all(&self.out).await
            } else {
                self.stream.write_all(&data).await
            };
            write.map_err(|e| format!("writing the request body: {e}"))?;
        }
        if chunked {
            self.stream
                .write_all(h1::LAST_CHUNK)
                .await
                .map_err(|e| format!("writing the request body: {e}"))?;
        }
        Ok(())
    }
}

/// A parsed response head: its status, its body's framing, and whether the
/// connection may serve another request after it.
type Head = (u16, Framing, bool);

/// Parses a response head at the start of `buf`: `None` if incomplete, else
/// its length and the head (`None` for an interim 1xx answer). A final
/// head's status line and headers, without hop-by-hop ones and without the
/// blank line, are written into `out` (HTTP/1.1, the target's reason
/// phrase); `Content-Length` is left out beside a chunked body, and a
/// `Date` is added when the target sent none (RFC 9110 §6.6.1: a recipient
/// with a clock forwarding a response without one appends it).
#[allow(clippy::type_complexity)]
fn parse_head(
    buf: &[u8],
    head_request: bool,
    out: &mut Vec<u8>,
) -> Result<Option<(usize, Option<Head>)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("an invalid response head: {e}")),
    };
    let status = parsed.code.unwrap_or(0);
    if !(100..=999).contains(&status) {
        return Err(format!("an invalid status {status}"));
    }
    if status == 101 {
        return Err("the target switched protocols (not supported)".into());
    }
    if status < 200 {
        return Ok(Some((len, None)));
    }
    let http10 = parsed.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut connection = h1::Connection::default();
    let mut dated = false;
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("date") {
            dated = true;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = h1::content_length(h.value).ok_or("an invalid Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length headers".into());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked is the last coding when present (RFC 9112 §6.1).
            if !h1::ends_chunked(h.value) {
                return Err("a transfer coding other than chunked".into());
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection.add(h.value);
        }
    }
    let bodiless = head_request || status == 204 || status == 304;
    let framing = if bodiless {
        Framing::Length(0)
    } else if chunked {
        Framing::CHUNKED
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let reusable =
        !connection.close && (!http10 || connection.keep_alive) && framing != Framing::UntilClose;
    out.clear();
    h1::status_line(out, status, parsed.reason.unwrap_or("").as_bytes());
    for h in parsed.headers.iter() {
        if h1::is_hop_by_hop(h.name)
            || (connection.names_others && h1::named_by_connection(parsed.headers, h.name))
            // Transfer-Encoding overrides Content-Length, which must not
            // reach the client next to a re-chunked body.
            || (chunked && h.name.eq_ignore_ascii_case("content-length"))
        {
            continue;
        }
        h1::write_header(out, h.name.as_bytes(), h.value);
    }
    if !dated {
        h1::write_date(out);
    }
    Ok(Some((len, Some((status, framing, reusable)))))
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
    /// Sends `req` with `body` to `target` on a pooled connection, or a
    /// new one; the answer's head goes into `head_out` (see
    /// [`Answer`]). The error says what failed (a 502).
    pub async fn send<B: RequestBody>(
        self: &Arc<Self>,
        target: SocketAddr,
        req: &Outgoing<'_>,
        body: &mut B,
        head_out: &mut Vec<u8>,
    ) -> Result<Answer, String> {
        for _ in 0..MAX_STALE_TRIES {
            let Some(mut conn) = self.checkout(target) else {
                break;
            };
            match conn.exchange(req, body, true, head_out).await {
                Ok(head) => return Ok(self.wrap(target, conn, head)),
                Err(ExchangeError::Stale(e)) => {
                    tracing::debug!(%target, error = %e, "a pooled connection was closed; trying another");
                }
                Err(ExchangeError::Failed(e)) => return Err(e),
            }
        }
        let mut conn = connect(target).await?;
        match conn.exchange(req, body, false, head_out).await {
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
        (status, framing, reusable): Head,
    ) -> Answer {
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
        Answer { status, body }
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
/// asked for; the connection goes back to the pool once the body has been
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

    /// Whether the body's length is not known from its head.
    pub fn is_streamed(&self) -> bool {
        self.framing.is_streamed()
    }

    /// Appends body data to `out` (as chunks if `chunked`): all that has
    /// been read already, or else what the next read brings. `Ok(true)`
    /// once the whole body is in `out`.
    pub async fn fill(&mut self, out: &mut Vec<u8>, chunked: bool) -> std::io::Result<bool> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Ok(true);
            };
            let mut added = false;
            loop {
                match self.framing.next_data(&mut conn.buf) {
                    Ok(Some(n)) => {
                        if chunked {
                            h1::write_chunk(out, &conn.buf[..n]);
                        } else {
                            out.extend_from_slice(&conn.buf[..n]);
                        }
                        conn.buf.advance(n);
                        added = true;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // A broken body leaves the connection unusable.
                        self.conn = None;
                        return Err(e);
                    }
                }
            }
            if self.framing.is_done() {
                self.release();
                return Ok(true);
            }
            if added {
                return Ok(false);
            }
            match poll_fn(|cx| conn.poll_fill(cx)).await {
                Ok(0) if self.framing == Framing::UntilClose => {
                    self.conn = None;
                    return Ok(true);
                }
                Ok(0) => {
                    self.conn = None;
                    return Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the target closed the connection within the response body",
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::{self, ClientConn, Forwarded};
    use http::{Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use hyper::body::Frame;
    use hyper_util::rt::TokioIo;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A front server whose every request goes through `pool` to `target`,
    /// on the listeners' client side ([`crate::front`]); a failure is a 502
    /// saying why.
    async fn via_pool(pool: Arc<TargetPool>, target: SocketAddr) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.11.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((s, peer)) = listener.accept().await else {
                    return;
                };
                let pool = pool.clone();
                tokio::spawn(async move {
                    let ops = std::sync::atomic::AtomicU64::new(0);
                    let mut conn = ClientConn::new(s, &ops);
                    let ip = peer.ip().to_string();
                    let fwd = Forwarded {
                        client_ip: ip.as_bytes(),
                        port: b"80",
                    };
                    while let Some(raw) = conn.read_head().await {
                        let mut headers = [httparse::EMPTY_HEADER; front::MAX_HEADERS];
                        let req = match conn.parse(&raw, &mut headers) {
                            Ok(req) => req,
                            Err(status) => return conn.refuse(status).await,
                        };
                        let keep = match conn.send(&pool, target, &req, "x", &fwd).await {
                            Ok(answer) => conn.relay(&req, answer.body).await,
                            Err(e) => conn.respond(Some(&req), 502, b"", e.as_bytes()).await,
                        };
                        if !keep {
                            return;
                        }
                    }
                });
            }
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
        let front = via_pool(pool.clone(), addr).await;
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
        let front = via_pool(pool.clone(), addr).await;
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

    fn never(_: &str) -> bool {
        false
    }

    /// A target's answer without `Date` gets the node's (RFC 9110 §6.6.1);
    /// one with a `Date` keeps it, and gets no second.
    #[test]
    fn a_date_is_added_only_when_the_target_sent_none() {
        let dates = |head: &[u8]| {
            let mut out = Vec::new();
            let (len, parsed) = parse_head(head, false, &mut out).unwrap().unwrap();
            assert_eq!((len, parsed.map(|p| p.0)), (head.len(), Some(200)));
            let out = String::from_utf8(out).unwrap();
            out.lines()
                .filter_map(|l| l.split_once(": "))
                .filter(|(name, _)| name.eq_ignore_ascii_case("date"))
                .map(|(_, value)| value.to_string())
                .collect::<Vec<_>>()
        };
        let added = dates(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(added.len(), 1, "{added:?}");
        let at = httpdate::parse_http_date(&added[0]).unwrap();
        let off = at
            .duration_since(std::time::SystemTime::now() - Duration::from_secs(2))
            .unwrap();
        assert!(off <= Duration::from_secs(3), "{added:?}");
        let theirs = "Tue, 01 Jan 2030 00:00:00 GMT";
        assert_eq!(
            dates(
                format!("HTTP/1.1 200 OK\r\nDate: {theirs}\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes()
            ),
            vec![theirs.to_string()]
        );
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
        let front = via_pool(Arc::new(TargetPool::default()), target).await;
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
        let front = via_pool(Arc::new(TargetPool::default()), target).await;
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
        let front = via_pool(Arc::new(TargetPool::default()), target).await;
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
            text.contains("content-length: 10\r\n") && text.contains("\r\n\r\nfixed body"),
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
        let front = via_pool(Arc::new(TargetPool::default()), target).await;
        let (status, _) = one(front, get("GET")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);

        let (target, _) = scripted(
            |_| b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial".to_vec(),
            |_| true,
        )
        .await;
        let front = via_pool(Arc::new(TargetPool::default()), target).await;
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
        let front = via_pool(pool.clone(), target).await;
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

    /// `request` written on a new connection to `front`, and all that comes
    /// back until the front closes the connection.
    async fn raw(front: SocketAddr, request: &[u8]) -> String {
        use tokio::io::AsyncReadExt;
        let mut s = TcpStream::connect(front).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
            .await
            .expect("the front closes the connection")
            .unwrap();
        String::from_utf8_lossy(&got).into_owned()
    }

    /// The client side as clients expect it: pipelined requests answered in
    /// order; a body of unknown length chunked to an HTTP/1.1 client and
    /// ended by the close for an HTTP/1.0 one; HTTP/1.0 keep-alive only
    /// when asked; `Expect: 100-continue` answered before the body is
    /// read; bad heads refused with 400 or 431 and the connection closed;
    /// a request body left unread by an answer of the load balancer's own
    /// read and dropped, so the connection serves on.
    #[tokio::test]
    async fn clients_get_http_1_1_as_they_expect() {
        use tokio::io::AsyncReadExt;
        let (target, _) = scripted(
            |head| {
                if head.starts_with("get /stream") {
                    b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec()
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
                }
            },
            |head| head.starts_with("get /stream"),
        )
        .await;
        let front = via_pool(Arc::new(TargetPool::default()), target).await;

        let text = raw(
            front,
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{text}");
        assert_eq!(text.matches("\r\n\r\nok").count(), 2, "{text}");
        assert!(
            text.ends_with("connection: close\r\n\r\nb\r\nuntil close\r\n0\r\n\r\n"),
            "{text}"
        );
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");

        let text = raw(front, b"GET /stream HTTP/1.0\r\n\r\n").await;
        assert!(text.ends_with("\r\n\r\nuntil close"), "{text}");
        assert!(!text.contains("transfer-encoding"), "{text}");

        let text = raw(
            front,
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
              GET / HTTP/1.0\r\n\r\n",
        )
        .await;
        assert_eq!(text.matches("\r\n\r\nok").count(), 2, "{text}");
        assert!(
            text.contains("connection: keep-alive\r\n") && text.contains("connection: close\r\n"),
            "{text}"
        );

        // Expect: 100-continue: the interim answer comes before the body
        // is sent.
        let mut s = TcpStream::connect(front).await.unwrap();
        s.write_all(
            b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
        let mut interim = [0u8; 25];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut interim))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        s.write_all(b"bodyGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        let rest = String::from_utf8_lossy(&rest);
        assert_eq!(rest.matches("\r\n\r\nok").count(), 2, "{rest}");

        let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..101 {
            many.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let text = raw(front, &many).await;
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert_eq!(
            text.matches("HTTP/1.1").count(),
            1,
            "closed after it: {text}"
        );
        // A head as large as allowed without ending, and bytes that are not
        // HTTP at all (a TLS ClientHello), are refused at once.
        let mut long = b"GET /".to_vec();
        long.resize(64 * 1024, b'a');
        let text = raw(front, &long).await;
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        let text = raw(front, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").await;
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
        // A head sent a byte at a time is read whole.
        let mut s = TcpStream::connect(front).await.unwrap();
        s.set_nodelay(true).unwrap();
        for b in b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" {
            s.write_all(&[*b]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.starts_with("HTTP/1.1 200 OK") && got.ends_with("ok"),
            "{got}"
        );
        let text = raw(front, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").await;
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
        let text = raw(front, b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n").await;
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");

        // Nothing listens at the target: a 502 of the front's own, and the
        // request body is read past so the next request is answered too.
        let closed = {
            let l = tokio::net::TcpListener::bind("127.0.11.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let front = via_pool(Arc::new(TargetPool::default()), closed).await;
        let text = raw(
            front,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
              POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
              GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(
            text.matches("HTTP/1.1 502 Bad Gateway\r\n").count(),
            3,
            "{text}"
        );
    }
}
