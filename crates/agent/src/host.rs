//! An agent on a real host, as `flotilla agent` and `flotilla dev` run it:
//! register the container instance with the ECS API (once, remembering the
//! ARN in the data directory so a restarted agent comes back as the same
//! instance and adopts its containers), then run the main loop over the
//! gateway connection.

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

/// The file in the data directory that remembers the registration.
pub const STATE_FILE: &str = "instance.json";

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
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

    /// Written to a temporary file and renamed, so a crash never leaves a
    /// half-written file behind.
    pub fn save(&self, data_dir: &Path) -> Result<(), HostError> {
        let io = |source| HostError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let tmp = data_dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).expect("serializable");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, data_dir.join(STATE_FILE)).map_err(io)
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
}

impl HostAgent {
    /// Connects to Docker, binds the task metadata endpoint and registers
    /// (or re-registers) the container instance. Retries while the server
    /// cannot be reached, until `shutdown`; an answer from the server that
    /// refuses the registration is an error.
    pub async fn register(
        client: Client,
        config: AgentConfig,
        data_dir: &Path,
        shutdown: impl Future<Output = ()>,
    ) -> Result<HostAgent, HostError> {
        let docker = DockerRuntime::connect().await.map_err(AgentError::from)?;
        let (metadata, metadata_base) = bind_metadata(&docker, config.metadata_port)
            .await
            .map_err(|source| HostError::Metadata {
                port: config.metadata_port,
                source,
            })?;
        let metadata_port = metadata.local_addr().map(|a| a.port()).unwrap_or(0);
        let request = registration(&config, &docker, metadata_port).await?;
        let saved = SavedInstance::load(data_dir).filter(|s| s.cluster == config.cluster);
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
        }
        .save(data_dir)?;
        tracing::info!(instance = %instance_arn, cluster = %config.cluster, "registered");
        Ok(HostAgent {
            client,
            config,
            docker,
            instance_arn,
            metadata,
            metadata_base,
        })
    }

    pub fn instance_arn(&self) -> &str {
        &self.instance_arn
    }

    /// Runs until `shutdown`. Containers keep running afterwards; the next
    /// agent on this data directory adopts them.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), HostError> {
        let engine =
            EngineConfig::from_agent(&self.config, &self.instance_arn, Some(self.metadata_base));
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
        };
        s.save(&dir.path().join("nested")).unwrap();
        assert_eq!(SavedInstance::load(&dir.path().join("nested")), Some(s));
        std::fs::write(dir.path().join(STATE_FILE), "not json").unwrap();
        assert_eq!(SavedInstance::load(dir.path()), None);
    }
}
