//! ListServiceDeployments, DescribeServiceDeployments,
//! DescribeServiceRevisions and StopServiceDeployment: the service
//! deployment history kept by `crate::core::deployments`.

use flotilla_model::ecs;

use super::{active_cluster, decode_token, encode_token, failure, page_size, Ctx};
use crate::core::deployments::{self, parse_arn, History, RollbackCause, RollbackError};
use crate::core::lb::LbAccount;
use crate::core::state::{Account, Key, State, Tx};
use crate::error::{ApiError, ApiResult};

/// DescribeServiceDeployments and DescribeServiceRevisions take at most
/// this many ARNs (ECS documents 20).
const MAX_ARNS: usize = 20;

/// Runs `act` on copies of the service and deployment history that hold
/// deployment `id` (with the account's load balancers, whose weights it may
/// shift), then stores and keeps both; `ServiceDeploymentNotFoundException`
/// when the cluster, service or deployment is not there.
fn on_deployment(
    acct: &mut Account,
    tx: &mut Tx<'_>,
    (cluster, service, id): (&str, &str, &str),
    act: impl FnOnce(&mut History, &mut ecs::Service, &mut LbAccount, &mut Tx<'_>) -> ApiResult<()>,
) -> ApiResult<()> {
    let Account { clusters, lb, .. } = acct;
    let c = clusters
        .get_mut(cluster)
        .filter(|c| c.is_active())
        .ok_or_else(not_found)?;
    let (Some(svc), Some(meta)) = (c.services.get(service), c.service_meta.get(service)) else {
        return Err(not_found());
    };
    if meta.history.find(id).is_none() {
        return Err(not_found());
    }
    let (mut svc, mut meta) = (svc.clone(), meta.clone());
    act(&mut meta.history, &mut svc, lb, tx)?;
    tx.put(Key::Service(cluster, service), &svc);
    tx.put(Key::ServiceMeta(cluster, service), &meta);
    c.services.insert(service.to_string(), svc);
    c.service_meta.insert(service.to_string(), meta);
    Ok(())
}

fn not_found() -> ApiError {
    ApiError::new(
        "ServiceDeploymentNotFoundException",
        "The service deployment does not exist.",
    )
}

pub async fn list_service_deployments(
    state: &State,
    ctx: &Ctx,
    req: ecs::ListServiceDeploymentsRequest,
) -> ApiResult<ecs::ListServiceDeploymentsResponse> {
    let size = page_size(req.max_results, 20)?;
    let after = decode_token(req.next_token.as_deref())?;
    let before_index: Option<usize> = match &after {
        Some(t) => Some(t.parse().map_err(|_| {
            ApiError::invalid("Invalid nextToken: it must be a token returned by a previous call.")
        })?),
        None => None,
    };
    let reference = req.service.clone().unwrap_or_default();
    let name = ctx
        .scope
        .name_from_ref(&reference, "service")
        .ok_or_else(|| ApiError::invalid(format!("Invalid service identifier: {reference}")))?;
    let statuses = req.status.clone().unwrap_or_default();
    let created = req.created_at.clone().unwrap_or_default();
    state.read(&ctx.scope, |acct| {
        let c = active_cluster(acct, &ctx.scope, req.cluster.as_deref())?;
        if !c.services.contains_key(name) {
            return Err(ApiError::service_not_found());
        }
        let Some(meta) = c.service_meta.get(name) else {
            return Ok(ecs::ListServiceDeploymentsResponse {
                service_deployments: Some(Vec::new()),
                next_token: None,
            });
        };
        // Newest first; a token is the position of the last one returned.
        let records = &meta.history.deployments;
        let mut out = Vec::new();
        let mut next = None;
        let start = before_index.unwrap_or(records.len()).min(records.len());
        for i in (0..start).rev() {
            let v = &records[i].view;
            let at = v.created_at.unwrap_or(0.0);
            if !statuses.is_empty() && !v.status.is_some_and(|s| statuses.contains(&s)) {
                continue;
            }
            if created.after.is_some_and(|a| at < a) || created.before.is_some_and(|b| at > b) {
                continue;
            }
            if out.len() == size {
                next = Some(encode_token(&(i + 1).to_string()));
                break;
            }
            out.push(ecs::ServiceDeploymentBrief {
                service_deployment_arn: v.service_deployment_arn.clone(),
                service_arn: v.service_arn.clone(),
                cluster_arn: v.cluster_arn.clone(),
                started_at: v.started_at,
                created_at: v.created_at,
                finished_at: v.finished_at.or(v.stopped_at),
                target_service_revision_arn: v
                    .target_service_revision
                    .as_ref()
                    .and_then(|t| t.arn.clone()),
                status: v.status,
                status_reason: v.status_reason.clone(),
            });
        }
        Ok(ecs::ListServiceDeploymentsResponse {
            service_deployments: Some(out),
            next_token: next,
        })
    })
}

fn check_arns(arns: &[String], what: &str) -> ApiResult<()> {
    if arns.is_empty() || arns.len() > MAX_ARNS {
        return Err(ApiError::invalid(format!(
            "{what} must have between 1 and {MAX_ARNS} items; got {}.",
            arns.len()
        )));
    }
    Ok(())
}

pub async fn describe_service_deployments(
    state: &State,
    ctx: &Ctx,
    req: ecs::DescribeServiceDeploymentsRequest,
) -> ApiResult<ecs::DescribeServiceDeploymentsResponse> {
    let arns = req.service_deployment_arns.unwrap_or_default();
    check_arns(&arns, "serviceDeploymentArns")?;
    state.read(&ctx.scope, |acct| {
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for arn in &arns {
            let view = parse_arn(&ctx.scope, "service-deployment", arn).and_then(|(c, s, id)| {
                let c = acct.clusters.get(c)?;
                let svc = c.services.get(s)?;
                let h = &c.service_meta.get(s)?.history;
                Some(h.view(h.find(id)?, svc))
            });
            match view {
                Some(v) => found.push(v),
                None => failures.push(failure(arn.clone(), "MISSING")),
            }
        }
        Ok(ecs::DescribeServiceDeploymentsResponse {
            service_deployments: Some(found),
            failures: Some(failures),
        })
    })
}

pub async fn describe_service_revisions(
    state: &State,
    ctx: &Ctx,
    req: ecs::DescribeServiceRevisionsRequest,
) -> ApiResult<ecs::DescribeServiceRevisionsResponse> {
    let arns = req.service_revision_arns.unwrap_or_default();
    check_arns(&arns, "serviceRevisionArns")?;
    state.read(&ctx.scope, |acct| {
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for arn in &arns {
            let rev = parse_arn(&ctx.scope, "service-revision", arn).and_then(|(c, s, _)| {
                let h = &acct.clusters.get(c)?.service_meta.get(s)?.history;
                h.revision(arn).cloned()
            });
            match rev {
                Some(r) => found.push(r),
                None => failures.push(failure(arn.clone(), "MISSING")),
            }
        }
        Ok(ecs::DescribeServiceRevisionsResponse {
            service_revisions: Some(found),
            failures: Some(failures),
        })
    })
}

pub async fn stop_service_deployment(
    state: &State,
    ctx: &Ctx,
    req: ecs::StopServiceDeploymentRequest,
) -> ApiResult<ecs::StopServiceDeploymentResponse> {
    let arn = req.service_deployment_arn.clone().unwrap_or_default();
    match req.stop_type {
        None | Some(ecs::StopServiceDeploymentStopType::Rollback) => {}
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "stopType {other} is not supported: the valid value is ROLLBACK."
            )))
        }
    }
    let (cluster, service, id) = parse_arn(&ctx.scope, "service-deployment", &arn)
        .ok_or_else(|| ApiError::invalid(format!("Invalid service deployment ARN: {arn}")))?;
    state
        .write(&ctx.scope, |acct, tx| {
            super::cluster_name(&ctx.scope, Some(cluster)).map_err(|_| not_found())?;
            on_deployment(acct, tx, (cluster, service, id), |h, svc, lb, tx| {
                deployments::roll_back(h, svc, lb, tx, id, RollbackCause::Requested, ctx.now)
                    .map(drop)
                    .map_err(|e| match e {
                        RollbackError::NotInProgress(_) => {
                            ApiError::new("ConflictException", e.to_string())
                        }
                        RollbackError::NoSource => ApiError::invalid(e.to_string()),
                    })
            })?;
            Ok(ecs::StopServiceDeploymentResponse {
                service_deployment_arn: Some(arn.clone()),
            })
        })
        .await
}

