//! One test per rule of the crate docs' "Semantics" section.

use super::*;

fn dep(id: &str, td: &str, status: DeploymentStatus, state: RolloutState) -> Deployment {
    Deployment {
        id: id.into(),
        task_definition: td.into(),
        status,
        rollout_state: state,
        failed_tasks: 0,
        created_at: 0.0,
        desired_count: 0,
        running_count: 0,
        pending_count: 0,
    }
}

fn primary(id: &str, td: &str) -> Deployment {
    dep(id, td, DeploymentStatus::Primary, RolloutState::InProgress)
}

fn active(id: &str, td: &str) -> Deployment {
    dep(id, td, DeploymentStatus::Active, RolloutState::Completed)
}

fn task(id: &str, deployment: &str, phase: TaskPhase) -> Task {
    Task {
        id: id.into(),
        deployment_id: deployment.into(),
        phase,
        health: Health::Unknown,
        has_health_check: false,
        started_at: (phase != TaskPhase::Pending).then_some(0.0),
        stop_cause: None,
        on_draining_instance: false,
        stopped_at: None,
        protected_until: None,
        instance: "i1".into(),
        zone: Some("a".into()),
    }
}

/// `t` placed on `instance` in `zone`.
fn on(instance: &str, zone: &str, t: Task) -> Task {
    Task {
        instance: instance.into(),
        zone: Some(zone.into()),
        ..t
    }
}

fn running(id: &str, deployment: &str) -> Task {
    task(id, deployment, TaskPhase::Running)
}

/// RUNNING since `at`.
fn running_since(id: &str, deployment: &str, at: Time) -> Task {
    Task {
        started_at: Some(at),
        ..running(id, deployment)
    }
}

/// A task that failed to start: it went from PENDING to STOPPED at `at`.
fn failed(id: &str, deployment: &str, at: Time) -> Task {
    Task {
        stop_cause: Some(StopCause::Failed),
        stopped_at: Some(at),
        started_at: None,
        ..task(id, deployment, TaskPhase::Stopped)
    }
}

/// A task that reached RUNNING at `started` and died at `stopped` (an
/// essential container exited, or it was killed).
fn died(id: &str, deployment: &str, started: Time, stopped: Time) -> Task {
    Task {
        started_at: Some(started),
        ..failed(id, deployment, stopped)
    }
}

/// A COMPLETED PRIMARY `d1` of web:1 with `tasks`.
fn settled(desired: u32, min: u32, max: u32, tasks: Vec<Task>) -> Service {
    let mut d = primary("d1", "web:1");
    d.rollout_state = RolloutState::Completed;
    service(desired, min, max, vec![d], tasks)
}

/// How many of the plan's stops are on tasks in `zone`.
fn stops_in_zone(s: &Service, plan: &Plan, zone: &str) -> usize {
    plan.stop
        .iter()
        .filter(|(id, _)| {
            s.tasks
                .iter()
                .any(|t| t.id == *id && t.zone.as_deref() == Some(zone))
        })
        .count()
}

fn service(
    desired: u32,
    min: u32,
    max: u32,
    deployments: Vec<Deployment>,
    tasks: Vec<Task>,
) -> Service {
    Service {
        name: "web".into(),
        draining: false,
        desired_count: desired,
        minimum_healthy_percent: min,
        maximum_percent: max,
        circuit_breaker: None,
        health_check_grace_period: 0.0,
        deployments,
        tasks,
        last_completed_task_definition: Some("web:1".into()),
        was_steady: false,
        hold_previous: false,
    }
}

/// Four healthy tasks of the COMPLETED deployment d1 (web:1) and a new PRIMARY d2 (web:2).
fn rollout(min: u32, max: u32) -> Service {
    let tasks = (1..=4).map(|i| running(&format!("old{i}"), "d1")).collect();
    service(
        4,
        min,
        max,
        vec![primary("d2", "web:2"), active("d1", "web:1")],
        tasks,
    )
}

fn started(plan: &Plan) -> u32 {
    plan.start.iter().map(|(_, n)| n).sum()
}

fn stopped_ids(plan: &Plan) -> Vec<&str> {
    plan.stop.iter().map(|(id, _)| id.as_str()).collect()
}

fn update<'a>(plan: &'a Plan, id: &str) -> &'a DeploymentUpdate {
    plan.update
        .iter()
        .find(|u| u.id == id)
        .expect("an update for the deployment")
}

