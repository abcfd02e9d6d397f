//! CreateService, UpdateService, DescribeServices, ListServices, DeleteService:
//! the API surface, validation and persistence. The service controller (in
//! `crate::controllers`) acts on what is stored here: it starts and stops
//! tasks, moves deployments along and writes the service's events.

use flotilla_model::ecs;
use flotilla_scheduler::Launch;

use flotilla_model::lifecycle::ServiceStatus;

use super::{
    active_cluster, active_cluster_mut, check_name, decode_token, failure, page, page_size,
    validate_tags, Ctx,
};
use crate::core::deployments;
use crate::core::placement::{self, check_limits, PlacementRequest};
use crate::core::services::{new_deployment, set_desired_count, start_deployment};
use crate::core::state::{Key, ServiceMeta, State};
use crate::core::task_definitions::{resolve, resolve_active};
use crate::core::task_sets;
use crate::error::{ApiError, ApiResult};

fn check_deployment_configuration(
    dc: &ecs::DeploymentConfiguration,
    daemon: bool,
) -> ApiResult<()> {
    crate::core::deployments::check_configuration(dc)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if let Some(min) = dc.minimum_healthy_percent {
        if !(0..=100).contains(&min) {
            return Err(ApiError::invalid(format!(
                "deploymentConfiguration.minimumHealthyPercent must be between 0 and 100; got {min}."
            )));
        }
    }
    match dc.maximum_percent {
        Some(max) if daemon && max != 100 => {
            Err(ApiError::invalid("deploymentConfiguration.maximumPercent must be 100 for a DAEMON service."))
        }
        Some(max) if !(1..=2000).contains(&max) => {
            Err(ApiError::invalid(format!("deploymentConfiguration.maximumPercent must be between 1 and 2000; got {max}.")))
        }
        Some(max) if dc.minimum_healthy_percent.is_some_and(|min| max < min) => Err(ApiError::invalid(
            "deploymentConfiguration.maximumPercent must not be lower than minimumHealthyPercent.",
        )),
        _ => Ok(()),
    }
}

fn default_deployment_configuration(
    given: Option<ecs::DeploymentConfiguration>,
    daemon: bool,
) -> ecs::DeploymentConfiguration {
    let mut dc = given.unwrap_or_default();
    dc.maximum_percent
        .get_or_insert(if daemon { 100 } else { 200 });
    dc.minimum_healthy_percent
        .get_or_insert(if daemon { 0 } else { 100 });
    dc.deployment_circuit_breaker
        .get_or_insert(ecs::DeploymentCircuitBreaker {
            enable: Some(false),
            rollback: Some(false),
        });
    dc
}

/// UpdateService's deploymentConfiguration over the service's: the fields
/// given replace those stored.
fn merge_deployment_configuration(
    current: Option<ecs::DeploymentConfiguration>,
    dc: &ecs::DeploymentConfiguration,
) -> ecs::DeploymentConfiguration {
    let mut merged = current.unwrap_or_default();
    let dc = dc.clone();
    macro_rules! take {
        ($($f:ident),*) => { $(if dc.$f.is_some() { merged.$f = dc.$f; })* };
    }
    take!(
        maximum_percent,
        minimum_healthy_percent,
        deployment_circuit_breaker,
        alarms,
        bake_time_in_minutes,
        strategy,
        canary_configuration,
        linear_configuration,
        lifecycle_hooks
    );
    merged
}

fn check_desired(n: i32) -> ApiResult<()> {
    if n < 0 {
        return Err(ApiError::invalid(format!(
            "desiredCount must not be negative; got {n}."
        )));
    }
    Ok(())
}

fn check_grace(g: Option<i32>) -> ApiResult<()> {
    match g {
        Some(g) if !(0..=2_147_483_647).contains(&g) => Err(ApiError::invalid(
            "healthCheckGracePeriodSeconds must be between 0 and 2147483647.",
        )),
        _ => Ok(()),
    }
}

