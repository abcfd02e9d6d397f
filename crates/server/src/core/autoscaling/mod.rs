//! Application Auto Scaling for ECS services: scalable targets (one per
//! service, dimension `ecs:service:DesiredCount`), their scaling policies
//! and scheduled actions, and the scaling activities that tell what each
//! did. The API handlers (`crate::services::autoscaling`) and the
//! autoscaling controller (`crate::controllers::autoscaling`) share these
//! operations; [`policy`] decides what a policy does when its alarm fires,
//! [`schedule`] when a scheduled action runs.
//!
//! Storage (namespace `autoscaling`, beside ECS's objects in the cluster
//! store): one record per scalable target under `target/RESOURCE-ID`
//! holding the target with its policies and scheduled actions (a target is
//! small and changes as a whole), and one record per activity under
//! `activity/RESOURCE-ID/ID`. Activities outlive their target, as in AWS
//! (which keeps six weeks of them); Flotilla keeps the newest
//! [`MAX_ACTIVITIES`] per resource.
//!
//! A scaling changes the service's `desiredCount` the way UpdateService
//! does (`super::services::set_desired_count`): the service controller
//! starts or stops the tasks, and the service's events tell it.

pub mod alarms;
pub mod policy;
pub mod schedule;

use std::collections::BTreeMap;

use flotilla_model::arn::Scope;
use flotilla_model::lifecycle::ServiceStatus;
use flotilla_model::wire::autoscaling as wire;
use serde::{Deserialize, Serialize};

use super::state::{Account, Key, Tx};
use crate::error::{ApiError, ApiResult};
pub use policy::{Cooldowns, Suspended};

/// The store namespace of this module's keys.
pub const NAMESPACE: &str = "autoscaling";

/// Activities kept per resource; older ones are forgotten.
pub const MAX_ACTIVITIES: usize = 100;

/// An account's Application Auto Scaling objects in one region.
#[derive(Debug, Default)]
pub struct Scaling {
    /// Scalable targets by resource id (`service/CLUSTER/SERVICE`).
    pub targets: BTreeMap<String, Target>,
    /// Activities by resource id, then by id (time ordered).
    pub activities: BTreeMap<String, BTreeMap<String, wire::ScalingActivity>>,
}

/// A scalable target with its policies and scheduled actions: what is
/// stored under `target/RESOURCE-ID`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub resource_id: String,
    pub arn: String,
    pub min_capacity: i32,
    pub max_capacity: i32,
    pub role_arn: String,
    pub creation_time: f64,
    #[serde(default)]
    pub suspended: Suspended,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// By policy name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, Policy>,
    /// By action name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scheduled_actions: BTreeMap<String, ScheduledAction>,
}

/// A scaling policy as stored: the configuration as given, the alarms it
/// owns (target tracking) and its cooldown clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub name: String,
    pub arn: String,
    pub policy_type: wire::PolicyType,
    pub creation_time: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<wire::StepScalingPolicyConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_tracking: Option<wire::TargetTrackingScalingPolicyConfiguration>,
    /// The alarms the policy created and deletes with itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<OwnedAlarm>,
    #[serde(default)]
    pub cooldowns: Cooldowns,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnedAlarm {
    pub name: String,
    pub arn: String,
    pub side: AlarmSide,
}

/// Which of a target tracking policy's two alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlarmSide {
    High,
    Low,
}

/// A scheduled action as stored: the request as given, and when it last ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledAction {
    pub name: String,
    pub arn: String,
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_capacity: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_capacity: Option<i32>,
    pub creation_time: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<f64>,
}

impl ScheduledAction {
    /// When it runs next (seconds since the epoch), if ever. A schedule
    /// that no longer parses (it was checked when stored) never runs.
    pub fn next_run(&self) -> Option<f64> {
        let s = schedule::Schedule::parse(&self.schedule).ok()?;
        let tz = schedule::zone(self.timezone.as_deref()).ok()?;
        schedule::next_run(
            &s,
            &tz,
            self.start_time,
            self.end_time,
            self.creation_time,
            self.last_run,
        )
    }
}

/// `ValidationException`.
pub fn validation(message: impl Into<String>) -> ApiError {
    ApiError::new("ValidationException", message)
}

