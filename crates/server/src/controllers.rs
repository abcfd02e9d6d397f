//! The controllers: level-triggered loops that compare what is desired with
//! what is observed and act, re-running after every durable change and on a
//! periodic resync (timers such as grace periods and retry back-off only
//! advance on a tick).
//!
//! - **Services**: for every ACTIVE or DRAINING service, a snapshot goes to
//!   the pure reconciler (`flotilla_reconcile`); its plan is applied under the
//!   state lock: starts are placed by the scheduler, stops are requested,
//!   deployments and events updated. Reconciling twice does no harm.
//! - **Lost hosts**: an instance whose agent has been disconnected longer
//!   than the grace period has its tasks marked STOPPED (so services replace
//!   them); when the agent returns, the desired set it gets no longer holds
//!   them, and it stops their containers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use flotilla_model::arn::Scope;
use flotilla_model::ecs;
use flotilla_reconcile as rc;
use flotilla_scheduler::Launch;
use tokio::time::Instant;

use crate::ecs::services::new_deployment;
use crate::ecs::task_definitions::resolve_in;
use crate::ecs::tasks::{insert_tasks, new_task, request_stop, NewTasks};
use crate::ecs::Ctx;
use crate::placement::{self, PlacementRequest};
use crate::state::{now, Account, ClusterState, Family, Key, ServiceKey, State, Tx};

/// Controller timings.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How often the timers are looked at: services whose reconciler asked
    /// to be woken (back-off, grace periods) or that could not place every
    /// task, and lost hosts.
    pub resync: Duration,
    /// How often every service is reconciled whether or not anything touched
    /// it (the level-triggered safety net).
    pub full_resync: Duration,
    /// How long an instance's agent may stay disconnected before its tasks
    /// are reported STOPPED.
    pub lost_host_grace: Duration,
    /// How long STOPPED tasks stay visible (DescribeTasks, ListTasks with
    /// desiredStatus STOPPED) before they are forgotten. ECS keeps them for
    /// about an hour; the deployment circuit breaker and restart back-off
    /// need at least the last 15 minutes of them.
    pub stopped_task_retention: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            resync: Duration::from_secs(1),
            full_resync: Duration::from_secs(30),
            lost_host_grace: Duration::from_secs(60),
            stopped_task_retention: Duration::from_secs(3600),
        }
    }
}

/// How much one lock hold of the service controller may do (tasks looked at
/// plus store writes queued) before it lets readers and other writers in.
/// It also bounds a commit's size, and so how long an API write queued
/// behind it waits.
const BATCH_WORK: usize = 4_000;

/// How many of its batches the controller lets wait for durability at once
/// before it waits for the oldest: the store's queue stays short, so API
/// writes and agents' reports are never stuck behind a whole pass.
const BATCHES_IN_FLIGHT: usize = 4;

/// Runs the controllers until `shutdown` resolves.
pub async fn run(state: Arc<State>, config: ControllerConfig, shutdown: impl std::future::Future<Output = ()>) {
    let mut changes = state.subscribe();
    let mut tick = tokio::time::interval(config.resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lost = LostHosts::default();
    let mut wakes = Wakes::default();
    let mut last_full: Option<Instant> = None;
    let mut last_retention: Option<Instant> = None;
    // Forgetting looks at every task, so it runs a few times per retention
    // period rather than on every tick.
    let retention_every = (config.stopped_task_retention / 10).min(config.full_resync);
    tokio::pin!(shutdown);
    loop {
        // A change wakes us for the services it touched; the tick runs the
        // timers, and every `full_resync` everything.
        let ticked = tokio::select! {
            _ = &mut shutdown => return,
            r = changes.changed() => { if r.is_err() { return } false }
            _ = tick.tick() => true,
        };
        // Mark what we have seen before acting, so changes made while we act
        // wake us again.
        changes.borrow_and_update();
        let mut todo = state.take_dirty_services();
        if ticked {
            let full = last_full.is_none_or(|t| t.elapsed() >= config.full_resync);
            let forget = last_retention.is_none_or(|t| t.elapsed() >= retention_every);
            for scope in state.scopes() {
                lost.reconcile(&state, &scope, config.lost_host_grace).await;
                if forget {
                    forget_stopped_tasks(&state, &scope, config.stopped_task_retention).await;
                }
                if full {
                    todo.extend(state.read(&scope, active_services).into_iter().map(|(c, s)| (scope.clone(), c, s)));
                }
            }
            if full {
                last_full = Some(Instant::now());
            }
            if forget {
                last_retention = Some(Instant::now());
            }
            todo.extend(wakes.due(now()));
        }
        if !todo.is_empty() {
            let started = Instant::now();
            reconcile_services(&state, todo, &mut wakes).await;
            // Under load a pass covers whatever changed while the previous one
            // ran. Resting as long as the pass took keeps the controller to
            // about half a core, leaving the rest to the API, the gateway and
            // the store, and lets the next pass gather more changes; an idle
            // system's passes take microseconds, so nothing waits there.
            let rest = started.elapsed().min(MAX_REST);
            if rest > MIN_REST {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(rest) => {}
                }
            }
        }
    }
}

