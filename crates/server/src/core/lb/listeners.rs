//! Listeners and their rules: ports, protocols, actions and conditions,
//! checked as ELBv2 checks them.

use flotilla_model::arn::Scope;
use flotilla_model::wire::elbv2::{self, ActionTypeEnum, LoadBalancerTypeEnum, ProtocolEnum};

use super::{
    listener_not_found, merge_tags, new_id, put_listener, put_rule, rule_not_found, validation,
    LbAccount, StoredListener, StoredRule,
};
use crate::core::state::Tx;
use crate::error::{ApiError, ApiResult};

/// Rules per listener, the default rule not counted (ELBv2's quota is 100).
pub const MAX_RULES: usize = 100;
/// Listeners per load balancer (ELBv2's quota is 50).
pub const MAX_LISTENERS: usize = 50;

/// The target groups an action forwards to.
pub fn action_groups(a: &elbv2::Action) -> Vec<String> {
    if a.r#type != Some(ActionTypeEnum::Forward) {
        return Vec::new();
    }
    let mut out: Vec<String> = a.target_group_arn.iter().cloned().collect();
    for t in a
        .forward_config
        .iter()
        .flat_map(|f| f.target_groups.iter().flatten())
    {
        if let Some(arn) = &t.target_group_arn {
            if !out.contains(arn) {
                out.push(arn.clone());
            }
        }
    }
    out
}

/// Checks a list of actions for a listener of `protocol` on load balancer
/// `lb_arn`, and fills in what ELBv2 fills in (a forward's `ForwardConfig`,
/// orders). Returns them as they are stored.
fn check_actions(
    lb: &LbAccount,
    lb_arn: &str,
    protocol: ProtocolEnum,
    actions: Option<Vec<elbv2::Action>>,
) -> ApiResult<Vec<elbv2::Action>> {
    let mut actions = actions.unwrap_or_default();
    if actions.is_empty() {
        return Err(validation("At least one action must be specified"));
    }
    if actions.len() > 5 {
        return Err(ApiError::new(
            "TooManyActions",
            "You've reached the limit on the number of actions per rule (5)",
        ));
    }
    let kind = super::load_balancers::find(lb, lb_arn)?.kind();
    actions.sort_by_key(|a| a.order.unwrap_or(i32::MAX));
    let last = actions.len() - 1;
    for (i, a) in actions.iter_mut().enumerate() {
        let ty = a
            .r#type
            .ok_or_else(|| validation("An action must have a type"))?;
        match ty {
            ActionTypeEnum::Forward => {}
            ActionTypeEnum::FixedResponse | ActionTypeEnum::Redirect
                if kind == LoadBalancerTypeEnum::Application => {}
            ActionTypeEnum::FixedResponse | ActionTypeEnum::Redirect => {
                return Err(ApiError::new(
                    "InvalidLoadBalancerAction",
                    format!("Action type '{ty}' is not supported for network load balancers"),
                ))
            }
            other => {
                return Err(ApiError::new(
                    "InvalidLoadBalancerAction",
                    format!("Action type '{other}' is not supported by Flotilla (forward, fixed-response and redirect are)"),
                ))
            }
        }
        if i != last {
            return Err(ApiError::new(
                "InvalidLoadBalancerAction",
                format!("Action type '{ty}' must be the last action"),
            ));
        }
        if a.order.is_none() && i == 0 && last == 0 {
            // ELBv2 answers a single action with Order 1.
            a.order = Some(1);
        }
        match ty {
            ActionTypeEnum::Forward => check_forward(lb, lb_arn, protocol, a)?,
            ActionTypeEnum::FixedResponse => {
                let c = a.fixed_response_config.as_ref().ok_or_else(|| {
                    validation("A fixed-response action must have a FixedResponseConfig")
                })?;
                let code = c.status_code.as_deref().unwrap_or_default();
                if !matches!(code.parse::<u16>(), Ok(200..=599)) || code.len() != 3 {
                    return Err(validation(format!(
                        "Fixed-response status code '{code}' must be a 2XX, 4XX or 5XX code"
                    )));
                }
                if code.starts_with('3') {
                    return Err(validation(format!(
                        "Fixed-response status code '{code}' must be a 2XX, 4XX or 5XX code"
                    )));
                }
            }
            ActionTypeEnum::Redirect => {
                let c = a
                    .redirect_config
                    .as_mut()
                    .ok_or_else(|| validation("A redirect action must have a RedirectConfig"))?;
                if c.status_code.is_none() {
                    return Err(validation("A redirect action must have a status code"));
                }
                let same = c.protocol.as_deref().unwrap_or("#{protocol}") == "#{protocol}"
                    && c.host.as_deref().unwrap_or("#{host}") == "#{host}"
                    && c.port.as_deref().unwrap_or("#{port}") == "#{port}"
                    && c.path.as_deref().unwrap_or("/#{path}") == "/#{path}"
                    && c.query.as_deref().unwrap_or("#{query}") == "#{query}";
                if same {
                    return Err(validation(
                        "A redirect must change at least one of protocol, host, port or path, else it would loop",
                    ));
                }
                c.protocol.get_or_insert_with(|| "#{protocol}".into());
                c.host.get_or_insert_with(|| "#{host}".into());
                c.port.get_or_insert_with(|| "#{port}".into());
                c.path.get_or_insert_with(|| "/#{path}".into());
                c.query.get_or_insert_with(|| "#{query}".into());
            }
            _ => {}
        }
    }
    Ok(actions)
}

