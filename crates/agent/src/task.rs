//! One task's runner: pulls, creates and starts its containers in
//! dependency order, follows them through the container engine's events,
//! stops them (reverse order, SIGTERM then SIGKILL after stopTimeout), and
//! reports every change. Removes them after the cleanup delay.
//!
//! Lifecycle reported (ECS names): task PENDING → RUNNING → STOPPING →
//! STOPPED; container PENDING → RUNNING → STOPPED. PROVISIONING, ACTIVATING,
//! DEACTIVATING and DEPROVISIONING belong to awsvpc and load balancer
//! attachment, which this agent does not do, so it never claims them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_model::agent::DesiredTask;
use flotilla_model::ecs;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::{EngineConfig, Shared, TaskStateChange};
use crate::logs::options::OptionsError;
use crate::logs::AwsLogsOptions;
use crate::metadata::{ContainerMeta, TaskMeta};
use crate::runtime::{
    BoundPort, ContainerInfo, ContainerRuntime, ContainerSummary, Health, RunState, RuntimeError,
};
use crate::spec::{self, TaskContext, VolumeSource, LABEL_CONTAINER_NAME};

pub(crate) enum RunnerMsg {
    /// The task's entry in a new desired set.
    Desired(Box<DesiredTask>),
    /// The task is no longer in the desired set: stop it.
    Forget,
    /// A container of this task had an event: re-inspect it.
    Changed(String),
    /// Events may have been missed: re-inspect every container.
    Refresh,
    /// A stop request for a container returned.
    StopDone(String, Result<(), RuntimeError>),
}

/// The task and container statuses this agent reports: the lifecycle the
/// control plane uses (`flotilla_model::lifecycle`). The agent reports
/// PENDING, RUNNING, STOPPING and STOPPED for tasks, PENDING, RUNNING and
/// STOPPED for containers.
pub use flotilla_model::lifecycle::{ContainerStatus, TaskStatus};

/// Why the task is stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StopCause {
    /// The control plane asked (its stoppedReason and stopCode stand).
    Requested,
    /// An essential container exited.
    EssentialExited,
    /// The task could not start; the text says why.
    FailedToStart(String),
}

pub const ESSENTIAL_EXITED: &str = "Essential container in task exited";

struct Ctr {
    name: String,
    def: ecs::ContainerDefinition,
    essential: bool,
    /// dependsOn plus the implicit START dependencies of links and volumesFrom.
    deps: Vec<(String, ecs::ContainerCondition)>,
    start_timeout: Duration,
    stop_timeout: Duration,
    docker_name: String,
    token: String,
    id: Option<String>,
    status: ContainerStatus,
    /// Ever ran (START and COMPLETE conditions).
    started: bool,
    /// create/start already attempted: never twice.
    launched: bool,
    exit_code: Option<i32>,
    reason: Option<String>,
    has_health: bool,
    health: Option<Health>,
    bindings: Vec<ecs::NetworkBinding>,
    info: Option<ContainerInfo>,
    stop_sent: bool,
}

