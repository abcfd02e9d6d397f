//! Load balancers: creation, attributes, deletion, and which node address
//! serves each one.
//!
//! Address mapping: each load balancer gets one address of one connected
//! node that no other load balancer of the account and region holds (nodes
//! connect with an account's credentials and serve only its load
//! balancers). The address is kept while the node is away, so the load
//! balancer's `DNSName` never changes under its users; it changes only when
//! the node comes back without that address (see `super::nodes`).

use flotilla_model::arn::Scope;
use flotilla_model::wire::elbv2::{
    self, IpAddressType, LoadBalancerSchemeEnum, LoadBalancerStateEnum, LoadBalancerTypeEnum,
};

use super::{
    arn, check_name, lb_not_found, merge_tags, new_id, put_lb, put_listener, validation, LbAccount,
    StoredLoadBalancer,
};
use crate::core::state::Tx;
use crate::error::{ApiError, ApiResult};

/// The attributes an application load balancer has, with their defaults.
const ALB_ATTRIBUTES: &[(&str, &str)] = &[
    ("access_logs.s3.enabled", "false"),
    ("access_logs.s3.bucket", ""),
    ("access_logs.s3.prefix", ""),
    ("client_keep_alive.seconds", "3600"),
    ("connection_logs.s3.enabled", "false"),
    ("connection_logs.s3.bucket", ""),
    ("connection_logs.s3.prefix", ""),
    ("deletion_protection.enabled", "false"),
    ("idle_timeout.timeout_seconds", "60"),
    ("load_balancing.cross_zone.enabled", "true"),
    ("routing.http.desync_mitigation_mode", "defensive"),
    ("routing.http.drop_invalid_header_fields.enabled", "false"),
    ("routing.http.preserve_host_header.enabled", "false"),
    (
        "routing.http.x_amzn_tls_version_and_cipher_suite.enabled",
        "false",
    ),
    ("routing.http.xff_client_port.enabled", "false"),
    ("routing.http.xff_header_processing.mode", "append"),
    ("routing.http2.enabled", "true"),
    ("waf.fail_open.enabled", "false"),
    ("zonal_shift.config.enabled", "false"),
];

/// The attributes a network load balancer has, with their defaults.
const NLB_ATTRIBUTES: &[(&str, &str)] = &[
    ("access_logs.s3.enabled", "false"),
    ("access_logs.s3.bucket", ""),
    ("access_logs.s3.prefix", ""),
    ("deletion_protection.enabled", "false"),
    ("dns_record.client_routing_policy", "any_availability_zone"),
    ("load_balancing.cross_zone.enabled", "false"),
    ("zonal_shift.config.enabled", "false"),
];

pub fn default_attributes(kind: LoadBalancerTypeEnum) -> &'static [(&'static str, &'static str)] {
    match kind {
        LoadBalancerTypeEnum::Network => NLB_ATTRIBUTES,
        _ => ALB_ATTRIBUTES,
    }
}

/// What CreateLoadBalancer asks for, checked.
pub struct NewLoadBalancer {
    pub name: String,
    pub kind: LoadBalancerTypeEnum,
    pub scheme: LoadBalancerSchemeEnum,
    pub ip_address_type: IpAddressType,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub tags: Vec<elbv2::Tag>,
}

