//! RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies, DeregisterTaskDefinition, DeleteTaskDefinitions.
//!
//! The rules of a task definition live in `flotilla_model::task_definition`
//! (pure, shared with the agent and the scheduler); this module resolves
//! references, numbers revisions and persists.

use flotilla_model::ecs;
use flotilla_model::task_definition as rules;

use super::{check_name, decode_token, page, page_size, validate_tags, Ctx};
use crate::core::state::{FamilyRecord, Key, State, StoredTaskDefinition};
use crate::core::task_definitions::{resolve, split_reference, unable};
use crate::error::{ApiError, ApiResult};

pub async fn register(
    state: &State,
    ctx: &Ctx,
    req: ecs::RegisterTaskDefinitionRequest,
) -> ApiResult<ecs::RegisterTaskDefinitionResponse> {
    rules::validate_register(&req)?;
    let family = req.family.clone().unwrap_or_default();
    check_name("Family", &family)?;
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    state
        .write(&ctx.scope, |acct, tx| {
            let fam = acct.families.entry(family.clone()).or_default();
            let revision = fam.last_revision + 1;
            let arn = ctx.scope.task_definition_arn(&family, revision);
            let definition = rules::build_task_definition(
                &req,
                arn,
                revision,
                ctx.now,
                Some(ctx.principal_arn.clone()),
            );
            let stored = StoredTaskDefinition {
                definition,
                tags: tags.clone(),
            };
            fam.last_revision = revision;
            tx.put(
                Key::Family(&family),
                &FamilyRecord {
                    last_revision: revision,
                },
            );
            tx.put(Key::TaskDefinition(&family, revision), &stored);
            fam.revisions.insert(revision, stored.clone());
            Ok(ecs::RegisterTaskDefinitionResponse {
                task_definition: Some(stored.definition),
                tags: (!tags.is_empty()).then_some(tags),
            })
        })
        .await
}

pub async fn describe(
    state: &State,
    ctx: &Ctx,
    req: ecs::DescribeTaskDefinitionRequest,
) -> ApiResult<ecs::DescribeTaskDefinitionResponse> {
    let reference = req.task_definition.unwrap_or_default();
    let with_tags = req
        .include
        .unwrap_or_default()
        .contains(&ecs::TaskDefinitionField::Tags);
    state.read(&ctx.scope, |acct| {
        let td = resolve(&acct.families, &ctx.scope, &reference)?;
        Ok(ecs::DescribeTaskDefinitionResponse {
            task_definition: Some(td.definition.clone()),
            tags: with_tags.then(|| td.tags.clone()),
        })
    })
}

fn sort_key(family: &str, revision: i32) -> String {
    // Zero-padded so that string order is (family, revision) order.
    format!("{family}:{revision:010}")
}

pub async fn list(
    state: &State,
    ctx: &Ctx,
    req: ecs::ListTaskDefinitionsRequest,
) -> ApiResult<ecs::ListTaskDefinitionsResponse> {
    let size = page_size(req.max_results, 100)?;
    let after = decode_token(req.next_token.as_deref())?;
    let status = req.status.unwrap_or(ecs::TaskDefinitionStatus::Active);
    let descending = req.sort == Some(ecs::SortOrder::Desc);
    Ok(state.read(&ctx.scope, |acct| {
        let all = acct
            .families
            .iter()
            .filter(|(f, _)| req.family_prefix.as_ref().is_none_or(|p| *f == p))
            .flat_map(|(f, fam)| {
                fam.revisions
                    .iter()
                    .map(move |(rev, td)| (sort_key(f, *rev), td))
            })
            .filter(|(_, td)| td.definition.status == Some(status))
            .map(|(k, td)| {
                (
                    k,
                    td.definition
                        .task_definition_arn
                        .clone()
                        .unwrap_or_default(),
                )
            });
        let (arns, next) = if descending {
            let mut v: Vec<_> = all.collect();
            v.reverse();
            page(
                v.into_iter()
                    .filter(|(k, _)| after.as_ref().is_none_or(|a| k < a)),
                size,
            )
        } else {
            page(
                all.filter(|(k, _)| after.as_ref().is_none_or(|a| k > a)),
                size,
            )
        };
        ecs::ListTaskDefinitionsResponse {
            task_definition_arns: Some(arns),
            next_token: next,
        }
    }))
}