#[test]
fn formulas_round_as_ecs_documents() {
    assert_eq!(min_healthy_tasks(3, 50), 2);
    assert_eq!(min_healthy_tasks(4, 50), 2);
    assert_eq!(min_healthy_tasks(0, 100), 0);
    assert_eq!(max_tasks(3, 150), 4);
    assert_eq!(max_tasks(4, 200), 8);
    assert_eq!(breaker_threshold(0), 10);
    assert_eq!(breaker_threshold(20), 10);
    assert_eq!(breaker_threshold(21), 11);
    assert_eq!(breaker_threshold(399), 200);
    assert_eq!(breaker_threshold(5000), 200);
    assert_eq!(restart_backoff(0), 0.0);
    assert_eq!(restart_backoff(1), 0.0);
    assert_eq!(restart_backoff(2), 10.0);
    assert_eq!(restart_backoff(3), 20.0);
    assert_eq!(restart_backoff(40), BACKOFF_MAX);
}

#[test]
fn a_new_service_starts_desired_tasks() {
    let s = service(3, 100, 200, vec![primary("d1", "web:1")], vec![]);
    let plan = reconcile(&s, 0.0);
    assert_eq!(plan.start, vec![("d1".to_string(), 3)]);
    assert!(plan.stop.is_empty());
    assert!(!plan.steady);
    let u = update(&plan, "d1");
    assert_eq!(
        (u.desired_count, u.running_count, u.pending_count),
        (3, 0, 0)
    );
}

#[test]
fn same_snapshot_same_plan() {
    let s = rollout(50, 150);
    assert_eq!(reconcile(&s, 10.0), reconcile(&s, 10.0));
}

#[test]
fn rollout_starts_new_tasks_up_to_maximum_percent_and_keeps_old_ones() {
    let plan = reconcile(&rollout(100, 150), 0.0);
    assert_eq!(plan.start, vec![("d2".to_string(), 2)]);
    assert!(
        plan.stop.is_empty(),
        "old tasks stay until replacements are healthy"
    );

    let plan = reconcile(&rollout(100, 200), 0.0);
    assert_eq!(plan.start, vec![("d2".to_string(), 4)]);
    assert!(plan.stop.is_empty());
}

#[test]
fn a_blue_green_hold_scales_the_new_revision_up_fully_and_keeps_the_old_one() {
    // maximumPercent 100 would allow no start at all in a rolling update.
    let mut s = rollout(100, 100);
    s.hold_previous = true;
    let plan = reconcile(&s, 0.0);
    assert_eq!(plan.start, vec![("d2".to_string(), 4)]);
    assert!(plan.stop.is_empty());
    // Healthy new tasks do not let the old ones go while the hold lasts…
    for i in 1..=4 {
        s.tasks.push(running(&format!("new{i}"), "d2"));
    }
    let plan = reconcile(&s, 0.0);
    assert!(plan.stop.is_empty() && plan.start.is_empty(), "{plan:?}");
    assert_eq!(update(&plan, "d2").rollout_state, RolloutState::InProgress);
    // …and at the clean-up they go at once.
    s.hold_previous = false;
    let plan = reconcile(&s, 0.0);
    assert_eq!(plan.stop.len(), 4);
    assert!(stopped_ids(&plan).iter().all(|id| id.starts_with("old")));
}

#[test]
fn healthy_replacements_let_old_tasks_go() {
    let mut s = rollout(100, 150);
    s.tasks.push(running("new1", "d2"));
    s.tasks.push(running("new2", "d2"));
    let plan = reconcile(&s, 0.0);
    assert_eq!(plan.stop.len(), 2);
    assert!(plan.stop.iter().all(|(_, r)| *r == StopReason::Deployment));
    assert!(stopped_ids(&plan).iter().all(|id| id.starts_with("old")));
    // 6 occupy the ceiling of 6: no start until the stops complete.
    assert_eq!(started(&plan), 0);
    assert_eq!(update(&plan, "d1").desired_count, 2);
}

#[test]
fn stopping_tasks_still_count_against_maximum_percent() {
    let mut s = rollout(100, 150);
    s.tasks.push(running("new1", "d2"));
    s.tasks.push(running("new2", "d2"));
    s.tasks[0].phase = TaskPhase::Stopping;
    s.tasks[1].phase = TaskPhase::Stopping;
    let plan = reconcile(&s, 0.0);
    assert_eq!(started(&plan), 0, "two tasks still stopping: 6 of 6 taken");
    assert!(plan.stop.is_empty());
    s.tasks[0].phase = TaskPhase::Stopped;
    s.tasks[1].phase = TaskPhase::Stopped;
    let plan = reconcile(&s, 0.0);
    assert_eq!(plan.start, vec![("d2".to_string(), 2)]);
}

