//! TagResource, UntagResource, ListTagsForResource, and the tag rules every
//! create call shares.

use flotilla_model::arn::Arn;
use flotilla_model::ecs;

use super::Ctx;
use crate::core::state::{Account, Key, State, Tx};
use crate::core::task_sets::split_arn_rest;
use crate::error::{ApiError, ApiResult};

/// At most 50 tags; keys 1–128 characters, values up to 256, no duplicate
/// keys, and the `aws:` prefix reserved (AWS's tagging rules).
pub fn validate_tags(tags: &[ecs::Tag]) -> ApiResult<()> {
    if tags.len() > 50 {
        return Err(ApiError::invalid(format!(
            "A resource can have at most 50 tags; {} were given.",
            tags.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for t in tags {
        let key = t.key.as_deref().unwrap_or_default();
        let value = t.value.as_deref().unwrap_or_default();
        if key.is_empty() || key.chars().count() > 128 {
            return Err(ApiError::invalid(format!(
                "Tag key '{key}' must be 1 to 128 characters long."
            )));
        }
        if value.chars().count() > 256 {
            return Err(ApiError::invalid(format!(
                "The value of tag '{key}' must be at most 256 characters long."
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::invalid(format!(
                "Tag key '{key}' uses the reserved prefix 'aws:'."
            )));
        }
        if !seen.insert(key) {
            return Err(ApiError::invalid(format!(
                "Tag key '{key}' is given more than once."
            )));
        }
    }
    Ok(())
}

fn not_found(arn: &str) -> ApiError {
    ApiError::new(
        "ResourceNotFoundException",
        format!("The specified resource could not be found: {arn}."),
    )
}

/// The tags of the resource `arn` names in this account, for reading.
fn tags_of(acct: &Account, ctx: &Ctx, arn: &str) -> ApiResult<Vec<ecs::Tag>> {
    let a = parse(ctx, arn)?;
    let tags = match a.kind {
        "cluster" => acct
            .clusters
            .get(a.rest)
            .filter(|c| c.is_active())
            .map(|c| c.cluster.tags.clone()),
        "task-definition" => {
            let (family, rev) = a.rest.split_once(':').ok_or_else(|| not_found(arn))?;
            let rev: i32 = rev.parse().map_err(|_| not_found(arn))?;
            acct.families
                .get(family)
                .and_then(|f| f.revisions.get(&rev))
                .map(|td| Some(td.tags.clone()))
        }
        "task-set" => {
            let (cluster, service, id) = split_arn_rest(a.rest).ok_or_else(|| not_found(arn))?;
            acct.clusters
                .get(cluster)
                .and_then(|c| c.services.get(service))
                .and_then(|s| s.task_sets.as_ref())
                .and_then(|sets| sets.iter().find(|t| t.id.as_deref() == Some(id)))
                .map(|t| t.tags.clone())
        }
        kind => {
            let (cluster, id) = a.rest.split_once('/').ok_or_else(|| not_found(arn))?;
            let c = acct.clusters.get(cluster).ok_or_else(|| not_found(arn))?;
            match kind {
                "task" => c.tasks.get(id).map(|t| t.tags.clone()),
                "service" => c
                    .services
                    .get(id)
                    .filter(|s| s.service_arn.as_deref() == Some(arn))
                    .map(|s| s.tags.clone()),
                "container-instance" => c.instances.get(id).map(|i| i.tags.clone()),
                _ => None,
            }
        }
    };
    tags.map(Option::unwrap_or_default)
        .ok_or_else(|| not_found(arn))
}

/// Replaces the tags of the resource `arn` names and queues the write.
fn set_tags(
    acct: &mut Account,
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    arn: &str,
    tags: Vec<ecs::Tag>,
) -> ApiResult<()> {
    let a = parse(ctx, arn)?;
    match a.kind {
        "cluster" => {
            let c = acct
                .clusters
                .get_mut(a.rest)
                .filter(|c| c.is_active())
                .ok_or_else(|| not_found(arn))?;
            c.cluster.tags = Some(tags);
            tx.put(Key::Cluster(a.rest), &c.cluster);
        }
        "task-definition" => {
            let (family, rev) = a.rest.split_once(':').ok_or_else(|| not_found(arn))?;
            let rev: i32 = rev.parse().map_err(|_| not_found(arn))?;
            let td = acct
                .families
                .get_mut(family)
                .and_then(|f| f.revisions.get_mut(&rev))
                .ok_or_else(|| not_found(arn))?;
            td.tags = tags;
            tx.put(Key::TaskDefinition(family, rev), td);
        }
        "task-set" => {
            let (cluster, service, id) = split_arn_rest(a.rest).ok_or_else(|| not_found(arn))?;
            let svc = acct
                .clusters
                .get_mut(cluster)
                .and_then(|c| c.services.get_mut(service))
                .ok_or_else(|| not_found(arn))?;
            let t = svc
                .task_sets
                .iter_mut()
                .flatten()
                .find(|t| t.id.as_deref() == Some(id))
                .ok_or_else(|| not_found(arn))?;
            t.tags = Some(tags);
            tx.put(Key::Service(cluster, service), &*svc);
        }
        kind => {
            let (cluster, id) = a.rest.split_once('/').ok_or_else(|| not_found(arn))?;
            let c = acct
                .clusters
                .get_mut(cluster)
                .ok_or_else(|| not_found(arn))?;
            match kind {
                "task" => {
                    let t = c.tasks.get_mut(id).ok_or_else(|| not_found(arn))?;
                    t.tags = Some(tags);
                    tx.put_task(cluster, id, t);
                }
                "service" => {
                    let s = c
                        .services
                        .get_mut(id)
                        .filter(|s| s.service_arn.as_deref() == Some(arn))
                        .ok_or_else(|| not_found(arn))?;
                    s.tags = Some(tags);
                    tx.put(Key::Service(cluster, id), s);
                }
                "container-instance" => {
                    let i = c.instances.get_mut(id).ok_or_else(|| not_found(arn))?;
                    i.tags = Some(tags);
                    tx.put(Key::Instance(cluster, id), i);
                }
                _ => return Err(not_found(arn)),
            }
        }
    }
    Ok(())
}

/// An ARN of this account and region, or `InvalidParameterException`.
fn parse<'a>(ctx: &Ctx, arn: &'a str) -> ApiResult<Arn<'a>> {
    let a = Arn::parse(arn)
        .ok_or_else(|| ApiError::invalid(format!("resourceArn '{arn}' is not a valid ECS ARN.")))?;
    if a.account != ctx.scope.account || a.region != ctx.scope.region {
        // Another account's or region's resource: as if it did not exist.
        return Err(not_found(arn));
    }
    Ok(a)
}

pub async fn tag_resource(
    state: &State,
    ctx: &Ctx,
    req: ecs::TagResourceRequest,
) -> ApiResult<ecs::TagResourceResponse> {
    let arn = req.resource_arn.unwrap_or_default();
    let new = req.tags.unwrap_or_default();
    validate_tags(&new)?;
    state
        .write(&ctx.scope, |acct, tx| {
            let mut tags = tags_of(acct, ctx, &arn)?;
            for t in new {
                match tags.iter_mut().find(|e| e.key == t.key) {
                    Some(e) => e.value = t.value,
                    None => tags.push(t),
                }
            }
            validate_tags(&tags)?;
            set_tags(acct, tx, ctx, &arn, tags)?;
            Ok(ecs::TagResourceResponse {})
        })
        .await
}

pub async fn untag_resource(
    state: &State,
    ctx: &Ctx,
    req: ecs::UntagResourceRequest,
) -> ApiResult<ecs::UntagResourceResponse> {
    let arn = req.resource_arn.unwrap_or_default();
    let keys = req.tag_keys.unwrap_or_default();
    state
        .write(&ctx.scope, |acct, tx| {
            let mut tags = tags_of(acct, ctx, &arn)?;
            tags.retain(|t| !keys.iter().any(|k| Some(k) == t.key.as_ref()));
            set_tags(acct, tx, ctx, &arn, tags)?;
            Ok(ecs::UntagResourceResponse {})
        })
        .await
}

pub async fn list_tags_for_resource(
    state: &State,
    ctx: &Ctx,
    req: ecs::ListTagsForResourceRequest,
) -> ApiResult<ecs::ListTagsForResourceResponse> {
    let arn = req.resource_arn.unwrap_or_default();
    let tags = state.read(&ctx.scope, |acct| tags_of(acct, ctx, &arn))?;
    Ok(ecs::ListTagsForResourceResponse { tags: Some(tags) })
}
