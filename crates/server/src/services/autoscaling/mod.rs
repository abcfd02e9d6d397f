//! Application Auto Scaling (AWS JSON 1.1, target prefix
//! `AnyScaleFrontendService`, signed as `application-autoscaling`) for ECS
//! services: scalable targets, scaling policies, scheduled actions,
//! scaling activities and tags. Handlers translate the wire to the
//! domain (`crate::core::autoscaling`) and back; a target tracking
//! policy's alarms go to the metric store (`Env::metrics`). The
//! autoscaling controller (`crate::controllers::autoscaling`) runs the
//! policies and scheduled actions.
//!
//! Every rejected request is a model error (`ValidationException`,
//! `ObjectNotFoundException`, `LimitExceededException`,
//! `InvalidNextTokenException`, `ResourceNotFoundException`,
//! `TooManyTagsException`) and changes nothing.

use std::collections::BTreeMap;

use base64::Engine;
use flotilla_model::wire::autoscaling::{self as wire, Operation};
use flotilla_model::Shape;
use serde::de::DeserializeOwned;

use crate::api::{Call, Ctx, Env, Reply, ServiceDef};
use crate::core::autoscaling::{
    self as core, alarms, object_not_found, validation, AlarmSide, Cause, OwnedAlarm, Policy,
    ScheduledAction, Target,
};
use crate::error::{ApiError, ApiResult};

/// Application Auto Scaling: AWS JSON 1.1, signed as `application-autoscaling`.
pub static SERVICE: ServiceDef = ServiceDef {
    schema: &wire::SERVICE,
    dispatch: |env, call| Box::pin(dispatch(env, call)),
    max_body: 1024 * 1024,
    body_too_large: "ValidationException",
};

/// Scaling policies per scalable target (Application Auto Scaling's quota).
const MAX_POLICIES: usize = 50;
/// Scheduled actions per scalable target.
const MAX_SCHEDULED_ACTIONS: usize = 200;
/// Tags per scalable target.
const MAX_TAGS: usize = 50;

async fn dispatch(env: &Env, call: Call<'_>) -> ApiResult<Reply> {
    let Some(op) = Operation::from_name(call.name()) else {
        return Err(call.unsupported("Application Auto Scaling"));
    };
    let ctx = &call.ctx;
    macro_rules! ops {
        ($($name:ident => $handler:path),* $(,)?) => {
            match op {
                $(Operation::$name => call.reply(&$handler(env, ctx, decode(&call)?).await?),)*
                _ => Err(call.unsupported("Application Auto Scaling")),
            }
        };
    }
    ops! {
        RegisterScalableTarget => register_scalable_target,
        DescribeScalableTargets => describe_scalable_targets,
        DeregisterScalableTarget => deregister_scalable_target,
        PutScalingPolicy => put_scaling_policy,
        DescribeScalingPolicies => describe_scaling_policies,
        DeleteScalingPolicy => delete_scaling_policy,
        PutScheduledAction => put_scheduled_action,
        DescribeScheduledActions => describe_scheduled_actions,
        DeleteScheduledAction => delete_scheduled_action,
        DescribeScalingActivities => describe_scaling_activities,
        TagResource => tag_resource,
        UntagResource => untag_resource,
        ListTagsForResource => list_tags_for_resource,
    }
}

/// Decodes a request as Application Auto Scaling reports bad input: a
/// value outside an enum or a broken model rule is a `ValidationException`
/// naming the member (a malformed body stays a `SerializationException`).
fn decode<T: DeserializeOwned + Shape>(call: &Call<'_>) -> ApiResult<T> {
    call.decode().map_err(|e| match e.code {
        "InvalidParameterException" => validation(format!("1 validation error detected: {}", e.message)),
        "SerializationException" if e.message.contains("unknown variant") => {
            // "Could not read A.B: unknown variant `X`, expected one of `P`, `Q`"
            let (at, rest) = e
                .message
                .strip_prefix("Could not read ")
                .and_then(|m| m.split_once(": "))
                .unwrap_or(("the request", &e.message));
            let value = rest.split('`').nth(1).unwrap_or_default();
            let allowed: Vec<&str> = rest
                .split_once("expected one of ")
                .map(|(_, l)| l.split(", ").map(|v| v.trim_matches('`')).collect())
                .unwrap_or_default();
            validation(format!(
                "1 validation error detected: Value '{value}' at '{at}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ))
        }
        _ => e,
    })
}

fn not_registered(resource_id: &str) -> ApiError {
    object_not_found(format!(
        "No scalable target registered for service namespace: ecs, resource ID: {resource_id}, scalable dimension: ecs:service:DesiredCount"
    ))
}

/// The resource id a request names, checked: ECS, `ecs:service:DesiredCount`,
/// `service/CLUSTER/SERVICE`.
fn resource(
    namespace: Option<wire::ServiceNamespace>,
    dimension: Option<wire::ScalableDimension>,
    resource_id: Option<&str>,
) -> ApiResult<String> {
    core::check_dimension(namespace, dimension)?;
    let id = resource_id.unwrap_or_default();
    core::parse_resource_id(id)?;
    Ok(id.to_string())
}

fn check_tags(tags: &BTreeMap<String, String>) -> ApiResult<()> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(validation(format!(
                "Invalid tag {k}: keys are 1-128 characters and values 0-256."
            )));
        }
        if k.starts_with("aws:") {
            return Err(validation(format!(
                "Invalid tag key {k}: keys starting with aws: are reserved."
            )));
        }
    }
    Ok(())
}