/// Builds, once, the scheduler request the service controller will build for
/// this service's tasks, so that a service which could never place a task is
/// refused now, as RunTask refuses it, rather than stored. The errors name the
/// field and position (`placementConstraints[0]: …`), and the 10-constraint
/// limit counts the task definition's constraints too.
fn check_placement(
    definition: &ecs::TaskDefinition,
    service: &str,
    constraints: &[ecs::PlacementConstraint],
    strategies: &[ecs::PlacementStrategy],
) -> ApiResult<()> {
    let group = format!("service:{service}");
    placement::task_request(&PlacementRequest {
        definition,
        overrides: None,
        group: &group,
        constraints,
        strategies,
        launch: Launch::Service,
    })?;
    Ok(())
}

pub async fn create_service(
    state: &State,
    ctx: &Ctx,
    req: ecs::CreateServiceRequest,
) -> ApiResult<ecs::CreateServiceResponse> {
    let name = req.service_name.clone().unwrap_or_default();
    check_name("Service name", &name)?;
    let daemon = req.scheduling_strategy == Some(ecs::SchedulingStrategy::Daemon);
    let desired = match (daemon, req.desired_count) {
        (true, Some(_)) => {
            return Err(ApiError::invalid(
                "desiredCount cannot be specified for a DAEMON service.",
            ))
        }
        (true, None) => 0,
        (false, Some(n)) => n,
        (false, None) => {
            return Err(ApiError::invalid(
                "desiredCount is required for a REPLICA service.",
            ))
        }
    };
    check_desired(desired)?;
    if daemon
        && req
            .placement_strategy
            .as_ref()
            .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::invalid(
            "placementStrategy cannot be specified for a DAEMON service.",
        ));
    }
    check_limits(
        req.placement_constraints.as_deref(),
        req.placement_strategy.as_deref(),
    )?;
    check_grace(req.health_check_grace_period_seconds)?;
    if let Some(dc) = &req.deployment_configuration {
        check_deployment_configuration(dc, daemon)?;
    }
    let controller = req
        .deployment_controller
        .as_ref()
        .and_then(|c| c.r#type)
        .unwrap_or(ecs::DeploymentControllerType::Ecs);
    let external = controller == ecs::DeploymentControllerType::External;
    if controller == ecs::DeploymentControllerType::CodeDeploy {
        return Err(ApiError::invalid(
            "The CODE_DEPLOY deployment controller is not supported: there is no CodeDeploy here. Use ECS, or EXTERNAL with task sets (CreateTaskSet).",
        ));
    }
    if external {
        task_sets::check_create_service(&req)?;
    }
    if req.launch_type == Some(ecs::LaunchType::Fargate) {
        return Err(ApiError::invalid(
            "launchType FARGATE is not supported: Flotilla runs tasks on the container instances registered in the cluster. Use EC2 or EXTERNAL.",
        ));
    }
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    let td_ref = match (&req.task_definition, external) {
        (Some(td), _) => Some(td.clone()),
        // An EXTERNAL service's task definitions are its task sets'.
        (None, true) => None,
        (None, false) => return Err(ApiError::invalid("taskDefinition is required.")),
    };
    state
        .write(&ctx.scope, |acct, tx| {
            let (td_arn, definition) = match &td_ref {
                Some(td_ref) => {
                    let td = resolve_active(&acct.families, &ctx.scope, td_ref)?;
                    if let Some(lbs) = &req.load_balancers {
                        crate::core::lb::ecs::check_load_balancers(&acct.lb, &td.definition, lbs)?;
                    }
                    deployments::check_traffic_shifting(
                        &acct.lb,
                        &default_deployment_configuration(
                            req.deployment_configuration.clone(),
                            daemon,
                        ),
                        req.load_balancers.as_deref().unwrap_or_default(),
                        daemon,
                    )
                    .map_err(|e| ApiError::invalid(e.to_string()))?;
                    check_placement(
                        &td.definition,
                        &name,
                        req.placement_constraints.as_deref().unwrap_or_default(),
                        req.placement_strategy.as_deref().unwrap_or_default(),
                    )?;
                    (
                        td.definition.task_definition_arn.clone(),
                        Some(td.definition.clone()),
                    )
                }
                None => (None, None),
            };
            let c = active_cluster(acct, &ctx.scope, req.cluster.as_deref())?;
            if c.services
                .get(&name)
                .is_some_and(|s| s.lifecycle() != ServiceStatus::Inactive)
            {
                return Err(ApiError::invalid("Creation of service was not idempotent."));
            }
            let cluster_name = c.name().to_string();
            let launch_type = if external {
                None
            } else {
                Some(req.launch_type.unwrap_or(ecs::LaunchType::Ec2))
            };
            let service = ecs::Service {
                service_arn: Some(ctx.scope.service_arn(&cluster_name, &name)),
                service_name: Some(name.clone()),
                cluster_arn: c.cluster.cluster_arn.clone(),
                load_balancers: Some(req.load_balancers.clone().unwrap_or_default()),
                service_registries: Some(req.service_registries.clone().unwrap_or_default()),
                status: Some(ServiceStatus::Active),
                desired_count: Some(desired),
                running_count: Some(0),
                pending_count: Some(0),
                launch_type,
                task_definition: td_arn.clone(),
                deployment_configuration: Some(default_deployment_configuration(
                    req.deployment_configuration.clone(),
                    daemon,
                )),
                // An EXTERNAL service's deployments are its task sets.
                deployments: Some(match &td_arn {
                    Some(td_arn) => vec![new_deployment(ctx.now, td_arn, desired, launch_type)],
                    None => Vec::new(),
                }),
                task_sets: external.then(Vec::new),
                role_arn: req.role.clone(),
                events: Some(Vec::new()),
                created_at: Some(ctx.now),
                placement_constraints: Some(req.placement_constraints.clone().unwrap_or_default()),
                placement_strategy: Some(req.placement_strategy.clone().unwrap_or_default()),
                network_configuration: req.network_configuration.clone(),
                health_check_grace_period_seconds: req.health_check_grace_period_seconds,
                scheduling_strategy: Some(
                    req.scheduling_strategy
                        .unwrap_or(ecs::SchedulingStrategy::Replica),
                ),
                deployment_controller: Some(ecs::DeploymentController {
                    r#type: Some(controller),
                }),
                tags: Some(tags.clone()),
                created_by: Some(ctx.principal_arn.clone()),
                enable_ecs_managed_tags: Some(req.enable_ecs_managed_tags.unwrap_or(false)),
                propagate_tags: Some(req.propagate_tags.unwrap_or(ecs::PropagateTags::None)),
                enable_execute_command: Some(req.enable_execute_command.unwrap_or(false)),
                availability_zone_rebalancing: req.availability_zone_rebalancing,
                ..Default::default()
            };
            tx.put(Key::Service(&cluster_name, &name), &service);
            let c = active_cluster_mut(acct, &ctx.scope, Some(&cluster_name))?;
            c.services.insert(name.clone(), service.clone());
            // A new service of an old name starts with no history: its
            // first service deployment is this one.
            let mut meta = ServiceMeta::default();
            if let Some(first) = service.deployments.iter().flatten().next() {
                deployments::begin(
                    &mut meta.history,
                    &ctx.scope,
                    &cluster_name,
                    &service,
                    first,
                    definition.as_ref(),
                    ctx.now,
                );
            }
            tx.put(Key::ServiceMeta(&cluster_name, &name), &meta);
            c.service_meta.insert(name.clone(), meta);
            Ok(ecs::CreateServiceResponse {
                service: Some(service),
            })
        })
        .await
}

