//! Service and deployment decisions, as pure functions from a snapshot of one
//! service (its configuration, deployments and tasks) and the time to a
//! [`Plan`]: which tasks to start for which deployment, which to stop and why,
//! how each deployment's counters and rollout state change, which events to
//! record. The server's service controller builds the snapshot, calls
//! [`reconcile`], places the starts with the scheduler and commits the plan;
//! reconciling the same snapshot twice gives the same plan, so the loop can
//! re-run at any time.
//!
//! Start reading at [`reconcile`]; it takes a snapshot ([`Service`],
//! [`Deployment`], [`Task`]) and answers with a [`Plan`].
//! `tests/properties.rs` drives it through a small simulator.
//!
//! # Semantics
//!
//! The rules come from ECS-SEMANTICS.md ("Services"); where ECS leaves a choice
//! open, this is the one taken.
//!
//! **Counting.** `desired` is the service's desiredCount; the *floor* is
//! ceil(desired × minimumHealthyPercent / 100) ([`min_healthy_tasks`]) and the
//! *ceiling* floor(desired × maximumPercent / 100) ([`max_tasks`]).
//! - *Healthy*: RUNNING and HEALTHY, or RUNNING with no health check and no
//!   UNHEALTHY verdict. A task with a health check whose health is still
//!   UNKNOWN is not healthy (it does not count toward the floor, and a rollout
//!   does not complete on it) but it is not replaced either: it is waiting for
//!   its verdict.
//! - *UNHEALTHY*: replaced (stopped with [`StopReason::Unhealthy`]) once
//!   `health_check_grace_period` has passed since it reached RUNNING; inside
//!   the grace period the verdict is ignored (the task is neither healthy nor
//!   replaced) and [`Plan::wake_at`] says when the period ends. An UNHEALTHY
//!   verdict counts even without a container health check (it may come from
//!   elsewhere, e.g. a load balancer).
//! - *Occupying* (against the ceiling): PENDING, RUNNING **and stopping** tasks
//!   — a stopping task still holds its host's CPU, memory and ports until it
//!   is STOPPED. So with maximumPercent 100 a replacement starts once the old
//!   task has fully stopped, never while it drains.
//!
//! **The bounds, per plan.** Tasks fail on their own, so the bounds cannot hold
//! at every moment (start-up, crashes); what holds is that *the plan* never
//! breaks them: it never stops a healthy task if that takes healthy tasks
//! below the floor, and never starts a task if that takes occupying tasks
//! above the ceiling. Where the world already broke a bound, the plan does
//! not make it worse (no healthy stops below the floor, no starts above the
//! ceiling). The only exception is a DRAINING service, which stops everything.
//! Stopping tasks that are not healthy (UNHEALTHY, PENDING, still UNKNOWN)
//! never touches the floor, so they are always allowed.
//!
//! **Who stays.** Only the PRIMARY deployment starts tasks. Its live tasks
//! that are not on a DRAINING instance are *keepers*; every other live task is
//! a *retiree*: tasks of ACTIVE deployments, tasks whose `deployment_id`
//! matches no deployment (treated as the oldest), and the PRIMARY's own tasks
//! on DRAINING instances. Each reconcile:
//! 1. stops UNHEALTHY tasks past the grace period;
//! 2. starts min(desired − keepers, ceiling − occupying) tasks for the PRIMARY;
//! 3. stops retirees that are not healthy (they serve nobody);
//! 4. stops healthy retirees only when they are no longer needed — as many as
//!    healthy keepers plus healthy retirees exceed `desired` (the replacement
//!    is healthy) — or when the ceiling blocks starts the PRIMARY needs and
//!    the stops already under way would not make the room; always within the
//!    floor. Order: unknown deployments, then the oldest deployment first,
//!    tasks on DRAINING instances first within one, the PRIMARY's own
//!    draining tasks last. So with room (maximumPercent > 100) a rollout
//!    starts the new tasks first and stops old ones as the new ones turn
//!    healthy; without room it stops old ones first, as far as
//!    minimumHealthyPercent lets it. A task on a DRAINING instance is the same
//!    case: replacement first, within maximumPercent, then the old one once
//!    the replacement is healthy.
//! 5. scale-in: keepers beyond `desired` are stopped ([`StopReason::ScaleIn`])
//!    after the retirees have had the floor's slack (old deployments go
//!    first), in ECS's order ("Update Amazon ECS service parameters": when
//!    the service scheduler stops tasks it keeps the Availability Zones
//!    balanced): one at a time from the zone ([`Task::zone`]) with the most
//!    keepers left, and in it from the instance ([`Task::instance`]) with
//!    the most (ties: smaller zone name, smaller instance ARN). So zones,
//!    and instances within a zone, end within one task of each other if
//!    they started that way, and a zone only loses tasks while it is among
//!    the fullest. Within one instance the task to go is the one not yet
//!    healthy (PENDING before RUNNING-and-waiting), then the most recently
//!    started. ECS documents no health rule for scale-in, so health only
//!    breaks ties; the floor still applies: a healthy task it cannot spare
//!    is passed over for the next task in that order that is not healthy.
//!    The order is [`flotilla_scheduler::choose_tasks_to_stop`]'s. Tasks
//!    with scale-in protection ([`Task::protected_until`] in the future)
//!    are never chosen: with too few unprotected keepers the service keeps
//!    more than `desired` until a protection ends ([`Plan::wake_at`]).
//!    Deployments wait for protected tasks too (ECS: protection guards
//!    "scale-in events from Service Auto Scaling or deployments"): a
//!    protected healthy retiree is not stopped, so the rollout completes
//!    once its protection ends or is removed; one that is not healthy, or
//!    sits on a DRAINING instance, is replaced as usual.
//!
//! **Cannot make progress.** When the PRIMARY could start tasks, the service
//! has not converged, the plan starts and stops nothing and nothing is under
//! way (no PENDING or stopping task, no RUNNING task awaiting a health
//! verdict), the configuration leaves no room — minimumHealthyPercent 100
//! with maximumPercent 100 is the classic — and the plan says so:
//! "(service web) cannot make progress: minimumHealthyPercent 100 and
//! maximumPercent 100 leave no room to replace tasks (desiredCount 4: at least
//! 4 must stay healthy, at most 4 may run)." The event is level-triggered: it
//! comes with every plan while the service is stuck (the controller dedups).
//!
//! **Circuit breaker** (`circuit_breaker: Some(rollback)`), watching the
//! PRIMARY while its rollout is IN_PROGRESS. Failures = max(stored
//! `failed_tasks`, its tasks with [`StopCause::Failed`] + the UNHEALTHY tasks
//! this plan stops). The controller must record a stop for failed health
//! checks as `StopCause::Failed`. At [`breaker_threshold`] =
//! min(max(ceil(0.5 × desired), 10), 200) the deployment becomes FAILED with
//! the reason "ECS deployment circuit breaker: tasks failed to start.", the
//! event "(service web) (deployment ecs-svc/…) deployment failed: tasks failed
//! to start.", and the FAILED deployment starts no more tasks (ECS: "A
//! deployment in FAILED state doesn't launch any new tasks"). With rollback
//! and a `last_completed_task_definition` different from the failed one's,
//! `rollback_to` names it and the event says "(service web) rolling back to
//! deployment ecs-svc/…." (the deployment of that task definition, if still
//! listed; else "to task definition …"). Rolling back to the failing task
//! definition itself would loop, so that is not done: the deployment stays
//! FAILED and stalled, as it does without rollback or without a COMPLETED
//! deployment (an event says it cannot roll back). `rollback_to` is
//! level-triggered (any plan whose PRIMARY is FAILED with rollback on asks
//! for it), so the controller must demote the FAILED PRIMARY in the same
//! commit. While stalled, old tasks are only stopped when the FAILED
//! deployment's healthy tasks make them surplus; nothing is started to make
//! room. Failed tasks of any deployment also update its `failed_tasks`.
//!
//! **Restart backoff** (ECS's "service throttle logic"), whenever the breaker
//! is not watching (disabled, or the rollout is already COMPLETED). It is for
//! tasks that cannot start, not for tasks that die: a *start failure* is a
//! failed task that never reached RUNNING, or that stopped less than
//! [`START_WINDOW`] (10 s) after reaching it. A task that ran longer —
//! healthy, or RUNNING without a health check — and was then killed, crashed
//! or failed its health check is an independent failure: it is replaced at
//! once, however many die together. The PRIMARY's consecutive start failures
//! are those with a `stopped_at` later than the start of its most recently
//! started task that is healthy now. After the latest of them the PRIMARY
//! waits [`restart_backoff`]: the first is retried at once, then 10 s, 20 s,
//! 40 s, … up to 15 min. While it waits it starts nothing, stops no healthy
//! task to make room, sets [`Plan::wake_at`], and says "(service web) is
//! unable to consistently start tasks successfully." ECS counts only tasks
//! that go from PENDING straight to STOPPED ("Tasks that are stopped after
//! they reach the RUNNING state don't start the throttle logic"); the 10 s
//! window is Flotilla's addition, so that a container that exits as soon as
//! it starts is throttled too rather than restarted in a hot loop.
//!
//! **Completion and steady state.** An IN_PROGRESS PRIMARY becomes COMPLETED
//! when it has `desired` healthy keepers and no task of another deployment is
//! left that is not STOPPED, and — when it replaced another deployment — the
//! newest of those keepers has been RUNNING for [`SETTLE_WINDOW`] (2 s; until
//! then [`Plan::wake_at`] is set); reason "ECS deployment ecs-svc/… completed.",
//! event "(service web) (deployment ecs-svc/…) deployment completed.". A
//! FAILED deployment never completes. ACTIVE deployments with no task left
//! that is not STOPPED are `remove`d, once the PRIMARY is no longer
//! IN_PROGRESS (ECS lists a rollout's replaced deployments until it ends).
//! The plan is `steady` when one deployment is left, it is COMPLETED,
//! RUNNING tasks == desired, no task is PENDING or stopping, and the plan
//! starts and stops nothing — exactly what `aws ecs wait services-stable`
//! waits for. "(service web) has reached a steady
//! state." is written when `steady` turns true (`was_steady` is the previous
//! plan's `steady`) and after every completed rollout.
//!
//! **Deployment counters.** `running_count` / `pending_count` are the
//! snapshot's RUNNING / PENDING tasks of that deployment (stopping ones are in
//! neither). `desired_count` is the service's for the PRIMARY and, for an
//! ACTIVE deployment, the live tasks it keeps after this plan (it shrinks to
//! 0 as the rollout proceeds). An update is sent only when one of these, the
//! failures or the rollout state differs from the stored value.
//!
//! **DRAINING service** (DeleteService, with or without force): every PENDING
//! or RUNNING task is stopped with [`StopReason::ServiceDraining`], nothing
//! starts, no rollout state changes; [`Plan::drained`] once every task is
//! STOPPED (then the service is INACTIVE).
//!
//! **Events the controller writes itself**: the ones that name task ids
//! ("has started 2 tasks: (task …)", "has stopped …") and placement failures.
//!
//! # Limitations
//!
//! - Failures are counted from the tasks in the snapshot (max with the stored
//!   count), so the breaker and the backoff need the deployment's STOPPED tasks
//!   in the snapshot while it is IN_PROGRESS, and the last ~15 minutes of
//!   them after that; pruning them earlier undercounts.
//! - The breaker counts failures cumulatively over the rollout; ECS resets
//!   its count when a task of the deployment turns healthy
//!   (`resetOnHealthyTask`) and counts in stages. Not modelled.
//! - A rollback starts a *new* deployment of the old task definition, so the
//!   old deployment's tasks are replaced by identical ones rather than kept.
//! - Only the PRIMARY's own scale-in is balanced across zones and instances;
//!   which old-deployment tasks a rollout stops first is not (they all go).
//! - Scale-in always balances by zone, then instance: ECS's default for a
//!   service with no placement strategy. ECS also selects the tasks to stop
//!   by a service's own placement strategy; that is not modelled.

