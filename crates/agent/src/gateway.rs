//! [`WsControlPlane`]: the agent's one long-lived WebSocket connection to the
//! server's agent gateway (`GET /v1/agent/connect`, see
//! [`flotilla_model::agent`] for the protocol).
//!
//! A background task owns the socket. It connects with a freshly presigned
//! URL each time, reconnects with exponential backoff and jitter, sends a
//! heartbeat every few seconds, and drops a connection the server has been
//! silent on for too long. The agent's side ([`ControlPlane`]) never waits
//! for a connection: while disconnected, `send` and `applied` fail at once
//! (the agent keeps its changes and resends them all after the next
//! [`ControlEvent::Connected`], and the server pushes its desired set again
//! on every connect, so nothing needs queueing here).
//!
//! Desired sets are complete, so only the latest one matters: the inbox
//! keeps one, and a slow agent never makes the socket task block.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_client::Client;
use flotilla_model::agent::{AgentMessage, DesiredTask, ServerMessage, TaskStats};
use futures_util::{SinkExt, StreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::control::{ControlEvent, ControlPlane, ControlPlaneError};
use crate::engine::TaskStateChange;

/// Where and how to connect, and the timings.
#[derive(Clone)]
pub struct GatewayConfig {
    /// Signs the connect URL (its endpoint is the server's).
    pub client: Client,
    pub cluster: String,
    pub instance_arn: String,
    /// How often to send [`AgentMessage::Heartbeat`] (5 s).
    pub heartbeat: Duration,
    /// A connection on which nothing arrived for this long is dropped and
    /// re-established (20 s, the server's own limit).
    pub silence_timeout: Duration,
    /// Reconnect delays: from `backoff_min`, doubling up to `backoff_max`,
    /// each with jitter (100 ms … 5 s).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Limit for the TCP connect plus WebSocket handshake, and for writing
    /// one frame (10 s).
    pub io_timeout: Duration,
}

impl GatewayConfig {
    pub fn new(client: Client, cluster: &str, instance_arn: &str) -> GatewayConfig {
        GatewayConfig {
            client,
            cluster: cluster.to_string(),
            instance_arn: instance_arn.to_string(),
            heartbeat: Duration::from_secs(5),
            silence_timeout: Duration::from_secs(20),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            io_timeout: Duration::from_secs(10),
        }
    }

    /// The `ws://` URL of the gateway for this instance, presigned now.
    pub fn connect_url(&self) -> Result<String, ControlPlaneError> {
        let path = format!(
            "/v1/agent/connect?cluster={}&containerInstance={}",
            utf8_percent_encode(&self.cluster, QUERY),
            utf8_percent_encode(&self.instance_arn, QUERY),
        );
        // The signature outlives the handshake only briefly: a new one is
        // made for every attempt.
        let url = self
            .client
            .presign_get(&path, Duration::from_secs(60))
            .map_err(|e| ControlPlaneError(format!("signing the connect URL: {e}")))?;
        if let Some(rest) = url.strip_prefix("http://") {
            Ok(format!("ws://{rest}"))
        } else if url.starts_with("https://") {
            Err(ControlPlaneError(
                "https endpoints are not supported by the agent yet; use http:// (on a trusted network or behind a TLS tunnel)".into(),
            ))
        } else {
            Err(ControlPlaneError(format!(
                "endpoint {url} is not an http:// URL"
            )))
        }
    }
}

/// RFC 3986 unreserved characters stay, everything else is encoded.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What the socket task has for the agent.
#[derive(Default)]
struct Inbox {
    /// A connection was established since the agent last looked.
    connected: bool,
    /// The latest desired set not yet handed to the agent.
    desired: Option<(u64, Vec<DesiredTask>)>,
    /// The socket task has ended.
    closed: bool,
}

struct Shared {
    inbox: Mutex<Inbox>,
    notify: Notify,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut Inbox)) {
        f(&mut self.inbox.lock().expect("inbox lock"));
        self.notify.notify_one();
    }
}

/// One message for the socket task to write, and where to say whether it
/// was written.
type Outgoing = (AgentMessage, oneshot::Sender<Result<(), ControlPlaneError>>);

/// The [`ControlPlane`] over the server's agent gateway. Dropping it closes
/// the connection.
pub struct WsControlPlane {
    shared: Arc<Shared>,
    outgoing: mpsc::Sender<Outgoing>,
    task: tokio::task::JoinHandle<()>,
}

