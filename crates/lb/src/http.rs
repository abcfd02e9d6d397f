//! Application load balancer listeners: HTTP/1.1 with keep-alive to
//! clients (hyper's server) and pooled keep-alive connections to targets
//! ([`crate::pool`], one pool per worker thread, kept across config
//! versions so a change keeps the warm connections).
//!
//! Per request, the phases of a proxy over one snapshot of the table:
//! find the listener → match a rule → pick a target group (weights,
//! `AWSALBTG`) → pick a target (`AWSALB`, round robin over healthy targets,
//! slow start) → forward with `X-Forwarded-*` → count.
//!
//! Status codes the load balancer makes itself, as ALB: 503 when a target
//! group has no target that takes requests, 502 when the target connection
//! fails or breaks, 504 when the target has not answered within the load
//! balancer's idle timeout.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::matching::RequestFacts;
use crate::pool::{ExtraHeader, TargetPool};
use crate::table::{Route, Target};
use crate::Shared;

/// A response body: a target's, or one the load balancer makes itself (an
/// enum rather than a boxed body: no allocation per response).
pub enum Body {
    Target(crate::pool::PooledBody),
    Local(Full<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Body::Target(b) => Pin::new(b).poll_frame(cx),
            Body::Local(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Target(b) => b.is_end_stream(),
            Body::Local(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Target(b) => b.size_hint(),
            Body::Local(b) => b.size_hint(),
        }
    }
}

/// Serves one client connection until it closes, idles out or its listener
/// is removed (the task is then aborted).
///
/// The idle timeout is ALB's: no byte read or written for that long, with no
/// request waiting for its target. It is kept by one timer per connection
/// that looks at an activity counter, rather than hyper's header-read
/// timeout, which boxes and registers a timer for every request. The same
/// timer ends a request's wait for its target (504 after the idle timeout;
/// 502 once the target's deregistration delay is over), so a request
/// registers no timer and no watcher of its own: while a request waits it
/// looks every eighth of the idle timeout (at most every second),
/// otherwise every quarter (at most every 5 s).
pub async fn serve_connection(
    shared: Arc<Shared>,
    pool: Arc<TargetPool>,
    stream: TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    let idle = shared
        .table
        .load()
        .listeners
        .get(&local)
        .map(|l| idle_timeout(l.config.idle_timeout_secs))
        .unwrap_or(Duration::from_secs(60));
    let client = Arc::new(Client::new(local, peer));
    let io = ActivityIo {
        inner: TokioIo::new(stream),
        client: Arc::clone(&client),
    };
    let for_service = Arc::clone(&client);
    let service = hyper::service::service_fn(move |req| {
        let shared = Arc::clone(&shared);
        let pool = Arc::clone(&pool);
        let client = Arc::clone(&for_service);
        async move {
            let _busy = Busy::new(&client.activity);
            Ok::<_, Infallible>(handle(&shared, &pool, &client, req).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let (coarse, fine) = (
        (idle / 4).min(Duration::from_secs(5)),
        (idle / 8).min(Duration::from_secs(1)),
    );
    let activity = &client.activity;
    let mut tick = std::pin::pin!(tokio::time::sleep(coarse));
    let mut seen = activity.count();
    let mut last = Instant::now();
    let result = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = conn.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        while tick.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let busy = activity.busy.load(Ordering::Relaxed) > 0;
            let count = activity.count();
            if count != seen || busy {
                (seen, last) = (count, now);
            } else if now.duration_since(last) >= idle {
                tracing::debug!(%peer, "client connection idle: closed");
                return Poll::Ready(Ok(()));
            }
            if busy {
                activity.check_wait(now, idle);
            }
            tick.as_mut().reset(now + if busy { fine } else { coarse });
        }
        Poll::Pending
    })
    .await;
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "client connection ended");
    }
}

/// A client connection's activity, for its idle timeout: reads and writes
/// done, requests being answered, and the request waiting for its target.
#[derive(Default)]
struct Activity {
    /// Bumped by the connection's task only (plain load and store).
    ops: AtomicU64,
    busy: AtomicU32,
    /// The request waiting for its target's answer (HTTP/1.1 answers one
    /// request at a time): since when, and the target.
    waiting: Mutex<Option<(Instant, Arc<Target>)>>,
    /// Why the connection's timer ended that wait ([`Cut`]), 0 if it did not.
    cut: AtomicU8,
    /// The waiting request's task, woken when `cut` is set.
    waker: AtomicWaker,
}

/// Why a request's wait for its target was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// No response head within the idle timeout (504).
    TimedOut = 1,
    /// The target's deregistration delay is over (502).
    TargetClosed = 2,
}

