//! CreateTaskSet, DescribeTaskSets, UpdateTaskSet, DeleteTaskSet and
//! UpdateServicePrimaryTaskSet: task sets of services with the EXTERNAL
//! deployment controller (the rules are in `crate::core::task_sets`; the
//! task sets controller runs their tasks).

use flotilla_model::ecs;
use flotilla_model::lifecycle::{ServiceStatus, TaskSetStatus};
use flotilla_scheduler::Launch;

use super::{active_cluster, active_cluster_mut, failure, validate_tags, Ctx};
use crate::core::lb::ecs::check_load_balancers;
use crate::core::placement::{self, PlacementRequest};
use crate::core::services::push_event;
use crate::core::state::{Account, Key, State};
use crate::core::task_definitions::resolve_active;
use crate::core::task_sets::{self as ts, MAX_TASK_SETS};
use crate::error::{ApiError, ApiResult};

/// The service a task-set call names: ACTIVE (or, for `allow_draining`,
/// not yet INACTIVE) and EXTERNAL. Returns the cluster and service names.
fn external_service(
    acct: &Account,
    ctx: &Ctx,
    cluster: Option<&str>,
    service: Option<&str>,
    allow_draining: bool,
) -> ApiResult<(String, String)> {
    let reference = service.unwrap_or_default();
    let name = ctx
        .scope
        .name_from_ref(reference, "service")
        .ok_or_else(|| ApiError::invalid(format!("Invalid service identifier: {reference}")))?;
    let c = active_cluster(acct, &ctx.scope, cluster)?;
    let svc = c
        .services
        .get(name)
        .filter(|s| s.lifecycle() != ServiceStatus::Inactive)
        .ok_or_else(ApiError::service_not_found)?;
    let ok = match svc.lifecycle() {
        ServiceStatus::Active => true,
        ServiceStatus::Draining => allow_draining,
        ServiceStatus::Inactive => false,
    };
    if !ok {
        return Err(ApiError::service_not_active());
    }
    if !ts::is_external(svc) {
        return Err(ts::not_external());
    }
    Ok((c.name().to_string(), name.to_string()))
}

/// A task set as the API shows it: tags only when asked for.
fn shown(t: &ecs::TaskSet, with_tags: bool) -> ecs::TaskSet {
    let mut t = t.clone();
    if !with_tags {
        t.tags = None;
    }
    t
}

