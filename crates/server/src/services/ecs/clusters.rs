//! CreateCluster, DescribeClusters, ListClusters, UpdateCluster,
//! UpdateClusterSettings, DeleteCluster.

use flotilla_model::ecs;

use super::{
    active_cluster_mut, check_name, cluster_name, decode_token, failure, page, page_size,
    validate_tags, Ctx,
};
use flotilla_model::lifecycle::{ClusterStatus, InstanceStatus, ServiceStatus, TaskStatus};

use crate::core::state::{ClusterState, Key, State};
use crate::error::{ApiError, ApiResult};

fn check_settings(settings: &[ecs::ClusterSetting]) -> ApiResult<()> {
    for s in settings {
        let value = s.value.as_deref().unwrap_or_default();
        if !matches!(value, "enabled" | "disabled" | "enhanced") {
            return Err(ApiError::invalid(format!(
                "Cluster setting {} has an invalid value '{value}': must be enabled, disabled or enhanced.",
                s.name.map(|n| n.as_str()).unwrap_or("containerInsights")
            )));
        }
    }
    Ok(())
}

/// The cluster as Describe/Create show it: stored fields plus counts derived
/// from what it holds; tags, settings and statistics only when asked for.
fn view(c: &ClusterState, include: &[ecs::ClusterField]) -> ecs::Cluster {
    let mut out = c.cluster.clone();
    let active_instances = c
        .instances
        .values()
        .filter(|i| {
            matches!(
                i.lifecycle(),
                InstanceStatus::Active | InstanceStatus::Draining
            )
        })
        .count();
    let running = c
        .tasks
        .values()
        .filter(|t| t.status() == TaskStatus::Running)
        .count();
    let pending = c
        .tasks
        .values()
        .filter(|t| t.status().is_starting())
        .count();
    let services = c
        .services
        .values()
        .filter(|s| s.lifecycle() == ServiceStatus::Active)
        .count();
    out.registered_container_instances_count = Some(active_instances as i32);
    out.running_tasks_count = Some(running as i32);
    out.pending_tasks_count = Some(pending as i32);
    out.active_services_count = Some(services as i32);
    out.capacity_providers.get_or_insert_with(Vec::new);
    out.default_capacity_provider_strategy
        .get_or_insert_with(Vec::new);
    if include.contains(&ecs::ClusterField::Statistics) {
        let stat = |name: &str, v: usize| ecs::KeyValuePair {
            name: Some(name.into()),
            value: Some(v.to_string()),
        };
        let draining = c
            .instances
            .values()
            .filter(|i| i.lifecycle() == InstanceStatus::Draining)
            .count();
        let ec2_services = c
            .services
            .values()
            .filter(|s| {
                s.lifecycle() == ServiceStatus::Active
                    && s.launch_type != Some(ecs::LaunchType::Fargate)
            })
            .count();
        out.statistics = Some(vec![
            stat("runningEC2TasksCount", running),
            stat("runningFargateTasksCount", 0),
            stat("pendingEC2TasksCount", pending),
            stat("pendingFargateTasksCount", 0),
            stat("activeEC2ServiceCount", ec2_services),
            stat("activeFargateServiceCount", services - ec2_services),
            stat("drainingEC2ServiceCount", 0),
            stat("drainingFargateServiceCount", 0),
            stat("drainingContainerInstancesCount", draining),
        ]);
    } else {
        out.statistics = Some(Vec::new());
    }
    if !include.contains(&ecs::ClusterField::Tags) {
        out.tags = None;
    }
    if !include.contains(&ecs::ClusterField::Settings) {
        out.settings = None;
    }
    if !include.contains(&ecs::ClusterField::Configurations) {
        out.configuration = None;
    }
    out
}

const ALL_FIELDS: &[ecs::ClusterField] = &[
    ecs::ClusterField::Tags,
    ecs::ClusterField::Settings,
    ecs::ClusterField::Configurations,
];

pub async fn create_cluster(
    state: &State,
    ctx: &Ctx,
    req: ecs::CreateClusterRequest,
) -> ApiResult<ecs::CreateClusterResponse> {
    let name = req.cluster_name.clone().unwrap_or_else(|| "default".into());
    check_name("Cluster name", &name)?;
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    check_settings(req.settings.as_deref().unwrap_or_default())?;
    state
        .write(&ctx.scope, |acct, tx| {
            if let Some(existing) = acct.clusters.get(&name).filter(|c| c.is_active()) {
                // CreateCluster is idempotent: an ACTIVE cluster of that name is returned as it is.
                return Ok(ecs::CreateClusterResponse {
                    cluster: Some(view(existing, ALL_FIELDS)),
                });
            }
            let settings = req.settings.clone().unwrap_or_else(|| {
                vec![ecs::ClusterSetting {
                    name: Some(ecs::ClusterSettingName::ContainerInsights),
                    value: Some("disabled".into()),
                }]
            });
            let cluster = ecs::Cluster {
                cluster_arn: Some(ctx.scope.cluster_arn(&name)),
                cluster_name: Some(name.clone()),
                status: Some(ClusterStatus::Active),
                settings: Some(settings),
                configuration: req.configuration.clone(),
                capacity_providers: req.capacity_providers.clone(),
                default_capacity_provider_strategy: req.default_capacity_provider_strategy.clone(),
                service_connect_defaults: req.service_connect_defaults.as_ref().map(|d| {
                    ecs::ClusterServiceConnectDefaults {
                        namespace: d.namespace.clone(),
                    }
                }),
                tags: Some(tags.clone()),
                ..Default::default()
            };
            tx.put(Key::Cluster(&name), &cluster);
            // A re-created cluster starts empty: whatever the INACTIVE one held is gone.
            let mut fresh = ClusterState::default();
            fresh.cluster = cluster;
            let out = view(&fresh, ALL_FIELDS);
            acct.clusters.insert(name.clone(), fresh);
            Ok(ecs::CreateClusterResponse { cluster: Some(out) })
        })
        .await
}

