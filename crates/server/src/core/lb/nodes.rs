//! Load-balancer nodes: which load balancers each serves, the complete
//! configuration it is sent ([`NodeConfig`]), and what it reports back.

use std::collections::BTreeSet;
use std::net::IpAddr;

use flotilla_model::lb::{
    Action, Condition, HealthCheckConfig, ListenerConfig, LoadBalancerKind, NodeConfig, Protocol,
    RuleConfig, TargetConfig, TargetGroupConfig, TargetHealthReport, TargetState,
    WeightedTargetGroup,
};
use flotilla_model::wire::elbv2::{self, ActionTypeEnum, LoadBalancerStateEnum, ProtocolEnum};

use super::load_balancers::{assign_addresses, idle_timeout};
use super::{put_lb, put_node, LbAccount, LbNode, ObservedTarget, StoredTargetGroup};
use crate::core::state::Tx;

/// A node connected with these addresses: they are recorded, load
/// balancers on addresses it no longer has are moved, and load balancers
/// waiting for an address get one.
pub fn connected(lb: &mut LbAccount, tx: &mut Tx<'_>, name: &str, addresses: Vec<IpAddr>) {
    let node = lb.nodes.entry(name.to_string()).or_insert_with(|| LbNode {
        name: name.to_string(),
        ..Default::default()
    });
    node.connected = true;
    if node.addresses != addresses {
        node.addresses = addresses.clone();
        put_node(tx, node);
    }
    // Another node may have claimed one of these addresses before: the
    // latest to connect with it holds it.
    for other in lb.nodes.values_mut().filter(|n| n.name != name) {
        let before = other.addresses.len();
        other.addresses.retain(|a| !addresses.contains(a));
        if other.addresses.len() != before {
            put_node(tx, other);
        }
    }
    for l in lb.load_balancers.values_mut() {
        let moved = match (&l.node, l.address) {
            (Some(n), Some(a)) if n == name => !addresses.contains(&a),
            (Some(_), Some(a)) => addresses.contains(&a),
            _ => false,
        };
        if moved {
            l.node = None;
            l.address = None;
            l.load_balancer.dns_name = None;
            set_state(l, LoadBalancerStateEnum::Provisioning);
            put_lb(tx, l);
        }
    }
    assign_addresses(lb, tx);
}

/// The node's session ended: its load balancers keep their addresses (it
/// will be back), and its health reports no longer stand.
pub fn disconnected(lb: &mut LbAccount, name: &str) {
    if let Some(n) = lb.nodes.get_mut(name) {
        n.connected = false;
    }
    let groups: BTreeSet<String> = config_for(lb, name, 0.0)
        .target_groups
        .into_keys()
        .collect();
    lb.health.retain(|(g, _, _), _| !groups.contains(g));
}

fn set_state(l: &mut super::StoredLoadBalancer, code: LoadBalancerStateEnum) {
    l.load_balancer.state = Some(elbv2::LoadBalancerState {
        code: Some(code),
        reason: None,
    });
}

/// The load balancers served by `node`.
pub fn load_balancers_on(lb: &LbAccount, node: &str) -> Vec<String> {
    lb.load_balancers
        .values()
        .filter(|l| l.node.as_deref() == Some(node) && l.address.is_some())
        .map(|l| l.arn().to_string())
        .collect()
}

/// The node applied a configuration holding `served`: those of them still
/// on this node are active.
pub fn applied(lb: &mut LbAccount, tx: &mut Tx<'_>, node: &str, served: &[String]) {
    for arn in served {
        let Some(l) = lb.load_balancers.get_mut(arn) else {
            continue;
        };
        if l.node.as_deref() == Some(node) && l.state() == LoadBalancerStateEnum::Provisioning {
            set_state(l, LoadBalancerStateEnum::Active);
            put_lb(tx, l);
        }
    }
}