/// Passes shorter than this are followed at once by the next.
const MIN_REST: Duration = Duration::from_millis(2);
/// The longest the controller rests after a pass.
const MAX_REST: Duration = Duration::from_millis(200);

/// When services asked to be reconciled again, whatever else happens.
#[derive(Default)]
struct Wakes {
    at: BTreeMap<ServiceKey, f64>,
}

impl Wakes {
    fn set(&mut self, key: ServiceKey, at: Option<f64>) {
        match at {
            Some(t) => {
                self.at.insert(key, t);
            }
            None => {
                self.at.remove(&key);
            }
        }
    }

    fn due(&mut self, now: f64) -> Vec<ServiceKey> {
        let due: Vec<ServiceKey> = self.at.iter().filter(|(_, t)| **t <= now).map(|(k, _)| k.clone()).collect();
        for k in &due {
            self.at.remove(k);
        }
        due
    }
}

/// Reconciles these services in batches: each batch is one lock hold and one
/// store commit, bounded by [`BATCH_WORK`]. Batches are submitted back to
/// back, with up to [`BATCHES_IN_FLIGHT`] waiting for durability, so one
/// batch's fsync overlaps the next one's decisions.
async fn reconcile_services(state: &State, todo: BTreeSet<ServiceKey>, wakes: &mut Wakes) {
    let mut by_scope: BTreeMap<Scope, Vec<(String, String)>> = BTreeMap::new();
    for (scope, cluster, service) in todo {
        by_scope.entry(scope).or_default().push((cluster, service));
    }
    let mut pending = std::collections::VecDeque::new();
    for (scope, services) in &by_scope {
        let mut rest: &[(String, String)] = services;
        while !rest.is_empty() {
            let t = now();
            let ctx = Ctx { scope: scope.clone(), principal_arn: format!("arn:aws:iam::{}:root", scope.account), now: t, endpoint: String::new() };
            let submitted = state.submit(scope, |acct, tx| {
                let mut work = 0;
                let mut done = 0;
                let mut woken = Vec::new();
                let mut draining: HashMap<String, HashSet<String>> = HashMap::new();
                for (cluster, service) in rest {
                    done += 1;
                    let wake = reconcile_one(acct, tx, &ctx, cluster, service, &mut draining, &mut work);
                    woken.push(((scope.clone(), cluster.clone(), service.clone()), wake));
                    if work + tx.len() >= BATCH_WORK {
                        break;
                    }
                }
                Ok((done, woken))
            });
            match submitted {
                Ok(((done, woken), durable)) => {
                    for (key, wake) in woken {
                        wakes.set(key, wake);
                    }
                    rest = &rest[done..];
                    pending.push_back(durable);
                    // Let the requests and reports that queued behind this
                    // batch run before the next one.
                    tokio::task::yield_now().await;
                    if pending.len() > BATCHES_IN_FLIGHT {
                        if let Some(oldest) = pending.pop_front() {
                            if let Err(e) = oldest.await {
                                tracing::warn!(error = %e, "service reconcile failed");
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "service reconcile failed");
                    break;
                }
            }
        }
    }
    for durable in pending {
        if let Err(e) = durable.await {
            tracing::warn!(error = %e, "service reconcile failed");
        }
    }
}

/// Task ids an event names; the rest are counted. A 1,000-task start that
/// named every task put 45 KB into the service record (rewritten with it)
/// and into every DescribeServices answer.
const EVENT_TASK_IDS: usize = 10;

/// " (task a) (task b)", at most [`EVENT_TASK_IDS`] of them, then " and N more".
fn task_list<'a>(ids: impl ExactSizeIterator<Item = &'a String>) -> String {
    let total = ids.len();
    let mut list: String = ids.take(EVENT_TASK_IDS).map(|id| format!(" (task {id})")).collect();
    if total > EVENT_TASK_IDS {
        list.push_str(&format!(" and {} more", total - EVENT_TASK_IDS));
    }
    list
}

/// The events list keeps the newest 100, newest first.
const MAX_EVENTS: usize = 100;

pub fn push_event(svc: &mut ecs::Service, now: f64, message: String) {
    let events = svc.events.get_or_insert_with(Vec::new);
    // The same message again within a minute adds nothing a user needs.
    if events.first().is_some_and(|e| e.message.as_deref() == Some(&message) && now - e.created_at.unwrap_or(0.0) < 60.0) {
        return;
    }
    events.insert(0, ecs::ServiceEvent { id: Some(uuid::Uuid::new_v4().to_string()), created_at: Some(now), message: Some(message) });
    events.truncate(MAX_EVENTS);
}

fn short_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}

