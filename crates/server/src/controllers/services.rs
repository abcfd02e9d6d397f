//! The service controller: REPLICA services. For every ACTIVE or DRAINING
//! replica service a snapshot goes to the pure reconciler
//! (`flotilla_reconcile::reconcile`); its plan is applied under the state
//! lock: starts are placed by the scheduler, stops are requested,
//! deployments and events updated. Reconciling twice does no harm.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use flotilla_model::ecs;
use flotilla_model::lb::ObservedHealth;
use flotilla_model::lifecycle::{DeploymentStatus, InstanceStatus, ServiceStatus, TaskStatus};
use flotilla_reconcile as rc;
use flotilla_scheduler::Launch;

use super::batches::{reconcile_in_batches, ServiceWork};
use super::runtime::{Controller, Next};
use crate::core::deployments;
use crate::core::placement::{self, PlacementRequest};
use crate::core::resources::definition_of;
use crate::core::services::{new_deployment, push_event, start_deployment, task_list, was_steady};
use crate::core::state::{
    Account, ClusterState, Families, Key, ServiceChanges, ServiceKey, ServiceMeta, State, Tx,
};
use crate::core::task_definitions::resolve;
use crate::core::tasks::{insert_tasks, new_task, request_stop, NewTasks};

/// The most tasks one service starts in one pass. Placing and creating a
/// task takes tens of microseconds under the state's write lock, and every
/// API request waits while it is held, so one pass must not start an
/// unbounded number. The reconciler's start count is an upper bound, so
/// starting fewer is always safe; the service is reconciled again at once
/// for the rest. At 250 the million-task placement took 111 s instead of
/// 62 s (more passes, more commits) for a smaller gain in API latency than
/// the background runtime's priority gives.
const MAX_STARTS_PER_PASS: usize = 1_000;

/// The controller of REPLICA services.
pub struct Replicas {
    changes: Arc<ServiceChanges>,
}

impl Replicas {
    pub fn new(state: &State) -> Replicas {
        Replicas {
            changes: state.watch_services(),
        }
    }
}

fn is_replica(s: &ecs::Service) -> bool {
    s.lifecycle() != ServiceStatus::Inactive
        && s.scheduling_strategy != Some(ecs::SchedulingStrategy::Daemon)
        // EXTERNAL services are the task sets controller's.
        && !crate::core::task_sets::is_external(s)
}

impl Controller for Replicas {
    type Key = ServiceKey;

    fn name(&self) -> &'static str {
        "services"
    }

    fn touched(&mut self) -> BTreeSet<ServiceKey> {
        self.changes.take()
    }

    fn all(&mut self, state: &State) -> BTreeSet<ServiceKey> {
        super::batches::services_where(state, is_replica)
    }

    async fn reconcile(
        &mut self,
        state: &State,
        keys: BTreeSet<ServiceKey>,
        _now: f64,
    ) -> Vec<(ServiceKey, Next)> {
        let work: ServiceWork = |acct, tx, now, cluster, service, draining, work| {
            reconcile_one(acct, tx, now, cluster, service, draining, work)
        };
        reconcile_in_batches(state, keys, work).await
    }
}

fn short_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}

