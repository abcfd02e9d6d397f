//! The lifecycles of ECS objects: their statuses as enums, and the moves
//! between them, in one place.
//!
//! The ECS model types these fields as plain strings; the generated wire
//! types use the enums below instead (see `tools/gen_wire.py`, `REFINED`), so
//! the JSON is unchanged while no code compares status strings. The server's
//! domain core, the reconcilers, the scheduler and the agent all take their
//! statuses and transitions from here.

use serde::{Deserialize, Serialize};

use crate::ecs;
use crate::shape::Shape;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant,)*
        }

        impl $name {
            /// Every value, in declaration order (lifecycle order where there is one).
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The value as it travels on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)*
                }
            }

            /// Parses a wire value; `None` for a value ECS does not define.
            pub fn parse(value: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == value)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Shape for $name {}
    };
}

wire_enum! {
    /// A task's `lastStatus`, declared in lifecycle order: a task only ever
    /// moves forward through it.
    TaskStatus {
        Provisioning = "PROVISIONING",
        Pending = "PENDING",
        Activating = "ACTIVATING",
        Running = "RUNNING",
        Deactivating = "DEACTIVATING",
        Stopping = "STOPPING",
        Deprovisioning = "DEPROVISIONING",
        Stopped = "STOPPED",
    }
}

impl TaskStatus {
    /// The status a task takes when its agent reports `reported`: reports
    /// arrive out of order and are resent after reconnects, so a report never
    /// moves a task backwards.
    pub fn advance(self, reported: TaskStatus) -> TaskStatus {
        self.max(reported)
    }

    /// Whether a task in this status holds CPU, memory and ports on its
    /// instance (from placement until it is STOPPED).
    pub fn holds_resources(self) -> bool {
        self != TaskStatus::Stopped
    }

    /// Placed, not yet running.
    pub fn is_starting(self) -> bool {
        self < TaskStatus::Running
    }
}

wire_enum! {
    /// A container's `lastStatus`, in lifecycle order.
    ContainerStatus {
        Pending = "PENDING",
        Running = "RUNNING",
        Stopped = "STOPPED",
    }
}

impl ContainerStatus {
    /// Like [`TaskStatus::advance`]: a report never moves a container back.
    pub fn advance(self, reported: ContainerStatus) -> ContainerStatus {
        self.max(reported)
    }
}

wire_enum! {
    /// A container instance's `status`.
    InstanceStatus {
        Registering = "REGISTERING",
        RegistrationFailed = "REGISTRATION_FAILED",
        Active = "ACTIVE",
        Draining = "DRAINING",
        Deregistering = "DEREGISTERING",
        Inactive = "INACTIVE",
    }
}

impl InstanceStatus {
    /// Registered with its cluster: it counts for placement views, DAEMON
    /// services, agent connections and lost-host detection (everything but
    /// INACTIVE and REGISTRATION_FAILED).
    pub fn is_registered(self) -> bool {
        !matches!(
            self,
            InstanceStatus::Inactive | InstanceStatus::RegistrationFailed
        )
    }

    /// New tasks may be placed here.
    pub fn accepts_tasks(self) -> bool {
        self == InstanceStatus::Active
    }

    /// The moves UpdateContainerInstancesState allows: between ACTIVE and
    /// DRAINING, in either direction, for a registered instance.
    pub fn can_be_set_to(self, next: InstanceStatus) -> bool {
        self.is_registered() && matches!(next, InstanceStatus::Active | InstanceStatus::Draining)
    }
}

wire_enum! {
    /// A service's `status`: ACTIVE, then DRAINING once deleted while tasks
    /// remain, then INACTIVE.
    ServiceStatus {
        Active = "ACTIVE",
        Draining = "DRAINING",
        Inactive = "INACTIVE",
    }
}

wire_enum! {
    /// A service deployment's `status`: the PRIMARY (newest) one, older ACTIVE
    /// ones still holding tasks, INACTIVE ones done.
    DeploymentStatus {
        Primary = "PRIMARY",
        Active = "ACTIVE",
        Inactive = "INACTIVE",
    }
}

