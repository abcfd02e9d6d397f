//! The narrow interface between the task engine and a container engine.
//!
//! The engine only ever needs the operations below, expressed in Flotilla's
//! own small types rather than Docker's, so that the engine logic can be
//! tested against [`crate::fake::FakeRuntime`] and the Docker specifics stay in
//! [`crate::docker`].

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures_util::stream::BoxStream;

/// What went wrong talking to the container engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("no such container or image: {0}")]
    NotFound(String),
    #[error("{op}: {message}")]
    Engine { op: &'static str, message: String },
}

pub type RuntimeResult<T> = Result<T, RuntimeError>;

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A port to publish: `host_port: None` asks the engine to pick one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: String,
    pub host_port: Option<u16>,
}

/// A port as the engine actually bound it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPort {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: String,
    pub host_port: u16,
}

/// A health check the engine runs (Docker's HEALTHCHECK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    /// Docker form: `["CMD", …]`, `["CMD-SHELL", "…"]` or `["NONE"]`.
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UlimitSpec {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Everything needed to create one container; built from an ECS container
/// definition by [`crate::spec`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    pub health: Option<HealthSpec>,
    pub stop_timeout: Option<Duration>,
    /// `bridge`, `host`, `none`.
    pub network_mode: String,
    pub network_disabled: bool,
    /// Docker link syntax `container:alias`.
    pub links: Vec<String>,
    /// Docker bind syntax `source:target[:ro]` (host paths and named volumes).
    pub binds: Vec<String>,
    /// Docker syntax `container[:ro]`.
    pub volumes_from: Vec<String>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    /// `host:ip`.
    pub extra_hosts: Vec<String>,
    pub cpu_shares: Option<i64>,
    /// Hard limit, bytes.
    pub memory: Option<i64>,
    /// Soft limit, bytes.
    pub memory_reservation: Option<i64>,
    pub ulimits: Vec<UlimitSpec>,
    pub init: Option<bool>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub shm_size: Option<i64>,
    pub tmpfs: BTreeMap<String, String>,
    pub security_opt: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub log_driver: Option<String>,
    pub log_options: BTreeMap<String, String>,
}

/// Coarse container state, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Created,
    Running,
    /// Exited, dead or being removed: it will not run again on its own.
    Exited,
}

/// Docker's health-check verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    pub name: String,
    pub ipv4: Option<String>,
}

/// What inspecting a container tells the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub env: Vec<String>,
    pub state: RunState,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// The engine's error for a container that failed to start.
    pub error: Option<String>,
    /// RFC 3339 timestamps as the engine gives them.
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub health: Option<Health>,
    pub ports: Vec<BoundPort>,
    pub network_mode: String,
    pub networks: Vec<NetworkInfo>,
}

/// A container known to the engine, as listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    pub labels: BTreeMap<String, String>,
}

/// Something happened to a container: the engine re-inspects it to learn
/// what (level-triggered, so a missed detail cannot go stale).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub id: String,
    /// `start`, `die`, `health_status: healthy`, `oom`, `destroy`, …
    pub action: String,
    pub labels: BTreeMap<String, String>,
}

/// Which output of a container a log record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// One record of a container's output as the engine logged it: a line with
/// its newline, or a piece of a longer line (without one; Docker splits
/// lines at 16 KiB, and the last output of a container may lack a newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub stream: OutputStream,
    /// When the engine received it, nanoseconds since the epoch.
    pub timestamp: i64,
    pub bytes: bytes::Bytes,
}

/// Registry credentials for a pull (Docker's X-Registry-Auth).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub email: Option<String>,
    /// base64 `user:password`, as in `.dockercfg`.
    pub auth: Option<String>,
    pub server_address: Option<String>,
}

/// A named volume to create (dockerVolumeConfiguration).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeSpec {
    pub name: String,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// The container engine operations the agent uses. Every future is `Send`
/// so the engine can drive them from spawned tasks.
pub trait ContainerRuntime: Send + Sync + 'static {
    fn image_present(&self, image: &str) -> impl Future<Output = RuntimeResult<bool>> + Send;
    fn pull(
        &self,
        image: &str,
        auth: Option<RegistryAuth>,
    ) -> impl Future<Output = RuntimeResult<()>> + Send;
    /// Creates a named volume unless it exists.
    fn ensure_volume(&self, spec: &VolumeSpec) -> impl Future<Output = RuntimeResult<()>> + Send;
    fn remove_volume(&self, name: &str) -> impl Future<Output = RuntimeResult<()>> + Send;
    /// Creates a container and returns its id.
    fn create(&self, spec: &ContainerSpec) -> impl Future<Output = RuntimeResult<String>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = RuntimeResult<()>> + Send;
    /// SIGTERM (or the image's stop signal), then SIGKILL after `timeout`.
    fn stop(&self, id: &str, timeout: Duration) -> impl Future<Output = RuntimeResult<()>> + Send;
    fn remove(&self, id: &str) -> impl Future<Output = RuntimeResult<()>> + Send;
    fn inspect(&self, id: &str) -> impl Future<Output = RuntimeResult<ContainerInfo>> + Send;
    /// All containers (running or not) carrying label `key=value`.
    fn list(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = RuntimeResult<Vec<ContainerSummary>>> + Send;
    /// Container events for containers carrying label `key=value`, from now
    /// on. The stream ends or errs when the engine connection breaks.
    fn events(&self, key: &str, value: &str) -> BoxStream<'static, RuntimeResult<RuntimeEvent>>;
    /// One sample of the engine's resource statistics for a container, in
    /// Docker's stats JSON (what the task metadata endpoint serves), taken
    /// at once: `precpu_stats` may be empty (see [`crate::stats`]).
    fn stats(&self, id: &str) -> impl Future<Output = RuntimeResult<serde_json::Value>> + Send;
    /// The container's logged output, stdout and stderr in the order the
    /// engine logged them, from the records of second `since` (epoch
    /// seconds; 0: from the start) on, following new output while the
    /// container runs. Ends after the last record once the container is not
    /// running (or at once if it never ran).
    fn logs(&self, id: &str, since: i64) -> BoxStream<'static, RuntimeResult<LogRecord>>;
}