/// The reconciler's view of one service.
fn snapshot(
    families: &Families,
    lb: &crate::core::lb::LbAccount,
    c: &ClusterState,
    svc: &ecs::Service,
    draining: &HashSet<String>,
) -> rc::Service {
    let name = svc.service_name.clone().unwrap_or_default();
    let group = format!("service:{name}");
    let dc = svc.deployment_configuration.clone().unwrap_or_default();
    let history = c.service_meta.get(&name).map(|m| &m.history);
    let green = history.and_then(deployments::green_deployment);
    let breaker = dc
        .deployment_circuit_breaker
        .as_ref()
        .filter(|b| b.enable == Some(true))
        .map(|b| b.rollback == Some(true));
    let deployments: Vec<rc::Deployment> = svc
        .deployments
        .iter()
        .flatten()
        .map(|d| rc::Deployment {
            id: d.id.clone().unwrap_or_default(),
            task_definition: d.task_definition.clone().unwrap_or_default(),
            status: if d.status == Some(DeploymentStatus::Primary) {
                rc::DeploymentStatus::Primary
            } else {
                rc::DeploymentStatus::Active
            },
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
                    let checked = definition_of(families, t).is_some_and(|d| {
                        d.container_definitions
                            .iter()
                            .flatten()
                            .any(|c| c.health_check.is_some())
                    });
                    health_checked.push((td, checked));
                    checked
                }
            };
            let stop_cause = t.stop_code.map(|code| match code {
                ecs::TaskStopCode::EssentialContainerExited
                | ecs::TaskStopCode::TaskFailedToStart => rc::StopCause::Failed,
                _ if t
                    .stopped_reason
                    .as_deref()
                    .is_some_and(|r| r.contains("health")) =>
                {
                    rc::StopCause::Failed
                }
                _ => rc::StopCause::Intended,
            });
            let container_health = match t.health_status {
                Some(ecs::HealthStatus::Healthy) => rc::Health::Healthy,
                Some(ecs::HealthStatus::Unhealthy) => rc::Health::Unhealthy,
                _ => rc::Health::Unknown,
            };
            // Behind a load balancer a task is healthy once its targets are
            // (and its containers, if they have a health check). A target
            // failing its checks is replaced by `crate::core::lb::ecs`, with
            // ECS's reason; here it is only not healthy.
            let lb_health = crate::core::lb::ecs::task_health(lb, svc, t, green);
            let health = match lb_health {
                None => container_health,
                Some(ObservedHealth::Healthy) if has_health_check => container_health,
                Some(ObservedHealth::Healthy) => rc::Health::Healthy,
                Some(_) if container_health == rc::Health::Unhealthy => rc::Health::Unhealthy,
                Some(_) => rc::Health::Unknown,
            };
            rc::Task {
                id: t.task_arn.clone().unwrap_or_default(),
                deployment_id: t.started_by.clone().unwrap_or_default(),
                phase: t.phase(),
                health,
                has_health_check: has_health_check || lb_health.is_some(),
                started_at: t.started_at,
                stopped_at: t.stopped_at,
                stop_cause,
                on_draining_instance: !draining.is_empty()
                    && t.container_instance_arn
                        .as_ref()
                        .is_some_and(|a| draining.contains(a)),
                instance: t.container_instance_arn.clone().unwrap_or_default(),
                zone: t.availability_zone.clone(),
                protected_until: t
                    .task_arn
                    .as_deref()
                    .and_then(|arn| c.task_protection.get(arn.rsplit('/').next().unwrap_or(arn)))
                    .copied(),
            }
        })
        .collect();
    rc::Service {
        name,
        draining: svc.lifecycle() == ServiceStatus::Draining,
        desired_count: svc.desired_count.unwrap_or(0).max(0) as u32,
        minimum_healthy_percent: dc.minimum_healthy_percent.unwrap_or(100).max(0) as u32,
        maximum_percent: dc.maximum_percent.unwrap_or(200).max(0) as u32,
        circuit_breaker: breaker,
        health_check_grace_period: svc.health_check_grace_period_seconds.unwrap_or(0) as f64,
        deployments,
        tasks,
        last_completed_task_definition: svc.last_completed_task_definition().or_else(|| {
            c.service_meta
                .get(&svc.service_name.clone().unwrap_or_default())
                .and_then(|m| m.last_completed_task_definition.clone())
        }),
        was_steady: was_steady(svc),
        hold_previous: history.is_some_and(deployments::holds_previous),
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
        rc::StopReason::Deployment => {
            format!("Scaling activity initiated by (deployment of service {name})")
        }
        rc::StopReason::Unhealthy => "Task failed container health checks".into(),
        rc::StopReason::InstanceDraining => "Container instance is being drained".into(),
        rc::StopReason::ServiceDraining => format!("Service {name} is being deleted"),
    }
}

