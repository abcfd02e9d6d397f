//! What every caller does to tasks: create them (RunTask, StartTask, the
//! service and daemon controllers), apply what their agents report (the
//! gateway and the ECS state-change calls), and stop them (StopTask, the
//! controllers, lost hosts). The moves themselves (which status may follow
//! which, what a stop request sets) are the task's lifecycle in
//! `flotilla_model::lifecycle`; this module ties them to the cluster state:
//! indexes, store writes, resources released and events published.

use flotilla_model::agent::TaskStateChange;
use flotilla_model::arn::{self, name_from_ref, Scope};
use flotilla_model::ecs;
use flotilla_model::lifecycle::{ContainerStatus, TaskStatus};

use super::events::Event;
use super::placement;
use super::resources::demand;
use super::state::{ClusterState, Families, Tx};
use crate::error::{ApiError, ApiResult};

/// Everything RunTask, StartTask and the service scheduler share to create tasks.
pub struct NewTasks<'a> {
    pub definition: &'a ecs::TaskDefinition,
    pub overrides: Option<ecs::TaskOverride>,
    pub group: String,
    pub started_by: Option<String>,
    pub tags: Vec<ecs::Tag>,
    pub launch_type: ecs::LaunchType,
    pub enable_execute_command: bool,
}

/// A new task record on `instance_id`, in PENDING, wanting RUNNING.
pub fn new_task(
    scope: &Scope,
    now: f64,
    cluster: &ClusterState,
    instance_id: &str,
    spec: &NewTasks<'_>,
) -> (String, ecs::Task) {
    let id = arn::new_id();
    let cluster_name = cluster.name();
    let task_arn = scope.task_arn(cluster_name, &id);
    let instance = cluster.instances.get(instance_id);
    let attr = |name: &str| {
        instance
            .and_then(|i| i.attributes.as_ref())
            .and_then(|a| a.iter().find(|a| a.name.as_deref() == Some(name)))
            .and_then(|a| a.value.clone())
    };
    let def = spec.definition;
    let demand = demand(def, spec.overrides.as_ref());
    let containers = def
        .container_definitions
        .iter()
        .flatten()
        .map(|c| ecs::Container {
            container_arn: Some(scope.container_arn(cluster_name, &id, &arn::new_id())),
            task_arn: Some(task_arn.clone()),
            name: c.name.clone(),
            image: c.image.clone(),
            last_status: Some(ContainerStatus::Pending),
            network_interfaces: Some(Vec::new()),
            cpu: Some(c.cpu.unwrap_or(0).to_string()),
            memory: c.memory.map(|m| m.to_string()),
            memory_reservation: c.memory_reservation.map(|m| m.to_string()),
            health_status: c.health_check.as_ref().map(|_| ecs::HealthStatus::Unknown),
            ..Default::default()
        })
        .collect();
    let mut overrides = spec.overrides.clone().unwrap_or_default();
    overrides.container_overrides.get_or_insert_with(Vec::new);
    overrides
        .inference_accelerator_overrides
        .get_or_insert_with(Vec::new);
    let task = ecs::Task {
        task_arn: Some(task_arn),
        cluster_arn: cluster.cluster.cluster_arn.clone(),
        task_definition_arn: def.task_definition_arn.clone(),
        container_instance_arn: instance.and_then(|i| i.container_instance_arn.clone()),
        availability_zone: attr("ecs.availability-zone"),
        overrides: Some(overrides),
        last_status: Some(TaskStatus::Pending),
        desired_status: Some(ecs::DesiredStatus::Running),
        cpu: Some(def.cpu.clone().unwrap_or_else(|| demand.cpu.to_string())),
        memory: Some(
            def.memory
                .clone()
                .unwrap_or_else(|| demand.memory.to_string()),
        ),
        containers: Some(containers),
        created_at: Some(now),
        group: Some(spec.group.clone()),
        started_by: spec.started_by.clone(),
        launch_type: Some(spec.launch_type),
        version: Some(1),
        tags: Some(spec.tags.clone()),
        attributes: Some(vec![ecs::Attribute {
            name: Some("ecs.cpu-architecture".into()),
            value: Some(attr("ecs.cpu-architecture").unwrap_or_else(|| "x86_64".into())),
            ..Default::default()
        }]),
        health_status: Some(ecs::HealthStatus::Unknown),
        enable_execute_command: Some(spec.enable_execute_command),
        attachments: Some(Vec::new()),
        ..Default::default()
    };
    (id, task)
}

