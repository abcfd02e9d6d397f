//! The task engine: converges the container engine to the desired set of
//! tasks and reports what it really does.
//!
//! Shape:
//! - one *supervisor* (this module's [`Engine`]) owns the event stream from
//!   the container engine, the desired set, and one *runner* per task;
//! - each runner ([`crate::task`]) drives one task through its lifecycle and
//!   emits a [`TaskStateChange`] whenever what it reports changes;
//! - events carry the task ARN label, so the supervisor routes them to the
//!   runner, which re-inspects the container (level-triggered).
//!
//! Adoption: at start the supervisor lists the containers labelled with this
//! container instance; when the first desired set arrives, each desired
//! task that already has containers gets a runner that *adopts* them (same
//! container ids, nothing restarted). Containers of tasks the control plane
//! no longer wants are stopped and removed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_model::agent::DesiredTask;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::logs::{LogShipper, LogShipping};
use crate::metadata::MetadataIndex;
use crate::runtime::{ContainerRuntime, ContainerSummary, RegistryAuth};
use crate::spec::{LABEL_CONTAINER_NAME, LABEL_INSTANCE, LABEL_TASK_ARN};
use crate::task::{self, RunnerMsg};

/// What the engine needs to know about its host and its defaults.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Cluster name (the `com.amazonaws.ecs.cluster` label and the
    /// `cluster` of every state change).
    pub cluster: String,
    /// This host's container instance ARN: the label that keeps agents
    /// sharing one Docker Engine apart.
    pub instance_arn: String,
    /// Address host ports are bound on, and reported as `bindIP`.
    pub host_ip: String,
    pub region: String,
    pub availability_zone: Option<String>,
    /// `http://ADDR:PORT/v4` of the task metadata endpoint, if served.
    pub metadata_base: Option<String>,
    /// Default `stopTimeout` (ECS_CONTAINER_STOP_TIMEOUT, 30 s).
    pub stop_timeout: Duration,
    /// Default `startTimeout` for dependency waits (ECS_CONTAINER_START_TIMEOUT, 3 min).
    pub start_timeout: Duration,
    /// How long stopped containers stay before they are removed
    /// (ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION).
    pub cleanup_delay: Duration,
    /// Registry credentials by registry (ECS_ENGINE_AUTH_DATA).
    pub registry_auth: BTreeMap<String, RegistryAuth>,
    /// How often running containers are sampled for the control plane
    /// ([`crate::stats`]); `None`: never.
    pub stats_interval: Option<Duration>,
    /// Where awslogs containers' output goes ([`crate::logs`]); `None`:
    /// nowhere (their output stays in Docker's json-file log).
    pub logs: Option<LogShipping>,
}

impl EngineConfig {
    pub fn new(cluster: &str, instance_arn: &str) -> EngineConfig {
        EngineConfig {
            cluster: cluster.to_string(),
            instance_arn: instance_arn.to_string(),
            host_ip: "0.0.0.0".to_string(),
            region: "us-east-1".to_string(),
            availability_zone: None,
            metadata_base: None,
            stop_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(180),
            cleanup_delay: Duration::from_secs(3 * 3600),
            registry_auth: BTreeMap::new(),
            stats_interval: None,
            logs: None,
        }
    }
}

pub use flotilla_model::agent::TaskStateChange;

enum Command {
    Desired {
        version: u64,
        tasks: Vec<DesiredTask>,
        done: oneshot::Sender<()>,
    },
    Resync {
        done: oneshot::Sender<Vec<TaskStateChange>>,
    },
}

/// Shared between the supervisor, the runners and the metadata endpoint.
pub(crate) struct Shared<R> {
    pub runtime: Arc<R>,
    pub config: EngineConfig,
    pub reports: mpsc::UnboundedSender<TaskStateChange>,
    /// The last change each task reported (what a resync re-sends).
    pub last: Mutex<HashMap<String, TaskStateChange>>,
    pub metadata: MetadataIndex,
    /// Ships awslogs containers' output, if the engine was given a sink.
    pub logs: Option<LogShipper<R>>,
}

/// A handle on a running engine. Dropping every handle stops the engine's
/// own work (the runners) but leaves containers as they are, exactly like an
/// agent that is killed: the next engine adopts them.
#[derive(Clone)]
pub struct Engine {
    commands: mpsc::Sender<Command>,
}

