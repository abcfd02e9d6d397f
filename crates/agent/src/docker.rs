//! [`ContainerRuntime`] over the Docker Engine API (bollard).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HealthConfig,
    HealthStatusEnum, HostConfig, HostConfigLogConfig, PortBinding, ResourcesUlimits,
    VolumeCreateOptions,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, RemoveVolumeOptions, StatsOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::stream::{BoxStream, StreamExt};

use crate::jsonfile::{JsonFileReader, Step};
use crate::runtime::{
    BoundPort, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerSummary, Health, LogRecord,
    NetworkInfo, OutputStream, Protocol, RegistryAuth, RunState, RuntimeError, RuntimeEvent,
    RuntimeResult, VolumeSpec,
};

/// The real runtime: one Docker Engine.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// Read json-file logs from their files ([`crate::jsonfile`]) when
    /// possible, instead of through the API.
    direct_logs: bool,
}

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST` or /var/run/docker.sock)
    /// and negotiates the API version, so an older engine (20.10 speaks
    /// 1.41) is not sent requests it rejects.
    pub async fn connect() -> RuntimeResult<DockerRuntime> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| engine("connect", e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| engine("negotiate API version", e))?;
        Ok(DockerRuntime::from_client(docker))
    }

    pub fn from_client(docker: Docker) -> DockerRuntime {
        DockerRuntime {
            docker,
            direct_logs: std::env::var_os("FLOTILLA_AGENT_LOGS_VIA_API").is_none(),
        }
    }

    /// Reads containers' output through the engine's API only (never the
    /// json-file log itself).
    pub fn with_api_logs(mut self) -> DockerRuntime {
        self.direct_logs = false;
        self
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The engine's API version (e.g. `1.41`), for the
    /// `docker-remote-api` capabilities.
    pub async fn api_version(&self) -> RuntimeResult<String> {
        let v = self
            .docker
            .version()
            .await
            .map_err(|e| engine("version", e))?;
        Ok(v.api_version.unwrap_or_default())
    }

    /// The gateway address of Docker's default `bridge` network (the docker0
    /// address, e.g. 172.17.0.1): an address of this host that containers in
    /// bridge mode can reach. The metadata endpoint listens there.
    pub async fn bridge_gateway(&self) -> RuntimeResult<std::net::Ipv4Addr> {
        let net = self
            .docker
            .inspect_network(
                "bridge",
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(|e| engine("inspect bridge network", e))?;
        let configs = net.ipam.and_then(|i| i.config).unwrap_or_default();
        for c in &configs {
            if let Some(gw) = c.gateway.as_deref().and_then(|g| g.parse().ok()) {
                return Ok(gw);
            }
        }
        // Docker leaves Gateway out of the default bridge's IPAM config when
        // it was chosen automatically: it is the subnet's first address.
        for c in &configs {
            if let Some((addr, _)) = c.subnet.as_deref().and_then(|s| s.split_once('/')) {
                if let Ok(net) = addr.parse::<std::net::Ipv4Addr>() {
                    return Ok(std::net::Ipv4Addr::from(u32::from(net) + 1));
                }
            }
        }
        Err(RuntimeError::Engine {
            op: "inspect bridge network",
            message: "the bridge network has no IPv4 subnet".into(),
        })
    }
}

fn engine(op: &'static str, e: bollard::errors::Error) -> RuntimeError {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message,
        } => RuntimeError::NotFound(message),
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            RuntimeError::Engine { op, message }
        }
        other => RuntimeError::Engine {
            op,
            message: other.to_string(),
        },
    }
}

fn hash(map: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    if map.is_empty() {
        None
    } else {
        Some(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

fn non_empty(v: &[String]) -> Option<Vec<String>> {
    if v.is_empty() {
        None
    } else {
        Some(v.to_vec())
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let mut exposed = HashMap::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        exposed.insert(key.clone(), HashMap::new());
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.host_ip.clone()),
                // An empty host port asks Docker for an ephemeral one.
                host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
            });
    }
    let host_config = HostConfig {
        network_mode: Some(spec.network_mode.clone()),
        port_bindings: if bindings.is_empty() {
            None
        } else {
            Some(bindings)
        },
        links: non_empty(&spec.links),
        binds: non_empty(&spec.binds),
        volumes_from: non_empty(&spec.volumes_from),
        privileged: Some(spec.privileged),
        readonly_rootfs: Some(spec.readonly_rootfs),
        dns: non_empty(&spec.dns),
        dns_search: non_empty(&spec.dns_search),
        extra_hosts: non_empty(&spec.extra_hosts),
        cpu_shares: spec.cpu_shares,
        memory: spec.memory,
        memory_reservation: spec.memory_reservation,
        ulimits: if spec.ulimits.is_empty() {
            None
        } else {
            Some(
                spec.ulimits
                    .iter()
                    .map(|u| ResourcesUlimits {
                        name: Some(u.name.clone()),
                        soft: Some(u.soft),
                        hard: Some(u.hard),
                    })
                    .collect(),
            )
        },
        init: spec.init,
        cap_add: non_empty(&spec.cap_add),
        cap_drop: non_empty(&spec.cap_drop),
        shm_size: spec.shm_size,
        tmpfs: hash(&spec.tmpfs),
        security_opt: non_empty(&spec.security_opt),
        sysctls: hash(&spec.sysctls),
        log_config: spec.log_driver.as_ref().map(|d| HostConfigLogConfig {
            typ: Some(d.clone()),
            config: hash(&spec.log_options),
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.cmd.clone(),
        env: non_empty(&spec.env),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        labels: hash(&spec.labels),
        exposed_ports: if exposed.is_empty() {
            None
        } else {
            Some(exposed)
        },
        healthcheck: spec.health.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: Some(nanos(h.interval)),
            timeout: Some(nanos(h.timeout)),
            retries: Some(i64::from(h.retries)),
            start_period: Some(nanos(h.start_period)),
            start_interval: None,
        }),
        stop_timeout: spec
            .stop_timeout
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        network_disabled: if spec.network_disabled {
            Some(true)
        } else {
            None
        },
        host_config: Some(host_config),
        ..Default::default()
    }
}

fn container_info(r: ContainerInspectResponse) -> ContainerInfo {
    let config = r.config.unwrap_or_default();
    let state = r.state.unwrap_or_default();
    let run_state = match state.status {
        Some(ContainerStateStatusEnum::RUNNING)
        | Some(ContainerStateStatusEnum::PAUSED)
        | Some(ContainerStateStatusEnum::RESTARTING) => RunState::Running,
        Some(ContainerStateStatusEnum::CREATED) | Some(ContainerStateStatusEnum::EMPTY) | None => {
            RunState::Created
        }
        _ => RunState::Exited,
    };
    let health = state.health.as_ref().and_then(|h| match h.status {
        Some(HealthStatusEnum::STARTING) => Some(Health::Starting),
        Some(HealthStatusEnum::HEALTHY) => Some(Health::Healthy),
        Some(HealthStatusEnum::UNHEALTHY) => Some(Health::Unhealthy),
        _ => None,
    });
    let settings = r.network_settings.unwrap_or_default();
    let mut ports = Vec::new();
    for (key, binds) in settings.ports.unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        let protocol = if proto == "udp" {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        for b in binds.unwrap_or_default() {
            let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            ports.push(BoundPort {
                container_port,
                protocol,
                host_ip: b.host_ip.unwrap_or_default(),
                host_port,
            });
        }
    }
    ports.sort_by_key(|p| (p.container_port, p.protocol, p.host_port));
    let networks = settings
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|(name, ep)| NetworkInfo {
            name,
            ipv4: ep.ip_address.filter(|ip| !ip.is_empty()),
        })
        .collect();
    let zero_time = |t: Option<String>| t.filter(|t| !t.starts_with("0001-"));
    ContainerInfo {
        id: r.id.unwrap_or_default(),
        name: r
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.unwrap_or_default(),
        image_id: r.image,
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        env: config.env.unwrap_or_default(),
        state: run_state,
        exit_code: state.exit_code,
        oom_killed: state.oom_killed.unwrap_or(false),
        error: state.error.filter(|e| !e.is_empty()),
        created_at: r.created,
        started_at: zero_time(state.started_at),
        finished_at: zero_time(state.finished_at),
        health,
        ports,
        network_mode: r
            .host_config
            .and_then(|h| h.network_mode)
            .unwrap_or_default(),
        networks,
    }
}

impl ContainerRuntime for DockerRuntime {
    async fn image_present(&self, image: &str) -> RuntimeResult<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(engine("inspect image", e)),
        }
    }

    async fn pull(&self, image: &str, auth: Option<RegistryAuth>) -> RuntimeResult<()> {
        // An image without a tag or digest means `latest`, as `docker pull`
        // does; otherwise the engine pulls every tag of the repository.
        let (from_image, tag) = split_image(image);
        let options = CreateImageOptions {
            from_image: Some(from_image.to_string()),
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        let creds = auth.map(|a| DockerCredentials {
            username: a.username,
            password: a.password,
            auth: a.auth,
            email: a.email,
            serveraddress: a.server_address,
            ..Default::default()
        });
        let mut progress = self.docker.create_image(Some(options), None, creds);
        while let Some(item) = progress.next().await {
            let info = item.map_err(|e| engine("pull", e))?;
            if let Some(err) = info.error {
                return Err(RuntimeError::Engine {
                    op: "pull",
                    message: err,
                });
            }
        }
        Ok(())
    }

    async fn ensure_volume(&self, spec: &VolumeSpec) -> RuntimeResult<()> {
        if self.docker.inspect_volume(&spec.name).await.is_ok() {
            return Ok(());
        }
        let options = VolumeCreateOptions {
            name: Some(spec.name.clone()),
            driver: spec.driver.clone(),
            driver_opts: hash(&spec.driver_opts),
            labels: hash(&spec.labels),
            ..Default::default()
        };
        self.docker
            .create_volume(options)
            .await
            .map_err(|e| engine("create volume", e))?;
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> RuntimeResult<()> {
        self.docker
            .remove_volume(name, None::<RemoveVolumeOptions>)
            .await
            .map_err(|e| engine("remove volume", e))
    }

    async fn create(&self, spec: &ContainerSpec) -> RuntimeResult<String> {
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), create_body(spec))
            .await
            .map_err(|e| engine("create container", e))?;
        Ok(created.id)
    }

    async fn start(&self, id: &str) -> RuntimeResult<()> {
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| engine("start container", e))
    }

    async fn stop(&self, id: &str, timeout: Duration) -> RuntimeResult<()> {
        let t = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptions {
            t: Some(t),
            signal: None,
        };
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(engine("stop container", e)),
        }
    }

    async fn remove(&self, id: &str) -> RuntimeResult<()> {
        let options = RemoveContainerOptions {
            force: true,
            v: false,
            link: false,
        };
        self.docker
            .remove_container(id, Some(options))
            .await
            .map_err(|e| engine("remove container", e))
    }

    async fn inspect(&self, id: &str) -> RuntimeResult<ContainerInfo> {
        let r = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| engine("inspect container", e))?;
        Ok(container_info(r))
    }

    async fn list(&self, key: &str, value: &str) -> RuntimeResult<Vec<ContainerSummary>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{key}={value}")])]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| engine("list containers", e))?;
        Ok(list
            .into_iter()
            .map(|c| ContainerSummary {
                id: c.id.unwrap_or_default(),
                labels: c.labels.unwrap_or_default().into_iter().collect(),
            })
            .collect())
    }

    fn events(&self, key: &str, value: &str) -> BoxStream<'static, RuntimeResult<RuntimeEvent>> {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), vec![format!("{key}={value}")]),
        ]);
        let options = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        self.docker
            .events(Some(options))
            .map(|item| {
                let msg = item.map_err(|e| engine("events", e))?;
                let actor = msg.actor.unwrap_or_default();
                Ok(RuntimeEvent {
                    id: actor.id.unwrap_or_default(),
                    action: msg.action.unwrap_or_default(),
                    // Docker puts the container's labels (and name, image)
                    // into the event's attributes.
                    labels: actor.attributes.unwrap_or_default().into_iter().collect(),
                })
            })
            .boxed()
    }

    async fn stats(&self, id: &str) -> RuntimeResult<serde_json::Value> {
        // One shot: answer with the current reading at once, instead of
        // waiting a second for a second reading (`precpu_stats`); the
        // sampler keeps the previous reading itself (see crate::stats).
        let options = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut s = self.docker.stats(id, Some(options));
        match s.next().await {
            Some(Ok(stats)) => serde_json::to_value(stats).map_err(|e| RuntimeError::Engine {
                op: "stats",
                message: e.to_string(),
            }),
            Some(Err(e)) => Err(engine("stats", e)),
            None => Err(RuntimeError::Engine {
                op: "stats",
                message: "no sample".into(),
            }),
        }
    }

    fn logs(&self, id: &str, since: i64) -> BoxStream<'static, RuntimeResult<LogRecord>> {
        let (runtime, id) = (self.clone(), id.to_string());
        let direct = self.direct_logs;
        futures_util::stream::once(async move {
            if direct {
                if let Some(stream) = runtime.logs_from_file(&id, since).await {
                    return stream;
                }
            }
            runtime.logs_from_api(&id, since)
        })
        .flatten()
        .boxed()
    }
}

/// How often a reader at the end of a json-file log looks for more, while
/// the container has written within [`FILE_BUSY`]; then [`FILE_POLL_IDLE`]
/// (so that many quiet containers cost little).
const FILE_POLL: Duration = Duration::from_millis(20);
const FILE_POLL_IDLE: Duration = Duration::from_millis(100);
const FILE_BUSY: Duration = Duration::from_secs(1);
/// How often a reader at the end of the log asks whether the container
/// still runs: this soon after the last record, doubling while it stays
/// quiet, up to [`FILE_STATE_CHECK_MAX`].
const FILE_STATE_CHECK: Duration = Duration::from_millis(250);
const FILE_STATE_CHECK_MAX: Duration = Duration::from_secs(2);

struct FileFollow {
    runtime: DockerRuntime,
    id: String,
    reader: Option<JsonFileReader>,
    checked: Option<std::time::Instant>,
    /// The wait before the next state check.
    check_every: Duration,
    /// When the last records were read.
    active: std::time::Instant,
    /// The container was seen stopped: one more read to the end, then done.
    last_read: bool,
}

impl DockerRuntime {
    /// Reads the container's output from the engine's API (any log driver
    /// that can be read back, any engine, local or not).
    pub fn logs_from_api(
        &self,
        id: &str,
        since: i64,
    ) -> BoxStream<'static, RuntimeResult<LogRecord>> {
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            // The API takes whole seconds; callers skip what they have seen.
            since: i32::try_from(since).unwrap_or(i32::MAX),
            timestamps: true,
            ..Default::default()
        };
        self.docker
            .logs(id, Some(options))
            .filter_map(|item| async move {
                match item {
                    Ok(output) => log_record(output).transpose(),
                    Err(e) => Some(Err(engine("logs", e))),
                }
            })
            .boxed()
    }

    /// Reads a json-file container's log file itself ([`crate::jsonfile`]),
    /// when the engine says where it is and this process can open it (the
    /// agent runs as root beside a local engine); `None` otherwise.
    pub async fn logs_from_file(
        &self,
        id: &str,
        since: i64,
    ) -> Option<BoxStream<'static, RuntimeResult<LogRecord>>> {
        let r = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .ok()?;
        let driver = r
            .host_config
            .as_ref()
            .and_then(|h| h.log_config.as_ref())
            .and_then(|l| l.typ.clone());
        if driver.as_deref() != Some("json-file") {
            return None;
        }
        let path = std::path::PathBuf::from(r.log_path.filter(|p| !p.is_empty())?);
        let opened = tokio::task::spawn_blocking(move || {
            JsonFileReader::open(&path, since).map_err(|e| (path, e))
        })
        .await
        .ok()?;
        let reader = match opened {
            Ok(reader) => reader,
            Err((path, e)) => {
                tracing::debug!(container = id, log = %path.display(), error = %e,
                    "cannot read the container's json-file log; reading it through the engine's API");
                return None;
            }
        };
        let follow = FileFollow {
            runtime: self.clone(),
            id: id.to_string(),
            reader: Some(reader),
            checked: None,
            check_every: FILE_STATE_CHECK,
            active: std::time::Instant::now(),
            last_read: false,
        };
        let chunks = futures_util::stream::unfold(Some(follow), |state| async move {
            let mut f = state?;
            loop {
                let mut reader = f.reader.take()?;
                let (reader, step) = match tokio::task::spawn_blocking(move || {
                    let step = reader.step();
                    (reader, step)
                })
                .await
                {
                    Ok(done) => done,
                    Err(e) => {
                        let e = RuntimeError::Engine {
                            op: "logs",
                            message: format!("log file reader failed: {e}"),
                        };
                        return Some((Err(e), None));
                    }
                };
                f.reader = Some(reader);
                match step {
                    Ok(Step::Records(records)) => {
                        f.active = std::time::Instant::now();
                        f.check_every = FILE_STATE_CHECK;
                        return Some((Ok(records), Some(f)));
                    }
                    Ok(Step::Idle) if f.last_read => return None,
                    Ok(Step::Idle) => {
                        if f.checked.is_none_or(|t| t.elapsed() >= f.check_every) {
                            if f.checked.is_some_and(|t| t < f.active) {
                                f.check_every = FILE_STATE_CHECK;
                            } else if f.checked.is_some() {
                                f.check_every = (f.check_every * 2).min(FILE_STATE_CHECK_MAX);
                            }
                            f.checked = Some(std::time::Instant::now());
                            match f.runtime.inspect(&f.id).await {
                                Ok(info) if info.state == RunState::Running => {}
                                // Stopped (or gone): Docker has written its
                                // last lines; read to the end once more.
                                Ok(_) | Err(RuntimeError::NotFound(_)) => {
                                    f.last_read = true;
                                    continue;
                                }
                                Err(_) => {}
                            }
                        }
                        let busy = f.active.elapsed() < FILE_BUSY;
                        tokio::time::sleep(if busy { FILE_POLL } else { FILE_POLL_IDLE }).await;
                    }
                    Err(e) => {
                        let e = RuntimeError::Engine {
                            op: "logs",
                            message: format!("reading the json-file log: {e}"),
                        };
                        return Some((Err(e), None));
                    }
                }
            }
        });
        Some(
            chunks
                .flat_map(|chunk| match chunk {
                    Ok(records) => {
                        futures_util::stream::iter(records.into_iter().map(Ok)).left_stream()
                    }
                    Err(e) => futures_util::stream::once(std::future::ready(Err(e))).right_stream(),
                })
                .boxed(),
        )
    }
}

/// One frame of `GET /containers/{id}/logs?timestamps=1`: the engine's
/// RFC 3339 timestamp (nanoseconds), a space, then the logged bytes.
fn log_record(output: LogOutput) -> RuntimeResult<Option<LogRecord>> {
    let (stream, message) = match output {
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            (OutputStream::Stdout, message)
        }
        LogOutput::StdErr { message } => (OutputStream::Stderr, message),
        LogOutput::StdIn { .. } => return Ok(None),
    };
    let bad = || RuntimeError::Engine {
        op: "logs",
        message: format!(
            "a log record without a timestamp: {:?}",
            String::from_utf8_lossy(&message[..message.len().min(64)])
        ),
    };
    let space = message.iter().position(|b| *b == b' ').ok_or_else(bad)?;
    let stamp = std::str::from_utf8(&message[..space]).map_err(|_| bad())?;
    let timestamp =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
            .map_err(|_| bad())?
            .unix_timestamp_nanos();
    Ok(Some(LogRecord {
        stream,
        timestamp: i64::try_from(timestamp).map_err(|_| bad())?,
        bytes: message.slice(space + 1..),
    }))
}

/// `repo[:tag]` or `repo@digest` → (repo, tag-or-digest), defaulting to
/// `latest`. A `:` inside the registry host (`host:5000/img`) is not a tag.
pub fn split_image(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    let last_slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], &image[last_slash + i + 1..]),
        None => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_image_references() {
        assert_eq!(split_image("busybox"), ("busybox", "latest"));
        assert_eq!(split_image("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            split_image("reg:5000/team/app"),
            ("reg:5000/team/app", "latest")
        );
        assert_eq!(
            split_image("reg:5000/team/app:v2"),
            ("reg:5000/team/app", "v2")
        );
        assert_eq!(split_image("app@sha256:abc"), ("app", "sha256:abc"));
    }

    #[test]
    fn reads_log_frames_with_their_timestamps() {
        let frame = |s: &'static str| bytes::Bytes::from_static(s.as_bytes());
        let r = log_record(LogOutput::StdErr {
            message: frame("2024-05-01T10:00:00.123456789Z hello world\n"),
        })
        .unwrap()
        .unwrap();
        assert_eq!(r.stream, OutputStream::Stderr);
        assert_eq!(r.timestamp, 1_714_557_600_123_456_789);
        assert_eq!(&r.bytes[..], b"hello world\n");
        // A piece of a long line has no newline; it stays as it is.
        let r = log_record(LogOutput::StdOut {
            message: frame("2024-05-01T10:00:00Z part"),
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            (r.stream, &r.bytes[..]),
            (OutputStream::Stdout, &b"part"[..])
        );
        assert!(log_record(LogOutput::StdOut {
            message: frame("no-timestamp")
        })
        .is_err());
    }
}
