//! An agent on a real host, as `flotilla agent` and `flotilla dev` run it:
//! lock its state folder ([`StateDir`]), register the container instance
//! with the ECS API (once, remembering the ARN in the folder so a restarted
//! agent comes back as the same instance and adopts its containers), then
//! run the main loop over the gateway connection.
//!
//! Where the task metadata endpoint listens: on the Docker bridge gateway
//! (see [`crate::metadata`]), the one address of the host that every
//! bridge-mode container reaches whatever `--host-ip` says (127.0.0.x would
//! be the container's own loopback). Agents that share a machine share
//! that address, so they are kept apart by port:
//! - `--metadata-port N` (`AgentConfig::metadata_port`) is used as given;
//! - the only agent of a machine (no `--host-ip`) takes ECS's 51679;
//! - an agent given `--host-ip` lets the kernel pick a free port the first
//!   time and remembers it in its state folder, so containers it adopts
//!   after a restart keep a working `ECS_CONTAINER_METADATA_URI_V4`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotilla_client::{Client, ClientError};
use flotilla_model::ecs;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::config::{self, AgentConfig};
use crate::control::{self, bind_metadata, AgentError};
use crate::docker::DockerRuntime;
use crate::engine::EngineConfig;
use crate::gateway::{GatewayConfig, WsControlPlane};
use crate::logs::{HttpLogSink, LogShipping};
use crate::state_dir::{write_atomic, StateDir, StateDirError};

/// The file in the data directory that remembers the registration.
pub const STATE_FILE: &str = "instance.json";

/// The folder in the state folder where log shipping keeps its place.
pub const LOGS_DIR: &str = "logs";

/// ECS's port for the task metadata endpoint: the only agent of a machine
/// uses it.
pub const DEFAULT_METADATA_PORT: u16 = 51679;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    #[error("registering the container instance in cluster {cluster}: {source}")]
    Register {
        cluster: String,
        source: ClientError,
    },
    #[error("task metadata endpoint on port {port} (pick another with --metadata-port): {source}")]
    Metadata { port: u16, source: AgentError },
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("stopped before the instance was registered")]
    Interrupted,
}

/// What the data directory remembers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedInstance {
    pub cluster: String,
    pub container_instance_arn: String,
    /// The endpoint it was registered with (informational).
    #[serde(default)]
    pub endpoint: String,
    /// The address host ports were bound on (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// The task metadata endpoint's port, which the instance's containers
    /// hold in their environment: reused by the next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_port: Option<u16>,
}

impl SavedInstance {
    pub fn load(data_dir: &Path) -> Option<SavedInstance> {
        let text = std::fs::read_to_string(data_dir.join(STATE_FILE)).ok()?;
        match serde_json::from_str(&text) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, file = %data_dir.join(STATE_FILE).display(), "ignoring an unreadable instance file");
                None
            }
        }
    }

    /// Written to a temporary file, synced and renamed, so a crash never
    /// leaves a half-written file behind.
    pub fn save(&self, data_dir: &Path) -> Result<(), HostError> {
        let io = |source| HostError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let text = serde_json::to_string_pretty(self).expect("serializable");
        write_atomic(data_dir, STATE_FILE, text.as_bytes()).map_err(io)
    }
}

/// The metadata endpoint's port for this run (see the module docs).
fn metadata_port(config: &AgentConfig, saved: Option<&SavedInstance>) -> u16 {
    match config.metadata_port {
        Some(port) => port,
        None if config.host_ip == "0.0.0.0" => DEFAULT_METADATA_PORT,
        // 0: the kernel picks one, remembered once registered.
        None => saved.and_then(|s| s.metadata_port).unwrap_or(0),
    }
}

/// A registered agent, ready to [`run`](HostAgent::run).
pub struct HostAgent {
    client: Client,
    config: AgentConfig,
    docker: DockerRuntime,
    instance_arn: String,
    metadata: TcpListener,
    metadata_base: String,
    /// Locked for as long as the agent runs.
    state: StateDir,
}