pub async fn create_task_set(
    state: &State,
    ctx: &Ctx,
    req: ecs::CreateTaskSetRequest,
) -> ApiResult<ecs::CreateTaskSetResponse> {
    let scale = ts::check_scale(req.scale.as_ref())?;
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    if req.launch_type == Some(ecs::LaunchType::Fargate) {
        return Err(ApiError::invalid(
            "launchType FARGATE is not supported: Flotilla runs tasks on the container instances registered in the cluster. Use EC2 or EXTERNAL.",
        ));
    }
    if req
        .capacity_provider_strategy
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::invalid(
            "capacityProviderStrategy is not supported: Flotilla has no capacity providers; give a launchType (EC2 or EXTERNAL) or none.",
        ));
    }
    if let Some(id) = &req.external_id {
        if id.len() > 255 {
            return Err(ApiError::invalid(
                "externalId must be at most 255 characters long.",
            ));
        }
    }
    let td_ref = req
        .task_definition
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::invalid("taskDefinition is required."))?;
    state
        .write(&ctx.scope, |acct, tx| {
            let (cluster, name) = external_service(
                acct,
                ctx,
                req.cluster.as_deref(),
                req.service.as_deref(),
                false,
            )?;
            let td = resolve_active(&acct.families, &ctx.scope, &td_ref)?;
            let load_balancers = req.load_balancers.clone().unwrap_or_default();
            if load_balancers.len() > 1 {
                return Err(ApiError::invalid(
                    "loadBalancers can have at most 1 entry for a task set.",
                ));
            }
            check_load_balancers(&acct.lb, &td.definition, &load_balancers)?;
            let td_arn = td.definition.task_definition_arn.clone().unwrap_or_default();
            let c = active_cluster(acct, &ctx.scope, Some(&cluster))?;
            let svc = &c.services[&name];
            // Refused now if the service's placement could never place this
            // task definition's tasks, as CreateService refuses it.
            let group = format!("service:{name}");
            placement::task_request(&PlacementRequest {
                definition: &td.definition,
                overrides: None,
                group: &group,
                constraints: svc.placement_constraints.as_deref().unwrap_or_default(),
                strategies: svc.placement_strategy.as_deref().unwrap_or_default(),
                launch: Launch::Service,
            })?;
            let service_arn = svc.service_arn.clone().unwrap_or_default();
            let id = ts::new_task_set_id(&service_arn, req.client_token.as_deref());
            let launch_type = Some(req.launch_type.unwrap_or(ecs::LaunchType::Ec2));
            if let Some(existing) = svc
                .task_sets
                .iter()
                .flatten()
                .find(|t| t.id.as_deref() == Some(id.as_str()))
            {
                // The same clientToken again: the same request gets the
                // task set it made; another request is refused.
                let same = existing.task_definition.as_deref() == Some(td_arn.as_str())
                    && existing.external_id == req.external_id
                    && existing.scale.as_ref() == Some(&scale)
                    && existing.load_balancers.clone().unwrap_or_default() == load_balancers
                    && existing.launch_type == launch_type;
                if !same {
                    return Err(ApiError::invalid(
                        "clientToken was already used for a different CreateTaskSet request on this service.",
                    ));
                }
                return Ok(ecs::CreateTaskSetResponse {
                    task_set: Some(existing.clone()),
                });
            }
            let count = svc.task_sets.as_ref().map_or(0, Vec::len);
            if count >= MAX_TASK_SETS {
                return Err(ApiError::invalid(format!(
                    "{count} task sets exist on the service. Unable to create a new task set since this exceeds the maximum limit of {MAX_TASK_SETS}."
                )));
            }
            let computed = ts::computed_desired_count(svc.desired_count.unwrap_or(0), Some(&scale));
            let task_set = ecs::TaskSet {
                id: Some(id.clone()),
                task_set_arn: Some(ctx.scope.arn(format!("task-set/{cluster}/{name}/{id}"))),
                service_arn: Some(service_arn),
                cluster_arn: c.cluster.cluster_arn.clone(),
                external_id: req.external_id.clone(),
                status: Some(TaskSetStatus::Active),
                task_definition: Some(td_arn),
                computed_desired_count: Some(computed),
                pending_count: Some(0),
                running_count: Some(0),
                created_at: Some(ctx.now),
                updated_at: Some(ctx.now),
                launch_type,
                network_configuration: req.network_configuration.clone(),
                load_balancers: Some(load_balancers),
                service_registries: Some(req.service_registries.clone().unwrap_or_default()),
                scale: Some(scale),
                stability_status: Some(if computed == 0 {
                    ecs::StabilityStatus::SteadyState
                } else {
                    ecs::StabilityStatus::Stabilizing
                }),
                stability_status_at: Some(ctx.now),
                tags: Some(tags),
                ..Default::default()
            };
            let c = active_cluster_mut(acct, &ctx.scope, Some(&cluster))?;
            let Some(svc) = c.services.get_mut(&name) else {
                return Err(ApiError::service_not_found());
            };
            svc.task_sets
                .get_or_insert_with(Vec::new)
                .push(task_set.clone());
            push_event(
                svc,
                ctx.now,
                format!("(service {name}) created task set (taskSet {id})."),
            );
            tx.put(Key::Service(&cluster, &name), &*svc);
            Ok(ecs::CreateTaskSetResponse {
                task_set: Some(task_set),
            })
        })
        .await
}

pub async fn describe_task_sets(
    state: &State,
    ctx: &Ctx,
    req: ecs::DescribeTaskSetsRequest,
) -> ApiResult<ecs::DescribeTaskSetsResponse> {
    let with_tags = req
        .include
        .unwrap_or_default()
        .contains(&ecs::TaskSetField::Tags);
    state.read(&ctx.scope, |acct| {
        let (cluster, name) = external_service(
            acct,
            ctx,
            req.cluster.as_deref(),
            req.service.as_deref(),
            true,
        )?;
        let svc = &acct.clusters[&cluster].services[&name];
        let (mut task_sets, mut failures) = (Vec::new(), Vec::new());
        match &req.task_sets {
            None => task_sets.extend(svc.task_sets.iter().flatten().map(|t| shown(t, with_tags))),
            Some(refs) => {
                for r in refs {
                    match ts::find(svc, r) {
                        Ok(t) => task_sets.push(shown(t, with_tags)),
                        Err(_) => failures.push(failure(r.clone(), "MISSING")),
                    }
                }
            }
        }
        Ok(ecs::DescribeTaskSetsResponse {
            task_sets: Some(task_sets),
            failures: Some(failures),
        })
    })
}

