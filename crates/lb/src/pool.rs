//! Keep-alive connections to targets, pooled by target address and shared
//! by every config version (a change keeps the warm connections).
//!
//! A thin pool over hyper's connection API rather than hyper-util's
//! general-purpose client: a proxy knows its request's target address
//! already, and each request skips the client's URI handling, pool keying
//! and connect-or-reuse race. A connection goes back to the pool when its
//! response body has been read to the end; one whose body was dropped
//! early is closed (hyper cannot reuse it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
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

struct Idle {
    sender: SendRequest<Incoming>,
    since: Instant,
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
            let Some(mut sender) = self.checkout(target) else {
                break;
            };
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.wrap(target, sender, resp)),
                Err(mut e) => match e.take_message() {
                    // Not sent: the connection was closing; try another.
                    Some(r) => req = r,
                    None => return Err(e.into_error().to_string()),
                },
            }
        }
        let mut sender = connect(target).await?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        Ok(self.wrap(target, sender, resp))
    }

    fn checkout(&self, target: SocketAddr) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&target)?;
        while let Some(i) = list.pop() {
            if i.since.elapsed() < POOL_IDLE && !i.sender.is_closed() {
                return Some(i.sender);
            }
        }
        None
    }

    /// Closes connections idle longer than the pool keeps them, for every
    /// target (also those no version names any more). Called periodically.
    pub fn prune(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        for list in idle.values_mut() {
            list.retain(|i| i.since.elapsed() < POOL_IDLE && !i.sender.is_closed());
        }
        idle.retain(|_, list| !list.is_empty());
    }

    fn give_back(&self, target: SocketAddr, sender: SendRequest<Incoming>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(target).or_default();
        list.retain(|i| i.since.elapsed() < POOL_IDLE && !i.sender.is_closed());
        if list.len() < MAX_IDLE_PER_TARGET {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    fn wrap(
        self: &Arc<Self>,
        target: SocketAddr,
        sender: SendRequest<Incoming>,
        resp: Response<Incoming>,
    ) -> Response<PooledBody> {
        let (parts, inner) = resp.into_parts();
        let done = inner.is_end_stream();
        let mut body = PooledBody {
            inner: Some(inner),
            body: done,
            giveback: Some((Arc::clone(self), target, sender)),
        };
        if done {
            body.release();
        }
        Response::from_parts(parts, body)
    }
}

async fn connect(target: SocketAddr) -> Result<SendRequest<Incoming>, String> {
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
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%target, error = %e, "target connection ended");
        }
    });
    Ok(sender)
}

/// A target's response body that returns its connection to the pool once
/// read to the end.
pub struct PooledBody {
    inner: Option<Incoming>,
    /// Whether the body ended (nothing more to read).
    body: bool,
    giveback: Option<(Arc<TargetPool>, SocketAddr, SendRequest<Incoming>)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((pool, target, sender)) = self.giveback.take() {
            pool.give_back(target, sender);
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
            Poll::Ready(Some(Err(_))) => this.giveback = None,
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

    /// A real keep-alive target: one connection serves every request, the
    /// pool hands it back after each body, and prune keeps a fresh one.
    #[tokio::test]
    async fn connections_are_reused_after_the_body_ends() {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let a = accepted.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
        // Requests need an Incoming body: take them from a real server side.
        let pool = Arc::new(TargetPool::default());
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let p = pool.clone();
        let proxy = tokio::spawn(async move {
            let (s, _) = front.accept().await.unwrap();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let p = p.clone();
                async move {
                    let resp = p.send(addr, req).await.map_err(std::io::Error::other)?;
                    Ok::<_, std::io::Error>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
        let stream = TcpStream::connect(front_addr).await.unwrap();
        let (mut client, conn) = hyper::client::conn::http1::handshake::<
            _,
            http_body_util::Empty<Bytes>,
        >(TokioIo::new(stream))
        .await
        .unwrap();
        tokio::spawn(conn);
        for _ in 0..5 {
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
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"hello");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        pool.prune();
        assert_eq!(pool.idle.lock().unwrap().get(&addr).map(Vec::len), Some(1));
        server.abort();
        proxy.abort();
    }
}
