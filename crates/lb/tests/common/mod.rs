//! The harness of the node tests: a test control plane (an axum WebSocket
//! server that pushes configurations and records what the node sends),
//! real HTTP and TCP backends on their own loopback addresses, and a node
//! started in-process on its own addresses. Every wait is bounded.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use bytes::Bytes;
use flotilla_client::Client;
use flotilla_lb::{GatewayConfig, NodeOptions};
use flotilla_model::lb::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify};

/// Generous bound for anything a loaded machine should do in well under a second.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct ControlPlane {
    pub addr: SocketAddr,
    push: watch::Sender<Option<(u64, NodeConfig)>>,
    /// Bumped to end every open session (the node must reconnect).
    generation: watch::Sender<u64>,
    received: Arc<Mutex<Vec<NodeMessage>>>,
    pub query: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    notify: Arc<Notify>,
}

#[derive(Clone)]
struct CpState {
    push: watch::Sender<Option<(u64, NodeConfig)>>,
    generation: watch::Sender<u64>,
    received: Arc<Mutex<Vec<NodeMessage>>>,
    query: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    notify: Arc<Notify>,
}

impl ControlPlane {
    pub async fn start() -> ControlPlane {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = CpState {
            push: watch::Sender::new(None),
            generation: watch::Sender::new(0),
            received: Arc::default(),
            query: Arc::default(),
            notify: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/v1/lb/connect", axum::routing::get(connect))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ControlPlane {
            addr,
            push: state.push,
            generation: state.generation,
            received: state.received,
            query: state.query,
            notify: state.notify,
        }
    }

    pub fn push(&self, version: u64, config: NodeConfig) {
        self.push.send_replace(Some((version, config)));
    }

    /// Pushes `config` as `version` and waits until the node applied it.
    pub async fn apply(&self, version: u64, config: NodeConfig) {
        self.push(version, config);
        assert!(
            self.wait_for(|m| m.contains(&NodeMessage::Applied { version }))
                .await,
            "the node did not apply version {version}"
        );
    }

