//! Target groups: their settings and attributes, their targets, and the
//! targets' health as DescribeTargetHealth tells it.
//!
//! A target's state, from what is stored and what the nodes report:
//! - deregistered and still within its deregistration delay: `draining`
//!   (`Target.DeregistrationInProgress`); after it, the target is gone;
//! - its group forwarded to by no listener: `unused` (`Target.NotInUse`);
//! - health checks disabled: `unavailable` (`Target.HealthCheckDisabled`);
//! - no node report yet: `initial` (`Elb.RegistrationInProgress`);
//! - else what the node serving the group reported: `initial`
//!   (`Elb.InitialHealthChecking`), `healthy`, or `unhealthy` with the
//!   node's reason (`Target.ResponseCodeMismatch`, `Target.Timeout`,
//!   `Target.FailedHealthChecks`).

use std::net::IpAddr;

use flotilla_model::arn::Scope;
use flotilla_model::lb::ObservedHealth;
use flotilla_model::wire::elbv2::{
    self, ProtocolEnum, TargetHealthReasonEnum, TargetHealthStateEnum, TargetTypeEnum,
};

use super::{
    arn, check_name, load_balancers_of, merge_tags, new_id, put_tg, tg_not_found, validation,
    LbAccount, StoredTarget, StoredTargetGroup,
};
use crate::core::state::{Account, Tx};
use crate::error::{ApiError, ApiResult};

/// Targets per target group (ELBv2's quota is 1,000 per ALB group).
pub const MAX_TARGETS: usize = 1000;

/// The attributes a target group has, with their defaults, by protocol.
pub fn default_attributes(protocol: ProtocolEnum) -> Vec<(&'static str, &'static str)> {
    match protocol {
        ProtocolEnum::Tcp | ProtocolEnum::Udp | ProtocolEnum::TcpUdp | ProtocolEnum::Tls => vec![
            ("deregistration_delay.timeout_seconds", "300"),
            (
                "deregistration_delay.connection_termination.enabled",
                "false",
            ),
            (
                "load_balancing.cross_zone.enabled",
                "use_load_balancer_configuration",
            ),
            ("preserve_client_ip.enabled", "true"),
            ("proxy_protocol_v2.enabled", "false"),
            ("stickiness.enabled", "false"),
            ("stickiness.type", "source_ip"),
            (
                "target_group_health.dns_failover.minimum_healthy_targets.count",
                "1",
            ),
            (
                "target_group_health.dns_failover.minimum_healthy_targets.percentage",
                "off",
            ),
            (
                "target_group_health.unhealthy_state_routing.minimum_healthy_targets.count",
                "1",
            ),
            (
                "target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage",
                "off",
            ),
            (
                "target_health_state.unhealthy.connection_termination.enabled",
                "true",
            ),
            (
                "target_health_state.unhealthy.draining_interval_seconds",
                "0",
            ),
        ],
        _ => vec![
            ("deregistration_delay.timeout_seconds", "300"),
            ("load_balancing.algorithm.type", "round_robin"),
            ("load_balancing.algorithm.anomaly_mitigation", "off"),
            (
                "load_balancing.cross_zone.enabled",
                "use_load_balancer_configuration",
            ),
            ("slow_start.duration_seconds", "0"),
            ("stickiness.enabled", "false"),
            ("stickiness.type", "lb_cookie"),
            ("stickiness.lb_cookie.duration_seconds", "86400"),
            ("stickiness.app_cookie.cookie_name", ""),
            ("stickiness.app_cookie.duration_seconds", "86400"),
            (
                "target_group_health.dns_failover.minimum_healthy_targets.count",
                "1",
            ),
            (
                "target_group_health.dns_failover.minimum_healthy_targets.percentage",
                "off",
            ),
            (
                "target_group_health.unhealthy_state_routing.minimum_healthy_targets.count",
                "1",
            ),
            (
                "target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage",
                "off",
            ),
        ],
    }
}

