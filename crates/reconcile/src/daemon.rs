//! DAEMON service decisions: one task on every instance that may hold one.
//!
//! The server gives a snapshot (the service, each registered instance with
//! the scheduler's verdict on it, the service's live tasks) and gets a
//! [`DaemonPlan`]: tasks to stop and why, instances to start a task on, and
//! what to tell the user when an eligible instance cannot take one. After
//! applying it, [`status`] says what the service's counts and rollout are.
//!
//! Rules (ECS-SEMANTICS.md, "Services"):
//! - an instance may hold a daemon task when it is ACTIVE, its agent is
//!   connected and the service's constraints hold there; the service is not
//!   being deleted;
//! - such an instance with no task of the service gets one of the PRIMARY
//!   deployment (unless it lacks resources: then the plan says why);
//! - a new deployment replaces each instance's task, stop first: a daemon
//!   runs at most one task per instance (maximumPercent 100,
//!   minimumHealthyPercent 0 by default), and a second one of the current
//!   deployment is stopped;
//! - tasks on instances that no longer qualify (draining, lost, constraints
//!   changed, the service deleted) are stopped.

use std::collections::BTreeMap;

use flotilla_model::lifecycle::TaskPhase;

/// What the scheduler says of an instance for this service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A task fits there.
    Fits,
    /// The service's constraints (memberOf, attributes) exclude it.
    Excluded,
    /// It qualifies but lacks room now (resources, ports): the reason, as
    /// the scheduler words it.
    NoRoom(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Its ARN.
    pub id: String,
    /// ACTIVE with a connected agent.
    pub serving: bool,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    /// Its instance's ARN.
    pub instance: String,
    /// `startedBy`: the deployment that started it.
    pub deployment_id: String,
    pub phase: TaskPhase,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// DRAINING (being deleted): every task goes.
    pub draining: bool,
    /// The PRIMARY deployment's id, if there is one.
    pub primary: Option<String>,
    pub instances: Vec<Instance>,
    /// Every task of the service the control plane still knows.
    pub tasks: Vec<Task>,
}

/// Why the plan stops a daemon task (the task's stoppedReason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Replaced by the task of a newer deployment.
    Deployment,
    /// A second task of the current deployment on one instance.
    Duplicate,
    /// Its instance no longer qualifies (or the service is being deleted).
    NotEligible,
}

