//! An in-memory [`ContainerRuntime`] for testing the engine without Docker:
//! containers are records, events are a broadcast channel, and the test
//! plays the containers' part (`exit`, `set_health`, `write_log`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::stream::{BoxStream, StreamExt};
use tokio::sync::{broadcast, watch};

use crate::runtime::{
    BoundPort, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerSummary, Health, LogRecord,
    OutputStream, RegistryAuth, RunState, RuntimeError, RuntimeEvent, RuntimeResult, VolumeSpec,
};

#[derive(Debug, Clone)]
pub struct FakeContainer {
    pub id: String,
    pub spec: ContainerSpec,
    pub state: RunState,
    pub exit_code: Option<i64>,
    pub health: Option<Health>,
    pub started_at: Option<String>,
    /// Order in which containers were started / stopped (global counters).
    pub start_seq: Option<u64>,
    pub stop_seq: Option<u64>,
    pub stop_timeout: Option<Duration>,
    pub removed: bool,
}

#[derive(Default)]
struct State {
    containers: Vec<FakeContainer>,
    images: BTreeSet<String>,
    /// image → pull error message
    pull_failures: BTreeMap<String, String>,
    pulls: Vec<(String, Option<RegistryAuth>)>,
    volumes: BTreeSet<String>,
    seq: u64,
    next_port: u16,
    /// Logged output by container id.
    logs: BTreeMap<String, Vec<LogRecord>>,
    /// Records handed to log readers so far.
    log_records_read: u64,
}

#[derive(Clone)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<RuntimeEvent>,
    /// Bumped whenever output is logged or a container changes, so log
    /// followers look again.
    changed: watch::Sender<u64>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        FakeRuntime::new()
    }
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        let (events, _) = broadcast::channel(1024);
        let state = State {
            next_port: 32768,
            ..Default::default()
        };
        FakeRuntime {
            state: Arc::new(Mutex::new(state)),
            events,
            changed: watch::channel(0).0,
        }
    }

    /// The container logs `bytes` on `stream` as one record, timestamped
    /// now (strictly after its previous record).
    pub fn write_log(&self, id: &str, stream: OutputStream, bytes: &[u8]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let last = self
            .lock()
            .logs
            .get(id)
            .and_then(|l| l.last())
            .map(|r| r.timestamp)
            .unwrap_or(0);
        self.write_log_at(id, stream, now.max(last + 1), bytes);
    }

    /// How many log records readers have taken (to see back-pressure).
    pub fn log_records_read(&self) -> u64 {
        self.lock().log_records_read
    }

    /// Like [`write_log`](Self::write_log) with a given timestamp (records
    /// may share one, as they can in Docker).
    pub fn write_log_at(&self, id: &str, stream: OutputStream, timestamp: i64, bytes: &[u8]) {
        self.lock()
            .logs
            .entry(id.to_string())
            .or_default()
            .push(LogRecord {
                stream,
                timestamp,
                bytes: bytes::Bytes::copy_from_slice(bytes),
            });
        self.changed.send_modify(|n| *n += 1);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not hide this test's result.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_image(&self, image: &str) {
        self.lock().images.insert(image.to_string());
    }

    pub fn fail_pull(&self, image: &str, message: &str) {
        self.lock()
            .pull_failures
            .insert(image.to_string(), message.to_string());
    }

    pub fn pulls(&self) -> Vec<(String, Option<RegistryAuth>)> {
        self.lock().pulls.clone()
    }

    /// Every container ever created, removed ones included.
    pub fn containers(&self) -> Vec<FakeContainer> {
        self.lock().containers.clone()
    }

    /// The live container whose ECS container-name label is `name`.
    pub fn by_name(&self, name: &str) -> Option<FakeContainer> {
        self.lock()
            .containers
            .iter()
            .find(|c| {
                !c.removed
                    && c.spec
                        .labels
                        .get(crate::spec::LABEL_CONTAINER_NAME)
                        .map(String::as_str)
                        == Some(name)
            })
            .cloned()
    }

    fn emit(&self, c: &FakeContainer, action: &str) {
        self.changed.send_modify(|n| *n += 1);
        let _ = self.events.send(RuntimeEvent {
            id: c.id.clone(),
            action: action.to_string(),
            labels: c.spec.labels.clone(),
        });
    }

    /// The container's process exits with `code`.
    pub fn exit(&self, id: &str, code: i64) {
        let snapshot = {
            let mut st = self.lock();
            st.seq += 1;
            let seq = st.seq;
            let Some(c) = st.containers.iter_mut().find(|c| c.id == id) else {
                return;
            };
            if c.state != RunState::Running {
                return;
            }
            c.state = RunState::Exited;
            c.exit_code = Some(code);
            c.stop_seq = Some(seq);
            c.clone()
        };
        self.emit(&snapshot, "die");
    }

    /// Docker's health check reaches a verdict.
    pub fn set_health(&self, id: &str, health: Health) {
        let snapshot = {
            let mut st = self.lock();
            let Some(c) = st.containers.iter_mut().find(|c| c.id == id) else {
                return;
            };
            c.health = Some(health);
            c.clone()
        };
        self.emit(&snapshot, "health_status");
    }
}