/// Stores new tasks (their resources were reserved when they were placed).
pub fn insert_tasks(c: &mut ClusterState, tx: &mut Tx<'_>, tasks: Vec<(String, ecs::Task)>) {
    let cluster = c.name().to_string();
    for (id, task) in tasks {
        tx.put_task(&cluster, &id, &task);
        c.insert_task(id, task);
    }
}

/// Asks a task to stop (see [`ecs::Task::request_stop`]), storing it and
/// telling subscribers. A task never handed to an agent is STOPPED at once
/// and gives its resources back. False if a stop was already requested or
/// there is no such task.
pub fn request_stop(
    families: &Families,
    c: &mut ClusterState,
    tx: &mut Tx<'_>,
    id: &str,
    now: f64,
    code: ecs::TaskStopCode,
    reason: String,
) -> bool {
    let cluster = c.name().to_string();
    let Some(task) = c.tasks.get_mut(id) else {
        return false;
    };
    if !task.request_stop(now, code, reason) {
        return false;
    }
    tx.put_task(&cluster, id, &*task);
    tx.emit(|| Event::TaskStopRequested {
        task: tx_task_ref(&cluster, id),
    });
    if task.is_stopped() {
        let task = task.clone();
        placement::release(families, c, &task);
        tx.emit(|| Event::TaskStopped {
            task: tx_task_ref(&cluster, id),
        });
    }
    true
}

/// Marks a task STOPPED without its agent (the host is gone), storing it,
/// releasing its resources and telling subscribers.
pub fn force_stopped(
    families: &Families,
    c: &mut ClusterState,
    tx: &mut Tx<'_>,
    id: &str,
    now: f64,
    reason: String,
) {
    let cluster = c.name().to_string();
    let Some(task) = c.tasks.get_mut(id) else {
        return;
    };
    if task.is_stopped() {
        return;
    }
    // A task that never ran failed to start; one that ran was taken away.
    let code = if task.started_at.is_some() {
        ecs::TaskStopCode::TerminationNotice
    } else {
        ecs::TaskStopCode::TaskFailedToStart
    };
    task.force_stopped(now, code, reason, "Host lost");
    tx.put_task(&cluster, id, &*task);
    let task = task.clone();
    placement::release(families, c, &task);
    tx.emit(|| Event::TaskStopped {
        task: tx_task_ref(&cluster, id),
    });
}

/// A task's place in the events: its cluster and id (the scope is the
/// transaction's, filled in when the events are published).
fn tx_task_ref(cluster: &str, id: &str) -> super::events::TaskRef {
    super::events::TaskRef {
        cluster: cluster.to_string(),
        id: id.to_string(),
    }
}