fn check_forward(
    lb: &LbAccount,
    lb_arn: &str,
    protocol: ProtocolEnum,
    a: &mut elbv2::Action,
) -> ApiResult<()> {
    let mut tuples: Vec<elbv2::TargetGroupTuple> = a
        .forward_config
        .as_ref()
        .and_then(|f| f.target_groups.clone())
        .unwrap_or_default();
    match (&a.target_group_arn, tuples.is_empty()) {
        (None, true) => return Err(validation(
            "A forward action must have a target group ARN or a ForwardConfig with target groups",
        )),
        (Some(arn), true) => tuples.push(elbv2::TargetGroupTuple {
            target_group_arn: Some(arn.clone()),
            weight: Some(1),
        }),
        (Some(arn), false) => {
            if tuples.len() != 1 || tuples[0].target_group_arn.as_ref() != Some(arn) {
                return Err(validation(
                    "You cannot specify both a target group ARN and a ForwardConfig with other target groups",
                ));
            }
        }
        (None, false) => {}
    }
    if tuples.len() > 5 {
        return Err(validation(
            "A forward action can forward to at most 5 target groups",
        ));
    }
    for t in &mut tuples {
        let arn = t.target_group_arn.clone().unwrap_or_default();
        let tg = lb.target_groups.get(&arn).ok_or_else(|| {
            ApiError::new(
                "TargetGroupNotFound",
                format!("Target group '{arn}' not found"),
            )
        })?;
        if tg.protocol() != protocol {
            return Err(ApiError::new(
                "IncompatibleProtocols",
                format!(
                    "The protocol '{}' of target group '{arn}' is incompatible with the listener's protocol '{protocol}'",
                    tg.protocol()
                ),
            ));
        }
        let others: Vec<String> = super::load_balancers_of(lb, &arn)
            .into_iter()
            .filter(|l| l != lb_arn)
            .collect();
        if !others.is_empty() {
            return Err(ApiError::new(
                "TargetGroupAssociationLimit",
                format!("The following target groups cannot be associated with more than one load balancer: {arn}"),
            ));
        }
        let w = t.weight.get_or_insert(1);
        if !(0..=999).contains(w) {
            return Err(validation(format!(
                "Target group weight '{w}' must be between 0 and 999"
            )));
        }
    }
    let single = tuples.len() == 1;
    if single {
        a.target_group_arn = tuples[0].target_group_arn.clone();
    }
    let stickiness = a
        .forward_config
        .as_ref()
        .and_then(|f| f.target_group_stickiness_config.clone());
    if let Some(s) = &stickiness {
        if s.enabled == Some(true) {
            match s.duration_seconds {
                Some(d) if (1..=604800).contains(&d) => {}
                _ => {
                    return Err(validation(
                        "Target group stickiness duration must be between 1 and 604800 seconds",
                    ))
                }
            }
        }
    }
    a.forward_config = Some(elbv2::ForwardActionConfig {
        target_groups: Some(tuples),
        target_group_stickiness_config: Some(stickiness.unwrap_or(
            elbv2::TargetGroupStickinessConfig {
                enabled: Some(false),
                duration_seconds: None,
            },
        )),
    });
    Ok(())
}