fn supported_protocol(p: ProtocolEnum) -> ApiResult<()> {
    match p {
        ProtocolEnum::Http | ProtocolEnum::Tcp => Ok(()),
        other => Err(ApiError::new(
            "UnsupportedProtocol",
            format!("Protocol '{other}' is not supported by Flotilla (HTTP and TCP are)"),
        )),
    }
}

/// The health-check settings of a group, with ELBv2's defaults filled in
/// and ranges checked.
#[allow(clippy::too_many_arguments)]
fn health_check(
    tg: &mut elbv2::TargetGroup,
    protocol: Option<ProtocolEnum>,
    port: Option<String>,
    enabled: Option<bool>,
    path: Option<String>,
    interval: Option<i32>,
    timeout: Option<i32>,
    healthy: Option<i32>,
    unhealthy: Option<i32>,
    matcher: Option<elbv2::Matcher>,
) -> ApiResult<()> {
    let traffic = tg.protocol.unwrap_or(ProtocolEnum::Http);
    let hc_protocol = protocol.or(tg.health_check_protocol).unwrap_or(traffic);
    supported_protocol(hc_protocol)?;
    if traffic == ProtocolEnum::Http && hc_protocol == ProtocolEnum::Tcp {
        return Err(validation(
            "Health check protocol 'TCP' is not supported for target groups with the HTTP protocol",
        ));
    }
    let is_http = hc_protocol == ProtocolEnum::Http;
    if !is_http && (path.is_some() || matcher.is_some()) {
        return Err(validation(
            "Health check path and matcher are not supported for the TCP health check protocol",
        ));
    }
    let port = port
        .or(tg.health_check_port.clone())
        .unwrap_or_else(|| "traffic-port".into());
    if port != "traffic-port" && !matches!(port.parse::<u32>(), Ok(1..=65535)) {
        return Err(validation(format!(
            "Health check port '{port}' must be 'traffic-port' or an integer between 1 and 65535"
        )));
    }
    let interval = interval.or(tg.health_check_interval_seconds).unwrap_or(30);
    let default_timeout = if is_http { 5 } else { 10 };
    let timeout = timeout
        .or(tg.health_check_timeout_seconds)
        .unwrap_or(default_timeout);
    let healthy = healthy.or(tg.healthy_threshold_count).unwrap_or(5);
    let unhealthy = unhealthy.or(tg.unhealthy_threshold_count).unwrap_or(2);
    let range = |what: &str, v: i32, lo: i32, hi: i32| {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(validation(format!(
                "{what} '{v}' must be between {lo} and {hi}"
            )))
        }
    };
    range("Health check interval", interval, 5, 300)?;
    range("Health check timeout", timeout, 2, 120)?;
    range("Healthy threshold count", healthy, 2, 10)?;
    range("Unhealthy threshold count", unhealthy, 2, 10)?;
    if timeout >= interval {
        return Err(validation(format!(
            "Health check timeout '{timeout}' must be smaller than the interval '{interval}'"
        )));
    }
    let path = if is_http {
        let p = path
            .or(tg.health_check_path.clone())
            .unwrap_or_else(|| "/".into());
        if !p.starts_with('/') || p.len() > 1024 {
            return Err(validation(format!(
                "Health check path '{p}' must begin with '/' and be at most 1024 characters"
            )));
        }
        Some(p)
    } else {
        None
    };
    let matcher = if is_http {
        let m = matcher
            .and_then(|m| m.http_code)
            .or(tg.matcher.as_ref().and_then(|m| m.http_code.clone()))
            .unwrap_or_else(|| "200".into());
        check_matcher(&m)?;
        Some(elbv2::Matcher {
            http_code: Some(m),
            grpc_code: None,
        })
    } else {
        None
    };
    tg.health_check_protocol = Some(hc_protocol);
    tg.health_check_port = Some(port);
    tg.health_check_enabled = Some(enabled.or(tg.health_check_enabled).unwrap_or(true));
    tg.health_check_interval_seconds = Some(interval);
    tg.health_check_timeout_seconds = Some(timeout);
    tg.healthy_threshold_count = Some(healthy);
    tg.unhealthy_threshold_count = Some(unhealthy);
    tg.health_check_path = path;
    tg.matcher = matcher;
    Ok(())
}

