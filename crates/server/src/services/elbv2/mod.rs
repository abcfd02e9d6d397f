//! Elastic Load Balancing v2 (the Query protocol): load balancers,
//! listeners, rules, target groups and targets. Handlers translate the wire
//! shapes to the domain core (`crate::core::lb`) and back; the rules live
//! there.

use flotilla_model::wire::elbv2::{self, Operation};
use flotilla_model::Shape;
use serde::de::DeserializeOwned;

use crate::api::{Call, Env, Reply, ServiceDef};
use crate::core::lb::{self, listeners, load_balancers, target_groups, validation};
use crate::error::{ApiError, ApiResult};

/// ELBv2: the Query protocol, signed as `elasticloadbalancing`.
pub static SERVICE: ServiceDef = ServiceDef {
    schema: &elbv2::SERVICE,
    dispatch: |env, call| Box::pin(dispatch(env, call)),
    max_body: 1024 * 1024,
    body_too_large: "ValidationError",
};

/// Decodes the input; ELBv2 answers any malformed or out-of-range
/// parameter with `ValidationError`.
fn decode<T: DeserializeOwned + Shape>(call: &Call<'_>) -> ApiResult<T> {
    call.decode().map_err(|e| match e.code {
        "InvalidParameterException" | "SerializationException" => validation(e.message),
        _ => e,
    })
}

fn required<'a>(v: &'a Option<String>, field: &str) -> ApiResult<&'a str> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| validation(format!("{field} is required")))
}