/// Checks a rule's conditions: at least one, each one field, at most five
/// values in all.
fn check_conditions(
    conditions: Option<Vec<elbv2::RuleCondition>>,
) -> ApiResult<Vec<elbv2::RuleCondition>> {
    let conditions = conditions.unwrap_or_default();
    if conditions.is_empty() {
        return Err(validation("A rule must have at least one condition"));
    }
    let mut values = 0;
    let mut seen_fields = Vec::new();
    for c in &conditions {
        let field = c.field.as_deref().unwrap_or_default();
        let (count, ok) = match field {
            "path-pattern" => (
                c.path_pattern_config
                    .as_ref()
                    .and_then(|p| p.values.as_ref())
                    .or(c.values.as_ref())
                    .map_or(0, Vec::len),
                true,
            ),
            "host-header" => (
                c.host_header_config
                    .as_ref()
                    .and_then(|p| p.values.as_ref())
                    .or(c.values.as_ref())
                    .map_or(0, Vec::len),
                true,
            ),
            "http-header" => {
                let h = c.http_header_config.as_ref();
                let name_ok = h
                    .and_then(|h| h.http_header_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                if !name_ok {
                    return Err(validation(
                        "An http-header condition must have an HttpHeaderConfig with a header name",
                    ));
                }
                (h.and_then(|h| h.values.as_ref()).map_or(0, Vec::len), true)
            }
            "http-request-method" => (
                c.http_request_method_config
                    .as_ref()
                    .and_then(|p| p.values.as_ref())
                    .map_or(0, Vec::len),
                true,
            ),
            "query-string" => (
                c.query_string_config
                    .as_ref()
                    .and_then(|p| p.values.as_ref())
                    .map_or(0, Vec::len),
                true,
            ),
            "source-ip" => {
                let v = c
                    .source_ip_config
                    .as_ref()
                    .and_then(|p| p.values.clone())
                    .unwrap_or_default();
                for cidr in &v {
                    if !valid_cidr(cidr) {
                        return Err(validation(format!(
                            "Source IP '{cidr}' is not a valid CIDR block"
                        )));
                    }
                }
                (v.len(), true)
            }
            _ => (0, false),
        };
        if !ok {
            return Err(validation(format!(
                "Condition field '{field}' must be one of [path-pattern, host-header, http-header, http-request-method, query-string, source-ip]"
            )));
        }
        if count == 0 {
            return Err(validation(format!(
                "A '{field}' condition must have at least one value"
            )));
        }
        if field != "http-header" {
            if seen_fields.contains(&field) {
                return Err(validation(format!(
                    "A rule can have at most one '{field}' condition"
                )));
            }
            seen_fields.push(field);
        }
        values += count;
    }
    if values > 5 {
        return Err(validation("A rule can have at most '5' condition values"));
    }
    Ok(conditions)
}

fn valid_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
        (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32,
        (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128,
        _ => false,
    }
}

fn check_protocol(kind: LoadBalancerTypeEnum, p: ProtocolEnum) -> ApiResult<()> {
    match (kind, p) {
        (LoadBalancerTypeEnum::Application, ProtocolEnum::Http)
        | (LoadBalancerTypeEnum::Network, ProtocolEnum::Tcp) => Ok(()),
        (LoadBalancerTypeEnum::Application, ProtocolEnum::Https)
        | (LoadBalancerTypeEnum::Network, ProtocolEnum::Tls) => Err(ApiError::new(
            "UnsupportedProtocol",
            format!("Protocol '{p}' is not supported by Flotilla (it has no certificates)"),
        )),
        _ => Err(ApiError::new(
            "UnsupportedProtocol",
            format!("Protocol '{p}' is not supported for load balancers of type '{kind}'"),
        )),
    }
}

/// CreateListener. The same port with the same settings is the same
/// listener; other settings are `DuplicateListener`.
pub fn create_listener(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    _scope: &Scope,
    input: elbv2::CreateListenerInput,
) -> ApiResult<StoredListener> {
    let lb_arn = input.load_balancer_arn.clone().unwrap_or_default();
    let l = super::load_balancers::find(lb, &lb_arn)?;
    let kind = l.kind();
    let protocol = input.protocol.unwrap_or(match kind {
        LoadBalancerTypeEnum::Network => ProtocolEnum::Tcp,
        _ => ProtocolEnum::Http,
    });
    check_protocol(kind, protocol)?;
    let Some(port) = input.port else {
        return Err(validation("A listener port must be specified"));
    };
    let actions = check_actions(lb, &lb_arn, protocol, input.default_actions)?;
    let tags = merge_tags(&[], input.tags.as_deref().unwrap_or_default())?;
    if let Some(existing) = lb
        .listeners
        .values()
        .find(|x| x.load_balancer_arn() == lb_arn && x.listener.port == Some(port))
    {
        if existing.listener.protocol == Some(protocol)
            && existing.listener.default_actions.as_ref() == Some(&actions)
        {
            return Ok(existing.clone());
        }
        return Err(ApiError::new(
            "DuplicateListener",
            "A listener already exists on this port for this load balancer",
        ));
    }
    let count = lb
        .listeners
        .values()
        .filter(|x| x.load_balancer_arn() == lb_arn)
        .count();
    if count >= MAX_LISTENERS {
        return Err(ApiError::new(
            "TooManyListeners",
            format!("You've reached the limit on the number of listeners per load balancer ({MAX_LISTENERS})"),
        ));
    }
    // listener/app/NAME/LBID/ID, beside the load balancer's ARN.
    let arn = lb_arn.replacen(":loadbalancer/", ":listener/", 1) + "/" + &new_id();
    let default_rule_arn = arn.replacen(":listener/", ":listener-rule/", 1) + "/" + &new_id();
    let stored = StoredListener {
        listener: elbv2::Listener {
            listener_arn: Some(arn.clone()),
            load_balancer_arn: Some(lb_arn),
            port: Some(port),
            protocol: Some(protocol),
            default_actions: Some(actions),
            ..Default::default()
        },
        tags,
        default_rule_arn,
    };
    put_listener(tx, &stored);
    lb.listeners.insert(arn, stored.clone());
    Ok(stored)
}

pub fn find_listener<'a>(lb: &'a LbAccount, arn: &str) -> ApiResult<&'a StoredListener> {
    lb.listeners.get(arn).ok_or_else(listener_not_found)
}

