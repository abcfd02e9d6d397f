//! The node's one long-lived WebSocket to the control plane
//! (`GET /v1/lb/connect?node=NAME&addresses=IP,IP`, presigned with SigV4
//! like the agent's connection; protocol in [`flotilla_model::lb`]).
//!
//! A background task owns the socket: it connects with a freshly presigned
//! URL each time, reconnects with exponential backoff and jitter, sends a
//! heartbeat every 5 s and drops a connection the server has been silent on
//! for 20 s. Configurations are complete, so only the latest matters: it is
//! handed over through a `watch` channel. What the node sends while
//! disconnected is dropped: on every connect the socket task first sends
//! the node's whole health view, and the server pushes its configuration
//! again (the node answers `Applied` to it), so nothing needs queueing.
//! Counters of an interval spent disconnected are lost.

use std::sync::Arc;
use std::time::Duration;

use flotilla_client::Client;
use flotilla_model::lb::{ControlMessage, NodeConfig, NodeMessage, TargetHealthReport};
use futures_util::{SinkExt, StreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Where and how to connect, and the timings.
#[derive(Clone)]
pub struct GatewayConfig {
    /// Signs the connect URL (its endpoint is the control plane's).
    pub client: Client,
    pub node: String,
    /// The addresses this node may bind listeners on.
    pub addresses: Vec<std::net::IpAddr>,
    /// [`NodeMessage::Heartbeat`] period (5 s).
    pub heartbeat: Duration,
    /// A connection silent this long is dropped and re-established (20 s).
    pub silence_timeout: Duration,
    /// Reconnect delays: from `backoff_min`, doubling up to `backoff_max`,
    /// each with jitter (100 ms … 5 s).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Limit for connecting (TCP plus handshake) and for writing one frame.
    pub io_timeout: Duration,
    /// Failed connection attempts 1, 2, 4, 8, … are warnings (`flotilla
    /// lb`); when off they stay at debug level (`flotilla dev`, whose
    /// control plane may not serve load-balancer nodes).
    pub warn_on_failure: bool,
}

impl GatewayConfig {
    pub fn new(client: Client, node: &str, addresses: Vec<std::net::IpAddr>) -> GatewayConfig {
        GatewayConfig {
            client,
            node: node.to_string(),
            addresses,
            heartbeat: Duration::from_secs(5),
            silence_timeout: Duration::from_secs(20),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            io_timeout: Duration::from_secs(10),
            warn_on_failure: true,
        }
    }

    /// The `ws://` URL of the gateway, presigned now.
    pub fn connect_url(&self) -> Result<String, String> {
        let addresses: Vec<String> = self.addresses.iter().map(|a| a.to_string()).collect();
        let path = format!(
            "/v1/lb/connect?node={}&addresses={}",
            utf8_percent_encode(&self.node, QUERY),
            utf8_percent_encode(&addresses.join(","), QUERY),
        );
        let url = self
            .client
            .presign_get(&path, Duration::from_secs(60))
            .map_err(|e| format!("signing the connect URL: {e}"))?;
        match url.strip_prefix("http://") {
            Some(rest) => Ok(format!("ws://{rest}")),
            None => Err(format!(
                "endpoint {url} is not an http:// URL (https is not supported by the load-balancer node yet)"
            )),
        }
    }
}

/// RFC 3986 unreserved characters stay, everything else is encoded.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The node's side of the connection.
pub struct Gateway {
    /// The latest configuration pushed, `None` until the first.
    pub configs: watch::Receiver<Option<(u64, Arc<NodeConfig>)>>,
    outgoing: mpsc::UnboundedSender<NodeMessage>,
    /// Whether a connection is up (the node skips work nobody will read).
    pub connected: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gateway {
    /// Starts connecting in the background. `health_view` gives the node's
    /// whole health view, sent first on every connection.
    pub fn start(
        config: GatewayConfig,
        health_view: Arc<dyn Fn() -> Vec<TargetHealthReport> + Send + Sync>,
    ) -> Gateway {
        let (config_tx, configs) = watch::channel(None);
        let (connected_tx, connected) = watch::channel(false);
        let (outgoing, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(socket_task(
            config,
            health_view,
            config_tx,
            connected_tx,
            rx,
        ));
        Gateway {
            configs,
            outgoing,
            connected,
            task,
        }
    }

    /// Queues a message for the current connection (dropped if none).
    pub fn send(&self, msg: NodeMessage) {
        let _ = self.outgoing.send(msg);
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn socket_task(
    config: GatewayConfig,
    health_view: Arc<dyn Fn() -> Vec<TargetHealthReport> + Send + Sync>,
    configs: watch::Sender<Option<(u64, Arc<NodeConfig>)>>,
    connected: watch::Sender<bool>,
    mut outgoing: mpsc::UnboundedReceiver<NodeMessage>,
) {
    let mut delay = config.backoff_min;
    let mut failures = 0u32;
    loop {
        match connect(&config).await {
            Ok(socket) => {
                tracing::info!(node = %config.node, "connected to the control plane");
                // Whatever was queued while disconnected is stale.
                while outgoing.try_recv().is_ok() {}
                connected.send_replace(true);
                let (why, healthy) =
                    serve(&config, &*health_view, &configs, &mut outgoing, socket).await;
                connected.send_replace(false);
                if healthy {
                    delay = config.backoff_min;
                    failures = 0;
                }
                match why {
                    None => return,
                    Some(why) => {
                        tracing::warn!(reason = %why, "control plane connection lost; reconnecting")
                    }
                }
            }
            Err(why) => {
                failures += 1;
                if config.warn_on_failure && failures.is_power_of_two() {
                    tracing::warn!(reason = %why, attempts = failures, "cannot connect to the control plane; retrying");
                } else {
                    tracing::debug!(reason = %why, attempts = failures, "cannot connect to the control plane");
                }
            }
        }
        let pause = jitter(delay);
        delay = (delay * 2).min(config.backoff_max);
        let wake = tokio::time::sleep(pause);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                _ = &mut wake => break,
                msg = outgoing.recv() => if msg.is_none() { return },
            }
        }
    }
}

/// A random delay between half of `d` and `d`.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.5..=1.0))
}

async fn connect(config: &GatewayConfig) -> Result<Socket, String> {
    let url = config.connect_url()?;
    match tokio::time::timeout(
        config.io_timeout,
        tokio_tungstenite::connect_async(url.as_str()),
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
                "the control plane refused the connection: HTTP {} {}",
                resp.status(),
                body.trim()
            ))
        }
        Ok(Err(e)) => Err(e.to_string()),
    }
}