#[test]
fn with_no_headroom_old_tasks_stop_first_within_minimum_healthy() {
    // min 50, max 100: stop 2 of 4 to make room, no start yet.
    let plan = reconcile(&rollout(50, 100), 0.0);
    assert_eq!(started(&plan), 0);
    assert_eq!(plan.stop.len(), 2);
    assert!(plan.stop.iter().all(|(_, r)| *r == StopReason::Deployment));

    // While those two stop, nothing more: the floor of 2 is reached.
    let mut s = rollout(50, 100);
    s.tasks[0].phase = TaskPhase::Stopping;
    s.tasks[1].phase = TaskPhase::Stopping;
    let plan = reconcile(&s, 0.0);
    assert_eq!(
        plan,
        Plan {
            update: plan.update.clone(),
            ..Plan::default()
        }
    );

    // Once stopped, their replacements start.
    s.tasks[0].phase = TaskPhase::Stopped;
    s.tasks[1].phase = TaskPhase::Stopped;
    let plan = reconcile(&s, 0.0);
    assert_eq!(plan.start, vec![("d2".to_string(), 2)]);
    assert!(plan.stop.is_empty());
}

#[test]
fn min_100_max_100_says_it_cannot_make_progress() {
    let plan = reconcile(&rollout(100, 100), 0.0);
    assert!(plan.start.is_empty() && plan.stop.is_empty());
    assert_eq!(
        plan.events,
        vec!["(service web) cannot make progress: minimumHealthyPercent 100 and maximumPercent 100 leave no \
              room to replace tasks (desiredCount 4: at least 4 must stay healthy, at most 4 may run)."
            .to_string()]
    );
}

#[test]
fn no_progress_event_while_something_is_under_way() {
    let mut s = rollout(100, 150);
    s.tasks.push(task("new1", "d2", TaskPhase::Pending));
    s.tasks.push(task("new2", "d2", TaskPhase::Pending));
    let plan = reconcile(&s, 0.0);
    assert!(plan.events.is_empty(), "{:?}", plan.events);
}

#[test]
fn a_task_with_a_health_check_counts_only_once_healthy() {
    let mut s = rollout(100, 150);
    let mut new1 = running("new1", "d2");
    new1.has_health_check = true;
    s.tasks.push(new1.clone());
    s.tasks.push(new1.clone());
    s.tasks[5].id = "new2".into();
    let plan = reconcile(&s, 0.0);
    assert!(
        plan.stop.is_empty(),
        "UNKNOWN is not healthy yet, nor replaced"
    );
    s.tasks[4].health = Health::Healthy;
    let plan = reconcile(&s, 0.0);
    assert_eq!(stopped_ids(&plan), vec!["old1"]);
}

#[test]
fn unhealthy_tasks_are_replaced_after_the_grace_period() {
    let mut s = service(
        2,
        100,
        200,
        vec![primary("d1", "web:1")],
        vec![running("a", "d1"), running("b", "d1")],
    );
    s.health_check_grace_period = 60.0;
    s.tasks[0].has_health_check = true;
    s.tasks[0].health = Health::Unhealthy;
    s.tasks[0].started_at = Some(100.0);
    let plan = reconcile(&s, 130.0);
    assert!(
        plan.stop.is_empty(),
        "within the grace period the verdict is ignored"
    );
    assert_eq!(plan.wake_at, Some(160.0));
    let plan = reconcile(&s, 160.0);
    assert_eq!(plan.stop, vec![("a".to_string(), StopReason::Unhealthy)]);
    assert_eq!(
        plan.start,
        vec![("d1".to_string(), 1)],
        "its replacement starts at once"
    );
    assert_eq!(
        update(&plan, "d1").failed_tasks,
        1,
        "an UNHEALTHY stop is a failure"
    );
}

#[test]
fn breaker_trips_exactly_at_the_threshold() {
    let mut s = rollout(100, 200);
    s.circuit_breaker = Some(false);
    for i in 0..9 {
        s.tasks.push(failed(&format!("f{i}"), "d2", 1.0));
    }
    let plan = reconcile(&s, 2.0);
    assert_eq!(update(&plan, "d2").rollout_state, RolloutState::InProgress);
    assert_eq!(update(&plan, "d2").failed_tasks, 9);
    assert_eq!(
        started(&plan),
        4,
        "the breaker watches; no backoff meanwhile"
    );

    s.tasks.push(failed("f9", "d2", 1.0));
    let plan = reconcile(&s, 2.0);
    let u = update(&plan, "d2");
    assert_eq!(
        (u.rollout_state, u.failed_tasks),
        (RolloutState::Failed, 10)
    );
    assert_eq!(
        u.rollout_state_reason.as_deref(),
        Some("ECS deployment circuit breaker: tasks failed to start.")
    );
    assert_eq!(started(&plan), 0, "a FAILED deployment launches nothing");
    assert_eq!(plan.rollback_to, None);
    assert_eq!(
        plan.events,
        vec!["(service web) (deployment d2) deployment failed: tasks failed to start.".to_string()]
    );
}

