//! Service and deployment decisions, as pure functions from a snapshot of one
//! service (its configuration, deployments and tasks) and the time to a
//! [`Plan`]: which tasks to start for which deployment, which to stop and why,
//! how each deployment's counters and rollout state change, which events to
//! record. The server's service controller builds the snapshot, calls
//! [`reconcile`], places the starts with the scheduler and commits the plan;
//! reconciling the same snapshot twice gives the same plan, so the loop can
//! re-run at any time.
//!
//! The rules (ECS-SEMANTICS.md, "Services"):
//! - REPLICA: keep `desired_count` tasks; replace tasks that stop or turn
//!   UNHEALTHY (after the grace period); a DRAINING service stops everything.
//! - Rolling deployment: the newest deployment is PRIMARY; older ones are
//!   ACTIVE while they have tasks and are dropped once drained. At every step
//!   healthy RUNNING tasks ≥ ceil(desired × minimumHealthyPercent / 100) and
//!   RUNNING + PENDING ≤ floor(desired × maximumPercent / 100). A configuration
//!   that cannot make progress says so in an event.
//! - Circuit breaker: failures of the PRIMARY deployment's tasks counted
//!   against min(max(ceil(0.5 × desired), 10), 200); at the threshold the
//!   deployment is FAILED, and with `rollback` the plan asks for a new
//!   deployment of the last COMPLETED task definition.
//! - Scale-in stops tasks of old deployments first.

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskPhase {
    /// Placed, not yet RUNNING (PROVISIONING, PENDING, ACTIVATING).
    Pending,
    Running,
    /// Asked to stop (desiredStatus STOPPED) but not yet STOPPED.
    Stopping,
    Stopped,
}

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
}

/// Decides the next step for one service. Pure: same snapshot, same plan.
pub fn reconcile(_service: &Service, _now: Time) -> Plan {
    Plan::default()
}
