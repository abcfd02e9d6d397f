//! ECS services behind target groups: a service's RUNNING tasks are its
//! targets (for a service with the EXTERNAL deployment controller, each
//! task set's tasks are the targets of the task set's own groups).
//!
//! - CreateService/UpdateService check `loadBalancers` as ECS does
//!   ([`check_load_balancers`]).
//! - [`sync`] keeps each group in step with the service's tasks: a task
//!   RUNNING (and not asked to stop) is registered, with the host port
//!   Docker bound for the container port (target type `instance`: the
//!   container instance's id; type `ip`: the host address the port is bound
//!   on, since tasks are reached on their host); a task asked to stop, or
//!   gone, is deregistered and drains. Each change is a service event in
//!   ECS's words.
//! - A task whose target the load balancer reports unhealthy after the
//!   service's `healthCheckGracePeriodSeconds` is stopped ("Task failed ELB
//!   health checks in (target-group …)"; events "(service S) (instance I)
//!   (port P) is unhealthy in (target-group …) due to (reason …)." and
//!   "(service S) has stopped 1 running tasks: (task T).") and the service
//!   controller replaces it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use flotilla_model::ecs;
use flotilla_model::lb::ObservedHealth;
use flotilla_model::lifecycle::{ServiceStatus, TaskStatus};
use flotilla_model::wire::elbv2::TargetTypeEnum;

use super::target_groups::{self, NewTarget};
use super::LbAccount;
use crate::core::services::{push_event, task_list};
use crate::core::state::{Account, Key, Tx};
use crate::error::{ApiError, ApiResult};

/// Target groups per service (ECS's limit).
pub const MAX_PER_SERVICE: usize = 5;

/// Checks a service's `loadBalancers` against its task definition and the
/// account's target groups.
pub fn check_load_balancers(
    lb: &LbAccount,
    definition: &ecs::TaskDefinition,
    entries: &[ecs::LoadBalancer],
) -> ApiResult<()> {
    if entries.len() > MAX_PER_SERVICE {
        return Err(ApiError::invalid(format!(
            "loadBalancers can have at most {MAX_PER_SERVICE} target groups."
        )));
    }
    let mut seen = BTreeSet::new();
    for e in entries {
        if e.load_balancer_name.is_some() {
            return Err(ApiError::invalid(
                "loadBalancerName is for Classic Load Balancers, which Flotilla does not have: name a targetGroupArn.",
            ));
        }
        let Some(arn) = e.target_group_arn.as_deref() else {
            return Err(ApiError::invalid(
                "targetGroupArn is required for each loadBalancers entry.",
            ));
        };
        let tg = lb.target_groups.get(arn).ok_or_else(|| {
            ApiError::invalid(format!(
                "Unable to validate the specified targetGroupArn: target group {arn} does not exist."
            ))
        })?;
        if super::load_balancers_of(lb, arn).is_empty() {
            return Err(ApiError::invalid(format!(
                "The target group with targetGroupArn {arn} does not have an associated load balancer."
            )));
        }
        let name = e.container_name.as_deref().unwrap_or_default();
        let Some(port) = e.container_port else {
            return Err(ApiError::invalid(
                "containerPort is required for each loadBalancers entry.",
            ));
        };
        let container = definition
            .container_definitions
            .iter()
            .flatten()
            .find(|c| c.name.as_deref() == Some(name))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "The container {name} does not exist in the task definition."
                ))
            })?;
        let maps = container
            .port_mappings
            .iter()
            .flatten()
            .any(|m| m.container_port == Some(port));
        if !maps {
            return Err(ApiError::invalid(format!(
                "The container {name} did not have a container port {port} defined."
            )));
        }
        if !seen.insert((arn.to_string(), name.to_string(), port)) {
            return Err(ApiError::invalid(format!(
                "The target group {arn} is given more than once for container {name} port {port}."
            )));
        }
        let _ = tg;
    }
    Ok(())
}

