//! Load balancers in the domain core: ELBv2's load balancers, listeners,
//! rules, target groups and their targets, and the load-balancer nodes that
//! serve them (`flotilla lb`, see `flotilla_model::lb`).
//!
//! Every object is stored in the cluster store under the `elbv2` namespace
//! (`elbv2/ACCOUNT/REGION/KIND/ID`) as its wire shape plus what ELBv2 keeps
//! beside it (attributes, tags, targets); it is rebuilt at start by
//! [`load`]. What the nodes observe (targets' health) is not stored: a node
//! reports its whole view again when it reconnects.
//!
//! - [`load_balancers`]: Create/Describe/Delete, attributes, and which node
//!   address serves each one;
//! - [`target_groups`]: target groups, their attributes and targets, and
//!   the targets' health as DescribeTargetHealth tells it;
//! - [`listeners`]: listeners and rules, their actions and conditions;
//! - [`nodes`]: nodes, their configuration ([`flotilla_model::lb::NodeConfig`])
//!   and what they report;
//! - [`ecs`]: ECS services' tasks as targets.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use flotilla_model::arn::Scope;
use flotilla_model::lb::ObservedHealth;
use flotilla_model::wire::elbv2;
use serde::{Deserialize, Serialize};

use super::state::{Key, Tx};
use crate::error::{ApiError, ApiResult};

pub mod ecs;
pub mod listeners;
pub mod load_balancers;
pub mod nodes;
pub mod target_groups;

/// Every load-balancing object of one account in one region.
#[derive(Debug, Default)]
pub struct LbAccount {
    /// By ARN.
    pub load_balancers: BTreeMap<String, StoredLoadBalancer>,
    pub target_groups: BTreeMap<String, StoredTargetGroup>,
    pub listeners: BTreeMap<String, StoredListener>,
    /// Non-default rules by ARN (a listener's default rule is its default
    /// actions).
    pub rules: BTreeMap<String, StoredRule>,
    /// Load-balancer nodes by name.
    pub nodes: BTreeMap<String, LbNode>,
    /// What the nodes last reported of each target: (target group ARN,
    /// target id, port). In memory only.
    pub health: HashMap<(String, String, u16), ObservedTarget>,
}

/// A load balancer with what ELBv2 keeps beside its shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredLoadBalancer {
    pub load_balancer: elbv2::LoadBalancer,
    /// Attributes set by ModifyLoadBalancerAttributes (defaults not stored).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<elbv2::Tag>,
    /// The node serving it and its address there, once one was free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
}

impl StoredLoadBalancer {
    pub fn arn(&self) -> &str {
        self.load_balancer
            .load_balancer_arn
            .as_deref()
            .unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.load_balancer
            .load_balancer_name
            .as_deref()
            .unwrap_or_default()
    }

    pub fn kind(&self) -> elbv2::LoadBalancerTypeEnum {
        self.load_balancer
            .r#type
            .unwrap_or(elbv2::LoadBalancerTypeEnum::Application)
    }

    pub fn state(&self) -> elbv2::LoadBalancerStateEnum {
        self.load_balancer
            .state
            .as_ref()
            .and_then(|s| s.code)
            .unwrap_or(elbv2::LoadBalancerStateEnum::Provisioning)
    }

    /// `app/NAME/ID` or `net/NAME/ID`: the metric dimension, and the part of
    /// its listeners' ARNs after `listener/`.
    pub fn dimension(&self) -> &str {
        self.arn()
            .split_once(":loadbalancer/")
            .map_or("", |(_, rest)| rest)
    }
}

/// A target group with its attributes, tags and targets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredTargetGroup {
    pub target_group: elbv2::TargetGroup,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<elbv2::Tag>,
    /// Registered and draining targets, in registration order.
    #[serde(default)]
    pub targets: Vec<StoredTarget>,
}

impl StoredTargetGroup {
    pub fn arn(&self) -> &str {
        self.target_group
            .target_group_arn
            .as_deref()
            .unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.target_group
            .target_group_name
            .as_deref()
            .unwrap_or_default()
    }

    pub fn protocol(&self) -> elbv2::ProtocolEnum {
        self.target_group
            .protocol
            .unwrap_or(elbv2::ProtocolEnum::Http)
    }

    pub fn target_type(&self) -> elbv2::TargetTypeEnum {
        self.target_group
            .target_type
            .unwrap_or(elbv2::TargetTypeEnum::Instance)
    }

    /// `targetgroup/NAME/ID`: the metric dimension.
    pub fn dimension(&self) -> &str {
        self.arn().rsplit_once(':').map_or("", |(_, rest)| rest)
    }