fn too_many_tags(arn: &str) -> ApiError {
    ApiError::new(
        "TooManyTagsException",
        format!("The scalable target {arn} would have more than {MAX_TAGS} tags."),
    )
}

// ---- scalable targets ----

async fn register_scalable_target(
    env: &Env,
    ctx: &Ctx,
    req: wire::RegisterScalableTargetRequest,
) -> ApiResult<wire::RegisterScalableTargetResponse> {
    let rid = resource(
        req.service_namespace,
        req.scalable_dimension,
        req.resource_id.as_deref(),
    )?;
    for (v, field) in [
        (req.min_capacity, "MinCapacity"),
        (req.max_capacity, "MaxCapacity"),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            return Err(validation(format!(
                "Invalid {field} {v}: capacity must be greater than or equal to 0."
            )));
        }
    }
    let tags = req.tags.clone().unwrap_or_default();
    check_tags(&tags)?;
    let now = ctx.now;
    let scope = &ctx.scope;
    env.state
        .write(scope, |acct, tx| {
            let Some(current) = core::service_capacity(acct, &rid) else {
                let (cluster, service) = core::parse_resource_id(&rid)?;
                let daemon = acct
                    .clusters
                    .get(cluster)
                    .and_then(|c| c.services.get(service))
                    .is_some_and(core::is_daemon);
                return Err(validation(if daemon {
                    format!("{rid} is a DAEMON service: it runs one task per container instance and has no desired count to scale.")
                } else {
                    format!("ECS service doesn't exist: {rid}")
                }));
            };
            let existing = acct.autoscaling.targets.get(&rid).cloned();
            let mut target = match existing {
                Some(t) => t,
                None => {
                    let (Some(min), Some(max)) = (req.min_capacity, req.max_capacity) else {
                        return Err(validation(
                            "MinCapacity and MaxCapacity are required to register a new scalable target.",
                        ));
                    };
                    Target {
                        resource_id: rid.clone(),
                        arn: core::target_arn(scope),
                        min_capacity: min,
                        max_capacity: max,
                        role_arn: format!(
                            "arn:aws:iam::{}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService",
                            scope.account
                        ),
                        creation_time: now,
                        ..Default::default()
                    }
                }
            };
            if let Some(min) = req.min_capacity {
                target.min_capacity = min;
            }
            if let Some(max) = req.max_capacity {
                target.max_capacity = max;
            }
            if target.min_capacity > target.max_capacity {
                return Err(validation(
                    "Minimum capacity cannot be greater than maximum capacity",
                ));
            }
            if let Some(role) = &req.role_arn {
                target.role_arn = role.clone();
            }
            if let Some(s) = &req.suspended_state {
                if let Some(v) = s.dynamic_scaling_in_suspended {
                    target.suspended.dynamic_in = v;
                }
                if let Some(v) = s.dynamic_scaling_out_suspended {
                    target.suspended.dynamic_out = v;
                }
                if let Some(v) = s.scheduled_scaling_suspended {
                    target.suspended.scheduled = v;
                }
            }
            target.tags.extend(tags.clone());
            if target.tags.len() > MAX_TAGS {
                return Err(too_many_tags(&target.arn));
            }
            // Checks done.
            target.store(tx);
            let arn = target.arn.clone();
            let (min, max) = (target.min_capacity, target.max_capacity);
            acct.autoscaling.targets.insert(rid.clone(), target);
            // New bounds past the capacity move it, as a scheduled action does.
            let bounded = current.clamp(min, max);
            if bounded != current {
                core::set_capacity(acct, tx, &rid, bounded, &Cause::Bounds { min, max }, now);
            }
            Ok(wire::RegisterScalableTargetResponse {
                scalable_target_arn: Some(arn),
            })
        })
        .await
}