fn phase(t: &ecs::Task) -> rc::TaskPhase {
    match t.last_status.as_deref() {
        Some("STOPPED") => rc::TaskPhase::Stopped,
        _ if t.desired_status.as_deref() == Some("STOPPED") => rc::TaskPhase::Stopping,
        Some("RUNNING") => rc::TaskPhase::Running,
        _ => rc::TaskPhase::Pending,
    }
}

/// The reconciler's view of one service.
fn snapshot(families: &BTreeMap<String, Family>, c: &ClusterState, svc: &ecs::Service, draining: &HashSet<String>) -> rc::Service {
    let name = svc.service_name.clone().unwrap_or_default();
    let group = format!("service:{name}");
    let dc = svc.deployment_configuration.clone().unwrap_or_default();
    let breaker = dc.deployment_circuit_breaker.as_ref().filter(|b| b.enable == Some(true)).map(|b| b.rollback == Some(true));
    let deployments: Vec<rc::Deployment> = svc
        .deployments
        .iter()
        .flatten()
        .map(|d| rc::Deployment {
            id: d.id.clone().unwrap_or_default(),
            task_definition: d.task_definition.clone().unwrap_or_default(),
            status: if d.status.as_deref() == Some("PRIMARY") { rc::DeploymentStatus::Primary } else { rc::DeploymentStatus::Active },
            rollout_state: match d.rollout_state {
                Some(ecs::DeploymentRolloutState::Completed) => rc::RolloutState::Completed,
                Some(ecs::DeploymentRolloutState::Failed) => rc::RolloutState::Failed,
                _ => rc::RolloutState::InProgress,
            },
            failed_tasks: d.failed_tasks.unwrap_or(0).max(0) as u32,
            created_at: d.created_at.unwrap_or(0.0),
            desired_count: d.desired_count.unwrap_or(0).max(0) as u32,
            running_count: d.running_count.unwrap_or(0).max(0) as u32,
            pending_count: d.pending_count.unwrap_or(0).max(0) as u32,
        })
        .collect();
    // A service's tasks run one or two task definitions: look each up once.
    let mut health_checked: Vec<(&str, bool)> = Vec::new();
    let tasks = c
        .tasks_in_group(&group)
        .map(|(_, t)| {
            let td = t.task_definition_arn.as_deref().unwrap_or_default();
            let has_health_check = match health_checked.iter().find(|(arn, _)| *arn == td) {
                Some((_, checked)) => *checked,
                None => {
                    let checked = crate::ecs::resources::definition_of(families, t)
                        .is_some_and(|d| d.container_definitions.iter().flatten().any(|c| c.health_check.is_some()));
                    health_checked.push((td, checked));
                    checked
                }
            };
            let stop_cause = t.stop_code.map(|code| match code {
                ecs::TaskStopCode::EssentialContainerExited | ecs::TaskStopCode::TaskFailedToStart => rc::StopCause::Failed,
                _ if t.stopped_reason.as_deref().is_some_and(|r| r.contains("health")) => rc::StopCause::Failed,
                _ => rc::StopCause::Intended,
            });
            rc::Task {
                id: t.task_arn.clone().unwrap_or_default(),
                deployment_id: t.started_by.clone().unwrap_or_default(),
                phase: phase(t),
                health: match t.health_status {
                    Some(ecs::HealthStatus::Healthy) => rc::Health::Healthy,
                    Some(ecs::HealthStatus::Unhealthy) => rc::Health::Unhealthy,
                    _ => rc::Health::Unknown,
                },
                has_health_check,
                started_at: t.started_at,
                stopped_at: t.stopped_at,
                stop_cause,
                on_draining_instance: !draining.is_empty() && t.container_instance_arn.as_ref().is_some_and(|a| draining.contains(a)),
                instance: t.container_instance_arn.clone().unwrap_or_default(),
                zone: t.availability_zone.clone(),
            }
        })
        .collect();
    rc::Service {
        name,
        draining: svc.status.as_deref() == Some("DRAINING"),
        desired_count: svc.desired_count.unwrap_or(0).max(0) as u32,
        minimum_healthy_percent: dc.minimum_healthy_percent.unwrap_or(100).max(0) as u32,
        maximum_percent: dc.maximum_percent.unwrap_or(200).max(0) as u32,
        circuit_breaker: breaker,
        health_check_grace_period: svc.health_check_grace_period_seconds.unwrap_or(0) as f64,
        deployments,
        tasks,
        last_completed_task_definition: svc
            .last_completed_task_definition()
            .or_else(|| c.service_meta.get(&svc.service_name.clone().unwrap_or_default()).and_then(|m| m.last_completed_task_definition.clone())),
        was_steady: svc
            .events
            .iter()
            .flatten()
            .next()
            .and_then(|e| e.message.as_deref())
            .is_some_and(|m| m.ends_with("has reached a steady state.")),
    }
}