pub async fn update_task_set(
    state: &State,
    ctx: &Ctx,
    req: ecs::UpdateTaskSetRequest,
) -> ApiResult<ecs::UpdateTaskSetResponse> {
    if req.scale.is_none() {
        return Err(ApiError::invalid("scale is required."));
    }
    let scale = ts::check_scale(req.scale.as_ref())?;
    let reference = req.task_set.clone().unwrap_or_default();
    state
        .write(&ctx.scope, |acct, tx| {
            let (cluster, name) = external_service(
                acct,
                ctx,
                req.cluster.as_deref(),
                req.service.as_deref(),
                false,
            )?;
            let c = active_cluster_mut(acct, &ctx.scope, Some(&cluster))?;
            let Some(svc) = c.services.get_mut(&name) else {
                return Err(ApiError::service_not_found());
            };
            let t = ts::find(svc, &reference)?;
            if ts::status(t) == TaskSetStatus::Draining {
                return Err(ApiError::invalid(format!(
                    "The task set {reference} is being deleted (DRAINING) and cannot be scaled."
                )));
            }
            let t = ts::find_mut(svc, &reference)?;
            t.scale = Some(scale);
            t.updated_at = Some(ctx.now);
            ts::rescale(svc, ctx.now);
            tx.put(Key::Service(&cluster, &name), &*svc);
            let t = ts::find(svc, &reference)?;
            Ok(ecs::UpdateTaskSetResponse {
                task_set: Some(shown(t, false)),
            })
        })
        .await
}

pub async fn delete_task_set(
    state: &State,
    ctx: &Ctx,
    req: ecs::DeleteTaskSetRequest,
) -> ApiResult<ecs::DeleteTaskSetResponse> {
    let reference = req.task_set.clone().unwrap_or_default();
    let force = req.force.unwrap_or(false);
    state
        .write(&ctx.scope, |acct, tx| {
            let (cluster, name) = external_service(
                acct,
                ctx,
                req.cluster.as_deref(),
                req.service.as_deref(),
                true,
            )?;
            let c = active_cluster_mut(acct, &ctx.scope, Some(&cluster))?;
            let Some(svc) = c.services.get_mut(&name) else {
                return Err(ApiError::service_not_found());
            };
            let t = ts::find(svc, &reference)?;
            let status = ts::status(t);
            if status == TaskSetStatus::Draining {
                // Deleting twice: the same answer.
                return Ok(ecs::DeleteTaskSetResponse {
                    task_set: Some(shown(t, false)),
                });
            }
            if !force {
                if status == TaskSetStatus::Primary {
                    return Err(ApiError::invalid(format!(
                        "The task set {reference} is the service's PRIMARY task set: make another one primary first (UpdateServicePrimaryTaskSet), or delete it with force."
                    )));
                }
                let scale = t.scale.as_ref().and_then(|s| s.value).unwrap_or(100.0);
                if scale > 0.0 {
                    return Err(ApiError::invalid(format!(
                        "The task set {reference} cannot be deleted while it is scaled above 0 (scale {scale} PERCENT): scale it to 0 first (UpdateTaskSet), or delete it with force."
                    )));
                }
            }
            let id = t.id.clone().unwrap_or_default();
            let t = ts::find_mut(svc, &reference)?;
            t.status = Some(TaskSetStatus::Draining);
            t.updated_at = Some(ctx.now);
            ts::rescale(svc, ctx.now);
            push_event(
                svc,
                ctx.now,
                format!("(service {name}) is deleting task set (taskSet {id})."),
            );
            tx.put(Key::Service(&cluster, &name), &*svc);
            let t = ts::find(svc, &reference)?;
            Ok(ecs::DeleteTaskSetResponse {
                task_set: Some(shown(t, false)),
            })
        })
        .await
}

pub async fn update_service_primary_task_set(
    state: &State,
    ctx: &Ctx,
    req: ecs::UpdateServicePrimaryTaskSetRequest,
) -> ApiResult<ecs::UpdateServicePrimaryTaskSetResponse> {
    let reference = req.primary_task_set.clone().unwrap_or_default();
    state
        .write(&ctx.scope, |acct, tx| {
            let (cluster, name) = external_service(
                acct,
                ctx,
                req.cluster.as_deref(),
                req.service.as_deref(),
                false,
            )?;
            let c = active_cluster_mut(acct, &ctx.scope, Some(&cluster))?;
            let Some(svc) = c.services.get_mut(&name) else {
                return Err(ApiError::service_not_found());
            };
            let t = ts::find(svc, &reference)?;
            if ts::status(t) == TaskSetStatus::Draining {
                return Err(ApiError::invalid(format!(
                    "The task set {reference} is being deleted (DRAINING) and cannot become the primary task set."
                )));
            }
            let id = t.id.clone().unwrap_or_default();
            let was_primary = ts::status(t) == TaskSetStatus::Primary;
            ts::set_primary(svc, &id, ctx.now);
            if !was_primary {
                push_event(
                    svc,
                    ctx.now,
                    format!("(service {name}) updated the primary task set to (taskSet {id})."),
                );
                tx.put(Key::Service(&cluster, &name), &*svc);
            }
            let t = ts::find(svc, &id)?;
            Ok(ecs::UpdateServicePrimaryTaskSetResponse {
                task_set: Some(shown(t, false)),
            })
        })
        .await
}