impl WsControlPlane {
    /// Starts connecting in the background and returns at once; the first
    /// [`ControlEvent::Connected`] says when the connection is up.
    pub fn start(config: GatewayConfig) -> WsControlPlane {
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox::default()),
            notify: Notify::new(),
        });
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(socket_task(config, shared.clone(), rx));
        WsControlPlane {
            shared,
            outgoing: tx,
            task,
        }
    }

    async fn deliver(&self, msg: AgentMessage) -> Result<(), ControlPlaneError> {
        let (tx, rx) = oneshot::channel();
        self.outgoing
            .send((msg, tx))
            .await
            .map_err(|_| ControlPlaneError("connection task ended".into()))?;
        rx.await
            .map_err(|_| ControlPlaneError("connection task ended".into()))?
    }
}

impl Drop for WsControlPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ControlPlane for WsControlPlane {
    async fn recv(&mut self) -> Option<ControlEvent> {
        // Cancel-safe: the event stays in the inbox until it is returned,
        // and nothing is awaited after it is taken out.
        loop {
            let notified = self.shared.notify.notified();
            {
                let mut inbox = self.shared.inbox.lock().expect("inbox lock");
                if std::mem::take(&mut inbox.connected) {
                    return Some(ControlEvent::Connected);
                }
                if let Some((version, tasks)) = inbox.desired.take() {
                    return Some(ControlEvent::Desired { version, tasks });
                }
                if inbox.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    async fn send(&mut self, changes: Vec<TaskStateChange>) -> Result<(), ControlPlaneError> {
        self.deliver(AgentMessage::StateChanges { changes }).await
    }

    async fn applied(&mut self, version: u64) -> Result<(), ControlPlaneError> {
        self.deliver(AgentMessage::Applied { version }).await
    }

    async fn send_stats(&mut self, samples: Vec<TaskStats>) -> Result<(), ControlPlaneError> {
        self.deliver(AgentMessage::Stats { samples }).await
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection attempt or a connection ended.
#[derive(Debug)]
enum Ended {
    /// The agent side is gone: stop for good.
    AgentGone,
    /// Anything else: reconnect after a pause.
    Retry(String),
}

async fn socket_task(
    config: GatewayConfig,
    shared: Arc<Shared>,
    mut outgoing: mpsc::Receiver<Outgoing>,
) {
    let mut delay = config.backoff_min;
    let mut failures = 0u32;
    loop {
        match connect(&config).await {
            Ok(socket) => {
                tracing::info!(instance = %config.instance_arn, "connected to the agent gateway");
                shared.update(|i| i.connected = true);
                let (ended, healthy) = serve(&config, &shared, &mut outgoing, socket).await;
                // A connection that worked resets the backoff; one the
                // server drops at once does not, so a refusing server is
                // not hammered.
                if healthy {
                    delay = config.backoff_min;
                    failures = 0;
                }
                match ended {
                    Ended::AgentGone => break,
                    Ended::Retry(why) => {
                        tracing::warn!(reason = %why, "agent gateway connection lost; reconnecting")
                    }
                }
            }
            Err(why) => {
                failures += 1;
                // Failures 1, 2, 4, 8, … are worth a warning; the rest
                // would fill the log while the server is down.
                if failures.is_power_of_two() {
                    tracing::warn!(reason = %why, attempts = failures, "cannot connect to the agent gateway; retrying");
                } else {
                    tracing::debug!(reason = %why, attempts = failures, "cannot connect to the agent gateway");
                }
            }
        }
        let pause = jitter(delay);
        delay = (delay * 2).min(config.backoff_max);
        // While disconnected, whatever the agent sends fails at once.
        let wake = tokio::time::sleep(pause);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                _ = &mut wake => break,
                msg = outgoing.recv() => match msg {
                    Some((_, reply)) => {
                        let _ = reply.send(Err(ControlPlaneError("not connected to the agent gateway".into())));
                    }
                    None => {
                        shared.update(|i| i.closed = true);
                        return;
                    }
                },
            }
        }
    }
    shared.update(|i| i.closed = true);
}

/// A random delay between half of `d` and `d`, so agents cut off together do
/// not all come back in the same instant.
fn jitter(d: Duration) -> Duration {
    let f: f64 = rand::random_range(0.5..=1.0);
    d.mul_f64(f)
}

async fn connect(config: &GatewayConfig) -> Result<Socket, String> {
    let url = config.connect_url().map_err(|e| e.0)?;
    match tokio::time::timeout(
        config.io_timeout,
        tokio_tungstenite::connect_async_with_config(
            url.as_str(),
            Some(
                tungstenite::protocol::WebSocketConfig::default()
                    .read_buffer_size(flotilla_model::agent::SOCKET_READ_BUFFER),
            ),
            false,
        ),
    )
    .await
    {
        Err(_) => Err(format!("no answer within {:?}", config.io_timeout)),
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            Err(format!(
                "the gateway refused the connection: HTTP {} {}",
                resp.status(),
                body.trim()
            ))
        }
        Ok(Err(e)) => Err(e.to_string()),
    }
}

/// Runs one connection until it fails or the agent side goes away. Returns
/// why it ended and whether it was healthy (the server spoke on it).
async fn serve(
    config: &GatewayConfig,
    shared: &Shared,
    outgoing: &mut mpsc::Receiver<Outgoing>,
    socket: Socket,
) -> (Ended, bool) {
    let (mut sink, mut stream) = socket.split();
    let mut healthy = false;
    let mut heartbeat =
        tokio::time::interval_at(Instant::now() + config.heartbeat, config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence = tokio::time::sleep(config.silence_timeout);
    tokio::pin!(silence);
    let ended = loop {
        tokio::select! {
            frame = stream.next() => {
                let frame = match frame {
                    None => break Ended::Retry("the server closed the connection".into()),
                    Some(Err(e)) => break Ended::Retry(e.to_string()),
                    Some(Ok(f)) => f,
                };
                silence.as_mut().reset(Instant::now() + config.silence_timeout);
                healthy = true;
                match frame {
                    Message::Text(text) => match serde_json::from_str::<ServerMessage>(&text) {
                        Ok(ServerMessage::Desired { version, tasks }) => {
                            tracing::debug!(version, tasks = tasks.len(), "desired set");
                            shared.update(|i| i.desired = Some((version, tasks)));
                        }
                        Ok(ServerMessage::HeartbeatAck) => {}
                        // Only sent to agents that ask for deltas; this one does not.
                        Ok(ServerMessage::DesiredDelta { .. }) => {}
                        // An agent older than the server may not know every
                        // message: skip it rather than drop the connection.
                        Err(e) => tracing::warn!(error = %e, "ignoring a message from the gateway that this agent does not understand"),
                    },
                    Message::Close(frame) => {
                        break Ended::Retry(format!("the server closed the connection ({frame:?})"))
                    }
                    // Pings are answered by tungstenite on the next write or flush.
                    _ => {}
                }
            }
            _ = heartbeat.tick() => {
                if let Err(e) = write(config, &mut sink, &AgentMessage::Heartbeat).await {
                    break Ended::Retry(e);
                }
            }
            _ = &mut silence => {
                break Ended::Retry(format!("nothing from the server for {:?}", config.silence_timeout));
            }
            msg = outgoing.recv() => match msg {
                None => break Ended::AgentGone,
                Some((msg, reply)) => {
                    let result = write(config, &mut sink, &msg).await;
                    let failed = result.clone().err();
                    let _ = reply.send(result.map_err(ControlPlaneError));
                    if let Some(e) = failed {
                        break Ended::Retry(e);
                    }
                }
            },
        }
    };
    if matches!(ended, Ended::AgentGone) {
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(None))).await;
    }
    (ended, healthy)
}

async fn write(
    config: &GatewayConfig,
    sink: &mut futures_util::stream::SplitSink<Socket, Message>,
    msg: &AgentMessage,
) -> Result<(), String> {
    let text = serde_json::to_string(msg).map_err(|e| e.to_string())?;
    match tokio::time::timeout(config.io_timeout, sink.send(Message::text(text))).await {
        Err(_) => Err(format!(
            "writing to the gateway took longer than {:?}",
            config.io_timeout
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(())) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_url_is_presigned_and_encoded() {
        let client = Client::ecs(
            "http://127.0.0.1:8080",
            "AKIDEXAMPLE",
            "secret",
            "us-east-1",
        );
        let config = GatewayConfig::new(
            client,
            "prod",
            "arn:aws:ecs:us-east-1:000000000000:container-instance/prod/abc",
        );
        let url = config.connect_url().unwrap();
        assert!(url.starts_with("ws://127.0.0.1:8080/v1/agent/connect?cluster=prod&containerInstance=arn%3Aaws%3Aecs%3Aus-east-1%3A000000000000%3Acontainer-instance%2Fprod%2Fabc"), "{url}");
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert!(url.contains("X-Amz-Expires=60"), "{url}");
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(100));
            assert!(j >= Duration::from_millis(50) && j <= Duration::from_millis(100));
        }
    }
}