/// `ObjectNotFoundException`.
pub fn object_not_found(message: impl Into<String>) -> ApiError {
    ApiError::new("ObjectNotFoundException", message)
}

/// The cluster and service an ECS resource id names.
pub fn parse_resource_id(resource_id: &str) -> ApiResult<(&str, &str)> {
    let parts: Vec<&str> = resource_id.split('/').collect();
    match parts.as_slice() {
        ["service", cluster, service] if !cluster.is_empty() && !service.is_empty() => {
            Ok((cluster, service))
        }
        _ => Err(validation(format!(
            "Unsupported resource ID: {resource_id}. An ECS service's resource ID is service/CLUSTER-NAME/SERVICE-NAME."
        ))),
    }
}

/// Checks the namespace and dimension a request names: Flotilla scales
/// the desired count of ECS services.
pub fn check_dimension(
    namespace: Option<wire::ServiceNamespace>,
    dimension: Option<wire::ScalableDimension>,
) -> ApiResult<()> {
    if let Some(ns) = namespace {
        if ns != wire::ServiceNamespace::Ecs {
            return Err(validation(format!(
                "Unsupported service namespace: {ns}. Flotilla scales ECS services only (ServiceNamespace ecs)."
            )));
        }
    }
    if let Some(d) = dimension {
        if d != wire::ScalableDimension::EcsServiceDesiredCount {
            return Err(validation(format!(
                "Unsupported scalable dimension: {d}. The scalable dimension of an ECS service is ecs:service:DesiredCount."
            )));
        }
    }
    Ok(())
}

/// The desired count of the ACTIVE REPLICA service a resource id names (a
/// DAEMON service has no desired count to scale).
pub fn service_capacity(acct: &Account, resource_id: &str) -> Option<i32> {
    let (cluster, service) = parse_resource_id(resource_id).ok()?;
    let svc = acct
        .clusters
        .get(cluster)
        .filter(|c| c.is_active())?
        .services
        .get(service)?;
    (svc.lifecycle() == ServiceStatus::Active && !is_daemon(svc))
        .then(|| svc.desired_count.unwrap_or(0))
}

/// Whether a service is a DAEMON service (one task per instance).
pub fn is_daemon(svc: &flotilla_model::ecs::Service) -> bool {
    svc.scheduling_strategy == Some(flotilla_model::ecs::SchedulingStrategy::Daemon)
}

/// `arn:aws:application-autoscaling:REGION:ACCOUNT:scalable-target/ID`.
pub fn target_arn(scope: &Scope) -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "arn:aws:application-autoscaling:{}:{}:scalable-target/{a}{}",
        scope.region,
        scope.account,
        &b[..4]
    )
}

/// `arn:aws:autoscaling:REGION:ACCOUNT:scalingPolicy:UUID:resource/ecs/RESOURCE:policyName/NAME`.
pub fn policy_arn(scope: &Scope, resource_id: &str, name: &str) -> String {
    format!(
        "arn:aws:autoscaling:{}:{}:scalingPolicy:{}:resource/ecs/{resource_id}:policyName/{name}",
        scope.region,
        scope.account,
        uuid::Uuid::new_v4()
    )
}

/// `arn:aws:autoscaling:REGION:ACCOUNT:scheduledAction:UUID:resource/ecs/RESOURCE:scheduledActionName/NAME`.
pub fn scheduled_action_arn(scope: &Scope, resource_id: &str, name: &str) -> String {
    format!(
        "arn:aws:autoscaling:{}:{}:scheduledAction:{}:resource/ecs/{resource_id}:scheduledActionName/{name}",
        scope.region,
        scope.account,
        uuid::Uuid::new_v4()
    )
}

/// The resource id and policy name a policy ARN names.
pub fn parse_policy_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:aws:autoscaling:")?;
    let (_, rest) = rest.split_once(":scalingPolicy:")?;
    let (_, rest) = rest.split_once(":resource/ecs/")?;
    rest.split_once(":policyName/")
}