pub async fn describe_clusters(
    state: &State,
    ctx: &Ctx,
    req: ecs::DescribeClustersRequest,
) -> ApiResult<ecs::DescribeClustersResponse> {
    let refs = req.clusters.unwrap_or_else(|| vec!["default".into()]);
    if refs.len() > 100 {
        return Err(ApiError::invalid("clusters can have at most 100 items."));
    }
    let include = req.include.unwrap_or_default();
    Ok(state.read(&ctx.scope, |acct| {
        let mut clusters = Vec::new();
        let mut failures = Vec::new();
        for r in &refs {
            let found = cluster_name(&ctx.scope, Some(r))
                .ok()
                .and_then(|n| acct.clusters.get(n));
            match found {
                Some(c) => clusters.push(view(c, &include)),
                None => {
                    let arn = if r.starts_with("arn:") {
                        r.clone()
                    } else {
                        ctx.scope.cluster_arn(r)
                    };
                    failures.push(failure(arn, "MISSING"));
                }
            }
        }
        ecs::DescribeClustersResponse {
            clusters: Some(clusters),
            failures: Some(failures),
        }
    }))
}

pub async fn list_clusters(
    state: &State,
    ctx: &Ctx,
    req: ecs::ListClustersRequest,
) -> ApiResult<ecs::ListClustersResponse> {
    let size = page_size(req.max_results, 100)?;
    let after = decode_token(req.next_token.as_deref())?;
    Ok(state.read(&ctx.scope, |acct| {
        let items = acct
            .clusters
            .iter()
            .filter(|(name, _)| after.as_deref().is_none_or(|a| name.as_str() > a))
            .filter(|(_, c)| c.is_active())
            .map(|(name, c)| (name, c.cluster.cluster_arn.clone().unwrap_or_default()));
        let (arns, next) = page(items, size);
        ecs::ListClustersResponse {
            cluster_arns: Some(arns),
            next_token: next,
        }
    }))
}

pub async fn update_cluster(
    state: &State,
    ctx: &Ctx,
    req: ecs::UpdateClusterRequest,
) -> ApiResult<ecs::UpdateClusterResponse> {
    check_settings(req.settings.as_deref().unwrap_or_default())?;
    state
        .write(&ctx.scope, |acct, tx| {
            let c = active_cluster_mut(acct, &ctx.scope, req.cluster.as_deref())?;
            if let Some(settings) = &req.settings {
                merge_settings(&mut c.cluster, settings);
            }
            if let Some(conf) = &req.configuration {
                c.cluster.configuration = Some(conf.clone());
            }
            if let Some(d) = &req.service_connect_defaults {
                c.cluster.service_connect_defaults = Some(ecs::ClusterServiceConnectDefaults {
                    namespace: d.namespace.clone(),
                });
            }
            tx.put(Key::Cluster(c.name()), &c.cluster);
            Ok(ecs::UpdateClusterResponse {
                cluster: Some(view(c, ALL_FIELDS)),
            })
        })
        .await
}

pub async fn update_cluster_settings(
    state: &State,
    ctx: &Ctx,
    req: ecs::UpdateClusterSettingsRequest,
) -> ApiResult<ecs::UpdateClusterSettingsResponse> {
    let settings = req.settings.unwrap_or_default();
    check_settings(&settings)?;
    state
        .write(&ctx.scope, |acct, tx| {
            let c = active_cluster_mut(acct, &ctx.scope, req.cluster.as_deref())?;
            merge_settings(&mut c.cluster, &settings);
            tx.put(Key::Cluster(c.name()), &c.cluster);
            Ok(ecs::UpdateClusterSettingsResponse {
                cluster: Some(view(c, ALL_FIELDS)),
            })
        })
        .await
}

fn merge_settings(cluster: &mut ecs::Cluster, new: &[ecs::ClusterSetting]) {
    let current = cluster.settings.get_or_insert_with(Vec::new);
    for s in new {
        match current.iter_mut().find(|c| c.name == s.name) {
            Some(c) => c.value = s.value.clone(),
            None => current.push(s.clone()),
        }
    }
}

pub async fn delete_cluster(
    state: &State,
    ctx: &Ctx,
    req: ecs::DeleteClusterRequest,
) -> ApiResult<ecs::DeleteClusterResponse> {
    state
        .write(&ctx.scope, |acct, tx| {
            let c = active_cluster_mut(acct, &ctx.scope, req.cluster.as_deref())?;
            if c.instances.values().any(|i| i.is_registered()) {
                return Err(ApiError::new(
                    "ClusterContainsContainerInstancesException",
                    "The Cluster cannot be deleted while Container Instances are active or draining.",
                ));
            }
            if c.services.values().any(|s| s.lifecycle() != ServiceStatus::Inactive) {
                return Err(ApiError::new(
                    "ClusterContainsServicesException",
                    "The Cluster cannot be deleted while Services are active.",
                ));
            }
            if c.tasks.values().any(|t| !t.is_stopped()) {
                return Err(ApiError::new("ClusterContainsTasksException", "The Cluster cannot be deleted while Tasks are active."));
            }
            c.cluster.status = Some(ClusterStatus::Inactive);
            tx.put(Key::Cluster(c.name()), &c.cluster);
            Ok(ecs::DeleteClusterResponse { cluster: Some(view(c, ALL_FIELDS)) })
        })
        .await
}
