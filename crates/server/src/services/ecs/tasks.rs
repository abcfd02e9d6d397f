//! RunTask, StartTask, StopTask, DescribeTasks, ListTasks, and the agent's
//! SubmitTaskStateChange / SubmitContainerStateChange.

use std::collections::BTreeSet;

use flotilla_model::agent::TaskStateChange;
use flotilla_model::ecs;
use flotilla_scheduler::{check_instance, Launch, Unplaceable};

use super::{active_cluster, decode_token, failure, page, page_size, validate_tags, Ctx};
use crate::core::placement::{self, PlacementRequest};
use crate::core::state::{family_of, Account, ClusterState, State};
use crate::core::task_definitions::resolve_active;
use crate::core::tasks::{apply_task_change, insert_tasks, new_task, request_stop, NewTasks};
use crate::error::{ApiError, ApiResult};

/// RunTask/StartTask's task group: as given, else `family:FAMILY`.
fn standalone_group(def: &ecs::TaskDefinition, given: Option<&str>) -> String {
    given
        .map(str::to_string)
        .unwrap_or_else(|| format!("family:{}", def.family.as_deref().unwrap_or_default()))
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
fn check_overrides(
    def: &ecs::TaskDefinition,
    overrides: Option<&ecs::TaskOverride>,
) -> ApiResult<()> {
    for o in overrides
        .and_then(|o| o.container_overrides.as_ref())
        .into_iter()
        .flatten()
    {
        let name = o.name.as_deref().unwrap_or_default();
        if !def
            .container_definitions
            .iter()
            .flatten()
            .any(|c| c.name.as_deref() == Some(name))
        {
            return Err(ApiError::invalid(format!(
                "overrides.containerOverrides names container '{name}', which is not in the task definition."
            )));
        }
    }
    Ok(())
}

/// `startedBy`: ECS's reference lists letters, digits, hyphens, slashes and
/// underscores, but real ECS takes more (a popular deployment tool sends
/// `ECS Deploy`, with a space); only the length is enforced, as there.
fn check_started_by(started_by: Option<&str>) -> ApiResult<()> {
    match started_by {
        Some(s) if s.chars().count() > 128 => Err(ApiError::invalid(
            "startedBy can be at most 128 characters long.",
        )),
        _ => Ok(()),
    }
}

fn task_tags(
    def_tags: &[ecs::Tag],
    given: Vec<ecs::Tag>,
    propagate: Option<ecs::PropagateTags>,
) -> ApiResult<Vec<ecs::Tag>> {
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

pub async fn run_task(
    state: &State,
    ctx: &Ctx,
    req: ecs::RunTaskRequest,
) -> ApiResult<ecs::RunTaskResponse> {
    let count = req.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(ApiError::invalid(format!(
            "count must be between 1 and 10; got {count}."
        )));
    }
    let launch_type = check_launch_type(req.launch_type)?;
    check_started_by(req.started_by.as_deref())?;
    placement::check_limits(
        req.placement_constraints.as_deref(),
        req.placement_strategy.as_deref(),
    )?;
    state
        .write(&ctx.scope, |acct, tx| {
            let Account {
                clusters, families, ..
            } = acct;
            let td = resolve_active(
                families,
                &ctx.scope,
                req.task_definition.as_deref().unwrap_or_default(),
            )?;
            check_overrides(&td.definition, req.overrides.as_ref())?;
            let tags = task_tags(
                &td.tags,
                req.tags.clone().unwrap_or_default(),
                req.propagate_tags,
            )?;
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
            let c = clusters
                .get_mut(name)
                .filter(|c| c.is_active())
                .ok_or_else(ApiError::cluster_not_found)?;
            if !c
                .instances
                .values()
                .any(ecs::ContainerInstance::is_registered)
            {
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
            let tasks = placed
                .instance_ids
                .iter()
                .map(|instance| new_task(&ctx.scope, ctx.now, c, instance, &spec))
                .collect::<Vec<_>>();
            let out = tasks.iter().map(|(_, t)| t.clone()).collect();
            insert_tasks(c, tx, tasks);
            Ok(ecs::RunTaskResponse {
                tasks: Some(out),
                failures: Some(placed.failures),
            })
        })
        .await
}

pub async fn start_task(
    state: &State,
    ctx: &Ctx,
    req: ecs::StartTaskRequest,
) -> ApiResult<ecs::StartTaskResponse> {
    let refs = req.container_instances.clone().unwrap_or_default();
    if refs.is_empty() || refs.len() > 10 {
        return Err(ApiError::invalid(
            "containerInstances must name between 1 and 10 container instances.",
        ));
    }
    check_started_by(req.started_by.as_deref())?;
    state
        .write(&ctx.scope, |acct, tx| {
            let Account {
                clusters, families, ..
            } = acct;
            let td = resolve_active(
                families,
                &ctx.scope,
                req.task_definition.as_deref().unwrap_or_default(),
            )?;
            check_overrides(&td.definition, req.overrides.as_ref())?;
            let tags = task_tags(
                &td.tags,
                req.tags.clone().unwrap_or_default(),
                req.propagate_tags,
            )?;
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
            let c = clusters
                .get_mut(name)
                .filter(|c| c.is_active())
                .ok_or_else(ApiError::cluster_not_found)?;
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
                let found = ctx
                    .scope
                    .name_from_ref(r, "container-instance")
                    .and_then(|id| {
                        c.instances.get(id).map(|i| {
                            (
                                id.to_string(),
                                i.container_instance_arn.clone().unwrap_or_default(),
                            )
                        })
                    });
                let Some((id, arn)) = found else {
                    failures.push(failure(r.clone(), "MISSING"));
                    continue;
                };
                match check_instance(&c.view, &request, &arn) {
                    Some(None)
                        if c.view
                            .reserve(&arn, &request.group, &request.demand)
                            .is_ok() =>
                    {
                        tasks.push(new_task(&ctx.scope, ctx.now, c, &id, &spec));
                    }
                    Some(Some(rejection)) => failures.push(failure(arn, rejection.reason())),
                    _ => failures.push(failure(arn, "MISSING")),
                }
            }
            let out = tasks.iter().map(|(_, t)| t.clone()).collect();
            insert_tasks(c, tx, tasks);
            Ok(ecs::StartTaskResponse {
                tasks: Some(out),
                failures: Some(failures),
            })
        })
        .await
}

pub async fn stop_task(
    state: &State,
    ctx: &Ctx,
    req: ecs::StopTaskRequest,
) -> ApiResult<ecs::StopTaskResponse> {
    let reference = req.task.clone().unwrap_or_default();
    let reason = req
        .reason
        .clone()
        .unwrap_or_else(|| "Task stopped by user".into());
    if reason.len() > 255 {
        return Err(ApiError::invalid(
            "reason can be at most 255 characters long.",
        ));
    }
    state
        .write(&ctx.scope, |acct, tx| {
            let name = super::cluster_name(&ctx.scope, req.cluster.as_deref())?;
            let Account {
                clusters, families, ..
            } = acct;
            let c = clusters
                .get_mut(name)
                .filter(|c| c.is_active())
                .ok_or_else(ApiError::cluster_not_found)?;
            let id = ctx
                .scope
                .name_from_ref(&reference, "task")
                .filter(|id| c.tasks.contains_key(id))
                .ok_or_else(|| ApiError::invalid("The referenced task was not found."))?
                .to_string();
            request_stop(
                families,
                c,
                tx,
                &id,
                ctx.now,
                ecs::TaskStopCode::UserInitiated,
                reason.clone(),
            );
            Ok(ecs::StopTaskResponse {
                task: c.tasks.get(&id).cloned(),
            })
        })
        .await
}

pub async fn describe_tasks(
    state: &State,
    ctx: &Ctx,
    req: ecs::DescribeTasksRequest,
) -> ApiResult<ecs::DescribeTasksResponse> {
    let refs = req.tasks.unwrap_or_default();
    if refs.is_empty() {
        return Err(ApiError::invalid("Tasks cannot be empty."));
    }
    if refs.len() > 100 {
        return Err(ApiError::invalid("tasks can have at most 100 items."));
    }
    let with_tags = req
        .include
        .unwrap_or_default()
        .contains(&ecs::TaskField::Tags);
    state.read(&ctx.scope, |acct| {
        let c = active_cluster(acct, &ctx.scope, req.cluster.as_deref())?;
        let mut tasks = Vec::with_capacity(refs.len());
        let mut failures = Vec::new();
        for r in &refs {
            match ctx
                .scope
                .name_from_ref(r, "task")
                .and_then(|id| c.tasks.get(id))
            {
                Some(t) => {
                    let mut t = t.clone();
                    if !with_tags {
                        t.tags = None;
                    }
                    tasks.push(t)
                }
                None => {
                    let arn = if r.starts_with("arn:") {
                        r.clone()
                    } else {
                        ctx.scope.task_arn(c.name(), r)
                    };
                    failures.push(failure(arn, "MISSING"));
                }
            }
        }
        Ok(ecs::DescribeTasksResponse {
            tasks: Some(tasks),
            failures: Some(failures),
        })
    })
}

pub async fn list_tasks(
    state: &State,
    ctx: &Ctx,
    req: ecs::ListTasksRequest,
) -> ApiResult<ecs::ListTasksResponse> {
    let size = page_size(req.max_results, 100)?;
    let after = decode_token(req.next_token.as_deref())?;
    let desired = req.desired_status.unwrap_or(ecs::DesiredStatus::Running);
    if req.service_name.is_some() && req.family.is_some() {
        return Err(ApiError::invalid(
            "family and serviceName cannot both be given.",
        ));
    }
    state.read(&ctx.scope, |acct| {
        let c = active_cluster(acct, &ctx.scope, req.cluster.as_deref())?;
        let instance_arn = match req.container_instance.as_deref() {
            None => None,
            Some(r) => Some(
                ctx.scope
                    .name_from_ref(r, "container-instance")
                    .and_then(|id| c.instances.get(id))
                    .and_then(|i| i.container_instance_arn.clone())
                    .ok_or_else(|| {
                        ApiError::invalid(format!("Container instance {r} is not in this cluster."))
                    })?,
            ),
        };
        let group = req.service_name.as_ref().map(|s| {
            format!(
                "service:{}",
                ctx.scope.name_from_ref(s, "service").unwrap_or(s)
            )
        });
        let start = after
            .clone()
            .map(std::ops::Bound::Excluded)
            .unwrap_or(std::ops::Bound::Unbounded);
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
            .filter(|(_, t)| t.desired_status == Some(desired))
            .filter(|(_, t)| instance_arn.is_none() || t.container_instance_arn == instance_arn)
            .filter(|(_, t)| req.started_by.is_none() || t.started_by == req.started_by)
            .filter(|(_, t)| req.launch_type.is_none() || t.launch_type == req.launch_type)
            .filter(|(_, t)| group.is_none() || t.group == group)
            .filter(|(_, t)| req.family.is_none() || family_of(t) == req.family.as_deref())
            .map(|(id, t)| (id, t.task_arn.clone().unwrap_or_default()));
        let (arns, next) = page(items, size);
        Ok(ecs::ListTasksResponse {
            task_arns: Some(arns),
            next_token: next,
        })
    })
}

type TaskIter<'a> = Box<dyn Iterator<Item = (&'a String, &'a ecs::Task)> + 'a>;

/// The tasks whose ids are in `set` (an id-ordered index), from `start` on.
fn ids_after<'a>(
    c: &'a ClusterState,
    set: Option<&'a BTreeSet<String>>,
    start: std::ops::Bound<String>,
) -> TaskIter<'a> {
    match set {
        Some(set) => Box::new(
            set.range::<String, _>((start, std::ops::Bound::Unbounded))
                .filter_map(|id| Some((id, c.tasks.get(id)?))),
        ),
        None => Box::new(std::iter::empty()),
    }
}