/// Applies an agent's report of a task's state, checked against the task's
/// lifecycle: reports never move a task backwards, and a STOPPED task stays
/// stopped. Returns whether anything changed.
pub fn apply_task_change(
    families: &Families,
    c: &mut ClusterState,
    tx: &mut Tx<'_>,
    now: f64,
    report: &TaskStateChange,
) -> ApiResult<bool> {
    let req = &report.submit;
    let reference = req.task.as_deref().unwrap_or_default();
    let cluster_name = c.name().to_string();
    let id = name_from_ref(reference, "task")
        .filter(|id| c.tasks.contains_key(id))
        .ok_or_else(|| ApiError::invalid("The referenced task was not found."))?
        .to_string();
    let reported = match req.status.as_deref() {
        Some(s) => Some(
            TaskStatus::parse(s)
                .ok_or_else(|| ApiError::invalid(format!("status '{s}' is not a task status.")))?,
        ),
        None => None,
    };
    let Some(task) = c.tasks.get_mut(&id) else {
        return Ok(false);
    };
    // Whether anything changed, field by field: cloning the whole task to
    // compare cost more than the rest of a report at a million tasks.
    let mut changed = false;
    let before = task.status();
    let health_before = task.health_status;
    if let Some(reported) = reported {
        let next = before.advance(reported);
        if next != before {
            changed = true;
            task.last_status = Some(next);
            match next {
                TaskStatus::Running => {
                    task.started_at.get_or_insert(now);
                    task.connectivity = Some(ecs::Connectivity::Connected);
                    task.connectivity_at.get_or_insert(now);
                }
                TaskStatus::Stopped => {
                    task.stopped_at = Some(now);
                    task.execution_stopped_at = Some(req.execution_stopped_at.unwrap_or(now));
                    if !task.stop_requested() {
                        // The task stopped on its own: an essential container
                        // exited, or it never got going.
                        let fallback = if task.started_at.is_some() {
                            ecs::TaskStopCode::EssentialContainerExited
                        } else {
                            ecs::TaskStopCode::TaskFailedToStart
                        };
                        task.desired_status = Some(ecs::DesiredStatus::Stopped);
                        task.stop_code = Some(report.stop_code.unwrap_or(fallback));
                        task.stopped_reason = Some(
                            req.reason
                                .clone()
                                .unwrap_or_else(|| "Essential container in task exited".into()),
                        );
                        task.stopping_at.get_or_insert(now);
                    }
                }
                _ => {}
            }
        }
    }
    if req.pull_started_at.is_some() {
        changed |= assign(&mut task.pull_started_at, req.pull_started_at);
    }
    if req.pull_stopped_at.is_some() {
        changed |= assign(&mut task.pull_stopped_at, req.pull_stopped_at);
    }
    for change in req.containers.iter().flatten() {
        changed |= apply_container_change(task, change);
    }
    for (name, health) in &report.container_health {
        if let Some(ct) = task
            .containers
            .iter_mut()
            .flatten()
            .find(|x| x.name.as_deref() == Some(name))
        {
            changed |= assign(&mut ct.health_status, Some(*health));
        }
    }
    if let Some(h) = report.health_status {
        changed |= assign(&mut task.health_status, Some(h));
    }
    if !changed {
        return Ok(false);
    }
    task.bump_version();
    let after = task.status();
    let health = task.health_status;
    if before != TaskStatus::Stopped && after == TaskStatus::Stopped {
        // It leaves the instance's desired set: tell the agent, and give its
        // resources back.
        tx.put_task(&cluster_name, &id, &*task);
        let task = task.clone();
        placement::release(families, c, &task);
        tx.emit(|| Event::TaskStopped {
            task: tx_task_ref(&cluster_name, &id),
        });
    } else {
        // Only what the agent reports changed (a stop above is stored whole).
        tx.put_task_progress(&cluster_name, &id, &*task);
        if before < TaskStatus::Running && after == TaskStatus::Running {
            tx.emit(|| Event::TaskRunning {
                task: tx_task_ref(&cluster_name, &id),
            });
        }
    }
    if health != health_before {
        if let Some(health) = health {
            tx.emit(|| Event::TaskHealth {
                task: tx_task_ref(&cluster_name, &id),
                health,
            });
        }
    }
    Ok(true)
}

/// Sets `slot` to `value`; true if that changed it.
fn assign<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        return false;
    }
    *slot = value;
    true
}