/// The task definition of the most recent COMPLETED deployment.
trait LastCompleted {
    fn last_completed_task_definition(&self) -> Option<String>;
}

impl LastCompleted for ecs::Service {
    fn last_completed_task_definition(&self) -> Option<String> {
        self.deployments
            .iter()
            .flatten()
            .find(|d| d.rollout_state == Some(ecs::DeploymentRolloutState::Completed))
            .and_then(|d| d.task_definition.clone())
    }
}

fn stop_reason(name: &str, reason: &rc::StopReason) -> String {
    match reason {
        rc::StopReason::ScaleIn => format!("Scaling activity initiated by (service {name})"),
        rc::StopReason::Deployment => format!("Scaling activity initiated by (deployment of service {name})"),
        rc::StopReason::Unhealthy => "Task failed container health checks".into(),
        rc::StopReason::InstanceDraining => "Container instance is being drained".into(),
        rc::StopReason::ServiceDraining => format!("Service {name} is being deleted"),
    }
}

fn active_services(acct: &Account) -> Vec<(String, String)> {
    acct.clusters
        .iter()
        .filter(|(_, c)| c.is_active())
        .flat_map(|(cn, c)| {
            c.services
                .iter()
                .filter(|(_, s)| matches!(s.status.as_deref(), Some("ACTIVE" | "DRAINING")))
                .map(move |(sn, _)| (cn.clone(), sn.clone()))
        })
        .collect()
}

/// Reconciles one service inside a batch; adds what it looked at to `work`.
/// Returns when it wants to be reconciled again if nothing else happens.
/// `draining` caches each cluster's DRAINING instances for the batch.
fn reconcile_one(
    acct: &mut Account,
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    cluster: &str,
    service: &str,
    draining: &mut HashMap<String, HashSet<String>>,
    work: &mut usize,
) -> Option<f64> {
    let Account { clusters, families, .. } = acct;
    let c = clusters.get_mut(cluster)?;
    let svc = c.services.get(service).filter(|s| matches!(s.status.as_deref(), Some("ACTIVE" | "DRAINING")))?;
    *work += 1 + c.tasks_in_group_len(&format!("service:{service}"));
    if svc.scheduling_strategy == Some(ecs::SchedulingStrategy::Daemon) {
        *work += c.instances.len();
        return reconcile_daemon(families, c, tx, ctx, service);
    }
    let draining = draining.entry(cluster.to_string()).or_insert_with(|| {
        c.instances
            .values()
            .filter(|i| i.status.as_deref() == Some("DRAINING"))
            .filter_map(|i| i.container_instance_arn.clone())
            .collect()
    });
    let snap = snapshot(families, c, svc, draining);
    let plan = rc::reconcile(&snap, ctx.now);
    apply_plan(families, c, tx, ctx, service, &snap, plan)
}