#[test]
fn breaker_counts_stored_failures_and_never_lowers_them() {
    let mut s = rollout(100, 200);
    s.circuit_breaker = Some(false);
    s.deployments[0].failed_tasks = 10;
    let plan = reconcile(&s, 0.0);
    assert_eq!(update(&plan, "d2").rollout_state, RolloutState::Failed);
    assert_eq!(update(&plan, "d2").failed_tasks, 10);
}

#[test]
fn breaker_with_rollback_returns_to_the_last_completed_task_definition() {
    let mut s = rollout(100, 200);
    s.circuit_breaker = Some(true);
    for i in 0..10 {
        s.tasks.push(failed(&format!("f{i}"), "d2", 1.0));
    }
    let plan = reconcile(&s, 2.0);
    assert_eq!(plan.rollback_to.as_deref(), Some("web:1"));
    assert_eq!(
        plan.events,
        vec![
            "(service web) (deployment d2) deployment failed: tasks failed to start.".to_string(),
            "(service web) rolling back to deployment d1.".to_string(),
        ]
    );
    assert!(
        plan.stop.is_empty(),
        "the old tasks stay: they are all there is"
    );
}

#[test]
fn no_rollback_to_the_failing_task_definition_itself() {
    let mut s = rollout(100, 200);
    s.circuit_breaker = Some(true);
    s.last_completed_task_definition = Some("web:2".into());
    s.deployments[0].failed_tasks = 10;
    let plan = reconcile(&s, 0.0);
    assert_eq!(plan.rollback_to, None);
    assert!(
        plan.events[1].contains("cannot roll back"),
        "{:?}",
        plan.events
    );
}

#[test]
fn a_failed_primary_without_rollback_stays_failed_and_idle() {
    let mut s = rollout(100, 200);
    s.circuit_breaker = Some(false);
    s.deployments[0].rollout_state = RolloutState::Failed;
    let plan = reconcile(&s, 0.0);
    assert!(plan.start.is_empty() && plan.stop.is_empty() && plan.rollback_to.is_none());
    assert!(plan.events.is_empty());
}

#[test]
fn without_the_breaker_restarts_back_off() {
    let mut s = service(
        1,
        100,
        200,
        vec![primary("d1", "web:1")],
        vec![failed("f1", "d1", 100.0)],
    );
    let plan = reconcile(&s, 100.0);
    assert_eq!(started(&plan), 1, "the first failure is retried at once");

    s.tasks.push(failed("f2", "d1", 105.0));
    let plan = reconcile(&s, 110.0);
    assert_eq!(started(&plan), 0);
    assert_eq!(plan.wake_at, Some(115.0));
    assert_eq!(
        plan.events,
        vec!["(service web) is unable to consistently start tasks successfully.".to_string()]
    );
    assert_eq!(started(&reconcile(&s, 115.0)), 1);

    s.tasks.push(failed("f3", "d1", 120.0));
    assert_eq!(
        reconcile(&s, 130.0).wake_at,
        Some(140.0),
        "the delay doubles"
    );
}

#[test]
fn a_crash_right_after_running_counts_as_a_start_failure() {
    // The container exits a second after the task reached RUNNING, again and
    // again: throttled like a task that never starts, delays growing.
    let mut s = settled(1, 100, 200, vec![died("c1", "d1", 100.0, 101.0)]);
    assert_eq!(
        started(&reconcile(&s, 101.0)),
        1,
        "the first is retried at once"
    );
    s.tasks.push(died("c2", "d1", 102.0, 103.0));
    let plan = reconcile(&s, 104.0);
    assert_eq!(started(&plan), 0);
    assert_eq!(plan.wake_at, Some(113.0));
    assert_eq!(
        plan.events,
        vec!["(service web) is unable to consistently start tasks successfully.".to_string()]
    );
    s.tasks.push(died("c3", "d1", 113.0, 113.5));
    assert_eq!(
        reconcile(&s, 114.0).wake_at,
        Some(133.5),
        "the delay doubles"
    );
    s.tasks
        .push(died("c4", "d1", 134.0, 134.0 + START_WINDOW - 0.1));
    assert_eq!(
        reconcile(&s, 150.0).wake_at,
        Some(134.0 + START_WINDOW - 0.1 + 40.0)
    );
}

