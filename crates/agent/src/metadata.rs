//! Task metadata endpoint version 4, as containers reach it through
//! `ECS_CONTAINER_METADATA_URI_V4` (`http://ADDR:PORT/v4/TOKEN`).
//!
//! Where it listens: ECS's agent answers on 169.254.170.2, which it routes
//! to itself with iptables rules; Flotilla does not touch the host's
//! firewall. It listens instead on the gateway address of Docker's default
//! bridge network (docker0, typically 172.17.0.1), an address of the host
//! that bridge-mode containers reach through their default route and
//! host-mode containers reach directly. `none`-mode containers have no
//! network and cannot reach it, as on ECS.
//!
//! Each container gets a random token in its URL; the token is the only key,
//! so a container sees its own task and nothing else.
//!
//! Routes: `/v4/TOKEN` (this container), `/v4/TOKEN/task`,
//! `/v4/TOKEN/stats` (Docker stats JSON), `/v4/TOKEN/task/stats` (Docker
//! stats by container id). PascalCase JSON as ECS serves it. Stats come
//! from the agent's sampler ([`crate::stats`]) when it has sampled the
//! container, else from Docker at once.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use flotilla_model::ecs;
use serde_json::{json, Map, Value};

use crate::runtime::ContainerRuntime;

/// What the endpoint knows of one task; published by the task runner.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMeta {
    pub cluster: String,
    pub task_arn: String,
    pub family: String,
    pub revision: String,
    pub desired_status: String,
    pub known_status: String,
    /// Task-level cpu (units) and memory (MiB), as the task definition has them.
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub pull_started_at: Option<f64>,
    pub pull_stopped_at: Option<f64>,
    pub availability_zone: Option<String>,
    pub network_mode: String,
    pub containers: Vec<ContainerMeta>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerMeta {
    pub name: String,
    pub token: String,
    pub docker_id: Option<String>,
    pub docker_name: String,
    pub image: String,
    pub image_id: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub desired_status: String,
    pub known_status: String,
    pub cpu: Option<i32>,
    pub memory: Option<i32>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    pub health: Option<String>,
    pub ports: Vec<ecs::NetworkBinding>,
    pub ipv4_addresses: Vec<String>,
}

#[derive(Default)]
struct Index {
    /// token → (task ARN, container name)
    tokens: HashMap<String, (String, String)>,
    tasks: HashMap<String, TaskMeta>,
    /// The latest stats sample by Docker id (see [`crate::stats`]).
    stats: HashMap<String, Value>,
}

impl Index {
    /// The containers the engine reports RUNNING, with their task and
    /// Docker id.
    fn running(&self) -> impl Iterator<Item = (&TaskMeta, &ContainerMeta, &str)> {
        self.tasks.values().flat_map(|task| {
            task.containers
                .iter()
                .filter_map(move |c| match &c.docker_id {
                    Some(id) if c.known_status == "RUNNING" => Some((task, c, id.as_str())),
                    _ => None,
                })
        })
    }
}

/// The engine's tasks as the metadata endpoint sees them. Cheap to clone.
#[derive(Clone, Default)]
pub struct MetadataIndex {
    inner: Arc<RwLock<Index>>,
}

impl MetadataIndex {
    pub fn new() -> MetadataIndex {
        MetadataIndex::default()
    }

    pub(crate) fn put(&self, meta: TaskMeta) {
        if let Ok(mut idx) = self.inner.write() {
            for c in &meta.containers {
                idx.tokens
                    .insert(c.token.clone(), (meta.task_arn.clone(), c.name.clone()));
            }
            idx.tasks.insert(meta.task_arn.clone(), meta);
        }
    }

    pub(crate) fn remove(&self, task_arn: &str) {
        if let Ok(mut idx) = self.inner.write() {
            idx.tokens.retain(|_, (arn, _)| arn != task_arn);
            if let Some(task) = idx.tasks.remove(task_arn) {
                for id in task.containers.iter().filter_map(|c| c.docker_id.as_ref()) {
                    idx.stats.remove(id);
                }
            }
        }
    }

    /// (tasks, containers RUNNING), for `/metrics`.
    pub fn counts(&self) -> (usize, usize) {
        let Ok(idx) = self.inner.read() else {
            return (0, 0);
        };
        (idx.tasks.len(), idx.running().count())
    }