impl Target {
    pub fn to_wire(&self) -> wire::ScalableTarget {
        wire::ScalableTarget {
            service_namespace: Some(wire::ServiceNamespace::Ecs),
            resource_id: Some(self.resource_id.clone()),
            scalable_dimension: Some(wire::ScalableDimension::EcsServiceDesiredCount),
            min_capacity: Some(self.min_capacity),
            max_capacity: Some(self.max_capacity),
            predicted_capacity: None,
            role_arn: Some(self.role_arn.clone()),
            creation_time: Some(self.creation_time),
            suspended_state: Some(wire::SuspendedState {
                dynamic_scaling_in_suspended: Some(self.suspended.dynamic_in),
                dynamic_scaling_out_suspended: Some(self.suspended.dynamic_out),
                scheduled_scaling_suspended: Some(self.suspended.scheduled),
            }),
            scalable_target_arn: Some(self.arn.clone()),
        }
    }

    /// Writes the target (with its policies and actions).
    pub fn store(&self, tx: &mut Tx<'_>) {
        tx.put(Key::ScalableTarget(&self.resource_id), self);
    }
}

impl Policy {
    pub fn to_wire(&self, resource_id: &str) -> wire::ScalingPolicy {
        wire::ScalingPolicy {
            policy_arn: Some(self.arn.clone()),
            policy_name: Some(self.name.clone()),
            service_namespace: Some(wire::ServiceNamespace::Ecs),
            resource_id: Some(resource_id.to_string()),
            scalable_dimension: Some(wire::ScalableDimension::EcsServiceDesiredCount),
            policy_type: Some(self.policy_type),
            step_scaling_policy_configuration: self.step.clone(),
            target_tracking_scaling_policy_configuration: self.target_tracking.clone(),
            predictive_scaling_policy_configuration: None,
            alarms: (!self.alarms.is_empty()).then(|| {
                self.alarms
                    .iter()
                    .map(|a| wire::Alarm {
                        alarm_name: Some(a.name.clone()),
                        alarm_arn: Some(a.arn.clone()),
                    })
                    .collect()
            }),
            creation_time: Some(self.creation_time),
        }
    }
}

impl ScheduledAction {
    pub fn to_wire(&self, resource_id: &str) -> wire::ScheduledAction {
        wire::ScheduledAction {
            scheduled_action_name: Some(self.name.clone()),
            scheduled_action_arn: Some(self.arn.clone()),
            service_namespace: Some(wire::ServiceNamespace::Ecs),
            schedule: Some(self.schedule.clone()),
            timezone: self.timezone.clone(),
            resource_id: Some(resource_id.to_string()),
            scalable_dimension: Some(wire::ScalableDimension::EcsServiceDesiredCount),
            start_time: self.start_time,
            end_time: self.end_time,
            scalable_target_action: Some(wire::ScalableTargetAction {
                min_capacity: self.min_capacity,
                max_capacity: self.max_capacity,
            }),
            creation_time: Some(self.creation_time),
        }
    }
}

/// Why a capacity changes, for the activity that records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// An alarm entering (or staying in) `state` triggered a policy.
    Alarm {
        alarm: String,
        state: String,
        policy: String,
    },
    /// A scheduled action ran.
    Scheduled { action: String },
    /// RegisterScalableTarget moved the bounds past the capacity.
    Bounds { min: i32, max: i32 },
}

impl Cause {
    /// As Application Auto Scaling words an activity's `Cause`.
    pub fn text(&self) -> String {
        match self {
            Cause::Alarm {
                alarm,
                state,
                policy,
            } => format!("monitor alarm {alarm} in state {state} triggered policy {policy}"),
            Cause::Scheduled { action } => format!("scheduled action name {action} was triggered"),
            Cause::Bounds { min, max } => {
                format!("minimum capacity was set to {min} and maximum capacity was set to {max}")
            }
        }
    }
}

/// A new activity for a resource.
pub fn activity(
    resource_id: &str,
    now: f64,
    description: String,
    cause: String,
    status: wire::ScalingActivityStatusCode,
    message: String,
) -> wire::ScalingActivity {
    wire::ScalingActivity {
        // Time-ordered ids: the store and the map keep activities in order.
        activity_id: Some(uuid::Uuid::now_v7().to_string()),
        service_namespace: Some(wire::ServiceNamespace::Ecs),
        resource_id: Some(resource_id.to_string()),
        scalable_dimension: Some(wire::ScalableDimension::EcsServiceDesiredCount),
        description: Some(description),
        cause: Some(cause),
        start_time: Some(now),
        end_time: Some(now),
        status_code: Some(status),
        status_message: Some(message),
        details: None,
        not_scaled_reasons: None,
    }
}