    /// An attribute's value, or its default.
    pub fn attribute(&self, key: &str) -> Option<String> {
        self.attributes.get(key).cloned().or_else(|| {
            target_groups::default_attributes(self.protocol())
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        })
    }

    /// `deregistration_delay.timeout_seconds`.
    pub fn deregistration_delay(&self) -> u32 {
        self.attribute("deregistration_delay.timeout_seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(300)
    }
}

/// One registered target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredTarget {
    /// A container instance id (type `instance`) or an IP address (`ip`).
    pub id: String,
    pub port: u16,
    /// Where the node connects: the instance's host address for `instance`.
    pub address: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    pub registered_at: f64,
    /// Deregistered: draining until then (epoch seconds), then forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_until: Option<f64>,
    /// The ECS task this target stands for, when an ECS service registered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_arn: Option<String>,
}

impl StoredTarget {
    pub fn is_draining(&self) -> bool {
        self.draining_until.is_some()
    }
}

/// A listener with its tags and the ARN of its default rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredListener {
    pub listener: elbv2::Listener,
    #[serde(default)]
    pub tags: Vec<elbv2::Tag>,
    pub default_rule_arn: String,
}

impl StoredListener {
    pub fn arn(&self) -> &str {
        self.listener.listener_arn.as_deref().unwrap_or_default()
    }

    pub fn load_balancer_arn(&self) -> &str {
        self.listener
            .load_balancer_arn
            .as_deref()
            .unwrap_or_default()
    }
}

/// A (non-default) listener rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRule {
    pub rule: elbv2::Rule,
    pub listener_arn: String,
    #[serde(default)]
    pub tags: Vec<elbv2::Tag>,
}

impl StoredRule {
    pub fn priority(&self) -> u32 {
        self.rule
            .priority
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or(u32::MAX)
    }
}

/// A load-balancer node: the addresses it may bind listeners on. The
/// addresses are stored, so the load balancers keep theirs across restarts
/// of the node and of the control plane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbNode {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    /// Whether a session is open now (not stored: none is after a restart).
    #[serde(skip)]
    pub connected: bool,
}

/// What a node last reported of a target.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedTarget {
    pub health: ObservedHealth,
    pub reason: Option<String>,
    pub description: Option<String>,
    /// When the target turned unhealthy (for ECS's grace period), epoch seconds.
    pub since: f64,
}

// The kinds under `elbv2/ACCOUNT/REGION/`.
const KIND_LB: &str = "loadbalancer";
const KIND_TG: &str = "targetgroup";
const KIND_LISTENER: &str = "listener";
const KIND_RULE: &str = "rule";
const KIND_NODE: &str = "node";

/// The last segment of an ARN: the object's id, unique within its kind.
fn id_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

pub(crate) fn put_lb(tx: &mut Tx<'_>, lb: &StoredLoadBalancer) {
    tx.put(Key::Elbv2(KIND_LB, id_of(lb.arn())), lb);
}

pub(crate) fn put_tg(tx: &mut Tx<'_>, tg: &StoredTargetGroup) {
    tx.put(Key::Elbv2(KIND_TG, id_of(tg.arn())), tg);
}

pub(crate) fn put_listener(tx: &mut Tx<'_>, l: &StoredListener) {
    tx.put(Key::Elbv2(KIND_LISTENER, id_of(l.arn())), l);
}

pub(crate) fn put_rule(tx: &mut Tx<'_>, r: &StoredRule) {
    let arn = r.rule.rule_arn.as_deref().unwrap_or_default();
    tx.put(Key::Elbv2(KIND_RULE, id_of(arn)), r);
}

pub(crate) fn put_node(tx: &mut Tx<'_>, n: &LbNode) {
    tx.put(Key::Elbv2(KIND_NODE, &n.name), n);
}

fn delete(tx: &mut Tx<'_>, kind: &'static str, arn: &str) {
    tx.delete(Key::Elbv2(kind, id_of(arn)));
}