    /// Every container the engine reports RUNNING, for the stats sampler.
    pub fn running_containers(&self) -> Vec<crate::stats::Target> {
        let Ok(idx) = self.inner.read() else {
            return Vec::new();
        };
        idx.running()
            .map(|(task, c, id)| crate::stats::Target {
                task_arn: task.task_arn.clone(),
                container_name: c.name.clone(),
                docker_id: id.to_string(),
            })
            .collect()
    }

    pub(crate) fn put_stats(&self, task_arn: &str, docker_id: &str, sample: Value) {
        if let Ok(mut idx) = self.inner.write() {
            // Only for containers still known (a task removed meanwhile
            // must not leave its samples behind).
            let known = idx.tasks.get(task_arn).is_some_and(|t| {
                t.containers
                    .iter()
                    .any(|c| c.docker_id.as_deref() == Some(docker_id))
            });
            if known {
                idx.stats.insert(docker_id.to_string(), sample);
            }
        }
    }

    /// The latest sample the stats sampler took of a container.
    pub fn stats(&self, docker_id: &str) -> Option<Value> {
        self.inner.read().ok()?.stats.get(docker_id).cloned()
    }

    /// The task and container name a token belongs to.
    pub fn lookup(&self, token: &str) -> Option<(TaskMeta, String)> {
        let idx = self.inner.read().ok()?;
        let (arn, name) = idx.tokens.get(token)?;
        Some((idx.tasks.get(arn)?.clone(), name.clone()))
    }
}

struct AppState<R> {
    index: MetadataIndex,
    runtime: Arc<R>,
}

/// The endpoint's routes, for serving on any listener.
pub fn router<R: ContainerRuntime>(index: MetadataIndex, runtime: Arc<R>) -> Router {
    let state = Arc::new(AppState { index, runtime });
    Router::new()
        .route("/v4/{token}", get(container::<R>))
        .route("/v4/{token}/task", get(task::<R>))
        .route("/v4/{token}/stats", get(container_stats::<R>))
        .route("/v4/{token}/task/stats", get(task_stats::<R>))
        .route("/metrics", get(metrics::<R>))
        .with_state(state)
}

/// `GET /metrics`: the agent's figures in the Prometheus text format.
async fn metrics<R: ContainerRuntime>(State(s): State<Arc<AppState<R>>>) -> Response {
    let (tasks, running) = s.index.counts();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::telemetry::render(tasks, running),
    )
        .into_response()
}

/// Serves the endpoint on `listener` until `shutdown` completes.
pub async fn serve<R: ContainerRuntime>(
    listener: tokio::net::TcpListener,
    index: MetadataIndex,
    runtime: Arc<R>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(index, runtime))
        .with_graceful_shutdown(shutdown)
        .await
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"message": "unknown metadata token"})),
    )
        .into_response()
}

async fn container<R: ContainerRuntime>(
    State(s): State<Arc<AppState<R>>>,
    Path(token): Path<String>,
) -> Response {
    match s.index.lookup(&token) {
        Some((task, name)) => match task.containers.iter().find(|c| c.name == name) {
            Some(c) => Json(container_json(&task, c)).into_response(),
            None => not_found(),
        },
        None => not_found(),
    }
}

async fn task<R: ContainerRuntime>(
    State(s): State<Arc<AppState<R>>>,
    Path(token): Path<String>,
) -> Response {
    match s.index.lookup(&token) {
        Some((task, _)) => Json(task_json(&task)).into_response(),
        None => not_found(),
    }
}

async fn container_stats<R: ContainerRuntime>(
    State(s): State<Arc<AppState<R>>>,
    Path(token): Path<String>,
) -> Response {
    let Some((task, name)) = s.index.lookup(&token) else {
        return not_found();
    };
    let Some(id) = task
        .containers
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.docker_id.clone())
    else {
        return Json(Value::Null).into_response();
    };
    if let Some(sample) = s.index.stats(&id) {
        return Json(sample).into_response();
    }
    match s.runtime.stats(&id).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"message": e.to_string()})),
        )
            .into_response(),
    }
}