impl StopReason {
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::Deployment => {
                "Scaling activity initiated by (deployment of the daemon service)"
            }
            StopReason::Duplicate => "Only one daemon task per instance",
            StopReason::NotEligible => {
                "Container instance no longer eligible for the daemon service"
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DaemonPlan {
    pub stop: Vec<(String, StopReason)>,
    /// Instances (ARNs) to start a task of the PRIMARY deployment on.
    pub start: Vec<String>,
    /// Why a task could not be placed on an eligible instance, for the
    /// service's events: "`reason` on container instance `arn`".
    pub unplaceable: Option<String>,
    /// Instances that may hold a task: the service's desired count.
    pub eligible: u32,
}

fn live(t: &Task) -> bool {
    matches!(t.phase, TaskPhase::Pending | TaskPhase::Running)
}

/// What to do for one DAEMON service.
pub fn plan(service: &Service) -> DaemonPlan {
    let mut by_instance: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    for t in service.tasks.iter().filter(|t| live(t)) {
        by_instance.entry(t.instance.as_str()).or_default().push(t);
    }
    let primary = service.primary.as_deref().unwrap_or_default();
    let mut out = DaemonPlan::default();
    for inst in &service.instances {
        let qualifies = inst.serving && inst.verdict != Verdict::Excluded && !service.draining;
        if !qualifies {
            continue;
        }
        out.eligible += 1;
        let tasks = by_instance.remove(inst.id.as_str()).unwrap_or_default();
        let (current, old): (Vec<&Task>, Vec<&Task>) =
            tasks.into_iter().partition(|t| t.deployment_id == primary);
        out.stop
            .extend(old.iter().map(|t| (t.id.clone(), StopReason::Deployment)));
        out.stop.extend(
            current
                .iter()
                .skip(1)
                .map(|t| (t.id.clone(), StopReason::Duplicate)),
        );
        if current.is_empty() && old.is_empty() && service.primary.is_some() {
            match &inst.verdict {
                Verdict::Fits => out.start.push(inst.id.clone()),
                Verdict::NoRoom(why) => {
                    out.unplaceable = Some(format!("{why} on container instance {}", inst.id))
                }
                Verdict::Excluded => {}
            }
        }
    }
    // Whatever is left sits on instances that no longer qualify.
    for tasks in by_instance.into_values() {
        out.stop.extend(
            tasks
                .into_iter()
                .map(|t| (t.id.clone(), StopReason::NotEligible)),
        );
    }
    out
}

/// A daemon service's counts and rollout, from its tasks after a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The PRIMARY deployment's tasks wanted RUNNING and RUNNING.
    pub running: u32,
    /// The PRIMARY deployment's tasks wanted RUNNING and not yet RUNNING.
    pub pending: u32,
    /// Tasks of older deployments not yet STOPPED.
    pub old_left: bool,
    /// Any task not yet STOPPED.
    pub anything_left: bool,
    /// Every eligible instance runs the PRIMARY's task, and nothing else is left.
    pub complete: bool,
}

pub fn status(service: &Service, eligible: u32) -> Status {
    let primary = service.primary.as_deref();
    let (mut running, mut pending, mut old_left, mut anything_left) = (0, 0, false, false);
    for t in service
        .tasks
        .iter()
        .filter(|t| t.phase != TaskPhase::Stopped)
    {
        anything_left = true;
        if Some(t.deployment_id.as_str()) != primary {
            old_left = true;
            continue;
        }
        match t.phase {
            TaskPhase::Running => running += 1,
            TaskPhase::Pending => pending += 1,
            _ => {}
        }
    }
    let complete = !service.draining && running == eligible && pending == 0 && !old_left;
    Status {
        running,
        pending,
        old_left,
        anything_left,
        complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, serving: bool, verdict: Verdict) -> Instance {
        Instance {
            id: id.into(),
            serving,
            verdict,
        }
    }

    fn task(id: &str, instance: &str, deployment: &str, phase: TaskPhase) -> Task {
        Task {
            id: id.into(),
            instance: instance.into(),
            deployment_id: deployment.into(),
            phase,
        }
    }

    fn service(instances: Vec<Instance>, tasks: Vec<Task>) -> Service {
        Service {
            draining: false,
            primary: Some("d2".into()),
            instances,
            tasks,
        }
    }

    #[test]
    fn every_serving_instance_gets_one_task() {
        let s = service(
            vec![
                inst("a", true, Verdict::Fits),
                inst("b", true, Verdict::Fits),
                inst("c", false, Verdict::Fits),
            ],
            vec![task("t1", "a", "d2", TaskPhase::Running)],
        );
        let p = plan(&s);
        assert_eq!(p.start, vec!["b".to_string()]);
        assert!(p.stop.is_empty());
        assert_eq!(p.eligible, 2);
    }

    #[test]
    fn a_new_deployment_replaces_stop_first_and_duplicates_go() {
        let s = service(
            vec![
                inst("a", true, Verdict::Fits),
                inst("b", true, Verdict::Fits),
            ],
            vec![
                task("old", "a", "d1", TaskPhase::Running),
                task("new1", "b", "d2", TaskPhase::Running),
                task("new2", "b", "d2", TaskPhase::Pending),
            ],
        );
        let p = plan(&s);
        assert_eq!(
            p.stop,
            vec![
                ("old".to_string(), StopReason::Deployment),
                ("new2".to_string(), StopReason::Duplicate)
            ]
        );
        // a's replacement waits for the old task to stop.
        assert!(p.start.is_empty());
    }

    #[test]
    fn excluded_draining_and_lost_instances_lose_their_tasks() {
        let s = service(
            vec![
                inst("a", true, Verdict::Excluded),
                inst("b", false, Verdict::Fits),
            ],
            vec![
                task("t1", "a", "d2", TaskPhase::Running),
                task("t2", "b", "d2", TaskPhase::Running),
                task("gone", "x", "d2", TaskPhase::Pending),
            ],
        );
        let p = plan(&s);
        let stopped: Vec<_> = p.stop.iter().map(|(id, r)| (id.as_str(), *r)).collect();
        assert_eq!(
            stopped,
            [
                ("t1", StopReason::NotEligible),
                ("t2", StopReason::NotEligible),
                ("gone", StopReason::NotEligible)
            ]
        );
        assert_eq!(p.eligible, 0);
    }

    #[test]
    fn an_instance_without_room_is_reported_and_a_deleted_service_stops_everything() {
        let mut s = service(
            vec![inst("a", true, Verdict::NoRoom("RESOURCE:MEMORY".into()))],
            vec![],
        );
        let p = plan(&s);
        assert!(p.start.is_empty());
        assert_eq!(
            p.unplaceable.as_deref(),
            Some("RESOURCE:MEMORY on container instance a")
        );
        s.draining = true;
        s.tasks.push(task("t", "a", "d2", TaskPhase::Running));
        assert_eq!(
            plan(&s).stop,
            vec![("t".to_string(), StopReason::NotEligible)]
        );
    }

    #[test]
    fn status_counts_the_primary_and_sees_old_tasks() {
        let s = service(
            vec![],
            vec![
                task("a", "i1", "d2", TaskPhase::Running),
                task("b", "i2", "d2", TaskPhase::Pending),
                task("c", "i3", "d1", TaskPhase::Stopping),
                task("d", "i4", "d1", TaskPhase::Stopped),
            ],
        );
        let st = status(&s, 2);
        assert_eq!(
            (st.running, st.pending, st.old_left, st.complete),
            (1, 1, true, false)
        );
        let done = service(
            vec![],
            vec![
                task("a", "i1", "d2", TaskPhase::Running),
                task("d", "i4", "d1", TaskPhase::Stopped),
            ],
        );
        assert!(status(&done, 1).complete);
    }
}