wire_enum! {
    /// A task set's `status` (EXTERNAL deployment controller): the PRIMARY
    /// one serves production traffic, ACTIVE ones do not, a DRAINING one is
    /// being deleted (its tasks stop, its targets drain) and then leaves the
    /// service.
    TaskSetStatus {
        Primary = "PRIMARY",
        Active = "ACTIVE",
        Draining = "DRAINING",
    }
}

wire_enum! {
    /// A cluster's `status`. A deleted cluster stays INACTIVE (DescribeClusters
    /// still finds it).
    ClusterStatus {
        Active = "ACTIVE",
        Provisioning = "PROVISIONING",
        Deprovisioning = "DEPROVISIONING",
        Failed = "FAILED",
        Inactive = "INACTIVE",
    }
}

/// What a task looks like to the controllers, from its two statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskPhase {
    /// Placed, not yet RUNNING (PROVISIONING, PENDING, ACTIVATING).
    Pending,
    Running,
    /// Asked to stop (desiredStatus STOPPED) but not yet STOPPED.
    Stopping,
    Stopped,
}

impl ecs::Task {
    /// The task's `lastStatus` (a task is PENDING until told otherwise).
    pub fn status(&self) -> TaskStatus {
        self.last_status.unwrap_or(TaskStatus::Pending)
    }

    /// Whether the task is to be stopped (its `desiredStatus` is STOPPED).
    pub fn stop_requested(&self) -> bool {
        self.desired_status == Some(ecs::DesiredStatus::Stopped)
    }

    pub fn is_stopped(&self) -> bool {
        self.last_status == Some(TaskStatus::Stopped)
    }

    /// Wanted RUNNING and not yet STOPPED: what a service counts as its own.
    pub fn is_live(&self) -> bool {
        !self.stop_requested() && !self.is_stopped()
    }

    pub fn phase(&self) -> TaskPhase {
        match self.status() {
            TaskStatus::Stopped => TaskPhase::Stopped,
            _ if self.stop_requested() => TaskPhase::Stopping,
            TaskStatus::Running => TaskPhase::Running,
            _ => TaskPhase::Pending,
        }
    }

    /// Asks for the task to stop: `desiredStatus` STOPPED with the code and
    /// reason users read. A task never handed to an agent has nothing to stop
    /// and is STOPPED at once. False (and nothing changed) if a stop was
    /// already requested.
    pub fn request_stop(&mut self, now: f64, code: ecs::TaskStopCode, reason: String) -> bool {
        if self.stop_requested() {
            return false;
        }
        self.desired_status = Some(ecs::DesiredStatus::Stopped);
        self.stop_code = Some(code);
        self.stopped_reason = Some(reason);
        self.stopping_at = Some(now);
        self.bump_version();
        if self.container_instance_arn.is_none() {
            self.last_status = Some(TaskStatus::Stopped);
            self.stopped_at = Some(now);
        }
        true
    }

    /// Marks the task STOPPED without its agent (the agent is gone: a lost
    /// host). A stop not yet requested is requested with `code` and `reason`;
    /// every container not yet STOPPED stops with `container_reason`.
    pub fn force_stopped(
        &mut self,
        now: f64,
        code: ecs::TaskStopCode,
        reason: String,
        container_reason: &str,
    ) {
        if !self.stop_requested() {
            self.desired_status = Some(ecs::DesiredStatus::Stopped);
            self.stop_code = Some(code);
            self.stopped_reason = Some(reason);
            self.stopping_at = Some(now);
        }
        self.last_status = Some(TaskStatus::Stopped);
        self.stopped_at = Some(now);
        for c in self.containers.iter_mut().flatten() {
            if c.last_status != Some(ContainerStatus::Stopped) {
                c.last_status = Some(ContainerStatus::Stopped);
                c.reason = Some(container_reason.to_string());
            }
        }
        self.bump_version();
    }

    /// Every change the agent must see bumps the task's `version`.
    pub fn bump_version(&mut self) {
        self.version = Some(self.version.unwrap_or(0) + 1);
    }
}