pub fn describe_listeners(
    lb: &LbAccount,
    lb_arn: Option<&str>,
    arns: &[String],
) -> ApiResult<Vec<elbv2::Listener>> {
    match (lb_arn, arns.is_empty()) {
        (Some(_), false) => Err(validation(
            "Load balancer ARN and listener ARNs cannot be specified at the same time",
        )),
        (None, true) => Err(validation(
            "You must specify either listener ARNs or a load balancer ARN",
        )),
        (Some(l), true) => {
            super::load_balancers::find(lb, l)?;
            let mut out: Vec<elbv2::Listener> = lb
                .listeners
                .values()
                .filter(|x| x.load_balancer_arn() == l)
                .map(|x| x.listener.clone())
                .collect();
            out.sort_by_key(|x| x.port);
            Ok(out)
        }
        (None, false) => arns
            .iter()
            .map(|a| find_listener(lb, a).map(|x| x.listener.clone()))
            .collect(),
    }
}

/// ModifyListener: port, protocol, default actions.
pub fn modify_listener(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    input: elbv2::ModifyListenerInput,
) -> ApiResult<elbv2::Listener> {
    let arn = input.listener_arn.clone().unwrap_or_default();
    let current = find_listener(lb, &arn)?.clone();
    let lb_arn = current.load_balancer_arn().to_string();
    let kind = super::load_balancers::find(lb, &lb_arn)?.kind();
    let protocol = input
        .protocol
        .or(current.listener.protocol)
        .unwrap_or(ProtocolEnum::Http);
    check_protocol(kind, protocol)?;
    let port = input.port.or(current.listener.port);
    if input.port.is_some_and(|p| Some(p) != current.listener.port)
        && lb
            .listeners
            .values()
            .any(|x| x.load_balancer_arn() == lb_arn && x.listener.port == port)
    {
        return Err(ApiError::new(
            "DuplicateListener",
            "A listener already exists on this port for this load balancer",
        ));
    }
    let actions = match input.default_actions {
        Some(a) => check_actions(lb, &lb_arn, protocol, Some(a))?,
        None => {
            let a = current.listener.default_actions.clone();
            check_actions(lb, &lb_arn, protocol, a)?
        }
    };
    // A protocol change must suit every rule's target groups too.
    if input.protocol.is_some() {
        for r in lb.rules.values().filter(|r| r.listener_arn == arn) {
            check_actions(lb, &lb_arn, protocol, r.rule.actions.clone())?;
        }
    }
    let l = lb.listeners.get_mut(&arn).ok_or_else(listener_not_found)?;
    l.listener.port = port;
    l.listener.protocol = Some(protocol);
    l.listener.default_actions = Some(actions);
    put_listener(tx, l);
    Ok(l.listener.clone())
}