pub async fn list_families(
    state: &State,
    ctx: &Ctx,
    req: ecs::ListTaskDefinitionFamiliesRequest,
) -> ApiResult<ecs::ListTaskDefinitionFamiliesResponse> {
    let size = page_size(req.max_results, 100)?;
    let after = decode_token(req.next_token.as_deref())?;
    let status = req.status.unwrap_or(ecs::TaskDefinitionFamilyStatus::All);
    Ok(state.read(&ctx.scope, |acct| {
        let items = acct
            .families
            .iter()
            .filter(|(f, _)| {
                req.family_prefix
                    .as_ref()
                    .is_none_or(|p| f.starts_with(p.as_str()))
            })
            .filter(|(f, _)| after.as_ref().is_none_or(|a| *f > a))
            .filter(|(_, fam)| {
                let active = fam
                    .revisions
                    .values()
                    .any(|td| td.definition.status == Some(ecs::TaskDefinitionStatus::Active));
                match status {
                    ecs::TaskDefinitionFamilyStatus::Active => active,
                    ecs::TaskDefinitionFamilyStatus::Inactive => {
                        !active && !fam.revisions.is_empty()
                    }
                    ecs::TaskDefinitionFamilyStatus::All => !fam.revisions.is_empty(),
                }
            })
            .map(|(f, _)| (f, f.clone()));
        let (families, next) = page(items, size);
        ecs::ListTaskDefinitionFamiliesResponse {
            families: Some(families),
            next_token: next,
        }
    }))
}

pub async fn deregister(
    state: &State,
    ctx: &Ctx,
    req: ecs::DeregisterTaskDefinitionRequest,
) -> ApiResult<ecs::DeregisterTaskDefinitionResponse> {
    let reference = req.task_definition.unwrap_or_default();
    state
        .write(&ctx.scope, |acct, tx| {
            let (family, revision) = split_reference(&ctx.scope, &reference)?;
            let revision = revision.ok_or_else(|| {
                ApiError::client(format!("A revision is required: '{reference}' must be FAMILY:REVISION or a revision ARN."))
            })?;
            let td = acct.families.get_mut(family).and_then(|f| f.revisions.get_mut(&revision)).ok_or_else(unable)?;
            if td.definition.status == Some(ecs::TaskDefinitionStatus::Active) {
                td.definition.status = Some(ecs::TaskDefinitionStatus::Inactive);
                td.definition.deregistered_at = Some(ctx.now);
                tx.put(Key::TaskDefinition(family, revision), td);
            }
            Ok(ecs::DeregisterTaskDefinitionResponse { task_definition: Some(td.definition.clone()) })
        })
        .await
}

pub async fn delete(
    state: &State,
    ctx: &Ctx,
    req: ecs::DeleteTaskDefinitionsRequest,
) -> ApiResult<ecs::DeleteTaskDefinitionsResponse> {
    let refs = req.task_definitions.unwrap_or_default();
    if refs.is_empty() || refs.len() > 10 {
        return Err(ApiError::invalid(
            "taskDefinitions must name between 1 and 10 task definition revisions.",
        ));
    }
    state
        .write(&ctx.scope, |acct, tx| {
            let mut deleted = Vec::new();
            let mut failures = Vec::new();
            for reference in &refs {
                let fail = |reason: &str| super::failure(reference.clone(), reason);
                let Ok((family, Some(revision))) = split_reference(&ctx.scope, reference) else {
                    failures.push(fail("The specified task definition identifier is invalid. Specify a valid name or ARN and try again."));
                    continue;
                };
                let Some(fam) = acct.families.get_mut(family) else {
                    failures.push(fail("The specified task definition does not exist. Specify a valid account, family, revision and try again."));
                    continue;
                };
                let Some(td) = fam.revisions.get(&revision) else {
                    failures.push(fail("The specified task definition does not exist. Specify a valid account, family, revision and try again."));
                    continue;
                };
                if td.definition.status == Some(ecs::TaskDefinitionStatus::Active) {
                    failures.push(fail(
                        "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
                    ));
                    continue;
                }
                let mut gone = td.definition.clone();
                gone.status = Some(ecs::TaskDefinitionStatus::DeleteInProgress);
                fam.revisions.remove(&revision);
                tx.delete(Key::TaskDefinition(family, revision));
                deleted.push(gone);
            }
            Ok(ecs::DeleteTaskDefinitionsResponse { task_definitions: Some(deleted), failures: Some(failures) })
        })
        .await
}
