//! The agent's main loop and its one dependency on the control plane, the
//! [`ControlPlane`] trait: desired sets come in, state changes go out. The
//! WebSocket connection to the server's agent gateway implements it; tests
//! and `flotilla dev` can use [`ChannelControlPlane`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use flotilla_model::agent::{DesiredTask, TaskStats};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::AgentConfig;
use crate::docker::DockerRuntime;
use crate::engine::{Engine, EngineConfig, EngineStopped, TaskStateChange};
use crate::metadata::MetadataIndex;
use crate::runtime::ContainerRuntime;

/// What the control plane tells the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlEvent {
    /// The complete desired set for this instance.
    Desired {
        version: u64,
        tasks: Vec<DesiredTask>,
    },
    /// The connection was (re-)established: the agent re-sends the latest
    /// state of every task, since changes sent meanwhile may be lost.
    Connected,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("control plane unavailable: {0}")]
pub struct ControlPlaneError(pub String);

/// The agent's connection to the control plane.
pub trait ControlPlane: Send {
    /// The next event; `None` when the connection is closed for good.
    /// Must be cancel-safe: the agent polls it alongside other work.
    fn recv(&mut self) -> impl Future<Output = Option<ControlEvent>> + Send;
    /// Delivers state changes (each the latest state of one task). An error
    /// means not delivered: the agent keeps them and retries after the next
    /// [`ControlEvent::Connected`].
    fn send(
        &mut self,
        changes: Vec<TaskStateChange>,
    ) -> impl Future<Output = Result<(), ControlPlaneError>> + Send;
    /// The agent has acted on desired set `version`.
    fn applied(
        &mut self,
        version: u64,
    ) -> impl Future<Output = Result<(), ControlPlaneError>> + Send;
    /// Delivers one tick of container stats. Best effort: the agent does
    /// not keep samples that fail to go out.
    fn send_stats(
        &mut self,
        samples: Vec<TaskStats>,
    ) -> impl Future<Output = Result<(), ControlPlaneError>> + Send;
}

/// Errors that end [`run`].
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Engine(#[from] EngineStopped),
    #[error("container engine: {0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("task metadata endpoint: {0}")]
    Metadata(#[from] std::io::Error),
}

impl EngineConfig {
    /// The engine settings for an agent registered as `instance_arn`.
    pub fn from_agent(
        config: &AgentConfig,
        instance_arn: &str,
        metadata_base: Option<String>,
    ) -> EngineConfig {
        EngineConfig {
            cluster: config.cluster.clone(),
            instance_arn: instance_arn.to_string(),
            host_ip: config.host_ip.clone(),
            region: config.region.clone(),
            availability_zone: config.availability_zone.clone(),
            metadata_base,
            stop_timeout: config.stop_timeout,
            start_timeout: config.start_timeout,
            cleanup_delay: config.cleanup_delay,
            registry_auth: config.registry_auth.clone(),
            stats_interval: config.stats_interval,
            // Set by whoever has a sink for them (HostAgent: the control
            // plane's CloudWatch Logs API).
            logs: None,
        }
    }
}

/// Binds the task metadata endpoint on the Docker bridge gateway (see
/// [`crate::metadata`]) and returns the listener with the base URL to give
/// containers (`http://172.17.0.1:PORT/v4`).
pub async fn bind_metadata(
    docker: &DockerRuntime,
    port: u16,
) -> Result<(TcpListener, String), AgentError> {
    let gateway = docker.bridge_gateway().await?;
    let listener = TcpListener::bind((gateway, port)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, format!("http://{addr}/v4")))
}