/// DeleteListener: its rules go with it.
pub fn delete_listener(lb: &mut LbAccount, tx: &mut Tx<'_>, arn: &str) -> ApiResult<()> {
    find_listener(lb, arn)?;
    let rules: Vec<String> = lb
        .rules
        .iter()
        .filter(|(_, r)| r.listener_arn == arn)
        .map(|(a, _)| a.clone())
        .collect();
    for r in rules {
        lb.rules.remove(&r);
        super::delete(tx, super::KIND_RULE, &r);
    }
    lb.listeners.remove(arn);
    super::delete(tx, super::KIND_LISTENER, arn);
    Ok(())
}

/// CreateRule (application load balancers' listeners only).
pub fn create_rule(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    input: elbv2::CreateRuleInput,
) -> ApiResult<elbv2::Rule> {
    let listener_arn = input.listener_arn.clone().unwrap_or_default();
    let l = find_listener(lb, &listener_arn)?.clone();
    let lb_arn = l.load_balancer_arn().to_string();
    if super::load_balancers::find(lb, &lb_arn)?.kind() != LoadBalancerTypeEnum::Application {
        return Err(validation(
            "Rules can only be created on listeners of application load balancers",
        ));
    }
    let Some(priority) = input.priority else {
        return Err(validation("A rule priority must be specified"));
    };
    let conditions = check_conditions(input.conditions)?;
    let protocol = l.listener.protocol.unwrap_or(ProtocolEnum::Http);
    let actions = check_actions(lb, &lb_arn, protocol, input.actions)?;
    let tags = merge_tags(&[], input.tags.as_deref().unwrap_or_default())?;
    let mine: Vec<&StoredRule> = lb
        .rules
        .values()
        .filter(|r| r.listener_arn == listener_arn)
        .collect();
    if mine.iter().any(|r| r.priority() == priority as u32) {
        return Err(ApiError::new(
            "PriorityInUse",
            format!("Priority '{priority}' is currently in use"),
        ));
    }
    if mine.len() >= MAX_RULES {
        return Err(ApiError::new(
            "TooManyRules",
            format!("You've reached the limit on the number of rules per listener ({MAX_RULES})"),
        ));
    }
    let arn = listener_arn.replacen(":listener/", ":listener-rule/", 1) + "/" + &new_id();
    let stored = StoredRule {
        rule: elbv2::Rule {
            rule_arn: Some(arn.clone()),
            priority: Some(priority.to_string()),
            conditions: Some(conditions),
            actions: Some(actions),
            is_default: Some(false),
            ..Default::default()
        },
        listener_arn,
        tags,
    };
    put_rule(tx, &stored);
    lb.rules.insert(arn, stored.clone());
    Ok(stored.rule)
}

/// A listener's default rule, as DescribeRules shows it.
fn default_rule(l: &StoredListener) -> elbv2::Rule {
    elbv2::Rule {
        rule_arn: Some(l.default_rule_arn.clone()),
        priority: Some("default".into()),
        conditions: Some(Vec::new()),
        actions: l.listener.default_actions.clone(),
        is_default: Some(true),
        ..Default::default()
    }
}

/// Finds a rule by ARN, default rules included: (rule, its listener).
fn find_rule(lb: &LbAccount, arn: &str) -> ApiResult<(elbv2::Rule, String)> {
    if let Some(r) = lb.rules.get(arn) {
        return Ok((r.rule.clone(), r.listener_arn.clone()));
    }
    lb.listeners
        .values()
        .find(|l| l.default_rule_arn == arn)
        .map(|l| (default_rule(l), l.arn().to_string()))
        .ok_or_else(rule_not_found)
}

