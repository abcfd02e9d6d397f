//! Simulated agents for tests and scale benchmarks.
//!
//! A [`SimAgent`] registers a container instance through the ECS API, holds
//! the agent gateway connection exactly as the real agent does, and answers
//! every desired set by reporting its tasks RUNNING (or STOPPED when the
//! control plane wants them stopped) without running anything. Behaviour
//! switches ([`Behaviour`]) make tasks fail to start, exit after a while, or
//! report a health status, so the controllers can be driven through their
//! paths without Docker.
//!
//! [`start_hosts`] brings up many hosts at once; it is what `flotilla sim`
//! and the scale benchmark (`benches/scale.rs`) run.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_client::Client;
use flotilla_model::agent::{AgentMessage, ContainerStats, TaskStateChange, TaskStats};
use flotilla_model::ecs;
use flotilla_model::lifecycle::TaskStatus;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// How a simulated host's tasks behave.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Tasks of these task definition families fail to start (STOPPED,
    /// TaskFailedToStart) instead of running.
    pub fail_families: Vec<String>,
    /// Tasks of these families report UNHEALTHY once RUNNING.
    pub unhealthy_families: Vec<String>,
    /// Tasks of these families report HEALTHY once RUNNING.
    pub healthy_families: Vec<String>,
}

/// What each simulated task of a family uses, as its host reports it in
/// container stats every [`STATS_INTERVAL`] (the control plane turns them
/// into `AWS/ECS` utilization). Simulated tasks run nothing, so a test
/// says what they use; a family with no usage set sends no stats.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TaskUsage {
    /// CPU units (1,024 per core) the task uses.
    pub cpu_units: f64,
    /// MiB the task uses.
    pub memory_mib: f64,
}

/// How often a simulated host sends stats: the real agent's default.
pub const STATS_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("registering: {0}")]
    Register(#[from] flotilla_client::ClientError),
    #[error("connecting to the gateway: {0}")]
    Connect(String),
    #[error("simulated host {index}")]
    Host {
        index: usize,
        #[source]
        source: Box<SimError>,
    },
}

/// The attribute that places a host in an availability zone.
pub const ZONE_ATTRIBUTE: &str = "ecs.availability-zone";

/// How many hosts [`start_hosts`] registers and connects at once: enough to
/// keep the control plane busy, few enough not to open thousands of
/// connections in the same instant.
pub const START_CONCURRENCY: usize = 100;

/// How long [`SimAgent::start`] waits for the gateway's first desired set.
const FIRST_DESIRED_TIMEOUT: Duration = Duration::from_secs(30);

/// Registers and connects `count` hosts like `template`, at most
/// [`START_CONCURRENCY`] at a time. With `zones`, host `i` is placed in
/// `zones[i % zones.len()]` (the [`ZONE_ATTRIBUTE`] attribute, replacing the
/// template's). `progress(done, count)` is called after each host is
/// connected. The hosts come back in order (host `i` at index `i`); on the
/// first host that fails, the error names it and the hosts already started
/// are dropped, which disconnects them.
pub async fn start_hosts(
    client: &Client,
    template: &HostSpec,
    count: usize,
    zones: &[String],
    behaviour: &Behaviour,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<SimAgent>, SimError> {
    let mut started = futures_util::stream::iter(0..count)
        .map(|index| {
            let mut spec = template.clone();
            if !zones.is_empty() {
                spec.attributes.insert(
                    ZONE_ATTRIBUTE.to_string(),
                    zones[index % zones.len()].clone(),
                );
            }
            let behaviour = behaviour.clone();
            async move {
                SimAgent::start(client, spec, behaviour)
                    .await
                    .map_err(|e| SimError::Host {
                        index,
                        source: Box::new(e),
                    })
            }
        })
        .buffered(START_CONCURRENCY);
    let mut agents = Vec::with_capacity(count);
    while let Some(agent) = started.try_next().await? {
        agents.push(agent);
        progress(agents.len(), count);
    }
    Ok(agents)
}

/// One simulated container instance.
pub struct SimAgent {
    pub instance_arn: String,
    behaviour: Arc<Mutex<Behaviour>>,
    handle: JoinHandle<()>,
    /// The connection's outgoing messages, for [`SimAgent::send`].
    out: tokio::sync::mpsc::UnboundedSender<AgentMessage>,
    /// Usage by task definition family, for [`SimAgent::set_usage`].
    usage: Arc<Mutex<BTreeMap<String, TaskUsage>>>,
}

/// What a new simulated host looks like.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub cluster: String,
    pub cpu: i32,
    pub memory: i32,
    pub attributes: BTreeMap<String, String>,
}

