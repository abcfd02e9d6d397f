//! The two CloudWatch alarms a target tracking policy creates and owns,
//! shaped as Application Auto Scaling shapes them for an ECS service:
//!
//! - `TargetTracking-service/CLUSTER/SERVICE-AlarmHigh-UUID`: the metric
//!   above the target (GreaterThanThreshold) for 3 of 3 one-minute periods;
//! - `TargetTracking-service/CLUSTER/SERVICE-AlarmLow-UUID`: below 90 % of
//!   the target (LessThanThreshold) for 15 of 15 one-minute periods;
//!
//! both with the policy's ARN as their only `AlarmActions` and the
//! description "DO NOT EDIT OR DELETE. For TargetTrackingScaling policy
//! ARN.". The `…HighResolution` predefined metrics use 20-second periods
//! (the model: "evaluate metrics every 20 seconds"), with the same counts
//! of datapoints: one minute to scale out, five to scale in.
//!
//! Predefined metrics: `ECSServiceAverageCPUUtilization` and
//! `ECSServiceAverageMemoryUtilization` are `AWS/ECS` `CPUUtilization` /
//! `MemoryUtilization` (Average) with the dimensions `ClusterName` and
//! `ServiceName`; `ALBRequestCountPerTarget` is `AWS/ApplicationELB`
//! `RequestCountPerTarget` (Sum) of the target group the `ResourceLabel`
//! names.

use flotilla_metrics::{
    ComparisonOperator, Dimension, MetricDataQuery, MetricStat, PutMetricAlarmInput, StandardUnit,
    Statistic,
};
use flotilla_model::wire::autoscaling as wire;

use super::{validation, AlarmSide};
use crate::error::ApiResult;

/// The scale-in alarm's threshold, as a share of the target.
const LOW_SHARE: f64 = 0.9;

/// `TargetTracking-RESOURCE-AlarmHigh-UUID` (or `AlarmLow`).
pub fn alarm_name(resource_id: &str, side: AlarmSide) -> String {
    let side = match side {
        AlarmSide::High => "AlarmHigh",
        AlarmSide::Low => "AlarmLow",
    };
    format!(
        "TargetTracking-{resource_id}-{side}-{}",
        uuid::Uuid::new_v4()
    )
}

/// What an alarm watches.
enum Watched {
    Single {
        namespace: String,
        metric_name: String,
        dimensions: Vec<Dimension>,
        statistic: Option<Statistic>,
        extended_statistic: Option<String>,
        unit: Option<StandardUnit>,
    },
    Math(Vec<MetricDataQuery>),
}

/// The predefined metric types that apply to an ECS service.
pub const ECS_METRICS: &[wire::MetricType] = &[
    wire::MetricType::ECSServiceAverageCPUUtilization,
    wire::MetricType::ECSServiceAverageMemoryUtilization,
    wire::MetricType::ECSServiceAverageCPUUtilizationHighResolution,
    wire::MetricType::ECSServiceAverageMemoryUtilizationHighResolution,
    wire::MetricType::ALBRequestCountPerTarget,
];

/// Checks a target tracking configuration and builds its two alarms
/// (`names`: the High one's and the Low one's), each acting on `policy_arn`.
pub fn target_tracking_alarms(
    resource_id: &str,
    policy_arn: &str,
    cfg: &wire::TargetTrackingScalingPolicyConfiguration,
    names: (&str, &str),
) -> ApiResult<Vec<(AlarmSide, PutMetricAlarmInput)>> {
    let (cluster, service) = super::parse_resource_id(resource_id)?;
    let target = cfg.target_value.unwrap_or(f64::NAN);
    if !(target.is_finite() && target > 0.0) {
        return Err(validation(format!(
            "Invalid TargetValue {target}: the target value must be a positive number."
        )));
    }
    for (v, field) in [
        (cfg.scale_out_cooldown, "ScaleOutCooldown"),
        (cfg.scale_in_cooldown, "ScaleInCooldown"),
    ] {
        if let Some(v) = v.filter(|v| !(0..=86_400).contains(v)) {
            return Err(validation(format!(
                "Invalid {field} {v}: a cooldown is between 0 and 86400 seconds."
            )));
        }
    }
    let (watched, period) = match (
        &cfg.predefined_metric_specification,
        &cfg.customized_metric_specification,
    ) {
        (Some(_), Some(_)) => {
            return Err(validation(
                "PredefinedMetricSpecification and CustomizedMetricSpecification cannot both be specified.",
            ))
        }
        (None, None) => {
            return Err(validation(
                "Either PredefinedMetricSpecification or CustomizedMetricSpecification must be specified.",
            ))
        }
        (Some(p), None) => predefined(cluster, service, p)?,
        (None, Some(c)) => (customized(c)?, 60),
    };
    let description =
        format!("DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {policy_arn}.");
    let alarm = |side: AlarmSide, name: &str| {
        let (threshold, operator, periods) = match side {
            AlarmSide::High => (target, ComparisonOperator::GreaterThanThreshold, 3),
            AlarmSide::Low => (
                target * LOW_SHARE,
                ComparisonOperator::LessThanThreshold,
                15,
            ),
        };
        let mut input = PutMetricAlarmInput {
            alarm_name: name.to_string(),
            alarm_description: Some(description.clone()),
            actions_enabled: Some(true),
            alarm_actions: vec![policy_arn.to_string()],
            evaluation_periods: Some(periods),
            datapoints_to_alarm: Some(periods),
            threshold: Some(threshold),
            comparison_operator: Some(operator),
            ..Default::default()
        };
        match &watched {
            Watched::Single {
                namespace,
                metric_name,
                dimensions,
                statistic,
                extended_statistic,
                unit,
            } => {
                input.namespace = Some(namespace.clone());
                input.metric_name = Some(metric_name.clone());
                input.dimensions = dimensions.clone();
                input.statistic = *statistic;
                input.extended_statistic = extended_statistic.clone();
                input.unit = *unit;
                input.period = Some(period);
            }
            Watched::Math(queries) => input.metrics = queries.clone(),
        }
        (side, input)
    };
    Ok(vec![
        alarm(AlarmSide::High, names.0),
        alarm(AlarmSide::Low, names.1),
    ])
}