/// `tasks` after the id `after`, in id order.
fn sorted_after<'a>(tasks: Vec<(&'a String, &'a ecs::Task)>, after: Option<&str>) -> TaskIter<'a> {
    let mut tasks: Vec<_> = tasks
        .into_iter()
        .filter(|(id, _)| after.is_none_or(|a| id.as_str() > a))
        .collect();
    tasks.sort_unstable_by(|a, b| a.0.cmp(b.0));
    Box::new(tasks.into_iter())
}

pub async fn submit_task_state_change(
    state: &State,
    ctx: &Ctx,
    req: ecs::SubmitTaskStateChangeRequest,
) -> ApiResult<ecs::SubmitTaskStateChangeResponse> {
    state
        .write(&ctx.scope, |acct, tx| {
            let Account {
                clusters, families, ..
            } = acct;
            let name = super::cluster_name(&ctx.scope, req.cluster.as_deref())?;
            let c = clusters
                .get_mut(name)
                .filter(|c| c.is_active())
                .ok_or_else(ApiError::cluster_not_found)?;
            apply_task_change(
                families,
                c,
                tx,
                ctx.now,
                &TaskStateChange {
                    submit: req.clone(),
                    ..Default::default()
                },
            )?;
            Ok(ecs::SubmitTaskStateChangeResponse {
                acknowledgment: Some("ACK".into()),
            })
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
            let Account {
                clusters, families, ..
            } = acct;
            let name = super::cluster_name(&ctx.scope, req.cluster.as_deref())?;
            let c = clusters
                .get_mut(name)
                .filter(|c| c.is_active())
                .ok_or_else(ApiError::cluster_not_found)?;
            apply_task_change(
                families,
                c,
                tx,
                ctx.now,
                &TaskStateChange {
                    submit: change.clone(),
                    ..Default::default()
                },
            )?;
            Ok(ecs::SubmitContainerStateChangeResponse {
                acknowledgment: Some("ACK".into()),
            })
        })
        .await
}