#[test]
fn long_running_tasks_killed_at_once_are_all_replaced_at_once() {
    // Four healthy tasks; two are killed in the same moment after running for
    // a while. Both STOPPED reports land in one snapshot: both are replaced in
    // this reconcile, with no throttle.
    let tasks = vec![
        running("a", "d1"),
        running("b", "d1"),
        died("c", "d1", 0.0, 1000.0),
        died("d", "d1", 0.0, 1000.2),
    ];
    let s = settled(4, 100, 200, tasks);
    let plan = reconcile(&s, 1000.3);
    assert_eq!(plan.start, vec![("d1".to_string(), 2)]);
    assert!(plan.events.is_empty(), "{:?}", plan.events);
    assert_eq!(plan.wake_at, None);

    // The same with a health check: they had been HEALTHY.
    let mut s = s;
    for t in &mut s.tasks {
        t.has_health_check = true;
        t.health = Health::Healthy;
    }
    let plan = reconcile(&s, 1000.3);
    assert_eq!(plan.start, vec![("d1".to_string(), 2)]);
    assert!(plan.events.is_empty(), "{:?}", plan.events);

    // Even when every task of the service died together and none is left healthy.
    let tasks = (0..4)
        .map(|i| died(&format!("t{i}"), "d1", 0.0, 1000.0 + f64::from(i)))
        .collect();
    let plan = reconcile(&settled(4, 100, 200, tasks), 1004.0);
    assert_eq!(plan.start, vec![("d1".to_string(), 4)]);
    assert!(plan.events.is_empty(), "{:?}", plan.events);
}

#[test]
fn a_task_that_ran_past_the_window_is_not_a_start_failure() {
    // Exactly START_WINDOW of RUNNING is enough to have started; a task that
    // never ran and one that died at once are two start failures.
    let s = settled(
        3,
        100,
        200,
        vec![
            died("ran", "d1", 100.0, 100.0 + START_WINDOW),
            failed("never", "d1", 120.0),
        ],
    );
    assert_eq!(
        started(&reconcile(&s, 121.0)),
        3,
        "one start failure: retried at once"
    );
    let mut s = s;
    s.tasks.push(died("at-once", "d1", 121.0, 121.5));
    let plan = reconcile(&s, 122.0);
    assert_eq!(started(&plan), 0);
    assert_eq!(plan.wake_at, Some(131.5));
}

#[test]
fn a_healthy_start_resets_the_backoff() {
    let mut s = service(
        2,
        100,
        200,
        vec![primary("d1", "web:1")],
        vec![
            failed("f1", "d1", 100.0),
            failed("f2", "d1", 101.0),
            failed("f3", "d1", 102.0),
        ],
    );
    assert_eq!(started(&reconcile(&s, 103.0)), 0);
    s.tasks.push(running_since("ok", "d1", 103.0));
    assert_eq!(started(&reconcile(&s, 103.0)), 1);
}

#[test]
fn completion_then_removal_then_steady_state() {
    let mut s = rollout(100, 200);
    for i in 1..=4 {
        s.tasks.push(running(&format!("new{i}"), "d2"));
    }
    // Old tasks still there: not complete; they go.
    let plan = reconcile(&s, 0.0);
    assert_eq!(plan.stop.len(), 4);
    assert_eq!(update(&plan, "d2").rollout_state, RolloutState::InProgress);

    for t in &mut s.tasks[..4] {
        t.phase = TaskPhase::Stopped;
        t.stop_cause = Some(StopCause::Intended);
    }
    // The new tasks reached RUNNING at 0: not complete until they have run
    // for SETTLE_WINDOW, when the plan asks to be woken; d1 stays listed
    // meanwhile (so `services-stable` does not pass before COMPLETED).
    let plan = reconcile(&s, 0.0);
    assert_eq!(plan.wake_at, Some(SETTLE_WINDOW));
    assert!(plan.remove.is_empty());
    assert!(!plan.steady);
    assert!(plan
        .update
        .iter()
        .all(|u| u.rollout_state != RolloutState::Completed));
    let plan = reconcile(&s, SETTLE_WINDOW);
    let u = update(&plan, "d2");
    assert_eq!(u.rollout_state, RolloutState::Completed);
    assert_eq!(
        u.rollout_state_reason.as_deref(),
        Some("ECS deployment d2 completed.")
    );
    assert_eq!(plan.remove, vec!["d1".to_string()]);
    assert!(plan.steady);
    assert_eq!(
        plan.events,
        vec![
            "(service web) (deployment d2) deployment completed.".to_string(),
            "(service web) has reached a steady state.".to_string(),
        ]
    );
}