/// Rebuilds one stored object (`kind`, `rest` from its key) at start.
pub(crate) fn load(lb: &mut LbAccount, kind: &str, value: &[u8]) -> Result<(), String> {
    let de = |e: serde_json::Error| e.to_string();
    match kind {
        KIND_LB => {
            let v: StoredLoadBalancer = serde_json::from_slice(value).map_err(de)?;
            lb.load_balancers.insert(v.arn().to_string(), v);
        }
        KIND_TG => {
            let v: StoredTargetGroup = serde_json::from_slice(value).map_err(de)?;
            lb.target_groups.insert(v.arn().to_string(), v);
        }
        KIND_LISTENER => {
            let v: StoredListener = serde_json::from_slice(value).map_err(de)?;
            lb.listeners.insert(v.arn().to_string(), v);
        }
        KIND_RULE => {
            let v: StoredRule = serde_json::from_slice(value).map_err(de)?;
            let arn = v.rule.rule_arn.clone().unwrap_or_default();
            lb.rules.insert(arn, v);
        }
        KIND_NODE => {
            let v: LbNode = serde_json::from_slice(value).map_err(de)?;
            lb.nodes.insert(v.name.clone(), v);
        }
        other => return Err(format!("unknown kind {other}")),
    }
    Ok(())
}

/// `arn:aws:elasticloadbalancing:REGION:ACCOUNT:RESOURCE`.
pub fn arn(scope: &Scope, resource: impl std::fmt::Display) -> String {
    format!(
        "arn:aws:elasticloadbalancing:{}:{}:{}",
        scope.region, scope.account, resource
    )
}

/// A fresh 16-hex-digit id, as ELBv2's ARNs end with.
pub fn new_id() -> String {
    let id = flotilla_model::arn::new_id();
    id[id.len() - 16..].to_string()
}

/// ELBv2's `ValidationError` (HTTP 400).
pub fn validation(message: impl Into<String>) -> ApiError {
    ApiError::new("ValidationError", message)
}

pub fn lb_not_found() -> ApiError {
    ApiError::new(
        "LoadBalancerNotFound",
        "One or more load balancers not found",
    )
}

pub fn tg_not_found() -> ApiError {
    ApiError::new("TargetGroupNotFound", "One or more target groups not found")
}

pub fn listener_not_found() -> ApiError {
    ApiError::new("ListenerNotFound", "One or more listeners not found")
}

pub fn rule_not_found() -> ApiError {
    ApiError::new("RuleNotFound", "One or more rules not found")
}

/// Checks a name of a load balancer or target group as ELBv2 does: at most
/// 32 characters, alphanumerics and hyphens, no hyphen first or last.
pub fn check_name(what: &str, name: &str) -> ApiResult<()> {
    if name.is_empty() {
        return Err(validation(format!("{what} name cannot be empty")));
    }
    if name.chars().count() > 32 {
        return Err(validation(format!(
            "{what} name '{name}' cannot be longer than '32' characters"
        )));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(validation(format!(
            "{what} name '{name}' can only contain characters that are alphanumeric characters or hyphens(-)"
        )));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(validation(format!(
            "{what} name '{name}' cannot begin or end with a hyphen"
        )));
    }
    Ok(())
}

/// Tags as ELBv2 takes them: at most 50 per resource, keys unique.
pub fn merge_tags(existing: &[elbv2::Tag], new: &[elbv2::Tag]) -> ApiResult<Vec<elbv2::Tag>> {
    let mut seen = std::collections::BTreeSet::new();
    for t in new {
        let key = t.key.as_deref().unwrap_or_default();
        if !seen.insert(key) {
            return Err(ApiError::new(
                "DuplicateTagKeys",
                format!("Tag key '{key}' is duplicated"),
            ));
        }
        if key.starts_with("aws:") {
            return Err(validation(format!(
                "Tag key '{key}' cannot start with 'aws:'"
            )));
        }
    }
    let mut out: Vec<elbv2::Tag> = existing.to_vec();
    for t in new {
        match out.iter_mut().find(|o| o.key == t.key) {
            Some(o) => o.value = t.value.clone(),
            None => out.push(t.clone()),
        }
    }
    if out.len() > 50 {
        return Err(ApiError::new(
            "TooManyTags",
            "The quota for the number of tags that can be assigned to a load balancer, target group, listener or rule has been reached (50)",
        ));
    }
    Ok(out)
}

/// Tags of any taggable resource, by ARN.
pub fn tags_of<'a>(lb: &'a LbAccount, resource: &str) -> ApiResult<&'a [elbv2::Tag]> {
    if let Some(v) = lb.load_balancers.get(resource) {
        return Ok(&v.tags);
    }
    if let Some(v) = lb.target_groups.get(resource) {
        return Ok(&v.tags);
    }
    if let Some(v) = lb.listeners.get(resource) {
        return Ok(&v.tags);
    }
    if let Some(v) = lb.rules.get(resource) {
        return Ok(&v.tags);
    }
    Err(not_found_for(resource))
}