/// Records an activity, forgetting the resource's oldest beyond
/// [`MAX_ACTIVITIES`].
pub fn record_activity(acct: &mut Account, tx: &mut Tx<'_>, a: wire::ScalingActivity) {
    let resource = a.resource_id.clone().unwrap_or_default();
    let id = a.activity_id.clone().unwrap_or_default();
    tx.put(Key::ScalingActivity(&resource, &id), &a);
    let list = acct
        .autoscaling
        .activities
        .entry(resource.clone())
        .or_default();
    list.insert(id, a);
    while list.len() > MAX_ACTIVITIES {
        let Some((old, _)) = list.pop_first() else {
            break;
        };
        tx.delete(Key::ScalingActivity(&resource, &old));
    }
}

/// Sets the desired count of the service `resource_id` names, through
/// the same change UpdateService makes, and records the activity. A
/// service that is gone or not ACTIVE records a failed activity instead.
/// Returns whether the count changed.
pub fn set_capacity(
    acct: &mut Account,
    tx: &mut Tx<'_>,
    resource_id: &str,
    to: i32,
    cause: &Cause,
    now: f64,
) -> bool {
    let description = format!("Setting desired count to {to}.");
    let changed = parse_resource_id(resource_id)
        .ok()
        .and_then(|(cluster, service)| {
            let c = acct.clusters.get_mut(cluster).filter(|c| c.is_active())?;
            let svc = c
                .services
                .get_mut(service)
                .filter(|s| s.lifecycle() == ServiceStatus::Active && !is_daemon(s))?;
            super::services::set_desired_count(svc, to, now);
            tx.put(Key::Service(cluster, service), &*svc);
            Some(())
        });
    let (status, message) = match changed {
        Some(()) => (
            wire::ScalingActivityStatusCode::Successful,
            format!("Successfully set desired count to {to}. Change successfully fulfilled by ecs."),
        ),
        None => (
            wire::ScalingActivityStatusCode::Failed,
            format!(
                "Failed to set desired count to {to}. Reason: the ECS service {resource_id} does not exist or is not ACTIVE."
            ),
        ),
    };
    record_activity(
        acct,
        tx,
        activity(resource_id, now, description, cause.text(), status, message),
    );
    changed.is_some()
}

/// Records that a policy fired and did not scale (returned only with
/// `IncludeNotScaledActivities`). The same reason again within ten
/// minutes is not recorded twice: alarms repeat their actions every minute.
pub fn record_not_scaled(
    acct: &mut Account,
    tx: &mut Tx<'_>,
    resource_id: &str,
    (wanted, code): (i32, policy::NotScaledCode),
    cap: policy::Capacity,
    cause: &Cause,
    now: f64,
) {
    let cause = cause.text();
    let recent = acct
        .autoscaling
        .activities
        .get(resource_id)
        .and_then(|l| l.values().next_back())
        .is_some_and(|last| {
            last.cause.as_deref() == Some(&cause)
                && last
                    .not_scaled_reasons
                    .as_ref()
                    .and_then(|r| r.first())
                    .is_some_and(|r| r.code.as_deref() == Some(code.as_str()))
                && now - last.start_time.unwrap_or(0.0) < 600.0
        });
    if recent {
        return;
    }
    let mut a = activity(
        resource_id,
        now,
        format!("Setting desired count to {wanted}."),
        cause,
        wire::ScalingActivityStatusCode::Failed,
        format!("Failed to set desired count to {wanted}"),
    );
    a.not_scaled_reasons = Some(vec![wire::NotScaledReason {
        code: Some(code.as_str().to_string()),
        max_capacity: Some(cap.max),
        min_capacity: Some(cap.min),
        current_capacity: Some(cap.current),
    }]);
    record_activity(acct, tx, a);
}

/// The alarm that fired a policy: its name, threshold and the values it
/// evaluated (oldest first; empty when set by hand).
#[derive(Debug, Clone, Copy)]
pub struct Trigger<'a> {
    pub alarm: &'a str,
    /// The alarm's state (`ALARM`, or another whose actions name the policy).
    pub state: &'a str,
    pub threshold: f64,
    pub datapoints: &'a [f64],
}

