//! RunTask, StartTask, StopTask, DescribeTasks, ListTasks, and the agent's
//! SubmitTaskStateChange / SubmitContainerStateChange.

use flotilla_model::agent::TaskStateChange;
use flotilla_model::arn::{self, name_from_ref};
use flotilla_model::ecs;

use std::collections::{BTreeMap, BTreeSet};

use flotilla_scheduler::{check_instance, Launch, Unplaceable};

use super::task_definitions::resolve_active;
use super::{active_cluster, active_cluster_mut, decode_token, failure, page, page_size, validate_tags, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::placement::{self, PlacementRequest};
use crate::state::{family_of, Account, ClusterState, Family, State, Tx};

/// Task statuses in lifecycle order: a reported status never moves a task backwards.
const LIFECYCLE: &[&str] = &["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"];

pub fn lifecycle_rank(status: &str) -> Option<usize> {
    LIFECYCLE.iter().position(|s| *s == status)
}

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
pub fn new_task(ctx: &Ctx, cluster: &ClusterState, instance_id: &str, spec: &NewTasks<'_>) -> (String, ecs::Task) {
    let id = arn::new_id();
    let cluster_name = cluster.name();
    let task_arn = ctx.scope.task_arn(cluster_name, &id);
    let instance = cluster.instances.get(instance_id);
    let attr = |name: &str| {
        instance
            .and_then(|i| i.attributes.as_ref())
            .and_then(|a| a.iter().find(|a| a.name.as_deref() == Some(name)))
            .and_then(|a| a.value.clone())
    };
    let def = spec.definition;
    let demand = super::resources::demand(def, spec.overrides.as_ref());
    let containers = def
        .container_definitions
        .iter()
        .flatten()
        .map(|c| ecs::Container {
            container_arn: Some(ctx.scope.container_arn(cluster_name, &id, &arn::new_id())),
            task_arn: Some(task_arn.clone()),
            name: c.name.clone(),
            image: c.image.clone(),
            last_status: Some("PENDING".into()),
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
    overrides.inference_accelerator_overrides.get_or_insert_with(Vec::new);
    let task = ecs::Task {
        task_arn: Some(task_arn),
        cluster_arn: cluster.cluster.cluster_arn.clone(),
        task_definition_arn: def.task_definition_arn.clone(),
        container_instance_arn: instance.and_then(|i| i.container_instance_arn.clone()),
        availability_zone: attr("ecs.availability-zone"),
        overrides: Some(overrides),
        last_status: Some("PENDING".into()),
        desired_status: Some("RUNNING".into()),
        cpu: Some(def.cpu.clone().unwrap_or_else(|| demand.cpu.to_string())),
        memory: Some(def.memory.clone().unwrap_or_else(|| demand.memory.to_string())),
        containers: Some(containers),
        created_at: Some(ctx.now),
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

/// RunTask/StartTask's task group: as given, else `family:FAMILY`.
fn standalone_group(def: &ecs::TaskDefinition, given: Option<&str>) -> String {
    given.map(str::to_string).unwrap_or_else(|| format!("family:{}", def.family.as_deref().unwrap_or_default()))
}

fn check_launch_type(lt: Option<ecs::LaunchType>) -> ApiResult<ecs::LaunchType> {
    match lt.unwrap_or(ecs::LaunchType::Ec2) {
        ecs::LaunchType::Fargate => Err(ApiError::invalid(
            "launchType FARGATE is not supported: Flotilla runs tasks on the container instances registered in the cluster. Use EC2 or EXTERNAL.",
        )),
        other => Ok(other),
    }
}

/// Checks task overrides against the definition they apply to.
fn check_overrides(def: &ecs::TaskDefinition, overrides: Option<&ecs::TaskOverride>) -> ApiResult<()> {
    for o in overrides.and_then(|o| o.container_overrides.as_ref()).into_iter().flatten() {
        let name = o.name.as_deref().unwrap_or_default();
        if !def.container_definitions.iter().flatten().any(|c| c.name.as_deref() == Some(name)) {
            return Err(ApiError::invalid(format!(
                "overrides.containerOverrides names container '{name}', which is not in the task definition."
            )));
        }
    }
    Ok(())
}

fn check_started_by(started_by: Option<&str>) -> ApiResult<()> {
    match started_by {
        Some(s) if s.len() > 128 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '/') => Err(
            ApiError::invalid("startedBy can be up to 128 letters (uppercase and lowercase), numbers, hyphens, underscores and slashes."),
        ),
        _ => Ok(()),
    }
}

fn task_tags(def_tags: &[ecs::Tag], given: Vec<ecs::Tag>, propagate: Option<ecs::PropagateTags>) -> ApiResult<Vec<ecs::Tag>> {
    let mut tags = given;
    if propagate == Some(ecs::PropagateTags::TaskDefinition) {
        for t in def_tags {
            if !tags.iter().any(|x| x.key == t.key) {
                tags.push(t.clone());
            }
        }
    }
    validate_tags(&tags)?;
    Ok(tags)
}

pub async fn run_task(state: &State, ctx: &Ctx, req: ecs::RunTaskRequest) -> ApiResult<ecs::RunTaskResponse> {
    let count = req.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(ApiError::invalid(format!("count must be between 1 and 10; got {count}.")));
    }
    let launch_type = check_launch_type(req.launch_type)?;
    check_started_by(req.started_by.as_deref())?;
    placement::check_limits(req.placement_constraints.as_deref(), req.placement_strategy.as_deref())?;
    state
        .write(&ctx.scope, |acct, tx| {
            let Account { clusters, families, .. } = acct;
            let td = resolve_active(families, ctx, req.task_definition.as_deref().unwrap_or_default())?;
            check_overrides(&td.definition, req.overrides.as_ref())?;
            let tags = task_tags(&td.tags, req.tags.clone().unwrap_or_default(), req.propagate_tags)?;
            let group = standalone_group(&td.definition, req.group.as_deref());
            let request = placement::task_request(&PlacementRequest {
                definition: &td.definition,
                overrides: req.overrides.as_ref(),
                group: &group,
                constraints: req.placement_constraints.as_deref().unwrap_or_default(),
                strategies: req.placement_strategy.as_deref().unwrap_or_default(),
                launch: Launch::Standalone,
            })?;
            let name = super::cluster_name(&ctx.scope, req.cluster.as_deref())?;
            let c = clusters.get_mut(name).filter(|c| c.is_active()).ok_or_else(ApiError::cluster_not_found)?;
            if !c.instances.values().any(super::instances::is_registered) {
                return Err(ApiError::client(Unplaceable::NO_INSTANCES_MESSAGE));
            }
            let spec = NewTasks {
                definition: &td.definition,
                overrides: req.overrides.clone(),
                group,
                started_by: req.started_by.clone(),
                tags,
                launch_type,
                enable_execute_command: req.enable_execute_command.unwrap_or(false),
            };
            let placed = placement::place(c, &request, count as usize);
            let tasks = placed.instance_ids.iter().map(|instance| new_task(ctx, c, instance, &spec)).collect::<Vec<_>>();
            let out = tasks.iter().map(|(_, t)| t.clone()).collect();
            insert_tasks(c, tx, tasks);
            Ok(ecs::RunTaskResponse { tasks: Some(out), failures: Some(placed.failures) })
        })
        .await
}

/// Stores new tasks.
pub fn insert_tasks(c: &mut ClusterState, tx: &mut Tx<'_>, tasks: Vec<(String, ecs::Task)>) {
    let cluster = c.name().to_string();
    for (id, task) in tasks {
        tx.put_task(&cluster, &id, &task);
        c.insert_task(id, task);
    }
}

pub async fn start_task(state: &State, ctx: &Ctx, req: ecs::StartTaskRequest) -> ApiResult<ecs::StartTaskResponse> {
    let refs = req.container_instances.clone().unwrap_or_default();
    if refs.is_empty() || refs.len() > 10 {
        return Err(ApiError::invalid("containerInstances must name between 1 and 10 container instances."));
    }
    check_started_by(req.started_by.as_deref())?;
    state
        .write(&ctx.scope, |acct, tx| {
            let Account { clusters, families, .. } = acct;
            let td = resolve_active(families, ctx, req.task_definition.as_deref().unwrap_or_default())?;
            check_overrides(&td.definition, req.overrides.as_ref())?;
            let tags = task_tags(&td.tags, req.tags.clone().unwrap_or_default(), req.propagate_tags)?;
            let group = standalone_group(&td.definition, req.group.as_deref());
            let request = placement::task_request(&PlacementRequest {
                definition: &td.definition,
                overrides: req.overrides.as_ref(),
                group: &group,
                constraints: &[],
                strategies: &[],
                launch: Launch::Standalone,
            })?;
            let name = super::cluster_name(&ctx.scope, req.cluster.as_deref())?;
            let c = clusters.get_mut(name).filter(|c| c.is_active()).ok_or_else(ApiError::cluster_not_found)?;
            let spec = NewTasks {
                definition: &td.definition,
                overrides: req.overrides.clone(),
                group,
                started_by: req.started_by.clone(),
                tags,
                launch_type: ecs::LaunchType::Ec2,
                enable_execute_command: req.enable_execute_command.unwrap_or(false),
            };
            // StartTask names the instances: check each one, then reserve.
            let mut tasks = Vec::new();
            let mut failures = Vec::new();
            for r in &refs {
                let found = ctx.scope.name_from_ref(r, "container-instance")
                    .and_then(|id| c.instances.get(id).map(|i| (id.to_string(), i.container_instance_arn.clone().unwrap_or_default())));
                let Some((id, arn)) = found else {
                    failures.push(failure(r.clone(), "MISSING"));
                    continue;
                };
                match check_instance(&c.view, &request, &arn) {
                    Some(None) if c.view.reserve(&arn, &request.group, &request.demand).is_ok() => {
                        tasks.push(new_task(ctx, c, &id, &spec));
                    }
                    Some(Some(rejection)) => failures.push(failure(arn, rejection.reason())),
                    _ => failures.push(failure(arn, "MISSING")),
                }
            }
            let out = tasks.iter().map(|(_, t)| t.clone()).collect();
            insert_tasks(c, tx, tasks);
            Ok(ecs::StartTaskResponse { tasks: Some(out), failures: Some(failures) })
        })
        .await
}

/// Marks a task to be stopped; the agent stops its containers and reports STOPPED.
pub fn request_stop(task: &mut ecs::Task, now: f64, code: ecs::TaskStopCode, reason: String) -> bool {
    if task.desired_status.as_deref() == Some("STOPPED") {
        return false;
    }
    task.desired_status = Some("STOPPED".into());
    task.stop_code = Some(code);
    task.stopped_reason = Some(reason);
    task.stopping_at = Some(now);
    task.version = Some(task.version.unwrap_or(0) + 1);
    // A task that never reached an instance's agent has nothing to stop.
    if task.container_instance_arn.is_none() {
        task.last_status = Some("STOPPED".into());
        task.stopped_at = Some(now);
    }
    true
}

fn task_id(reference: &str) -> Option<&str> {
    name_from_ref(reference, "task")
}

pub async fn stop_task(state: &State, ctx: &Ctx, req: ecs::StopTaskRequest) -> ApiResult<ecs::StopTaskResponse> {
    let reference = req.task.clone().unwrap_or_default();
    let reason = req.reason.clone().unwrap_or_else(|| "Task stopped by user".into());
    if reason.len() > 255 {
        return Err(ApiError::invalid("reason can be at most 255 characters long."));
    }
    state
        .write(&ctx.scope, |acct, tx| {
            let c = active_cluster_mut(acct, &ctx.scope, req.cluster.as_deref())?;
            let cluster_name = c.name().to_string();
            let id = ctx.scope.name_from_ref(&reference, "task")
                .filter(|id| c.tasks.contains_key(*id))
                .ok_or_else(|| ApiError::invalid("The referenced task was not found."))?
                .to_string();
            let Some(task) = c.tasks.get_mut(&id) else { return Err(ApiError::server("task vanished")) };
            if request_stop(task, ctx.now, ecs::TaskStopCode::UserInitiated, reason.clone()) {
                tx.put_task(&cluster_name, &id, &*task);
            }
            Ok(ecs::StopTaskResponse { task: Some(task.clone()) })
        })
        .await
}

pub async fn describe_tasks(state: &State, ctx: &Ctx, req: ecs::DescribeTasksRequest) -> ApiResult<ecs::DescribeTasksResponse> {
    let refs = req.tasks.unwrap_or_default();
    if refs.len() > 100 {
        return Err(ApiError::invalid("tasks can have at most 100 items."));
    }
    let with_tags = req.include.unwrap_or_default().contains(&ecs::TaskField::Tags);
    state.read(&ctx.scope, |acct| {
        let c = active_cluster(acct, &ctx.scope, req.cluster.as_deref())?;
        let mut tasks = Vec::with_capacity(refs.len());
        let mut failures = Vec::new();
        for r in &refs {
            match ctx.scope.name_from_ref(r, "task").and_then(|id| c.tasks.get(id)) {
                Some(t) => {
                    let mut t = t.clone();
                    if !with_tags {
                        t.tags = None;
                    }
                    tasks.push(t)
                }
                None => {
                    let arn = if r.starts_with("arn:") { r.clone() } else { ctx.scope.task_arn(c.name(), r) };
                    failures.push(failure(arn, "MISSING"));
                }
            }
        }
        Ok(ecs::DescribeTasksResponse { tasks: Some(tasks), failures: Some(failures) })
    })
}

pub async fn list_tasks(state: &State, ctx: &Ctx, req: ecs::ListTasksRequest) -> ApiResult<ecs::ListTasksResponse> {
    let size = page_size(req.max_results, 100)?;
    let after = decode_token(req.next_token.as_deref())?;
    let desired = req.desired_status.unwrap_or(ecs::DesiredStatus::Running);
    if req.service_name.is_some() && req.family.is_some() {
        return Err(ApiError::invalid("family and serviceName cannot both be given."));
    }
    state.read(&ctx.scope, |acct| {
        let c = active_cluster(acct, &ctx.scope, req.cluster.as_deref())?;
        let instance_arn = match req.container_instance.as_deref() {
            None => None,
            Some(r) => Some(
                ctx.scope.name_from_ref(r, "container-instance")
                    .and_then(|id| c.instances.get(id))
                    .and_then(|i| i.container_instance_arn.clone())
                    .ok_or_else(|| ApiError::invalid(format!("Container instance {r} is not in this cluster.")))?,
            ),
        };
        let group = req.service_name.as_ref().map(|s| format!("service:{}", ctx.scope.name_from_ref(s, "service").unwrap_or(s)));
        let start = after.clone().map(std::ops::Bound::Excluded).unwrap_or(std::ops::Bound::Unbounded);
        // The narrowest index the filters allow; the other filters apply on top.
        let scan: TaskIter<'_> = if let Some(by) = &req.started_by {
            ids_after(c, c.task_ids_started_by(by), start)
        } else if let Some(family) = &req.family {
            ids_after(c, c.task_ids_of_family(family), start)
        } else if let Some(g) = &group {
            sorted_after(c.tasks_in_group(g).collect(), after.as_deref())
        } else if let Some(arn) = &instance_arn {
            sorted_after(c.tasks_on(arn).collect(), after.as_deref())
        } else {
            Box::new(c.tasks.range_from(start))
        };
        let items = scan
            .filter(|(_, t)| t.desired_status.as_deref() == Some(desired.as_str()))
            .filter(|(_, t)| instance_arn.is_none() || t.container_instance_arn == instance_arn)
            .filter(|(_, t)| req.started_by.is_none() || t.started_by == req.started_by)
            .filter(|(_, t)| req.launch_type.is_none() || t.launch_type == req.launch_type)
            .filter(|(_, t)| group.is_none() || t.group == group)
            .filter(|(_, t)| req.family.is_none() || family_of(t) == req.family.as_deref())
            .map(|(id, t)| (id, t.task_arn.clone().unwrap_or_default()));
        let (arns, next) = page(items, size);
        Ok(ecs::ListTasksResponse { task_arns: Some(arns), next_token: next })
    })
}

type TaskIter<'a> = Box<dyn Iterator<Item = (&'a String, &'a ecs::Task)> + 'a>;

/// The tasks whose ids are in `set` (an id-ordered index), from `start` on.
fn ids_after<'a>(c: &'a ClusterState, set: Option<&'a BTreeSet<String>>, start: std::ops::Bound<String>) -> TaskIter<'a> {
    match set {
        Some(set) => Box::new(
            set.range::<String, _>((start, std::ops::Bound::Unbounded)).filter_map(|id| Some((id, c.tasks.get(id)?))),
        ),
        None => Box::new(std::iter::empty()),
    }
}

/// `tasks` after the id `after`, in id order.
fn sorted_after<'a>(tasks: Vec<(&'a String, &'a ecs::Task)>, after: Option<&str>) -> TaskIter<'a> {
    let mut tasks: Vec<_> = tasks.into_iter().filter(|(id, _)| after.is_none_or(|a| id.as_str() > a)).collect();
    tasks.sort_unstable_by(|a, b| a.0.cmp(b.0));
    Box::new(tasks.into_iter())
}

/// Applies an agent's report of a task's state, checked against the task's
/// lifecycle: reports never move a task backwards, and a STOPPED task stays
/// stopped. Returns whether anything changed.
pub fn apply_task_change(
    families: &BTreeMap<String, Family>,
    c: &mut ClusterState,
    tx: &mut Tx<'_>,
    now: f64,
    report: &TaskStateChange,
) -> ApiResult<bool> {
    let req = &report.submit;
    let reference = req.task.as_deref().unwrap_or_default();
    let cluster_name = c.name().to_string();
    let id = task_id(reference).filter(|id| c.tasks.contains_key(*id)).ok_or_else(|| ApiError::invalid("The referenced task was not found."))?;
    let id = id.to_string();
    let Some(task) = c.tasks.get_mut(&id) else { return Ok(false) };
    // Whether anything changed, field by field: cloning the whole task to
    // compare cost more than the rest of a report at a million tasks.
    let mut changed = false;
    let was_stopped = task.last_status.as_deref() == Some("STOPPED");
    if let Some(status) = req.status.as_deref() {
        let new = lifecycle_rank(status).ok_or_else(|| ApiError::invalid(format!("status '{status}' is not a task status.")))?;
        let old = task.last_status.as_deref().and_then(lifecycle_rank).unwrap_or(0);
        if new > old {
            changed = true;
            task.last_status = Some(status.to_string());
            match status {
                "RUNNING" => {
                    task.started_at.get_or_insert(now);
                    task.connectivity = Some(ecs::Connectivity::Connected);
                    task.connectivity_at.get_or_insert(now);
                }
                "STOPPED" => {
                    task.stopped_at = Some(now);
                    task.execution_stopped_at = Some(req.execution_stopped_at.unwrap_or(now));
                    if task.desired_status.as_deref() != Some("STOPPED") {
                        // The task stopped on its own: an essential container
                        // exited, or it never got going.
                        let fallback = if task.started_at.is_some() {
                            ecs::TaskStopCode::EssentialContainerExited
                        } else {
                            ecs::TaskStopCode::TaskFailedToStart
                        };
                        task.desired_status = Some("STOPPED".into());
                        task.stop_code = Some(report.stop_code.unwrap_or(fallback));
                        task.stopped_reason = Some(req.reason.clone().unwrap_or_else(|| "Essential container in task exited".into()));
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
        if let Some(ct) = task.containers.iter_mut().flatten().find(|x| x.name.as_deref() == Some(name)) {
            changed |= assign(&mut ct.health_status, Some(*health));
        }
    }
    if let Some(h) = report.health_status {
        changed |= assign(&mut task.health_status, Some(h));
    }
    if !changed {
        return Ok(false);
    }
    task.version = Some(task.version.unwrap_or(0) + 1);
    let stopped_now = !was_stopped && task.last_status.as_deref() == Some("STOPPED");
    if stopped_now {
        // It leaves the instance's desired set: tell the agent, and give its
        // resources back.
        tx.put_task(&cluster_name, &id, &*task);
        let task = task.clone();
        placement::release(families, c, &task);
    } else {
        // Only what the agent reports changed (a stop above is stored whole).
        tx.put_task_progress(&cluster_name, &id, &*task);
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
    let Some(container) = task.containers.iter_mut().flatten().find(|c| c.name.is_some() && c.name == change.container_name) else {
        return false;
    };
    let mut changed = false;
    if let Some(status) = change.status.as_deref() {
        let rank = |s: Option<&str>| match s {
            Some("PENDING") | None => 0,
            Some("RUNNING") => 1,
            _ => 2,
        };
        if rank(Some(status)) >= rank(container.last_status.as_deref()) {
            changed |= assign(&mut container.last_status, Some(status.to_string()));
        }
    }
    if change.exit_code.is_some() {
        changed |= assign(&mut container.exit_code, change.exit_code);
    }
    if change.reason.is_some() {
        changed |= assign(&mut container.reason, change.reason.clone());
    }
    if change.network_bindings.is_some() {
        changed |= assign(&mut container.network_bindings, change.network_bindings.clone());
    }
    if change.runtime_id.is_some() {
        changed |= assign(&mut container.runtime_id, change.runtime_id.clone());
    }
    if change.image_digest.is_some() {
        changed |= assign(&mut container.image_digest, change.image_digest.clone());
    }
    changed
}

pub async fn submit_task_state_change(
    state: &State,
    ctx: &Ctx,
    req: ecs::SubmitTaskStateChangeRequest,
) -> ApiResult<ecs::SubmitTaskStateChangeResponse> {
    state
        .write(&ctx.scope, |acct, tx| {
            let Account { clusters, families, .. } = acct;
            let name = super::cluster_name(&ctx.scope, req.cluster.as_deref())?;
            let c = clusters.get_mut(name).filter(|c| c.is_active()).ok_or_else(ApiError::cluster_not_found)?;
            apply_task_change(families, c, tx, ctx.now, &TaskStateChange { submit: req.clone(), ..Default::default() })?;
            Ok(ecs::SubmitTaskStateChangeResponse { acknowledgment: Some("ACK".into()) })
        })
        .await
}

pub async fn submit_container_state_change(
    state: &State,
    ctx: &Ctx,
    req: ecs::SubmitContainerStateChangeRequest,
) -> ApiResult<ecs::SubmitContainerStateChangeResponse> {
    let change = ecs::SubmitTaskStateChangeRequest {
        cluster: req.cluster.clone(),
        task: req.task.clone(),
        containers: Some(vec![ecs::ContainerStateChange {
            container_name: req.container_name.clone(),
            exit_code: req.exit_code,
            network_bindings: req.network_bindings.clone(),
            reason: req.reason.clone(),
            runtime_id: req.runtime_id.clone(),
            status: req.status.clone(),
            image_digest: None,
        }]),
        ..Default::default()
    };
    state
        .write(&ctx.scope, |acct, tx| {
            let Account { clusters, families, .. } = acct;
            let name = super::cluster_name(&ctx.scope, req.cluster.as_deref())?;
            let c = clusters.get_mut(name).filter(|c| c.is_active()).ok_or_else(ApiError::cluster_not_found)?;
            apply_task_change(families, c, tx, ctx.now, &TaskStateChange { submit: change.clone(), ..Default::default() })?;
            Ok(ecs::SubmitContainerStateChangeResponse { acknowledgment: Some("ACK".into()) })
        })
        .await
}
