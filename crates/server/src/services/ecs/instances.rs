//! RegisterContainerInstance, DeregisterContainerInstance,
//! DescribeContainerInstances, ListContainerInstances,
//! UpdateContainerInstancesState, PutAttributes, DeleteAttributes,
//! ListAttributes, DiscoverPollEndpoint.

use flotilla_model::arn;
use flotilla_model::ecs;

use flotilla_model::lifecycle::{InstanceStatus, TaskStatus};

use super::{
    active_cluster, active_cluster_mut, decode_token, failure, page, page_size, validate_tags, Ctx,
};
use crate::core::instances::put_instance;
use crate::core::placement::{remaining_resources, Filter};
use crate::core::state::{ClusterState, State};
use crate::error::{ApiError, ApiResult};

fn is_registered(i: &ecs::ContainerInstance) -> bool {
    i.is_registered()
}

/// The instance as Describe shows it: remaining resources and task counts derived.
pub fn view(
    c: &ClusterState,
    i: &ecs::ContainerInstance,
    with_tags: bool,
) -> ecs::ContainerInstance {
    let mut out = i.clone();
    out.remaining_resources = Some(remaining_resources(c, i));
    let arn = i.container_instance_arn.as_deref();
    let on_it = arn
        .into_iter()
        .flat_map(|arn| c.tasks_on(arn))
        .map(|(_, t)| t);
    let (mut running, mut pending) = (0, 0);
    for t in on_it {
        match t.status() {
            TaskStatus::Running => running += 1,
            TaskStatus::Stopped => {}
            _ => pending += 1,
        }
    }
    out.running_tasks_count = Some(running);
    out.pending_tasks_count = Some(pending);
    if !with_tags {
        out.tags = None;
    }
    out
}

/// The instance id a reference (id or ARN) names.
fn instance_id<'a>(ctx: &Ctx, reference: &'a str) -> Option<&'a str> {
    ctx.scope.name_from_ref(reference, "container-instance")
}

/// Fields of an EC2 instance identity document that ECS reads.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct IdentityDocument {
    instance_id: Option<String>,
    availability_zone: Option<String>,
    instance_type: Option<String>,
    image_id: Option<String>,
}

fn set_attribute(attrs: &mut Vec<ecs::Attribute>, name: &str, value: Option<String>) {
    attrs.retain(|a| a.name.as_deref() != Some(name));
    attrs.push(ecs::Attribute {
        name: Some(name.into()),
        value,
        ..Default::default()
    });
}