pub async fn update_service(
    state: &State,
    ctx: &Ctx,
    req: ecs::UpdateServiceRequest,
) -> ApiResult<ecs::UpdateServiceResponse> {
    let reference = req.service.clone().unwrap_or_default();
    let name = ctx
        .scope
        .name_from_ref(&reference, "service")
        .ok_or_else(|| ApiError::invalid(format!("Invalid service identifier: {reference}")))?;
    if let Some(n) = req.desired_count {
        check_desired(n)?;
    }
    check_limits(
        req.placement_constraints.as_deref(),
        req.placement_strategy.as_deref(),
    )?;
    check_grace(req.health_check_grace_period_seconds)?;
    state
        .write(&ctx.scope, |acct, tx| {
            let new_td = match &req.task_definition {
                Some(r) => Some(resolve_active(&acct.families, &ctx.scope, r)?),
                None => None,
            };
            let c = active_cluster(acct, &ctx.scope, req.cluster.as_deref())?;
            let svc = c.services.get(name).ok_or_else(ApiError::service_not_found)?;
            if svc.lifecycle() != ServiceStatus::Active {
                return Err(ApiError::service_not_active());
            }
            let external = task_sets::is_external(svc);
            let controller = |c: Option<&ecs::DeploymentController>| {
                c.and_then(|c| c.r#type).unwrap_or(ecs::DeploymentControllerType::Ecs)
            };
            if req.deployment_controller.is_some()
                && controller(req.deployment_controller.as_ref())
                    != controller(svc.deployment_controller.as_ref())
            {
                return Err(ApiError::invalid(
                    "deploymentController cannot be changed: create a new service with the other deployment controller.",
                ));
            }
            if external {
                task_sets::check_update_service(&req)?;
            }
            if let Some(lbs) = &req.load_balancers {
                let td = match new_td {
                    Some(td) => td,
                    None => resolve(&acct.families, &ctx.scope, svc.task_definition.as_deref().unwrap_or_default())?,
                };
                crate::core::lb::ecs::check_load_balancers(&acct.lb, &td.definition, lbs)?;
            }
            let daemon = svc.scheduling_strategy == Some(ecs::SchedulingStrategy::Daemon);
            if daemon && req.desired_count.is_some() {
                return Err(ApiError::invalid("desiredCount cannot be specified for a DAEMON service."));
            }
            if daemon && req.placement_strategy.as_ref().is_some_and(|s| !s.is_empty()) {
                return Err(ApiError::invalid("placementStrategy cannot be specified for a DAEMON service."));
            }
            if let Some(dc) = &req.deployment_configuration {
                check_deployment_configuration(dc, daemon)?;
            }
            // Placement as it will be after the update. Checked only when the
            // update changes it, so that a service stored before this check
            // existed can still be scaled down and deleted.
            if !external && (new_td.is_some() || req.placement_constraints.is_some() || req.placement_strategy.is_some()) {
                let td = match new_td {
                    Some(td) => td,
                    None => {
                        let current = svc.task_definition.as_deref().unwrap_or_default();
                        resolve(&acct.families, &ctx.scope, current).map_err(|_| {
                            ApiError::client(format!(
                                "The service's task definition {current} no longer exists: name a taskDefinition to change its placement."
                            ))
                        })?
                    }
                };
                let constraints = req.placement_constraints.as_ref().or(svc.placement_constraints.as_ref());
                // A daemon's tasks are placed one per instance, with no strategy.
                let strategies = if daemon { None } else { req.placement_strategy.as_ref().or(svc.placement_strategy.as_ref()) };
                check_placement(
                    &td.definition,
                    name,
                    constraints.map(Vec::as_slice).unwrap_or_default(),
                    strategies.map(Vec::as_slice).unwrap_or_default(),
                )?;
            }
            // Strategy, load balancers and rules as they will be after the update.
            let dc = match &req.deployment_configuration {
                Some(dc) => merge_deployment_configuration(svc.deployment_configuration.clone(), dc),
                None => svc.deployment_configuration.clone().unwrap_or_default(),
            };
            let entries = req.load_balancers.as_ref().or(svc.load_balancers.as_ref());
            deployments::check_traffic_shifting(&acct.lb, &dc, entries.map(Vec::as_slice).unwrap_or_default(), daemon)
                .map_err(|e| ApiError::invalid(e.to_string()))?;
            let shifting = c.service_meta.get(name).and_then(|m| deployments::green_deployment(&m.history)).is_some();
            if shifting && (new_td.is_some() || req.force_new_deployment == Some(true) || req.load_balancers.is_some()) {
                return Err(ApiError::invalid(
                    "A BLUE_GREEN, CANARY or LINEAR deployment of this service is in progress: wait for it to end, or stop it with StopServiceDeployment, before starting another.",
                ));
            }
            let new_td = new_td.and_then(|td| td.definition.task_definition_arn.clone());
            // Checks done; from here on the service changes.
            let c = active_cluster_mut(acct, &ctx.scope, req.cluster.as_deref())?;
            let cluster_name = c.name().to_string();
            let svc = c.services.get_mut(name).ok_or_else(ApiError::service_not_found)?;
            let mut redeploy = req.force_new_deployment.unwrap_or(false);
            if let Some(arn) = new_td {
                redeploy |= svc.task_definition.as_ref() != Some(&arn);
                svc.task_definition = Some(arn);
            }
            if let Some(n) = req.desired_count {
                svc.desired_count = Some(n);
            }
            if let Some(dc) = &req.deployment_configuration {
                svc.deployment_configuration = Some(merge_deployment_configuration(svc.deployment_configuration.clone(), dc));
            }
            if let Some(pc) = &req.placement_constraints {
                svc.placement_constraints = Some(pc.clone());
                redeploy = true;
            }
            if let Some(ps) = &req.placement_strategy {
                svc.placement_strategy = Some(ps.clone());
                redeploy = true;
            }
            if let Some(g) = req.health_check_grace_period_seconds {
                svc.health_check_grace_period_seconds = Some(g);
            }
            if let Some(nc) = &req.network_configuration {
                svc.network_configuration = Some(nc.clone());
                redeploy = true;
            }
            if let Some(lbs) = &req.load_balancers {
                svc.load_balancers = Some(lbs.clone());
                redeploy = true;
            }
            if let Some(p) = req.propagate_tags {
                svc.propagate_tags = Some(p);
            }
            if let Some(e) = req.enable_execute_command {
                svc.enable_execute_command = Some(e);
            }
            if let Some(e) = req.enable_ecs_managed_tags {
                svc.enable_ecs_managed_tags = Some(e);
            }
            let desired = svc.desired_count.unwrap_or(0);
            if external {
                // The task sets follow the desired count; their controller
                // starts and stops the tasks.
                svc.desired_count = Some(desired);
                task_sets::rescale(svc, ctx.now);
            } else if redeploy {
                let td = svc.task_definition.clone().unwrap_or_default();
                let deployment = new_deployment(ctx.now, &td, desired, svc.launch_type);
                start_deployment(svc, ctx.now, deployment.clone());
                let svc = svc.clone();
                let definition = resolve(&acct.families, &ctx.scope, &td).ok().map(|t| t.definition.clone());
                let c = active_cluster_mut(acct, &ctx.scope, Some(&cluster_name))?;
                let meta = c.service_meta.entry(name.to_string()).or_default();
                deployments::begin(&mut meta.history, &ctx.scope, &cluster_name, &svc, &deployment, definition.as_ref(), ctx.now);
                tx.put(Key::ServiceMeta(&cluster_name, name), &*meta);
            } else {
                // The same change Application Auto Scaling makes.
                set_desired_count(svc, desired, ctx.now);
            }
            let c = active_cluster_mut(acct, &ctx.scope, Some(&cluster_name))?;
            let svc = c.services.get_mut(name).ok_or_else(ApiError::service_not_found)?;
            tx.put(Key::Service(&cluster_name, name), &*svc);
            Ok(ecs::UpdateServiceResponse { service: Some(svc.clone()) })
        })
        .await
}

pub async fn describe_services(
    state: &State,
    ctx: &Ctx,
    req: ecs::DescribeServicesRequest,
) -> ApiResult<ecs::DescribeServicesResponse> {
    let refs = req.services.unwrap_or_default();
    if refs.len() > 10 {
        return Err(ApiError::invalid("services can have at most 10 items."));
    }
    let with_tags = req
        .include
        .unwrap_or_default()
        .contains(&ecs::ServiceField::Tags);
    state.read(&ctx.scope, |acct| {
        let c = active_cluster(acct, &ctx.scope, req.cluster.as_deref())?;
        let mut services = Vec::new();
        let mut failures = Vec::new();
        for r in &refs {
            match ctx
                .scope
                .name_from_ref(r, "service")
                .and_then(|n| c.services.get(n))
            {
                Some(s) => {
                    let mut s = s.clone();
                    if !with_tags {
                        s.tags = None;
                        for t in s.task_sets.iter_mut().flatten() {
                            t.tags = None;
                        }
                    }
                    services.push(s);
                }
                None => {
                    // A bare name comes back in the short ARN form, as ECS shows it.
                    let arn = if r.starts_with("arn:") {
                        r.clone()
                    } else {
                        ctx.scope.arn(format!("service/{r}"))
                    };
                    failures.push(failure(arn, "MISSING"));
                }
            }
        }
        Ok(ecs::DescribeServicesResponse {
            services: Some(services),
            failures: Some(failures),
        })
    })
}

pub async fn list_services(
    state: &State,
    ctx: &Ctx,
    req: ecs::ListServicesRequest,
) -> ApiResult<ecs::ListServicesResponse> {
    let size = page_size(req.max_results, 10)?;
    let after = decode_token(req.next_token.as_deref())?;
    state.read(&ctx.scope, |acct| {
        let c = active_cluster(acct, &ctx.scope, req.cluster.as_deref())?;
        let items = c
            .services
            .iter()
            .filter(|(n, _)| after.as_ref().is_none_or(|a| *n > a))
            .filter(|(_, s)| s.lifecycle() != ServiceStatus::Inactive)
            .filter(|(_, s)| req.launch_type.is_none() || s.launch_type == req.launch_type)
            .filter(|(_, s)| {
                req.scheduling_strategy.is_none()
                    || s.scheduling_strategy == req.scheduling_strategy
            })
            .map(|(n, s)| (n, s.service_arn.clone().unwrap_or_default()));
        let (arns, next) = page(items, size);
        Ok(ecs::ListServicesResponse {
            service_arns: Some(arns),
            next_token: next,
        })
    })
}

pub async fn delete_service(
    state: &State,
    ctx: &Ctx,
    req: ecs::DeleteServiceRequest,
) -> ApiResult<ecs::DeleteServiceResponse> {
    let reference = req.service.clone().unwrap_or_default();
    let name = ctx
        .scope
        .name_from_ref(&reference, "service")
        .ok_or_else(|| ApiError::invalid(format!("Invalid service identifier: {reference}")))?;
    state
        .write(&ctx.scope, |acct, tx| {
            let c = active_cluster_mut(acct, &ctx.scope, req.cluster.as_deref())?;
            let cluster_name = c.name().to_string();
            let svc = c
                .services
                .get_mut(name)
                .filter(|s| s.lifecycle() != ServiceStatus::Inactive)
                .ok_or_else(ApiError::service_not_found)?;
            let replica = svc.scheduling_strategy != Some(ecs::SchedulingStrategy::Daemon);
            if replica && svc.desired_count.unwrap_or(0) > 0 && !req.force.unwrap_or(false) {
                return Err(ApiError::invalid(
                    "The service cannot be stopped while it is scaled above 0.",
                ));
            }
            // DRAINING: the service controller stops its tasks, then marks it INACTIVE.
            svc.status = Some(ServiceStatus::Draining);
            svc.desired_count = Some(0);
            tx.put(Key::Service(&cluster_name, name), &*svc);
            let response = ecs::DeleteServiceResponse {
                service: Some(svc.clone()),
            };
            // Its deployments under way end with it.
            let svc = svc.clone();
            if let Some(meta) = c.service_meta.get_mut(name) {
                if deployments::end_with_service(&mut meta.history, &svc, ctx.now) {
                    tx.put(Key::ServiceMeta(&cluster_name, name), &*meta);
                }
            }
            Ok(response)
        })
        .await
}
