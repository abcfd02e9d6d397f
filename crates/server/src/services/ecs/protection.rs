//! Task scale-in protection: UpdateTaskProtection and GetTaskProtection.
//! A protected task of a service is never chosen to stop when the service
//! scales in (`flotilla_reconcile`'s scale-in); protection lasts
//! `expiresInMinutes` (1–2,880, default 120) and then lapses by itself.

use flotilla_model::ecs;
use flotilla_model::lifecycle::TaskPhase;

use super::{active_cluster, active_cluster_mut, failure, Ctx};
use crate::core::state::Key;
use crate::core::State;
use crate::error::{ApiError, ApiResult};

/// Protection lasts this long when `expiresInMinutes` is not given.
const DEFAULT_MINUTES: i32 = 120;
/// The longest protection ECS grants (48 hours).
const MAX_MINUTES: i32 = 2880;

fn protected(arn: String, until: Option<f64>, now: f64) -> ecs::ProtectedTask {
    let until = until.filter(|u| *u > now);
    ecs::ProtectedTask {
        task_arn: Some(arn),
        protection_enabled: Some(until.is_some()),
        expiration_date: until,
    }
}

pub async fn update_task_protection(
    state: &State,
    ctx: &Ctx,
    req: ecs::UpdateTaskProtectionRequest,
) -> ApiResult<ecs::UpdateTaskProtectionResponse> {
    let refs = req.tasks.clone().unwrap_or_default();
    if refs.is_empty() || refs.len() > 10 {
        return Err(ApiError::invalid(format!(
            "tasks must list between 1 and 10 tasks; got {}.",
            refs.len()
        )));
    }
    let enable = req.protection_enabled.unwrap_or(false);
    let minutes = req.expires_in_minutes.unwrap_or(DEFAULT_MINUTES);
    if enable && !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(ApiError::invalid(format!(
            "expiresInMinutes must be between 1 and {MAX_MINUTES}; got {minutes}."
        )));
    }
    let now = ctx.now;
    state
        .write(&ctx.scope, |acct, tx| {
            let c = active_cluster_mut(acct, &ctx.scope, req.cluster.as_deref())?;
            let cluster = c.name().to_string();
            let mut out = Vec::new();
            let mut failures = Vec::new();
            for r in &refs {
                let task = ctx
                    .scope
                    .name_from_ref(r, "task")
                    .and_then(|id| c.tasks.get(id).map(|t| (id.to_string(), t)));
                let Some((id, task)) = task else {
                    failures.push(failure(r.clone(), "MISSING"));
                    continue;
                };
                let arn = task.task_arn.clone().unwrap_or_else(|| r.clone());
                let service = task
                    .group
                    .as_deref()
                    .and_then(|g| g.strip_prefix("service:"));
                let Some(service) = service.filter(|_| task.phase() != TaskPhase::Stopped) else {
                    let mut f = failure(arn, "TASK_NOT_VALID");
                    f.detail = Some(
                        "Task protection applies only to tasks of a service that have not stopped."
                            .into(),
                    );
                    failures.push(f);
                    continue;
                };
                let service = service.to_string();
                if enable {
                    let until = now + f64::from(minutes) * 60.0;
                    tx.put(Key::TaskProtection(&cluster, &id), &until);
                    c.task_protection.insert(id, until);
                    out.push(protected(arn, Some(until), now));
                } else {
                    tx.delete(Key::TaskProtection(&cluster, &id));
                    c.task_protection.remove(&id);
                    out.push(protected(arn, None, now));
                }
                // A scale-in the protection held back may proceed now.
                tx.touch_service(&cluster, &service);
            }
            Ok(ecs::UpdateTaskProtectionResponse {
                protected_tasks: Some(out),
                failures: Some(failures),
            })
        })
        .await
}

pub async fn get_task_protection(
    state: &State,
    ctx: &Ctx,
    req: ecs::GetTaskProtectionRequest,
) -> ApiResult<ecs::GetTaskProtectionResponse> {
    let refs = req.tasks.clone().unwrap_or_default();
    if refs.len() > 100 {
        return Err(ApiError::invalid(format!(
            "tasks can list at most 100 tasks; got {}.",
            refs.len()
        )));
    }
    let now = ctx.now;
    state.read(&ctx.scope, |acct| {
        let c = active_cluster(acct, &ctx.scope, req.cluster.as_deref())?;
        let mut out = Vec::new();
        let mut failures = Vec::new();
        if refs.is_empty() {
            // Every task protected now.
            for (id, until) in c.task_protection.iter().filter(|(_, u)| **u > now) {
                if let Some(arn) = c.tasks.get(id).and_then(|t| t.task_arn.clone()) {
                    out.push(protected(arn, Some(*until), now));
                }
            }
        }
        for r in &refs {
            let task = ctx
                .scope
                .name_from_ref(r, "task")
                .and_then(|id| c.tasks.get(id).map(|t| (id, t)));
            match task {
                Some((id, t)) => out.push(protected(
                    t.task_arn.clone().unwrap_or_else(|| r.clone()),
                    c.task_protection.get(id).copied(),
                    now,
                )),
                None => failures.push(failure(r.clone(), "MISSING")),
            }
        }
        Ok(ecs::GetTaskProtectionResponse {
            protected_tasks: Some(out),
            failures: Some(failures),
        })
    })
}