/// The stream of observed changes, in the order they happened per task.
pub type StateChanges = mpsc::UnboundedReceiver<TaskStateChange>;

impl Engine {
    /// Starts the engine on the current tokio runtime. Metadata for the
    /// task metadata endpoint is published into `metadata`.
    pub fn start<R: ContainerRuntime>(
        runtime: Arc<R>,
        config: EngineConfig,
        metadata: MetadataIndex,
    ) -> (Engine, StateChanges) {
        let (reports, changes) = mpsc::unbounded_channel();
        let (commands, rx) = mpsc::channel(16);
        let logs = config
            .logs
            .as_ref()
            .map(|l| LogShipper::new(runtime.clone(), l, &config.region));
        let shared = Arc::new(Shared {
            runtime,
            config,
            reports,
            last: Mutex::new(HashMap::new()),
            metadata,
            logs,
        });
        tokio::spawn(supervise(shared, rx));
        (Engine { commands }, changes)
    }

    /// Hands the engine the complete desired set; returns once the engine
    /// has acted on it (runners started or told to stop), not when the
    /// containers are running. Stale versions are ignored.
    pub async fn set_desired(
        &self,
        version: u64,
        tasks: Vec<DesiredTask>,
    ) -> Result<(), EngineStopped> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Desired {
                version,
                tasks,
                done,
            })
            .await
            .map_err(|_| EngineStopped)?;
        wait.await.map_err(|_| EngineStopped)
    }

    /// The latest state of every task the engine knows, to re-send after
    /// the control plane connection was re-established.
    pub async fn resync(&self) -> Result<Vec<TaskStateChange>, EngineStopped> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Resync { done })
            .await
            .map_err(|_| EngineStopped)?;
        wait.await.map_err(|_| EngineStopped)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the task engine has stopped")]
pub struct EngineStopped;

struct Supervisor<R> {
    shared: Arc<Shared<R>>,
    runners: HashMap<String, mpsc::UnboundedSender<RunnerMsg>>,
    tasks: JoinSet<String>,
    /// Tasks whose runner has finished (STOPPED and cleaned up): never run
    /// again, even if the control plane still lists them.
    finished: HashSet<String>,
    /// Containers found at start, by task ARN, not yet adopted.
    adoptable: Option<HashMap<String, Vec<ContainerSummary>>>,
    version: Option<u64>,
}

async fn supervise<R: ContainerRuntime>(
    shared: Arc<Shared<R>>,
    mut commands: mpsc::Receiver<Command>,
) {
    let instance = shared.config.instance_arn.clone();
    // Subscribe before listing, so nothing that happens in between is lost.
    let mut events = shared.runtime.events(LABEL_INSTANCE, &instance);
    let adoptable = list_own(&shared).await;
    let mut sup = Supervisor {
        shared: shared.clone(),
        runners: HashMap::new(),
        tasks: JoinSet::new(),
        finished: HashSet::new(),
        adoptable: Some(adoptable),
        version: None,
    };
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Desired { version, tasks, done }) => {
                    if sup.version.is_none_or(|v| version >= v) {
                        sup.version = Some(version);
                        sup.apply_desired(tasks).await;
                    } else {
                        tracing::debug!(version, "ignoring a stale desired set");
                    }
                    let _ = done.send(());
                }
                Some(Command::Resync { done }) => {
                    let last = shared.last.lock().map(|m| m.values().cloned().collect()).unwrap_or_default();
                    let _ = done.send(last);
                }
                None => break,
            },
            ev = events.next() => match ev {
                Some(Ok(ev)) => {
                    if let Some(runner) = ev.labels.get(LABEL_TASK_ARN).and_then(|arn| sup.runners.get(arn)) {
                        let _ = runner.send(RunnerMsg::Changed(ev.id));
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "container event stream failed; resubscribing");
                    events = sup.resubscribe().await;
                }
                None => {
                    tracing::warn!("container event stream ended; resubscribing");
                    events = sup.resubscribe().await;
                }
            },
            Some(done) = sup.tasks.join_next() => {
                if let Ok(arn) = done {
                    sup.runners.remove(&arn);
                    sup.finished.insert(arn);
                }
            }
        }
    }
    // Dropping `sup.tasks` aborts the runners; containers stay as they are.
}