/// `200`, `200,202`, `200-299`: codes from 200 to 499.
fn check_matcher(m: &str) -> ApiResult<()> {
    let code = |s: &str| matches!(s.trim().parse::<u16>(), Ok(200..=499));
    let ok = m.split(',').all(|part| match part.split_once('-') {
        Some((a, b)) => code(a) && code(b),
        None => code(part),
    });
    if ok {
        Ok(())
    } else {
        Err(validation(format!(
            "Health check matcher HTTP code '{m}' must be a value between 200 and 499, a list (200,202) or a range (200-299)"
        )))
    }
}

/// CreateTargetGroup. The same name with the same settings is the same
/// group; other settings are `DuplicateTargetGroupName`.
pub fn create(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    scope: &Scope,
    input: elbv2::CreateTargetGroupInput,
) -> ApiResult<StoredTargetGroup> {
    let name = input.name.clone().unwrap_or_default();
    check_name("Target group", &name)?;
    let target_type = input.target_type.unwrap_or(TargetTypeEnum::Instance);
    if !matches!(target_type, TargetTypeEnum::Instance | TargetTypeEnum::Ip) {
        return Err(validation(format!(
            "Target type '{target_type}' is not supported by Flotilla (instance and ip are)"
        )));
    }
    let Some(protocol) = input.protocol else {
        return Err(validation(
            "A protocol must be specified for target groups with target type 'instance' or 'ip'",
        ));
    };
    supported_protocol(protocol)?;
    let Some(port) = input.port else {
        return Err(validation(
            "A port must be specified for target groups with target type 'instance' or 'ip'",
        ));
    };
    let mut tg = elbv2::TargetGroup {
        target_group_name: Some(name.clone()),
        protocol: Some(protocol),
        protocol_version: (protocol == ProtocolEnum::Http).then(|| {
            input
                .protocol_version
                .clone()
                .unwrap_or_else(|| "HTTP1".into())
        }),
        port: Some(port),
        vpc_id: input.vpc_id.clone(),
        target_type: Some(target_type),
        ip_address_type: Some(
            input
                .ip_address_type
                .unwrap_or(elbv2::TargetGroupIpAddressTypeEnum::Ipv4),
        ),
        ..Default::default()
    };
    health_check(
        &mut tg,
        input.health_check_protocol,
        input.health_check_port.clone(),
        input.health_check_enabled,
        input.health_check_path.clone(),
        input.health_check_interval_seconds,
        input.health_check_timeout_seconds,
        input.healthy_threshold_count,
        input.unhealthy_threshold_count,
        input.matcher.clone(),
    )?;
    let tags = merge_tags(&[], input.tags.as_deref().unwrap_or_default())?;
    if let Some(existing) = lb.target_groups.values().find(|t| t.name() == name) {
        let mut mine = existing.target_group.clone();
        mine.target_group_arn = None;
        mine.load_balancer_arns = None;
        if mine == tg {
            return Ok(existing.clone());
        }
        return Err(ApiError::new(
            "DuplicateTargetGroupName",
            format!(
                "A target group with the same name '{name}' exists, but with different settings"
            ),
        ));
    }
    if lb.target_groups.len() >= 3000 {
        return Err(ApiError::new(
            "TooManyTargetGroups",
            "The quota for the number of target groups has been reached (3000)",
        ));
    }
    let arn = arn(scope, format_args!("targetgroup/{name}/{}", new_id()));
    tg.target_group_arn = Some(arn.clone());
    let stored = StoredTargetGroup {
        target_group: tg,
        tags,
        ..Default::default()
    };
    put_tg(tx, &stored);
    lb.target_groups.insert(arn, stored.clone());
    Ok(stored)
}