fn apply_plan(
    families: &BTreeMap<String, Family>,
    c: &mut ClusterState,
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    service: &str,
    snap: &rc::Service,
    plan: rc::Plan,
) -> Option<f64> {
    let mut svc = c.services.get(service).cloned()?;
    let before = svc.clone();
    let cluster_name = c.name().to_string();
    let name = snap.name.clone();
    let mut wake = plan.wake_at;

    // Stops first: they free room for the starts.
    let mut stopped = Vec::new();
    for (task_arn, reason) in &plan.stop {
        let id = short_id(task_arn).to_string();
        let Some(task) = c.tasks.get_mut(&id) else { continue };
        if request_stop(task, ctx.now, ecs::TaskStopCode::ServiceSchedulerInitiated, stop_reason(&name, reason)) {
            tx.put_task(&cluster_name, &id, &*task);
            stopped.push(id);
        }
    }
    if !stopped.is_empty() {
        let list = task_list(stopped.iter());
        push_event(&mut svc, ctx.now, format!("(service {name}) has stopped {} running tasks:{list}.", stopped.len()));
    }

    for (deployment_id, count) in &plan.start {
        let Some(dep) = svc.deployments.iter().flatten().find(|d| d.id.as_deref() == Some(deployment_id.as_str())) else { continue };
        let td_ref = dep.task_definition.clone().unwrap_or_default();
        let Ok(td) = resolve_in(families, ctx, &td_ref) else {
            push_event(&mut svc, ctx.now, format!("(service {name}) cannot start tasks: task definition {td_ref} is gone."));
            continue;
        };
        let group = format!("service:{name}");
        let request = placement::task_request(&PlacementRequest {
            definition: &td.definition,
            overrides: None,
            group: &group,
            constraints: svc.placement_constraints.as_deref().unwrap_or_default(),
            strategies: svc.placement_strategy.as_deref().unwrap_or_default(),
            launch: Launch::Service,
        });
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                push_event(&mut svc, ctx.now, format!("(service {name}) cannot place tasks: {}", e.message));
                continue;
            }
        };
        let placed = placement::place(c, &request, *count as usize);
        let spec = NewTasks {
            definition: &td.definition,
            overrides: None,
            group,
            started_by: Some(deployment_id.clone()),
            tags: if svc.propagate_tags == Some(ecs::PropagateTags::Service) { svc.tags.clone().unwrap_or_default() } else { Vec::new() },
            launch_type: svc.launch_type.unwrap_or(ecs::LaunchType::Ec2),
            enable_execute_command: svc.enable_execute_command.unwrap_or(false),
        };
        let tasks: Vec<_> = placed.instance_ids.iter().map(|i| new_task(ctx, c, i, &spec)).collect();
        if !tasks.is_empty() {
            let list = task_list(tasks.iter().map(|(id, _)| id));
            push_event(&mut svc, ctx.now, format!("(service {name}) has started {} tasks:{list}.", tasks.len()));
        }
        insert_tasks(c, tx, tasks);
        if let Some(why) = placed.unplaced {
            push_event(&mut svc, ctx.now, format!("(service {name}) was unable to place a task because {}", why.explanation()));
            // Room may appear without anything touching this service.
            wake = Some(wake.map_or(ctx.now, |w: f64| w.min(ctx.now)));
        }
    }

    let deployments = svc.deployments.get_or_insert_with(Vec::new);
    for u in &plan.update {
        let Some(d) = deployments.iter_mut().find(|d| d.id.as_deref() == Some(u.id.as_str())) else { continue };
        let rollout = match u.rollout_state {
            rc::RolloutState::InProgress => ecs::DeploymentRolloutState::InProgress,
            rc::RolloutState::Completed => ecs::DeploymentRolloutState::Completed,
            rc::RolloutState::Failed => ecs::DeploymentRolloutState::Failed,
        };
        let changed = d.desired_count != Some(u.desired_count as i32)
            || d.running_count != Some(u.running_count as i32)
            || d.pending_count != Some(u.pending_count as i32)
            || d.failed_tasks != Some(u.failed_tasks as i32)
            || d.rollout_state != Some(rollout);
        if changed && rollout == ecs::DeploymentRolloutState::Completed && d.rollout_state != Some(rollout) {
            // Remember the rollback target beyond this deployment's life.
            let meta = crate::state::ServiceMeta { last_completed_task_definition: d.task_definition.clone() };
            tx.put(Key::ServiceMeta(&cluster_name, service), &meta);
            c.service_meta.insert(service.to_string(), meta);
        }
        if changed {
            d.desired_count = Some(u.desired_count as i32);
            d.running_count = Some(u.running_count as i32);
            d.pending_count = Some(u.pending_count as i32);
            d.failed_tasks = Some(u.failed_tasks as i32);
            d.rollout_state = Some(rollout);
            if let Some(reason) = &u.rollout_state_reason {
                d.rollout_state_reason = Some(reason.clone());
            }
            d.updated_at = Some(ctx.now);
        }
    }
    deployments.retain(|d| !plan.remove.iter().any(|r| d.id.as_deref() == Some(r.as_str())));
    if let Some(td) = &plan.rollback_to {
        for d in deployments.iter_mut().filter(|d| d.status.as_deref() == Some("PRIMARY")) {
            d.status = Some("ACTIVE".into());
            d.updated_at = Some(ctx.now);
        }
        let desired = svc.desired_count.unwrap_or(0);
        let dep = new_deployment(ctx, td, desired, svc.launch_type);
        svc.task_definition = Some(td.clone());
        svc.deployments.get_or_insert_with(Vec::new).insert(0, dep);
    }
    for e in plan.events {
        push_event(&mut svc, ctx.now, e);
    }

    // Counts the API shows, from the tasks themselves.
    let group = format!("service:{name}");
    let (mut running, mut pending) = (0, 0);
    for (_, t) in c.tasks_in_group(&group).filter(|(_, t)| t.desired_status.as_deref() == Some("RUNNING")) {
        match t.last_status.as_deref() {
            Some("RUNNING") => running += 1,
            Some("STOPPED") => {}
            _ => pending += 1,
        }
    }
    svc.running_count = Some(running);
    svc.pending_count = Some(pending);
    let anything_left = c.tasks_in_group(&group).any(|(_, t)| t.last_status.as_deref() != Some("STOPPED"));
    if svc.status.as_deref() == Some("DRAINING") && !anything_left {
        svc.status = Some("INACTIVE".into());
        svc.deployments = Some(Vec::new());
    }
    store_service(c, tx, &cluster_name, service, &before, svc);
    wake
}