/// What running a policy did.
#[derive(Debug, Clone, PartialEq)]
pub enum Ran {
    /// The desired count was set to this.
    Scaled(i32),
    /// It fired and could not scale (recorded as a not-scaled activity).
    NotScaled(policy::NotScaledCode),
    /// Nothing to do (cooldown, suspended, disabled, already there).
    Held(&'static str),
}

/// Runs the policy `policy_arn` names because `trigger` fired it: the
/// decision of [`policy`], then the capacity change, the policy's
/// cooldowns and the activity. `Err` says why it could not run (the
/// policy or the service is gone), for the alarm's action history.
pub fn run_policy(
    acct: &mut Account,
    tx: &mut Tx<'_>,
    policy_arn: &str,
    trigger: Trigger<'_>,
    now: f64,
) -> Result<Ran, String> {
    let (resource_id, name) = parse_policy_arn(policy_arn)
        .ok_or_else(|| format!("{policy_arn} is not a scaling policy ARN"))?;
    let target = acct
        .autoscaling
        .targets
        .get(resource_id)
        .ok_or_else(|| format!("no scalable target {resource_id}"))?;
    let p = target
        .policies
        .get(name)
        .filter(|p| p.arn == policy_arn)
        .ok_or_else(|| format!("no scaling policy {policy_arn}"))?;
    let current = service_capacity(acct, resource_id)
        .ok_or_else(|| format!("the ECS service {resource_id} does not exist or is not ACTIVE"))?;
    let cap = policy::Capacity {
        current,
        min: target.min_capacity,
        max: target.max_capacity,
    };
    let (decision, out_cooldown) = match (&p.target_tracking, &p.step) {
        (Some(cfg), _) => {
            let side = match p
                .alarms
                .iter()
                .find(|a| a.name == trigger.alarm)
                .map(|a| a.side)
            {
                Some(AlarmSide::High) => policy::Side::High,
                Some(AlarmSide::Low) => policy::Side::Low,
                None => {
                    return Err(format!(
                        "the alarm {} is not one of the policy's",
                        trigger.alarm
                    ))
                }
            };
            (
                policy::target_tracking(
                    cfg,
                    side,
                    trigger.datapoints.last().copied(),
                    cap,
                    &p.cooldowns,
                    target.suspended,
                    now,
                ),
                cfg.scale_out_cooldown.unwrap_or(policy::DEFAULT_COOLDOWN),
            )
        }
        (None, Some(cfg)) => (
            policy::step(
                cfg,
                trigger.threshold,
                trigger.datapoints,
                cap,
                &p.cooldowns,
                target.suspended,
                now,
            ),
            cfg.cooldown.unwrap_or(policy::DEFAULT_COOLDOWN),
        ),
        (None, None) => return Err(format!("the policy {policy_arn} has no configuration")),
    };
    let cause = Cause::Alarm {
        alarm: trigger.alarm.to_string(),
        state: trigger.state.to_string(),
        policy: name.to_string(),
    };
    let (resource_id, name) = (resource_id.to_string(), name.to_string());
    match decision {
        policy::Decision::Scale { to, direction } => {
            if !set_capacity(acct, tx, &resource_id, to, &cause, now) {
                return Err(format!("the ECS service {resource_id} could not be scaled"));
            }
            if let Some(t) = acct.autoscaling.targets.get_mut(&resource_id) {
                if let Some(p) = t.policies.get_mut(&name) {
                    p.cooldowns.scaled(direction, current, out_cooldown, now);
                }
                t.store(tx);
            }
            Ok(Ran::Scaled(to))
        }
        policy::Decision::NotScaled { wanted, code } => {
            record_not_scaled(acct, tx, &resource_id, (wanted, code), cap, &cause, now);
            Ok(Ran::NotScaled(code))
        }
        policy::Decision::Hold(why) => Ok(Ran::Held(why)),
    }
}

/// Every scheduled action due at `now`: (resource id, action name).
pub fn due_actions(acct: &Account, now: f64) -> Vec<(String, String)> {
    acct.autoscaling
        .targets
        .iter()
        .flat_map(|(rid, t)| {
            t.scheduled_actions
                .iter()
                .filter(move |(_, a)| a.next_run().is_some_and(|at| at <= now))
                .map(move |(n, _)| (rid.clone(), n.clone()))
        })
        .collect()
}

/// The earliest time a scheduled action of the account runs next.
pub fn next_due(acct: &Account) -> Option<f64> {
    acct.autoscaling
        .targets
        .values()
        .flat_map(|t| t.scheduled_actions.values())
        .filter_map(ScheduledAction::next_run)
        .min_by(f64::total_cmp)
}

/// Runs a scheduled action: the target's new bounds, then the capacity
/// moved inside them (a new min above the desired count raises it, a new
/// max below lowers it), each recorded as an activity. With scheduled
/// scaling suspended the run is skipped (and not made up later).
pub fn run_scheduled(
    acct: &mut Account,
    tx: &mut Tx<'_>,
    resource_id: &str,
    action: &str,
    now: f64,
) {
    let Some(t) = acct.autoscaling.targets.get_mut(resource_id) else {
        return;
    };
    let Some(a) = t.scheduled_actions.get_mut(action) else {
        return;
    };
    a.last_run = Some(now);
    let (min, max) = (a.min_capacity, a.max_capacity);
    if t.suspended.scheduled {
        t.store(tx);
        return;
    }
    let mut new_min = min.unwrap_or(t.min_capacity);
    let mut new_max = max.unwrap_or(t.max_capacity);
    // One bound given past the other moves the other with it.
    if min.is_some() && max.is_none() {
        new_max = new_max.max(new_min);
    }
    if max.is_some() && min.is_none() {
        new_min = new_min.min(new_max);
    }
    t.min_capacity = new_min;
    t.max_capacity = new_max;
    t.store(tx);
    let cause = Cause::Scheduled {
        action: action.to_string(),
    };
    let what = match (min, max) {
        (Some(a), Some(b)) => format!("min capacity to {a} and max capacity to {b}"),
        (Some(a), None) => format!("min capacity to {a}"),
        (None, Some(b)) => format!("max capacity to {b}"),
        (None, None) => format!("min capacity to {new_min} and max capacity to {new_max}"),
    };
    record_activity(
        acct,
        tx,
        activity(
            resource_id,
            now,
            format!("Setting {what}"),
            cause.text(),
            wire::ScalingActivityStatusCode::Successful,
            format!("Successfully set {what}"),
        ),
    );
    if let Some(current) = service_capacity(acct, resource_id) {
        let bounded = current.clamp(new_min, new_max);
        if bounded != current {
            set_capacity(acct, tx, resource_id, bounded, &cause, now);
        }
    }
}

/// Rebuilds one stored object (`kind`/`rest` of its key) at start.
pub fn load(acct: &mut Account, kind: &str, rest: &str, value: &[u8]) -> Result<(), String> {
    let de = |e: serde_json::Error| e.to_string();
    match kind {
        "target" => {
            let t: Target = serde_json::from_slice(value).map_err(de)?;
            acct.autoscaling.targets.insert(rest.to_string(), t);
        }
        "activity" => {
            let (resource, id) = rest.rsplit_once('/').ok_or("malformed key")?;
            let a: wire::ScalingActivity = serde_json::from_slice(value).map_err(de)?;
            acct.autoscaling
                .activities
                .entry(resource.to_string())
                .or_default()
                .insert(id.to_string(), a);
        }
        other => return Err(format!("unknown kind {other}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_and_arns() {
        assert_eq!(
            parse_resource_id("service/default/web").unwrap(),
            ("default", "web")
        );
        for bad in [
            "service/default",
            "service//web",
            "table/x",
            "service/a/b/c",
        ] {
            assert_eq!(
                parse_resource_id(bad).unwrap_err().code,
                "ValidationException"
            );
        }
        let scope = Scope::new("111111111111", "us-east-1");
        let arn = policy_arn(&scope, "service/default/web", "cpu:50/x");
        assert_eq!(
            parse_policy_arn(&arn),
            Some(("service/default/web", "cpu:50/x"))
        );
        let t = target_arn(&scope);
        let id = t.rsplit_once('/').unwrap().1;
        assert_eq!(id.len(), 36);
        assert!(t.starts_with(
            "arn:aws:application-autoscaling:us-east-1:111111111111:scalable-target/"
        ));
    }
}