/// A page of `items` after `token` (an opaque key), at most `size`.
fn page<T: Clone>(
    items: impl Iterator<Item = (String, T)>,
    token: Option<&str>,
    size: usize,
) -> ApiResult<(Vec<T>, Option<String>)> {
    let after = match token {
        None => None,
        Some(t) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::new(
                        "InvalidNextTokenException",
                        "The NextToken is not valid: it must be a token a previous call returned.",
                    )
                })?,
        ),
    };
    let mut out = Vec::new();
    let mut last: Option<String> = None;
    for (key, item) in items {
        if after.as_ref().is_some_and(|a| key.as_str() <= a.as_str()) {
            continue;
        }
        if out.len() == size {
            let token = last.map(|k| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k));
            return Ok((out, token));
        }
        out.push(item);
        last = Some(key);
    }
    Ok((out, None))
}

/// The named children (policies or scheduled actions) of the targets a
/// Describe call asks for (one resource, or all), filtered by name when
/// names are given, keyed `RESOURCE\nNAME` for [`page`], in their wire shape.
fn named_children<'a, C: 'a, W>(
    targets: &'a BTreeMap<String, core::Target>,
    resource_id: Option<&'a String>,
    names: &'a [String],
    children: impl Fn(&'a core::Target) -> &'a BTreeMap<String, C> + Copy + 'a,
    to_wire: impl Fn(&C, &str) -> W + Copy + 'a,
) -> impl Iterator<Item = (String, W)> + 'a {
    targets
        .iter()
        .filter(move |(id, _)| resource_id.is_none_or(|r| r == *id))
        .flat_map(move |(id, t)| {
            children(t)
                .iter()
                .filter(move |(n, _)| names.is_empty() || names.contains(n))
                .map(move |(n, c)| (format!("{id}\n{n}"), to_wire(c, id)))
        })
}

fn page_size(max_results: Option<i32>, max: usize) -> ApiResult<usize> {
    match max_results {
        None => Ok(max),
        Some(n) if n >= 1 => Ok((n as usize).min(max)),
        Some(n) => Err(validation(format!(
            "Invalid MaxResults {n}: it must be between 1 and {max}."
        ))),
    }
}

async fn describe_scalable_targets(
    env: &Env,
    ctx: &Ctx,
    req: wire::DescribeScalableTargetsRequest,
) -> ApiResult<wire::DescribeScalableTargetsResponse> {
    core::check_dimension(req.service_namespace, req.scalable_dimension)?;
    let size = page_size(req.max_results, 50)?;
    let ids = req.resource_ids.clone().unwrap_or_default();
    let (targets, next_token) = env.state.read(&ctx.scope, |acct| {
        let items = acct
            .autoscaling
            .targets
            .iter()
            .filter(|(id, _)| ids.is_empty() || ids.contains(id))
            .map(|(id, t)| (id.clone(), t.to_wire()));
        page(items, req.next_token.as_deref(), size)
    })?;
    Ok(wire::DescribeScalableTargetsResponse {
        scalable_targets: Some(targets),
        next_token,
    })
}

async fn deregister_scalable_target(
    env: &Env,
    ctx: &Ctx,
    req: wire::DeregisterScalableTargetRequest,
) -> ApiResult<wire::DeregisterScalableTargetResponse> {
    let rid = resource(
        req.service_namespace,
        req.scalable_dimension,
        req.resource_id.as_deref(),
    )?;
    let target = env
        .state
        .write(&ctx.scope, |acct, tx| {
            let target = acct
                .autoscaling
                .targets
                .remove(&rid)
                .ok_or_else(|| not_registered(&rid))?;
            tx.delete(crate::core::state::Key::ScalableTarget(&rid));
            Ok(target)
        })
        .await?;
    let owned: Vec<String> = target
        .policies
        .values()
        .flat_map(|p| p.alarms.iter().map(|a| a.name.clone()))
        .collect();
    delete_alarms(env, ctx, &owned).await;
    Ok(wire::DeregisterScalableTargetResponse {})
}

/// Deletes alarms a policy owned. The policy is gone already, so a
/// failure here only leaves an alarm whose action names nothing (logged).
async fn delete_alarms(env: &Env, ctx: &Ctx, names: &[String]) {
    if names.is_empty() {
        return;
    }
    let at = flotilla_metrics::Timestamp::from_secs_f64(ctx.now)
        .unwrap_or(flotilla_metrics::Timestamp(0));
    if let Err(e) = env.metrics.delete_alarms(&ctx.scope, names, at).await {
        tracing::warn!(error = %e, ?names, "could not delete a scaling policy's alarms");
    }
}