/// Reconciles one service inside a batch; adds what it looked at to `work`.
/// Returns when it wants to be reconciled again if nothing else happens.
/// `draining` caches each cluster's DRAINING instances for the batch.
fn reconcile_one(
    acct: &mut Account,
    tx: &mut Tx<'_>,
    now: f64,
    cluster: &str,
    service: &str,
    draining: &mut HashMap<String, HashSet<String>>,
    work: &mut usize,
) -> Option<f64> {
    let Account {
        clusters,
        families,
        lb,
        ..
    } = acct;
    let c = clusters.get_mut(cluster)?;
    let svc = c.services.get(service).filter(|s| is_replica(s))?;
    *work += 1 + c.tasks_in_group_len(&format!("service:{service}"));
    let draining = draining.entry(cluster.to_string()).or_insert_with(|| {
        c.instances
            .values()
            .filter(|i| i.lifecycle() == InstanceStatus::Draining)
            .filter_map(|i| i.container_instance_arn.clone())
            .collect()
    });
    let snap = snapshot(families, lb, c, svc, draining);
    let plan = rc::reconcile(&snap, now);
    let wake = apply_plan(families, c, tx, now, service, &snap, plan);
    let next = drive_strategy(c, lb, tx, now, service, &snap);
    match (wake, next) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Moves a blue/green (canary, linear) deployment along once the plan is
/// applied: what the snapshot shows of its new and old revisions' tasks
/// goes to `deployments::drive`.
fn drive_strategy(
    c: &mut ClusterState,
    lb: &mut crate::core::lb::LbAccount,
    tx: &mut Tx<'_>,
    now: f64,
    service: &str,
    snap: &rc::Service,
) -> Option<f64> {
    let meta = c.service_meta.get(service)?;
    let green = deployments::green_deployment(&meta.history)?.to_string();
    let mut seen = deployments::Seen::default();
    for t in &snap.tasks {
        let left = t.phase != rc::TaskPhase::Stopped;
        if t.deployment_id == green {
            seen.green_left += u32::from(left);
            let healthy = t.phase == rc::TaskPhase::Running
                && match t.health {
                    rc::Health::Healthy => true,
                    rc::Health::Unknown => !t.has_health_check,
                    rc::Health::Unhealthy => false,
                };
            seen.green_healthy += u32::from(healthy);
        } else {
            seen.blue_left += u32::from(left);
        }
    }
    let (mut meta, mut svc) = (meta.clone(), c.services.get(service)?.clone());
    let (changed, wake) = deployments::drive(&mut meta.history, &mut svc, lb, tx, seen, now);
    if changed {
        let cluster = c.name().to_string();
        tx.put(Key::ServiceMeta(&cluster, service), &meta);
        tx.put(Key::Service(&cluster, service), &svc);
        c.service_meta.insert(service.to_string(), meta);
        c.services.insert(service.to_string(), svc);
    }
    wake
}

fn apply_plan(
    families: &Families,
    c: &mut ClusterState,
    tx: &mut Tx<'_>,
    now: f64,
    service: &str,
    snap: &rc::Service,
    plan: rc::Plan,
) -> Option<f64> {
    let mut svc = c.services.get(service).cloned()?;
    let before = svc.clone();
    let cluster_name = c.name().to_string();
    let name = snap.name.clone();
    let mut wake = plan.wake_at;
    let scope = tx.scope().clone();

    // Stops first: they free room for the starts.
    let mut stopped = Vec::new();
    for (task_arn, reason) in &plan.stop {
        let id = short_id(task_arn).to_string();
        if request_stop(
            families,
            c,
            tx,
            &id,
            now,
            ecs::TaskStopCode::ServiceSchedulerInitiated,
            stop_reason(&name, reason),
        ) {
            stopped.push(id);
        }
    }
    if !stopped.is_empty() {
        let list = task_list(stopped.iter());
        push_event(
            &mut svc,
            now,
            format!(
                "(service {name}) has stopped {} running tasks:{list}.",
                stopped.len()
            ),
        );
    }

    for (deployment_id, count) in &plan.start {
        let Some(dep) = svc
            .deployments
            .iter()
            .flatten()
            .find(|d| d.id.as_deref() == Some(deployment_id.as_str()))
        else {
            continue;
        };
        let td_ref = dep.task_definition.clone().unwrap_or_default();
        let Ok(td) = resolve(families, &scope, &td_ref) else {
            push_event(
                &mut svc,
                now,
                format!("(service {name}) cannot start tasks: task definition {td_ref} is gone."),
            );
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
                push_event(
                    &mut svc,
                    now,
                    format!("(service {name}) cannot place tasks: {}", e.message),
                );
                continue;
            }
        };
        // At most MAX_STARTS_PER_PASS now; the rest at once in the next pass,
        // so that one lock hold stays short (see the constant).
        let planned = *count as usize;
        let count = planned.min(MAX_STARTS_PER_PASS);
        if count < planned {
            wake = Some(now);
        }
        let placed = placement::place(c, &request, count);
        let spec = NewTasks {
            definition: &td.definition,
            overrides: None,
            group,
            started_by: Some(deployment_id.clone()),
            tags: if svc.propagate_tags == Some(ecs::PropagateTags::Service) {
                svc.tags.clone().unwrap_or_default()
            } else {
                Vec::new()
            },
            launch_type: svc.launch_type.unwrap_or(ecs::LaunchType::Ec2),
            enable_execute_command: svc.enable_execute_command.unwrap_or(false),
        };
        let tasks: Vec<_> = placed
            .instance_ids
            .iter()
            .map(|i| new_task(&scope, now, c, i, &spec))
            .collect();
        if !tasks.is_empty() {
            let list = task_list(tasks.iter().map(|(id, _)| id));
            push_event(
                &mut svc,
                now,
                format!("(service {name}) has started {} tasks:{list}.", tasks.len()),
            );
        }
        insert_tasks(c, tx, tasks);
        if let Some(why) = placed.unplaced {
            push_event(
                &mut svc,
                now,
                format!(
                    "(service {name}) was unable to place a task because {}",
                    why.explanation()
                ),
            );
            // Room may appear without anything touching this service.
            wake = Some(wake.map_or(now, |w: f64| w.min(now)));
        }
    }

    // Taken out and put back (not cloned: the history is kept whole).
    let mut meta = c.service_meta.remove(service).unwrap_or_default();
    let mut meta_changed = false;
    let deployments = svc.deployments.get_or_insert_with(Vec::new);
    for u in &plan.update {
        let Some(d) = deployments
            .iter_mut()
            .find(|d| d.id.as_deref() == Some(u.id.as_str()))
        else {
            continue;
        };
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
        if changed
            && rollout == ecs::DeploymentRolloutState::Completed
            && d.rollout_state != Some(rollout)
        {
            // Remember the rollback target beyond this deployment's life.
            meta.last_completed_task_definition = d.task_definition.clone();
            meta_changed = true;
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
            d.updated_at = Some(now);
        }
    }
    deployments.retain(|d| {
        !plan
            .remove
            .iter()
            .any(|r| d.id.as_deref() == Some(r.as_str()))
    });
    if let Some(td) = &plan.rollback_to {
        let failed = svc
            .deployments
            .iter()
            .flatten()
            .find(|d| d.status == Some(DeploymentStatus::Primary))
            .and_then(|d| d.id.clone());
        let dep = new_deployment(now, td, svc.desired_count.unwrap_or(0), svc.launch_type);
        if let Some(failed) = failed {
            deployments::breaker_rolled_back(&mut meta.history, &failed, &dep, now);
            meta_changed = true;
        }
        svc.task_definition = Some(td.clone());
        start_deployment(&mut svc, now, dep);
    }
    // The service deployment history follows the deployments.
    let (synced, bake_ends) = deployments::sync(&mut meta.history, &svc, now);
    meta_changed |= synced;
    if let Some(at) = bake_ends {
        wake = Some(wake.map_or(at, |w: f64| w.min(at)));
    }
    if meta_changed {
        tx.put(Key::ServiceMeta(&cluster_name, service), &meta);
    }
    if meta != ServiceMeta::default() {
        c.service_meta.insert(service.to_string(), meta);
    }
    for e in plan.events {
        push_event(&mut svc, now, e);
    }

    // Counts the API shows, from the tasks themselves.
    let group = format!("service:{name}");
    let (mut running, mut pending) = (0, 0);
    for (_, t) in c
        .tasks_in_group(&group)
        .filter(|(_, t)| !t.stop_requested())
    {
        match t.status() {
            TaskStatus::Running => running += 1,
            TaskStatus::Stopped => {}
            _ => pending += 1,
        }
    }
    svc.running_count = Some(running);
    svc.pending_count = Some(pending);
    let anything_left = c.tasks_in_group(&group).any(|(_, t)| !t.is_stopped());
    if svc.lifecycle() == ServiceStatus::Draining && !anything_left {
        svc.status = Some(ServiceStatus::Inactive);
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
pub(super) fn store_service(
    c: &mut ClusterState,
    tx: &mut Tx<'_>,
    cluster: &str,
    service: &str,
    before: &ecs::Service,
    svc: ecs::Service,
) {
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
        let mut s = ecs::Service {
            events: None,
            ..s.clone()
        };
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