/// How the load balancers see a service's task: `None` when the service
/// has no target group; `Healthy` when in every group of the service a
/// target of the task is reported healthy; `Unhealthy` when one is
/// reported unhealthy; else `Initial` (not registered or not checked yet).
/// A rolling deployment counts a task as healthy only on `Healthy` (ECS:
/// "with a load balancer, when its targets are healthy").
/// `green` is the deployment whose tasks belong in the alternate target
/// groups (a blue/green deployment under way), see [`group_for`].
pub fn task_health(
    lb: &LbAccount,
    svc: &ecs::Service,
    task: &ecs::Task,
    green: Option<&str>,
) -> Option<ObservedHealth> {
    let entries = svc.load_balancers.as_deref().filter(|l| !l.is_empty())?;
    let arn = task.task_arn.as_deref()?;
    let is_green = green.is_some() && task.started_by.as_deref() == green;
    let mut all_healthy = true;
    for e in entries {
        let Some(tg) = group_for(e, is_green).and_then(|g| lb.target_groups.get(g)) else {
            continue;
        };
        let target = tg
            .targets
            .iter()
            .find(|t| !t.is_draining() && t.task_arn.as_deref() == Some(arn));
        let Some(t) = target else {
            all_healthy = false;
            continue;
        };
        // A group without health checks takes the target as it is.
        if tg.target_group.health_check_enabled == Some(false) {
            continue;
        }
        match lb
            .health
            .get(&(tg.arn().to_string(), t.id.clone(), t.port))
            .map(|o| o.health)
        {
            Some(ObservedHealth::Healthy) => {}
            Some(ObservedHealth::Unhealthy) => return Some(ObservedHealth::Unhealthy),
            _ => all_healthy = false,
        }
    }
    Some(if all_healthy {
        ObservedHealth::Healthy
    } else {
        ObservedHealth::Initial
    })
}

/// The target group of a `loadBalancers` entry a task belongs in: the
/// alternate one (`advancedConfiguration.alternateTargetGroupArn`) for the
/// new revision of a blue/green deployment under way (`green`), else the
/// entry's `targetGroupArn`.
pub fn group_for(e: &ecs::LoadBalancer, green: bool) -> Option<&str> {
    let alternate = e
        .advanced_configuration
        .as_ref()
        .and_then(|a| a.alternate_target_group_arn.as_deref());
    match alternate {
        Some(alt) if green => Some(alt),
        _ => e.target_group_arn.as_deref(),
    }
}

/// After health reports changed the health of these tasks' targets: their
/// services are written again, so the service controller (which counts a
/// task healthy by its targets) looks at them at once.
pub fn touch_services(acct: &mut Account, tx: &mut Tx<'_>, task_arns: &[String]) {
    let mut touched = BTreeSet::new();
    for arn in task_arns {
        let Some((cluster, id)) = arn
            .split_once(":task/")
            .and_then(|(_, rest)| rest.split_once('/'))
        else {
            continue;
        };
        let Some(c) = acct.clusters.get(cluster) else {
            continue;
        };
        let Some(service) = c
            .tasks
            .get(id)
            .and_then(|t| t.group.as_deref()?.strip_prefix("service:"))
        else {
            continue;
        };
        touched.insert((cluster.to_string(), service.to_string()));
    }
    for (cluster, service) in touched {
        if let Some(svc) = acct
            .clusters
            .get(&cluster)
            .and_then(|c| c.services.get(&service))
        {
            tx.put(Key::Service(&cluster, &service), svc);
        }
    }
}

/// Writes a task again (unchanged) so that its agent's session looks at it.
pub(crate) fn wake_task(
    clusters: &BTreeMap<String, crate::core::state::ClusterState>,
    lb: &LbAccount,
    tx: &mut Tx<'_>,
    arn: &str,
) {
    let Some((cluster, _)) = arn
        .split_once(":task/")
        .and_then(|(_, rest)| rest.split_once('/'))
    else {
        return;
    };
    if let Some(c) = clusters.get(cluster) {
        wake_in(c, cluster, lb, tx, arn);
    }
}

