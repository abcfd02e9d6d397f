//! The daemon controller: DAEMON services, one task on every instance that
//! may hold one. The decisions are `flotilla_reconcile::daemon` (pure); this
//! module builds its snapshot from the state and the scheduler's verdicts,
//! and applies the plan.

use std::collections::BTreeSet;
use std::sync::Arc;

use flotilla_model::ecs;
use flotilla_model::lifecycle::{DeploymentStatus, InstanceStatus, ServiceStatus};
use flotilla_reconcile::daemon as rd;
use flotilla_scheduler::{Check, Launch};

use super::batches::{reconcile_in_batches, ServiceWork};
use super::runtime::{Controller, Next};
use super::services::store_service;
use crate::core::placement::{self, PlacementRequest};
use crate::core::services::{push_event, task_list, was_steady, STEADY_STATE};
use crate::core::state::{Account, Key, ServiceChanges, ServiceKey, State, Tx};
use crate::core::task_definitions::resolve;
use crate::core::tasks::{insert_tasks, new_task, request_stop, NewTasks};

pub struct Daemons {
    changes: Arc<ServiceChanges>,
}

impl Daemons {
    pub fn new(state: &State) -> Daemons {
        Daemons {
            changes: state.watch_services(),
        }
    }
}

fn is_daemon(s: &ecs::Service) -> bool {
    s.lifecycle() != ServiceStatus::Inactive
        && s.scheduling_strategy == Some(ecs::SchedulingStrategy::Daemon)
}

impl Controller for Daemons {
    type Key = ServiceKey;

    fn name(&self) -> &'static str {
        "daemons"
    }

    fn touched(&mut self) -> BTreeSet<ServiceKey> {
        self.changes.take()
    }

    fn all(&mut self, state: &State) -> BTreeSet<ServiceKey> {
        super::batches::services_where(state, is_daemon)
    }

    async fn reconcile(
        &mut self,
        state: &State,
        keys: BTreeSet<ServiceKey>,
        _now: f64,
    ) -> Vec<(ServiceKey, Next)> {
        let work: ServiceWork = |acct, tx, now, cluster, service, _, work| {
            reconcile_one(acct, tx, now, cluster, service, work)
        };
        reconcile_in_batches(state, keys, work).await
    }
}

