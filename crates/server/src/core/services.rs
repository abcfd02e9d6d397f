//! What a service is made of beyond its wire shape: deployments (new ones
//! for CreateService, UpdateService and rollbacks) and the events users
//! read, worded as ECS words them.

use flotilla_model::ecs;
use flotilla_model::lifecycle::DeploymentStatus;

/// A new deployment id in ECS's form: `ecs-svc/` and 19 digits.
pub fn new_deployment_id() -> String {
    let n = uuid::Uuid::new_v4().as_u128() % 10u128.pow(19);
    format!("ecs-svc/{n:019}")
}

/// A new PRIMARY deployment of `task_definition`, IN_PROGRESS.
pub fn new_deployment(
    now: f64,
    task_definition: &str,
    desired: i32,
    launch_type: Option<ecs::LaunchType>,
) -> ecs::Deployment {
    let id = new_deployment_id();
    ecs::Deployment {
        rollout_state_reason: Some(format!("ECS deployment {id} in progress.")),
        id: Some(id),
        status: Some(DeploymentStatus::Primary),
        task_definition: Some(task_definition.to_string()),
        desired_count: Some(desired),
        pending_count: Some(0),
        running_count: Some(0),
        failed_tasks: Some(0),
        created_at: Some(now),
        updated_at: Some(now),
        launch_type,
        rollout_state: Some(ecs::DeploymentRolloutState::InProgress),
        ..Default::default()
    }
}

/// Makes `deployment` the service's PRIMARY one: the current PRIMARY
/// becomes ACTIVE (it keeps its tasks until the new one replaces them).
pub fn start_deployment(svc: &mut ecs::Service, now: f64, deployment: ecs::Deployment) {
    let deployments = svc.deployments.get_or_insert_with(Vec::new);
    for d in deployments
        .iter_mut()
        .filter(|d| d.status == Some(DeploymentStatus::Primary))
    {
        d.status = Some(DeploymentStatus::Active);
        d.updated_at = Some(now);
    }
    deployments.insert(0, deployment);
}

/// Sets a service's desired count as UpdateService does: the PRIMARY
/// deployment follows it, the other deployments are left alone, and the
/// service controller starts or stops the tasks (and says so in the
/// service's events). Application Auto Scaling scales services this way.
pub fn set_desired_count(svc: &mut ecs::Service, desired: i32, now: f64) {
    svc.desired_count = Some(desired);
    if let Some(primary) = svc
        .deployments
        .iter_mut()
        .flatten()
        .find(|d| d.status == Some(DeploymentStatus::Primary))
    {
        primary.desired_count = Some(desired);
        primary.updated_at = Some(now);
    }
}

/// Task ids an event names; the rest are counted. A 1,000-task start that
/// named every task put 45 KB into the service record (rewritten with it)
/// and into every DescribeServices answer.
const EVENT_TASK_IDS: usize = 10;

/// " (task a) (task b)", at most [`EVENT_TASK_IDS`] of them, then " and N more".
pub fn task_list<'a>(ids: impl ExactSizeIterator<Item = &'a String>) -> String {
    let total = ids.len();
    let mut list: String = ids
        .take(EVENT_TASK_IDS)
        .map(|id| format!(" (task {id})"))
        .collect();
    if total > EVENT_TASK_IDS {
        list.push_str(&format!(" and {} more", total - EVENT_TASK_IDS));
    }
    list
}

/// The events list keeps the newest 100, newest first.
const MAX_EVENTS: usize = 100;

/// The message ECS shows when a service has settled.
pub const STEADY_STATE: &str = "has reached a steady state.";

pub fn push_event(svc: &mut ecs::Service, now: f64, message: String) {
    let events = svc.events.get_or_insert_with(Vec::new);
    // The same message again within a minute adds nothing a user needs.
    if events.first().is_some_and(|e| {
        e.message.as_deref() == Some(&message) && now - e.created_at.unwrap_or(0.0) < 60.0
    }) {
        return;
    }
    events.insert(
        0,
        ecs::ServiceEvent {
            id: Some(uuid::Uuid::new_v4().to_string()),
            created_at: Some(now),
            message: Some(message),
        },
    );
    events.truncate(MAX_EVENTS);
}

/// Whether the service's newest event says it reached a steady state.
pub fn was_steady(svc: &ecs::Service) -> bool {
    svc.events
        .iter()
        .flatten()
        .next()
        .and_then(|e| e.message.as_deref())
        .is_some_and(|m| m.ends_with(STEADY_STATE))
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

    #[test]
    fn a_new_deployment_demotes_the_primary() {
        let mut svc = ecs::Service::default();
        start_deployment(&mut svc, 1.0, new_deployment(1.0, "td:1", 2, None));
        start_deployment(&mut svc, 2.0, new_deployment(2.0, "td:2", 2, None));
        let statuses: Vec<_> = svc
            .deployments
            .iter()
            .flatten()
            .map(|d| (d.task_definition.clone().unwrap(), d.status.unwrap()))
            .collect();
        assert_eq!(
            statuses,
            [
                ("td:2".to_string(), DeploymentStatus::Primary),
                ("td:1".to_string(), DeploymentStatus::Active)
            ]
        );
        assert!(svc.deployments.as_ref().unwrap()[0]
            .id
            .as_deref()
            .unwrap()
            .starts_with("ecs-svc/"));
    }
}