/// The shape Describe answers with: the group and the load balancers that
/// forward to it.
pub fn shape(lb: &LbAccount, tg: &StoredTargetGroup) -> elbv2::TargetGroup {
    let mut out = tg.target_group.clone();
    out.load_balancer_arns = Some(load_balancers_of(lb, tg.arn()));
    out
}

pub fn find<'a>(lb: &'a LbAccount, arn: &str) -> ApiResult<&'a StoredTargetGroup> {
    lb.target_groups.get(arn).ok_or_else(tg_not_found)
}

/// DescribeTargetGroups: by ARNs, by names, by load balancer, or all.
pub fn describe(
    lb: &LbAccount,
    load_balancer: Option<&str>,
    arns: &[String],
    names: &[String],
) -> ApiResult<Vec<elbv2::TargetGroup>> {
    let given = [load_balancer.is_some(), !arns.is_empty(), !names.is_empty()]
        .iter()
        .filter(|b| **b)
        .count();
    if given > 1 {
        return Err(validation(
            "Only one of load balancer ARN, target group ARNs and names can be specified",
        ));
    }
    let mut out = Vec::new();
    if !arns.is_empty() {
        for a in arns {
            out.push(shape(lb, find(lb, a)?));
        }
    } else if !names.is_empty() {
        for n in names {
            let tg = lb
                .target_groups
                .values()
                .find(|t| t.name() == n)
                .ok_or_else(|| {
                    ApiError::new(
                        "TargetGroupNotFound",
                        format!("Target groups '[{n}]' not found"),
                    )
                })?;
            out.push(shape(lb, tg));
        }
    } else if let Some(l) = load_balancer {
        super::load_balancers::find(lb, l)?;
        for tg in lb.target_groups.values() {
            let s = shape(lb, tg);
            if s.load_balancer_arns.iter().flatten().any(|x| x == l) {
                out.push(s);
            }
        }
    } else {
        out = lb.target_groups.values().map(|t| shape(lb, t)).collect();
    }
    Ok(out)
}

/// ModifyTargetGroup: the health-check settings.
pub fn modify(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    input: elbv2::ModifyTargetGroupInput,
) -> ApiResult<elbv2::TargetGroup> {
    let arn = input.target_group_arn.clone().unwrap_or_default();
    let mut tg = find(lb, &arn)?.target_group.clone();
    health_check(
        &mut tg,
        input.health_check_protocol,
        input.health_check_port,
        input.health_check_enabled,
        input.health_check_path,
        input.health_check_interval_seconds,
        input.health_check_timeout_seconds,
        input.healthy_threshold_count,
        input.unhealthy_threshold_count,
        input.matcher,
    )?;
    let stored = lb.target_groups.get_mut(&arn).ok_or_else(tg_not_found)?;
    stored.target_group = tg;
    put_tg(tx, stored);
    let stored = stored.clone();
    Ok(shape(lb, &stored))
}