/// Runs the agent until `shutdown` completes or the control plane closes:
/// starts the task engine (which adopts this instance's containers), serves
/// the metadata endpoint on `metadata` if given, feeds desired sets to the
/// engine and state changes to the control plane, and samples container
/// stats every `config.stats_interval` if set.
///
/// Returning leaves containers running, as a killed agent would; the next
/// run adopts them.
pub async fn run<R: ContainerRuntime, C: ControlPlane>(
    config: EngineConfig,
    runtime: Arc<R>,
    metadata: Option<TcpListener>,
    mut control: C,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let index = MetadataIndex::new();
    // Dropped (which ends the sampler) when this function returns.
    let (stats_tx, mut stats) = mpsc::channel(2);
    let sampling = config.stats_interval.is_some();
    if let Some(interval) = config.stats_interval {
        tokio::spawn(crate::stats::run(
            runtime.clone(),
            index.clone(),
            interval,
            stats_tx,
        ));
    }
    let (engine, mut changes) = Engine::start(runtime.clone(), config, index.clone());
    let (stop_metadata, metadata_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(listener) = metadata {
        let rt = runtime.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = metadata_stopped.await;
            };
            if let Err(e) = crate::metadata::serve(listener, index, rt, shutdown).await {
                tracing::error!(error = %e, "task metadata endpoint failed");
            }
        });
    }
    // Undelivered changes, latest per task.
    let mut pending: BTreeMap<String, TaskStateChange> = BTreeMap::new();
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            ev = control.recv() => match ev {
                Some(ControlEvent::Desired { version, tasks }) => {
                    if let Err(e) = engine.set_desired(version, tasks).await {
                        break Err(e.into());
                    }
                    crate::telemetry::DESIRED_APPLIED.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = control.applied(version).await {
                        tracing::debug!(error = %e, version, "could not acknowledge desired set");
                    }
                }
                Some(ControlEvent::Connected) => {
                    crate::telemetry::CONNECTS.fetch_add(1, Ordering::Relaxed);
                    match engine.resync().await {
                        Ok(all) => {
                            for c in all {
                                pending.insert(c.task_arn().to_string(), c);
                            }
                        }
                        Err(e) => break Err(e.into()),
                    }
                    flush(&mut control, &mut pending).await;
                }
                None => break Ok(()),
            },
            change = changes.recv() => match change {
                Some(change) => {
                    pending.insert(change.task_arn().to_string(), change);
                    // Batch whatever else is already waiting.
                    while let Ok(more) = changes.try_recv() {
                        pending.insert(more.task_arn().to_string(), more);
                    }
                    flush(&mut control, &mut pending).await;
                }
                None => break Err(EngineStopped.into()),
            },
            Some(samples) = stats.recv(), if sampling => {
                let n = samples.len() as u64;
                match control.send_stats(samples).await {
                    Ok(()) => {
                        crate::telemetry::STATS_SENT.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => tracing::debug!(error = %e, "container stats dropped"),
                }
            }
        }
    };
    let _ = stop_metadata.send(());
    result
}

async fn flush<C: ControlPlane>(control: &mut C, pending: &mut BTreeMap<String, TaskStateChange>) {
    if pending.is_empty() {
        return;
    }
    let batch: Vec<TaskStateChange> = pending.values().cloned().collect();
    let n = batch.len() as u64;
    match control.send(batch).await {
        Ok(()) => {
            crate::telemetry::CHANGES_SENT.fetch_add(n, Ordering::Relaxed);
            pending.clear()
        }
        Err(e) => {
            tracing::debug!(error = %e, waiting = pending.len(), "state changes kept for the next connection")
        }
    }
}

/// What the agent sends on a [`ChannelControlPlane`].
#[derive(Debug, Clone, PartialEq)]
pub enum AgentOutput {
    Changes(Vec<TaskStateChange>),
    Applied(u64),
    Stats(Vec<TaskStats>),
}

/// A [`ControlPlane`] over in-process channels.
pub struct ChannelControlPlane {
    events: mpsc::Receiver<ControlEvent>,
    output: mpsc::UnboundedSender<AgentOutput>,
}

impl ChannelControlPlane {
    /// The control plane, the sender that feeds it events, and the receiver
    /// of what the agent sends.
    pub fn new() -> (
        ChannelControlPlane,
        mpsc::Sender<ControlEvent>,
        mpsc::UnboundedReceiver<AgentOutput>,
    ) {
        let (etx, erx) = mpsc::channel(16);
        let (otx, orx) = mpsc::unbounded_channel();
        (
            ChannelControlPlane {
                events: erx,
                output: otx,
            },
            etx,
            orx,
        )
    }
}

impl ControlPlane for ChannelControlPlane {
    async fn recv(&mut self) -> Option<ControlEvent> {
        self.events.recv().await
    }

    async fn send(&mut self, changes: Vec<TaskStateChange>) -> Result<(), ControlPlaneError> {
        self.output
            .send(AgentOutput::Changes(changes))
            .map_err(|_| ControlPlaneError("receiver dropped".into()))
    }

    async fn applied(&mut self, version: u64) -> Result<(), ControlPlaneError> {
        self.output
            .send(AgentOutput::Applied(version))
            .map_err(|_| ControlPlaneError("receiver dropped".into()))
    }

    async fn send_stats(&mut self, samples: Vec<TaskStats>) -> Result<(), ControlPlaneError> {
        self.output
            .send(AgentOutput::Stats(samples))
            .map_err(|_| ControlPlaneError("receiver dropped".into()))
    }
}