fn not_found(id: &str) -> RuntimeError {
    RuntimeError::NotFound(id.to_string())
}

impl ContainerRuntime for FakeRuntime {
    async fn image_present(&self, image: &str) -> RuntimeResult<bool> {
        Ok(self.lock().images.contains(image))
    }

    async fn pull(&self, image: &str, auth: Option<RegistryAuth>) -> RuntimeResult<()> {
        let mut st = self.lock();
        st.pulls.push((image.to_string(), auth));
        if let Some(msg) = st.pull_failures.get(image) {
            return Err(RuntimeError::Engine {
                op: "pull",
                message: msg.clone(),
            });
        }
        st.images.insert(image.to_string());
        Ok(())
    }

    async fn ensure_volume(&self, spec: &VolumeSpec) -> RuntimeResult<()> {
        self.lock().volumes.insert(spec.name.clone());
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> RuntimeResult<()> {
        self.lock().volumes.remove(name);
        Ok(())
    }

    async fn create(&self, spec: &ContainerSpec) -> RuntimeResult<String> {
        let mut st = self.lock();
        if !st.images.contains(&spec.image) {
            return Err(RuntimeError::NotFound(format!(
                "No such image: {}",
                spec.image
            )));
        }
        if st
            .containers
            .iter()
            .any(|c| !c.removed && c.spec.name == spec.name)
        {
            return Err(RuntimeError::Engine {
                op: "create container",
                message: format!("name {} in use", spec.name),
            });
        }
        let id = format!("{:064x}", st.containers.len() + 1);
        st.containers.push(FakeContainer {
            id: id.clone(),
            spec: spec.clone(),
            state: RunState::Created,
            exit_code: None,
            health: None,
            started_at: None,
            start_seq: None,
            stop_seq: None,
            stop_timeout: None,
            removed: false,
        });
        Ok(id)
    }

    async fn start(&self, id: &str) -> RuntimeResult<()> {
        let snapshot = {
            let mut st = self.lock();
            st.seq += 1;
            let seq = st.seq;
            let Some(c) = st.containers.iter_mut().find(|c| c.id == id && !c.removed) else {
                return Err(not_found(id));
            };
            c.state = RunState::Running;
            c.started_at = Some("2024-01-01T00:00:00Z".to_string());
            c.start_seq = Some(seq);
            if c.spec.health.is_some() {
                c.health = Some(Health::Starting);
            }
            c.clone()
        };
        self.emit(&snapshot, "start");
        Ok(())
    }

    async fn stop(&self, id: &str, timeout: Duration) -> RuntimeResult<()> {
        let snapshot = {
            let mut st = self.lock();
            st.seq += 1;
            let seq = st.seq;
            let Some(c) = st.containers.iter_mut().find(|c| c.id == id && !c.removed) else {
                return Err(not_found(id));
            };
            c.stop_timeout = Some(timeout);
            if c.state != RunState::Running {
                return Ok(());
            }
            c.state = RunState::Exited;
            c.exit_code = Some(143);
            c.stop_seq = Some(seq);
            c.clone()
        };
        self.emit(&snapshot, "die");
        Ok(())
    }

    async fn remove(&self, id: &str) -> RuntimeResult<()> {
        let mut st = self.lock();
        let Some(c) = st.containers.iter_mut().find(|c| c.id == id && !c.removed) else {
            return Err(not_found(id));
        };
        c.removed = true;
        c.state = RunState::Exited;
        Ok(())
    }

    async fn inspect(&self, id: &str) -> RuntimeResult<ContainerInfo> {
        let mut st = self.lock();
        let mut next_port = st.next_port;
        let Some(c) = st.containers.iter().find(|c| c.id == id && !c.removed) else {
            return Err(not_found(id));
        };
        let ports = if c.state == RunState::Running {
            c.spec
                .ports
                .iter()
                .map(|p| BoundPort {
                    container_port: p.container_port,
                    protocol: p.protocol,
                    host_ip: p.host_ip.clone(),
                    host_port: p.host_port.unwrap_or_else(|| {
                        next_port += 1;
                        next_port
                    }),
                })
                .collect()
        } else {
            Vec::new()
        };
        let info = ContainerInfo {
            id: c.id.clone(),
            name: c.spec.name.clone(),
            image: c.spec.image.clone(),
            image_id: Some("sha256:fake".to_string()),
            labels: c.spec.labels.clone(),
            env: c.spec.env.clone(),
            state: c.state,
            exit_code: c.exit_code,
            oom_killed: false,
            error: None,
            created_at: Some("2024-01-01T00:00:00Z".to_string()),
            started_at: c.started_at.clone(),
            finished_at: None,
            health: c.health,
            ports,
            network_mode: c.spec.network_mode.clone(),
            networks: Vec::new(),
        };
        st.next_port = next_port;
        Ok(info)
    }

    async fn list(&self, key: &str, value: &str) -> RuntimeResult<Vec<ContainerSummary>> {
        Ok(self
            .lock()
            .containers
            .iter()
            .filter(|c| !c.removed && c.spec.labels.get(key).map(String::as_str) == Some(value))
            .map(|c| ContainerSummary {
                id: c.id.clone(),
                labels: c.spec.labels.clone(),
            })
            .collect())
    }

    fn events(&self, key: &str, value: &str) -> BoxStream<'static, RuntimeResult<RuntimeEvent>> {
        let (key, value) = (key.to_string(), value.to_string());
        let rx = self.events.subscribe();
        futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((Ok(ev), rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .filter(move |ev| {
            let keep = match ev {
                Ok(ev) => ev.labels.get(&key) == Some(&value),
                Err(_) => true,
            };
            futures_util::future::ready(keep)
        })
        .boxed()
    }

    async fn stats(&self, id: &str) -> RuntimeResult<serde_json::Value> {
        Ok(serde_json::json!({ "id": id, "fake": true }))
    }

    fn logs(&self, id: &str, since: i64) -> BoxStream<'static, RuntimeResult<LogRecord>> {
        struct Follow {
            fake: FakeRuntime,
            id: String,
            next: usize,
            since_ns: i64,
            changed: watch::Receiver<u64>,
        }
        let follow = Follow {
            fake: self.clone(),
            id: id.to_string(),
            next: 0,
            since_ns: since.saturating_mul(1_000_000_000),
            changed: self.changed.subscribe(),
        };
        futures_util::stream::unfold(Some(follow), |f| async move {
            let mut f = f?;
            loop {
                f.changed.borrow_and_update();
                {
                    let mut guard = f.fake.lock();
                    let st = &mut *guard;
                    let Some(c) = st.containers.iter().find(|c| c.id == f.id) else {
                        return Some((Err(not_found(&f.id)), None));
                    };
                    let records = st.logs.get(&f.id).map(Vec::as_slice).unwrap_or(&[]);
                    while let Some(r) = records.get(f.next) {
                        f.next += 1;
                        if r.timestamp >= f.since_ns {
                            let r = r.clone();
                            st.log_records_read += 1;
                            drop(guard);
                            return Some((Ok(r), Some(f)));
                        }
                    }
                    if c.state != RunState::Running || c.removed {
                        return None;
                    }
                }
                if f.changed.changed().await.is_err() {
                    return None;
                }
            }
        })
        .boxed()
    }
}