fn reconcile_one(
    acct: &mut Account,
    tx: &mut Tx<'_>,
    now: f64,
    cluster: &str,
    service: &str,
    work: &mut usize,
) -> Option<f64> {
    let scope = tx.scope().clone();
    let Account {
        clusters, families, ..
    } = acct;
    let c = clusters.get_mut(cluster)?;
    let mut svc = c.services.get(service).filter(|s| is_daemon(s)).cloned()?;
    let group = format!("service:{service}");
    *work += 1 + c.tasks_in_group_len(&group) + c.instances.len();
    let before = svc.clone();
    let cluster_name = c.name().to_string();
    let primary = svc.primary_deployment().cloned();

    // The scheduler's verdict on each instance for the PRIMARY's tasks.
    let primary_td = primary
        .as_ref()
        .and_then(|d| d.task_definition.clone())
        .and_then(|r| resolve(families, &scope, &r).ok());
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
    let verdicts = request
        .as_ref()
        .map(|(_, r)| flotilla_scheduler::explain(&c.view, r))
        .unwrap_or_default();
    let instances = verdicts
        .iter()
        .filter_map(|v| {
            let (inst, _) = c.view.get(&v.instance_id)?;
            let verdict = match &v.rejection {
                None => rd::Verdict::Fits,
                Some(r) if matches!(r.check(), Check::MemberOf | Check::Attribute) => {
                    rd::Verdict::Excluded
                }
                Some(r) => rd::Verdict::NoRoom(r.reason().to_string()),
            };
            Some(rd::Instance {
                id: v.instance_id.clone(),
                serving: inst.status == InstanceStatus::Active && inst.agent_connected,
                verdict,
            })
        })
        .collect();
    let draining_service = svc.lifecycle() == ServiceStatus::Draining;
    let primary_id = primary.as_ref().and_then(|d| d.id.clone());
    let snapshot = |c: &crate::core::state::ClusterState, instances| rd::Service {
        draining: draining_service,
        primary: primary_id.clone(),
        instances,
        tasks: c
            .tasks_in_group(&group)
            .map(|(id, t)| rd::Task {
                id: id.clone(),
                instance: t.container_instance_arn.clone().unwrap_or_default(),
                deployment_id: t.started_by.clone().unwrap_or_default(),
                phase: t.phase(),
            })
            .collect(),
    };
    let plan = rd::plan(&snapshot(c, instances));

    let mut stopped = Vec::new();
    for (id, reason) in &plan.stop {
        if request_stop(
            families,
            c,
            tx,
            id,
            now,
            ecs::TaskStopCode::ServiceSchedulerInitiated,
            reason.describe().to_string(),
        ) {
            stopped.push(id.clone());
        }
    }
    if !stopped.is_empty() {
        let list = task_list(stopped.iter());
        push_event(
            &mut svc,
            now,
            format!(
                "(service {service}) has stopped {} running tasks:{list}.",
                stopped.len()
            ),
        );
    }
    if let (Some((td, request)), Some(dep)) = (&request, &primary) {
        let spec = NewTasks {
            definition: &td.definition,
            overrides: None,
            group: group.clone(),
            started_by: dep.id.clone(),
            tags: if svc.propagate_tags == Some(ecs::PropagateTags::Service) {
                svc.tags.clone().unwrap_or_default()
            } else {
                Vec::new()
            },
            launch_type: svc.launch_type.unwrap_or(ecs::LaunchType::Ec2),
            enable_execute_command: svc.enable_execute_command.unwrap_or(false),
        };
        let mut tasks = Vec::new();
        for arn in &plan.start {
            if c.view.reserve(arn, &request.group, &request.demand).is_ok() {
                if let Some(id) = flotilla_model::arn::name_from_ref(arn, "container-instance") {
                    tasks.push(new_task(&scope, now, c, id, &spec));
                }
            }
        }
        if !tasks.is_empty() {
            let list = task_list(tasks.iter().map(|(id, _)| id));
            push_event(
                &mut svc,
                now,
                format!(
                    "(service {service}) has started {} tasks:{list}.",
                    tasks.len()
                ),
            );
        }
        insert_tasks(c, tx, tasks);
    }
    if let Some(why) = &plan.unplaceable {
        push_event(
            &mut svc,
            now,
            format!("(service {service}) was unable to place a task because {why}."),
        );
    }

    // Counts, deployments and status from the tasks as they now stand.
    let status = rd::status(&snapshot(c, Vec::new()), plan.eligible);
    svc.desired_count = Some(if draining_service {
        0
    } else {
        plan.eligible as i32
    });
    svc.running_count = Some(status.running as i32);
    svc.pending_count = Some(status.pending as i32);
    let deployments = svc.deployments.get_or_insert_with(Vec::new);
    for d in deployments
        .iter_mut()
        .filter(|d| d.status == Some(DeploymentStatus::Primary))
    {
        d.desired_count = Some(plan.eligible as i32);
        d.running_count = Some(status.running as i32);
        d.pending_count = Some(status.pending as i32);
        if status.complete && d.rollout_state != Some(ecs::DeploymentRolloutState::Completed) {
            d.rollout_state = Some(ecs::DeploymentRolloutState::Completed);
            d.rollout_state_reason = Some(format!(
                "ECS deployment {} completed.",
                d.id.as_deref().unwrap_or_default()
            ));
            d.updated_at = Some(now);
        }
    }
    if !status.old_left {
        deployments.retain(|d| d.status == Some(DeploymentStatus::Primary));
    }
    if status.complete && !was_steady(&before) {
        push_event(&mut svc, now, format!("(service {service}) {STEADY_STATE}"));
    }
    if draining_service && !status.anything_left {
        svc.status = Some(ServiceStatus::Inactive);
        svc.deployments = Some(Vec::new());
    }
    // The service deployment history follows the deployments.
    if let Some(meta) = c.service_meta.get_mut(service) {
        if crate::core::deployments::sync(&mut meta.history, &svc, now).0 {
            tx.put(Key::ServiceMeta(&cluster_name, service), &*meta);
        }
    }
    store_service(c, tx, &cluster_name, service, &before, svc);
    // A task that could not be placed may fit once something frees room.
    plan.unplaceable.is_some().then_some(now)
}