impl Activity {
    fn count(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    fn bump(&self) {
        self.ops.store(
            self.ops.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Arc<Target>)>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection's timer: ends the waiting request's wait if it is
    /// over.
    fn check_wait(&self, now: Instant, idle: Duration) {
        let cut = match &*self.waiting() {
            Some((since, _)) if now.duration_since(*since) >= idle => Cut::TimedOut,
            Some((_, target)) if target.is_closed() => Cut::TargetClosed,
            _ => return,
        };
        self.cut.store(cut as u8, Ordering::Relaxed);
        self.waker.wake();
    }

    /// Waits with `send` for `target`'s answer, until the connection's
    /// timer ends the wait; gives the target back (always: `None` cannot
    /// happen, as only this wait takes it).
    async fn wait_for<T>(
        &self,
        target: Arc<Target>,
        send: impl Future<Output = T>,
    ) -> (Result<T, Cut>, Option<Arc<Target>>) {
        let waiting = Waiting::start(self, target);
        let mut send = std::pin::pin!(send);
        let outcome = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = send.as_mut().poll(cx) {
                return Poll::Ready(Ok(r));
            }
            self.waker.register(cx.waker());
            match self.cut.load(Ordering::Relaxed) {
                0 => Poll::Pending,
                1 => Poll::Ready(Err(Cut::TimedOut)),
                _ => Poll::Ready(Err(Cut::TargetClosed)),
            }
        })
        .await;
        (outcome, waiting.finish())
    }
}

/// A request waiting for its target; ends the wait when dropped.
struct Waiting<'a>(&'a Activity);

impl<'a> Waiting<'a> {
    fn start(activity: &'a Activity, target: Arc<Target>) -> Waiting<'a> {
        activity.cut.store(0, Ordering::Relaxed);
        *activity.waiting() = Some((Instant::now(), target));
        Waiting(activity)
    }

    fn finish(self) -> Option<Arc<Target>> {
        self.0.waiting().take().map(|(_, target)| target)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting().take();
    }
}

/// A request being answered (also when its future is dropped).
struct Busy<'a>(&'a Activity);

impl<'a> Busy<'a> {
    fn new(a: &'a Activity) -> Busy<'a> {
        a.busy.fetch_add(1, Ordering::Relaxed);
        Busy(a)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The client's stream, counting reads and writes that moved bytes.
struct ActivityIo {
    inner: TokioIo<TcpStream>,
    client: Arc<Client>,
}

impl hyper::rt::Read for ActivityIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.client.activity.bump();
        }
        r
    }
}

impl hyper::rt::Write for ActivityIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.client.activity.bump();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if r.is_ready() {
            self.client.activity.bump();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One client connection: its two ends, and the `X-Forwarded-*` values
/// that say so, made once rather than per request.
pub struct Client {
    /// The listener's address.
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// The client's address (`X-Forwarded-For` when the request has none).
    forwarded_for: HeaderValue,
    /// The listener's port (`X-Forwarded-Port`).
    forwarded_port: HeaderValue,
    activity: Activity,
}

impl Client {
    pub fn new(local: SocketAddr, peer: SocketAddr) -> Client {
        let ip = peer.ip().to_canonical().to_string();
        Client {
            local,
            peer,
            forwarded_for: HeaderValue::from_str(&ip)
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            forwarded_port: HeaderValue::from(local.port()),
            activity: Activity::default(),
        }
    }
}

fn idle_timeout(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs.max(1)))
}