// ---- scaling policies ----

fn check_step(cfg: &wire::StepScalingPolicyConfiguration) -> ApiResult<()> {
    let kind = cfg.adjustment_type.ok_or_else(|| {
        validation("AdjustmentType is required for a StepScaling policy configuration.")
    })?;
    let steps = cfg.step_adjustments.as_deref().unwrap_or_default();
    if steps.is_empty() {
        return Err(validation(
            "At least one step adjustment is required for a StepScaling policy configuration.",
        ));
    }
    if let Some(c) = cfg.cooldown.filter(|c| !(0..=86_400).contains(c)) {
        return Err(validation(format!(
            "Invalid Cooldown {c}: a cooldown is between 0 and 86400 seconds."
        )));
    }
    if let Some(m) = cfg.min_adjustment_magnitude {
        if kind != wire::AdjustmentType::PercentChangeInCapacity {
            return Err(validation(
                "MinAdjustmentMagnitude is only supported with the adjustment type PercentChangeInCapacity.",
            ));
        }
        if m < 1 {
            return Err(validation(format!(
                "Invalid MinAdjustmentMagnitude {m}: it must be at least 1."
            )));
        }
    }
    let lo = |s: &wire::StepAdjustment| s.metric_interval_lower_bound.unwrap_or(f64::NEG_INFINITY);
    let hi = |s: &wire::StepAdjustment| s.metric_interval_upper_bound.unwrap_or(f64::INFINITY);
    for s in steps {
        if s.metric_interval_lower_bound.is_none()
            && s.metric_interval_upper_bound.is_none()
            && steps.len() > 1
        {
            return Err(validation(
                "The upper and lower bound can't both be null in the same step adjustment.",
            ));
        }
        if lo(s) >= hi(s) {
            return Err(validation(format!(
                "Step adjustment upper bound {} must be greater than its lower bound {}.",
                hi(s),
                lo(s)
            )));
        }
        if kind == wire::AdjustmentType::ExactCapacity && s.scaling_adjustment.unwrap_or(0) < 0 {
            return Err(validation(
                "ScalingAdjustment must be non-negative with the adjustment type ExactCapacity.",
            ));
        }
    }
    let mut sorted: Vec<&wire::StepAdjustment> = steps.iter().collect();
    sorted.sort_by(|a, b| lo(a).total_cmp(&lo(b)));
    for w in sorted.windows(2) {
        if hi(w[0]) != lo(w[1]) {
            return Err(validation(
                "Step adjustment intervals can't overlap or have a gap between them.",
            ));
        }
    }
    let first = sorted[0];
    let last = sorted[sorted.len() - 1];
    if lo(first) < 0.0 && first.metric_interval_lower_bound.is_some() {
        return Err(validation(
            "A step adjustment has a negative lower bound, so one step adjustment must have a null lower bound.",
        ));
    }
    if hi(last) > 0.0 && last.metric_interval_upper_bound.is_some() {
        return Err(validation(
            "A step adjustment has a positive upper bound, so one step adjustment must have a null upper bound.",
        ));
    }
    Ok(())
}