async fn dispatch(env: &Env, call: Call<'_>) -> ApiResult<Reply> {
    let Some(op) = Operation::from_name(call.name()) else {
        return Err(call.unsupported("ELBv2"));
    };
    let state = &*env.state;
    let scope = call.ctx.scope.clone();
    let now = call.ctx.now;
    match op {
        Operation::CreateLoadBalancer => {
            let input: elbv2::CreateLoadBalancerInput = decode(&call)?;
            let new = load_balancers::NewLoadBalancer::from_input(input)?;
            let l = state
                .write(&scope, |acct, tx| {
                    load_balancers::create(&mut acct.lb, tx, &scope, new, now)
                })
                .await?;
            call.reply(&elbv2::CreateLoadBalancerOutput {
                load_balancers: Some(vec![l.load_balancer]),
            })
        }
        Operation::DescribeLoadBalancers => {
            let input: elbv2::DescribeLoadBalancersInput = decode(&call)?;
            let all = state.read(&scope, |acct| {
                load_balancers::describe(
                    &acct.lb,
                    input.load_balancer_arns.as_deref().unwrap_or_default(),
                    input.names.as_deref().unwrap_or_default(),
                )
            })?;
            let (page, next) = lb::page(all, input.marker.as_deref(), input.page_size)?;
            call.reply(&elbv2::DescribeLoadBalancersOutput {
                load_balancers: Some(page),
                next_marker: next,
            })
        }
        Operation::DeleteLoadBalancer => {
            let input: elbv2::DeleteLoadBalancerInput = decode(&call)?;
            let arn = required(&input.load_balancer_arn, "LoadBalancerArn")?;
            state
                .write(&scope, |acct, tx| {
                    load_balancers::delete(&mut acct.lb, tx, arn)
                })
                .await?;
            call.reply(&elbv2::DeleteLoadBalancerOutput {})
        }
        Operation::DescribeLoadBalancerAttributes => {
            let input: elbv2::DescribeLoadBalancerAttributesInput = decode(&call)?;
            let arn = required(&input.load_balancer_arn, "LoadBalancerArn")?;
            let attributes = state.read(&scope, |acct| {
                load_balancers::find(&acct.lb, arn).map(load_balancers::attributes)
            })?;
            call.reply(&elbv2::DescribeLoadBalancerAttributesOutput {
                attributes: Some(attributes),
            })
        }
        Operation::ModifyLoadBalancerAttributes => {
            let input: elbv2::ModifyLoadBalancerAttributesInput = decode(&call)?;
            let arn = required(&input.load_balancer_arn, "LoadBalancerArn")?;
            let changes = input.attributes.clone().unwrap_or_default();
            let attributes = state
                .write(&scope, |acct, tx| {
                    load_balancers::modify_attributes(&mut acct.lb, tx, arn, &changes)
                })
                .await?;
            call.reply(&elbv2::ModifyLoadBalancerAttributesOutput {
                attributes: Some(attributes),
            })
        }
        Operation::CreateTargetGroup => {
            let input: elbv2::CreateTargetGroupInput = decode(&call)?;
            let tg = state
                .write(&scope, |acct, tx| {
                    target_groups::create(&mut acct.lb, tx, &scope, input)
                })
                .await?;
            let shape = state.read(&scope, |acct| target_groups::shape(&acct.lb, &tg));
            call.reply(&elbv2::CreateTargetGroupOutput {
                target_groups: Some(vec![shape]),
            })
        }
        Operation::DescribeTargetGroups => {
            let input: elbv2::DescribeTargetGroupsInput = decode(&call)?;
            let all = state.read(&scope, |acct| {
                target_groups::describe(
                    &acct.lb,
                    input.load_balancer_arn.as_deref(),
                    input.target_group_arns.as_deref().unwrap_or_default(),
                    input.names.as_deref().unwrap_or_default(),
                )
            })?;
            let (page, next) = lb::page(all, input.marker.as_deref(), input.page_size)?;
            call.reply(&elbv2::DescribeTargetGroupsOutput {
                target_groups: Some(page),
                next_marker: next,
            })
        }
        Operation::ModifyTargetGroup => {
            let input: elbv2::ModifyTargetGroupInput = decode(&call)?;
            required(&input.target_group_arn, "TargetGroupArn")?;
            let tg = state
                .write(&scope, |acct, tx| {
                    target_groups::modify(&mut acct.lb, tx, input)
                })
                .await?;
            call.reply(&elbv2::ModifyTargetGroupOutput {
                target_groups: Some(vec![tg]),
            })
        }
        Operation::DeleteTargetGroup => {
            let input: elbv2::DeleteTargetGroupInput = decode(&call)?;
            let arn = required(&input.target_group_arn, "TargetGroupArn")?;
            state
                .write(&scope, |acct, tx| target_groups::delete(acct, tx, arn))
                .await?;
            call.reply(&elbv2::DeleteTargetGroupOutput {})
        }
        Operation::DescribeTargetGroupAttributes => {
            let input: elbv2::DescribeTargetGroupAttributesInput = decode(&call)?;
            let arn = required(&input.target_group_arn, "TargetGroupArn")?;
            let attributes = state.read(&scope, |acct| {
                target_groups::find(&acct.lb, arn).map(target_groups::attributes)
            })?;
            call.reply(&elbv2::DescribeTargetGroupAttributesOutput {
                attributes: Some(attributes),
            })
        }
        Operation::ModifyTargetGroupAttributes => {
            let input: elbv2::ModifyTargetGroupAttributesInput = decode(&call)?;
            let arn = required(&input.target_group_arn, "TargetGroupArn")?;
            let changes = input.attributes.clone().unwrap_or_default();
            let attributes = state
                .write(&scope, |acct, tx| {
                    target_groups::modify_attributes(&mut acct.lb, tx, arn, &changes)
                })
                .await?;
            call.reply(&elbv2::ModifyTargetGroupAttributesOutput {
                attributes: Some(attributes),
            })
        }
        Operation::RegisterTargets => {
            let input: elbv2::RegisterTargetsInput = decode(&call)?;
            let arn = required(&input.target_group_arn, "TargetGroupArn")?;
            let targets = input.targets.clone().unwrap_or_default();
            state
                .write(&scope, |acct, tx| {
                    let new = target_groups::resolve_targets(acct, arn, &targets)?;
                    target_groups::register(&mut acct.lb, tx, arn, new, now)
                })
                .await?;
            call.reply(&elbv2::RegisterTargetsOutput {})
        }
        Operation::DeregisterTargets => {
            let input: elbv2::DeregisterTargetsInput = decode(&call)?;
            let arn = required(&input.target_group_arn, "TargetGroupArn")?;
            let targets: Vec<(String, Option<u16>)> = input
                .targets
                .iter()
                .flatten()
                .map(|t| {
                    (
                        t.id.clone().unwrap_or_default(),
                        t.port.map(|p| p.clamp(0, 65535) as u16),
                    )
                })
                .collect();
            state
                .write(&scope, |acct, tx| {
                    target_groups::deregister_and_wake(acct, tx, arn, &targets, now)
                })
                .await?;
            call.reply(&elbv2::DeregisterTargetsOutput {})
        }
        Operation::DescribeTargetHealth => {
            let input: elbv2::DescribeTargetHealthInput = decode(&call)?;
            let arn = required(&input.target_group_arn, "TargetGroupArn")?;
            let targets = input.targets.clone().unwrap_or_default();
            let out = state.read(&scope, |acct| {
                target_groups::describe_health(&acct.lb, arn, &targets, now)
            })?;
            call.reply(&elbv2::DescribeTargetHealthOutput {
                target_health_descriptions: Some(out),
            })
        }
        Operation::CreateListener => {
            let input: elbv2::CreateListenerInput = decode(&call)?;
            required(&input.load_balancer_arn, "LoadBalancerArn")?;
            let l = state
                .write(&scope, |acct, tx| {
                    listeners::create_listener(&mut acct.lb, tx, &scope, input)
                })
                .await?;
            call.reply(&elbv2::CreateListenerOutput {
                listeners: Some(vec![l.listener]),
            })
        }
        Operation::DescribeListeners => {
            let input: elbv2::DescribeListenersInput = decode(&call)?;
            let all = state.read(&scope, |acct| {
                listeners::describe_listeners(
                    &acct.lb,
                    input.load_balancer_arn.as_deref(),
                    input.listener_arns.as_deref().unwrap_or_default(),
                )
            })?;
            let (page, next) = lb::page(all, input.marker.as_deref(), input.page_size)?;
            call.reply(&elbv2::DescribeListenersOutput {
                listeners: Some(page),
                next_marker: next,
            })
        }
        Operation::ModifyListener => {
            let input: elbv2::ModifyListenerInput = decode(&call)?;
            required(&input.listener_arn, "ListenerArn")?;
            let l = state
                .write(&scope, |acct, tx| {
                    listeners::modify_listener(&mut acct.lb, tx, input)
                })
                .await?;
            call.reply(&elbv2::ModifyListenerOutput {
                listeners: Some(vec![l]),
            })
        }
        Operation::DeleteListener => {
            let input: elbv2::DeleteListenerInput = decode(&call)?;
            let arn = required(&input.listener_arn, "ListenerArn")?;
            state
                .write(&scope, |acct, tx| {
                    listeners::delete_listener(&mut acct.lb, tx, arn)
                })
                .await?;
            call.reply(&elbv2::DeleteListenerOutput {})
        }
        Operation::CreateRule => {
            let input: elbv2::CreateRuleInput = decode(&call)?;
            required(&input.listener_arn, "ListenerArn")?;
            let rule = state
                .write(&scope, |acct, tx| {
                    listeners::create_rule(&mut acct.lb, tx, input)
                })
                .await?;
            call.reply(&elbv2::CreateRuleOutput {
                rules: Some(vec![rule]),
            })
        }
        Operation::DescribeRules => {
            let input: elbv2::DescribeRulesInput = decode(&call)?;
            let all = state.read(&scope, |acct| {
                listeners::describe_rules(
                    &acct.lb,
                    input.listener_arn.as_deref(),
                    input.rule_arns.as_deref().unwrap_or_default(),
                )
            })?;
            let (page, next) = lb::page(all, input.marker.as_deref(), input.page_size)?;
            call.reply(&elbv2::DescribeRulesOutput {
                rules: Some(page),
                next_marker: next,
            })
        }
        Operation::ModifyRule => {
            let input: elbv2::ModifyRuleInput = decode(&call)?;
            required(&input.rule_arn, "RuleArn")?;
            let rule = state
                .write(&scope, |acct, tx| {
                    listeners::modify_rule(&mut acct.lb, tx, input)
                })
                .await?;
            call.reply(&elbv2::ModifyRuleOutput {
                rules: Some(vec![rule]),
            })
        }
        Operation::DeleteRule => {
            let input: elbv2::DeleteRuleInput = decode(&call)?;
            let arn = required(&input.rule_arn, "RuleArn")?;
            state
                .write(&scope, |acct, tx| {
                    listeners::delete_rule(&mut acct.lb, tx, arn)
                })
                .await?;
            call.reply(&elbv2::DeleteRuleOutput {})
        }
        Operation::SetRulePriorities => {
            let input: elbv2::SetRulePrioritiesInput = decode(&call)?;
            let pairs: Vec<(String, i32)> = input
                .rule_priorities
                .iter()
                .flatten()
                .map(|p| {
                    (
                        p.rule_arn.clone().unwrap_or_default(),
                        p.priority.unwrap_or(0),
                    )
                })
                .collect();
            if pairs.is_empty() {
                return Err(validation("RulePriorities is required"));
            }
            let rules = state
                .write(&scope, |acct, tx| {
                    listeners::set_priorities(&mut acct.lb, tx, &pairs)
                })
                .await?;
            call.reply(&elbv2::SetRulePrioritiesOutput { rules: Some(rules) })
        }
        Operation::AddTags => {
            let input: elbv2::AddTagsInput = decode(&call)?;
            let resources = input.resource_arns.clone().unwrap_or_default();
            let tags = input.tags.clone().unwrap_or_default();
            state
                .write(&scope, |acct, tx| {
                    lb::retag(&mut acct.lb, tx, &resources, |old| {
                        lb::merge_tags(old, &tags)
                    })
                })
                .await?;
            call.reply(&elbv2::AddTagsOutput {})
        }
        Operation::RemoveTags => {
            let input: elbv2::RemoveTagsInput = decode(&call)?;
            let resources = input.resource_arns.clone().unwrap_or_default();
            let keys = input.tag_keys.clone().unwrap_or_default();
            state
                .write(&scope, |acct, tx| {
                    lb::retag(&mut acct.lb, tx, &resources, |old| {
                        Ok(old
                            .iter()
                            .filter(|t| !keys.iter().any(|k| Some(k) == t.key.as_ref()))
                            .cloned()
                            .collect())
                    })
                })
                .await?;
            call.reply(&elbv2::RemoveTagsOutput {})
        }
        Operation::DescribeTags => {
            let input: elbv2::DescribeTagsInput = decode(&call)?;
            let resources = input.resource_arns.clone().unwrap_or_default();
            let out = state.read(&scope, |acct| {
                resources
                    .iter()
                    .map(|r| {
                        lb::tags_of(&acct.lb, r).map(|tags| elbv2::TagDescription {
                            resource_arn: Some(r.clone()),
                            tags: Some(tags.to_vec()),
                        })
                    })
                    .collect::<ApiResult<Vec<_>>>()
            })?;
            call.reply(&elbv2::DescribeTagsOutput {
                tag_descriptions: Some(out),
            })
        }
        Operation::DescribeAccountLimits => {
            let limit = |name: &str, max: usize| elbv2::Limit {
                name: Some(name.into()),
                max: Some(max.to_string()),
            };
            call.reply(&elbv2::DescribeAccountLimitsOutput {
                limits: Some(vec![
                    limit("application-load-balancers", 50),
                    limit("network-load-balancers", 50),
                    limit("target-groups", 3000),
                    limit(
                        "targets-per-application-load-balancer",
                        target_groups::MAX_TARGETS,
                    ),
                    limit(
                        "listeners-per-application-load-balancer",
                        listeners::MAX_LISTENERS,
                    ),
                    limit("rules-per-application-load-balancer", listeners::MAX_RULES),
                ]),
                next_marker: None,
            })
        }
        _ => Err(unsupported(&call)),
    }
}

fn unsupported(call: &Call<'_>) -> ApiError {
    call.unsupported("ELBv2")
}