fn predefined(
    cluster: &str,
    service: &str,
    p: &wire::PredefinedMetricSpecification,
) -> ApiResult<(Watched, i64)> {
    use wire::MetricType as M;
    let kind = p
        .predefined_metric_type
        .ok_or_else(|| validation("PredefinedMetricType is required."))?;
    if !ECS_METRICS.contains(&kind) {
        return Err(validation(format!(
            "Unsupported predefined metric type {kind} for an ECS service. Valid types: {}.",
            ECS_METRICS
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if kind != M::ALBRequestCountPerTarget && p.resource_label.is_some() {
        return Err(validation(format!(
            "ResourceLabel can be specified only with the predefined metric type ALBRequestCountPerTarget, not {kind}."
        )));
    }
    let ecs = |name: &str, period: i64| {
        (
            Watched::Single {
                namespace: "AWS/ECS".into(),
                metric_name: name.into(),
                dimensions: vec![
                    Dimension::new("ClusterName", cluster),
                    Dimension::new("ServiceName", service),
                ],
                statistic: Some(Statistic::Average),
                extended_statistic: None,
                unit: None,
            },
            period,
        )
    };
    Ok(match kind {
        M::ECSServiceAverageCPUUtilization => ecs("CPUUtilization", 60),
        M::ECSServiceAverageMemoryUtilization => ecs("MemoryUtilization", 60),
        M::ECSServiceAverageCPUUtilizationHighResolution => ecs("CPUUtilization", 20),
        M::ECSServiceAverageMemoryUtilizationHighResolution => ecs("MemoryUtilization", 20),
        _ => {
            let label = p.resource_label.as_deref().ok_or_else(|| {
                validation("ResourceLabel is required for the predefined metric type ALBRequestCountPerTarget.")
            })?;
            let target_group = label
                .find("/targetgroup/")
                .map(|i| &label[i + 1..])
                .filter(|tg| label.starts_with("app/") && tg.split('/').count() == 3)
                .ok_or_else(|| {
                    validation(format!(
                        "Invalid ResourceLabel {label}: it must be app/LOAD-BALANCER-NAME/ID/targetgroup/TARGET-GROUP-NAME/ID."
                    ))
                })?;
            (
                Watched::Single {
                    namespace: "AWS/ApplicationELB".into(),
                    metric_name: "RequestCountPerTarget".into(),
                    dimensions: vec![Dimension::new("TargetGroup", target_group)],
                    statistic: Some(Statistic::Sum),
                    extended_statistic: None,
                    unit: None,
                },
                60,
            )
        }
    })
}

fn customized(c: &wire::CustomizedMetricSpecification) -> ApiResult<Watched> {
    if let Some(queries) = &c.metrics {
        if c.metric_name.is_some() || c.namespace.is_some() || c.statistic.is_some() {
            return Err(validation(
                "CustomizedMetricSpecification: give either Metrics or MetricName, Namespace and Statistic, not both.",
            ));
        }
        let mut out = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            let metric_stat = match &q.metric_stat {
                None => None,
                Some(s) => {
                    let m = s.metric.clone().unwrap_or_default();
                    Some(MetricStat {
                        namespace: m.namespace.unwrap_or_default(),
                        metric_name: m.metric_name.unwrap_or_default(),
                        dimensions: m
                            .dimensions
                            .unwrap_or_default()
                            .into_iter()
                            .map(|d| {
                                Dimension::new(
                                    d.name.unwrap_or_default(),
                                    d.value.unwrap_or_default(),
                                )
                            })
                            .collect(),
                        period: 60,
                        stat: s.stat.clone().unwrap_or_default(),
                        unit: s
                            .unit
                            .as_deref()
                            .map(|u| {
                                StandardUnit::parse(u, &format!("Metrics[{i}].MetricStat.Unit"))
                            })
                            .transpose()
                            .map_err(|e| validation(e.to_string()))?,
                    })
                }
            };
            out.push(MetricDataQuery {
                id: q.id.clone().unwrap_or_default(),
                metric_stat,
                expression: q.expression.clone(),
                label: q.label.clone(),
                return_data: q.return_data,
                period: q.expression.is_some().then_some(60),
                account_id: None,
            });
        }
        return Ok(Watched::Math(out));
    }
    let (Some(name), Some(namespace), Some(stat)) = (&c.metric_name, &c.namespace, c.statistic)
    else {
        return Err(validation(
            "CustomizedMetricSpecification needs MetricName, Namespace and Statistic (or Metrics).",
        ));
    };
    let statistic =
        Statistic::parse(stat.as_str(), "Statistic").map_err(|e| validation(e.to_string()))?;
    let unit = c
        .unit
        .as_deref()
        .map(|u| StandardUnit::parse(u, "CustomizedMetricSpecification.Unit"))
        .transpose()
        .map_err(|e| validation(e.to_string()))?;
    Ok(Watched::Single {
        namespace: namespace.clone(),
        metric_name: name.clone(),
        dimensions: c
            .dimensions
            .iter()
            .flatten()
            .map(|d| {
                Dimension::new(
                    d.name.clone().unwrap_or_default(),
                    d.value.clone().unwrap_or_default(),
                )
            })
            .collect(),
        statistic: Some(statistic),
        extended_statistic: None,
        unit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_alarms_are_shaped_as_aws_shapes_them() {
        let cfg = wire::TargetTrackingScalingPolicyConfiguration {
            target_value: Some(50.0),
            predefined_metric_specification: Some(wire::PredefinedMetricSpecification {
                predefined_metric_type: Some(
                    wire::MetricType::ECSServiceAverageCPUUtilizationHighResolution,
                ),
                resource_label: None,
            }),
            ..Default::default()
        };
        let alarms =
            target_tracking_alarms("service/default/web", "arn:p", &cfg, ("h", "l")).unwrap();
        let (side, high) = &alarms[0];
        assert_eq!(*side, AlarmSide::High);
        assert_eq!(high.namespace.as_deref(), Some("AWS/ECS"));
        assert_eq!(high.metric_name.as_deref(), Some("CPUUtilization"));
        assert_eq!(high.period, Some(20));
        assert_eq!(high.evaluation_periods, Some(3));
        assert_eq!(high.threshold, Some(50.0));
        assert_eq!(high.alarm_actions, vec!["arn:p".to_string()]);
        let (_, low) = &alarms[1];
        assert_eq!(low.threshold, Some(45.0));
        assert_eq!(low.evaluation_periods, Some(15));
        assert_eq!(
            low.comparison_operator,
            Some(ComparisonOperator::LessThanThreshold)
        );
        assert!(alarm_name("service/default/web", AlarmSide::Low)
            .starts_with("TargetTracking-service/default/web-AlarmLow-"));
    }

    #[test]
    fn bad_configurations_are_validation_errors() {
        let with = |kind, label: Option<&str>| wire::TargetTrackingScalingPolicyConfiguration {
            target_value: Some(50.0),
            predefined_metric_specification: Some(wire::PredefinedMetricSpecification {
                predefined_metric_type: Some(kind),
                resource_label: label.map(String::from),
            }),
            ..Default::default()
        };
        let run = |cfg| target_tracking_alarms("service/default/web", "arn:p", &cfg, ("h", "l"));
        assert!(run(with(
            wire::MetricType::DynamoDBReadCapacityUtilization,
            None
        ))
        .is_err());
        assert!(run(with(wire::MetricType::ALBRequestCountPerTarget, None)).is_err());
        assert!(run(with(
            wire::MetricType::ALBRequestCountPerTarget,
            Some("bad")
        ))
        .is_err());
        let ok = run(with(
            wire::MetricType::ALBRequestCountPerTarget,
            Some("app/lb/0123/targetgroup/tg/4567"),
        ))
        .unwrap();
        assert_eq!(ok[0].1.dimensions[0].value, "targetgroup/tg/4567");
        let mut none = with(wire::MetricType::ECSServiceAverageCPUUtilization, None);
        none.predefined_metric_specification = None;
        assert!(run(none).is_err());
        let mut zero = with(wire::MetricType::ECSServiceAverageCPUUtilization, None);
        zero.target_value = Some(0.0);
        assert!(run(zero).is_err());
    }
}