impl NewLoadBalancer {
    pub fn from_input(input: elbv2::CreateLoadBalancerInput) -> ApiResult<NewLoadBalancer> {
        let name = input.name.unwrap_or_default();
        check_name("Load balancer", &name)?;
        if name.starts_with("internal-") {
            return Err(validation(format!(
                "Load balancer name '{name}' cannot begin with 'internal-'"
            )));
        }
        let kind = input.r#type.unwrap_or(LoadBalancerTypeEnum::Application);
        if kind == LoadBalancerTypeEnum::Gateway {
            return Err(validation(
                "Load balancers of type 'gateway' are not supported by Flotilla; use 'application' or 'network'",
            ));
        }
        let mut subnets = input.subnets.unwrap_or_default();
        subnets.extend(
            input
                .subnet_mappings
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| m.subnet_id),
        );
        let security_groups = input.security_groups.unwrap_or_default();
        if kind == LoadBalancerTypeEnum::Network && !security_groups.is_empty() {
            // Accepted (NLBs have security groups since 2023).
        }
        let tags = merge_tags(&[], &input.tags.unwrap_or_default())?;
        Ok(NewLoadBalancer {
            name,
            kind,
            scheme: input
                .scheme
                .unwrap_or(LoadBalancerSchemeEnum::InternetFacing),
            ip_address_type: input.ip_address_type.unwrap_or(IpAddressType::Ipv4),
            subnets,
            security_groups,
            tags,
        })
    }
}

/// CreateLoadBalancer. The same name with the same settings is the same
/// load balancer (ELBv2's idempotency); with other settings it is
/// `DuplicateLoadBalancerName`.
pub fn create(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    scope: &Scope,
    new: NewLoadBalancer,
    now: f64,
) -> ApiResult<StoredLoadBalancer> {
    if let Some(existing) = lb.load_balancers.values().find(|l| l.name() == new.name) {
        let same = existing.kind() == new.kind
            && existing.load_balancer.scheme == Some(new.scheme)
            && existing.load_balancer.ip_address_type == Some(new.ip_address_type);
        if same {
            return Ok(existing.clone());
        }
        return Err(ApiError::new(
            "DuplicateLoadBalancerName",
            format!(
                "A load balancer with the same name '{}' exists, but with different settings",
                new.name
            ),
        ));
    }
    if lb.load_balancers.len() >= 50 {
        return Err(ApiError::new(
            "TooManyLoadBalancers",
            "The quota for the number of load balancers has been reached (50)",
        ));
    }
    let prefix = match new.kind {
        LoadBalancerTypeEnum::Network => "net",
        _ => "app",
    };
    let arn = arn(
        scope,
        format_args!("loadbalancer/{prefix}/{}/{}", new.name, new_id()),
    );
    let zones = if new.subnets.is_empty() {
        vec![elbv2::AvailabilityZone {
            zone_name: Some(format!("{}a", scope.region)),
            ..Default::default()
        }]
    } else {
        new.subnets
            .iter()
            .map(|s| elbv2::AvailabilityZone {
                zone_name: Some(format!("{}a", scope.region)),
                subnet_id: Some(s.clone()),
                ..Default::default()
            })
            .collect()
    };
    let stored = StoredLoadBalancer {
        load_balancer: elbv2::LoadBalancer {
            load_balancer_arn: Some(arn.clone()),
            load_balancer_name: Some(new.name),
            canonical_hosted_zone_id: Some("Z00FLOTILLA0LOCAL".into()),
            created_time: Some(now),
            scheme: Some(new.scheme),
            vpc_id: Some("vpc-flotilla".into()),
            state: Some(elbv2::LoadBalancerState {
                code: Some(LoadBalancerStateEnum::Provisioning),
                reason: None,
            }),
            r#type: Some(new.kind),
            availability_zones: Some(zones),
            security_groups: (new.kind == LoadBalancerTypeEnum::Application
                || !new.security_groups.is_empty())
            .then_some(new.security_groups),
            ip_address_type: Some(new.ip_address_type),
            ..Default::default()
        },
        tags: new.tags,
        ..Default::default()
    };
    put_lb(tx, &stored);
    lb.load_balancers.insert(arn.clone(), stored);
    assign_addresses(lb, tx);
    Ok(lb.load_balancers[&arn].clone())
}

