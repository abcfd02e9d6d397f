//! The load-balancer gateway protocol: what flows between the control plane
//! and a load-balancer node (`flotilla lb`) over its one long-lived WebSocket
//! (`GET /v1/lb/connect?node=NAME&addresses=IP[,IP…]`, SigV4-signed like
//! the agent's).
//!
//! Like the agent's (DESIGN.md rule 1): desired state flows down, observed
//! state flows up.
//! - The control plane pushes the node's *complete* configuration (every
//!   listener bound on one of the node's addresses, and every target group
//!   those listeners reach), versioned by the store revision; a reconnect
//!   receives the latest again. The node applies a new version without
//!   dropping open connections and answers [`NodeMessage::Applied`].
//! - The node health-checks the targets of its target groups and reports
//!   every change of a target's health ([`NodeMessage::Health`]), and
//!   reports request counters per interval ([`NodeMessage::Metrics`]).
//!
//! Where load balancers live: the control plane gives each load balancer
//! one address of one connected node (an address no other load balancer
//! holds), so two load balancers can both listen on port 80. The load
//! balancer's `DNSName` is that address.
//!
//! Messages are JSON text frames, externally tagged by `type`. Fields may be
//! added (with `#[serde(default)]`); none may change meaning.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Control plane → node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ControlMessage {
    /// The node's complete configuration at `version`.
    Config { version: u64, config: NodeConfig },
    /// Answer to [`NodeMessage::Heartbeat`].
    HeartbeatAck,
}

/// Node → control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum NodeMessage {
    /// Every 5 s; a node silent for 20 s counts as gone.
    Heartbeat,
    /// Configuration `version` is in effect: listeners bound, targets known.
    Applied { version: u64 },
    /// Health of targets: on connect the node's whole view, then each change.
    Health { reports: Vec<TargetHealthReport> },
    /// Counters since the previous report, one entry per target group
    /// (requests forwarded to it) and per load balancer.
    Metrics { samples: Vec<LbMetrics> },
}

/// Everything one node serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfig {
    pub listeners: Vec<ListenerConfig>,
    /// By target group ARN: every group a listener's actions name.
    pub target_groups: BTreeMap<String, TargetGroupConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LoadBalancerKind {
    /// HTTP, routed by rules.
    Application,
    /// TCP, forwarded by flow hash.
    Network,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Http,
    Tcp,
}

/// One listener: an address and port of this node, and what it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerConfig {
    pub listener_arn: String,
    pub load_balancer_arn: String,
    /// The load balancer's name (for metric dimensions: `app/NAME/ID`).
    pub load_balancer_name: String,
    pub kind: LoadBalancerKind,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    /// `idle_timeout.timeout_seconds` of the load balancer (ALB, default 60).
    pub idle_timeout_secs: u32,
    /// Rules in priority order (lowest first); the default rule is not here.
    pub rules: Vec<RuleConfig>,
    /// What a request matching no rule gets (for NLB: the only action).
    pub default_actions: Vec<Action>,
}

/// A listener rule: all conditions must match (each condition matches if
/// any of its values does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleConfig {
    pub rule_arn: String,
    pub priority: u32,
    pub conditions: Vec<Condition>,
    pub actions: Vec<Action>,
}

/// A rule condition, as ELBv2 defines it (values with `*` and `?`
/// wildcards where ELBv2 allows them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "kebab-case")]
pub enum Condition {
    PathPattern {
        values: Vec<String>,
    },
    HostHeader {
        values: Vec<String>,
    },
    HttpHeader {
        name: String,
        values: Vec<String>,
    },
    HttpRequestMethod {
        values: Vec<String>,
    },
    /// Pairs of optional key and value.
    QueryString {
        values: Vec<(Option<String>, String)>,
    },
    /// CIDR blocks.
    SourceIp {
        values: Vec<String>,
    },
}

/// What a listener or rule does with a request. Several actions run in
/// order; the last is one of these terminal ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Action {
    Forward {
        /// Target group ARNs with their weights (0–999).
        target_groups: Vec<WeightedTargetGroup>,
        /// Target-group stickiness duration, when enabled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stickiness_secs: Option<u32>,
    },
    FixedResponse {
        status_code: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// `#{protocol}`, `#{host}`, `#{port}`, `#{path}`, `#{query}` keep the
    /// request's value, as ELBv2 defines them.
    Redirect {
        protocol: String,
        host: String,
        port: String,
        path: String,
        query: String,
        /// 301 or 302.
        status_code: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightedTargetGroup {
    pub target_group_arn: String,
    pub weight: u32,
}

/// A target group as the node needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupConfig {
    pub target_group_arn: String,
    pub name: String,
    pub protocol: Protocol,
    pub targets: Vec<TargetConfig>,
    pub health_check: HealthCheckConfig,
    /// `deregistration_delay.timeout_seconds`: how long a draining target
    /// keeps its open connections.
    pub deregistration_delay_secs: u32,
    /// `slow_start.duration_seconds` (0: off).
    pub slow_start_secs: u32,
    /// `stickiness.enabled` with type `lb_cookie`: the cookie's duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness_secs: Option<u32>,
}

/// One registered target: where to connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetConfig {
    /// The target's id as registered: a container instance id (type
    /// `instance`) or an IP address (type `ip`).
    pub id: String,
    /// The address the node connects to (the instance's host address for
    /// type `instance`).
    pub address: IpAddr,
    pub port: u16,
    pub state: TargetState,
    /// When the target was registered, epoch seconds (slow start counts from
    /// when it first became healthy on the node).
    pub registered_at: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum TargetState {
    /// Receives new requests once healthy.
    Active,
    /// Deregistered: no new requests; open connections may finish until
    /// `until` (epoch seconds), then are closed.
    Draining { until: f64 },
}

/// ELBv2's health-check settings, with the defaults already applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckConfig {
    pub enabled: bool,
    pub protocol: Protocol,
    /// `None`: the target's own (traffic) port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// HTTP only.
    pub path: String,
    pub interval_secs: u32,
    pub timeout_secs: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// HTTP codes that count as healthy: `200`, `200,202`, `200-299`.
    pub matcher: String,
}

/// One target's health as a node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetHealthReport {
    pub target_group_arn: String,
    pub target_id: String,
    pub port: u16,
    pub health: ObservedHealth,
    /// ELBv2's reason code for an unhealthy or initial target
    /// (`Target.ResponseCodeMismatch`, `Target.Timeout`,
    /// `Target.FailedHealthChecks`, `Elb.InitialHealthChecking`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The human-readable description ELBv2 gives with the reason
    /// ("Health checks failed with these codes: [500]").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ObservedHealth {
    /// Not yet through enough checks either way.
    Initial,
    Healthy,
    Unhealthy,
}

/// Counters of one load balancer, or of one target group behind it, over
/// `[start, end)` (epoch seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbMetrics {
    pub load_balancer_arn: String,
    /// `None`: the load balancer as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_arn: Option<String>,
    pub start: f64,
    pub end: f64,
    /// Requests (ALB) or new flows (NLB).
    pub request_count: u64,
    pub target_2xx: u64,
    pub target_3xx: u64,
    pub target_4xx: u64,
    pub target_5xx: u64,
    /// Responses the load balancer made itself (no healthy target, target
    /// connection failed: 502/503/504).
    pub elb_5xx: u64,
    /// Sum of seconds from sending the request to the target until its
    /// response headers arrived, over `request_count` forwarded requests.
    pub target_response_time_sum: f64,
    pub target_response_count: u64,
    pub healthy_hosts: u32,
    pub unhealthy_hosts: u32,
}