fn check_resources(resources: &[ecs::Resource]) -> ApiResult<()> {
    for r in resources {
        let name = r.name.as_deref().unwrap_or_default();
        match name {
            "CPU" | "MEMORY" if r.integer_value.unwrap_or(0) < 0 => {
                return Err(ApiError::invalid(format!(
                    "totalResources {name} must not be negative."
                )));
            }
            "PORTS" | "PORTS_UDP" => {
                for p in r.string_set_value.iter().flatten() {
                    if p.parse::<u16>().is_err() {
                        return Err(ApiError::invalid(format!(
                            "totalResources {name} holds '{p}', which is not a port number."
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

pub async fn register(
    state: &State,
    ctx: &Ctx,
    req: ecs::RegisterContainerInstanceRequest,
) -> ApiResult<ecs::RegisterContainerInstanceResponse> {
    let doc: Option<IdentityDocument> = match req.instance_identity_document.as_deref() {
        None | Some("") => None,
        Some(s) => Some(serde_json::from_str(s).map_err(|e| {
            ApiError::invalid(format!(
                "instanceIdentityDocument is not a valid EC2 instance identity document: {e}"
            ))
        })?),
    };
    let resources = req.total_resources.clone().unwrap_or_default();
    check_resources(&resources)?;
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    let mut attributes = req.attributes.clone().unwrap_or_default();
    for a in &attributes {
        check_attribute(a)?;
    }
    if let Some(doc) = &doc {
        if let Some(az) = &doc.availability_zone {
            set_attribute(&mut attributes, "ecs.availability-zone", Some(az.clone()));
        }
        if let Some(t) = &doc.instance_type {
            set_attribute(&mut attributes, "ecs.instance-type", Some(t.clone()));
        }
        if let Some(ami) = &doc.image_id {
            set_attribute(&mut attributes, "ecs.ami-id", Some(ami.clone()));
        }
    }
    let ec2_id = doc.as_ref().and_then(|d| d.instance_id.clone());
    state
        .write(&ctx.scope, |acct, tx| {
            let c = active_cluster_mut(acct, &ctx.scope, req.cluster.as_deref())?;
            let cluster_name = c.name().to_string();
            // Re-registration: by ARN, or an ACTIVE instance with the same EC2 instance id.
            let existing = match &req.container_instance_arn {
                Some(a) => Some(
                    instance_id(ctx, a)
                        .filter(|id| c.instances.contains_key(*id))
                        .ok_or_else(|| {
                            ApiError::invalid(format!(
                                "containerInstanceArn {a} is not registered in this cluster."
                            ))
                        })?
                        .to_string(),
                ),
                None => ec2_id.as_ref().and_then(|e| {
                    c.instances
                        .iter()
                        .find(|(_, i)| is_registered(i) && i.ec2_instance_id.as_ref() == Some(e))
                        .map(|(id, _)| id.clone())
                }),
            };
            let id = existing.clone().unwrap_or_else(arn::new_id);
            let previous = existing.and_then(|id| c.instances.get(&id).cloned());
            let instance = ecs::ContainerInstance {
                container_instance_arn: Some(ctx.scope.container_instance_arn(&cluster_name, &id)),
                ec2_instance_id: ec2_id
                    .clone()
                    .or_else(|| previous.as_ref().and_then(|p| p.ec2_instance_id.clone())),
                status: Some(InstanceStatus::Active),
                agent_connected: Some(
                    previous
                        .as_ref()
                        .and_then(|p| p.agent_connected)
                        .unwrap_or(false),
                ),
                registered_resources: Some(resources.clone()),
                attributes: Some(attributes.clone()),
                version_info: req.version_info.clone(),
                registered_at: Some(
                    previous
                        .as_ref()
                        .and_then(|p| p.registered_at)
                        .unwrap_or(ctx.now),
                ),
                version: Some(previous.as_ref().and_then(|p| p.version).unwrap_or(0) + 1),
                tags: Some(if tags.is_empty() {
                    previous
                        .as_ref()
                        .and_then(|p| p.tags.clone())
                        .unwrap_or_default()
                } else {
                    tags.clone()
                }),
                attachments: Some(Vec::new()),
                ..Default::default()
            };
            put_instance(acct, tx, &cluster_name, &id, instance.clone());
            let c = &acct.clusters[&cluster_name];
            Ok(ecs::RegisterContainerInstanceResponse {
                container_instance: Some(view(c, &instance, true)),
            })
        })
        .await
}

pub async fn deregister(
    state: &State,
    ctx: &Ctx,
    req: ecs::DeregisterContainerInstanceRequest,
) -> ApiResult<ecs::DeregisterContainerInstanceResponse> {
    let reference = req.container_instance.clone().unwrap_or_default();
    state
        .write(&ctx.scope, |acct, tx| {
            let c = active_cluster_mut(acct, &ctx.scope, req.cluster.as_deref())?;
            let cluster_name = c.name().to_string();
            let id = instance_id(ctx, &reference)
                .filter(|id| c.instances.get(*id).is_some_and(is_registered))
                .ok_or_else(|| ApiError::invalid(format!("Container instance {reference} is not registered in this cluster.")))?
                .to_string();
            let arn = c.instances[&id].container_instance_arn.clone();
            let busy = arn.as_deref().is_some_and(|arn| c.tasks_on(arn).any(|(_, t)| !t.is_stopped()));
            if busy && !req.force.unwrap_or(false) {
                return Err(ApiError::invalid(
                    "Found running tasks on the instance. Stop them first, or deregister with force (their containers are then stopped by the agent and services replace them).",
                ));
            }
            let mut i = c.instances[&id].clone();
            i.status = Some(InstanceStatus::Inactive);
            i.agent_connected = Some(false);
            i.version = Some(i.version.unwrap_or(0) + 1);
            put_instance(acct, tx, &cluster_name, &id, i.clone());
            let c = &acct.clusters[&cluster_name];
            Ok(ecs::DeregisterContainerInstanceResponse { container_instance: Some(view(c, &i, true)) })
        })
        .await
}

pub async fn describe(
    state: &State,
    ctx: &Ctx,
    req: ecs::DescribeContainerInstancesRequest,
) -> ApiResult<ecs::DescribeContainerInstancesResponse> {
    let refs = req.container_instances.unwrap_or_default();
    if refs.is_empty() {
        return Err(ApiError::invalid("Container instance cannot be empty."));
    }
    if refs.len() > 100 {
        return Err(ApiError::invalid(
            "containerInstances can have at most 100 items.",
        ));
    }
    let with_tags = req
        .include
        .unwrap_or_default()
        .contains(&ecs::ContainerInstanceField::Tags);
    state.read(&ctx.scope, |acct| {
        let c = active_cluster(acct, &ctx.scope, req.cluster.as_deref())?;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for r in &refs {
            match instance_id(ctx, r).and_then(|id| c.instances.get(id)) {
                Some(i) => found.push(view(c, i, with_tags)),
                None => {
                    let arn = if r.starts_with("arn:") {
                        r.clone()
                    } else {
                        ctx.scope.container_instance_arn(c.name(), r)
                    };
                    failures.push(failure(arn, "MISSING"));
                }
            }
        }
        Ok(ecs::DescribeContainerInstancesResponse {
            container_instances: Some(found),
            failures: Some(failures),
        })
    })
}

pub async fn list(
    state: &State,
    ctx: &Ctx,
    req: ecs::ListContainerInstancesRequest,
) -> ApiResult<ecs::ListContainerInstancesResponse> {
    let size = page_size(req.max_results, 100)?;
    let after = decode_token(req.next_token.as_deref())?;
    let filter = match req.filter.as_deref() {
        Some(f) => Some(Filter::parse(f)?),
        None => None,
    };
    state.read(&ctx.scope, |acct| {
        let c = active_cluster(acct, &ctx.scope, req.cluster.as_deref())?;
        let items = c
            .instances
            .iter()
            .filter(|(id, _)| after.as_ref().is_none_or(|a| *id > a))
            .filter(|(_, i)| match req.status {
                Some(s) => i.lifecycle().as_str() == s.as_str(),
                None => matches!(
                    i.lifecycle(),
                    InstanceStatus::Active | InstanceStatus::Draining
                ),
            })
            .filter(|(_, i)| filter.as_ref().is_none_or(|f| f.matches(c, i)))
            .map(|(id, i)| (id, i.container_instance_arn.clone().unwrap_or_default()));
        let (arns, next) = page(items, size);
        Ok(ecs::ListContainerInstancesResponse {
            container_instance_arns: Some(arns),
            next_token: next,
        })
    })
}

pub async fn update_state(
    state: &State,
    ctx: &Ctx,
    req: ecs::UpdateContainerInstancesStateRequest,
) -> ApiResult<ecs::UpdateContainerInstancesStateResponse> {
    let refs = req.container_instances.unwrap_or_default();
    if refs.len() > 10 {
        return Err(ApiError::invalid(
            "containerInstances can have at most 10 items.",
        ));
    }
    let status = match req.status {
        Some(ecs::ContainerInstanceStatus::Active) => InstanceStatus::Active,
        Some(ecs::ContainerInstanceStatus::Draining) => InstanceStatus::Draining,
        Some(s) => {
            return Err(ApiError::invalid(format!(
                "Container instances cannot be set to {s}: the status must be ACTIVE or DRAINING."
            )))
        }
        None => return Err(ApiError::invalid("status is required.")),
    };
    state
        .write(&ctx.scope, |acct, tx| {
            let c = active_cluster_mut(acct, &ctx.scope, req.cluster.as_deref())?;
            let cluster_name = c.name().to_string();
            let mut changed = Vec::new();
            let mut failures = Vec::new();
            for r in &refs {
                match instance_id(ctx, r)
                    .filter(|id| c.instances.get(*id).is_some_and(is_registered))
                {
                    Some(id) => changed.push(id.to_string()),
                    None => {
                        let arn = if r.starts_with("arn:") {
                            r.clone()
                        } else {
                            ctx.scope.container_instance_arn(&cluster_name, r)
                        };
                        failures.push(failure(arn, "MISSING"));
                    }
                }
            }
            for id in &changed {
                let Some(mut i) = acct.clusters[&cluster_name].instances.get(id).cloned() else {
                    continue;
                };
                if i.lifecycle().can_be_set_to(status) && i.status != Some(status) {
                    i.status = Some(status);
                    i.version = Some(i.version.unwrap_or(0) + 1);
                    put_instance(acct, tx, &cluster_name, id, i);
                }
            }
            let c = &acct.clusters[&cluster_name];
            let out = changed
                .iter()
                .filter_map(|id| c.instances.get(id))
                .map(|i| view(c, i, false))
                .collect();
            Ok(ecs::UpdateContainerInstancesStateResponse {
                container_instances: Some(out),
                failures: Some(failures),
            })
        })
        .await
}

/// Attribute names: up to 128 letters, digits, hyphens, underscores, periods,
/// at signs, slashes, back slashes, colons; values the same plus spaces.
fn check_attribute(a: &ecs::Attribute) -> ApiResult<()> {
    let name = a.name.as_deref().unwrap_or_default();
    let ok_name = |s: &str, space: bool| {
        s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.@/\\:".contains(ch) || (space && ch == ' '))
    };
    if name.is_empty() || name.len() > 128 || !ok_name(name, false) {
        return Err(ApiError::invalid(format!(
            "Attribute name '{name}' is invalid: 1 to 128 letters, numbers, hyphens, underscores, periods, at signs, slashes, back slashes or colons."
        )));
    }
    if let Some(v) = &a.value {
        if v.is_empty() || v.len() > 128 || !ok_name(v, true) {
            return Err(ApiError::invalid(format!(
                "Value '{v}' of attribute '{name}' is invalid: 1 to 128 letters, numbers, hyphens, underscores, periods, at signs, slashes, back slashes, colons or spaces."
            )));
        }
    }
    if let Some(t) = a.target_type {
        if t != ecs::TargetType::ContainerInstance {
            return Err(ApiError::invalid("targetType must be container-instance."));
        }
    }
    Ok(())
}

fn target_not_found(target: &str) -> ApiError {
    ApiError::new(
        "TargetNotFoundException",
        format!("Could not find {target}."),
    )
}

/// Applies attribute changes: checks every attribute and target first, then
/// changes each target instance once.
async fn change_attributes(
    state: &State,
    ctx: &Ctx,
    cluster: Option<String>,
    attributes: Vec<ecs::Attribute>,
    put: bool,
) -> ApiResult<Vec<ecs::Attribute>> {
    if attributes.is_empty() {
        return Err(ApiError::invalid(
            "attributes must name at least one attribute.",
        ));
    }
    if put && attributes.len() > 10 {
        return Err(ApiError::new(
            "AttributeLimitExceededException",
            "At most 10 attributes can be put in one call.",
        ));
    }
    for a in &attributes {
        check_attribute(a)?;
    }
    state
        .write(&ctx.scope, |acct, tx| {
            let c = active_cluster_mut(acct, &ctx.scope, cluster.as_deref())?;
            let cluster_name = c.name().to_string();
            let mut resolved = Vec::with_capacity(attributes.len());
            for a in &attributes {
                let target = a
                    .target_id
                    .as_deref()
                    .ok_or_else(|| ApiError::invalid("targetId is required for each attribute."))?;
                let id = instance_id(ctx, target)
                    .filter(|id| c.instances.get(*id).is_some_and(is_registered))
                    .ok_or_else(|| target_not_found(target))?;
                resolved.push(id.to_string());
            }
            // Each target changes once, whatever number of its attributes change.
            let mut changed: std::collections::BTreeMap<String, ecs::ContainerInstance> =
                std::collections::BTreeMap::new();
            let mut out = Vec::new();
            for (a, id) in attributes.iter().zip(&resolved) {
                let i = changed
                    .entry(id.clone())
                    .or_insert_with(|| c.instances[id].clone());
                let attrs = i.attributes.get_or_insert_with(Vec::new);
                let name = a.name.clone().unwrap_or_default();
                if put {
                    set_attribute(attrs, &name, a.value.clone());
                } else {
                    attrs.retain(|x| x.name.as_deref() != Some(&name));
                }
                out.push(ecs::Attribute {
                    name: Some(name),
                    value: a.value.clone(),
                    target_type: Some(ecs::TargetType::ContainerInstance),
                    target_id: i.container_instance_arn.clone(),
                });
            }
            for (id, i) in changed {
                put_instance(acct, tx, &cluster_name, &id, i);
            }
            Ok(out)
        })
        .await
}

pub async fn put_attributes(
    state: &State,
    ctx: &Ctx,
    req: ecs::PutAttributesRequest,
) -> ApiResult<ecs::PutAttributesResponse> {
    let attrs = change_attributes(
        state,
        ctx,
        req.cluster,
        req.attributes.unwrap_or_default(),
        true,
    )
    .await?;
    Ok(ecs::PutAttributesResponse {
        attributes: Some(attrs),
    })
}

pub async fn delete_attributes(
    state: &State,
    ctx: &Ctx,
    req: ecs::DeleteAttributesRequest,
) -> ApiResult<ecs::DeleteAttributesResponse> {
    let attrs = change_attributes(
        state,
        ctx,
        req.cluster,
        req.attributes.unwrap_or_default(),
        false,
    )
    .await?;
    Ok(ecs::DeleteAttributesResponse {
        attributes: Some(attrs),
    })
}

pub async fn list_attributes(
    state: &State,
    ctx: &Ctx,
    req: ecs::ListAttributesRequest,
) -> ApiResult<ecs::ListAttributesResponse> {
    if req.target_type != Some(ecs::TargetType::ContainerInstance) {
        return Err(ApiError::invalid("targetType must be container-instance."));
    }
    let size = page_size(req.max_results, 100)?;
    let after = decode_token(req.next_token.as_deref())?;
    state.read(&ctx.scope, |acct| {
        let c = active_cluster(acct, &ctx.scope, req.cluster.as_deref())?;
        let items = c
            .instances
            .iter()
            .filter(|(_, i)| is_registered(i))
            .flat_map(|(id, i)| {
                i.attributes.iter().flatten().map(move |a| {
                    let key = format!("{id}/{}", a.name.as_deref().unwrap_or_default());
                    let attr = ecs::Attribute {
                        target_type: Some(ecs::TargetType::ContainerInstance),
                        target_id: i.container_instance_arn.clone(),
                        ..a.clone()
                    };
                    (key, attr)
                })
            })
            .filter(|(_, a)| req.attribute_name.is_none() || a.name == req.attribute_name)
            .filter(|(_, a)| req.attribute_value.is_none() || a.value == req.attribute_value)
            .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a));
        let mut items: Vec<_> = items.collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let (attributes, next) = page(items.into_iter(), size);
        Ok(ecs::ListAttributesResponse {
            attributes: Some(attributes),
            next_token: next,
        })
    })
}

pub async fn discover_poll_endpoint(
    _state: &State,
    ctx: &Ctx,
    _req: ecs::DiscoverPollEndpointRequest,
) -> ApiResult<ecs::DiscoverPollEndpointResponse> {
    // Agents reach every Flotilla service at the endpoint they already use.
    Ok(ecs::DiscoverPollEndpointResponse {
        endpoint: Some(ctx.endpoint.clone()),
        telemetry_endpoint: Some(ctx.endpoint.clone()),
        service_connect_endpoint: Some(ctx.endpoint.clone()),
    })
}