/// Health reports of a node (for groups it serves; others are ignored).
/// Returns the ECS tasks whose targets' health changed.
pub fn report_health(
    lb: &mut LbAccount,
    node: &str,
    reports: Vec<TargetHealthReport>,
    now: f64,
) -> Vec<String> {
    let served: BTreeSet<String> = config_for(lb, node, now)
        .target_groups
        .into_keys()
        .collect();
    let mut changed = Vec::new();
    for r in reports {
        if !served.contains(&r.target_group_arn) {
            continue;
        }
        let key = (r.target_group_arn, r.target_id, r.port);
        let since = match lb.health.get(&key) {
            Some(o) if o.health == r.health => o.since,
            _ => {
                let task = lb.target_groups.get(&key.0).and_then(|g| {
                    g.targets
                        .iter()
                        .find(|t| t.id == key.1 && t.port == key.2)
                        .and_then(|t| t.task_arn.clone())
                });
                changed.extend(task);
                now
            }
        };
        lb.health.insert(
            key,
            ObservedTarget {
                health: r.health,
                reason: r.reason,
                description: r.description,
                since,
            },
        );
    }
    changed
}

fn protocol(p: Option<ProtocolEnum>) -> Protocol {
    match p {
        Some(ProtocolEnum::Tcp) => Protocol::Tcp,
        _ => Protocol::Http,
    }
}

/// One wire action as the node runs it (`None`: an action Flotilla does not
/// run, refused at the API).
fn action(a: &elbv2::Action) -> Option<Action> {
    match a.r#type? {
        ActionTypeEnum::Forward => {
            let f = a.forward_config.as_ref();
            let mut groups: Vec<WeightedTargetGroup> = f
                .and_then(|f| f.target_groups.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    Some(WeightedTargetGroup {
                        target_group_arn: t.target_group_arn.clone()?,
                        weight: t.weight.unwrap_or(1).max(0) as u32,
                    })
                })
                .collect();
            if groups.is_empty() {
                groups.push(WeightedTargetGroup {
                    target_group_arn: a.target_group_arn.clone()?,
                    weight: 1,
                });
            }
            let stickiness_secs = f
                .and_then(|f| f.target_group_stickiness_config.as_ref())
                .filter(|s| s.enabled == Some(true))
                .and_then(|s| s.duration_seconds)
                .map(|d| d.max(0) as u32);
            Some(Action::Forward {
                target_groups: groups,
                stickiness_secs,
            })
        }
        ActionTypeEnum::FixedResponse => {
            let c = a.fixed_response_config.as_ref()?;
            Some(Action::FixedResponse {
                status_code: c.status_code.as_deref()?.parse().ok()?,
                content_type: c.content_type.clone(),
                body: c.message_body.clone(),
            })
        }
        ActionTypeEnum::Redirect => {
            let c = a.redirect_config.as_ref()?;
            Some(Action::Redirect {
                protocol: c.protocol.clone().unwrap_or_else(|| "#{protocol}".into()),
                host: c.host.clone().unwrap_or_else(|| "#{host}".into()),
                port: c.port.clone().unwrap_or_else(|| "#{port}".into()),
                path: c.path.clone().unwrap_or_else(|| "/#{path}".into()),
                query: c.query.clone().unwrap_or_else(|| "#{query}".into()),
                status_code: match c.status_code {
                    Some(elbv2::RedirectActionStatusCodeEnum::Http301) => 301,
                    _ => 302,
                },
            })
        }
        _ => None,
    }
}

fn condition(c: &elbv2::RuleCondition) -> Option<Condition> {
    let values = |cfg: Option<&Vec<String>>| cfg.or(c.values.as_ref()).cloned().unwrap_or_default();
    Some(match c.field.as_deref()? {
        "path-pattern" => Condition::PathPattern {
            values: values(
                c.path_pattern_config
                    .as_ref()
                    .and_then(|p| p.values.as_ref()),
            ),
        },
        "host-header" => Condition::HostHeader {
            values: values(
                c.host_header_config
                    .as_ref()
                    .and_then(|p| p.values.as_ref()),
            ),
        },
        "http-header" => {
            let h = c.http_header_config.as_ref()?;
            Condition::HttpHeader {
                name: h.http_header_name.clone()?,
                values: h.values.clone().unwrap_or_default(),
            }
        }
        "http-request-method" => Condition::HttpRequestMethod {
            values: c
                .http_request_method_config
                .as_ref()?
                .values
                .clone()
                .unwrap_or_default(),
        },
        "query-string" => Condition::QueryString {
            values: c
                .query_string_config
                .as_ref()?
                .values
                .iter()
                .flatten()
                .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                .collect(),
        },
        "source-ip" => Condition::SourceIp {
            values: c
                .source_ip_config
                .as_ref()?
                .values
                .clone()
                .unwrap_or_default(),
        },
        _ => return None,
    })
}

