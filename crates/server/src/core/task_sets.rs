//! Task sets: services with the EXTERNAL deployment controller. A
//! third-party deployer creates task sets (a task definition, load
//! balancers and a scale in percent of the service's `desiredCount`),
//! scales them and chooses which one is PRIMARY; Flotilla runs each task
//! set's tasks and registers them in the task set's own target groups.
//!
//! - A task set lives in its service's record (`Service.taskSets`), so it is
//!   stored, and reloaded, with the service; its ARN is
//!   `arn:aws:ecs:REGION:ACCOUNT:task-set/CLUSTER/SERVICE/ID` and its id
//!   `ecs-svc/` and 19 digits, as ECS forms them.
//! - Its tasks are in the service's group (`service:NAME`) with `startedBy`
//!   set to the task set's id, as ECS starts them.
//! - [`plan`] decides, from a task set and its tasks, what the task sets
//!   controller (`crate::controllers::task_sets`) starts and stops, and the
//!   counts and stability status the API shows.
//! - The PRIMARY task set's task definition, load balancers, launch type and
//!   network configuration are the service's (DescribeServices shows them).

use flotilla_model::ecs;
use flotilla_model::lifecycle::{TaskPhase, TaskSetStatus, TaskStatus};

use crate::error::{ApiError, ApiResult};

/// Task sets per service, DRAINING ones included (ECS's limit).
pub const MAX_TASK_SETS: usize = 5;

/// Whether a service is managed by the EXTERNAL deployment controller.
pub fn is_external(svc: &ecs::Service) -> bool {
    svc.deployment_controller
        .as_ref()
        .and_then(|c| c.r#type)
        .is_some_and(|t| t == ecs::DeploymentControllerType::External)
}

/// The error for a task-set call on a service of another controller.
pub fn not_external() -> ApiError {
    ApiError::invalid(
        "Amazon ECS only supports task set management on services configured to use external deployment controllers.",
    )
}

pub fn task_set_not_found(reference: &str) -> ApiError {
    ApiError::new(
        "TaskSetNotFoundException",
        format!("The specified task set does not exist: {reference}."),
    )
}

/// A `scale` as the API takes it: 0–100 PERCENT; absent means 100 %.
pub fn check_scale(scale: Option<&ecs::Scale>) -> ApiResult<ecs::Scale> {
    let Some(scale) = scale else {
        return Ok(ecs::Scale {
            value: Some(100.0),
            unit: Some(ecs::ScaleUnit::Percent),
        });
    };
    let value = scale.value.unwrap_or(0.0);
    if !value.is_finite() || !(0.0..=100.0).contains(&value) {
        return Err(ApiError::invalid(format!(
            "scale.value must be a number between 0 and 100 (a percentage of the service's desiredCount); got {value}."
        )));
    }
    Ok(ecs::Scale {
        value: Some(value),
        unit: Some(scale.unit.unwrap_or(ecs::ScaleUnit::Percent)),
    })
}

/// The service's `desiredCount` times the scale, rounded up (ECS: "if the
/// computed desired count is 1.2, it rounds up to 2 tasks").
pub fn computed_desired_count(desired: i32, scale: Option<&ecs::Scale>) -> i32 {
    let percent = scale
        .and_then(|s| s.value)
        .unwrap_or(100.0)
        .clamp(0.0, 100.0);
    // In hundredths of a percent, so that 33.33 % of 3 is exactly 1 and
    // floating-point noise never adds a task.
    let hundredths = (percent * 100.0).round() as i64;
    let tasks = (i64::from(desired.max(0)) * hundredths + 9_999) / 10_000;
    tasks as i32
}

/// The id a task set reference names: the id itself, or the id at the end
/// of a task set ARN (`…:task-set/CLUSTER/SERVICE/ecs-svc/123…`).
pub fn task_set_id(reference: &str) -> ApiResult<&str> {
    if !reference.starts_with("arn:") {
        return Ok(reference);
    }
    flotilla_model::arn::Arn::parse(reference)
        .filter(|a| a.kind == "task-set")
        .and_then(|a| a.rest.splitn(3, '/').nth(2))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("Invalid task set identifier: {reference}")))
}