/// Gives every load balancer without an address a free address of a
/// connected node, oldest load balancer first.
pub fn assign_addresses(lb: &mut LbAccount, tx: &mut Tx<'_>) {
    let mut waiting: Vec<(f64, String)> = lb
        .load_balancers
        .values()
        .filter(|l| l.address.is_none())
        .map(|l| {
            (
                l.load_balancer.created_time.unwrap_or(0.0),
                l.arn().to_string(),
            )
        })
        .collect();
    if waiting.is_empty() {
        return;
    }
    waiting.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let taken: std::collections::HashSet<std::net::IpAddr> = lb
        .load_balancers
        .values()
        .filter_map(|l| l.address)
        .collect();
    let mut free: Vec<(String, std::net::IpAddr)> = lb
        .nodes
        .values()
        .filter(|n| n.connected)
        .flat_map(|n| n.addresses.iter().map(|a| (n.name.clone(), *a)))
        .filter(|(_, a)| !taken.contains(a))
        .collect();
    free.reverse();
    for (_, arn) in waiting {
        let Some((node, address)) = free.pop() else {
            break;
        };
        if let Some(l) = lb.load_balancers.get_mut(&arn) {
            l.node = Some(node);
            l.address = Some(address);
            l.load_balancer.dns_name = Some(address.to_string());
            put_lb(tx, l);
        }
    }
}

/// The load balancers DescribeLoadBalancers answers with, in creation order.
pub fn describe(
    lb: &LbAccount,
    arns: &[String],
    names: &[String],
) -> ApiResult<Vec<elbv2::LoadBalancer>> {
    if !arns.is_empty() && !names.is_empty() {
        return Err(validation(
            "Load balancer names and load balancer ARNs cannot be specified at the same time",
        ));
    }
    let mut out: Vec<&StoredLoadBalancer> = Vec::new();
    if !arns.is_empty() {
        for a in arns {
            out.push(lb.load_balancers.get(a).ok_or_else(|| {
                ApiError::new(
                    "LoadBalancerNotFound",
                    format!("Load balancers '[{a}]' not found"),
                )
            })?);
        }
    } else if !names.is_empty() {
        for n in names {
            out.push(
                lb.load_balancers
                    .values()
                    .find(|l| l.name() == n)
                    .ok_or_else(|| {
                        ApiError::new(
                            "LoadBalancerNotFound",
                            format!("Load balancers '[{n}]' not found"),
                        )
                    })?,
            );
        }
    } else {
        out = lb.load_balancers.values().collect();
        out.sort_by(|a, b| {
            a.load_balancer
                .created_time
                .unwrap_or(0.0)
                .total_cmp(&b.load_balancer.created_time.unwrap_or(0.0))
                .then_with(|| a.arn().cmp(b.arn()))
        });
    }
    Ok(out.into_iter().map(|l| l.load_balancer.clone()).collect())
}

pub fn find<'a>(lb: &'a LbAccount, arn: &str) -> ApiResult<&'a StoredLoadBalancer> {
    lb.load_balancers.get(arn).ok_or_else(lb_not_found)
}

/// DeleteLoadBalancer: its listeners and rules go with it; its target
/// groups stay (as in ELBv2). Deletion protection refuses.
pub fn delete(lb: &mut LbAccount, tx: &mut Tx<'_>, arn: &str) -> ApiResult<()> {
    let l = find(lb, arn)?;
    if attribute(l, "deletion_protection.enabled").as_deref() == Some("true") {
        return Err(ApiError::new(
            "OperationNotPermitted",
            format!(
                "Load balancer '{arn}' cannot be deleted because deletion protection is enabled"
            ),
        ));
    }
    let listeners: Vec<String> = lb
        .listeners
        .values()
        .filter(|l| l.load_balancer_arn() == arn)
        .map(|l| l.arn().to_string())
        .collect();
    for l in listeners {
        super::listeners::delete_listener(lb, tx, &l)?;
    }
    lb.load_balancers.remove(arn);
    super::delete(tx, super::KIND_LB, arn);
    assign_addresses(lb, tx);
    Ok(())
}

