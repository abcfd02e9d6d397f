//! Application load balancer listeners: HTTP/1.1 with keep-alive to
//! clients ([`crate::front`]) and pooled keep-alive connections to targets
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

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::front::{self, ClientConn, Forwarded, Request, TEXT};
use crate::matching::RequestFacts;
use crate::pool::TargetPool;
use crate::table::{Route, Target};
use crate::Shared;

/// Serves one client connection until it closes, idles out or its listener
/// is removed (the task is then aborted).
///
/// The idle timeout is ALB's: no byte read or written for that long, with no
/// request waiting for its target. It is kept by one timer per connection
/// that looks at an activity counter. The same timer ends a request's wait
/// for its target (504 after the idle timeout; 502 once the target's
/// deregistration delay is over), so a request registers no timer and no
/// watcher of its own: while a request waits it looks every eighth of the
/// idle timeout (at most every second), otherwise every quarter (at most
/// every 5 s).
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
    let client = Client::new(local, peer);
    let mut conn = ClientConn::new(stream, &client.activity.ops);
    let mut serve = std::pin::pin!(serve_requests(&shared, &pool, &client, &mut conn));
    let (coarse, fine) = (
        (idle / 4).min(Duration::from_secs(5)),
        (idle / 8).min(Duration::from_secs(1)),
    );
    let activity = &client.activity;
    let mut tick = std::pin::pin!(tokio::time::sleep(coarse));
    let mut seen = activity.count();
    let mut last = Instant::now();
    std::future::poll_fn(|cx| {
        if serve.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        while tick.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let busy = activity.busy.load(Ordering::Relaxed) > 0;
            let count = activity.count();
            if count != seen || busy {
                (seen, last) = (count, now);
            } else if now.duration_since(last) >= idle {
                tracing::debug!(%peer, "client connection idle: closed");
                return Poll::Ready(());
            }
            if busy {
                activity.check_wait(now, idle);
            }
            tick.as_mut().reset(now + if busy { fine } else { coarse });
        }
        Poll::Pending
    })
    .await;
}

/// Answers the connection's requests in turn until one ends it.
async fn serve_requests(
    shared: &Shared,
    pool: &Arc<TargetPool>,
    client: &Client,
    conn: &mut ClientConn<'_>,
) {
    while let Some(raw) = conn.read_head().await {
        let mut headers = [httparse::EMPTY_HEADER; front::MAX_HEADERS];
        let req = match conn.parse(&raw, &mut headers) {
            Ok(req) => req,
            Err(status) => return conn.refuse(status).await,
        };
        if !handle(shared, pool, client, conn, &req).await {
            return;
        }
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

/// A request being answered, until its answer's head (the idle timeout
/// then applies again while the body is relayed).
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

/// One client connection: its two ends, and the `X-Forwarded-*` values
/// that say so, made once rather than per request.
pub struct Client {
    /// The listener's address.
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// The client's address (`X-Forwarded-For`).
    forwarded_for: String,
    /// The listener's port (`X-Forwarded-Port`).
    forwarded_port: String,
    activity: Activity,
}

impl Client {
    pub fn new(local: SocketAddr, peer: SocketAddr) -> Client {
        Client {
            local,
            peer,
            forwarded_for: peer.ip().to_canonical().to_string(),
            forwarded_port: local.port().to_string(),
            activity: Activity::default(),
        }
    }
}

fn idle_timeout(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs.max(1)))
}