/// [`wake_task`] for a task of cluster `c` (named `cluster`): only a task
/// asked to stop and no longer a target of any group.
fn wake_in(
    c: &crate::core::state::ClusterState,
    cluster: &str,
    lb: &LbAccount,
    tx: &mut Tx<'_>,
    arn: &str,
) {
    if crate::core::lb::is_target(lb, arn) {
        return;
    }
    let Some(id) = arn.rsplit('/').next() else {
        return;
    };
    if let Some(task) = c.tasks.get(id) {
        if task.stop_requested() && !task.is_stopped() {
            tx.put_task(cluster, id, task);
        }
    }
}

/// The target a task stands for in a group: where its container port is
/// bound on its host.
fn task_target(
    task: &ecs::Task,
    target_type: TargetTypeEnum,
    container: &str,
    port: i32,
) -> Option<NewTarget> {
    let binding = task
        .containers
        .iter()
        .flatten()
        .filter(|c| c.name.as_deref() == Some(container))
        .flat_map(|c| c.network_bindings.iter().flatten())
        .find(|b| b.container_port == Some(port) && b.host_port.is_some())?;
    let host_port = u16::try_from(binding.host_port?).ok()?;
    let address = binding
        .bind_ip
        .as_deref()
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let id = match target_type {
        TargetTypeEnum::Ip => address.to_string(),
        _ => task
            .container_instance_arn
            .as_deref()?
            .rsplit('/')
            .next()?
            .to_string(),
    };
    Some(NewTarget {
        id,
        port: host_port,
        address,
        availability_zone: None,
        task_arn: task.task_arn.clone(),
    })
}

/// What registers targets: a service with the ECS deployment controller,
/// or one task set of an EXTERNAL service (its own load balancers, its own
/// tasks: those it started).
struct Unit {
    service: String,
    /// How its events name it: `(service NAME)` or `(service NAME, taskSet ID)`.
    label: String,
    entries: Vec<ecs::LoadBalancer>,
    task_set: Option<String>,
}

fn units_of(name: &str, svc: &ecs::Service) -> Vec<Unit> {
    if crate::core::task_sets::is_external(svc) {
        return svc
            .task_sets
            .iter()
            .flatten()
            .filter(|t| t.load_balancers.as_ref().is_some_and(|l| !l.is_empty()))
            .map(|t| {
                let id = t.id.clone().unwrap_or_default();
                Unit {
                    service: name.to_string(),
                    label: format!("(service {name}, taskSet {id})"),
                    entries: t.load_balancers.clone().unwrap_or_default(),
                    task_set: Some(id),
                }
            })
            .collect();
    }
    match svc.load_balancers.as_ref().filter(|l| !l.is_empty()) {
        Some(entries) => vec![Unit {
            service: name.to_string(),
            label: format!("(service {name})"),
            entries: entries.clone(),
            task_set: None,
        }],
        None => Vec::new(),
    }
}