/// Applies one container's reported change; true if it changed anything.
fn apply_container_change(task: &mut ecs::Task, change: &ecs::ContainerStateChange) -> bool {
    let Some(container) = task
        .containers
        .iter_mut()
        .flatten()
        .find(|c| c.name.is_some() && c.name == change.container_name)
    else {
        return false;
    };
    let mut changed = false;
    // An unknown status is ignored, as a status older than the one known is.
    if let Some(reported) = change.status.as_deref().and_then(ContainerStatus::parse) {
        let next = container
            .last_status
            .unwrap_or(ContainerStatus::Pending)
            .advance(reported);
        changed |= assign(&mut container.last_status, Some(next));
    }
    if change.exit_code.is_some() {
        changed |= assign(&mut container.exit_code, change.exit_code);
    }
    if change.reason.is_some() {
        changed |= assign(&mut container.reason, change.reason.clone());
    }
    if change.network_bindings.is_some() {
        changed |= assign(
            &mut container.network_bindings,
            change.network_bindings.clone(),
        );
    }
    if change.runtime_id.is_some() {
        changed |= assign(&mut container.runtime_id, change.runtime_id.clone());
    }
    if change.image_digest.is_some() {
        changed |= assign(&mut container.image_digest, change.image_digest.clone());
    }
    changed
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flotilla_model::arn::Scope;
    use flotilla_model::lifecycle::{ClusterStatus, InstanceStatus};
    use flotilla_store::memory::MemoryStore;

    use super::*;
    use crate::core::events::{InstanceRef, Published, TaskRef};
    use crate::core::instances::put_instance;
    use crate::core::state::{Account, Key};
    use crate::core::State;

    const CLUSTER: &str = "default";
    const TASK: &str = "0123456789abcdef0123456789abcdef";

    fn report(status: &str, health: Option<ecs::HealthStatus>) -> TaskStateChange {
        TaskStateChange {
            submit: ecs::SubmitTaskStateChangeRequest {
                task: Some(TASK.into()),
                status: Some(status.into()),
                ..Default::default()
            },
            health_status: health,
            ..Default::default()
        }
    }

    async fn apply(state: &State, scope: &Scope, change: TaskStateChange) {
        state
            .write(scope, |acct, tx| {
                let Account {
                    clusters, families, ..
                } = acct;
                apply_task_change(
                    families,
                    clusters.get_mut(CLUSTER).unwrap(),
                    tx,
                    1.0,
                    &change,
                )
                .map(|_| ())
            })
            .await
            .unwrap();
    }

    /// The core tells subscribers what happened to tasks and instances, once
    /// it is durable, in order; and builds no events while nobody listens.
    #[tokio::test]
    async fn lifecycle_events_are_published_after_each_commit() {
        let state = State::open(Arc::new(MemoryStore::new())).unwrap();
        let scope = Scope::new("111111111111", "us-east-1");
        let instance_arn = scope.container_instance_arn(CLUSTER, "i1");
        // Set up before subscribing: nothing is recorded for it.
        state
            .write(&scope, |acct, tx| {
                let c = acct.clusters.entry(CLUSTER.into()).or_default();
                c.cluster = ecs::Cluster {
                    cluster_name: Some(CLUSTER.into()),
                    status: Some(ClusterStatus::Active),
                    ..Default::default()
                };
                tx.put(Key::Cluster(CLUSTER), &c.cluster);
                let instance = ecs::ContainerInstance {
                    container_instance_arn: Some(instance_arn.clone()),
                    status: Some(InstanceStatus::Active),
                    ..Default::default()
                };
                put_instance(acct, tx, CLUSTER, "i1", instance);
                let task = ecs::Task {
                    task_arn: Some(scope.task_arn(CLUSTER, TASK)),
                    container_instance_arn: Some(instance_arn.clone()),
                    last_status: Some(TaskStatus::Pending),
                    desired_status: Some(ecs::DesiredStatus::Running),
                    ..Default::default()
                };
                insert_tasks(
                    acct.clusters.get_mut(CLUSTER).unwrap(),
                    tx,
                    vec![(TASK.into(), task)],
                );
                Ok(())
            })
            .await
            .unwrap();
        let mut events = state.subscribe_events();
        apply(
            &state,
            &scope,
            report("RUNNING", Some(ecs::HealthStatus::Healthy)),
        )
        .await;
        state
            .write(&scope, |acct, tx| {
                let Account {
                    clusters, families, ..
                } = acct;
                let c = clusters.get_mut(CLUSTER).unwrap();
                assert!(request_stop(
                    families,
                    c,
                    tx,
                    TASK,
                    2.0,
                    ecs::TaskStopCode::UserInitiated,
                    "by hand".into()
                ));
                let mut i = c.instances["i1"].clone();
                i.status = Some(InstanceStatus::Draining);
                put_instance(acct, tx, CLUSTER, "i1", i);
                Ok(())
            })
            .await
            .unwrap();
        apply(&state, &scope, report("STOPPED", None)).await;
        // A report that changes nothing publishes nothing.
        apply(&state, &scope, report("STOPPED", None)).await;

        let task = TaskRef {
            cluster: CLUSTER.into(),
            id: TASK.into(),
        };
        let instance = InstanceRef {
            cluster: CLUSTER.into(),
            id: "i1".into(),
        };
        let mut got: Vec<Event> = Vec::new();
        while let Ok(published) = events.try_recv() {
            let Published {
                scope: s, events, ..
            } = &*published;
            assert_eq!(s, &scope);
            got.extend(events.iter().cloned());
        }
        assert_eq!(
            got,
            vec![
                Event::TaskRunning { task: task.clone() },
                Event::TaskHealth {
                    task: task.clone(),
                    health: ecs::HealthStatus::Healthy
                },
                Event::TaskStopRequested { task: task.clone() },
                Event::InstanceDraining { instance },
                Event::TaskStopped { task },
            ]
        );
    }
}