#[test]
fn a_revision_that_crashes_right_after_running_is_not_completed() {
    // min 0 / max 100: the old tasks are gone; the new ones were all RUNNING
    // together at 1.0 and exited at 1.3 (an `exit 1` revision).
    let mut s = rollout(0, 100);
    s.circuit_breaker = Some(true);
    for t in &mut s.tasks {
        t.phase = TaskPhase::Stopped;
        t.stop_cause = Some(StopCause::Intended);
    }
    s.tasks
        .extend((1..=4).map(|i| running_since(&format!("new{i}"), "d2", 1.0)));
    let plan = reconcile(&s, 1.2);
    assert_eq!(update(&plan, "d2").rollout_state, RolloutState::InProgress);
    assert_eq!(plan.wake_at, Some(1.0 + SETTLE_WINDOW));
    // d1 has no task left but stays listed while d2 rolls out, so
    // `services-stable` waits for the rollout's end.
    assert!(plan.remove.is_empty());
    assert!(!plan.steady);
    for t in &mut s.tasks[4..] {
        *t = died(&t.id, "d2", 1.0, 1.3);
    }
    let plan = reconcile(&s, 1.4);
    let u = update(&plan, "d2");
    assert_eq!(u.rollout_state, RolloutState::InProgress);
    assert_eq!(u.failed_tasks, 4, "the breaker counts them");
    assert_eq!(started(&plan), 4, "and they are replaced");
}

#[test]
fn a_first_deployment_completes_without_settling() {
    // Nothing was replaced, so nothing could stay listed for the waiter:
    // complete at once, to be a rollback target straight away.
    let tasks = (1..=2).map(|i| running_since(&format!("t{i}"), "d1", 5.0));
    let s = service(2, 100, 200, vec![primary("d1", "web:1")], tasks.collect());
    let plan = reconcile(&s, 5.0);
    assert_eq!(update(&plan, "d1").rollout_state, RolloutState::Completed);
    assert!(plan.steady);
}

#[test]
fn steady_state_event_only_on_the_way_in() {
    let mut d = dep(
        "d1",
        "web:1",
        DeploymentStatus::Primary,
        RolloutState::Completed,
    );
    (d.desired_count, d.running_count) = (2, 2);
    let mut s = service(
        2,
        100,
        200,
        vec![d],
        vec![running("a", "d1"), running("b", "d1")],
    );
    let plan = reconcile(&s, 0.0);
    assert!(plan.steady);
    assert!(plan.update.is_empty(), "nothing changed: no update");
    assert_eq!(
        plan.events,
        vec!["(service web) has reached a steady state.".to_string()]
    );
    s.was_steady = true;
    assert!(reconcile(&s, 0.0).events.is_empty());
}

#[test]
fn scale_in_during_a_rollout_stops_old_tasks_first() {
    let mut s = rollout(100, 200);
    s.desired_count = 2;
    s.tasks.push(running("new1", "d2"));
    s.tasks.push(running("new2", "d2"));
    s.tasks.push(running("new3", "d2"));
    let plan = reconcile(&s, 0.0);
    let ids = stopped_ids(&plan);
    assert_eq!(&ids[..4], &["old1", "old2", "old3", "old4"]);
    assert_eq!(ids.len(), 5);
    assert_eq!(plan.stop[4].1, StopReason::ScaleIn);
}

#[test]
fn scale_in_stops_tasks_not_yet_healthy_first_within_an_instance() {
    let newest = running_since("newest", "d1", 5.0);
    let s = settled(
        1,
        100,
        200,
        vec![
            running("a", "d1"),
            task("p", "d1", TaskPhase::Pending),
            newest,
        ],
    );
    let plan = reconcile(&s, 10.0);
    assert_eq!(stopped_ids(&plan), vec!["p", "newest"]);
    assert!(plan.stop.iter().all(|(_, r)| *r == StopReason::ScaleIn));
}

