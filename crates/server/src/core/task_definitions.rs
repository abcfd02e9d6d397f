//! Finding a task definition revision from what a caller names (a family, a
//! `family:revision`, or an ARN): the rule RunTask, services and the
//! controllers share. The rules of a definition's contents live in
//! `flotilla_model::task_definition`.

use flotilla_model::arn::{Arn, Scope};
use flotilla_model::ecs;

use super::state::{Families, StoredTaskDefinition};
use crate::error::{ApiError, ApiResult};

pub fn unable() -> ApiError {
    ApiError::client("Unable to describe task definition.")
}

/// Resolves `family`, `family:revision` or an ARN. A bare family means its
/// latest ACTIVE revision.
pub fn resolve<'a>(
    families: &'a Families,
    scope: &Scope,
    reference: &str,
) -> ApiResult<&'a StoredTaskDefinition> {
    let (family, revision) = split_reference(scope, reference)?;
    let fam = families.get(family).ok_or_else(unable)?;
    match revision {
        Some(rev) => fam.revisions.get(&rev).ok_or_else(unable),
        None => fam
            .revisions
            .values()
            .rev()
            .find(|td| td.definition.status == Some(ecs::TaskDefinitionStatus::Active))
            .ok_or_else(unable),
    }
}

/// [`resolve`], refusing an INACTIVE revision: new tasks and services
/// need an ACTIVE one.
pub fn resolve_active<'a>(
    families: &'a Families,
    scope: &Scope,
    reference: &str,
) -> ApiResult<&'a StoredTaskDefinition> {
    let td = resolve(families, scope, reference)?;
    if td.definition.status != Some(ecs::TaskDefinitionStatus::Active) {
        return Err(ApiError::client(
            "TaskDefinition is inactive: register a new revision or use an ACTIVE one.",
        ));
    }
    Ok(td)
}

/// `(family, Some(revision))` from `family:rev` or an ARN, `(family, None)` from a bare family.
pub fn split_reference<'a>(scope: &Scope, reference: &'a str) -> ApiResult<(&'a str, Option<i32>)> {
    let body = if reference.starts_with("arn:") {
        let a = Arn::parse(reference).filter(|a| a.kind == "task-definition").ok_or_else(|| {
            ApiError::client(format!("Invalid revision ARN '{reference}': expected arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REVISION."))
        })?;
        if a.account != scope.account || a.region != scope.region {
            return Err(unable());
        }
        a.rest
    } else {
        reference
    };
    match body.split_once(':') {
        Some((family, rev)) => {
            let rev: i32 = rev.parse().ok().filter(|r| *r >= 1).ok_or_else(|| {
                ApiError::client(format!(
                    "Invalid revision number in '{reference}': it must be a positive integer."
                ))
            })?;
            Ok((family, Some(rev)))
        }
        None if reference.starts_with("arn:") => Err(ApiError::client(format!(
            "Invalid revision ARN '{reference}': the revision number is missing."
        ))),
        None => Ok((body, None)),
    }
}