pub fn describe_rules(
    lb: &LbAccount,
    listener_arn: Option<&str>,
    arns: &[String],
) -> ApiResult<Vec<elbv2::Rule>> {
    match (listener_arn, arns.is_empty()) {
        (Some(_), false) => Err(validation(
            "Listener ARN and rule ARNs cannot be specified at the same time",
        )),
        (None, true) => Err(validation(
            "You must specify either listener rule ARNs or a listener ARN",
        )),
        (Some(la), true) => {
            let l = find_listener(lb, la)?;
            let mut rules: Vec<&StoredRule> =
                lb.rules.values().filter(|r| r.listener_arn == la).collect();
            rules.sort_by_key(|r| r.priority());
            let mut out: Vec<elbv2::Rule> = rules.into_iter().map(|r| r.rule.clone()).collect();
            out.push(default_rule(l));
            Ok(out)
        }
        (None, false) => arns.iter().map(|a| find_rule(lb, a).map(|r| r.0)).collect(),
    }
}

/// ModifyRule: conditions and actions (the default rule's actions are its
/// listener's default actions).
pub fn modify_rule(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    input: elbv2::ModifyRuleInput,
) -> ApiResult<elbv2::Rule> {
    let arn = input.rule_arn.clone().unwrap_or_default();
    let (rule, listener_arn) = find_rule(lb, &arn)?;
    let l = find_listener(lb, &listener_arn)?.clone();
    let lb_arn = l.load_balancer_arn().to_string();
    let protocol = l.listener.protocol.unwrap_or(ProtocolEnum::Http);
    let actions = match input.actions {
        Some(a) => Some(check_actions(lb, &lb_arn, protocol, Some(a))?),
        None => None,
    };
    if rule.is_default == Some(true) {
        if input.conditions.is_some() {
            return Err(ApiError::new(
                "OperationNotPermitted",
                "Conditions cannot be set on the default rule",
            ));
        }
        let l = lb
            .listeners
            .get_mut(&listener_arn)
            .ok_or_else(listener_not_found)?;
        if let Some(a) = actions {
            l.listener.default_actions = Some(a);
            put_listener(tx, l);
        }
        return Ok(default_rule(l));
    }
    let conditions = match input.conditions {
        Some(c) => Some(check_conditions(Some(c))?),
        None => None,
    };
    let r = lb.rules.get_mut(&arn).ok_or_else(rule_not_found)?;
    if let Some(a) = actions {
        r.rule.actions = Some(a);
    }
    if let Some(c) = conditions {
        r.rule.conditions = Some(c);
    }
    put_rule(tx, r);
    Ok(r.rule.clone())
}

pub fn delete_rule(lb: &mut LbAccount, tx: &mut Tx<'_>, arn: &str) -> ApiResult<()> {
    if lb.listeners.values().any(|l| l.default_rule_arn == arn) {
        return Err(ApiError::new(
            "OperationNotPermitted",
            "Default rule cannot be deleted",
        ));
    }
    lb.rules.remove(arn).ok_or_else(rule_not_found)?;
    super::delete(tx, super::KIND_RULE, arn);
    Ok(())
}

/// SetRulePriorities: all at once; the result may not put two rules of a
/// listener on one priority.
pub fn set_priorities(
    lb: &mut LbAccount,
    tx: &mut Tx<'_>,
    pairs: &[(String, i32)],
) -> ApiResult<Vec<elbv2::Rule>> {
    let mut new: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
    for (arn, p) in pairs {
        if lb.listeners.values().any(|l| &l.default_rule_arn == arn) {
            return Err(ApiError::new(
                "OperationNotPermitted",
                "The default rule's priority cannot be changed",
            ));
        }
        if !lb.rules.contains_key(arn) {
            return Err(rule_not_found());
        }
        if new.insert(arn.clone(), *p as u32).is_some() {
            return Err(validation(format!("Rule '{arn}' is given more than once")));
        }
    }
    let mut taken: std::collections::HashSet<(String, u32)> = std::collections::HashSet::new();
    for (arn, r) in &lb.rules {
        let p = new.get(arn).copied().unwrap_or_else(|| r.priority());
        if !taken.insert((r.listener_arn.clone(), p)) {
            return Err(ApiError::new(
                "PriorityInUse",
                format!("Priority '{p}' is currently in use"),
            ));
        }
    }
    let mut out = Vec::new();
    for (arn, p) in new {
        if let Some(r) = lb.rules.get_mut(&arn) {
            r.rule.priority = Some(p.to_string());
            put_rule(tx, r);
            out.push(r.rule.clone());
        }
    }
    Ok(out)
}