async fn put_scaling_policy(
    env: &Env,
    ctx: &Ctx,
    req: wire::PutScalingPolicyRequest,
) -> ApiResult<wire::PutScalingPolicyResponse> {
    let rid = resource(
        req.service_namespace,
        req.scalable_dimension,
        req.resource_id.as_deref(),
    )?;
    let name = req.policy_name.clone().unwrap_or_default();
    let policy_type = req.policy_type.unwrap_or(wire::PolicyType::StepScaling);
    match policy_type {
        wire::PolicyType::StepScaling => {
            let cfg = req.step_scaling_policy_configuration.as_ref().ok_or_else(|| {
                validation("StepScalingPolicyConfiguration is required for a policy of type StepScaling.")
            })?;
            if req.target_tracking_scaling_policy_configuration.is_some() {
                return Err(validation(
                    "TargetTrackingScalingPolicyConfiguration cannot be specified for a policy of type StepScaling.",
                ));
            }
            check_step(cfg)?;
        }
        wire::PolicyType::TargetTrackingScaling => {
            if req.target_tracking_scaling_policy_configuration.is_none() {
                return Err(validation(
                    "TargetTrackingScalingPolicyConfiguration is required for a policy of type TargetTrackingScaling.",
                ));
            }
            if req.step_scaling_policy_configuration.is_some() {
                return Err(validation(
                    "StepScalingPolicyConfiguration cannot be specified for a policy of type TargetTrackingScaling.",
                ));
            }
        }
        other => {
            return Err(validation(format!(
                "Unsupported policy type {other}: Flotilla scales ECS services with StepScaling and TargetTrackingScaling policies."
            )))
        }
    }
    if req.predictive_scaling_policy_configuration.is_some() {
        return Err(validation(
            "PredictiveScalingPolicyConfiguration is not supported: Flotilla scales ECS services with StepScaling and TargetTrackingScaling policies.",
        ));
    }
    // What exists now: the target, and the policy if this updates it.
    let existing = env.state.read(&ctx.scope, |acct| {
        let t = acct.autoscaling.targets.get(&rid).ok_or_else(|| not_registered(&rid))?;
        if !t.policies.contains_key(&name) && t.policies.len() >= MAX_POLICIES {
            return Err(ApiError::new(
                "LimitExceededException",
                format!("A scalable target can have at most {MAX_POLICIES} scaling policies; {rid} has {}.", t.policies.len()),
            ));
        }
        Ok(t.policies.get(&name).cloned())
    })?;
    let arn = existing
        .as_ref()
        .map(|p| p.arn.clone())
        .unwrap_or_else(|| core::policy_arn(&ctx.scope, &rid, &name));
    // A target tracking policy's alarms: the same names on update.
    let mut owned: Vec<OwnedAlarm> = Vec::new();
    if let Some(cfg) = &req.target_tracking_scaling_policy_configuration {
        let old = |side| {
            existing
                .iter()
                .flat_map(|p| p.alarms.iter())
                .find(|a| a.side == side)
                .map(|a| a.name.clone())
        };
        let high =
            old(AlarmSide::High).unwrap_or_else(|| alarms::alarm_name(&rid, AlarmSide::High));
        let low = old(AlarmSide::Low).unwrap_or_else(|| alarms::alarm_name(&rid, AlarmSide::Low));
        let inputs = alarms::target_tracking_alarms(&rid, &arn, cfg, (&high, &low))?;
        let at = flotilla_metrics::Timestamp::from_secs_f64(ctx.now)
            .unwrap_or(flotilla_metrics::Timestamp(0));
        for (side, input) in inputs {
            if let Err(e) = env.metrics.put_metric_alarm(&ctx.scope, &input, at).await {
                let created: Vec<String> = owned.iter().map(|a| a.name.clone()).collect();
                if existing.is_none() {
                    delete_alarms(env, ctx, &created).await;
                }
                return Err(if e.is_client_fault() {
                    validation(format!("The policy's alarm could not be created: {e}"))
                } else {
                    ApiError::new(
                        "InternalServiceException",
                        format!("The policy's alarm could not be created: {e}"),
                    )
                });
            }
            owned.push(OwnedAlarm {
                arn: flotilla_metrics::alarm::alarm_arn(&ctx.scope, &input.alarm_name),
                name: input.alarm_name,
                side,
            });
        }
    }
    let now = ctx.now;
    let policy = Policy {
        name: name.clone(),
        arn: arn.clone(),
        policy_type,
        creation_time: existing.as_ref().map_or(now, |p| p.creation_time),
        step: req.step_scaling_policy_configuration.clone(),
        target_tracking: req.target_tracking_scaling_policy_configuration.clone(),
        alarms: owned.clone(),
        cooldowns: existing
            .as_ref()
            .map(|p| p.cooldowns.clone())
            .unwrap_or_default(),
    };
    let written = env
        .state
        .write(&ctx.scope, |acct, tx| {
            let t = acct
                .autoscaling
                .targets
                .get_mut(&rid)
                .ok_or_else(|| not_registered(&rid))?;
            let before = t.policies.insert(name.clone(), policy);
            t.store(tx);
            Ok(before)
        })
        .await;
    match written {
        Ok(before) => {
            // Alarms of the old configuration that the new one has not (a
            // target tracking policy that became a step policy).
            let stale: Vec<String> = before
                .iter()
                .flat_map(|p| p.alarms.iter())
                .filter(|a| !owned.iter().any(|o| o.name == a.name))
                .map(|a| a.name.clone())
                .collect();
            delete_alarms(env, ctx, &stale).await;
        }
        Err(e) => {
            if existing.is_none() {
                let created: Vec<String> = owned.iter().map(|a| a.name.clone()).collect();
                delete_alarms(env, ctx, &created).await;
            }
            return Err(e);
        }
    }
    Ok(wire::PutScalingPolicyResponse {
        policy_arn: Some(arn),
        alarms: (!owned.is_empty()).then(|| {
            owned
                .iter()
                .map(|a| wire::Alarm {
                    alarm_name: Some(a.name.clone()),
                    alarm_arn: Some(a.arn.clone()),
                })
                .collect()
        }),
    })
}