/// `(cluster, service, id)` of a task set ARN's resource part
/// (`CLUSTER/SERVICE/ID`).
pub fn split_arn_rest(rest: &str) -> Option<(&str, &str, &str)> {
    let mut parts = rest.splitn(3, '/');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// A new task set id in ECS's form. With a client token the id follows
/// from the service and the token, so a retried CreateTaskSet finds the
/// task set its first attempt made (idempotency with nothing else stored).
pub fn new_task_set_id(service_arn: &str, client_token: Option<&str>) -> String {
    let n = match client_token {
        Some(token) => {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(format!("{service_arn}\n{token}").as_bytes());
            let mut first = [0u8; 16];
            first.copy_from_slice(&digest[..16]);
            u128::from_be_bytes(first)
        }
        None => uuid::Uuid::new_v4().as_u128(),
    } % 10u128.pow(19);
    format!("ecs-svc/{n:019}")
}

/// The task set a reference names in this service.
pub fn find<'a>(svc: &'a ecs::Service, reference: &str) -> ApiResult<&'a ecs::TaskSet> {
    let id = task_set_id(reference)?;
    svc.task_sets
        .iter()
        .flatten()
        .find(|t| t.id.as_deref() == Some(id))
        .ok_or_else(|| task_set_not_found(reference))
}

pub fn find_mut<'a>(svc: &'a mut ecs::Service, reference: &str) -> ApiResult<&'a mut ecs::TaskSet> {
    let id = task_set_id(reference)?;
    svc.task_sets
        .iter_mut()
        .flatten()
        .find(|t| t.id.as_deref() == Some(id))
        .ok_or_else(|| task_set_not_found(reference))
}

pub fn status(ts: &ecs::TaskSet) -> TaskSetStatus {
    ts.status.unwrap_or(TaskSetStatus::Active)
}

/// Makes the task set `id` the service's PRIMARY one (the PRIMARY one
/// before it becomes ACTIVE) and gives the service its task definition,
/// load balancers, launch type and network configuration, as
/// UpdateServicePrimaryTaskSet does.
pub fn set_primary(svc: &mut ecs::Service, id: &str, now: f64) {
    let mut primary = None;
    for ts in svc.task_sets.iter_mut().flatten() {
        if ts.id.as_deref() == Some(id) {
            if status(ts) != TaskSetStatus::Primary {
                ts.status = Some(TaskSetStatus::Primary);
                ts.updated_at = Some(now);
            }
            primary = Some(ts.clone());
        } else if status(ts) == TaskSetStatus::Primary {
            ts.status = Some(TaskSetStatus::Active);
            ts.updated_at = Some(now);
        }
    }
    if let Some(p) = primary {
        svc.task_definition = p.task_definition;
        svc.load_balancers = Some(p.load_balancers.unwrap_or_default());
        svc.service_registries = Some(p.service_registries.unwrap_or_default());
        svc.launch_type = p.launch_type;
        svc.network_configuration = p.network_configuration;
        svc.platform_version = p.platform_version;
    }
}

/// Recomputes every task set's `computedDesiredCount` from the service's
/// `desiredCount` (after UpdateService or Application Auto Scaling changed
/// it, or UpdateTaskSet changed a scale). A task set whose count changes is
/// STABILIZING until the controller has caught up.
pub fn rescale(svc: &mut ecs::Service, now: f64) {
    let desired = svc.desired_count.unwrap_or(0);
    for ts in svc.task_sets.iter_mut().flatten() {
        let computed = if status(ts) == TaskSetStatus::Draining {
            0
        } else {
            computed_desired_count(desired, ts.scale.as_ref())
        };
        if ts.computed_desired_count != Some(computed) {
            ts.computed_desired_count = Some(computed);
            ts.updated_at = Some(now);
            if ts.stability_status != Some(ecs::StabilityStatus::Stabilizing) {
                ts.stability_status = Some(ecs::StabilityStatus::Stabilizing);
                ts.stability_status_at = Some(now);
            }
        }
    }
}