/// One request through the listener at `local`.
pub async fn handle(
    shared: &Shared,
    pool: &Arc<TargetPool>,
    client: &Client,
    req: Request<Incoming>,
) -> Response<Body> {
    let (local, peer) = (client.local, client.peer);
    let table = shared.table.load_full();
    let Some(listener) = table.listeners.get(&local) else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Temporarily Unavailable",
        );
    };
    listener.counters.request();
    let facts = RequestFacts {
        method: req.method().as_str(),
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
        source: peer.ip(),
    };
    let route = listener.route(&facts);
    let (sticky_group, sticky_target) = stickiness_cookies(req.headers());
    match route {
        Route::Fixed {
            status,
            content_type,
            body,
        } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            let ct = content_type
                .as_deref()
                .unwrap_or("text/plain; charset=utf-8");
            let mut resp = Response::new(full(body.clone()));
            *resp.status_mut() = status;
            if let Ok(v) = HeaderValue::from_str(ct) {
                resp.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            resp
        }
        Route::Redirect { .. } => {
            let location = redirect_location(route, &facts, local.port());
            let status = match route {
                Route::Redirect { status: 301, .. } => StatusCode::MOVED_PERMANENTLY,
                _ => StatusCode::FOUND,
            };
            let mut resp = Response::new(full(String::new()));
            *resp.status_mut() = status;
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Route::Unavailable => {
            listener.counters.elb_5xx();
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Temporarily Unavailable",
            )
        }
        Route::Forward {
            stickiness_secs,
            destinations,
            ..
        } => {
            let Some(dest) = route.destination(sticky_group.as_deref()) else {
                listener.counters.elb_5xx();
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "503 Service Temporarily Unavailable",
                );
            };
            dest.counters.request();
            let group_sticky = dest.group.config.stickiness_secs;
            let target = match dest
                .group
                .pick(sticky_target.as_deref().filter(|_| group_sticky.is_some()))
            {
                Ok(t) => t,
                Err(_) => {
                    listener.counters.elb_5xx();
                    dest.counters.elb_5xx();
                    return plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "503 Service Temporarily Unavailable",
                    );
                }
            };
            let target_addr = target.addr;
            let Some((upstream, prior_for)) = upstream_request(req, &target.authority) else {
                return plain(StatusCode::BAD_REQUEST, "400 Bad Request");
            };
            // X-Forwarded-For: the client's address after what the request
            // brought (RFC 7239's order); -Proto and -Port: this listener's.
            let ip = client.forwarded_for.as_bytes();
            let with_prior;
            let forwarded_for: &[&[u8]] = match &prior_for {
                Some(prior) => {
                    with_prior = [prior.as_bytes(), b", ", ip];
                    &with_prior
                }
                None => std::slice::from_ref(&ip),
            };
            let extra = [
                ExtraHeader("x-forwarded-for", forwarded_for),
                ExtraHeader("x-forwarded-proto", &[b"http"]),
                ExtraHeader("x-forwarded-port", &[client.forwarded_port.as_bytes()]),
            ];
            let sent = Instant::now();
            let (outcome, target) = client
                .activity
                .wait_for(target, pool.send(target_addr, upstream, &extra))
                .await;
            let answer = match (outcome, &target) {
                (_, None) => Answer::Failed("the request's target was lost".into()),
                (Ok(Ok(resp)), _) => Answer::Response(resp),
                (Ok(Err(e)), _) => Answer::Failed(e),
                (Err(Cut::TimedOut), _) => Answer::TimedOut,
                // The target's deregistration delay ended mid-request.
                (Err(Cut::TargetClosed), _) => {
                    Answer::Failed("the target's deregistration delay ended".into())
                }
            };
            match answer {
                Answer::Response(resp) => {
                    let (status, elapsed) = (resp.status().as_u16(), sent.elapsed());
                    dest.counters.target_response(status, elapsed);
                    listener.counters.target_response(status, elapsed);
                    let (mut parts, body) = resp.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    if let (Some(secs), Some(target)) = (group_sticky, &target) {
                        set_cookie(&mut parts.headers, "AWSALB", &target.cookie, secs);
                    }
                    if let (Some(secs), true) = (stickiness_secs, destinations.len() > 1) {
                        set_cookie(&mut parts.headers, "AWSALBTG", &dest.group.cookie, *secs);
                    }
                    Response::from_parts(parts, Body::Target(body))
                }
                Answer::Failed(e) => {
                    tracing::debug!(target = %target_addr, error = %e, "target request failed");
                    listener.counters.elb_5xx();
                    dest.counters.elb_5xx();
                    plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway")
                }
                Answer::TimedOut => {
                    listener.counters.elb_5xx();
                    dest.counters.elb_5xx();
                    plain(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out")
                }
            }
        }
    }
}

/// How a forwarded request ended.
enum Answer {
    Response(Response<crate::pool::PooledBody>),
    /// Connecting or talking to the target failed (502).
    Failed(String),
    /// No response headers within the idle timeout (504).
    TimedOut,
}

/// The request as the target gets it: origin-form URI, hop-by-hop headers
/// removed, `X-Forwarded-For/-Proto/-Port` removed (the caller has them
/// written after the others), with the `X-Forwarded-For` value the client
/// sent, if any. `None` if the request's path cannot form a URI.
fn upstream_request(
    req: Request<Incoming>,
    target: &http::uri::Authority,
) -> Option<(Request<Incoming>, Option<HeaderValue>)> {
    let (mut parts, body) = req.into_parts();
    // Origin-form on the wire; the Host header says which site (HTTP/1.0
    // clients may not send one: then the target's address).
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"))
            .as_str()
            .parse()
            .ok()?;
    }
    if !parts.headers.contains_key(header::HOST) {
        parts
            .headers
            .insert(header::HOST, HeaderValue::from_str(target.as_str()).ok()?);
    }
    parts.version = http::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    // Most requests have none: one pass over the names first.
    let mut prior_for = None;
    let h = &mut parts.headers;
    if h.keys().any(|k| k.as_str().starts_with("x-forwarded-")) {
        prior_for = h
            .remove(X_FORWARDED_FOR)
            .filter(|v| !v.as_bytes().trim_ascii().is_empty());
        h.remove(X_FORWARDED_PROTO);
        h.remove(X_FORWARDED_PORT);
    }
    Some((Request::from_parts(parts, body), prior_for))
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Headers meaningful for one connection only (RFC 9110 §7.6.1), and those
/// named by `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one pass over the names instead of a lookup
    // per hop-by-hop name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(n);
    }
}