async fn describe_scaling_policies(
    env: &Env,
    ctx: &Ctx,
    req: wire::DescribeScalingPoliciesRequest,
) -> ApiResult<wire::DescribeScalingPoliciesResponse> {
    core::check_dimension(req.service_namespace, req.scalable_dimension)?;
    if let Some(id) = &req.resource_id {
        core::parse_resource_id(id)?;
    }
    let size = page_size(req.max_results, 10)?;
    let names = req.policy_names.clone().unwrap_or_default();
    let (policies, next_token) = env.state.read(&ctx.scope, |acct| {
        let items = named_children(
            &acct.autoscaling.targets,
            req.resource_id.as_ref(),
            &names,
            |t| &t.policies,
            |p, id| p.to_wire(id),
        );
        page(items, req.next_token.as_deref(), size)
    })?;
    // A step policy's alarms are the user's alarms that name it, as AWS
    // lists them.
    let policies = policies
        .into_iter()
        .map(|mut p| {
            if p.policy_type == Some(wire::PolicyType::StepScaling) {
                let input = flotilla_metrics::DescribeAlarmsInput {
                    action_prefix: p.policy_arn.clone(),
                    max_records: Some(100),
                    ..Default::default()
                };
                if let Ok(out) = env.metrics.describe_alarms(&ctx.scope, &input) {
                    let named: Vec<wire::Alarm> = out
                        .metric_alarms
                        .into_iter()
                        .map(|a| wire::Alarm {
                            alarm_name: Some(a.alarm_name),
                            alarm_arn: Some(a.alarm_arn),
                        })
                        .collect();
                    p.alarms = (!named.is_empty()).then_some(named);
                }
            }
            p
        })
        .collect();
    Ok(wire::DescribeScalingPoliciesResponse {
        scaling_policies: Some(policies),
        next_token,
    })
}

async fn delete_scaling_policy(
    env: &Env,
    ctx: &Ctx,
    req: wire::DeleteScalingPolicyRequest,
) -> ApiResult<wire::DeleteScalingPolicyResponse> {
    let rid = resource(
        req.service_namespace,
        req.scalable_dimension,
        req.resource_id.as_deref(),
    )?;
    let name = req.policy_name.clone().unwrap_or_default();
    let policy = env
        .state
        .write(&ctx.scope, |acct, tx| {
            let missing = || {
                object_not_found(format!(
                    "No scaling policy found for service namespace: ecs, resource ID: {rid}, scalable dimension: ecs:service:DesiredCount, policy name: {name}"
                ))
            };
            let t = acct.autoscaling.targets.get_mut(&rid).ok_or_else(missing)?;
            let p = t.policies.remove(&name).ok_or_else(missing)?;
            t.store(tx);
            Ok(p)
        })
        .await?;
    let owned: Vec<String> = policy.alarms.iter().map(|a| a.name.clone()).collect();
    delete_alarms(env, ctx, &owned).await;
    Ok(wire::DeleteScalingPolicyResponse {})
}

// ---- scheduled actions ----

