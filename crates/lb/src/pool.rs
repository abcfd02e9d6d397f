//! Keep-alive connections to targets, pooled by target address and shared
//! by every config version (a change keeps the warm connections).
//!
//! A thin pool over hyper's connection API rather than hyper-util's
//! general-purpose client: a proxy knows its request's target address
//! already, and each request skips the client's URI handling, pool keying
//! and connect-or-reuse race.
//!
//! A target connection is not a task of its own: the client connection's
//! task that uses it drives it, while waiting for the response headers and
//! while streaming the response body ([`PooledBody`]). A request thus goes
//! out and its answer comes back without a hand-off between tasks (nginx's
//! model: one event loop per connection pair). An idle connection in the
//! pool is driven by no one; the next request drives it first, which also
//! tells whether the target closed it meanwhile.
//!
//! A connection goes back to the pool when its response body has been read
//! to the end; one whose body was dropped early is closed (hyper cannot
//! reuse it).

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
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

/// One HTTP/1.1 connection to a target: the handle requests are sent on
/// and the connection state machine, driven by whoever holds it.
struct TargetConn {
    sender: SendRequest<Incoming>,
    conn: Connection<TokioIo<TcpStream>, Incoming>,
    /// The connection ended (closed by either side or broken); it is not
    /// driven again.
    ended: bool,
}

/// How an exchange on a connection failed.
enum ExchangeError {
    /// Nothing was sent (the connection was closing): the request may go
    /// on another connection.
    Unsent(Box<Request<Incoming>>),
    /// The request was sent (or partly): a 502.
    Failed(String),
}

impl TargetConn {
    /// Lets the connection do its reading and writing; `true` once it has
    /// ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.ended && Pin::new(&mut self.conn).poll(cx).is_ready() {
            self.ended = true;
        }
        self.ended
    }

    fn is_reusable(&self) -> bool {
        !self.ended && !self.sender.is_closed()
    }

    /// Sends `req` and waits for the response headers, driving the
    /// connection meanwhile.
    async fn exchange(
        &mut self,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, ExchangeError> {
        let ready = poll_fn(|cx| {
            if self.drive(cx) {
                return Poll::Ready(false);
            }
            self.sender.poll_ready(cx).map(|r| r.is_ok())
        })
        .await;
        if !ready {
            return Err(ExchangeError::Unsent(Box::new(req)));
        }
        let mut response = pin!(self.sender.try_send_request(req));
        let answer = poll_fn(|cx| {
            let ended = self.drive(cx);
            match response.as_mut().poll(cx) {
                Poll::Pending if ended => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
                Poll::Ready(r) => Poll::Ready(Some(r)),
            }
        })
        .await;
        match answer {
            Some(Ok(resp)) => Ok(resp),
            Some(Err(mut e)) => match e.take_message() {
                Some(req) => Err(ExchangeError::Unsent(Box::new(req))),
                None => Err(ExchangeError::Failed(e.into_error().to_string())),
            },
            None => Err(ExchangeError::Failed(
                "the target connection ended without a response".into(),
            )),
        }
    }
}

struct Idle {
    conn: Box<TargetConn>,
    since: Instant,
}

impl Idle {
    fn is_fresh(&self) -> bool {
        self.since.elapsed() < POOL_IDLE && self.conn.is_reusable()
    }
}

#[derive(Default)]
pub struct TargetPool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

impl TargetPool {
    /// Sends `req` (origin-form URI, Host set) to `target` on a pooled
    /// connection, or a new one. The error says what failed (a 502).
    pub async fn send(
        self: &Arc<Self>,
        target: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Result<Response<PooledBody>, String> {
        for _ in 0..MAX_STALE_TRIES {
            let Some(mut conn) = self.checkout(target) else {
                break;
            };
            match conn.exchange(req).await {
                Ok(resp) => return Ok(self.wrap(target, conn, resp)),
                // The connection was closing; try another.
                Err(ExchangeError::Unsent(r)) => req = *r,
                Err(ExchangeError::Failed(e)) => return Err(e),
            }
        }
        let mut conn = connect(target).await?;
        match conn.exchange(req).await {
            Ok(resp) => Ok(self.wrap(target, conn, resp)),
            Err(ExchangeError::Unsent(_)) => {
                Err(format!("the new connection to {target} closed at once"))
            }
            Err(ExchangeError::Failed(e)) => Err(e),
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
        // Driving an idle connection reads a close the target sent; nothing
        // waits on it, so no one needs waking.
        let mut cx = Context::from_waker(Waker::noop());
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        for list in idle.values_mut() {
            list.retain_mut(|i| !i.conn.drive(&mut cx) && i.is_fresh());
        }
        idle.retain(|_, list| !list.is_empty());
    }

    fn give_back(&self, target: SocketAddr, conn: Box<TargetConn>) {
        if !conn.is_reusable() {
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
        resp: Response<Incoming>,
    ) -> Response<PooledBody> {
        let (parts, inner) = resp.into_parts();
        let done = inner.is_end_stream();
        let mut body = PooledBody {
            inner: Some(inner),
            body: done,
            conn: Some(conn),
            pool: Arc::clone(self),
            target,
        };
        if done {
            body.release();
        }
        Response::from_parts(parts, body)
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
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // Boxed once: it moves between the pool and response bodies.
    Ok(Box::new(TargetConn {
        sender,
        conn,
        ended: false,
    }))
}

/// A target's response body: drives its connection while it is read, and
/// returns the connection to the pool once read to the end.
pub struct PooledBody {
    inner: Option<Incoming>,
    /// Whether the body ended (nothing more to read).
    body: bool,
    /// The connection the body comes on, until it goes back to the pool.
    conn: Option<Box<TargetConn>>,
    pool: Arc<TargetPool>,
    target: SocketAddr,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(self.target, conn);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        // The connection reads the body into `inner`; what it has read
        // before ending is still read from `inner` below.
        if let Some(conn) = this.conn.as_mut() {
            conn.drive(cx);
        }
        let r = Pin::new(&mut *inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => {
                this.body = true;
                this.release();
            }
            Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => {
                this.body = true;
                this.release();
            }
            // A broken body: the connection is not reusable.
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body || self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
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
                    let resp = pool
                        .send(target, req)
                        .await
                        .map_err(std::io::Error::other)?;
                    Ok::<_, std::io::Error>(resp)
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
}