async fn task_stats<R: ContainerRuntime>(
    State(s): State<Arc<AppState<R>>>,
    Path(token): Path<String>,
) -> Response {
    let Some((task, _)) = s.index.lookup(&token) else {
        return not_found();
    };
    let mut out = Map::new();
    for c in &task.containers {
        if let Some(id) = &c.docker_id {
            let v = match s.index.stats(id) {
                Some(sample) => sample,
                None => s.runtime.stats(id).await.unwrap_or(Value::Null),
            };
            out.insert(id.clone(), v);
        }
    }
    Json(Value::Object(out)).into_response()
}

fn rfc3339(epoch: f64) -> Option<String> {
    let nanos = (epoch * 1e9) as i128;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn put<T: Into<Value>>(m: &mut Map<String, Value>, k: &str, v: Option<T>) {
    if let Some(v) = v {
        m.insert(k.to_string(), v.into());
    }
}

pub fn container_json(task: &TaskMeta, c: &ContainerMeta) -> Value {
    let mut m = Map::new();
    put(&mut m, "DockerId", c.docker_id.clone());
    m.insert("Name".into(), c.name.clone().into());
    m.insert("DockerName".into(), c.docker_name.clone().into());
    m.insert("Image".into(), c.image.clone().into());
    put(&mut m, "ImageID", c.image_id.clone());
    m.insert("Labels".into(), json!(c.labels));
    m.insert("DesiredStatus".into(), c.desired_status.clone().into());
    m.insert("KnownStatus".into(), c.known_status.clone().into());
    let mut limits = Map::new();
    put(&mut limits, "CPU", c.cpu);
    put(&mut limits, "Memory", c.memory);
    if !limits.is_empty() {
        m.insert("Limits".into(), Value::Object(limits));
    }
    put(&mut m, "CreatedAt", c.created_at.clone());
    put(&mut m, "StartedAt", c.started_at.clone());
    put(&mut m, "FinishedAt", c.finished_at.clone());
    m.insert("Type".into(), "NORMAL".into());
    put(&mut m, "ExitCode", c.exit_code);
    if let Some(h) = &c.health {
        m.insert("Health".into(), json!({ "status": h }));
    }
    if !c.ports.is_empty() {
        let ports: Vec<Value> = c
            .ports
            .iter()
            .map(|p| {
                let mut pm = Map::new();
                put(&mut pm, "ContainerPort", p.container_port);
                put(
                    &mut pm,
                    "Protocol",
                    p.protocol.map(|x| x.as_str().to_string()),
                );
                put(&mut pm, "HostPort", p.host_port);
                put(&mut pm, "HostIp", p.bind_ip.clone());
                Value::Object(pm)
            })
            .collect();
        m.insert("Ports".into(), Value::Array(ports));
    }
    m.insert(
        "Networks".into(),
        json!([{ "NetworkMode": task.network_mode, "IPv4Addresses": c.ipv4_addresses }]),
    );
    Value::Object(m)
}

pub fn task_json(task: &TaskMeta) -> Value {
    let mut m = Map::new();
    m.insert("Cluster".into(), task.cluster.clone().into());
    m.insert("TaskARN".into(), task.task_arn.clone().into());
    m.insert("Family".into(), task.family.clone().into());
    m.insert("Revision".into(), task.revision.clone().into());
    m.insert("DesiredStatus".into(), task.desired_status.clone().into());
    m.insert("KnownStatus".into(), task.known_status.clone().into());
    let mut limits = Map::new();
    // Task-level CPU is reported in vCPUs, memory in MiB.
    put(
        &mut limits,
        "CPU",
        task.cpu
            .as_deref()
            .and_then(|c| c.parse::<f64>().ok())
            .map(|c| c / 1024.0),
    );
    put(
        &mut limits,
        "Memory",
        task.memory.as_deref().and_then(|m| m.parse::<i64>().ok()),
    );
    if !limits.is_empty() {
        m.insert("Limits".into(), Value::Object(limits));
    }
    put(
        &mut m,
        "PullStartedAt",
        task.pull_started_at.and_then(rfc3339),
    );
    put(
        &mut m,
        "PullStoppedAt",
        task.pull_stopped_at.and_then(rfc3339),
    );
    put(&mut m, "AvailabilityZone", task.availability_zone.clone());
    m.insert("LaunchType".into(), "EC2".into());
    m.insert(
        "Containers".into(),
        Value::Array(
            task.containers
                .iter()
                .map(|c| container_json(task, c))
                .collect(),
        ),
    );
    Value::Object(m)
}