/// One pass: every ECS service's targets in step with its tasks, draining
/// targets forgotten once drained, unhealthy tasks stopped. Returns when it
/// wants to look again (the next end of a draining, or soon while any
/// service is behind a load balancer, to see health reports).
pub fn sync(acct: &mut Account, tx: &mut Tx<'_>, now: f64) -> Option<f64> {
    let Account {
        clusters,
        families,
        lb,
        ..
    } = acct;
    let (mut next, drained) = target_groups::expire_draining(lb, tx, now);
    // A drained task that was asked to stop was held running for the
    // draining (see `crate::gateway::agents`): writing it again wakes its
    // agent's session, which now sends the stop.
    for arn in drained {
        wake_task(clusters, lb, tx, &arn);
    }
    for c in clusters.values_mut() {
        let cluster = c.name().to_string();
        let units: Vec<Unit> = c
            .services
            .iter()
            .filter(|(_, s)| s.lifecycle() != ServiceStatus::Inactive)
            .flat_map(|(n, s)| units_of(n, s))
            .collect();
        for Unit {
            service: name,
            label,
            entries,
            task_set,
        } in units
        {
            next = Some(next.map_or(now + 2.0, |n: f64| n.min(now + 2.0)));
            let svc = &c.services[&name];
            let grace = f64::from(svc.health_check_grace_period_seconds.unwrap_or(0));
            let group = format!("service:{name}");
            // The service's (or task set's) tasks.
            let tasks: Vec<(String, ecs::Task)> = c
                .tasks_in_group(&group)
                .filter(|(_, t)| task_set.is_none() || t.started_by == task_set)
                .map(|(id, t)| (id.clone(), t.clone()))
                .collect();
            let mine: BTreeSet<String> = tasks
                .iter()
                .filter_map(|(_, t)| t.task_arn.clone())
                .collect();
            let mut events = Vec::new();
            // Task id → (its group, ECS's event naming the target and why).
            let mut unhealthy: BTreeMap<String, (String, String)> = BTreeMap::new();
            let green = c
                .service_meta
                .get(&name)
                .and_then(|m| crate::core::deployments::green_deployment(&m.history))
                .map(str::to_string);
            let is_green =
                |t: &ecs::Task| green.is_some() && t.started_by.as_deref() == green.as_deref();
            // Each entry's group for the tasks of the current revision, and
            // its alternate group for a blue/green deployment's new one.
            let groups: Vec<(&ecs::LoadBalancer, bool)> = entries
                .iter()
                .flat_map(|e| {
                    let alt = e
                        .advanced_configuration
                        .as_ref()
                        .and_then(|a| a.alternate_target_group_arn.as_ref())
                        .is_some();
                    std::iter::once((e, false)).chain(alt.then_some((e, true)))
                })
                .collect();
            for (e, for_green) in groups {
                let (Some(tg_arn), Some(container), Some(port)) = (
                    group_for(e, for_green),
                    e.container_name.as_deref(),
                    e.container_port,
                ) else {
                    continue;
                };
                let Some(tg) = lb.target_groups.get(tg_arn) else {
                    continue;
                };
                let target_type = tg.target_type();
                let wanted: Vec<NewTarget> = tasks
                    .iter()
                    .filter(|(_, t)| {
                        t.last_status == Some(TaskStatus::Running) && !t.stop_requested()
                    })
                    .filter(|(_, t)| is_green(t) == for_green)
                    .filter_map(|(_, t)| task_target(t, target_type, container, port))
                    .collect();
                let wanted_tasks: BTreeSet<String> =
                    wanted.iter().filter_map(|n| n.task_arn.clone()).collect();
                let fresh: Vec<NewTarget> = wanted
                    .into_iter()
                    .filter(|n| {
                        !tg.targets.iter().any(|t| {
                            t.id == n.id
                                && t.port == n.port
                                && !t.is_draining()
                                && t.task_arn == n.task_arn
                        })
                    })
                    .collect();
                let leaving: Vec<(String, Option<u16>)> = tg
                    .targets
                    .iter()
                    .filter(|t| !t.is_draining())
                    .filter(|t| {
                        t.task_arn
                            .as_deref()
                            .is_some_and(|a| mine.contains(a) && !wanted_tasks.contains(a))
                    })
                    .map(|t| (t.id.clone(), Some(t.port)))
                    .collect();
                let leaving_tasks: Vec<String> = tg
                    .targets
                    .iter()
                    .filter(|t| !t.is_draining())
                    .filter_map(|t| t.task_arn.clone())
                    .filter(|a| mine.contains(a) && !wanted_tasks.contains(a))
                    .collect();
                // Unhealthy after the grace period: the task is replaced.
                for t in tg.targets.iter().filter(|t| !t.is_draining()) {
                    let Some(task_arn) = t.task_arn.as_deref() else {
                        continue;
                    };
                    let Some((id, task)) = tasks
                        .iter()
                        .find(|(_, x)| x.task_arn.as_deref() == Some(task_arn))
                    else {
                        continue;
                    };
                    let observed = lb.health.get(&(tg_arn.to_string(), t.id.clone(), t.port));
                    let started = task.started_at.unwrap_or(now);
                    let Some(o) = observed.filter(|o| o.health == ObservedHealth::Unhealthy) else {
                        continue;
                    };
                    if now >= started + grace && !task.stop_requested() {
                        // ECS names the instance for `instance` targets, the
                        // task for `ip` ones.
                        let who = match target_type {
                            TargetTypeEnum::Ip => format!("task {id}"),
                            _ => format!("instance {}", t.id),
                        };
                        let why = o
                            .description
                            .as_deref()
                            .or(o.reason.as_deref())
                            .unwrap_or("Health checks failed");
                        let event = format!(
                            "{label} ({who}) (port {}) is unhealthy in (target-group {tg_arn}) due to (reason {why}).",
                            t.port
                        );
                        unhealthy.insert(id.clone(), (tg_arn.to_string(), event));
                    }
                }
                let n_fresh = fresh.len();
                if n_fresh > 0 && target_groups::register(lb, tx, tg_arn, fresh, now).is_ok() {
                    events.push(format!(
                        "{label} registered {n_fresh} targets in (target-group {tg_arn})"
                    ));
                }
                let n_leaving = leaving.len();
                if n_leaving > 0 && target_groups::deregister(lb, tx, tg_arn, &leaving, now).is_ok()
                {
                    events.push(format!(
                        "{label} deregistered {n_leaving} targets in (target-group {tg_arn})"
                    ));
                    // Deregistered at once (no delay): nothing holds them now.
                    for arn in &leaving_tasks {
                        wake_in(c, &cluster, lb, tx, arn);
                    }
                }
            }
            let mut stopped = Vec::new();
            for (id, (tg_arn, event)) in unhealthy {
                let reason = format!("Task failed ELB health checks in (target-group {tg_arn})");
                if crate::core::tasks::request_stop(
                    families,
                    c,
                    tx,
                    &id,
                    now,
                    ecs::TaskStopCode::ServiceSchedulerInitiated,
                    reason,
                ) {
                    events.push(event);
                    stopped.push(id);
                }
            }
            if !stopped.is_empty() {
                events.push(format!(
                    "{label} has stopped {} running tasks:{}.",
                    stopped.len(),
                    task_list(stopped.iter())
                ));
            }
            if !events.is_empty() {
                if let Some(svc) = c.services.get_mut(&name) {
                    for e in events {
                        push_event(svc, now, e);
                    }
                    tx.put(Key::Service(&cluster, &name), &*svc);
                }
            }
        }
    }
    // Targets of tasks that stopped, are stopping or are gone, whichever
    // service (if any) registered them: a service whose load balancers were
    // changed away no longer looks after its old groups.
    let stale: Vec<(String, String, u16)> = lb
        .target_groups
        .values()
        .flat_map(|g| {
            g.targets
                .iter()
                .filter(|t| !t.is_draining())
                .filter_map(|t| Some((g.arn().to_string(), t, t.task_arn.as_deref()?)))
                .collect::<Vec<_>>()
        })
        .filter(|(_, _, arn)| {
            let task = arn
                .split_once(":task/")
                .and_then(|(_, rest)| rest.split_once('/'))
                .and_then(|(cluster, id)| clusters.get(cluster)?.tasks.get(id));
            task.is_none_or(|t| t.stop_requested() || t.is_stopped())
        })
        .map(|(g, t, _)| (g, t.id.clone(), t.port))
        .collect();
    for (g, id, port) in stale {
        let task = lb.target_groups.get(&g).and_then(|tg| {
            tg.targets
                .iter()
                .find(|t| t.id == id && t.port == port)
                .and_then(|t| t.task_arn.clone())
        });
        let _ = target_groups::deregister(lb, tx, &g, &[(id, Some(port))], now);
        if let Some(arn) = task {
            wake_task(clusters, lb, tx, &arn);
        }
    }
    // Wake again when the next draining ends, wherever it began.
    for until in lb
        .target_groups
        .values()
        .flat_map(|g| g.targets.iter().filter_map(|t| t.draining_until))
    {
        next = Some(next.map_or(until, |n: f64| n.min(until)));
    }
    next
}