impl HostSpec {
    pub fn new(cluster: &str, cpu: i32, memory: i32) -> Self {
        HostSpec {
            cluster: cluster.to_string(),
            cpu,
            memory,
            attributes: BTreeMap::new(),
        }
    }

    pub fn attribute(mut self, name: &str, value: &str) -> Self {
        self.attributes.insert(name.to_string(), value.to_string());
        self
    }
}

impl SimAgent {
    /// Registers a host and connects it; returns once the gateway has sent
    /// the first desired set, which it does only after recording the
    /// instance as `agentConnected`.
    pub async fn start(
        client: &Client,
        spec: HostSpec,
        behaviour: Behaviour,
    ) -> Result<SimAgent, SimError> {
        let int = |name: &str, v: i32| ecs::Resource {
            name: Some(name.into()),
            r#type: Some("INTEGER".into()),
            integer_value: Some(v),
            ..Default::default()
        };
        let req = ecs::RegisterContainerInstanceRequest {
            cluster: Some(spec.cluster.clone()),
            total_resources: Some(vec![int("CPU", spec.cpu), int("MEMORY", spec.memory)]),
            attributes: Some(
                spec.attributes
                    .iter()
                    .map(|(k, v)| ecs::Attribute {
                        name: Some(k.clone()),
                        value: Some(v.clone()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            version_info: Some(ecs::VersionInfo {
                agent_version: Some("flotilla-sim".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let resp: ecs::RegisterContainerInstanceResponse =
            client.call("RegisterContainerInstance", &req).await?;
        let instance_arn = resp
            .container_instance
            .and_then(|c| c.container_instance_arn)
            .unwrap_or_default();
        let path = format!(
            "/v1/agent/connect?cluster={}&containerInstance={}&delta=1",
            spec.cluster,
            encode(&instance_arn)
        );
        let url = client
            .presign_get(&path, Duration::from_secs(300))
            .map_err(|e| SimError::Connect(e.to_string()))?;
        let url = url.replacen("http://", "ws://", 1);
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(flotilla_model::agent::SOCKET_READ_BUFFER);
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false)
                .await
                .map_err(|e| SimError::Connect(e.to_string()))?;
        let first = tokio::time::timeout(FIRST_DESIRED_TIMEOUT, first_text(&mut ws))
            .await
            .map_err(|_| {
                SimError::Connect(format!(
                    "no desired set from the gateway within {FIRST_DESIRED_TIMEOUT:?}"
                ))
            })??;
        let behaviour = Arc::new(Mutex::new(behaviour));
        let (out, outgoing) = tokio::sync::mpsc::unbounded_channel::<AgentMessage>();
        let usage = Arc::new(Mutex::new(BTreeMap::new()));
        let handle = tokio::spawn(converse(
            ws,
            first,
            behaviour.clone(),
            usage.clone(),
            out.clone(),
            outgoing,
        ));
        Ok(SimAgent {
            instance_arn,
            behaviour,
            handle,
            out,
            usage,
        })
    }

    /// Changes how tasks started from now on behave.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner()) = behaviour;
    }

    /// Sets what each running task of `family` on this host uses (`None`:
    /// it sends no stats); reported from the next stats tick on, for tasks
    /// already running and tasks started later.
    pub fn set_usage(&self, family: &str, usage: Option<TaskUsage>) {
        let mut by_family = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        match usage {
            Some(u) => by_family.insert(family.to_string(), u),
            None => by_family.remove(family),
        };
    }

    /// Sends a message of the test's choosing on the host's connection
    /// (e.g. [`AgentMessage::Stats`]: simulated tasks use no resources, so
    /// a test says what they use). False once the connection is gone.
    pub fn send(&self, msg: AgentMessage) -> bool {
        self.out.send(msg).is_ok()
    }

    /// Drops the connection, as a host that vanished would.
    pub fn kill(self) {
        self.handle.abort();
    }
}

impl Drop for SimAgent {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A task the simulated host has reported: its state, and what its stats
/// name (the family, shared between tasks, and its first container).
struct Tracked {
    state: Reported,
    family: Arc<str>,
    container: Arc<str>,
}

/// What the simulated host has reported for each task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    Running,
    Stopped,
}

/// The next text message on the connection (the gateway's first is the
/// desired set).
async fn first_text(ws: &mut Ws) -> Result<String, SimError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_string()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(SimError::Connect(e.to_string())),
            None => {
                return Err(SimError::Connect(
                    "the gateway closed the connection".into(),
                ))
            }
        }
    }
}

/// The host's side of the connection. Writes go through their own task, so
/// the host always keeps reading: were both ends to stop reading while their
/// writes wait for the other (the gateway pushing a large desired set while
/// the host reports a large batch), neither would ever finish.
async fn converse(
    ws: Ws,
    first: String,
    behaviour: Arc<Mutex<Behaviour>>,
    usage: Arc<Mutex<BTreeMap<String, TaskUsage>>>,
    out: tokio::sync::mpsc::UnboundedSender<AgentMessage>,
    mut outgoing: tokio::sync::mpsc::UnboundedReceiver<AgentMessage>,
) {
    let (mut sink, mut stream) = ws.split();
    let writer = tokio::spawn(async move {
        while let Some(msg) = outgoing.recv().await {
            let Ok(text) = serde_json::to_string(&msg) else {
                continue;
            };
            if sink.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
    });
    let mut reported: HashMap<String, Tracked> = HashMap::new();
    let mut families: HashMap<String, Arc<str>> = HashMap::new();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
    let mut stats = tokio::time::interval(STATS_INTERVAL);
    if answer(&out, &first, &mut reported, &mut families, &behaviour).is_ok() {
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    if out.send(AgentMessage::Heartbeat).is_err() { break; }
                }
                _ = stats.tick() => {
                    let usage = usage.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    if let Some(msg) = stats_message(&reported, &usage) {
                        if out.send(msg).is_err() { break; }
                    }
                }
                msg = stream.next() => {
                    let Some(Ok(Message::Text(text))) = msg else {
                        if matches!(msg, Some(Ok(_))) { continue; }
                        break;
                    };
                    if answer(&out, text.as_str(), &mut reported, &mut families, &behaviour).is_err() { break; }
                }
            }
        }
    }
    writer.abort();
}

/// The part of the gateway's desired-set messages ([`flotilla_model::agent::ServerMessage`]) a
/// simulated host acts on. A flat struct rather than the tagged enum, and
/// only the fields it reads, so that at a million tasks the simulator costs
/// the benchmark little CPU; serde skips the rest of each task.
#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    tasks: Vec<Seen>,
    #[serde(default)]
    upsert: Vec<Seen>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Deserialize)]