#[test]
fn scale_in_takes_from_the_most_loaded_zone_first() {
    // Two tasks in each of three zones, c's the newest (a scale-out filled
    // the new zone). Scaling in to 3 leaves one in each, not the oldest three.
    let mut tasks = Vec::new();
    for (k, zone) in ["a", "b", "c"].iter().enumerate() {
        for j in 0..2 {
            let mut t = on(
                &format!("{zone}1"),
                zone,
                running(&format!("{zone}{j}"), "d1"),
            );
            t.started_at = Some(k as f64 * 100.0 + j as f64);
            tasks.push(t);
        }
    }
    let s = settled(3, 100, 200, tasks);
    let plan = reconcile(&s, 1000.0);
    assert_eq!(plan.stop.len(), 3);
    for zone in ["a", "b", "c"] {
        assert_eq!(stops_in_zone(&s, &plan, zone), 1, "{zone}: {:?}", plan.stop);
    }
    // Within each zone the newer task goes.
    assert_eq!(stopped_ids(&plan), vec!["a1", "b1", "c1"]);
}

#[test]
fn scale_in_takes_from_the_busiest_instance_of_the_busiest_zone() {
    // Zone a: i1 ×3, i2 ×1; zone b: i3 ×3. Down by one: from a (4 against
    // 3), and in a from i1 (3 against 1).
    let tasks = vec![
        on("i1", "a", running("i1-0", "d1")),
        on("i1", "a", running("i1-1", "d1")),
        on("i1", "a", running("i1-2", "d1")),
        on("i2", "a", running("i2-0", "d1")),
        on("i3", "b", running("i3-0", "d1")),
        on("i3", "b", running("i3-1", "d1")),
        on("i3", "b", running("i3-2", "d1")),
    ];
    let s = settled(6, 100, 200, tasks.clone());
    let plan = reconcile(&s, 0.0);
    assert_eq!(plan.stop.len(), 1);
    assert!(plan.stop[0].0.starts_with("i1-"), "{:?}", plan.stop);

    // Down to 4: a 4 → 2 (both from i1, the busier), b 3 → 2.
    let s = settled(4, 100, 200, tasks);
    let plan = reconcile(&s, 0.0);
    let ids = stopped_ids(&plan);
    assert_eq!(ids.len(), 3);
    assert_eq!(
        ids.iter().filter(|id| id.starts_with("i1-")).count(),
        2,
        "{ids:?}"
    );
    assert_eq!(
        ids.iter().filter(|id| id.starts_with("i3-")).count(),
        1,
        "{ids:?}"
    );
}

#[test]
fn scale_in_spares_healthy_tasks_the_floor_needs() {
    // Zone a holds two healthy tasks, zone b one still PENDING. Balance would
    // take from a, but minimumHealthyPercent 100 of 2 leaves no healthy task
    // to spare: the PENDING one goes instead.
    let tasks = vec![
        on("i1", "a", running("h1", "d1")),
        on("i1", "a", running("h2", "d1")),
        on("i2", "b", task("p", "d1", TaskPhase::Pending)),
    ];
    let plan = reconcile(&settled(2, 100, 200, tasks.clone()), 0.0);
    assert_eq!(plan.stop, vec![("p".to_string(), StopReason::ScaleIn)]);
    // With slack for one healthy stop, balance decides: one from a.
    let plan = reconcile(&settled(2, 50, 200, tasks), 0.0);
    assert_eq!(plan.stop.len(), 1);
    assert!(plan.stop[0].0.starts_with('h'), "{:?}", plan.stop);
}

#[test]
fn scale_in_counts_tasks_without_a_zone_as_one_more_zone() {
    let mut tasks: Vec<Task> = (0..3)
        .map(|i| {
            let mut t = running(&format!("n{i}"), "d1");
            t.instance = format!("x{i}");
            t.zone = None;
            t
        })
        .collect();
    tasks.push(on("i1", "a", running("a0", "d1")));
    let plan = reconcile(&settled(2, 100, 200, tasks), 0.0);
    let ids = stopped_ids(&plan);
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|id| id.starts_with('n')), "{ids:?}");
}

#[test]
fn tasks_of_unknown_deployments_are_old_tasks() {
    let mut d = primary("d1", "web:1");
    d.rollout_state = RolloutState::Completed;
    let s = service(
        1,
        100,
        200,
        vec![d],
        vec![running("a", "d1"), running("stray", "ecs-svc/gone")],
    );
    let plan = reconcile(&s, 0.0);
    assert_eq!(
        plan.stop,
        vec![("stray".to_string(), StopReason::Deployment)]
    );
}

#[test]
fn draining_service_stops_everything_then_is_drained() {
    let mut s = rollout(100, 200);
    s.draining = true;
    s.tasks.push(task("new1", "d2", TaskPhase::Pending));
    s.tasks.push(task("gone", "d2", TaskPhase::Stopping));
    let plan = reconcile(&s, 0.0);
    assert!(plan.start.is_empty());
    assert_eq!(plan.stop.len(), 5);
    assert!(plan
        .stop
        .iter()
        .all(|(_, r)| *r == StopReason::ServiceDraining));
    assert!(!plan.drained && !plan.steady);

    for t in &mut s.tasks {
        t.phase = TaskPhase::Stopped;
    }
    let plan = reconcile(&s, 0.0);
    assert!(plan.stop.is_empty() && plan.drained);
    assert_eq!(plan.remove, vec!["d1".to_string()]);
}