impl HostAgent {
    /// Locks the state folder `data_dir` (refused if another agent holds
    /// it), connects to Docker, binds the task metadata endpoint and
    /// registers (or re-registers) the container instance. Retries while
    /// the server cannot be reached, until `shutdown`; an answer from the
    /// server that refuses the registration is an error.
    pub async fn register(
        client: Client,
        config: AgentConfig,
        data_dir: &Path,
        shutdown: impl Future<Output = ()>,
    ) -> Result<HostAgent, HostError> {
        let state = StateDir::open(data_dir)?;
        let previous = SavedInstance::load(data_dir);
        let docker = DockerRuntime::connect().await.map_err(AgentError::from)?;
        let port = metadata_port(&config, previous.as_ref());
        let (metadata, metadata_base) = bind_metadata(&docker, port)
            .await
            .map_err(|source| HostError::Metadata { port, source })?;
        let metadata_port = metadata.local_addr().map(|a| a.port()).unwrap_or(0);
        let request = registration(&config, &docker, metadata_port).await?;
        let saved = previous.filter(|s| s.cluster == config.cluster);
        let register = async {
            let mut delay = Duration::from_millis(100);
            loop {
                match register_once(&client, &request, saved.as_ref()).await {
                    Err(HostError::Register {
                        source: ClientError::Transport(e),
                        ..
                    }) => {
                        tracing::warn!(error = %e, endpoint = client.endpoint(), "cannot reach the control plane; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                    other => break other,
                }
            }
        };
        let instance_arn = tokio::select! {
            r = register => r?,
            _ = shutdown => return Err(HostError::Interrupted),
        };
        SavedInstance {
            cluster: config.cluster.clone(),
            container_instance_arn: instance_arn.clone(),
            endpoint: client.endpoint().to_string(),
            host_ip: Some(config.host_ip.clone()),
            metadata_port: Some(metadata_port),
        }
        .save(data_dir)?;
        tracing::info!(instance = %instance_arn, cluster = %config.cluster, metadata = %metadata_base, "registered");
        Ok(HostAgent {
            client,
            config,
            docker,
            instance_arn,
            metadata,
            metadata_base,
            state,
        })
    }

    pub fn instance_arn(&self) -> &str {
        &self.instance_arn
    }

    /// `http://ADDR:PORT/v4`: where the task metadata endpoint listens.
    pub fn metadata_base(&self) -> &str {
        &self.metadata_base
    }

    /// The (locked) state folder.
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Runs until `shutdown`. Containers keep running afterwards; the next
    /// agent on this data directory adopts them.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), HostError> {
        let mut engine =
            EngineConfig::from_agent(&self.config, &self.instance_arn, Some(self.metadata_base));
        // awslogs output goes to the control plane's CloudWatch Logs API
        // (or a container's awslogs-endpoint), signed as this agent.
        engine.logs = Some(LogShipping {
            sink: Arc::new(HttpLogSink::new(&self.client)),
            state_dir: self.state.path().join(LOGS_DIR),
        });
        let gateway = WsControlPlane::start(GatewayConfig::new(
            self.client,
            &self.config.cluster,
            &self.instance_arn,
        ));
        control::run(
            engine,
            Arc::new(self.docker),
            Some(self.metadata),
            gateway,
            shutdown,
        )
        .await?;
        Ok(())
    }
}

/// The RegisterContainerInstance request for this host.
async fn registration(
    config: &AgentConfig,
    docker: &DockerRuntime,
    metadata_port: u16,
) -> Result<ecs::RegisterContainerInstanceRequest, HostError> {
    let api_version = docker.api_version().await.map_err(AgentError::from)?;
    let docker_version = docker
        .client()
        .version()
        .await
        .ok()
        .and_then(|v| v.version)
        .unwrap_or_default();
    let (cpu, memory) = config::detect_resources(config.reserved_memory_mib);
    // The metadata endpoint listens on the bridge gateway; with the default
    // host IP (all addresses) a task binding the same port would clash.
    let reserved: Vec<u16> = if config.host_ip == "0.0.0.0" {
        vec![metadata_port]
    } else {
        Vec::new()
    };
    Ok(ecs::RegisterContainerInstanceRequest {
        cluster: Some(config.cluster.clone()),
        total_resources: Some(config::total_resources(cpu, memory, &reserved)),
        attributes: Some(config::attributes(config, &api_version)),
        version_info: Some(ecs::VersionInfo {
            agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            agent_hash: None,
            docker_version: Some(format!("DockerVersion: {docker_version}")),
        }),
        ..Default::default()
    })
}

/// Registers once: as the saved instance if there is one (falling back to
/// a new instance if the server no longer knows it).
async fn register_once(
    client: &Client,
    request: &ecs::RegisterContainerInstanceRequest,
    saved: Option<&SavedInstance>,
) -> Result<String, HostError> {
    let cluster = request.cluster.clone().unwrap_or_default();
    let call = |req: ecs::RegisterContainerInstanceRequest| async move {
        let resp: ecs::RegisterContainerInstanceResponse =
            client.call("RegisterContainerInstance", &req).await?;
        resp.container_instance
            .and_then(|i| i.container_instance_arn)
            .ok_or_else(|| {
                ClientError::Transport("the answer carries no containerInstanceArn".into())
            })
    };
    if let Some(saved) = saved {
        let mut again = request.clone();
        again.container_instance_arn = Some(saved.container_instance_arn.clone());
        match call(again).await {
            Ok(arn) => return Ok(arn),
            Err(ClientError::Api { code, message, .. }) if code.contains("InvalidParameter") => {
                // The server lost or deregistered the instance: its
                // containers stay labelled with the old ARN, and nothing
                // will manage them.
                tracing::warn!(instance = %saved.container_instance_arn, %message,
                    "the control plane does not know this instance any more; registering a new one");
            }
            Err(source) => return Err(HostError::Register { cluster, source }),
        }
    }
    call(request.clone())
        .await
        .map_err(|source| HostError::Register { cluster, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_instance_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SavedInstance::load(dir.path()), None);
        let s = SavedInstance {
            cluster: "c".into(),
            container_instance_arn: "arn:aws:ecs:us-east-1:0:container-instance/c/x".into(),
            endpoint: "http://127.0.0.1:1".into(),
            host_ip: Some("127.0.0.2".into()),
            metadata_port: Some(40001),
        };
        s.save(&dir.path().join("nested")).unwrap();
        assert_eq!(SavedInstance::load(&dir.path().join("nested")), Some(s));
        std::fs::write(dir.path().join(STATE_FILE), "not json").unwrap();
        assert_eq!(SavedInstance::load(dir.path()), None);
        // Files written before the port was remembered still load.
        std::fs::write(
            dir.path().join(STATE_FILE),
            r#"{"cluster": "c", "containerInstanceArn": "arn"}"#,
        )
        .unwrap();
        assert_eq!(SavedInstance::load(dir.path()).unwrap().metadata_port, None);
    }

    #[test]
    fn metadata_port_rule() {
        let mut config = AgentConfig::default();
        let saved = SavedInstance {
            cluster: "c".into(),
            container_instance_arn: "arn".into(),
            endpoint: String::new(),
            host_ip: None,
            metadata_port: Some(40001),
        };
        // The only agent of the machine: ECS's port.
        assert_eq!(metadata_port(&config, Some(&saved)), DEFAULT_METADATA_PORT);
        // One of several: the port it had, else one the kernel picks.
        config.host_ip = "127.0.0.2".into();
        assert_eq!(metadata_port(&config, Some(&saved)), 40001);
        assert_eq!(metadata_port(&config, None), 0);
        // Told: as told.
        config.metadata_port = Some(6000);
        assert_eq!(metadata_port(&config, Some(&saved)), 6000);
    }
}