use flotilla_scheduler::{choose_tasks_to_stop, TaskSite};

pub mod daemon;

/// Seconds since the epoch.
pub type Time = f64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentStatus {
    /// The newest deployment: the one the service converges to.
    Primary,
    /// An older deployment that still has tasks.
    Active,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    InProgress,
    Completed,
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// `ecs-svc/…`; service tasks carry it as `startedBy`.
    pub id: String,
    pub task_definition: String,
    pub status: DeploymentStatus,
    pub rollout_state: RolloutState,
    /// As stored; the plan never lowers it.
    pub failed_tasks: u32,
    pub created_at: Time,
    /// As stored (ECS's `desiredCount` of this deployment); the plan compares
    /// its new value with this to decide whether to send a [`DeploymentUpdate`].
    pub desired_count: u32,
    /// As stored (`runningCount`); compared like `desired_count`.
    pub running_count: u32,
    /// As stored (`pendingCount`); compared like `desired_count`.
    pub pending_count: u32,
}

/// A task's phase, from its statuses: the lifecycle the model defines.
pub use flotilla_model::lifecycle::TaskPhase;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    Unknown,
}

/// Why a task stopped, as far as the reconciler cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// It failed: never reached RUNNING, an essential container exited, or it
    /// was stopped for failing its health check. Counts for the circuit breaker.
    Failed,
    /// Stopped on purpose (scale-in, deployment, user, draining instance).
    Intended,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    /// The deployment that started it (`startedBy`).
    pub deployment_id: String,
    pub phase: TaskPhase,
    pub health: Health,
    /// Whether its task definition has a container health check.
    pub has_health_check: bool,
    /// When it reached RUNNING.
    pub started_at: Option<Time>,
    /// For stopped (and stopping) tasks: why.
    pub stop_cause: Option<StopCause>,
    /// It sits on a DRAINING container instance: replace it, replacement first.
    pub on_draining_instance: bool,
    /// The container instance it is placed on (its ARN). Scale-in takes from
    /// the instance with the most of the service's tasks.
    pub instance: String,
    /// That instance's availability zone (`ecs.availability-zone`), if it has
    /// one. Scale-in takes from the zone with the most of the service's tasks
    /// first; tasks on instances without a zone count as one more zone.
    pub zone: Option<String>,
    /// When it reached STOPPED (the time its stop was observed). Needed for the
    /// restart backoff: failures without it are counted by the circuit breaker
    /// but cannot delay a restart.
    pub stopped_at: Option<Time>,
    /// Task scale-in protection (UpdateTaskProtection) lasts until then:
    /// until it expires the task is never chosen to stop for a scale-in.
    pub protected_until: Option<Time>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    /// DRAINING (being deleted): stop every task.
    pub draining: bool,
    pub desired_count: u32,
    pub minimum_healthy_percent: u32,
    pub maximum_percent: u32,
    /// `Some(rollback)` when the deployment circuit breaker is enabled.
    pub circuit_breaker: Option<bool>,
    pub health_check_grace_period: Time,
    /// Newest first; exactly one PRIMARY.
    pub deployments: Vec<Deployment>,
    /// Every task of the service the control plane still knows, stopped ones included.
    pub tasks: Vec<Task>,
    /// The task definition of the most recent COMPLETED deployment, if any (rollback target).
    pub last_completed_task_definition: Option<String>,
    /// The previous plan said `steady`: the steady-state event is only written
    /// on the way into steady state.
    pub was_steady: bool,
    /// A blue/green (or canary, linear) deployment before its clean-up: the
    /// PRIMARY scales up to `desired` beside the other deployments' tasks,
    /// whatever maximumPercent says, and their healthy tasks are kept (they
    /// serve the traffic not shifted yet).
    pub hold_previous: bool,
}