    /// Drops every open session, as a restarting control plane would.
    pub fn disconnect(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn messages(&self) -> Vec<NodeMessage> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (bounded by [`WAIT`]) until `pred` holds over everything received.
    pub async fn wait_for(&self, pred: impl Fn(&[NodeMessage]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.notify.notified();
            if pred(&self.received.lock().unwrap()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return pred(&self.received.lock().unwrap());
            }
        }
    }

    /// The health reports received so far, in order.
    pub fn health_reports(&self) -> Vec<TargetHealthReport> {
        self.messages()
            .into_iter()
            .flat_map(|m| match m {
                NodeMessage::Health { reports } => reports,
                _ => Vec::new(),
            })
            .collect()
    }

    pub async fn wait_health(
        &self,
        target: SocketAddr,
        health: ObservedHealth,
        reason: Option<&str>,
    ) -> TargetHealthReport {
        let matches = |r: &TargetHealthReport| {
            r.target_id == target.ip().to_string()
                && r.port == target.port()
                && r.health == health
                && (reason.is_none() || r.reason.as_deref() == reason)
        };
        let ok = self
            .wait_for(|m| {
                m.iter().any(
                    |m| matches!(m, NodeMessage::Health { reports } if reports.iter().any(matches)),
                )
            })
            .await;
        assert!(
            ok,
            "no {health:?} ({reason:?}) report for {target}: {:?}",
            self.health_reports()
        );
        self.health_reports()
            .into_iter()
            .rev()
            .find(|r| matches(r))
            .unwrap()
    }
}

impl ControlPlane {
    /// Waits until the latest report about `target` says `health`.
    pub async fn wait_latest(&self, target: SocketAddr, health: ObservedHealth) {
        let latest = |m: &[NodeMessage]| {
            m.iter()
                .flat_map(|m| match m {
                    NodeMessage::Health { reports } => reports.iter().collect(),
                    _ => Vec::new(),
                })
                .rfind(|r| r.target_id == target.ip().to_string() && r.port == target.port())
                .map(|r| r.health)
        };
        let ok = self.wait_for(|m| latest(m) == Some(health)).await;
        assert!(
            ok,
            "{target} is not {health:?}: {:?}",
            self.health_reports()
        );
    }
}

async fn connect(
    ws: WebSocketUpgrade,
    Query(query): Query<BTreeMap<String, String>>,
    State(state): State<CpState>,
) -> Response {
    state.query.lock().unwrap().push(query);
    ws.on_upgrade(move |socket| session(socket, state))
}

async fn session(mut socket: WebSocket, state: CpState) {
    let mut configs = state.push.subscribe();
    configs.mark_changed();
    let mut generation = state.generation.subscribe();
    generation.borrow_and_update();
    loop {
        tokio::select! {
            _ = generation.changed() => return,
            changed = configs.changed() => {
                if changed.is_err() {
                    return;
                }
                let latest = configs.borrow_and_update().clone();
                if let Some((version, config)) = latest {
                    let text = serde_json::to_string(&ControlMessage::Config { version, config }).unwrap();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let msg: NodeMessage = serde_json::from_str(&text).expect("the node sends valid messages");
                    if msg == NodeMessage::Heartbeat {
                        let ack = serde_json::to_string(&ControlMessage::HeartbeatAck).unwrap();
                        let _ = socket.send(Message::Text(ack.into())).await;
                    }
                    state.received.lock().unwrap().push(msg);
                    state.notify.notify_waiters();
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

/// A node running in this process until dropped.
pub struct Node {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        self.task.abort();
    }
}

pub fn start_node(cp: &ControlPlane, addresses: &[&str]) -> Node {
    start_node_with(cp, addresses, Duration::from_secs(10))
}

pub fn start_node_with(cp: &ControlPlane, addresses: &[&str], metrics_interval: Duration) -> Node {
    start_node_options(cp, addresses, metrics_interval, None)
}

/// A node reporting every `metrics_interval` and serving `/metrics` on
/// `scrape`, if given.
pub fn start_node_options(
    cp: &ControlPlane,
    addresses: &[&str],
    metrics_interval: Duration,
    scrape: Option<SocketAddr>,
) -> Node {
    start_node_tuned(cp, addresses, |options| {
        options.metrics_interval = metrics_interval;
        options.metrics_address = scrape;
    })
}

/// A node with the options `tune` sets.
pub fn start_node_tuned(
    cp: &ControlPlane,
    addresses: &[&str],
    tune: impl FnOnce(&mut NodeOptions),
) -> Node {
    let client = Client::ecs(
        &format!("http://{}", cp.addr),
        "AKIDTEST",
        "secret",
        "us-east-1",
    );
    let addresses: Vec<IpAddr> = addresses.iter().map(|a| a.parse().unwrap()).collect();
    let mut gateway = GatewayConfig::new(client, "test-node", addresses);
    gateway.backoff_max = Duration::from_millis(500);
    let mut options = NodeOptions::new(gateway);
    tune(&mut options);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(flotilla_lb::run(options, async move {
        let _ = stopped.await;
    }));
    Node {
        stop: Some(stop),
        task,
    }
}

/// A real HTTP/1.1 backend (hyper, keep-alive) on its own address.
///
/// - `/status/N` answers status N;
/// - `/slow/MS` answers after MS milliseconds;
/// - `/health` answers the status in [`Backend::health`] (200 at first),
///   and `/health-slow` after 5 s;
/// - anything else answers the backend's name, with the `X-Forwarded-*`
///   headers it received echoed as `x-seen-*`.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    pub health: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub async fn start(name: &str, ip: &str) -> Backend {
        let listener = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let health = Arc::new(AtomicU16::new(200));
        let (n, r, c, h) = (
            name.to_string(),
            requests.clone(),
            connections.clone(),
            health.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (n, r, h) = (n.clone(), r.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (n, r, h) = (n.clone(), r.clone(), h.clone());
                            async move { Ok::<_, Infallible>(answer(&n, &r, &h, req).await) }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            requests,
            connections,
            health,
            task,
        }
    }

    pub fn target(&self) -> TargetConfig {
        TargetConfig {
            id: self.addr.ip().to_string(),
            address: self.addr.ip(),
            port: self.addr.port(),
            state: TargetState::Active,
            registered_at: 0.0,
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn answer(
    name: &str,
    requests: &AtomicUsize,
    health: &AtomicU16,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let status = |s: u16, body: String| {
        hyper::Response::builder()
            .status(s)
            .header("x-backend", name)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    if path == "/health" {
        return status(health.load(Ordering::SeqCst), "health".into());
    }
    if path == "/health-slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
        return status(200, "slow health".into());
    }
    requests.fetch_add(1, Ordering::SeqCst);
    if let Some(code) = path.strip_prefix("/status/") {
        return status(code.parse().unwrap_or(500), name.to_string());
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        return status(200, name.to_string());
    }
    let mut resp = status(200, name.to_string());
    for h in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-port",
        "host",
    ] {
        if let Some(v) = req.headers().get(h) {
            resp.headers_mut().insert(
                http::HeaderName::from_bytes(format!("x-seen-{h}").as_bytes()).unwrap(),
                v.clone(),
            );
        }
    }
    resp
}

/// A TCP backend that answers every connection with its name, then echoes.
pub async fn tcp_backend(
    name: &'static str,
    ip: &str,
) -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = s.write_all(format!("{name}\n").as_bytes()).await;
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, count, task)
}

pub type HttpClient = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// A keep-alive HTTP client whose connections come from `source`.
pub fn http_client(source: &str) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(source.parse().unwrap()));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector)
}

pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// One request, bounded by [`WAIT`].
pub async fn request(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("an answer within the bound")
        .expect("a response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .expect("a body within the bound")
        .expect("a body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(client: &HttpClient, url: &str) -> Answer {
    request(client, "GET", url, &[]).await
}

/// One request and its answer over a raw, kept-open connection (so a test
/// can tell it is the same connection).
pub async fn raw_exchange(stream: &mut TcpStream, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    tokio::time::timeout(WAIT, read_response(stream))
        .await
        .expect("a response within the bound")
}

async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("a content-length");
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed within a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    (
        status,
        String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned(),
    )
}

// Config builders.

pub fn health_check(path: &str) -> HealthCheckConfig {
    HealthCheckConfig {
        enabled: true,
        protocol: Protocol::Http,
        port: None,
        path: path.to_string(),
        interval_secs: 1,
        timeout_secs: 1,
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        matcher: "200".into(),
    }
}

pub fn group(arn: &str, targets: Vec<TargetConfig>) -> TargetGroupConfig {
    TargetGroupConfig {
        target_group_arn: arn.to_string(),
        name: arn.rsplit('/').next().unwrap_or(arn).to_string(),
        protocol: Protocol::Http,
        targets,
        health_check: health_check("/health"),
        deregistration_delay_secs: 300,
        slow_start_secs: 0,
        stickiness_secs: None,
    }
}

pub fn forward(arn: &str) -> Action {
    Action::Forward {
        target_groups: vec![WeightedTargetGroup {
            target_group_arn: arn.to_string(),
            weight: 1,
        }],
        stickiness_secs: None,
    }
}

pub fn listener(
    address: &str,
    port: u16,
    rules: Vec<RuleConfig>,
    default: Action,
) -> ListenerConfig {
    ListenerConfig {
        listener_arn: format!(
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:listener/app/test/1/{port}"
        ),
        load_balancer_arn:
            "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/test/1".into(),
        load_balancer_name: "test".into(),
        kind: LoadBalancerKind::Application,
        address: address.parse().unwrap(),
        port,
        protocol: Protocol::Http,
        idle_timeout_secs: 60,
        rules,
        default_actions: vec![default],
    }
}

pub fn rule(priority: u32, conditions: Vec<Condition>, action: Action) -> RuleConfig {
    RuleConfig {
        rule_arn: format!("rule/{priority}"),
        priority,
        conditions,
        actions: vec![action],
    }
}

pub fn config(listeners: Vec<ListenerConfig>, groups: Vec<TargetGroupConfig>) -> NodeConfig {
    NodeConfig {
        listeners,
        target_groups: groups
            .into_iter()
            .map(|g| (g.target_group_arn.clone(), g))
            .collect(),
    }
}

pub fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