fn is_hop_by_hop(n: &HeaderName) -> bool {
    n == header::CONNECTION
        || n == header::TE
        || n == header::TRAILER
        || n == header::TRANSFER_ENCODING
        || n == header::UPGRADE
        || n == header::PROXY_AUTHENTICATE
        || n.as_str() == "keep-alive"
        || n.as_str() == "proxy-connection"
}

/// The values of the `AWSALBTG` and `AWSALB` cookies, if sent.
fn stickiness_cookies(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let mut group = None;
    let mut target = None;
    for v in headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for pair in v.split(';') {
            match pair.trim().split_once('=') {
                Some(("AWSALBTG", val)) => group = Some(val.to_string()),
                Some(("AWSALB", val)) => target = Some(val.to_string()),
                _ => {}
            }
        }
    }
    (group, target)
}

fn set_cookie(headers: &mut HeaderMap, name: &str, value: &str, secs: u32) {
    if let Ok(v) = HeaderValue::from_str(&format!("{name}={value}; Max-Age={secs}; Path=/")) {
        headers.append(header::SET_COOKIE, v);
    }
}

/// ELBv2's redirect: each part is the configured value with `#{protocol}`,
/// `#{host}`, `#{port}`, `#{path}` (without its leading `/`, so the default
/// `/#{path}` keeps the path) and `#{query}` replaced by the request's; the
/// port is left out when it is the protocol's default.
fn redirect_location(route: &Route, req: &RequestFacts<'_>, listener_port: u16) -> String {
    let Route::Redirect {
        protocol,
        host,
        port,
        path,
        query,
        ..
    } = route
    else {
        return String::new();
    };
    let req_host = req.host().unwrap_or("").to_string();
    let req_port = listener_port.to_string();
    let req_path = req.path.strip_prefix('/').unwrap_or(req.path).to_string();
    let req_query = req.query.unwrap_or("").to_string();
    let subst = |s: &str| {
        s.replace("#{protocol}", "HTTP")
            .replace("#{host}", &req_host)
            .replace("#{port}", &req_port)
            .replace("#{path}", &req_path)
            .replace("#{query}", &req_query)
    };
    let proto = subst(protocol).to_ascii_lowercase();
    let host = subst(host);
    let port = subst(port);
    let mut path = subst(path);
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let query = subst(query);
    let default_port = matches!(
        (proto.as_str(), port.as_str()),
        ("http", "80") | ("https", "443")
    );
    let mut location = format!("{proto}://{host}");
    if !default_port && !port.is_empty() {
        location.push(':');
        location.push_str(&port);
    }
    location.push_str(&path);
    if !query.is_empty() {
        location.push('?');
        location.push_str(&query);
    }
    location
}

fn full(s: String) -> Body {
    Body::Local(Full::new(Bytes::from(s)))
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut resp = Response::new(full(format!("{text}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(protocol: &str, host: &str, port: &str, path: &str, query: &str) -> Route {
        Route::Redirect {
            protocol: protocol.into(),
            host: host.into(),
            port: port.into(),
            path: path.into(),
            query: query.into(),
            status: 301,
        }
    }

    #[test]
    fn redirect_locations() {
        let mut h = HeaderMap::new();
        h.insert("host", "example.com:8080".parse().unwrap());
        let facts = RequestFacts {
            method: "GET",
            path: "/old",
            query: Some("a=1"),
            headers: &h,
            source: "127.0.0.1".parse().unwrap(),
        };
        let r = redirect("HTTPS", "#{host}", "443", "/#{path}", "#{query}");
        assert_eq!(
            redirect_location(&r, &facts, 8080),
            "https://example.com/old?a=1"
        );
        let r = redirect("#{protocol}", "#{host}", "#{port}", "/new", "#{query}&b=2");
        assert_eq!(
            redirect_location(&r, &facts, 8080),
            "http://example.com:8080/new?a=1&b=2"
        );
        let r = redirect("HTTP", "other.example", "80", "/new/#{path}", "");
        assert_eq!(
            redirect_location(&r, &facts, 8080),
            "http://other.example/new/old"
        );
    }

    #[test]
    fn cookies_and_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=b; AWSALB=t1; AWSALBTG=g1".parse().unwrap());
        assert_eq!(
            stickiness_cookies(&h),
            (Some("g1".into()), Some("t1".into()))
        );
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(
            h.get("x-secret").is_none()
                && h.get("connection").is_none()
                && h.get("keep-alive").is_none()
        );
        assert!(h.get("cookie").is_some());
    }
}
