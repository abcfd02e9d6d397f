//! [`WsControlPlane`] against a tiny WebSocket server on loopback that
//! speaks the gateway protocol and lets each test play the control plane:
//! connect, desired sets, state changes, heartbeats, reconnects after a
//! drop, a silent server and a refusing one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flotilla_agent::control::{ControlEvent, ControlPlane};
use flotilla_agent::gateway::{GatewayConfig, WsControlPlane};
use flotilla_agent::TaskStateChange;
use flotilla_client::Client;
use flotilla_model::agent::{AgentMessage, ServerMessage};
use tokio::sync::mpsc;

const ARN: &str = "arn:aws:ecs:us-east-1:000000000000:container-instance/prod/i-1";

/// One accepted connection, as the test sees it.
struct Conn {
    query: HashMap<String, String>,
    /// Frames to send; dropping it closes the connection.
    to_agent: mpsc::UnboundedSender<ServerMessage>,
    from_agent: mpsc::UnboundedReceiver<AgentMessage>,
}

impl Conn {
    async fn next(&mut self) -> AgentMessage {
        tokio::time::timeout(Duration::from_secs(5), self.from_agent.recv())
            .await
            .expect("timed out waiting for the agent")
            .expect("connection closed")
    }

    /// The next message that is not a heartbeat.
    async fn next_non_heartbeat(&mut self) -> AgentMessage {
        loop {
            match self.next().await {
                AgentMessage::Heartbeat => continue,
                m => return m,
            }
        }
    }
}

#[derive(Clone)]
struct Gw {
    conns: mpsc::UnboundedSender<Conn>,
    refuse: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
    /// Answer heartbeats (off to play a server that went silent).
    ack: Arc<AtomicBool>,
}

struct TestGateway {
    endpoint: String,
    conns: mpsc::UnboundedReceiver<Conn>,
    gw: Gw,
    _server: tokio::task::JoinHandle<()>,
}