/// An attribute's value, or its default.
pub fn attribute(l: &StoredLoadBalancer, key: &str) -> Option<String> {
    l.attributes.get(key).cloned().or_else(|| {
        default_attributes(l.kind())
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    })
}

/// Every attribute with its value (defaults included), as Describe answers.
pub fn attributes(l: &StoredLoadBalancer) -> Vec<elbv2::LoadBalancerAttribute> {
    default_attributes(l.kind())
        .iter()
        .map(|(k, _)| elbv2::LoadBalancerAttribute {
            key: Some(k.to_string()),
            value: attribute(l, k),
        })
        .collect()
}

/// ModifyLoadBalancerAttributes: every key must be one this type has, and
/// the ones Flotilla acts on must be in range.
pub fn modify_attributes(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    arn: &str,
    changes: &[elbv2::LoadBalancerAttribute],
) -> ApiResult<Vec<elbv2::LoadBalancerAttribute>> {
    let l = find(lb, arn)?;
    let kind = l.kind();
    for a in changes {
        let key = a.key.as_deref().unwrap_or_default();
        let value = a.value.as_deref().unwrap_or_default();
        if !default_attributes(kind).iter().any(|(k, _)| *k == key) {
            return Err(validation(format!(
                "Load balancer attribute key '{key}' is not recognized"
            )));
        }
        check_attribute(key, value)?;
    }
    let l = lb.load_balancers.get_mut(arn).ok_or_else(lb_not_found)?;
    for a in changes {
        l.attributes.insert(
            a.key.clone().unwrap_or_default(),
            a.value.clone().unwrap_or_default(),
        );
    }
    put_lb(tx, l);
    let out = attributes(l);
    // The idle timeout is part of the nodes' configuration.
    let listeners: Vec<String> = lb
        .listeners
        .values()
        .filter(|x| x.load_balancer_arn() == arn)
        .map(|x| x.arn().to_string())
        .collect();
    for x in listeners {
        if let Some(x) = lb.listeners.get(&x) {
            put_listener(tx, x);
        }
    }
    Ok(out)
}

fn check_attribute(key: &str, value: &str) -> ApiResult<()> {
    let boolean = |v: &str| v == "true" || v == "false";
    let bad = || {
        validation(format!(
            "Load balancer attribute value '{value}' is not valid for '{key}'"
        ))
    };
    match key {
        "idle_timeout.timeout_seconds" => match value.parse::<u32>() {
            Ok(n) if (1..=4000).contains(&n) => Ok(()),
            _ => Err(validation(format!(
                "Load balancer attribute value '{value}' for 'idle_timeout.timeout_seconds' must be an integer between 1 and 4000"
            ))),
        },
        "client_keep_alive.seconds" => match value.parse::<u32>() {
            Ok(n) if (60..=604800).contains(&n) => Ok(()),
            _ => Err(bad()),
        },
        k if k.ends_with(".enabled") => boolean(value).then_some(()).ok_or_else(bad),
        "routing.http.desync_mitigation_mode" => ["monitor", "defensive", "strictest"]
            .contains(&value)
            .then_some(())
            .ok_or_else(bad),
        "routing.http.xff_header_processing.mode" => ["append", "preserve", "remove"]
            .contains(&value)
            .then_some(())
            .ok_or_else(bad),
        "dns_record.client_routing_policy" => [
            "availability_zone_affinity",
            "partial_availability_zone_affinity",
            "any_availability_zone",
        ]
        .contains(&value)
        .then_some(())
        .ok_or_else(bad),
        _ => Ok(()),
    }
}

/// The idle timeout the nodes apply (ALB's attribute; 350 s for NLB, its
/// fixed TCP idle timeout).
pub fn idle_timeout(l: &StoredLoadBalancer) -> u32 {
    match l.kind() {
        LoadBalancerTypeEnum::Network => 350,
        _ => attribute(l, "idle_timeout.timeout_seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    }
}