async fn put_scheduled_action(
    env: &Env,
    ctx: &Ctx,
    req: wire::PutScheduledActionRequest,
) -> ApiResult<wire::PutScheduledActionResponse> {
    let rid = resource(
        req.service_namespace,
        req.scalable_dimension,
        req.resource_id.as_deref(),
    )?;
    let name = req.scheduled_action_name.clone().unwrap_or_default();
    if name.starts_with(' ')
        || name.ends_with(' ')
        || name
            .chars()
            .any(|c| c.is_control() || matches!(c, ':' | '/' | '|'))
    {
        return Err(validation(format!(
            "Invalid ScheduledActionName '{name}': no leading or trailing spaces, control characters, ':', '/' or '|'."
        )));
    }
    if let Some(s) = &req.schedule {
        core::schedule::Schedule::parse(s).map_err(|e| validation(e.0))?;
    }
    if let Some(tz) = &req.timezone {
        core::schedule::zone(Some(tz)).map_err(|e| validation(e.0))?;
    }
    if let (Some(s), Some(e)) = (req.start_time, req.end_time) {
        if s > e {
            return Err(validation("StartTime must be before EndTime."));
        }
    }
    let action = req.scalable_target_action.clone().unwrap_or_default();
    for (v, field) in [
        (action.min_capacity, "MinCapacity"),
        (action.max_capacity, "MaxCapacity"),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            return Err(validation(format!(
                "Invalid ScalableTargetAction.{field} {v}: capacity must be greater than or equal to 0."
            )));
        }
    }
    if let (Some(min), Some(max)) = (action.min_capacity, action.max_capacity) {
        if min > max {
            return Err(validation(
                "Minimum capacity cannot be greater than maximum capacity",
            ));
        }
    }
    let now = ctx.now;
    let scope = &ctx.scope;
    env.state
        .write(scope, |acct, tx| {
            let t = acct.autoscaling.targets.get_mut(&rid).ok_or_else(|| not_registered(&rid))?;
            let mut a = match t.scheduled_actions.get(&name) {
                Some(a) => a.clone(),
                None => {
                    if t.scheduled_actions.len() >= MAX_SCHEDULED_ACTIONS {
                        return Err(ApiError::new(
                            "LimitExceededException",
                            format!("A scalable target can have at most {MAX_SCHEDULED_ACTIONS} scheduled actions."),
                        ));
                    }
                    let schedule = req.schedule.clone().ok_or_else(|| {
                        validation("Schedule is required to create a scheduled action.")
                    })?;
                    ScheduledAction {
                        name: name.clone(),
                        arn: core::scheduled_action_arn(scope, &rid, &name),
                        schedule,
                        timezone: None,
                        start_time: None,
                        end_time: None,
                        min_capacity: None,
                        max_capacity: None,
                        creation_time: now,
                        last_run: None,
                    }
                }
            };
            // A new schedule or zone starts afresh: it runs from now on.
            if req.schedule.as_ref().is_some_and(|s| *s != a.schedule)
                || (req.timezone.is_some() && req.timezone != a.timezone)
            {
                a.last_run = None;
                a.creation_time = now;
            }
            if let Some(s) = &req.schedule {
                a.schedule = s.clone();
            }
            if req.timezone.is_some() {
                a.timezone = req.timezone.clone();
            }
            if req.start_time.is_some() {
                a.start_time = req.start_time;
            }
            if req.end_time.is_some() {
                a.end_time = req.end_time;
            }
            if req.scalable_target_action.is_some() {
                a.min_capacity = action.min_capacity;
                a.max_capacity = action.max_capacity;
            }
            t.scheduled_actions.insert(name.clone(), a);
            t.store(tx);
            Ok(wire::PutScheduledActionResponse {})
        })
        .await
}

async fn describe_scheduled_actions(
    env: &Env,
    ctx: &Ctx,
    req: wire::DescribeScheduledActionsRequest,
) -> ApiResult<wire::DescribeScheduledActionsResponse> {
    core::check_dimension(req.service_namespace, req.scalable_dimension)?;
    let size = page_size(req.max_results, 50)?;
    let names = req.scheduled_action_names.clone().unwrap_or_default();
    let (actions, next_token) = env.state.read(&ctx.scope, |acct| {
        let items = named_children(
            &acct.autoscaling.targets,
            req.resource_id.as_ref(),
            &names,
            |t| &t.scheduled_actions,
            |a, id| a.to_wire(id),
        );
        page(items, req.next_token.as_deref(), size)
    })?;
    Ok(wire::DescribeScheduledActionsResponse {
        scheduled_actions: Some(actions),
        next_token,
    })
}

async fn delete_scheduled_action(
    env: &Env,
    ctx: &Ctx,
    req: wire::DeleteScheduledActionRequest,
) -> ApiResult<wire::DeleteScheduledActionResponse> {
    let rid = resource(
        req.service_namespace,
        req.scalable_dimension,
        req.resource_id.as_deref(),
    )?;
    let name = req.scheduled_action_name.clone().unwrap_or_default();
    env.state
        .write(&ctx.scope, |acct, tx| {
            let missing = || {
                object_not_found(format!(
                    "No scheduled action found for service namespace: ecs, resource ID: {rid}, scalable dimension: ecs:service:DesiredCount, scheduled action name: {name}"
                ))
            };
            let t = acct.autoscaling.targets.get_mut(&rid).ok_or_else(missing)?;
            t.scheduled_actions.remove(&name).ok_or_else(missing)?;
            t.store(tx);
            Ok(wire::DeleteScheduledActionResponse {})
        })
        .await
}

// ---- activities ----