pub async fn continue_service_deployment(
    state: &State,
    ctx: &Ctx,
    req: ecs::ContinueServiceDeploymentRequest,
) -> ApiResult<ecs::ContinueServiceDeploymentResponse> {
    let arn = req.service_deployment_arn.clone().unwrap_or_default();
    let hook_id = req.hook_id.clone().unwrap_or_default();
    let action = req
        .action
        .unwrap_or(ecs::DeploymentLifecycleHookAction::Continue);
    let (cluster, service, id) = parse_arn(&ctx.scope, "service-deployment", &arn)
        .ok_or_else(|| ApiError::invalid(format!("Invalid service deployment ARN: {arn}")))?;
    state
        .write(&ctx.scope, |acct, tx| {
            // Stored even if only the history changed: the service
            // controller, woken by the service, moves the deployment on.
            on_deployment(acct, tx, (cluster, service, id), |h, svc, lb, tx| {
                deployments::continue_deployment(h, svc, lb, tx, id, &hook_id, action, ctx.now)
                    .map_err(|e| match e {
                        deployments::ContinueError::Rollback(RollbackError::NotInProgress(_)) => {
                            ApiError::new("ConflictException", e.to_string())
                        }
                        _ => ApiError::invalid(e.to_string()),
                    })
            })?;
            Ok(ecs::ContinueServiceDeploymentResponse {
                service_deployment_arn: Some(arn.clone()),
            })
        })
        .await
}