impl TestGateway {
    async fn start() -> TestGateway {
        let (tx, rx) = mpsc::unbounded_channel();
        let gw = Gw {
            conns: tx,
            refuse: Arc::new(AtomicBool::new(false)),
            attempts: Arc::new(AtomicUsize::new(0)),
            ack: Arc::new(AtomicBool::new(true)),
        };
        let app = axum::Router::new()
            .route("/v1/agent/connect", get(connect))
            .with_state(gw.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestGateway {
            endpoint,
            conns: rx,
            gw,
            _server: server,
        }
    }

    async fn accept(&mut self) -> Conn {
        tokio::time::timeout(Duration::from_secs(5), self.conns.recv())
            .await
            .expect("timed out waiting for a connection")
            .unwrap()
    }

    fn config(&self) -> GatewayConfig {
        let client = Client::ecs(&self.endpoint, "AKIDEXAMPLE", "secret", "us-east-1");
        let mut c = GatewayConfig::new(client, "prod", ARN);
        c.heartbeat = Duration::from_millis(100);
        c.silence_timeout = Duration::from_millis(600);
        c.backoff_min = Duration::from_millis(20);
        c.backoff_max = Duration::from_millis(200);
        c
    }
}

async fn connect(
    State(gw): State<Gw>,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    gw.attempts.fetch_add(1, Ordering::SeqCst);
    if gw.refuse.load(Ordering::SeqCst) {
        return (
            StatusCode::FORBIDDEN,
            r#"{"__type":"AccessDeniedException","message":"no"}"#,
        )
            .into_response();
    }
    ws.on_upgrade(move |socket| serve(gw, query, socket))
}

async fn serve(gw: Gw, query: HashMap<String, String>, mut socket: WebSocket) {
    let (to_agent, mut outgoing) = mpsc::unbounded_channel::<ServerMessage>();
    let (incoming, from_agent) = mpsc::unbounded_channel();
    let _ = gw.conns.send(Conn {
        query,
        to_agent,
        from_agent,
    });
    loop {
        tokio::select! {
            frame = socket.recv() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let msg: AgentMessage = serde_json::from_str(&t).expect("agent message");
                    if msg == AgentMessage::Heartbeat && gw.ack.load(Ordering::SeqCst) {
                        let ack = serde_json::to_string(&ServerMessage::HeartbeatAck).unwrap();
                        if socket.send(Message::Text(ack.into())).await.is_err() {
                            return;
                        }
                    }
                    let _ = incoming.send(msg);
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            msg = outgoing.recv() => match msg {
                Some(m) => {
                    let text = serde_json::to_string(&m).unwrap();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // The test dropped the connection.
                None => return,
            },
        }
    }
}

async fn event(cp: &mut WsControlPlane) -> ControlEvent {
    tokio::time::timeout(Duration::from_secs(5), cp.recv())
        .await
        .expect("timed out waiting for an event")
        .expect("control plane closed")
}

fn change(task: &str, status: &str) -> TaskStateChange {
    let mut c = TaskStateChange::default();
    c.submit.task = Some(task.into());
    c.submit.status = Some(status.into());
    c
}

#[tokio::test]
async fn connects_presigned_and_speaks_the_protocol() {
    let mut gw = TestGateway::start().await;
    let mut cp = WsControlPlane::start(gw.config());
    let mut conn = gw.accept().await;
    assert_eq!(conn.query["cluster"], "prod");
    assert_eq!(conn.query["containerInstance"], ARN);
    assert!(conn.query.contains_key("X-Amz-Signature"));
    assert_eq!(
        conn.query["X-Amz-Credential"].split('/').next(),
        Some("AKIDEXAMPLE")
    );
    assert_eq!(event(&mut cp).await, ControlEvent::Connected);

    conn.to_agent
        .send(ServerMessage::Desired {
            version: 7,
            tasks: vec![],
        })
        .unwrap();
    assert_eq!(
        event(&mut cp).await,
        ControlEvent::Desired {
            version: 7,
            tasks: vec![]
        }
    );
    cp.applied(7).await.unwrap();
    assert_eq!(
        conn.next_non_heartbeat().await,
        AgentMessage::Applied { version: 7 }
    );
    cp.send(vec![change("t1", "RUNNING")]).await.unwrap();
    assert_eq!(
        conn.next_non_heartbeat().await,
        AgentMessage::StateChanges {
            changes: vec![change("t1", "RUNNING")]
        }
    );
    // Heartbeats keep flowing on their own.
    for _ in 0..3 {
        while conn.next().await != AgentMessage::Heartbeat {}
    }
}

#[tokio::test]
async fn only_the_latest_desired_set_is_kept() {
    let mut gw = TestGateway::start().await;
    let mut cp = WsControlPlane::start(gw.config());
    let conn = gw.accept().await;
    assert_eq!(event(&mut cp).await, ControlEvent::Connected);
    for version in 1..=50 {
        conn.to_agent
            .send(ServerMessage::Desired {
                version,
                tasks: vec![],
            })
            .unwrap();
    }
    // The socket task never waits for the agent; the agent sees the last
    // set (and perhaps some earlier ones), in order.
    let mut last = 0;
    while last < 50 {
        match event(&mut cp).await {
            ControlEvent::Desired { version, .. } => {
                assert!(version > last);
                last = version;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn recv_is_cancel_safe() {
    let mut gw = TestGateway::start().await;
    let mut cp = WsControlPlane::start(gw.config());
    let conn = gw.accept().await;
    assert_eq!(event(&mut cp).await, ControlEvent::Connected);
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        conn.to_agent
            .send(ServerMessage::Desired {
                version: 3,
                tasks: vec![],
            })
            .unwrap();
        conn
    });
    // Poll recv with many short timeouts, as the agent's select does.
    let got = loop {
        if let Ok(ev) = tokio::time::timeout(Duration::from_millis(5), cp.recv()).await {
            break ev;
        }
    };
    assert_eq!(
        got,
        Some(ControlEvent::Desired {
            version: 3,
            tasks: vec![]
        })
    );
    drop(sender.await.unwrap());
}

#[tokio::test]
async fn reconnects_after_the_server_drops_and_fails_sends_meanwhile() {
    let mut gw = TestGateway::start().await;
    let mut cp = WsControlPlane::start(gw.config());
    let conn = gw.accept().await;
    assert_eq!(event(&mut cp).await, ControlEvent::Connected);
    gw.gw.refuse.store(true, Ordering::SeqCst);
    drop(conn);
    // While the server refuses, sends fail at once rather than queue.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if cp.send(vec![change("t1", "RUNNING")]).await.is_err() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sends kept succeeding"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cp.applied(1).await.is_err());
    gw.gw.refuse.store(false, Ordering::SeqCst);
    let mut conn = gw.accept().await;
    assert_eq!(event(&mut cp).await, ControlEvent::Connected);
    cp.send(vec![change("t1", "STOPPED")]).await.unwrap();
    assert_eq!(
        conn.next_non_heartbeat().await,
        AgentMessage::StateChanges {
            changes: vec![change("t1", "STOPPED")]
        }
    );
}

#[tokio::test]
async fn drops_a_silent_connection_and_reconnects() {
    let mut gw = TestGateway::start().await;
    gw.gw.ack.store(false, Ordering::SeqCst);
    let mut cp = WsControlPlane::start(gw.config());
    let _first = gw.accept().await;
    assert_eq!(event(&mut cp).await, ControlEvent::Connected);
    let started = tokio::time::Instant::now();
    // The first connection stays open on the server's side, but the agent
    // gives up on it after the silence timeout (600 ms) and comes back.
    let _second = gw.accept().await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(event(&mut cp).await, ControlEvent::Connected);
}

#[tokio::test]
async fn keeps_retrying_a_refusing_server_with_bounded_backoff() {
    let mut gw = TestGateway::start().await;
    gw.gw.refuse.store(true, Ordering::SeqCst);
    let mut cp = WsControlPlane::start(gw.config());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attempts = gw.gw.attempts.load(Ordering::SeqCst);
    // 20, 40, 80, 160 ms then every 200 ms (less jitter): about 5 to 15.
    assert!((4..=20).contains(&attempts), "{attempts} attempts");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), cp.recv())
            .await
            .is_err(),
        "no Connected while refused"
    );
    gw.gw.refuse.store(false, Ordering::SeqCst);
    let _conn = gw.accept().await;
    assert_eq!(event(&mut cp).await, ControlEvent::Connected);
}

#[tokio::test]
async fn dropping_the_control_plane_closes_the_connection() {
    let mut gw = TestGateway::start().await;
    let cp = WsControlPlane::start(gw.config());
    let mut conn = gw.accept().await;
    drop(cp);
    // The server sees the connection end: no more heartbeats.
    let end = tokio::time::timeout(Duration::from_secs(2), async {
        while conn.from_agent.recv().await.is_some() {}
    })
    .await;
    assert!(end.is_ok(), "connection still open");
}