struct Runner<R> {
    shared: Arc<Shared<R>>,
    ctx: TaskContext,
    desired: DesiredTask,
    containers: Vec<Ctr>,
    volumes: BTreeMap<String, VolumeSource>,
    status: TaskStatus,
    stop: Option<StopCause>,
    pull_started_at: Option<f64>,
    pull_stopped_at: Option<f64>,
    execution_stopped_at: Option<f64>,
    waiting_since: Instant,
    retry_at: Option<Instant>,
    self_tx: mpsc::UnboundedSender<RunnerMsg>,
    last_sent: Option<TaskStateChange>,
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn network_mode(def: &ecs::TaskDefinition) -> ecs::NetworkMode {
    def.network_mode.unwrap_or(ecs::NetworkMode::Bridge)
}

fn task_context(config: &EngineConfig, desired: &DesiredTask) -> TaskContext {
    let def = &desired.definition;
    TaskContext {
        cluster: config.cluster.clone(),
        instance_arn: config.instance_arn.clone(),
        task_arn: desired.task.task_arn.clone().unwrap_or_default(),
        family: def.family.clone().unwrap_or_default(),
        revision: def.revision.unwrap_or(0),
        network_mode: network_mode(def),
        host_ip: config.host_ip.clone(),
        region: config.region.clone(),
        metadata_base: config.metadata_base.clone(),
        default_stop_timeout: config.stop_timeout,
    }
}

/// The report for a task the control plane wants stopped that never ran here.
pub(crate) fn never_started(config: &EngineConfig, desired: &DesiredTask) -> TaskStateChange {
    let containers = desired
        .definition
        .container_definitions
        .iter()
        .flatten()
        .map(|c| ecs::ContainerStateChange {
            container_name: c.name.clone(),
            status: Some(ContainerStatus::Stopped.as_str().to_string()),
            ..Default::default()
        })
        .collect();
    TaskStateChange {
        submit: ecs::SubmitTaskStateChangeRequest {
            cluster: Some(config.cluster.clone()),
            task: desired.task.task_arn.clone(),
            status: Some(TaskStatus::Stopped.as_str().to_string()),
            containers: Some(containers),
            execution_stopped_at: Some(epoch_now()),
            ..Default::default()
        },
        stop_code: None,
        health_status: None,
        container_health: BTreeMap::new(),
    }
}

/// Drives one task to the end. `existing` are its containers found at agent
/// start (adoption); empty for a new task.
pub(crate) async fn run<R: ContainerRuntime>(
    shared: Arc<Shared<R>>,
    desired: DesiredTask,
    existing: Vec<ContainerSummary>,
    self_tx: mpsc::UnboundedSender<RunnerMsg>,
    mut inbox: mpsc::UnboundedReceiver<RunnerMsg>,
) {
    let ctx = task_context(&shared.config, &desired);
    let overrides = desired.task.overrides.clone();
    let mut containers = Vec::new();
    for def in desired.definition.container_definitions.iter().flatten() {
        let def = spec::apply_overrides(def, overrides.as_ref());
        let name = def.name.clone().unwrap_or_default();
        let mut deps: Vec<(String, ecs::ContainerCondition)> = def
            .depends_on
            .iter()
            .flatten()
            .filter_map(|d| {
                Some((
                    d.container_name.clone()?,
                    d.condition.unwrap_or(ecs::ContainerCondition::Start),
                ))
            })
            .collect();
        let implicit = def
            .links
            .iter()
            .flatten()
            .map(|l| l.split_once(':').map(|(t, _)| t).unwrap_or(l).to_string())
            .chain(
                def.volumes_from
                    .iter()
                    .flatten()
                    .filter_map(|v| v.source_container.clone()),
            );
        for other in implicit.collect::<Vec<_>>() {
            if !deps.iter().any(|(n, _)| *n == other) {
                deps.push((other, ecs::ContainerCondition::Start));
            }
        }
        containers.push(Ctr {
            essential: def.essential.unwrap_or(true),
            deps,
            start_timeout: def
                .start_timeout
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(shared.config.start_timeout),
            stop_timeout: spec::stop_timeout(&ctx, &def),
            docker_name: ctx.docker_name(&name),
            token: uuid::Uuid::new_v4().simple().to_string(),
            id: None,
            status: ContainerStatus::Pending,
            started: false,
            launched: false,
            exit_code: None,
            reason: None,
            has_health: def.health_check.is_some(),
            health: None,
            bindings: Vec::new(),
            info: None,
            stop_sent: false,
            name,
            def,
        });
    }
    let mut r = Runner {
        shared,
        ctx,
        desired,
        containers,
        volumes: BTreeMap::new(),
        status: TaskStatus::Pending,
        stop: None,
        pull_started_at: None,
        pull_stopped_at: None,
        execution_stopped_at: None,
        waiting_since: Instant::now(),
        retry_at: None,
        self_tx,
        last_sent: None,
    };
    let arn = r.ctx.task_arn.clone();
    tracing::debug!(task = %arn, adopt = !existing.is_empty(), "task runner started");

    let adopted = !existing.is_empty();
    if adopted {
        r.adopt(existing).await;
    }
    match spec::task_volumes(
        &r.ctx,
        r.desired.definition.volumes.as_deref().unwrap_or(&[]),
    ) {
        Ok(v) => r.volumes = v,
        Err(e) => r.fail_all(e.0),
    }
    if r.containers.is_empty() {
        r.fail_all("the task definition has no containers".to_string());
    }
    if r.desired.task.stop_requested() {
        r.begin_stop(StopCause::Requested);
    }
    if !adopted && r.stop.is_none() {
        r.prepare(&mut inbox).await;
    }
    r.waiting_since = Instant::now();

    loop {
        r.step().await;
        r.publish();
        if r.status == TaskStatus::Stopped {
            break;
        }
        let deadline = r.next_deadline();
        tokio::select! {
            msg = inbox.recv() => match msg {
                Some(msg) => r.handle(msg).await,
                // The engine is gone (agent shutting down): leave containers.
                None => return,
            },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }

    // Keep stopped containers around for a while (logs, `docker inspect`),
    // then remove them and the task's own volumes.
    let cleanup_at = Instant::now() + r.shared.config.cleanup_delay;
    loop {
        tokio::select! {
            msg = inbox.recv() => if msg.is_none() { return },
            _ = tokio::time::sleep_until(cleanup_at) => break,
        }
    }
    r.cleanup().await;
    tracing::debug!(task = %arn, "task cleaned up");
}

impl<R: ContainerRuntime> Runner<R> {
    fn index_of_id(&self, id: &str) -> Option<usize> {
        self.containers
            .iter()
            .position(|c| c.id.as_deref() == Some(id))
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.containers.iter().position(|c| c.name == name)
    }

    async fn adopt(&mut self, existing: Vec<ContainerSummary>) {
        for summary in existing {
            let Some(name) = summary.labels.get(LABEL_CONTAINER_NAME) else {
                continue;
            };
            let Some(i) = self.index_of(name) else {
                tracing::warn!(task = %self.ctx.task_arn, container = %name, "adopted container is not in the task definition");
                continue;
            };
            let c = &mut self.containers[i];
            c.id = Some(summary.id.clone());
            c.launched = true;
            self.refresh(i).await;
            let c = &mut self.containers[i];
            // Keep the metadata token the container already holds in its
            // environment, so its endpoint URL stays valid.
            if let Some(token) = c.info.as_ref().and_then(|info| {
                info.env
                    .iter()
                    .find_map(|e| e.strip_prefix("ECS_CONTAINER_METADATA_URI_V4="))
                    .and_then(|url| url.rsplit('/').next())
                    .map(str::to_string)
            }) {
                c.token = token;
            }
            tracing::info!(task = %self.ctx.task_arn, container = %name, id = %summary.id, "adopted container");
            // Carry on shipping its awslogs output from where it was.
            if let (Some(logs), Some((raw, Ok(options)))) =
                (&self.shared.logs, awslogs(&self.containers[i].def))
            {
                let target = logs.target(&options, name, self.ctx.task_id(), &summary.id);
                logs.follow(&summary.id, Some((target, raw)));
            }
        }
    }

    /// Marks every container stopped with `reason` and fails the task.
    fn fail_all(&mut self, reason: String) {
        for c in &mut self.containers {
            if c.status == ContainerStatus::Pending && !c.launched {
                c.status = ContainerStatus::Stopped;
                c.reason = Some(reason.clone());
            }
        }
        self.begin_stop(StopCause::FailedToStart(reason));
    }

    fn begin_stop(&mut self, cause: StopCause) {
        if self.stop.is_none() {
            tracing::debug!(task = %self.ctx.task_arn, ?cause, "stopping task");
            self.stop = Some(cause);
        }
    }

    fn auth_for(&self, image: &str) -> Option<crate::runtime::RegistryAuth> {
        crate::config::auth_for_image(&self.shared.config.registry_auth, image)
    }

    /// Pulls missing images and creates the task's volumes. A stop request
    /// arriving meanwhile interrupts it.
    async fn prepare(&mut self, inbox: &mut mpsc::UnboundedReceiver<RunnerMsg>) {
        let rt = self.shared.runtime.clone();
        let mut images: Vec<String> = self
            .containers
            .iter()
            .filter_map(|c| c.def.image.clone())
            .collect();
        images.sort();
        images.dedup();
        for image in images {
            match rt.image_present(&image).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(image = %image, error = %e, "image inspect failed; pulling")
                }
            }
            if self.pull_started_at.is_none() {
                self.pull_started_at = Some(epoch_now());
                self.publish();
            }
            tracing::info!(task = %self.ctx.task_arn, image = %image, "pulling image");
            let auth = self.auth_for(&image);
            let pull = rt.pull(&image, auth);
            tokio::pin!(pull);
            let result = loop {
                tokio::select! {
                    res = &mut pull => break Some(res),
                    msg = inbox.recv() => match msg {
                        Some(msg) => {
                            self.handle(msg).await;
                            if self.stop.is_some() { break None; }
                        }
                        None => break None,
                    },
                }
            };
            match result {
                None => return,
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    self.pull_stopped_at = Some(epoch_now());
                    let reason = format!("CannotPullContainerError: pull image {image}: {e}");
                    for c in &mut self.containers {
                        if c.def.image.as_deref() == Some(image.as_str()) {
                            c.status = ContainerStatus::Stopped;
                            c.reason = Some(reason.clone());
                        }
                    }
                    self.fail_all(reason);
                    return;
                }
            }
        }
        if self.pull_started_at.is_some() {
            self.pull_stopped_at = Some(epoch_now());
        }
        for (name, source) in &self.volumes {
            if let VolumeSource::Named {
                spec, create: true, ..
            } = source
            {
                if let Err(e) = rt.ensure_volume(spec).await {
                    let reason = format!("CannotCreateVolumeError: volume {name}: {e}");
                    self.fail_all(reason);
                    return;
                }
            }
        }
    }

    async fn handle(&mut self, msg: RunnerMsg) {
        match msg {
            RunnerMsg::Desired(d) => {
                let stop = d.task.stop_requested();
                self.desired.task = d.task;
                if stop {
                    self.begin_stop(StopCause::Requested);
                }
            }
            RunnerMsg::Forget => self.begin_stop(StopCause::Requested),
            RunnerMsg::Changed(id) => {
                if let Some(i) = self.index_of_id(&id) {
                    self.refresh(i).await;
                }
            }
            RunnerMsg::Refresh => {
                for i in 0..self.containers.len() {
                    if self.containers[i].id.is_some() {
                        self.refresh(i).await;
                    }
                }
            }
            RunnerMsg::StopDone(name, result) => {
                if let Some(i) = self.index_of(&name) {
                    if let Err(e) = result {
                        tracing::warn!(task = %self.ctx.task_arn, container = %name, error = %e, "stop failed; will retry");
                        self.containers[i].stop_sent = false;
                        self.retry_at = Some(Instant::now() + Duration::from_secs(1));
                    }
                    self.refresh(i).await;
                }
            }
        }
    }

    /// Re-reads one container from the engine.
    async fn refresh(&mut self, i: usize) {
        let Some(id) = self.containers[i].id.clone() else {
            return;
        };
        match self.shared.runtime.inspect(&id).await {
            Ok(info) => self.apply_info(i, info),
            Err(RuntimeError::NotFound(_)) => {
                let c = &mut self.containers[i];
                if c.status != ContainerStatus::Stopped {
                    c.status = ContainerStatus::Stopped;
                    c.reason = Some("the container was removed outside the agent".to_string());
                }
            }
            Err(e) => {
                tracing::warn!(task = %self.ctx.task_arn, container = %self.containers[i].name, error = %e, "inspect failed")
            }
        }
    }

    fn apply_info(&mut self, i: usize, info: ContainerInfo) {
        let host_mode = self.ctx.network_mode == ecs::NetworkMode::Host;
        let c = &mut self.containers[i];
        c.health = if c.has_health { info.health } else { None };
        c.bindings = if host_mode {
            // In host mode the container's ports are the host's.
            c.def
                .port_mappings
                .iter()
                .flatten()
                .map(|p| ecs::NetworkBinding {
                    bind_ip: Some("0.0.0.0".to_string()),
                    container_port: p.container_port,
                    host_port: p.container_port,
                    protocol: Some(p.protocol.unwrap_or(ecs::TransportProtocol::Tcp)),
                    ..Default::default()
                })
                .collect()
        } else {
            info.ports.iter().map(binding).collect()
        };
        match info.state {
            RunState::Running => {
                c.started = true;
                if c.status == ContainerStatus::Pending {
                    c.status = ContainerStatus::Running;
                }
            }
            RunState::Exited => {
                if info.started_at.is_some() {
                    c.started = true;
                }
                if c.status != ContainerStatus::Stopped {
                    c.status = ContainerStatus::Stopped;
                    c.exit_code = info.exit_code.and_then(|e| i32::try_from(e).ok());
                    if info.oom_killed {
                        c.reason = Some(
                            "OutOfMemoryError: Container killed due to memory usage".to_string(),
                        );
                    } else if let Some(err) = &info.error {
                        c.reason = Some(format!("CannotStartContainerError: {err}"));
                    }
                }
            }
            RunState::Created => {}
        }
        c.info = Some(info);
    }

    /// Whether container `i` may start now, must wait, or never will.
    fn dependencies(&self, i: usize) -> Deps {
        let c = &self.containers[i];
        let mut waiting = false;
        for (dep, cond) in &c.deps {
            let Some(j) = self.index_of(dep) else {
                return Deps::Never(format!("dependency {dep} is not a container of this task"));
            };
            let d = &self.containers[j];
            let stopped = d.status == ContainerStatus::Stopped;
            let met = match cond {
                ecs::ContainerCondition::Start => {
                    if d.started {
                        true
                    } else if stopped {
                        return Deps::Never(format!("dependency {dep} never started"));
                    } else {
                        false
                    }
                }
                ecs::ContainerCondition::Complete => {
                    if stopped && d.started {
                        true
                    } else if stopped {
                        return Deps::Never(format!("dependency {dep} never started"));
                    } else {
                        false
                    }
                }
                ecs::ContainerCondition::Success => {
                    if stopped && d.exit_code == Some(0) {
                        true
                    } else if stopped {
                        return Deps::Never(format!(
                            "dependency {dep} exited with code {} (condition SUCCESS)",
                            d.exit_code
                                .map(|e| e.to_string())
                                .unwrap_or_else(|| "unknown".into())
                        ));
                    } else {
                        false
                    }
                }
                ecs::ContainerCondition::Healthy => {
                    if !d.has_health {
                        return Deps::Never(format!(
                            "dependency {dep} has no healthCheck (condition HEALTHY)"
                        ));
                    } else if d.health == Some(Health::Healthy) {
                        true
                    } else if stopped {
                        return Deps::Never(format!(
                            "dependency {dep} stopped before it was HEALTHY"
                        ));
                    } else {
                        false
                    }
                }
            };
            waiting |= !met;
        }
        if waiting {
            Deps::Wait
        } else {
            Deps::Ready
        }
    }

    /// One pass of decisions: start what may start, notice what failed or
    /// exited, stop what must stop.
    async fn step(&mut self) {
        if self.stop.is_none() {
            let now = Instant::now();
            for i in 0..self.containers.len() {
                let c = &self.containers[i];
                if c.status != ContainerStatus::Pending || c.launched {
                    continue;
                }
                match self.dependencies(i) {
                    Deps::Ready => self.launch(i).await,
                    Deps::Wait => {
                        let c = &mut self.containers[i];
                        if now >= self.waiting_since + c.start_timeout {
                            c.status = ContainerStatus::Stopped;
                            c.reason = Some(format!(
                                "DependencyTimeoutError: dependencies not resolved within startTimeout ({}s)",
                                c.start_timeout.as_secs()
                            ));
                        }
                    }
                    Deps::Never(why) => {
                        let c = &mut self.containers[i];
                        c.status = ContainerStatus::Stopped;
                        c.reason = Some(format!("DependencyConditionError: {why}"));
                    }
                }
            }
            if let Some(c) = self
                .containers
                .iter()
                .find(|c| c.essential && c.status == ContainerStatus::Stopped)
            {
                let cause =
                    if c.started {
                        StopCause::EssentialExited
                    } else {
                        StopCause::FailedToStart(c.reason.clone().unwrap_or_else(|| {
                            format!("essential container {} did not start", c.name)
                        }))
                    };
                self.begin_stop(cause);
            } else if self
                .containers
                .iter()
                .all(|c| c.status == ContainerStatus::Stopped)
            {
                self.begin_stop(StopCause::EssentialExited);
            } else if self.status == TaskStatus::Pending
                && self
                    .containers
                    .iter()
                    .all(|c| c.status != ContainerStatus::Pending)
            {
                self.status = TaskStatus::Running;
            }
        }
        if self.stop.is_some() && self.status != TaskStatus::Stopped {
            self.status = TaskStatus::Stopping;
            for c in &mut self.containers {
                if c.status == ContainerStatus::Pending && !c.started {
                    c.status = ContainerStatus::Stopped;
                }
            }
            for i in 0..self.containers.len() {
                let c = &self.containers[i];
                if c.status == ContainerStatus::Stopped || c.stop_sent {
                    continue;
                }
                // Reverse dependency order: wait for every running container
                // that depends on this one to stop first.
                let name = c.name.clone();
                let dependents_running = self.containers.iter().any(|d| {
                    d.status != ContainerStatus::Stopped && d.deps.iter().any(|(n, _)| *n == name)
                });
                if dependents_running {
                    continue;
                }
                let c = &mut self.containers[i];
                let Some(id) = c.id.clone() else {
                    c.status = ContainerStatus::Stopped;
                    continue;
                };
                c.stop_sent = true;
                let (rt, tx, timeout) = (
                    self.shared.runtime.clone(),
                    self.self_tx.clone(),
                    c.stop_timeout,
                );
                tracing::debug!(task = %self.ctx.task_arn, container = %name, ?timeout, "stopping container");
                tokio::spawn(async move {
                    let result = rt.stop(&id, timeout).await;
                    let _ = tx.send(RunnerMsg::StopDone(name, result));
                });
            }
            if self
                .containers
                .iter()
                .all(|c| c.status == ContainerStatus::Stopped)
            {
                self.status = TaskStatus::Stopped;
                self.execution_stopped_at = Some(epoch_now());
            }
        }
    }

    /// Creates and starts container `i`.
    async fn launch(&mut self, i: usize) {
        self.containers[i].launched = true;
        let docker_names: BTreeMap<String, String> = self
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.docker_name.clone()))
            .collect();
        let c = &self.containers[i];
        let spec =
            match spec::container_spec(&self.ctx, &c.def, &self.volumes, &docker_names, &c.token) {
                Ok(s) => s,
                Err(e) => {
                    return self.container_failed(i, format!("CannotCreateContainerError: {e}"))
                }
            };
        let awslogs = match awslogs(&c.def) {
            Some((_, Err(e))) => {
                return self.container_failed(i, format!("CannotCreateContainerError: {e}"))
            }
            Some((raw, Ok(options))) => Some((raw, options)),
            None => None,
        };
        let rt = self.shared.runtime.clone();
        let id = match rt.create(&spec).await {
            Ok(id) => id,
            Err(e) => return self.container_failed(i, format!("CannotCreateContainerError: {e}")),
        };
        self.containers[i].id = Some(id.clone());
        // Its log stream exists and is recorded before it can write a line.
        let ship = match (&awslogs, &self.shared.logs) {
            (Some((raw, options)), Some(logs)) => {
                let target =
                    logs.target(options, &self.containers[i].name, self.ctx.task_id(), &id);
                if let Err(e) = logs.prepare(&id, &target, raw, options).await {
                    return self.container_failed(
                        i,
                        format!(
                            "CannotStartContainerError: failed to initialize logging driver: {e}"
                        ),
                    );
                }
                true
            }
            (Some(_), None) => {
                tracing::warn!(task = %self.ctx.task_arn, container = %self.containers[i].name,
                    "awslogs requested, but this agent ships no logs: the output stays in Docker's json-file log");
                false
            }
            (None, _) => false,
        };
        // The process may ask the metadata endpoint about itself the moment
        // it starts: publish its entry first.
        self.shared.metadata.put(self.meta());
        if let Err(e) = rt.start(&id).await {
            self.refresh(i).await;
            return self.container_failed(i, format!("CannotStartContainerError: {e}"));
        }
        if ship {
            if let Some(logs) = &self.shared.logs {
                logs.follow(&id, None);
            }
        }
        tracing::debug!(task = %self.ctx.task_arn, container = %self.containers[i].name, id = %id, "container started");
        self.refresh(i).await;
    }

    fn container_failed(&mut self, i: usize, reason: String) {
        tracing::info!(task = %self.ctx.task_arn, container = %self.containers[i].name, %reason, "container failed to start");
        let c = &mut self.containers[i];
        c.status = ContainerStatus::Stopped;
        c.reason = Some(reason);
    }

    fn next_deadline(&self) -> Instant {
        let mut next = Instant::now() + Duration::from_secs(3600);
        if self.stop.is_none() {
            for c in &self.containers {
                if c.status == ContainerStatus::Pending && !c.launched {
                    next = next.min(self.waiting_since + c.start_timeout);
                }
            }
        }
        if let Some(r) = self.retry_at {
            next = next.min(r);
        }
        next
    }

    fn task_health(&self) -> Option<ecs::HealthStatus> {
        let checked: Vec<&Ctr> = self
            .containers
            .iter()
            .filter(|c| c.essential && c.has_health)
            .collect();
        if checked.is_empty() {
            return Some(ecs::HealthStatus::Unknown);
        }
        if checked.iter().any(|c| c.health == Some(Health::Unhealthy)) {
            Some(ecs::HealthStatus::Unhealthy)
        } else if checked.iter().all(|c| c.health == Some(Health::Healthy)) {
            Some(ecs::HealthStatus::Healthy)
        } else {
            Some(ecs::HealthStatus::Unknown)
        }
    }

    fn change(&self) -> TaskStateChange {
        let containers = self
            .containers
            .iter()
            .map(|c| ecs::ContainerStateChange {
                container_name: Some(c.name.clone()),
                runtime_id: c.id.clone(),
                status: Some(c.status.as_str().to_string()),
                exit_code: if c.status == ContainerStatus::Stopped {
                    c.exit_code
                } else {
                    None
                },
                reason: c.reason.clone(),
                network_bindings: if c.bindings.is_empty() {
                    None
                } else {
                    Some(c.bindings.clone())
                },
                image_digest: None,
            })
            .collect();
        let (reason, stop_code) = match &self.stop {
            Some(StopCause::EssentialExited) => (
                Some(ESSENTIAL_EXITED.to_string()),
                Some(ecs::TaskStopCode::EssentialContainerExited),
            ),
            Some(StopCause::FailedToStart(r)) => {
                (Some(r.clone()), Some(ecs::TaskStopCode::TaskFailedToStart))
            }
            Some(StopCause::Requested) | None => (None, None),
        };
        TaskStateChange {
            submit: ecs::SubmitTaskStateChangeRequest {
                cluster: Some(self.shared.config.cluster.clone()),
                task: Some(self.ctx.task_arn.clone()),
                status: Some(self.status.as_str().to_string()),
                reason,
                containers: Some(containers),
                pull_started_at: self.pull_started_at,
                pull_stopped_at: self.pull_stopped_at,
                execution_stopped_at: self.execution_stopped_at,
                ..Default::default()
            },
            stop_code,
            health_status: self.task_health(),
            container_health: self
                .containers
                .iter()
                .map(|c| {
                    let h = match c.health {
                        Some(Health::Healthy) => ecs::HealthStatus::Healthy,
                        Some(Health::Unhealthy) => ecs::HealthStatus::Unhealthy,
                        _ => ecs::HealthStatus::Unknown,
                    };
                    (c.name.clone(), h)
                })
                .collect(),
        }
    }

    /// Sends the task's state if it changed, and refreshes its metadata.
    fn publish(&mut self) {
        let change = self.change();
        if self.last_sent.as_ref() == Some(&change) {
            return;
        }
        tracing::debug!(task = %self.ctx.task_arn, status = change.status(), "task state changed");
        if let Ok(mut last) = self.shared.last.lock() {
            last.insert(self.ctx.task_arn.clone(), change.clone());
        }
        let _ = self.shared.reports.send(change.clone());
        self.last_sent = Some(change);
        self.shared.metadata.put(self.meta());
    }

    fn meta(&self) -> TaskMeta {
        let def = &self.desired.definition;
        TaskMeta {
            cluster: self.ctx.cluster.clone(),
            task_arn: self.ctx.task_arn.clone(),
            family: self.ctx.family.clone(),
            revision: self.ctx.revision.to_string(),
            desired_status: self
                .desired
                .task
                .desired_status
                .unwrap_or(flotilla_model::ecs::DesiredStatus::Running)
                .as_str()
                .to_string(),
            known_status: self.status.as_str().to_string(),
            cpu: self.desired.task.cpu.clone().or_else(|| def.cpu.clone()),
            memory: self
                .desired
                .task
                .memory
                .clone()
                .or_else(|| def.memory.clone()),
            pull_started_at: self.pull_started_at,
            pull_stopped_at: self.pull_stopped_at,
            availability_zone: self.shared.config.availability_zone.clone(),
            network_mode: network_mode(def).as_str().to_string(),
            containers: self
                .containers
                .iter()
                .map(|c| ContainerMeta {
                    name: c.name.clone(),
                    token: c.token.clone(),
                    docker_id: c.id.clone(),
                    docker_name: c.docker_name.clone(),
                    image: c.def.image.clone().unwrap_or_default(),
                    image_id: c.info.as_ref().and_then(|i| i.image_id.clone()),
                    labels: c
                        .info
                        .as_ref()
                        .map(|i| i.labels.clone())
                        .unwrap_or_default(),
                    desired_status: if self.stop.is_some() {
                        ContainerStatus::Stopped
                    } else {
                        ContainerStatus::Running
                    }
                    .as_str()
                    .to_string(),
                    known_status: c.status.as_str().to_string(),
                    cpu: c.def.cpu,
                    memory: c.def.memory.or(c.def.memory_reservation),
                    created_at: c.info.as_ref().and_then(|i| i.created_at.clone()),
                    started_at: c.info.as_ref().and_then(|i| i.started_at.clone()),
                    finished_at: c.info.as_ref().and_then(|i| i.finished_at.clone()),
                    exit_code: if c.status == ContainerStatus::Stopped {
                        c.exit_code
                    } else {
                        None
                    },
                    health: if c.has_health {
                        Some(
                            match c.health {
                                Some(Health::Healthy) => "HEALTHY",
                                Some(Health::Unhealthy) => "UNHEALTHY",
                                _ => "UNKNOWN",
                            }
                            .to_string(),
                        )
                    } else {
                        None
                    },
                    ports: c.bindings.clone(),
                    ipv4_addresses: c
                        .info
                        .as_ref()
                        .map(|i| i.networks.iter().filter_map(|n| n.ipv4.clone()).collect())
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }

    async fn cleanup(&mut self) {
        let rt = self.shared.runtime.clone();
        for c in &self.containers {
            if let Some(id) = &c.id {
                // Everything it wrote is shipped before it goes.
                if let Some(logs) = &self.shared.logs {
                    logs.drained(id).await;
                }
                if let Err(e) = rt.remove(id).await {
                    if !matches!(e, RuntimeError::NotFound(_)) {
                        tracing::warn!(task = %self.ctx.task_arn, container = %c.name, error = %e, "remove failed");
                    }
                }
                if let Some(logs) = &self.shared.logs {
                    logs.forget(id);
                }
            }
        }
        for source in self.volumes.values() {
            if let VolumeSource::Named {
                spec,
                task_scoped: true,
                ..
            } = source
            {
                if let Err(e) = rt.remove_volume(&spec.name).await {
                    tracing::debug!(volume = %spec.name, error = %e, "volume not removed");
                }
            }
        }
        self.shared.metadata.remove(&self.ctx.task_arn);
    }
}

enum Deps {
    Ready,
    Wait,
    Never(String),
}

/// The container's awslogs options (raw, and checked) if it uses that
/// log driver.
fn awslogs(
    def: &ecs::ContainerDefinition,
) -> Option<(
    BTreeMap<String, String>,
    Result<AwsLogsOptions, OptionsError>,
)> {
    let l = def.log_configuration.as_ref()?;
    if l.log_driver?.as_str() != "awslogs" {
        return None;
    }
    let raw = l.options.clone().unwrap_or_default();
    let parsed = AwsLogsOptions::parse(&raw);
    Some((raw, parsed))
}

fn binding(p: &BoundPort) -> ecs::NetworkBinding {
    ecs::NetworkBinding {
        bind_ip: Some(p.host_ip.clone()),
        container_port: Some(i32::from(p.container_port)),
        host_port: Some(i32::from(p.host_port)),
        protocol: Some(match p.protocol {
            crate::runtime::Protocol::Tcp => ecs::TransportProtocol::Tcp,
            crate::runtime::Protocol::Udp => ecs::TransportProtocol::Udp,
        }),
        ..Default::default()
    }
}