/// Runs one connection. Returns why it ended (`None`: the node is gone) and
/// whether the server spoke on it.
async fn serve(
    config: &GatewayConfig,
    health_view: &(dyn Fn() -> Vec<TargetHealthReport> + Send + Sync),
    configs: &watch::Sender<Option<(u64, Arc<NodeConfig>)>>,
    outgoing: &mut mpsc::UnboundedReceiver<NodeMessage>,
    socket: Socket,
) -> (Option<String>, bool) {
    let (mut sink, mut stream) = socket.split();
    let reports = health_view();
    if !reports.is_empty() {
        if let Err(e) = write(config, &mut sink, &NodeMessage::Health { reports }).await {
            return (Some(e), false);
        }
    }
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
                    None => break Some("the server closed the connection".to_string()),
                    Some(Err(e)) => break Some(e.to_string()),
                    Some(Ok(f)) => f,
                };
                silence.as_mut().reset(Instant::now() + config.silence_timeout);
                healthy = true;
                match frame {
                    Message::Text(text) => match serde_json::from_str::<ControlMessage>(&text) {
                        Ok(ControlMessage::Config { version, config }) => {
                            tracing::debug!(version, listeners = config.listeners.len(), "configuration");
                            configs.send_replace(Some((version, Arc::new(config))));
                        }
                        Ok(ControlMessage::HeartbeatAck) => {}
                        Err(e) => tracing::warn!(error = %e, "ignoring a message from the control plane that this node does not understand"),
                    },
                    Message::Close(frame) => break Some(format!("the server closed the connection ({frame:?})")),
                    _ => {}
                }
            }
            _ = heartbeat.tick() => {
                if let Err(e) = write(config, &mut sink, &NodeMessage::Heartbeat).await {
                    break Some(e);
                }
            }
            _ = &mut silence => break Some(format!("nothing from the server for {:?}", config.silence_timeout)),
            msg = outgoing.recv() => match msg {
                None => break None,
                Some(msg) => if let Err(e) = write(config, &mut sink, &msg).await {
                    break Some(e);
                },
            },
        }
    };
    if ended.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(None))).await;
    }
    (ended, healthy)
}

async fn write(
    config: &GatewayConfig,
    sink: &mut futures_util::stream::SplitSink<Socket, Message>,
    msg: &NodeMessage,
) -> Result<(), String> {
    let text = serde_json::to_string(msg).map_err(|e| e.to_string())?;
    match tokio::time::timeout(config.io_timeout, sink.send(Message::text(text))).await {
        Err(_) => Err(format!(
            "writing to the control plane took longer than {:?}",
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
            "lb-1",
            vec!["127.0.0.20".parse().unwrap(), "127.0.0.21".parse().unwrap()],
        );
        let url = config.connect_url().unwrap();
        assert!(
            url.starts_with(
                "ws://127.0.0.1:8080/v1/lb/connect?node=lb-1&addresses=127.0.0.20%2C127.0.0.21"
            ),
            "{url}"
        );
        assert!(url.contains("X-Amz-Signature="), "{url}");
    }
}