fn target_group(tg: &StoredTargetGroup, now: f64) -> TargetGroupConfig {
    let t = &tg.target_group;
    let stickiness_secs = (tg.attribute("stickiness.enabled").as_deref() == Some("true")
        && tg.attribute("stickiness.type").as_deref() == Some("lb_cookie"))
    .then(|| {
        tg.attribute("stickiness.lb_cookie.duration_seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(86400)
    });
    TargetGroupConfig {
        target_group_arn: tg.arn().to_string(),
        name: tg.name().to_string(),
        protocol: protocol(t.protocol),
        targets: tg
            .targets
            .iter()
            .filter(|x| x.draining_until.is_none_or(|u| u > now))
            .map(|x| TargetConfig {
                id: x.id.clone(),
                address: x.address,
                port: x.port,
                state: match x.draining_until {
                    Some(until) => TargetState::Draining { until },
                    None => TargetState::Active,
                },
                registered_at: x.registered_at,
            })
            .collect(),
        health_check: HealthCheckConfig {
            enabled: t.health_check_enabled.unwrap_or(true),
            protocol: protocol(t.health_check_protocol),
            port: t.health_check_port.as_deref().and_then(|p| p.parse().ok()),
            path: t.health_check_path.clone().unwrap_or_else(|| "/".into()),
            interval_secs: t.health_check_interval_seconds.unwrap_or(30).max(1) as u32,
            timeout_secs: t.health_check_timeout_seconds.unwrap_or(5).max(1) as u32,
            healthy_threshold: t.healthy_threshold_count.unwrap_or(5).max(1) as u32,
            unhealthy_threshold: t.unhealthy_threshold_count.unwrap_or(2).max(1) as u32,
            matcher: t
                .matcher
                .as_ref()
                .and_then(|m| m.http_code.clone())
                .unwrap_or_else(|| "200".into()),
        },
        deregistration_delay_secs: tg.deregistration_delay(),
        slow_start_secs: tg
            .attribute("slow_start.duration_seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        stickiness_secs,
    }
}

/// The complete configuration of `node`: every listener of the load
/// balancers it serves, and every target group they reach.
pub fn config_for(lb: &LbAccount, node: &str, now: f64) -> NodeConfig {
    let mut config = NodeConfig::default();
    for l in lb
        .load_balancers
        .values()
        .filter(|l| l.node.as_deref() == Some(node))
    {
        let Some(address) = l.address else { continue };
        let kind = match l.kind() {
            elbv2::LoadBalancerTypeEnum::Network => LoadBalancerKind::Network,
            _ => LoadBalancerKind::Application,
        };
        let mut listeners: Vec<&super::StoredListener> = lb
            .listeners
            .values()
            .filter(|x| x.load_balancer_arn() == l.arn())
            .collect();
        listeners.sort_by_key(|x| x.listener.port);
        for x in listeners {
            let mut rules: Vec<&super::StoredRule> = lb
                .rules
                .values()
                .filter(|r| r.listener_arn == x.arn())
                .collect();
            rules.sort_by_key(|r| r.priority());
            let rules: Vec<RuleConfig> = rules
                .into_iter()
                .map(|r| RuleConfig {
                    rule_arn: r.rule.rule_arn.clone().unwrap_or_default(),
                    priority: r.priority(),
                    conditions: r
                        .rule
                        .conditions
                        .iter()
                        .flatten()
                        .filter_map(condition)
                        .collect(),
                    actions: r.rule.actions.iter().flatten().filter_map(action).collect(),
                })
                .collect();
            let default_actions: Vec<Action> = x
                .listener
                .default_actions
                .iter()
                .flatten()
                .filter_map(action)
                .collect();
            for a in rules
                .iter()
                .flat_map(|r| r.actions.iter())
                .chain(default_actions.iter())
            {
                if let Action::Forward { target_groups, .. } = a {
                    for g in target_groups {
                        if let Some(tg) = lb.target_groups.get(&g.target_group_arn) {
                            config
                                .target_groups
                                .entry(g.target_group_arn.clone())
                                .or_insert_with(|| target_group(tg, now));
                        }
                    }
                }
            }
            config.listeners.push(ListenerConfig {
                listener_arn: x.arn().to_string(),
                load_balancer_arn: l.arn().to_string(),
                load_balancer_name: l.name().to_string(),
                kind,
                address,
                port: x.listener.port.unwrap_or(80).clamp(1, 65535) as u16,
                protocol: protocol(x.listener.protocol),
                idle_timeout_secs: idle_timeout(l),
                rules,
                default_actions,
            });
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flotilla_model::arn::Scope;
    use flotilla_model::lb::{Action, TargetState};
    use flotilla_model::wire::elbv2 as w;
    use flotilla_store::memory::MemoryStore;

    use super::*;
    use crate::core::lb::{listeners, load_balancers, target_groups};
    use crate::core::State;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    async fn create_lb(state: &State, scope: &Scope, name: &str) -> String {
        let new = load_balancers::NewLoadBalancer::from_input(w::CreateLoadBalancerInput {
            name: Some(name.into()),
            ..Default::default()
        })
        .unwrap();
        state
            .write(scope, |acct, tx| {
                load_balancers::create(&mut acct.lb, tx, scope, new, 1.0)
            })
            .await
            .unwrap()
            .arn()
            .to_string()
    }

    /// Each load balancer gets its own address; one waits without an
    /// address until a node brings one; addresses survive a restart and
    /// move only when the node comes back without them.
    #[tokio::test]
    async fn load_balancers_get_free_addresses_that_stick() {
        let store = Arc::new(MemoryStore::new());
        let scope = Scope::new("111111111111", "us-east-1");
        let state = State::open(store.clone()).unwrap();
        state
            .write(&scope, |acct, tx| {
                connected(
                    &mut acct.lb,
                    tx,
                    "n1",
                    vec![ip("127.0.0.2"), ip("127.0.0.3")],
                );
                Ok(())
            })
            .await
            .unwrap();
        let a = create_lb(&state, &scope, "a").await;
        let b = create_lb(&state, &scope, "b").await;
        let c = create_lb(&state, &scope, "c").await;
        let address = |state: &State, arn: &str| {
            state.read(&scope, |acct| acct.lb.load_balancers[arn].address)
        };
        assert_eq!(address(&state, &a), Some(ip("127.0.0.2")));
        assert_eq!(address(&state, &b), Some(ip("127.0.0.3")));
        assert_eq!(address(&state, &c), None);

        // A restart keeps them; the node reconnecting with a new address
        // serves the waiting one.
        let state = State::open(store.clone()).unwrap();
        assert_eq!(address(&state, &a), Some(ip("127.0.0.2")));
        state
            .write(&scope, |acct, tx| {
                connected(
                    &mut acct.lb,
                    tx,
                    "n1",
                    vec![ip("127.0.0.3"), ip("127.0.0.4")],
                );
                Ok(())
            })
            .await
            .unwrap();
        // `a` lost its address and waits; `c` (older than nothing) gets the new one.
        assert_eq!(address(&state, &b), Some(ip("127.0.0.3")));
        let got: Vec<Option<IpAddr>> = [&a, &c].iter().map(|x| address(&state, x)).collect();
        assert!(
            got.contains(&Some(ip("127.0.0.4"))) && got.contains(&None),
            "{got:?}"
        );
        // Deleting a load balancer frees its address for the one waiting.
        let holder = if got[0].is_some() { &a } else { &c };
        let waiting = if got[0].is_some() { &c } else { &a };
        state
            .write(&scope, |acct, tx| {
                load_balancers::delete(&mut acct.lb, tx, holder)
            })
            .await
            .unwrap();
        assert_eq!(address(&state, waiting), Some(ip("127.0.0.4")));
    }

    /// A node's configuration: its load balancers' listeners with rules in
    /// priority order, and the groups they reach with active and draining
    /// targets (drained ones left out).
    #[tokio::test]
    async fn a_node_config_holds_what_it_serves() {
        let store = Arc::new(MemoryStore::new());
        let scope = Scope::new("111111111111", "us-east-1");
        let state = State::open(store).unwrap();
        state
            .write(&scope, |acct, tx| {
                connected(&mut acct.lb, tx, "n1", vec![ip("127.0.0.2")]);
                Ok(())
            })
            .await
            .unwrap();
        let lb = create_lb(&state, &scope, "web").await;
        let config = state.read(&scope, |acct| config_for(&acct.lb, "n1", 10.0));
        assert!(config.listeners.is_empty());
        assert_eq!(
            state.read(&scope, |acct| load_balancers_on(&acct.lb, "n1")),
            vec![lb.clone()]
        );
        let tg = state
            .write(&scope, |acct, tx| {
                let tg = target_groups::create(
                    &mut acct.lb,
                    tx,
                    &scope,
                    w::CreateTargetGroupInput {
                        name: Some("tg".into()),
                        protocol: Some(w::ProtocolEnum::Http),
                        port: Some(80),
                        target_type: Some(w::TargetTypeEnum::Ip),
                        ..Default::default()
                    },
                )?;
                let arn = tg.arn().to_string();
                let new = target_groups::resolve_targets(
                    acct,
                    &arn,
                    &[
                        w::TargetDescription {
                            id: Some("127.0.0.9".into()),
                            port: Some(8001),
                            ..Default::default()
                        },
                        w::TargetDescription {
                            id: Some("127.0.0.9".into()),
                            port: Some(8002),
                            ..Default::default()
                        },
                    ],
                )?;
                target_groups::register(&mut acct.lb, tx, &arn, new, 1.0)?;
                target_groups::deregister(
                    &mut acct.lb,
                    tx,
                    &arn,
                    &[("127.0.0.9".into(), Some(8002))],
                    5.0,
                )?;
                let forward = w::Action {
                    r#type: Some(w::ActionTypeEnum::Forward),
                    target_group_arn: Some(arn.clone()),
                    ..Default::default()
                };
                let l = listeners::create_listener(
                    &mut acct.lb,
                    tx,
                    &scope,
                    w::CreateListenerInput {
                        load_balancer_arn: Some(lb.clone()),
                        protocol: Some(w::ProtocolEnum::Http),
                        port: Some(80),
                        default_actions: Some(vec![forward.clone()]),
                        ..Default::default()
                    },
                )?;
                for p in [30, 10] {
                    listeners::create_rule(
                        &mut acct.lb,
                        tx,
                        w::CreateRuleInput {
                            listener_arn: Some(l.arn().to_string()),
                            priority: Some(p),
                            conditions: Some(vec![w::RuleCondition {
                                field: Some("path-pattern".into()),
                                values: Some(vec![format!("/{p}/*")]),
                                ..Default::default()
                            }]),
                            actions: Some(vec![forward.clone()]),
                            ..Default::default()
                        },
                    )?;
                }
                Ok(arn)
            })
            .await
            .unwrap();
        // The default delay is 300 s: at 10 s the second target drains.
        let config = state.read(&scope, |acct| config_for(&acct.lb, "n1", 10.0));
        assert_eq!(config.listeners.len(), 1);
        let l = &config.listeners[0];
        assert_eq!((l.address, l.port), (ip("127.0.0.2"), 80));
        assert_eq!(
            l.rules.iter().map(|r| r.priority).collect::<Vec<_>>(),
            vec![10, 30]
        );
        assert!(
            matches!(&l.default_actions[0], Action::Forward { target_groups, .. } if target_groups[0].target_group_arn == tg)
        );
        let targets = &config.target_groups[&tg].targets;
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].state, TargetState::Active);
        assert_eq!(targets[1].state, TargetState::Draining { until: 305.0 });
        // After the delay it is gone; another node serves nothing.
        let config = state.read(&scope, |acct| config_for(&acct.lb, "n1", 400.0));
        assert_eq!(config.target_groups[&tg].targets.len(), 1);
        let other = state.read(&scope, |acct| config_for(&acct.lb, "n2", 10.0));
        assert!(other.listeners.is_empty() && other.target_groups.is_empty());
    }
}