/// Whether a listener or rule forwards to the group, or an ECS service
/// names it (then it cannot be deleted).
pub fn in_use_by(acct: &Account, arn: &str) -> Option<String> {
    if let Some((_, l)) = super::forwarded_groups(&acct.lb)
        .into_iter()
        .find(|(g, _)| g == arn)
    {
        return Some(format!("load balancer '{l}'"));
    }
    for c in acct.clusters.values() {
        for s in c.services.values() {
            if s.status == Some(flotilla_model::lifecycle::ServiceStatus::Inactive) {
                continue;
            }
            let uses = s
                .load_balancers
                .iter()
                .flatten()
                .any(|l| l.target_group_arn.as_deref() == Some(arn));
            if uses {
                return Some(format!(
                    "ECS service '{}'",
                    s.service_arn.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    None
}

/// DeleteTargetGroup: a group that does not exist is deleted already (as in
/// ELBv2); one in use is `ResourceInUse`.
pub fn delete(acct: &mut Account, tx: &mut Tx<'_>, arn: &str) -> ApiResult<()> {
    if !acct.lb.target_groups.contains_key(arn) {
        return Ok(());
    }
    if let Some(user) = in_use_by(acct, arn) {
        return Err(ApiError::new(
            "ResourceInUse",
            format!("Target group '{arn}' is currently in use by {user}"),
        ));
    }
    let removed = acct.lb.target_groups.remove(arn);
    acct.lb.health.retain(|(g, _, _), _| g != arn);
    super::delete(tx, super::KIND_TG, arn);
    // Tasks held running while they were its targets get their stop now.
    for task in removed
        .iter()
        .flat_map(|g| g.targets.iter().filter_map(|t| t.task_arn.as_deref()))
    {
        super::ecs::wake_task(&acct.clusters, &acct.lb, tx, task);
    }
    Ok(())
}

/// Every attribute with its value, defaults included.
pub fn attributes(tg: &StoredTargetGroup) -> Vec<elbv2::TargetGroupAttribute> {
    default_attributes(tg.protocol())
        .into_iter()
        .map(|(k, _)| elbv2::TargetGroupAttribute {
            key: Some(k.to_string()),
            value: tg.attribute(k),
        })
        .collect()
}

pub fn modify_attributes(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    arn: &str,
    changes: &[elbv2::TargetGroupAttribute],
) -> ApiResult<Vec<elbv2::TargetGroupAttribute>> {
    let tg = find(lb, arn)?;
    let known = default_attributes(tg.protocol());
    for a in changes {
        let key = a.key.as_deref().unwrap_or_default();
        let value = a.value.as_deref().unwrap_or_default();
        if !known.iter().any(|(k, _)| *k == key) {
            return Err(validation(format!(
                "Target group attribute key '{key}' is not recognized"
            )));
        }
        check_attribute(tg.protocol(), key, value)?;
    }
    let tg = lb.target_groups.get_mut(arn).ok_or_else(tg_not_found)?;
    for a in changes {
        tg.attributes.insert(
            a.key.clone().unwrap_or_default(),
            a.value.clone().unwrap_or_default(),
        );
    }
    put_tg(tx, tg);
    Ok(attributes(tg))
}

fn check_attribute(protocol: ProtocolEnum, key: &str, value: &str) -> ApiResult<()> {
    let int_in = |lo: u32, hi: u32, rule: &str| match value.parse::<u32>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(()),
        _ => Err(validation(format!(
            "Target group attribute value '{value}' for '{key}' must be {rule}"
        ))),
    };
    let bad = || {
        validation(format!(
            "Target group attribute value '{value}' is not valid for '{key}'"
        ))
    };
    match key {
        "deregistration_delay.timeout_seconds" => {
            int_in(0, 3600, "an integer between 0 and 3600")
        }
        "slow_start.duration_seconds" => match value.parse::<u32>() {
            Ok(0) | Ok(30..=900) => Ok(()),
            _ => Err(validation(format!(
                "Target group attribute value '{value}' for 'slow_start.duration_seconds' must be 0 or an integer between 30 and 900"
            ))),
        },
        "stickiness.lb_cookie.duration_seconds" | "stickiness.app_cookie.duration_seconds" => {
            int_in(1, 604800, "an integer between 1 and 604800")
        }
        "stickiness.type" => {
            let allowed: &[&str] = match protocol {
                ProtocolEnum::Http | ProtocolEnum::Https => &["lb_cookie", "app_cookie"],
                _ => &["source_ip"],
            };
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(validation(format!(
                    "Stickiness type '{value}' is not supported for target groups with the {protocol} protocol"
                )))
            }
        }
        "load_balancing.algorithm.type" => {
            ["round_robin", "least_outstanding_requests", "weighted_random"]
                .contains(&value)
                .then_some(())
                .ok_or_else(bad)
        }
        k if k.ends_with(".enabled") && k != "load_balancing.cross_zone.enabled" => {
            (value == "true" || value == "false").then_some(()).ok_or_else(bad)
        }
        _ => Ok(()),
    }
}

/// Where an `instance` target is reached: the host address its tasks' ports
/// are bound on (an agent given `--host-ip` binds there), else loopback.
fn instance_address(acct: &Account, id: &str) -> Option<IpAddr> {
    for c in acct.clusters.values() {
        let Some(i) = c.instances.get(id) else {
            continue;
        };
        if !i.is_registered() {
            return None;
        }
        let arn = i.container_instance_arn.as_deref().unwrap_or_default();
        let bound = c
            .tasks_on(arn)
            .flat_map(|(_, t)| t.containers.iter().flatten())
            .flat_map(|c| c.network_bindings.iter().flatten())
            .filter_map(|b| b.bind_ip.as_deref()?.parse::<IpAddr>().ok())
            .find(|ip| !ip.is_unspecified());
        return Some(bound.unwrap_or(IpAddr::from([127, 0, 0, 1])));
    }
    None
}

/// One target to register, resolved.
pub struct NewTarget {
    pub id: String,
    pub port: u16,
    pub address: IpAddr,
    pub availability_zone: Option<String>,
    pub task_arn: Option<String>,
}

/// Resolves RegisterTargets' targets: ids that are container instances
/// (type `instance`) or IP addresses (type `ip`); the port defaults to the
/// group's.
pub fn resolve_targets(
    acct: &Account,
    arn: &str,
    targets: &[elbv2::TargetDescription],
) -> ApiResult<Vec<NewTarget>> {
    let tg = find(&acct.lb, arn)?;
    let mut out = Vec::new();
    for t in targets {
        let id = t.id.clone().unwrap_or_default();
        let port = match t.port.or(tg.target_group.port) {
            Some(p) if (1..=65535).contains(&p) => p as u16,
            _ => {
                return Err(validation(format!(
                    "A port must be specified for target '{id}'"
                )))
            }
        };
        let address = match tg.target_type() {
            TargetTypeEnum::Ip => id.parse::<IpAddr>().map_err(|_| {
                ApiError::new(
                    "InvalidTarget",
                    format!("The IP address '{id}' is not a valid IPv4 or IPv6 address"),
                )
            })?,
            _ => instance_address(acct, &id).ok_or_else(|| {
                ApiError::new(
                    "InvalidTarget",
                    format!("The following targets are not valid instances: '{id}' (a target of type 'instance' is a registered container instance's id)"),
                )
            })?,
        };
        out.push(NewTarget {
            id,
            port,
            address,
            availability_zone: t.availability_zone.clone(),
            task_arn: None,
        });
    }
    Ok(out)
}

/// RegisterTargets: a target already registered stays as it is; a draining
/// one is registered again.
pub fn register(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    arn: &str,
    targets: Vec<NewTarget>,
    now: f64,
) -> ApiResult<usize> {
    let tg = lb.target_groups.get(arn).ok_or_else(tg_not_found)?;
    let fresh = targets
        .iter()
        .filter(|n| !tg.targets.iter().any(|t| t.id == n.id && t.port == n.port))
        .count();
    if tg.targets.len() + fresh > MAX_TARGETS {
        return Err(ApiError::new(
            "TooManyTargets",
            format!("You've reached the limit on the number of targets registered to target group '{}' ({MAX_TARGETS})", tg.name()),
        ));
    }
    let tg = lb.target_groups.get_mut(arn).ok_or_else(tg_not_found)?;
    let mut changed = 0;
    for n in targets {
        match tg
            .targets
            .iter_mut()
            .find(|t| t.id == n.id && t.port == n.port)
        {
            Some(t) => {
                if t.draining_until.is_some() || t.address != n.address || t.task_arn != n.task_arn
                {
                    t.draining_until = None;
                    t.address = n.address;
                    t.registered_at = now;
                    if n.task_arn.is_some() {
                        t.task_arn = n.task_arn;
                    }
                    changed += 1;
                }
            }
            None => {
                tg.targets.push(StoredTarget {
                    id: n.id,
                    port: n.port,
                    address: n.address,
                    availability_zone: n.availability_zone,
                    registered_at: now,
                    draining_until: None,
                    task_arn: n.task_arn,
                });
                changed += 1;
            }
        }
    }
    if changed > 0 {
        put_tg(tx, tg);
    }
    Ok(changed)
}

/// DeregisterTargets: each target drains for the group's deregistration
/// delay (at once if the delay is 0). Targets not registered are
/// `InvalidTarget`, as in ELBv2.
pub fn deregister(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    arn: &str,
    targets: &[(String, Option<u16>)],
    now: f64,
) -> ApiResult<usize> {
    let tg = lb.target_groups.get(arn).ok_or_else(tg_not_found)?;
    let default_port = tg.target_group.port.unwrap_or(0) as u16;
    for (id, port) in targets {
        let port = port.unwrap_or(default_port);
        if !tg.targets.iter().any(|t| &t.id == id && t.port == port) {
            return Err(ApiError::new(
                "InvalidTarget",
                format!(
                    "The following targets are not registered in target group '{}': '{id}:{port}'",
                    tg.name()
                ),
            ));
        }
    }
    let delay = tg.deregistration_delay() as f64;
    let tg = lb.target_groups.get_mut(arn).ok_or_else(tg_not_found)?;
    let mut changed = 0;
    for (id, port) in targets {
        let port = port.unwrap_or(default_port);
        if let Some(t) = tg
            .targets
            .iter_mut()
            .find(|t| &t.id == id && t.port == port && t.draining_until.is_none())
        {
            t.draining_until = Some(now + delay);
            changed += 1;
        }
    }
    tg.targets
        .retain(|t| t.draining_until.is_none_or(|until| until > now));
    if changed > 0 {
        put_tg(tx, tg);
    }
    Ok(changed)
}

/// DeregisterTargets from the API: [`deregister`], and an ECS task that
/// was held running while it was a target (see `super::ecs`) and is no
/// longer one (a delay of 0) gets its stop now.
pub fn deregister_and_wake(
    acct: &mut Account,
    tx: &mut Tx<'_>,
    arn: &str,
    targets: &[(String, Option<u16>)],
    now: f64,
) -> ApiResult<usize> {
    let tasks: Vec<String> = acct
        .lb
        .target_groups
        .get(arn)
        .map(|g| {
            g.targets
                .iter()
                .filter(|t| targets.iter().any(|(id, _)| id == &t.id))
                .filter_map(|t| t.task_arn.clone())
                .collect()
        })
        .unwrap_or_default();
    let n = deregister(&mut acct.lb, tx, arn, targets, now)?;
    for task in &tasks {
        super::ecs::wake_task(&acct.clusters, &acct.lb, tx, task);
    }
    Ok(n)
}

/// Forgets targets whose draining has ended; returns when the next one
/// ends, and the ECS tasks whose targets were forgotten.
pub fn expire_draining(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    now: f64,
) -> (Option<f64>, Vec<String>) {
    let mut next: Option<f64> = None;
    let mut drained = Vec::new();
    for tg in lb.target_groups.values_mut() {
        let before = tg.targets.len();
        tg.targets.retain(|t| {
            let keep = t.draining_until.is_none_or(|until| until > now);
            if !keep {
                drained.extend(t.task_arn.clone());
            }
            keep
        });
        if tg.targets.len() != before {
            let arn = tg.arn().to_string();
            let left: Vec<(String, u16)> =
                tg.targets.iter().map(|t| (t.id.clone(), t.port)).collect();
            lb.health
                .retain(|(g, id, p), _| g != &arn || left.contains(&(id.clone(), *p)));
            put_tg(tx, tg);
        }
        for t in &tg.targets {
            if let Some(until) = t.draining_until {
                next = Some(next.map_or(until, |n: f64| n.min(until)));
            }
        }
    }
    (next, drained)
}

/// A target's health as DescribeTargetHealth tells it.
pub fn target_health(
    lb: &LbAccount,
    tg: &StoredTargetGroup,
    t: Option<&StoredTarget>,
    now: f64,
) -> elbv2::TargetHealth {
    use TargetHealthReasonEnum as R;
    use TargetHealthStateEnum as S;
    let health = |state, reason: Option<R>, description: &str| elbv2::TargetHealth {
        state: Some(state),
        reason,
        description: (!description.is_empty()).then(|| description.to_string()),
    };
    let Some(t) = t.filter(|t| t.draining_until.is_none_or(|u| u > now)) else {
        return health(
            S::Unused,
            Some(R::TargetNotRegistered),
            "Target is not registered to the target group",
        );
    };
    if t.is_draining() {
        return health(
            S::Draining,
            Some(R::TargetDeregistrationInProgress),
            "Target deregistration is in progress",
        );
    }
    if load_balancers_of(lb, tg.arn()).is_empty() {
        return health(
            S::Unused,
            Some(R::TargetNotInUse),
            "Target group is not configured to receive traffic from the load balancer",
        );
    }
    if tg.target_group.health_check_enabled == Some(false) {
        return health(
            S::Unavailable,
            Some(R::TargetHealthCheckDisabled),
            "Health checks are disabled",
        );
    }
    let observed = lb.health.get(&(tg.arn().to_string(), t.id.clone(), t.port));
    match observed {
        None => health(
            S::Initial,
            Some(R::ElbRegistrationInProgress),
            "Target registration is in progress",
        ),
        Some(o) => match o.health {
            ObservedHealth::Initial => health(
                S::Initial,
                Some(R::ElbInitialHealthChecking),
                o.description
                    .as_deref()
                    .unwrap_or("Initial health checks in progress"),
            ),
            ObservedHealth::Healthy => health(S::Healthy, None, ""),
            ObservedHealth::Unhealthy => {
                let reason = o
                    .reason
                    .as_deref()
                    .and_then(parse_reason)
                    .unwrap_or(R::TargetFailedHealthChecks);
                health(
                    S::Unhealthy,
                    Some(reason),
                    o.description.as_deref().unwrap_or("Health checks failed"),
                )
            }
        },
    }
}

fn parse_reason(s: &str) -> Option<TargetHealthReasonEnum> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

/// DescribeTargetHealth: the given targets (registered or not), or every
/// registered one.
pub fn describe_health(
    lb: &LbAccount,
    arn: &str,
    targets: &[elbv2::TargetDescription],
    now: f64,
) -> ApiResult<Vec<elbv2::TargetHealthDescription>> {
    let tg = find(lb, arn)?;
    let hc_port = |t: &StoredTarget| match tg.target_group.health_check_port.as_deref() {
        Some("traffic-port") | None => t.port.to_string(),
        Some(p) => p.to_string(),
    };
    let mut out = Vec::new();
    if targets.is_empty() {
        for t in tg
            .targets
            .iter()
            .filter(|t| t.draining_until.is_none_or(|u| u > now))
        {
            out.push(elbv2::TargetHealthDescription {
                target: Some(elbv2::TargetDescription {
                    id: Some(t.id.clone()),
                    port: Some(i32::from(t.port)),
                    availability_zone: t.availability_zone.clone(),
                    ..Default::default()
                }),
                health_check_port: Some(hc_port(t)),
                target_health: Some(target_health(lb, tg, Some(t), now)),
                ..Default::default()
            });
        }
        return Ok(out);
    }
    for d in targets {
        let id = d.id.clone().unwrap_or_default();
        let port = d.port.or(tg.target_group.port).unwrap_or(0);
        let t = tg
            .targets
            .iter()
            .find(|t| t.id == id && i32::from(t.port) == port);
        out.push(elbv2::TargetHealthDescription {
            target: Some(elbv2::TargetDescription {
                id: Some(id),
                port: Some(port),
                availability_zone: t.and_then(|t| t.availability_zone.clone()),
                ..Default::default()
            }),
            health_check_port: Some(t.map_or_else(|| port.to_string(), hc_port)),
            target_health: Some(target_health(lb, tg, t, now)),
            ..Default::default()
        });
    }
    Ok(out)
}