async fn list_own<R: ContainerRuntime>(
    shared: &Shared<R>,
) -> HashMap<String, Vec<ContainerSummary>> {
    let mut by_task: HashMap<String, Vec<ContainerSummary>> = HashMap::new();
    match shared
        .runtime
        .list(LABEL_INSTANCE, &shared.config.instance_arn)
        .await
    {
        Ok(list) => {
            if let Some(logs) = &shared.logs {
                logs.sweep(&list.iter().map(|c| c.id.clone()).collect());
            }
            for c in list {
                if let Some(arn) = c.labels.get(LABEL_TASK_ARN).cloned() {
                    by_task.entry(arn).or_default().push(c);
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list this instance's containers; nothing adopted")
        }
    }
    by_task
}

impl<R: ContainerRuntime> Supervisor<R> {
    async fn resubscribe(
        &mut self,
    ) -> futures_util::stream::BoxStream<
        'static,
        crate::runtime::RuntimeResult<crate::runtime::RuntimeEvent>,
    > {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let events = self
            .shared
            .runtime
            .events(LABEL_INSTANCE, &self.shared.config.instance_arn);
        // Anything may have happened while we were not listening.
        for runner in self.runners.values() {
            let _ = runner.send(RunnerMsg::Refresh);
        }
        events
    }

    async fn apply_desired(&mut self, tasks: Vec<DesiredTask>) {
        let mut wanted = HashSet::new();
        let mut adoptable = self.adoptable.take().unwrap_or_default();
        for desired in tasks {
            let Some(arn) = desired.task.task_arn.clone() else {
                tracing::warn!("desired task without a taskArn ignored");
                continue;
            };
            wanted.insert(arn.clone());
            if self.finished.contains(&arn) {
                continue;
            }
            if let Some(runner) = self.runners.get(&arn) {
                let _ = runner.send(RunnerMsg::Desired(Box::new(desired)));
                continue;
            }
            let existing = adoptable.remove(&arn).unwrap_or_default();
            let stop_wanted = desired.task.stop_requested();
            if existing.is_empty() && stop_wanted {
                // Never started here: report it stopped so the control plane
                // can finish it.
                let change = task::never_started(&self.shared.config, &desired);
                self.emit(change);
                self.finished.insert(arn);
                continue;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let runner_tx = tx.clone();
            self.runners.insert(arn.clone(), tx);
            let shared = self.shared.clone();
            self.tasks.spawn(async move {
                task::run(shared, desired, existing, runner_tx, rx).await;
                arn
            });
        }
        for (arn, runner) in &self.runners {
            if !wanted.contains(arn) {
                let _ = runner.send(RunnerMsg::Forget);
            }
        }
        self.finished.retain(|arn| wanted.contains(arn));
        let runners = &self.runners;
        if let Ok(mut last) = self.shared.last.lock() {
            last.retain(|arn, _| wanted.contains(arn) || runners.contains_key(arn));
        }
        // Containers of tasks the control plane does not know (any more):
        // stop and remove them, so nothing is left running that nobody will
        // ever stop.
        for (arn, containers) in adoptable {
            tracing::info!(task = %arn, "removing containers of a task that is no longer desired");
            let shared = self.shared.clone();
            tokio::spawn(async move {
                for c in containers {
                    let name = c
                        .labels
                        .get(LABEL_CONTAINER_NAME)
                        .cloned()
                        .unwrap_or_default();
                    // Its awslogs output may not all be shipped yet (the
                    // agent stopped in between): finish that first.
                    let draining = shared.logs.as_ref().filter(|l| l.resume(&c.id));
                    if let Err(e) = shared.runtime.stop(&c.id, shared.config.stop_timeout).await {
                        tracing::warn!(task = %arn, container = %name, error = %e, "stop failed");
                    }
                    if let Some(logs) = draining {
                        logs.drained(&c.id).await;
                    }
                    if let Err(e) = shared.runtime.remove(&c.id).await {
                        tracing::warn!(task = %arn, container = %name, error = %e, "remove failed");
                    }
                    if let Some(logs) = &shared.logs {
                        logs.forget(&c.id);
                    }
                }
            });
        }
    }

    fn emit(&self, change: TaskStateChange) {
        if let Ok(mut last) = self.shared.last.lock() {
            last.insert(change.task_arn().to_string(), change.clone());
        }
        let _ = self.shared.reports.send(change);
    }
}