impl ecs::ContainerInstance {
    /// The instance's `status` (INACTIVE when absent: never registered).
    pub fn lifecycle(&self) -> InstanceStatus {
        self.status.unwrap_or(InstanceStatus::Inactive)
    }

    /// Registered (ACTIVE or DRAINING).
    pub fn is_registered(&self) -> bool {
        self.lifecycle().is_registered()
    }
}

impl ecs::Cluster {
    pub fn is_active(&self) -> bool {
        self.status == Some(ClusterStatus::Active)
    }
}

impl ecs::Service {
    pub fn lifecycle(&self) -> ServiceStatus {
        self.status.unwrap_or(ServiceStatus::Inactive)
    }

    /// The PRIMARY deployment, if the service has one.
    pub fn primary_deployment(&self) -> Option<&ecs::Deployment> {
        self.deployments
            .iter()
            .flatten()
            .find(|d| d.status == Some(DeploymentStatus::Primary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_travel_as_ecs_spells_them() {
        for s in TaskStatus::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<TaskStatus>(&json).unwrap(), *s);
            assert_eq!(TaskStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(
            InstanceStatus::parse("REGISTRATION_FAILED"),
            Some(InstanceStatus::RegistrationFailed)
        );
        assert_eq!(TaskStatus::parse("running"), None);
    }

    #[test]
    fn reports_never_move_a_task_back() {
        assert_eq!(
            TaskStatus::Running.advance(TaskStatus::Pending),
            TaskStatus::Running
        );
        assert_eq!(
            TaskStatus::Pending.advance(TaskStatus::Running),
            TaskStatus::Running
        );
        assert_eq!(
            TaskStatus::Stopped.advance(TaskStatus::Running),
            TaskStatus::Stopped
        );
        assert_eq!(
            ContainerStatus::Stopped.advance(ContainerStatus::Pending),
            ContainerStatus::Stopped
        );
        assert!(TaskStatus::Activating.is_starting());
        assert!(!TaskStatus::Running.is_starting());
    }

    #[test]
    fn a_stop_is_requested_once_and_an_unplaced_task_stops_at_once() {
        let mut placed = ecs::Task {
            container_instance_arn: Some("ci".into()),
            version: Some(1),
            ..Default::default()
        };
        assert!(placed.request_stop(5.0, ecs::TaskStopCode::UserInitiated, "by hand".into()));
        assert!(!placed.request_stop(
            6.0,
            ecs::TaskStopCode::ServiceSchedulerInitiated,
            "again".into()
        ));
        assert_eq!(placed.stop_code, Some(ecs::TaskStopCode::UserInitiated));
        assert_eq!(placed.version, Some(2));
        assert_eq!(placed.phase(), TaskPhase::Stopping);

        let mut unplaced = ecs::Task::default();
        assert!(unplaced.request_stop(5.0, ecs::TaskStopCode::UserInitiated, "by hand".into()));
        assert_eq!(unplaced.phase(), TaskPhase::Stopped);
        assert_eq!(unplaced.stopped_at, Some(5.0));
    }

    #[test]
    fn a_forced_stop_keeps_an_earlier_reason_and_stops_every_container() {
        let mut t = ecs::Task {
            last_status: Some(TaskStatus::Running),
            containers: Some(vec![
                ecs::Container {
                    last_status: Some(ContainerStatus::Running),
                    ..Default::default()
                },
                ecs::Container {
                    last_status: Some(ContainerStatus::Stopped),
                    reason: Some("exited".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        t.request_stop(1.0, ecs::TaskStopCode::UserInitiated, "by hand".into());
        t.force_stopped(
            2.0,
            ecs::TaskStopCode::TerminationNotice,
            "host lost".into(),
            "Host lost",
        );
        assert_eq!(t.stopped_reason.as_deref(), Some("by hand"));
        assert_eq!(t.status(), TaskStatus::Stopped);
        let reasons: Vec<_> = t
            .containers
            .iter()
            .flatten()
            .map(|c| c.reason.as_deref())
            .collect();
        assert_eq!(reasons, [Some("Host lost"), Some("exited")]);
    }
}
