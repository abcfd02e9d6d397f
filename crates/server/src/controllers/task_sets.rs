//! The task sets controller: services with the EXTERNAL deployment
//! controller. For each of a service's task sets it starts tasks up to the
//! task set's computed desired count (placed by the scheduler, in the
//! service's group, `startedBy` the task set's id), stops the excess (and
//! every task of a DRAINING task set), replaces tasks on DRAINING
//! instances, keeps the counts and stability status the API shows, and
//! drops a DRAINING task set once its tasks have stopped. The decisions are
//! `crate::core::task_sets::plan`; registering the tasks in the task sets'
//! target groups is the load-balancer targets controller's
//! (`crate::core::lb::ecs`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use flotilla_model::ecs;
use flotilla_model::lb::ObservedHealth;
use flotilla_model::lifecycle::{InstanceStatus, ServiceStatus, TaskSetStatus};
use flotilla_scheduler::Launch;

use super::batches::{reconcile_in_batches, ServiceWork};
use super::runtime::{Controller, Next};
use crate::core::placement::{self, PlacementRequest};
use crate::core::services::{push_event, task_list, was_steady, STEADY_STATE};
use crate::core::state::{Account, Key, ServiceChanges, ServiceKey, State, Tx};
use crate::core::task_definitions::resolve;
use crate::core::task_sets::{self as ts, SetTask, StopWhy};
use crate::core::tasks::{insert_tasks, new_task, request_stop, NewTasks};

/// The most tasks one task set starts in one pass (as the service
/// controller bounds its lock holds); the rest follow at once.
const MAX_STARTS_PER_PASS: usize = 1_000;

/// How soon to look again while a task set behind a load balancer is not
/// steady: target health reports are not durable writes.
const HEALTH_POLL: f64 = 2.0;

pub struct TaskSets {
    changes: Arc<ServiceChanges>,
}

impl TaskSets {
    pub fn new(state: &State) -> TaskSets {
        TaskSets {
            changes: state.watch_services(),
        }
    }
}

fn is_managed(s: &ecs::Service) -> bool {
    s.lifecycle() != ServiceStatus::Inactive && ts::is_external(s)
}

impl Controller for TaskSets {
    type Key = ServiceKey;