/// Refuses, for a new EXTERNAL service, what ECS takes from its task sets
/// instead (the service holds only its name, desired count, deployment
/// configuration, placement, grace period, tags and their propagation).
pub fn check_create_service(req: &ecs::CreateServiceRequest) -> ApiResult<()> {
    let refused: [(&str, bool); 8] = [
        ("taskDefinition", req.task_definition.is_some()),
        (
            "loadBalancers",
            req.load_balancers.as_ref().is_some_and(|l| !l.is_empty()),
        ),
        (
            "serviceRegistries",
            req.service_registries
                .as_ref()
                .is_some_and(|l| !l.is_empty()),
        ),
        ("networkConfiguration", req.network_configuration.is_some()),
        ("launchType", req.launch_type.is_some()),
        (
            "capacityProviderStrategy",
            req.capacity_provider_strategy
                .as_ref()
                .is_some_and(|l| !l.is_empty()),
        ),
        ("platformVersion", req.platform_version.is_some()),
        (
            "serviceConnectConfiguration",
            req.service_connect_configuration.is_some(),
        ),
    ];
    if let Some((field, _)) = refused.iter().find(|(_, given)| *given) {
        return Err(ApiError::invalid(format!(
            "{field} cannot be specified for a service with the EXTERNAL deployment controller: it is given per task set (CreateTaskSet)."
        )));
    }
    if req.scheduling_strategy == Some(ecs::SchedulingStrategy::Daemon) {
        return Err(ApiError::invalid(
            "The DAEMON scheduling strategy is not supported with the EXTERNAL deployment controller.",
        ));
    }
    Ok(())
}

/// Refuses, for an EXTERNAL service, the UpdateService fields a new task
/// set changes instead (ECS: "If the launch type, load balancer, network
/// configuration, or task definition need to be updated, create a new
/// task set").
pub fn check_update_service(req: &ecs::UpdateServiceRequest) -> ApiResult<()> {
    let refused: [(&str, bool); 7] = [
        ("taskDefinition", req.task_definition.is_some()),
        ("loadBalancers", req.load_balancers.is_some()),
        ("serviceRegistries", req.service_registries.is_some()),
        ("networkConfiguration", req.network_configuration.is_some()),
        (
            "capacityProviderStrategy",
            req.capacity_provider_strategy.is_some(),
        ),
        ("platformVersion", req.platform_version.is_some()),
        ("forceNewDeployment", req.force_new_deployment == Some(true)),
    ];
    if let Some((field, _)) = refused.iter().find(|(_, given)| *given) {
        return Err(ApiError::invalid(format!(
            "{field} cannot be updated for a service with the EXTERNAL deployment controller: create a new task set (CreateTaskSet) instead."
        )));
    }
    Ok(())
}

/// One of a task set's tasks, as [`plan`] sees it.
#[derive(Debug, Clone)]
pub struct SetTask {
    pub id: String,
    pub phase: TaskPhase,
    pub status: TaskStatus,
    /// On a DRAINING container instance: replaced.
    pub on_draining_instance: bool,
    /// Reported unhealthy by its containers' health checks or a target group.
    pub unhealthy: bool,
    /// Healthy as far as anybody checks (no check counts as healthy).
    pub healthy: bool,
    /// Scale-in protected (UpdateTaskProtection): never chosen to scale in.
    pub protected: bool,
    pub created_at: f64,
}

/// Why [`plan`] stops a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopWhy {
    /// More tasks than the computed desired count (a smaller scale or
    /// desired count, or the task set is being deleted).
    ScaleIn,
    InstanceDraining,
}