/// One request through the listener at `client.local`, answered on `conn`.
/// Returns whether the connection may serve another request.
async fn handle(
    shared: &Shared,
    pool: &Arc<TargetPool>,
    client: &Client,
    conn: &mut ClientConn<'_>,
    req: &Request<'_>,
) -> bool {
    let busy = Busy::new(&client.activity);
    let (local, peer) = (client.local, client.peer);
    let table = shared.table.load_full();
    let Some(listener) = table.listeners.get(&local) else {
        return local_error(conn, req, 503).await;
    };
    listener.counters.request();
    let facts = RequestFacts {
        method: req.method,
        path: req.path,
        query: req.query,
        headers: req.headers,
        source: peer.ip(),
    };
    let route = listener.route(&facts);
    match route {
        Route::Fixed {
            status,
            content_type,
            body,
        } => {
            let status = if (200..=599).contains(status) {
                *status
            } else {
                200
            };
            let ct = content_type
                .as_deref()
                .unwrap_or("text/plain; charset=utf-8");
            let mut headers = Vec::with_capacity(64);
            crate::h1::write_header(&mut headers, b"content-type", ct.as_bytes());
            conn.respond(Some(req), status, &headers, body.as_bytes())
                .await
        }
        Route::Redirect { status, .. } => {
            let location = redirect_location(route, &facts, local.port());
            let status = if *status == 301 { 301 } else { 302 };
            let mut headers = Vec::with_capacity(64 + location.len());
            crate::h1::write_header(&mut headers, b"location", location.as_bytes());
            conn.respond(Some(req), status, &headers, b"").await
        }
        Route::Unavailable => {
            listener.counters.elb_5xx();
            local_error(conn, req, 503).await
        }
        Route::Forward {
            stickiness_secs,
            destinations,
            ..
        } => {
            let (sticky_group, sticky_target) = stickiness_cookies(req);
            let Some(dest) = route.destination(sticky_group.as_deref()) else {
                listener.counters.elb_5xx();
                return local_error(conn, req, 503).await;
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
                    return local_error(conn, req, 503).await;
                }
            };
            let target_addr = target.addr;
            let host = target.authority.clone();
            let fwd = Forwarded {
                client_ip: client.forwarded_for.as_bytes(),
                port: client.forwarded_port.as_bytes(),
            };
            let sent = Instant::now();
            let (outcome, target) = client
                .activity
                .wait_for(
                    target,
                    conn.send(pool, target_addr, req, host.as_str(), &fwd),
                )
                .await;
            drop(busy);
            let failed = match (outcome, &target) {
                (_, None) => "the request's target was lost".to_string(),
                (Ok(Ok(answer)), Some(target)) => {
                    let elapsed = sent.elapsed();
                    dest.counters.target_response(answer.status, elapsed);
                    listener.counters.target_response(answer.status, elapsed);
                    if let Some(secs) = group_sticky {
                        set_cookie(&mut conn.out, "AWSALB", &target.cookie, secs);
                    }
                    if let (Some(secs), true) = (stickiness_secs, destinations.len() > 1) {
                        set_cookie(&mut conn.out, "AWSALBTG", &dest.group.cookie, *secs);
                    }
                    return conn.relay(req, answer.body).await;
                }
                (Ok(Err(e)), _) => e,
                (Err(Cut::TimedOut), _) => {
                    listener.counters.elb_5xx();
                    dest.counters.elb_5xx();
                    return local_error(conn, req, 504).await;
                }
                // The target's deregistration delay ended mid-request.
                (Err(Cut::TargetClosed), _) => "the target's deregistration delay ended".into(),
            };
            tracing::debug!(target = %target_addr, error = %failed, "target request failed");
            listener.counters.elb_5xx();
            dest.counters.elb_5xx();
            local_error(conn, req, 502).await
        }
    }
}

/// A 502, 503 or 504 of the load balancer's own, as ALB words them.
async fn local_error(conn: &mut ClientConn<'_>, req: &Request<'_>, status: u16) -> bool {
    conn.respond(Some(req), status, TEXT, error_body(status).as_bytes())
        .await
}

/// The body of a 502, 503 or 504 of the load balancer's own.
fn error_body(status: u16) -> &'static str {
    match status {
        502 => "502 Bad Gateway\n",
        503 => "503 Service Temporarily Unavailable\n",
        _ => "504 Gateway Time-out\n",
    }
}

/// The values of the `AWSALBTG` and `AWSALB` cookies, if sent.
fn stickiness_cookies(req: &Request<'_>) -> (Option<String>, Option<String>) {
    let mut group = None;
    let mut target = None;
    for v in req
        .header_values("cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
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

/// Appends a `Set-Cookie` header line.
fn set_cookie(out: &mut Vec<u8>, name: &str, value: &str, secs: u32) {
    let cookie = format!("{name}={value}; Max-Age={secs}; Path=/");
    crate::h1::write_header(out, b"set-cookie", cookie.as_bytes());
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
        let h = [httparse::Header {
            name: "Host",
            value: b"example.com:8080",
        }];
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
    fn stickiness_cookies_are_read_from_every_cookie_header() {
        let raw = b"GET / HTTP/1.1\r\nCookie: a=b; AWSALB=t1\r\ncookie: AWSALBTG=g1\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; front::MAX_HEADERS];
        let req = front::parse(raw, &mut headers).unwrap();
        assert_eq!(
            stickiness_cookies(&req),
            (Some("g1".into()), Some("t1".into()))
        );
    }
}