/// Keeps the reconciled service, and writes it to the store unless only its
/// derived counters changed. Running and pending counts follow from the
/// tasks, which are stored themselves (a restart recomputes them on the
/// first pass), so a task turning RUNNING costs one task write, not another
/// copy of the service with its events.
fn store_service(c: &mut ClusterState, tx: &mut Tx<'_>, cluster: &str, service: &str, before: &ecs::Service, svc: ecs::Service) {
    if svc == *before {
        return;
    }
    if !only_counts_differ(before, &svc) {
        tx.put(Key::Service(cluster, service), &svc);
    }
    c.services.insert(service.to_string(), svc);
}

/// Whether `a` and `b` differ in nothing but the counters derived from the
/// tasks (running and pending counts, and the deployments' `updatedAt`
/// that moves with them).
fn only_counts_differ(a: &ecs::Service, b: &ecs::Service) -> bool {
    let strip = |s: &ecs::Service| {
        let mut s = ecs::Service { events: None, ..s.clone() };
        s.running_count = None;
        s.pending_count = None;
        for d in s.deployments.iter_mut().flatten() {
            d.running_count = None;
            d.pending_count = None;
            d.updated_at = None;
        }
        s
    };
    a.events == b.events && strip(a) == strip(b)
}

/// A DAEMON service: one task on every ACTIVE instance with a connected agent
/// that satisfies the service's constraints. New instances get one; a
/// DRAINING or lost instance's task is stopped; a new deployment replaces
/// each instance's task (stop first: daemons run at most one per instance,
/// so maximumPercent is 100 and minimumHealthyPercent 0 by default).
fn reconcile_daemon(families: &BTreeMap<String, Family>, c: &mut ClusterState, tx: &mut Tx<'_>, ctx: &Ctx, service: &str) -> Option<f64> {
    let mut svc = c.services.get(service).cloned()?;
    let before = svc.clone();
    let cluster_name = c.name().to_string();
    let group = format!("service:{service}");
    let draining_service = svc.status.as_deref() == Some("DRAINING");
    let primary = svc.deployments.iter().flatten().find(|d| d.status.as_deref() == Some("PRIMARY")).cloned();

    // Live tasks (not stopped, not being stopped) by instance.
    let mut live: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (id, t) in c.tasks_in_group(&group) {
        if t.desired_status.as_deref() == Some("RUNNING") && t.last_status.as_deref() != Some("STOPPED") {
            let instance = t.container_instance_arn.clone().unwrap_or_default();
            live.entry(instance).or_default().push((id.clone(), t.started_by.clone().unwrap_or_default()));
        }
    }

    let mut to_stop: Vec<(String, String)> = Vec::new();
    let mut to_start: Vec<String> = Vec::new();
    let mut unplaceable: Option<String> = None;
    let primary_td = primary.as_ref().and_then(|d| d.task_definition.clone()).and_then(|r| resolve_in(families, ctx, &r).ok());
    let request = primary_td.and_then(|td| {
        placement::task_request(&PlacementRequest {
            definition: &td.definition,
            overrides: None,
            group: &group,
            constraints: svc.placement_constraints.as_deref().unwrap_or_default(),
            strategies: &[],
            launch: Launch::Service,
        })
        .ok()
        .map(|r| (td, r))
    });
    // Which instances may hold a daemon task: ACTIVE, connected, constraints met.
    let verdicts = request.as_ref().map(|(_, r)| flotilla_scheduler::explain(&c.view, r)).unwrap_or_default();
    let mut eligible = 0;
    for v in &verdicts {
        let Some((inst, _)) = c.view.get(&v.instance_id) else { continue };
        let serving = inst.status == flotilla_scheduler::InstanceStatus::Active && inst.agent_connected;
        let constraint_failed = matches!(
            v.rejection.as_ref().map(|r| r.check()),
            Some(flotilla_scheduler::Check::MemberOf | flotilla_scheduler::Check::Attribute)
        );
        if !serving || constraint_failed || draining_service {
            continue;
        }
        eligible += 1;
        let tasks = live.remove(&v.instance_id).unwrap_or_default();
        let primary_id = primary.as_ref().and_then(|d| d.id.clone()).unwrap_or_default();
        let (current, old): (Vec<_>, Vec<_>) = tasks.into_iter().partition(|(_, dep)| *dep == primary_id);
        to_stop.extend(old.iter().map(|(id, _)| (id.clone(), "Scaling activity initiated by (deployment of the daemon service)".to_string())));
        to_stop.extend(current.iter().skip(1).map(|(id, _)| (id.clone(), "Only one daemon task per instance".to_string())));
        if current.is_empty() && old.is_empty() {
            match &v.rejection {
                None => to_start.push(v.instance_id.clone()),
                Some(r) => unplaceable = Some(format!("{} on container instance {}", r.reason(), v.instance_id)),
            }
        }
    }
    // Tasks left over sit on instances that no longer qualify.
    for tasks in live.into_values() {
        to_stop.extend(tasks.into_iter().map(|(id, _)| (id, "Container instance no longer eligible for the daemon service".to_string())));
    }

    let mut stopped = Vec::new();
    for (id, reason) in to_stop {
        let Some(task) = c.tasks.get_mut(&id) else { continue };
        if request_stop(task, ctx.now, ecs::TaskStopCode::ServiceSchedulerInitiated, reason) {
            tx.put_task(&cluster_name, &id, &*task);
            stopped.push(id);
        }
    }
    if !stopped.is_empty() {
        let list = task_list(stopped.iter());
        push_event(&mut svc, ctx.now, format!("(service {service}) has stopped {} running tasks:{list}.", stopped.len()));
    }
    if let (Some((td, request)), Some(dep)) = (&request, &primary) {
        let spec = NewTasks {
            definition: &td.definition,
            overrides: None,
            group: group.clone(),
            started_by: dep.id.clone(),
            tags: if svc.propagate_tags == Some(ecs::PropagateTags::Service) { svc.tags.clone().unwrap_or_default() } else { Vec::new() },
            launch_type: svc.launch_type.unwrap_or(ecs::LaunchType::Ec2),
            enable_execute_command: svc.enable_execute_command.unwrap_or(false),
        };
        let mut tasks = Vec::new();
        for arn in &to_start {
            if c.view.reserve(arn, &request.group, &request.demand).is_ok() {
                if let Some(id) = flotilla_model::arn::name_from_ref(arn, "container-instance") {
                    tasks.push(new_task(ctx, c, id, &spec));
                }
            }
        }
        if !tasks.is_empty() {
            let list = task_list(tasks.iter().map(|(id, _)| id));
            push_event(&mut svc, ctx.now, format!("(service {service}) has started {} tasks:{list}.", tasks.len()));
        }
        insert_tasks(c, tx, tasks);
    }
    let unplaceable_now = unplaceable.is_some();
    if let Some(why) = unplaceable {
        push_event(&mut svc, ctx.now, format!("(service {service}) was unable to place a task because {why}."));
    }

    // Counts, deployments and status from the tasks as they now stand.
    let (mut running, mut pending, mut old_left) = (0, 0, false);
    let primary_id = primary.as_ref().and_then(|d| d.id.clone());
    for (_, t) in c.tasks_in_group(&group).filter(|(_, t)| t.last_status.as_deref() != Some("STOPPED")) {
        if t.started_by != primary_id {
            old_left = true;
            continue;
        }
        if t.desired_status.as_deref() != Some("RUNNING") {
            continue;
        }
        match t.last_status.as_deref() {
            Some("RUNNING") => running += 1,
            _ => pending += 1,
        }
    }
    svc.desired_count = Some(if draining_service { 0 } else { eligible });
    svc.running_count = Some(running);
    svc.pending_count = Some(pending);
    let complete = !draining_service && running == eligible && pending == 0 && !old_left;
    let deployments = svc.deployments.get_or_insert_with(Vec::new);
    for d in deployments.iter_mut() {
        if d.status.as_deref() == Some("PRIMARY") {
            d.desired_count = Some(eligible);
            d.running_count = Some(running);
            d.pending_count = Some(pending);
            if complete && d.rollout_state != Some(ecs::DeploymentRolloutState::Completed) {
                d.rollout_state = Some(ecs::DeploymentRolloutState::Completed);
                d.rollout_state_reason = Some(format!("ECS deployment {} completed.", d.id.as_deref().unwrap_or_default()));
                d.updated_at = Some(ctx.now);
            }
        }
    }
    if !old_left {
        deployments.retain(|d| d.status.as_deref() == Some("PRIMARY"));
    }
    if complete && before.events.iter().flatten().next().and_then(|e| e.message.as_deref()).is_none_or(|m| !m.ends_with("has reached a steady state.")) {
        push_event(&mut svc, ctx.now, format!("(service {service}) has reached a steady state."));
    }
    let anything_left = c.tasks_in_group(&group).any(|(_, t)| t.last_status.as_deref() != Some("STOPPED"));
    if draining_service && !anything_left {
        svc.status = Some("INACTIVE".into());
        svc.deployments = Some(Vec::new());
    }
    store_service(c, tx, &cluster_name, service, &before, svc);
    // A task that could not be placed may fit once something frees room.
    unplaceable_now.then_some(ctx.now)
}