struct Seen {
    task: SeenTask,
    definition: SeenDefinition,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeenTask {
    task_arn: Option<String>,
    cluster_arn: Option<String>,
    desired_status: Option<ecs::DesiredStatus>,
    #[serde(default)]
    containers: Vec<SeenContainer>,
}

#[derive(Deserialize)]
struct SeenContainer {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeenDefinition {
    family: Option<String>,
    #[serde(default)]
    container_definitions: Vec<SeenContainerDefinition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeenContainerDefinition {
    name: Option<String>,
    #[serde(default)]
    port_mappings: Vec<ecs::PortMapping>,
}

/// Host ports the simulated hosts hand out for dynamic mappings (`hostPort`
/// 0 or absent), as Docker would from its ephemeral range: unique across
/// every simulated host of the process.
static NEXT_HOST_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The network bindings a RUNNING container reports: its port mappings on
/// loopback, dynamic ones at a fresh port.
fn bindings(
    definition: &SeenDefinition,
    container: Option<&str>,
) -> Option<Vec<ecs::NetworkBinding>> {
    let def = definition
        .container_definitions
        .iter()
        .find(|c| c.name.as_deref() == container)?;
    if def.port_mappings.is_empty() {
        return None;
    }
    Some(
        def.port_mappings
            .iter()
            .map(|m| {
                let host_port = match m.host_port {
                    Some(p) if p > 0 => p,
                    _ => {
                        let n = NEXT_HOST_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        32768 + (n % 28000) as i32
                    }
                };
                ecs::NetworkBinding {
                    bind_ip: Some("127.0.0.1".into()),
                    container_port: m.container_port,
                    host_port: Some(host_port),
                    protocol: Some(m.protocol.unwrap_or(ecs::TransportProtocol::Tcp)),
                    ..Default::default()
                }
            })
            .collect(),
    )
}

/// Answers one message from the gateway: reports the state changes a desired
/// set calls for, then that it was applied.
fn answer(
    out: &tokio::sync::mpsc::UnboundedSender<AgentMessage>,
    text: &str,
    reported: &mut HashMap<String, Tracked>,
    families: &mut HashMap<String, Arc<str>>,
    behaviour: &Mutex<Behaviour>,
) -> Result<(), ()> {
    // Simulated hosts ask for deltas: a full set first, then what changed.
    let Ok(msg) = serde_json::from_str::<Incoming>(text) else {
        return Ok(());
    };
    let tasks = match msg.kind.as_str() {
        "desired" => msg.tasks,
        "desiredDelta" => {
            for arn in &msg.remove {
                reported.remove(arn);
            }
            msg.upsert
        }
        _ => return Ok(()),
    };
    let version = msg.version;
    let b = behaviour.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut changes = Vec::new();
    for d in tasks {
        let arn = d.task.task_arn.clone().unwrap_or_default();
        let family = d.definition.family.clone().unwrap_or_default();
        let stop = d.task.desired_status == Some(ecs::DesiredStatus::Stopped);
        let fail = b.fail_families.contains(&family);
        let want = if stop || fail {
            Reported::Stopped
        } else {
            Reported::Running
        };
        let known = reported.get(&arn).map(|t| t.state);
        if known == Some(want) || known == Some(Reported::Stopped) {
            continue;
        }
        // Families are shared: one allocation per family a host sees.
        let family_name = match families.get(&family) {
            Some(f) => f.clone(),
            None => {
                let f: Arc<str> = family.as_str().into();
                families.insert(family.clone(), f.clone());
                f
            }
        };
        let container = d
            .task
            .containers
            .first()
            .and_then(|c| c.name.as_deref())
            .unwrap_or_default();
        reported.insert(
            arn.clone(),
            Tracked {
                state: want,
                family: family_name,
                container: container.into(),
            },
        );
        changes.push(report(
            &d.task,
            &d.definition,
            want,
            fail && !stop,
            &b,
            &family,
        ));
    }
    if !changes.is_empty() {
        out.send(AgentMessage::StateChanges { changes })
            .map_err(|_| ())?;
    }
    out.send(AgentMessage::Applied { version }).map_err(|_| ())
}

/// One tick's stats: every running task of a family with usage set, all of
/// the task's use on its first container.
fn stats_message(
    reported: &HashMap<String, Tracked>,
    usage: &BTreeMap<String, TaskUsage>,
) -> Option<AgentMessage> {
    if usage.is_empty() {
        return None;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let samples: Vec<TaskStats> = reported
        .iter()
        .filter(|(_, t)| t.state == Reported::Running)
        .filter_map(|(arn, t)| {
            let u = usage.get(&*t.family)?;
            Some(TaskStats {
                task_arn: arn.clone(),
                containers: vec![ContainerStats {
                    container_name: t.container.to_string(),
                    cpu_units: u.cpu_units,
                    memory_mib: u.memory_mib,
                    timestamp: now,
                    interval: STATS_INTERVAL.as_secs_f64(),
                }],
            })
        })
        .collect();
    (!samples.is_empty()).then_some(AgentMessage::Stats { samples })
}

fn report(
    task: &SeenTask,
    definition: &SeenDefinition,
    state: Reported,
    failed: bool,
    b: &Behaviour,
    family: &str,
) -> TaskStateChange {
    let status = match state {
        Reported::Running => TaskStatus::Running.as_str(),
        Reported::Stopped => TaskStatus::Stopped.as_str(),
    };
    let containers = task
        .containers
        .iter()
        .map(|c| ecs::ContainerStateChange {
            container_name: c.name.clone(),
            status: Some(status.into()),
            exit_code: (state == Reported::Stopped).then_some(if failed { 1 } else { 0 }),
            runtime_id: Some(format!("sim-{}", c.name.as_deref().unwrap_or_default())),
            network_bindings: (state == Reported::Running)
                .then(|| bindings(definition, c.name.as_deref()))
                .flatten(),
            ..Default::default()
        })
        .collect();
    let health = if state == Reported::Running && b.unhealthy_families.iter().any(|f| f == family) {
        Some(ecs::HealthStatus::Unhealthy)
    } else if state == Reported::Running && b.healthy_families.iter().any(|f| f == family) {
        Some(ecs::HealthStatus::Healthy)
    } else {
        None
    };
    TaskStateChange {
        submit: ecs::SubmitTaskStateChangeRequest {
            cluster: task.cluster_arn.clone(),
            task: task.task_arn.clone(),
            status: Some(status.into()),
            reason: failed.then(|| "CannotStartContainerError: simulated failure".into()),
            containers: Some(containers),
            ..Default::default()
        },
        stop_code: failed.then_some(ecs::TaskStopCode::TaskFailedToStart),
        health_status: health,
        container_health: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use flotilla_model::agent::{DesiredTask, ServerMessage};

    use super::*;

    /// The simulator's reduced reading of the gateway's messages must follow
    /// the real protocol type.
    #[test]
    fn incoming_reads_what_the_gateway_sends() {
        let task = ecs::Task {
            task_arn: Some("arn:aws:ecs:us-east-1:111111111111:task/default/abc".into()),
            cluster_arn: Some("arn:aws:ecs:us-east-1:111111111111:cluster/default".into()),
            desired_status: Some(ecs::DesiredStatus::Stopped),
            containers: Some(vec![ecs::Container {
                name: Some("app".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let definition = ecs::TaskDefinition {
            family: Some("web".into()),
            ..Default::default()
        };
        let msg = ServerMessage::DesiredDelta {
            version: 7,
            upsert: vec![DesiredTask { task, definition }],
            remove: vec!["gone".into()],
        };
        let seen: Incoming = serde_json::from_str(&serde_json::to_string(&msg).unwrap()).unwrap();
        assert_eq!(
            (seen.kind.as_str(), seen.version, seen.remove.as_slice()),
            ("desiredDelta", 7, ["gone".to_string()].as_slice())
        );
        let t = &seen.upsert[0];
        assert_eq!(
            t.task.task_arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:111111111111:task/default/abc")
        );
        assert_eq!(t.task.desired_status, Some(ecs::DesiredStatus::Stopped));
        assert_eq!(t.task.containers[0].name.as_deref(), Some("app"));
        assert_eq!(t.definition.family.as_deref(), Some("web"));
        let full: Incoming = serde_json::from_str(
            &serde_json::to_string(&ServerMessage::Desired {
                version: 1,
                tasks: vec![],
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(full.kind, "desired");
    }
}