/// What to do for one task set now, and what the API shows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub start: usize,
    pub stop: Vec<(String, StopWhy)>,
    pub computed_desired_count: i32,
    pub running_count: i32,
    pub pending_count: i32,
    pub stability: ecs::StabilityStatus,
}

/// Decides one task set: as many live tasks as its computed desired count
/// (none once DRAINING or its service is), tasks on DRAINING instances
/// replaced, the newest and not-yet-running tasks stopped first on scale-in.
/// STEADY_STATE once its running count is the computed desired count, none
/// is pending or stopping, none is on a DRAINING instance and every one is
/// healthy (ECS's conditions).
pub fn plan(ts: &ecs::TaskSet, desired: i32, service_draining: bool, tasks: &[SetTask]) -> Plan {
    let computed = if service_draining || status(ts) == TaskSetStatus::Draining {
        0
    } else {
        computed_desired_count(desired, ts.scale.as_ref())
    };
    let mut stop = Vec::new();
    let mut live: Vec<&SetTask> = Vec::new();
    for t in tasks {
        match t.phase {
            TaskPhase::Pending | TaskPhase::Running if t.on_draining_instance => {
                stop.push((t.id.clone(), StopWhy::InstanceDraining))
            }
            TaskPhase::Pending | TaskPhase::Running => live.push(t),
            _ => {}
        }
    }
    let want = computed.max(0) as usize;
    let start = want.saturating_sub(live.len());
    if live.len() > want {
        // Keep the running and oldest: stop pending ones first, newest first.
        live.sort_by(|a, b| {
            let pending = |t: &SetTask| t.phase == TaskPhase::Pending;
            pending(b)
                .cmp(&pending(a))
                .then(b.created_at.total_cmp(&a.created_at))
        });
        // Protected tasks are kept (the set stays above its count until
        // their protection ends, as ECS does).
        let excess = live.len() - want;
        let mut chosen = 0;
        live.retain(|t| {
            if chosen < excess && !t.protected {
                chosen += 1;
                stop.push((t.id.clone(), StopWhy::ScaleIn));
                false
            } else {
                true
            }
        });
    }
    let running = live
        .iter()
        .filter(|t| t.phase == TaskPhase::Running)
        .count() as i32;
    let pending = live
        .iter()
        .filter(|t| t.phase == TaskPhase::Pending)
        .count() as i32;
    let stopping = tasks.iter().any(|t| t.phase == TaskPhase::Stopping);
    let steady = running == computed
        && pending == 0
        && start == 0
        && stop.is_empty()
        && !stopping
        && live.iter().all(|t| t.healthy && !t.unhealthy);
    Plan {
        start,
        stop,
        computed_desired_count: computed,
        running_count: running,
        pending_count: pending,
        stability: if steady {
            ecs::StabilityStatus::SteadyState
        } else {
            ecs::StabilityStatus::Stabilizing
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(v: f64) -> ecs::Scale {
        ecs::Scale {
            value: Some(v),
            unit: Some(ecs::ScaleUnit::Percent),
        }
    }

    #[test]
    fn computed_desired_count_rounds_up() {
        assert_eq!(computed_desired_count(4, Some(&scale(50.0))), 2);
        assert_eq!(computed_desired_count(4, Some(&scale(30.0))), 2);
        assert_eq!(computed_desired_count(6, Some(&scale(20.0))), 2);
        assert_eq!(computed_desired_count(3, Some(&scale(33.33))), 1);
        assert_eq!(computed_desired_count(10, Some(&scale(0.0))), 0);
        assert_eq!(computed_desired_count(10, Some(&scale(100.0))), 10);
        assert_eq!(computed_desired_count(10, None), 10);
        assert_eq!(computed_desired_count(0, Some(&scale(100.0))), 0);
    }

    #[test]
    fn scale_must_be_a_percentage() {
        assert!(check_scale(Some(&scale(101.0))).is_err());
        assert!(check_scale(Some(&scale(-1.0))).is_err());
        assert!(check_scale(Some(&scale(f64::NAN))).is_err());
        assert_eq!(check_scale(None).unwrap().value, Some(100.0));
    }

    #[test]
    fn ids_from_references() {
        assert_eq!(task_set_id("ecs-svc/123").unwrap(), "ecs-svc/123");
        assert_eq!(
            task_set_id("arn:aws:ecs:us-east-1:1:task-set/c/s/ecs-svc/123").unwrap(),
            "ecs-svc/123"
        );
        assert!(task_set_id("arn:aws:ecs:us-east-1:1:service/c/s").is_err());
        let a = new_task_set_id("arn:s", Some("token"));
        assert_eq!(a, new_task_set_id("arn:s", Some("token")));
        assert_ne!(a, new_task_set_id("arn:s", Some("other")));
        assert!(a.starts_with("ecs-svc/") && a.len() == 8 + 19, "{a}");
    }

    fn task(id: &str, phase: TaskPhase, at: f64) -> SetTask {
        SetTask {
            id: id.into(),
            phase,
            status: match phase {
                TaskPhase::Running => TaskStatus::Running,
                TaskPhase::Stopped => TaskStatus::Stopped,
                _ => TaskStatus::Pending,
            },
            on_draining_instance: false,
            unhealthy: false,
            healthy: true,
            protected: false,
            created_at: at,
        }
    }

    #[test]
    fn plans_start_stop_and_stability() {
        let ts = ecs::TaskSet {
            scale: Some(scale(50.0)),
            status: Some(TaskSetStatus::Active),
            ..Default::default()
        };
        let p = plan(&ts, 4, false, &[task("a", TaskPhase::Running, 1.0)]);
        assert_eq!((p.start, p.computed_desired_count), (1, 2));
        assert_eq!(p.stability, ecs::StabilityStatus::Stabilizing);

        let tasks = [
            task("a", TaskPhase::Running, 1.0),
            task("b", TaskPhase::Running, 2.0),
        ];
        let p = plan(&ts, 4, false, &tasks);
        assert_eq!(p.start, 0);
        assert!(p.stop.is_empty());
        assert_eq!(p.stability, ecs::StabilityStatus::SteadyState);

        // Scale-in stops pending tasks first, then the newest.
        let tasks = [
            task("a", TaskPhase::Running, 1.0),
            task("b", TaskPhase::Running, 3.0),
            task("c", TaskPhase::Pending, 2.0),
        ];
        let p = plan(&ts, 2, false, &tasks);
        assert_eq!(
            p.stop,
            vec![
                ("c".to_string(), StopWhy::ScaleIn),
                ("b".to_string(), StopWhy::ScaleIn)
            ]
        );
        assert_eq!(p.running_count, 1);
        // A protected task is not chosen.
        let mut protected = tasks.clone();
        protected[1].protected = true;
        let p = plan(&ts, 2, false, &protected);
        assert_eq!(
            p.stop,
            vec![
                ("c".to_string(), StopWhy::ScaleIn),
                ("a".to_string(), StopWhy::ScaleIn)
            ]
        );

        // Draining: everything stops.
        let draining = ecs::TaskSet {
            status: Some(TaskSetStatus::Draining),
            ..ts.clone()
        };
        let p = plan(&draining, 4, false, &tasks);
        assert_eq!(p.stop.len(), 3);
        assert_eq!(p.computed_desired_count, 0);

        // A task on a draining instance is replaced.
        let mut moved = task("a", TaskPhase::Running, 1.0);
        moved.on_draining_instance = true;
        let p = plan(&ts, 4, false, &[moved, task("b", TaskPhase::Running, 2.0)]);
        assert_eq!(p.stop, vec![("a".to_string(), StopWhy::InstanceDraining)]);
        assert_eq!(p.start, 1);
    }
}