/// Forgets STOPPED tasks older than the retention, a bounded number per pass
/// so that one pass never holds the state lock for long.
async fn forget_stopped_tasks(state: &State, scope: &Scope, retention: Duration) {
    const PER_PASS: usize = 10_000;
    let cutoff = now() - retention.as_secs_f64();
    let result = state
        .write(scope, |acct, tx| {
            let mut budget = PER_PASS;
            for c in acct.clusters.values_mut() {
                if budget == 0 {
                    break;
                }
                let old: Vec<String> = c
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.last_status.as_deref() == Some("STOPPED") && t.stopped_at.unwrap_or(0.0) < cutoff)
                    .map(|(id, _)| id.clone())
                    .take(budget)
                    .collect();
                budget -= old.len();
                let cluster = c.name().to_string();
                for id in old {
                    c.remove_task(&id);
                    tx.delete_task(&cluster, &id);
                }
            }
            Ok(())
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not forget old stopped tasks");
    }
}

/// When each instance's agent was first seen disconnected.
#[derive(Default)]
struct LostHosts {
    since: HashMap<(Scope, String, String), Instant>,
}

impl LostHosts {
    async fn reconcile(&mut self, state: &State, scope: &Scope, grace: Duration) {
        let disconnected: Vec<(String, String)> = state.read(scope, |acct| {
            acct.clusters
                .iter()
                .flat_map(|(cn, c)| {
                    c.instances
                        .iter()
                        .filter(|(_, i)| crate::ecs::instances::is_registered(i) && i.agent_connected != Some(true))
                        .map(move |(id, _)| (cn.clone(), id.clone()))
                })
                .collect()
        });
        let now_i = Instant::now();
        self.since.retain(|(s, c, i), _| s != scope || disconnected.iter().any(|(dc, di)| dc == c && di == i));
        let mut lost = Vec::new();
        for (cluster, id) in disconnected {
            let since = *self.since.entry((scope.clone(), cluster.clone(), id.clone())).or_insert(now_i);
            if now_i.duration_since(since) >= grace {
                lost.push((cluster, id));
            }
        }
        if lost.is_empty() {
            return;
        }
        let t = now();
        let result = state
            .write(scope, |acct, tx| {
                let Account { clusters, families, .. } = acct;
                for (cluster, id) in &lost {
                    let Some(c) = clusters.get_mut(cluster) else { continue };
                    let Some(arn) = c.instances.get(id).and_then(|i| i.container_instance_arn.clone()) else { continue };
                    let ids: Vec<String> = c
                        .tasks_on(&arn)
                        .filter(|(_, t)| t.last_status.as_deref() != Some("STOPPED"))
                        .map(|(tid, _)| tid.clone())
                        .collect();
                    for tid in ids {
                        let Some(task) = c.tasks.get_mut(&tid) else { continue };
                        let reason = format!(
                            "Host lost: the agent on container instance {id} has been disconnected for more than {:.1} s",
                            grace.as_secs_f64()
                        );
                        if task.desired_status.as_deref() != Some("STOPPED") {
                            task.stop_code = Some(if task.started_at.is_some() {
                                ecs::TaskStopCode::TerminationNotice
                            } else {
                                ecs::TaskStopCode::TaskFailedToStart
                            });
                            task.stopped_reason = Some(reason);
                            task.desired_status = Some("STOPPED".into());
                            task.stopping_at = Some(t);
                        }
                        task.last_status = Some("STOPPED".into());
                        task.stopped_at = Some(t);
                        for ct in task.containers.iter_mut().flatten() {
                            if ct.last_status.as_deref() != Some("STOPPED") {
                                ct.last_status = Some("STOPPED".into());
                                ct.reason = Some("Host lost".into());
                            }
                        }
                        task.version = Some(task.version.unwrap_or(0) + 1);
                        tx.put_task(cluster, &tid, &*task);
                        let task = task.clone();
                        placement::release(families, c, &task);
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not stop the tasks of lost hosts");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_ten_tasks_and_count_the_rest() {
        let ids: Vec<String> = (0..25).map(|i| format!("t{i:02}")).collect();
        assert_eq!(task_list(ids[..2].iter()), " (task t00) (task t01)");
        let long = task_list(ids.iter());
        assert!(long.starts_with(" (task t00) (task t01)"), "{long}");
        assert!(long.ends_with(" (task t09) and 15 more"), "{long}");
        assert_eq!(task_list(ids[..10].iter()).matches("(task ").count(), 10);
        assert!(!task_list(ids[..10].iter()).contains("more"));
    }
}