#[test]
fn draining_instance_replacement_starts_first() {
    let mut d = primary("d1", "web:1");
    d.rollout_state = RolloutState::Completed;
    let mut s = service(
        2,
        100,
        200,
        vec![d],
        vec![running("a", "d1"), running("b", "d1")],
    );
    s.tasks[0].on_draining_instance = true;
    let plan = reconcile(&s, 0.0);
    assert_eq!(plan.start, vec![("d1".to_string(), 1)]);
    assert!(
        plan.stop.is_empty(),
        "the old one waits for its replacement"
    );

    s.tasks.push(task("c", "d1", TaskPhase::Pending));
    assert!(reconcile(&s, 0.0).stop.is_empty());
    s.tasks[2].phase = TaskPhase::Running;
    s.tasks[2].started_at = Some(1.0);
    let plan = reconcile(&s, 1.0);
    assert_eq!(
        plan.stop,
        vec![("a".to_string(), StopReason::InstanceDraining)]
    );
    assert!(plan.start.is_empty());
}

#[test]
fn draining_instance_without_headroom_stops_first_within_the_floor() {
    let mut d = primary("d1", "web:1");
    d.rollout_state = RolloutState::Completed;
    let mut s = service(
        2,
        50,
        100,
        vec![d],
        vec![running("a", "d1"), running("b", "d1")],
    );
    s.tasks[0].on_draining_instance = true;
    s.tasks[1].on_draining_instance = true;
    let plan = reconcile(&s, 0.0);
    assert!(plan.start.is_empty());
    assert_eq!(plan.stop.len(), 1, "floor 1 of 2");
    assert_eq!(plan.stop[0].1, StopReason::InstanceDraining);
}

#[test]
fn updates_only_for_deployments_that_changed() {
    let mut s = rollout(100, 200);
    s.deployments[1].desired_count = 4;
    s.deployments[1].running_count = 4;
    s.deployments[0].desired_count = 4;
    let plan = reconcile(&s, 0.0);
    assert!(plan.update.is_empty(), "{:?}", plan.update);
}

#[test]
fn scale_in_never_chooses_protected_tasks() {
    let protect = |mut t: Task, until: Time| {
        t.protected_until = Some(until);
        t
    };
    let s = settled(
        1,
        0,
        200,
        vec![
            protect(running("a", "d1"), 100.0),
            protect(running("b", "d1"), 100.0),
            running("c", "d1"),
        ],
    );
    let plan = reconcile(&s, 10.0);
    assert_eq!(
        stopped_ids(&plan),
        vec!["c"],
        "only the unprotected one goes"
    );
    assert_eq!(plan.wake_at, Some(100.0), "again when the protection ends");
    assert!(!plan.steady);
    assert!(
        !plan
            .events
            .iter()
            .any(|e| e.contains("cannot make progress")),
        "{:?}",
        plan.events
    );
    // Once it has expired, a protected task is like any other.
    let plan = reconcile(&s, 101.0);
    assert_eq!(plan.stop.len(), 2);
}

#[test]
fn a_rollout_waits_for_protected_old_tasks() {
    let mut s = rollout(100, 200);
    s.tasks[0].protected_until = Some(500.0);
    for i in 1..=4 {
        s.tasks.push(running(&format!("new{i}"), "d2"));
    }
    let plan = reconcile(&s, 0.0);
    let stopped = stopped_ids(&plan);
    assert_eq!(stopped.len(), 3, "{stopped:?}");
    assert!(!stopped.contains(&"old1"), "the protected one stays");
    assert_eq!(plan.wake_at, Some(500.0));
    let plan = reconcile(&s, 501.0);
    assert!(stopped_ids(&plan).contains(&"old1"));
}

#[test]
fn protection_does_not_hold_a_task_on_a_draining_instance() {
    let mut s = rollout(100, 200);
    s.tasks[0].protected_until = Some(500.0);
    s.tasks[0].on_draining_instance = true;
    for i in 1..=4 {
        s.tasks.push(running(&format!("new{i}"), "d2"));
    }
    let plan = reconcile(&s, 0.0);
    assert!(stopped_ids(&plan).contains(&"old1"), "{:?}", plan.stop);
}