async fn describe_scaling_activities(
    env: &Env,
    ctx: &Ctx,
    req: wire::DescribeScalingActivitiesRequest,
) -> ApiResult<wire::DescribeScalingActivitiesResponse> {
    core::check_dimension(req.service_namespace, req.scalable_dimension)?;
    if req.scalable_dimension.is_some() && req.resource_id.is_none() {
        return Err(validation(
            "If you specify a scalable dimension, you must also specify a resource ID.",
        ));
    }
    let size = page_size(req.max_results, 50)?;
    let not_scaled = req.include_not_scaled_activities.unwrap_or(false);
    let (activities, next_token) = env.state.read(&ctx.scope, |acct| {
        // Newest first: the key sorts newest first too (inverted time-ordered id).
        let mut all: Vec<(String, wire::ScalingActivity)> = acct
            .autoscaling
            .activities
            .iter()
            .filter(|(id, _)| req.resource_id.as_ref().is_none_or(|r| r == *id))
            .flat_map(|(_, list)| list.iter())
            .filter(|(_, a)| not_scaled || a.not_scaled_reasons.is_none())
            .map(|(id, a)| (id.clone(), a.clone()))
            .collect();
        all.sort_by(|a, b| b.0.cmp(&a.0));
        let items = all.into_iter().map(|(id, a)| (newest_first_key(&id), a));
        page(items, req.next_token.as_deref(), size)
    })?;
    Ok(wire::DescribeScalingActivitiesResponse {
        scaling_activities: Some(activities),
        next_token,
    })
}

/// A key that sorts time-ordered ids newest first.
fn newest_first_key(id: &str) -> String {
    id.chars()
        .map(|c| match c.to_digit(16) {
            Some(d) => std::char::from_digit(15 - d, 16).unwrap_or(c),
            None => c,
        })
        .collect()
}

// ---- tags ----

/// The scalable target an ARN names, by resource id.
fn target_by_arn(acct: &crate::core::state::Account, arn: &str) -> ApiResult<String> {
    acct.autoscaling
        .targets
        .iter()
        .find(|(_, t)| t.arn == arn)
        .map(|(id, _)| id.clone())
        .ok_or_else(|| {
            ApiError::new(
                "ResourceNotFoundException",
                format!("No scalable target found for ARN {arn}."),
            )
        })
}

fn check_arn(arn: Option<&str>) -> ApiResult<&str> {
    let arn = arn.unwrap_or_default();
    let ok = arn.starts_with("arn:")
        && arn.contains(":application-autoscaling:")
        && arn.contains(":scalable-target/");
    if !ok {
        return Err(validation(format!(
            "Invalid ResourceARN {arn}: it must be a scalable target's ARN (arn:aws:application-autoscaling:REGION:ACCOUNT:scalable-target/ID)."
        )));
    }
    Ok(arn)
}

async fn tag_resource(
    env: &Env,
    ctx: &Ctx,
    req: wire::TagResourceRequest,
) -> ApiResult<wire::TagResourceResponse> {
    let arn = check_arn(req.resource_arn.as_deref())?;
    let tags = req.tags.clone().unwrap_or_default();
    check_tags(&tags)?;
    env.state
        .write(&ctx.scope, |acct, tx| {
            let rid = target_by_arn(acct, arn)?;
            let t = acct
                .autoscaling
                .targets
                .get_mut(&rid)
                .ok_or_else(|| not_registered(&rid))?;
            let mut merged = t.tags.clone();
            merged.extend(tags.clone());
            if merged.len() > MAX_TAGS {
                return Err(too_many_tags(arn));
            }
            t.tags = merged;
            t.store(tx);
            Ok(wire::TagResourceResponse {})
        })
        .await
}

async fn untag_resource(
    env: &Env,
    ctx: &Ctx,
    req: wire::UntagResourceRequest,
) -> ApiResult<wire::UntagResourceResponse> {
    let arn = check_arn(req.resource_arn.as_deref())?;
    let keys = req.tag_keys.clone().unwrap_or_default();
    env.state
        .write(&ctx.scope, |acct, tx| {
            let rid = target_by_arn(acct, arn)?;
            let t = acct
                .autoscaling
                .targets
                .get_mut(&rid)
                .ok_or_else(|| not_registered(&rid))?;
            for k in &keys {
                t.tags.remove(k);
            }
            t.store(tx);
            Ok(wire::UntagResourceResponse {})
        })
        .await
}

async fn list_tags_for_resource(
    env: &Env,
    ctx: &Ctx,
    req: wire::ListTagsForResourceRequest,
) -> ApiResult<wire::ListTagsForResourceResponse> {
    let arn = check_arn(req.resource_arn.as_deref())?;
    env.state.read(&ctx.scope, |acct| {
        let rid = target_by_arn(acct, arn)?;
        Ok(wire::ListTagsForResourceResponse {
            tags: Some(acct.autoscaling.targets[&rid].tags.clone()),
        })
    })
}