/// Why the plan stops a task (becomes the task's stoppedReason / the event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    ScaleIn,
    /// Replaced by a task of a newer deployment.
    Deployment,
    Unhealthy,
    InstanceDraining,
    ServiceDraining,
}

/// A change to one deployment's stored fields.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentUpdate {
    pub id: String,
    /// PRIMARY: the service's desired count. ACTIVE: the tasks it keeps after
    /// this plan (it shrinks as the rollout stops them).
    pub desired_count: u32,
    pub running_count: u32,
    pub pending_count: u32,
    pub failed_tasks: u32,
    pub rollout_state: RolloutState,
    /// Set when the rollout state changes: ECS's wording, e.g.
    /// "ECS deployment ecs-svc/123 completed."
    pub rollout_state_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Tasks to start, by deployment id.
    pub start: Vec<(String, u32)>,
    /// Tasks to stop.
    pub stop: Vec<(String, StopReason)>,
    /// New counters and states for deployments (only those that changed).
    pub update: Vec<DeploymentUpdate>,
    /// ACTIVE deployments with no tasks left: drop them from the service.
    pub remove: Vec<String>,
    /// The circuit breaker tripped with rollback: start a new PRIMARY
    /// deployment of this task definition.
    pub rollback_to: Option<String>,
    /// Human-readable service events, in ECS's wording, oldest first
    /// (e.g. "(service web) has reached a steady state.").
    pub events: Vec<String>,
    /// The service is steady: one deployment, COMPLETED, running == desired.
    pub steady: bool,
    /// A DRAINING service has no task left that is not STOPPED: it can become
    /// INACTIVE.
    pub drained: bool,
    /// Reconcile again at this time even if nothing else changes (a restart
    /// backoff ends, a health-check grace period runs out).
    pub wake_at: Option<Time>,
}