    fn name(&self) -> &'static str {
        "task-sets"
    }

    fn touched(&mut self) -> BTreeSet<ServiceKey> {
        self.changes.take()
    }

    fn all(&mut self, state: &State) -> BTreeSet<ServiceKey> {
        super::batches::services_where(state, is_managed)
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

/// Reconciles one EXTERNAL service; answers when to look again.
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
    let svc = c.services.get(service).filter(|s| is_managed(s))?;
    let group = format!("service:{service}");
    *work += 1 + c.tasks_in_group_len(&group);
    let draining = draining.entry(cluster.to_string()).or_insert_with(|| {
        c.instances
            .values()
            .filter(|i| i.lifecycle() == InstanceStatus::Draining)
            .filter_map(|i| i.container_instance_arn.clone())
            .collect()
    });
    let before = svc.clone();
    let mut svc = svc.clone();
    let scope = tx.scope().clone();
    let service_draining = svc.lifecycle() == ServiceStatus::Draining;
    let desired = svc.desired_count.unwrap_or(0);
    let mut wake: Option<f64> = None;
    let mut soon = |at: f64| wake = Some(wake.map_or(at, |w: f64| w.min(at)));

    // Each task set's tasks, as the plan sees them.
    let mut by_set: HashMap<String, Vec<SetTask>> = HashMap::new();
    let mut orphans = Vec::new();
    let sets: HashSet<String> = svc
        .task_sets
        .iter()
        .flatten()
        .filter_map(|t| t.id.clone())
        .collect();
    for (id, t) in c.tasks_in_group(&group) {
        if t.is_stopped() {
            continue;
        }
        let owner = t.started_by.clone().unwrap_or_default();
        if !sets.contains(&owner) {
            // A task of no task set (its set was dropped): it stops.
            if !t.stop_requested() {
                orphans.push(id.clone());
            }
            continue;
        }
        let probe = svc
            .task_sets
            .iter()
            .flatten()
            .find(|s| s.id.as_deref() == Some(owner.as_str()))
            .map(|s| ecs::Service {
                load_balancers: s.load_balancers.clone(),
                ..Default::default()
            })
            .unwrap_or_default();
        let lb_health = crate::core::lb::ecs::task_health(lb, &probe, t, None);
        let unhealthy = t.health_status == Some(ecs::HealthStatus::Unhealthy)
            || lb_health == Some(ObservedHealth::Unhealthy);
        let healthy = t.health_status != Some(ecs::HealthStatus::Unhealthy)
            && lb_health.is_none_or(|h| h == ObservedHealth::Healthy);
        by_set.entry(owner).or_default().push(SetTask {
            id: id.clone(),
            phase: t.phase(),
            status: t.status(),
            on_draining_instance: t
                .container_instance_arn
                .as_ref()
                .is_some_and(|a| draining.contains(a)),
            unhealthy,
            healthy,
            protected: c
                .task_protection
                .get(id.as_str())
                .is_some_and(|until| *until > now),
            created_at: t.created_at.unwrap_or(0.0),
        });
    }

    let mut stopped_orphans = Vec::new();
    for id in orphans {
        if request_stop(
            families,
            c,
            tx,
            &id,
            now,
            ecs::TaskStopCode::ServiceSchedulerInitiated,
            format!("Scaling activity initiated by (service {service})"),
        ) {
            stopped_orphans.push(id);
        }
    }
    if !stopped_orphans.is_empty() {
        let list = task_list(stopped_orphans.iter());
        push_event(
            &mut svc,
            now,
            format!(
                "(service {service}) has stopped {} running tasks:{list}.",
                stopped_orphans.len()
            ),
        );
    }

    let mut all_steady = true;
    let mut gone = Vec::new();
    let (mut running_total, mut pending_total) = (0, 0);
    let task_sets = svc.task_sets.clone().unwrap_or_default();
    let mut updated = Vec::with_capacity(task_sets.len());
    for mut set in task_sets {
        let id = set.id.clone().unwrap_or_default();
        let label = format!("(service {service}, taskSet {id})");
        let tasks = by_set.remove(&id).unwrap_or_default();
        let plan = ts::plan(&set, desired, service_draining, &tasks);

        let mut stopped = Vec::new();
        for (task, why) in &plan.stop {
            let reason = match why {
                StopWhy::ScaleIn => format!("Scaling activity initiated by (deployment {id})"),
                StopWhy::InstanceDraining => "Container instance is being drained".to_string(),
            };
            if request_stop(
                families,
                c,
                tx,
                task,
                now,
                ecs::TaskStopCode::ServiceSchedulerInitiated,
                reason,
            ) {
                stopped.push(task.clone());
            }
        }
        if !stopped.is_empty() {
            let list = task_list(stopped.iter());
            push_event(
                &mut svc,
                now,
                format!(
                    "{label} has stopped {} running tasks:{list}.",
                    stopped.len()
                ),
            );
        }

        let mut started = 0;
        if plan.start > 0 {
            let td_ref = set.task_definition.clone().unwrap_or_default();
            match resolve(families, &scope, &td_ref) {
                Err(_) => push_event(
                    &mut svc,
                    now,
                    format!("{label} cannot start tasks: task definition {td_ref} is gone."),
                ),
                Ok(td) => {
                    let request = placement::task_request(&PlacementRequest {
                        definition: &td.definition,
                        overrides: None,
                        group: &group,
                        constraints: svc.placement_constraints.as_deref().unwrap_or_default(),
                        strategies: svc.placement_strategy.as_deref().unwrap_or_default(),
                        launch: Launch::Service,
                    });
                    match request {
                        Err(e) => push_event(
                            &mut svc,
                            now,
                            format!("{label} cannot place tasks: {}", e.message),
                        ),
                        Ok(request) => {
                            let count = plan.start.min(MAX_STARTS_PER_PASS);
                            if count < plan.start {
                                soon(now);
                            }
                            let placed = placement::place(c, &request, count);
                            let spec = NewTasks {
                                definition: &td.definition,
                                overrides: None,
                                group: group.clone(),
                                started_by: Some(id.clone()),
                                tags: if svc.propagate_tags == Some(ecs::PropagateTags::Service) {
                                    svc.tags.clone().unwrap_or_default()
                                } else {
                                    Vec::new()
                                },
                                launch_type: set.launch_type.unwrap_or(ecs::LaunchType::Ec2),
                                enable_execute_command: svc.enable_execute_command.unwrap_or(false),
                            };
                            let tasks: Vec<_> = placed
                                .instance_ids
                                .iter()
                                .map(|i| new_task(&scope, now, c, i, &spec))
                                .collect();
                            started = tasks.len() as i32;
                            if !tasks.is_empty() {
                                let list = task_list(tasks.iter().map(|(id, _)| id));
                                push_event(
                                    &mut svc,
                                    now,
                                    format!("{label} has started {} tasks:{list}.", tasks.len()),
                                );
                            }
                            insert_tasks(c, tx, tasks);
                            if let Some(why) = placed.unplaced {
                                push_event(
                                    &mut svc,
                                    now,
                                    format!(
                                        "{label} was unable to place a task because {}",
                                        why.explanation()
                                    ),
                                );
                                // Room may appear without anything touching this service.
                                soon(now + 1.0);
                            }
                        }
                    }
                }
            }
        }

        let running = plan.running_count;
        let pending = plan.pending_count + started;
        running_total += running;
        pending_total += pending;
        // `tasks` holds the task set's tasks not yet STOPPED.
        if ts::status(&set) == TaskSetStatus::Draining && tasks.is_empty() {
            // Deleted and every task stopped: the task set is gone.
            gone.push(id.clone());
            push_event(
                &mut svc,
                now,
                format!("(service {service}) deleted task set (taskSet {id})."),
            );
            continue;
        }
        let stability = if started > 0 {
            ecs::StabilityStatus::Stabilizing
        } else {
            plan.stability
        };
        if stability != ecs::StabilityStatus::SteadyState {
            all_steady = false;
            if set.load_balancers.as_ref().is_some_and(|l| !l.is_empty()) {
                soon(now + HEALTH_POLL);
            }
        }
        let changed_counts = set.computed_desired_count != Some(plan.computed_desired_count);
        set.computed_desired_count = Some(plan.computed_desired_count);
        set.running_count = Some(running);
        set.pending_count = Some(pending);
        if changed_counts {
            set.updated_at = Some(now);
        }
        if set.stability_status != Some(stability) {
            set.stability_status = Some(stability);
            set.stability_status_at = Some(now);
        }
        updated.push(set);
    }
    svc.task_sets = Some(updated);
    svc.running_count = Some(running_total);
    svc.pending_count = Some(pending_total);
    let anything_left = c.tasks_in_group(&group).any(|(_, t)| !t.is_stopped());
    if service_draining && !anything_left {
        svc.status = Some(ServiceStatus::Inactive);
        svc.task_sets = Some(Vec::new());
    } else if all_steady && !service_draining && !was_steady(&svc) && gone.is_empty() {
        push_event(&mut svc, now, format!("(service {service}) {STEADY_STATE}"));
    }
    if svc != before {
        // Counts follow from the tasks, which are stored themselves (the
        // first pass after a restart recomputes them): a task turning
        // RUNNING costs one task write, not another copy of the service.
        if !only_counts_differ(&before, &svc) {
            tx.put(Key::Service(cluster, service), &svc);
        }
        c.services.insert(service.to_string(), svc);
    }
    wake
}

/// Whether `a` and `b` differ in nothing but the running and pending
/// counts of the service and its task sets.
fn only_counts_differ(a: &ecs::Service, b: &ecs::Service) -> bool {
    let strip = |s: &ecs::Service| {
        let mut s = s.clone();
        s.running_count = None;
        s.pending_count = None;
        for t in s.task_sets.iter_mut().flatten() {
            t.running_count = None;
            t.pending_count = None;
        }
        s
    };
    strip(a) == strip(b)
}
