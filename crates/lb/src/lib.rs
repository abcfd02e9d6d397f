//! The load-balancer data plane: `flotilla lb`.
//!
//! A node holds one WebSocket to the control plane ([`gateway`]), which
//! pushes the node's complete configuration (listeners on the node's
//! addresses, and their target groups; see [`flotilla_model::lb`]). The node
//! applies each version without dropping open connections ([`node`]),
//! health-checks the targets ([`health`]) and reports their health and its
//! request counters ([`metrics`]) back.
//!
//! Where to start reading: [`run`] wires the parts; [`table`] is the routing
//! snapshot every request reads; [`http`] (application load balancers) and
//! [`tcp`] (network load balancers) serve the listeners; [`matching`] and
//! [`balance`] are the pure pieces (rule conditions, weights, flow hashes).

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use flotilla_model::lb::NodeMessage;
use tokio::sync::mpsc;

pub mod balance;
pub mod front;
pub mod gateway;
pub mod h1;
pub mod health;
pub mod http;
pub mod matching;
pub mod metrics;
pub mod node;
pub mod pool;
pub mod scrape;
pub mod table;
pub mod tcp;
pub mod workers;

pub use gateway::GatewayConfig;

/// What every connection of the node shares.
pub struct Shared {
    /// The routing table of the version in effect.
    pub table: ArcSwap<table::Snapshot>,
    pub metrics: metrics::Registry,
    pub health_view: node::HealthView,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            table: ArcSwap::from_pointee(table::Snapshot::default()),
            metrics: metrics::Registry::default(),
            health_view: node::HealthView::default(),
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

/// How a node runs.
#[derive(Clone)]
pub struct NodeOptions {
    pub gateway: GatewayConfig,
    /// How often request counters are sent (10 s).
    pub metrics_interval: Duration,
    /// Where to serve `GET /metrics` (Prometheus text), if anywhere.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Threads serving the listeners, each with its own single-threaded
    /// runtime ([`workers`]); one per core by default. 0 serves them on
    /// the runtime that runs the node.
    pub workers: usize,
}

impl NodeOptions {
    pub fn new(gateway: GatewayConfig) -> NodeOptions {
        NodeOptions {
            gateway,
            metrics_interval: Duration::from_secs(10),
            metrics_address: None,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    pub fn addresses(&self) -> &[IpAddr] {
        &self.gateway.addresses
    }
}

/// Runs a node until `shutdown` resolves: connects to the control plane,
/// applies each configuration it pushes and reports back. Returns once the
/// listeners are closed.
pub async fn run(options: NodeOptions, shutdown: impl Future<Output = ()>) {
    let shared = Arc::new(Shared::new());
    let view_of = Arc::clone(&shared);
    let health_view = Arc::new(move || {
        view_of
            .health_view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    });
    let mut gateway = gateway::Gateway::start(options.gateway.clone(), health_view);
    // Aborted when the node stops.
    let _scrape = match options.metrics_address {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(AbortOnDrop(tokio::spawn(scrape::serve(
                listener,
                Arc::clone(&shared),
                gateway.connected.clone(),
            )))),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot serve /metrics");
                None
            }
        },
        None => None,
    };
    let workers = match workers::Workers::start(options.workers) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, workers = options.workers, "cannot start the worker threads; serving on the node's runtime");
            match workers::Workers::start(0) {
                Ok(w) => w,
                Err(_) => return,
            }
        }
    };
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let mut node = node::Node::new(
        Arc::clone(&shared),
        workers,
        options.gateway.addresses.clone(),
        reports_tx,
    );
    let mut applied: Option<u64> = None;
    let mut metrics = tokio::time::interval(options.metrics_interval);
    metrics.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    metrics.tick().await;
    let mut since = epoch_now();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            changed = gateway.configs.changed() => {
                if changed.is_err() {
                    break;
                }
                let latest = gateway.configs.borrow_and_update().clone();
                if let Some((version, config)) = latest {
                    // The same version again (after a reconnect) needs only the answer.
                    if applied != Some(version) {
                        node.apply(version, &config);
                        tracing::info!(version, listeners = config.listeners.len(), groups = config.target_groups.len(), "configuration applied");
                        applied = Some(version);
                    }
                    gateway.send(NodeMessage::Applied { version });
                }
            }
            Some(first) = reports.recv() => {
                let mut batch = vec![first];
                while let Ok(r) = reports.try_recv() {
                    batch.push(r);
                }
                gateway.send(NodeMessage::Health { reports: batch });
            }
            _ = metrics.tick() => {
                let now = epoch_now();
                let table = shared.table.load();
                let samples = shared.metrics.take(since, now, |arn| {
                    table.groups.get(arn).map(|g| g.host_counts()).unwrap_or((0, 0))
                });
                since = now;
                if *gateway.connected.borrow() && !samples.is_empty() {
                    gateway.send(NodeMessage::Metrics { samples });
                }
            }
        }
    }
    // The listeners and their connections close with the workers.
    node.shutdown().await;
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