/// ceil(desired × minimumHealthyPercent / 100): the healthy RUNNING tasks a
/// plan never stops below.
pub fn min_healthy_tasks(desired: u32, minimum_healthy_percent: u32) -> u32 {
    let n = (u64::from(desired) * u64::from(minimum_healthy_percent)).div_ceil(100);
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// floor(desired × maximumPercent / 100): the RUNNING + PENDING (+ stopping)
/// tasks a plan never starts above.
pub fn max_tasks(desired: u32, maximum_percent: u32) -> u32 {
    let n = u64::from(desired) * u64::from(maximum_percent) / 100;
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The circuit breaker's failure threshold: min(max(ceil(0.5 × desired), 10), 200).
pub fn breaker_threshold(desired: u32) -> u32 {
    desired.div_ceil(2).clamp(10, 200)
}

/// First restart delay once a deployment's tasks keep failing.
pub const BACKOFF_BASE: Time = 10.0;
/// The restart delay never grows past this (ECS documents 15 minutes).
pub const BACKOFF_MAX: Time = 900.0;

/// A failed task counts toward the restart backoff if it stopped less than
/// this long after reaching RUNNING (or never reached it): long enough to
/// catch a container that exits as it starts (bad command, missing
/// configuration), short enough that a task that has served for a while and
/// is then killed is never taken for one that cannot start.
pub const START_WINDOW: Time = 10.0;

/// A rollout that replaces another deployment completes only once the
/// newest of the tasks it counts has been RUNNING this long, so that a
/// revision that exits as soon as it starts is seen failing (and counted by
/// the circuit breaker) rather than completed in the moment all its tasks
/// were RUNNING together. The replaced deployments stay listed (with no
/// task) until the rollout is no longer IN_PROGRESS, so the CLI's
/// `services-stable` waiter, which looks only at the counts and the number
/// of deployments, does not pass before there is a COMPLETED deployment to
/// roll back to. Short beside [`START_WINDOW`]: it only has to outlast the
/// gap between a crashing task's RUNNING and STOPPED reports on a busy
/// host.
pub const SETTLE_WINDOW: Time = 2.0;

/// How long to wait after the latest failure before starting another task,
/// given the number of consecutive start failures: the first is retried at
/// once, then 10 s, 20 s, 40 s, … up to [`BACKOFF_MAX`].
pub fn restart_backoff(consecutive_failures: u32) -> Time {
    if consecutive_failures <= 1 {
        return 0.0;
    }
    let doublings = (consecutive_failures - 2).min(30);
    (BACKOFF_BASE * f64::from(1u32 << doublings)).min(BACKOFF_MAX)
}

/// Holds a host: PENDING, RUNNING or stopping.
fn occupies(t: &Task) -> bool {
    t.phase != TaskPhase::Stopped
}

/// PENDING or RUNNING and not yet asked to stop.
fn is_live(t: &Task) -> bool {
    matches!(t.phase, TaskPhase::Pending | TaskPhase::Running)
}

/// Counts toward minimumHealthyPercent: RUNNING and HEALTHY, or RUNNING with no
/// health check and no UNHEALTHY verdict.
fn is_healthy(t: &Task) -> bool {
    t.phase == TaskPhase::Running
        && match t.health {
            Health::Healthy => true,
            Health::Unknown => !t.has_health_check,
            Health::Unhealthy => false,
        }
}

/// When the grace period of a RUNNING task ends (already over if it has no
/// start time).
fn grace_ends(t: &Task, grace: Time) -> Time {
    t.started_at.map_or(Time::NEG_INFINITY, |s| s + grace)
}

fn is_failure(t: &Task) -> bool {
    t.stop_cause == Some(StopCause::Failed)
}

/// A failure that counts toward the restart backoff: the task never reached
/// RUNNING, or it stopped less than [`START_WINDOW`] after reaching it. A task
/// that ran longer and then died was started successfully; its failure is its
/// own, not a sign that the deployment cannot start tasks.
fn failed_to_start(t: &Task) -> bool {
    is_failure(t)
        && match (t.started_at, t.stopped_at) {
            (None, _) => true,
            (Some(started), Some(stopped)) => stopped - started < START_WINDOW,
            (Some(_), None) => false,
        }
}

fn earliest(a: Option<Time>, b: Time) -> Option<Time> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Decides the next step for one service. Pure: same snapshot, same plan.
/// See the crate docs ("Semantics") for every rule it applies.
pub fn reconcile(service: &Service, now: Time) -> Plan {
    let s = service;
    let name = &s.name;
    let tasks = &s.tasks;
    let mut plan = Plan::default();
    let primary = s
        .deployments
        .iter()
        .find(|d| d.status == DeploymentStatus::Primary);
    let desired = s.desired_count;
    let floor = min_healthy_tasks(desired, s.minimum_healthy_percent);
    let ceiling = if s.hold_previous {
        u32::MAX
    } else {
        max_tasks(desired, s.maximum_percent)
    };

    let count = |f: &dyn Fn(&Task) -> bool| tasks.iter().filter(|t| f(t)).count() as u32;
    let occupancy = count(&occupies);
    let healthy_now = count(&is_healthy);
    let in_flight_stops = count(&|t| t.phase == TaskPhase::Stopping);

    // Indexes into `tasks` this plan stops, and why.
    let mut stops: Vec<(usize, StopReason)> = Vec::new();
    let mut stopped = vec![false; tasks.len()];
    let mut unhealthy_stop = vec![false; tasks.len()];
    let mut primary_state = primary.map(|p| p.rollout_state);
    let mut tripped = false;
    let mut events_tail: Vec<String> = Vec::new();

    if s.draining {
        for (i, t) in tasks.iter().enumerate() {
            if is_live(t) {
                stops.push((i, StopReason::ServiceDraining));
                stopped[i] = true;
            }
        }
        plan.drained = tasks.iter().all(|t| t.phase == TaskPhase::Stopped);
    } else {
        // Replace tasks whose UNHEALTHY verdict is past the grace period; they
        // are not healthy, so stopping them never lowers the healthy count.
        for (i, t) in tasks.iter().enumerate() {
            if !(t.phase == TaskPhase::Running && t.health == Health::Unhealthy) {
                continue;
            }
            let ends = grace_ends(t, s.health_check_grace_period);
            if now >= ends {
                stops.push((i, StopReason::Unhealthy));
                stopped[i] = true;
                unhealthy_stop[i] = true;
            } else {
                plan.wake_at = earliest(plan.wake_at, ends);
            }
        }

        // Circuit breaker: only while the PRIMARY rollout is IN_PROGRESS.
        let breaker_watching = |state: Option<RolloutState>| {
            s.circuit_breaker.is_some() && state == Some(RolloutState::InProgress)
        };
        if let Some(p) = primary {
            let failed = failures(s, &p.id, &unhealthy_stop).max(p.failed_tasks);
            if breaker_watching(primary_state) && failed >= breaker_threshold(desired) {
                tripped = true;
                primary_state = Some(RolloutState::Failed);
                plan.events.push(format!(
                    "(service {name}) (deployment {}) deployment failed: tasks failed to start.",
                    p.id
                ));
            }
            if primary_state == Some(RolloutState::Failed) && s.circuit_breaker == Some(true) {
                match &s.last_completed_task_definition {
                    Some(td) if *td != p.task_definition => {
                        plan.rollback_to = Some(td.clone());
                        let to = s
                            .deployments
                            .iter()
                            .filter(|d| d.task_definition == *td)
                            .max_by_key(|d| d.rollout_state == RolloutState::Completed);
                        plan.events.push(match to {
                            Some(d) => format!("(service {name}) rolling back to deployment {}.", d.id),
                            None => format!("(service {name}) rolling back to task definition {td}."),
                        });
                    }
                    _ if tripped => plan.events.push(format!(
                        "(service {name}) (deployment {}) cannot roll back: no COMPLETED deployment of another task definition.",
                        p.id
                    )),
                    _ => {}
                }
            }
        }
        let failed_now = primary_state == Some(RolloutState::Failed);

        // Keepers: the PRIMARY's live tasks that stay. Retirees: every other
        // live task (older or unknown deployments, tasks on DRAINING instances).
        let is_keeper =
            |t: &Task| primary.is_some_and(|p| t.deployment_id == p.id) && !t.on_draining_instance;
        let keepers: Vec<usize> = (0..tasks.len())
            .filter(|&i| is_live(&tasks[i]) && !stopped[i] && is_keeper(&tasks[i]))
            .collect();
        let retirees: Vec<usize> = (0..tasks.len())
            .filter(|&i| is_live(&tasks[i]) && !stopped[i] && !is_keeper(&tasks[i]))
            .collect();
        let needed = i64::from(desired) - keepers.len() as i64;
        let mut can_start = primary.is_some() && !failed_now;

        // Restart backoff, unless the breaker is watching this rollout.
        if let (Some(p), true, true) = (primary, can_start, needed > 0) {
            if !breaker_watching(primary_state) {
                if let Some(until) = backoff_until(s, &p.id) {
                    if now < until {
                        can_start = false;
                        plan.wake_at = earliest(plan.wake_at, until);
                        plan.events.push(format!(
                            "(service {name}) is unable to consistently start tasks successfully."
                        ));
                    }
                }
            }
        }

        // Retirees that are not healthy cost nothing to stop.
        let retire_reason = |t: &Task| {
            if t.on_draining_instance {
                StopReason::InstanceDraining
            } else {
                StopReason::Deployment
            }
        };
        let mut healthy_retirees = Vec::new();
        for &i in &retirees {
            if is_healthy(&tasks[i]) {
                // Scale-in protection holds deployments back too: a
                // protected task stays until its protection ends (not on a
                // DRAINING instance, which ECS empties whatever runs there).
                let held = tasks[i]
                    .protected_until
                    .filter(|until| *until > now && !tasks[i].on_draining_instance);
                match held {
                    Some(until) => plan.wake_at = earliest(plan.wake_at, until),
                    None => healthy_retirees.push(i),
                }
            } else {
                stops.push((i, retire_reason(&tasks[i])));
                stopped[i] = true;
            }
        }
        // Oldest deployments first (unknown ones before all), tasks on DRAINING
        // instances first within one, the PRIMARY's own draining tasks last.
        let rank = |t: &Task| -> usize {
            match s.deployments.iter().position(|d| d.id == t.deployment_id) {
                None => 0,
                Some(_) if primary.is_some_and(|p| p.id == t.deployment_id) => usize::MAX,
                Some(idx) => s.deployments.len() - idx,
            }
        };
        healthy_retirees.sort_by(|&a, &b| {
            let (ta, tb) = (&tasks[a], &tasks[b]);
            (rank(ta), !ta.on_draining_instance, &ta.id).cmp(&(
                rank(tb),
                !tb.on_draining_instance,
                &tb.id,
            ))
        });

        let kept_healthy = keepers.iter().filter(|&&i| is_healthy(&tasks[i])).count() as u32;
        let rh = healthy_retirees.len() as u32;
        let room = ceiling.saturating_sub(occupancy);
        // Healthy retirees the service no longer needs: the replacement is healthy.
        let surplus = (kept_healthy + rh).saturating_sub(desired).min(rh);
        // Healthy retirees to stop because maximumPercent leaves no room for
        // the starts this rollout needs (after the stops already under way).
        let freed = i64::from(in_flight_stops) + stops.len() as i64 + i64::from(surplus);
        let for_room = if can_start && needed > 0 {
            (needed - i64::from(room) - freed).max(0) as u32
        } else {
            0
        };
        let mut slack = healthy_now.saturating_sub(floor);
        let n = if s.hold_previous {
            0
        } else {
            rh.min(surplus + for_room).min(slack)
        };
        for &i in healthy_retirees.iter().take(n as usize) {
            stops.push((i, retire_reason(&tasks[i])));
            stopped[i] = true;
        }
        slack -= n;

        // Scale-in of the PRIMARY itself, only after the retirees, in ECS's
        // order: from the zone with the most keepers, then the instance in it
        // with the most. Within an instance, tasks not yet healthy go first,
        // then the most recently started. A healthy task the floor cannot
        // spare is passed over for the next one in that order that is not
        // healthy.
        let excess = (keepers.len() as i64 - i64::from(desired)).max(0) as usize;
        // Protected tasks are never chosen (ECS: "the service scheduler
        // only terminates unprotected tasks"); the plan wakes when the
        // first protection that holds a scale-in back runs out.
        let protected = |t: &Task| t.protected_until.is_some_and(|until| until > now);
        let unprotected: Vec<usize> = keepers
            .iter()
            .copied()
            .filter(|&i| !protected(&tasks[i]))
            .collect();
        if excess > 0 && unprotected.len() < keepers.len() {
            for &i in &keepers {
                if let Some(until) = tasks[i].protected_until.filter(|u| *u > now) {
                    plan.wake_at = earliest(plan.wake_at, until);
                }
            }
        }
        let excess = excess.min(unprotected.len());
        if excess > 0 {
            let mut order = unprotected;
            order.sort_by(|&a, &b| {
                let (ta, tb) = (&tasks[a], &tasks[b]);
                let key = |t: &Task| (is_healthy(t), t.phase == TaskPhase::Running);
                key(ta)
                    .cmp(&key(tb))
                    .then(
                        tb.started_at
                            .partial_cmp(&ta.started_at)
                            .unwrap_or(std::cmp::Ordering::Equal),
                    )
                    .then(ta.id.cmp(&tb.id))
            });
            let sites: Vec<TaskSite<'_>> = order
                .iter()
                .map(|&i| TaskSite {
                    instance_id: &tasks[i].instance,
                    zone: tasks[i].zone.as_deref(),
                })
                .collect();
            let mut left = excess;
            for k in choose_tasks_to_stop(&sites, sites.len()) {
                if left == 0 {
                    break;
                }
                let i = order[k];
                if is_healthy(&tasks[i]) {
                    if slack == 0 {
                        continue;
                    }
                    slack -= 1;
                }
                stops.push((i, StopReason::ScaleIn));
                stopped[i] = true;
                left -= 1;
            }
        }

        let starts = if can_start && needed > 0 {
            (needed as u32).min(room)
        } else {
            0
        };
        if let (Some(p), true) = (primary, starts > 0) {
            plan.start.push((p.id.clone(), starts));
        }

        // Nothing to do, nothing under way, and yet not converged: the
        // configuration leaves no room.
        let awaiting = tasks.iter().any(|t| {
            matches!(t.phase, TaskPhase::Pending | TaskPhase::Stopping)
                || (t.phase == TaskPhase::Running && !is_healthy(t))
        });
        let work = needed > 0 || !healthy_retirees.is_empty() || excess > 0;
        if can_start && work && starts == 0 && stops.is_empty() && !awaiting {
            plan.events.push(format!(
                "(service {name}) cannot make progress: minimumHealthyPercent {} and maximumPercent {} \
                 leave no room to replace tasks (desiredCount {desired}: at least {floor} must stay healthy, \
                 at most {ceiling} may run).",
                s.minimum_healthy_percent, s.maximum_percent
            ));
        }

        // Completion: the PRIMARY has desired healthy tasks and nothing else is left.
        if let Some(p) = primary {
            let mine_healthy = keepers
                .iter()
                .filter(|&&i| !stopped[i] && is_healthy(&tasks[i]))
                .count() as u32;
            let others_left = tasks
                .iter()
                .any(|t| t.deployment_id != p.id && t.phase != TaskPhase::Stopped);
            if primary_state == Some(RolloutState::InProgress)
                && mine_healthy >= desired
                && !others_left
            {
                // A rollout that replaced a deployment also waits until its
                // newest counted task has been RUNNING for SETTLE_WINDOW.
                let settled = keepers
                    .iter()
                    .filter(|&&i| !stopped[i] && is_healthy(&tasks[i]))
                    .map(|&i| grace_ends(&tasks[i], SETTLE_WINDOW))
                    .fold(Time::NEG_INFINITY, Time::max);
                if s.deployments.len() == 1 || now >= settled {
                    primary_state = Some(RolloutState::Completed);
                    events_tail.push(format!(
                        "(service {name}) (deployment {}) deployment completed.",
                        p.id
                    ));
                } else {
                    plan.wake_at = earliest(plan.wake_at, settled);
                }
            }
        }
    }

    // Counters and states, for the deployments whose stored values change.
    for d in &s.deployments {
        let mine = |t: &&Task| t.deployment_id == d.id;
        let running = tasks
            .iter()
            .filter(mine)
            .filter(|t| t.phase == TaskPhase::Running)
            .count() as u32;
        let pending = tasks
            .iter()
            .filter(mine)
            .filter(|t| t.phase == TaskPhase::Pending)
            .count() as u32;
        let is_primary = primary.is_some_and(|p| p.id == d.id);
        let desired_here = if is_primary {
            desired
        } else {
            (0..tasks.len())
                .filter(|&i| tasks[i].deployment_id == d.id && is_live(&tasks[i]) && !stopped[i])
                .count() as u32
        };
        let failed = failures(s, &d.id, &unhealthy_stop).max(d.failed_tasks);
        let state = if is_primary {
            primary_state.unwrap_or(d.rollout_state)
        } else {
            d.rollout_state
        };
        let reason = match state {
            _ if state == d.rollout_state => None,
            RolloutState::Completed => Some(format!("ECS deployment {} completed.", d.id)),
            RolloutState::Failed => {
                Some("ECS deployment circuit breaker: tasks failed to start.".to_string())
            }
            RolloutState::InProgress => None,
        };
        let changed = desired_here != d.desired_count
            || running != d.running_count
            || pending != d.pending_count
            || failed != d.failed_tasks
            || state != d.rollout_state;
        if changed {
            plan.update.push(DeploymentUpdate {
                id: d.id.clone(),
                desired_count: desired_here,
                running_count: running,
                pending_count: pending,
                failed_tasks: failed,
                rollout_state: state,
                rollout_state_reason: reason,
            });
        }
    }

    // Replaced deployments stay listed (with no task) while the rollout
    // is IN_PROGRESS, as ECS lists them (not once the service is deleted).
    let rolling_out = !s.draining && primary_state == Some(RolloutState::InProgress);
    plan.remove = s
        .deployments
        .iter()
        .filter(|d| d.status == DeploymentStatus::Active && !rolling_out)
        .filter(|d| !tasks.iter().any(|t| t.deployment_id == d.id && occupies(t)))
        .map(|d| d.id.clone())
        .collect();

    stops.sort_by_key(|&(i, _)| i);
    plan.stop = stops
        .into_iter()
        .map(|(i, r)| (tasks[i].id.clone(), r))
        .collect();

    let running_total = count(&|t| t.phase == TaskPhase::Running);
    let settling = tasks
        .iter()
        .any(|t| matches!(t.phase, TaskPhase::Pending | TaskPhase::Stopping));
    plan.steady = !s.draining
        && primary_state == Some(RolloutState::Completed)
        && s.deployments.len() - plan.remove.len() == 1
        && running_total == desired
        && !settling
        && plan.start.is_empty()
        && plan.stop.is_empty()
        && plan.rollback_to.is_none();
    // On the way into steady state, and after every completed rollout (one
    // can complete in its first reconcile, while `was_steady` still holds).
    let just_completed = !events_tail.is_empty();
    plan.events.extend(events_tail);
    if plan.steady && (!s.was_steady || just_completed) {
        plan.events
            .push(format!("(service {name}) has reached a steady state."));
    }
    plan
}

/// A deployment's failures visible in the snapshot: tasks stopped as failed,
/// plus those this plan stops for being UNHEALTHY (they become failed stops).
fn failures(s: &Service, deployment_id: &str, unhealthy_stop: &[bool]) -> u32 {
    s.tasks
        .iter()
        .enumerate()
        .filter(|(i, t)| t.deployment_id == deployment_id && (is_failure(t) || unhealthy_stop[*i]))
        .count() as u32
}

/// When the deployment may start a task again after consecutive start
/// failures ([`failed_to_start`]) with a stop time since the latest start of
/// one of its tasks that is healthy now, delayed by [`restart_backoff`] from
/// the latest of them.
fn backoff_until(s: &Service, deployment_id: &str) -> Option<Time> {
    let mine = || {
        s.tasks
            .iter()
            .filter(move |t| t.deployment_id == deployment_id)
    };
    let last_good = mine()
        .filter(|t| is_healthy(t))
        .map(|t| t.started_at.unwrap_or(Time::NEG_INFINITY))
        .fold(Time::NEG_INFINITY, Time::max);
    let recent: Vec<Time> = mine()
        .filter(|t| failed_to_start(t))
        .filter_map(|t| t.stopped_at)
        .filter(|&at| at > last_good)
        .collect();
    let latest = recent.iter().copied().fold(Time::NEG_INFINITY, Time::max);
    let delay = restart_backoff(recent.len() as u32);
    (delay > 0.0).then_some(latest + delay)
}

#[cfg(test)]
mod tests;