/// The not-found error for an ARN, by the kind its resource part names.
fn not_found_for(resource: &str) -> ApiError {
    if resource.contains(":targetgroup/") {
        tg_not_found()
    } else if resource.contains(":listener/") {
        listener_not_found()
    } else if resource.contains(":listener-rule/") {
        rule_not_found()
    } else if resource.contains(":loadbalancer/") {
        lb_not_found()
    } else {
        validation(format!("'{resource}' is not a valid resource ARN"))
    }
}

/// AddTags / RemoveTags: `change` maps a resource's tags to its new ones.
pub fn retag(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    resources: &[String],
    change: impl Fn(&[elbv2::Tag]) -> ApiResult<Vec<elbv2::Tag>>,
) -> ApiResult<()> {
    // Check every resource first: nothing changes unless all can.
    let mut new = Vec::with_capacity(resources.len());
    for r in resources {
        new.push(change(tags_of(lb, r)?)?);
    }
    for (r, tags) in resources.iter().zip(new) {
        if let Some(v) = lb.load_balancers.get_mut(r) {
            v.tags = tags;
            put_lb(tx, v);
        } else if let Some(v) = lb.target_groups.get_mut(r) {
            v.tags = tags;
            put_tg(tx, v);
        } else if let Some(v) = lb.listeners.get_mut(r) {
            v.tags = tags;
            put_listener(tx, v);
        } else if let Some(v) = lb.rules.get_mut(r) {
            v.tags = tags;
            put_rule(tx, v);
        }
    }
    Ok(())
}

/// The target groups each listener's and rule's actions forward to, with
/// the load balancer they belong to.
pub fn forwarded_groups(lb: &LbAccount) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for l in lb.listeners.values() {
        for a in l.listener.default_actions.iter().flatten() {
            for tg in listeners::action_groups(a) {
                out.push((tg, l.load_balancer_arn().to_string()));
            }
        }
    }
    for r in lb.rules.values() {
        let Some(l) = lb.listeners.get(&r.listener_arn) else {
            continue;
        };
        for a in r.rule.actions.iter().flatten() {
            for tg in listeners::action_groups(a) {
                out.push((tg, l.load_balancer_arn().to_string()));
            }
        }
    }
    out
}

/// The load balancers whose listeners forward to `tg` (sorted, unique).
pub fn load_balancers_of(lb: &LbAccount, tg: &str) -> Vec<String> {
    let mut out: Vec<String> = forwarded_groups(lb)
        .into_iter()
        .filter(|(g, _)| g == tg)
        .map(|(_, l)| l)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether an ECS task is a target of any group (registered or draining):
/// such a task asked to stop keeps running until it is drained.
pub fn is_target(lb: &LbAccount, task_arn: &str) -> bool {
    lb.target_groups.values().any(|g| {
        g.targets
            .iter()
            .any(|t| t.task_arn.as_deref() == Some(task_arn))
    })
}

/// Pages a list by ELBv2's `Marker` (an offset we hand out) and `PageSize`.
/// Any marker is safe: one past the end is an empty page.
pub fn page<T>(
    items: Vec<T>,
    marker: Option<&str>,
    page_size: Option<i32>,
) -> ApiResult<(Vec<T>, Option<String>)> {
    let start: usize = match marker {
        None => 0,
        Some(m) => m
            .parse()
            .map_err(|_| validation(format!("Invalid marker '{m}'")))?,
    };
    let size = page_size.unwrap_or(400).clamp(1, 400) as usize;
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let end = start.saturating_add(size);
    let next = (end < total).then(|| end.to_string());
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_markers_and_never_overflow() {
        let items: Vec<u32> = (0..5).collect();
        let (first, next) = page(items.clone(), None, Some(2)).unwrap();
        assert_eq!((first, next.as_deref()), (vec![0, 1], Some("2")));
        let (last, next) = page(items.clone(), Some("4"), Some(2)).unwrap();
        assert_eq!((last, next), (vec![4], None));
        let (none, next) = page(items.clone(), Some(&usize::MAX.to_string()), None).unwrap();
        assert!(none.is_empty() && next.is_none());
        assert_eq!(
            page(items, Some("x"), None).unwrap_err().code,
            "ValidationError"
        );
    }

    #[test]
    fn names_are_checked_as_elbv2_checks_them() {
        assert!(check_name("Load balancer", "web-1").is_ok());
        for bad in ["", "-web", "web-", "a_b", &"x".repeat(33)] {
            assert_eq!(
                check_name("Load balancer", bad).unwrap_err().code,
                "ValidationError",
                "{bad}"
            );
        }
    }
}
