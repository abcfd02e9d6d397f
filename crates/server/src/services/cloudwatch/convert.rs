//! Wire types (generated from the model) ↔ the engine's types. The two
//! sets of enums spell the same values; conversion goes through the wire
//! string, so a value one side lacks is an error naming the field, never a
//! panic.

use flotilla_metrics as m;
use flotilla_model::wire::cloudwatch as cw;

use super::api_error;
use crate::error::ApiResult;

pub fn dimensions(dims: Option<Vec<cw::Dimension>>) -> Vec<m::Dimension> {
    dims.unwrap_or_default()
        .into_iter()
        .map(|d| m::Dimension::new(d.name.unwrap_or_default(), d.value.unwrap_or_default()))
        .collect()
}

pub fn wire_dimensions(dims: &[m::Dimension]) -> Vec<cw::Dimension> {
    dims.iter()
        .map(|d| cw::Dimension {
            name: Some(d.name.clone()),
            value: Some(d.value.clone()),
        })
        .collect()
}

pub fn unit(u: Option<cw::StandardUnit>, field: &str) -> ApiResult<Option<m::StandardUnit>> {
    u.map(|u| m::StandardUnit::parse(u.as_str(), field).map_err(api_error))
        .transpose()
}

pub fn wire_unit(u: m::StandardUnit) -> Option<cw::StandardUnit> {
    cw::StandardUnit::parse(u.as_str())
}

pub fn statistic(s: cw::Statistic, field: &str) -> ApiResult<m::Statistic> {
    m::Statistic::parse(s.as_str(), field).map_err(api_error)
}

pub fn wire_statistic(s: m::Statistic) -> Option<cw::Statistic> {
    cw::Statistic::parse(s.as_str())
}

pub fn state(s: cw::StateValue, field: &str) -> ApiResult<m::StateValue> {
    m::StateValue::parse(s.as_str(), field).map_err(api_error)
}

pub fn alarm_types(types: Option<Vec<cw::AlarmType>>) -> ApiResult<Vec<m::AlarmType>> {
    types
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            m::AlarmType::parse(t.as_str(), &format!("AlarmTypes.member.{}", i + 1))
                .map_err(api_error)
        })
        .collect()
}

pub fn tags(tags: Option<Vec<cw::Tag>>) -> Vec<m::Tag> {
    tags.unwrap_or_default()
        .into_iter()
        .map(|t| m::Tag {
            key: t.key.unwrap_or_default(),
            value: t.value.unwrap_or_default(),
        })
        .collect()
}

pub fn wire_tags(tags: &[m::Tag]) -> Vec<cw::Tag> {
    tags.iter()
        .map(|t| cw::Tag {
            key: Some(t.key.clone()),
            value: Some(t.value.clone()),
        })
        .collect()
}

pub fn queries(
    queries: Option<Vec<cw::MetricDataQuery>>,
    field: &str,
) -> ApiResult<Vec<m::MetricDataQuery>> {
    queries
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, q)| {
            let at = format!("{field}.member.{}", i + 1);
            let metric_stat = q
                .metric_stat
                .map(|s| -> ApiResult<m::MetricStat> {
                    let metric = s.metric.unwrap_or_default();
                    Ok(m::MetricStat {
                        namespace: metric.namespace.unwrap_or_default(),
                        metric_name: metric.metric_name.unwrap_or_default(),
                        dimensions: dimensions(metric.dimensions),
                        period: i64::from(s.period.unwrap_or_default()),
                        stat: s.stat.unwrap_or_default(),
                        unit: unit(s.unit, &format!("{at}.MetricStat.Unit"))?,
                    })
                })
                .transpose()?;
            Ok(m::MetricDataQuery {
                id: q.id.unwrap_or_default(),
                metric_stat,
                expression: q.expression,
                label: q.label,
                return_data: q.return_data,
                period: q.period.map(i64::from),
                account_id: q.account_id,
            })
        })
        .collect()
}

pub fn wire_queries(queries: &[m::MetricDataQuery]) -> Vec<cw::MetricDataQuery> {
    queries
        .iter()
        .map(|q| cw::MetricDataQuery {
            id: Some(q.id.clone()),
            metric_stat: q.metric_stat.as_ref().map(|s| cw::MetricStat {
                metric: Some(cw::Metric {
                    namespace: Some(s.namespace.clone()),
                    metric_name: Some(s.metric_name.clone()),
                    dimensions: Some(wire_dimensions(&s.dimensions)),
                }),
                period: i32::try_from(s.period).ok(),
                stat: Some(s.stat.clone()),
                unit: s.unit.and_then(wire_unit),
            }),
            expression: q.expression.clone(),
            label: q.label.clone(),
            return_data: q.return_data,
            period: q.period.and_then(|p| i32::try_from(p).ok()),
            account_id: q.account_id.clone(),
        })
        .collect()
}

fn secs(t: m::Timestamp) -> Option<f64> {
    Some(t.as_secs_f64())
}

/// An alarm as DescribeAlarms shows it.
pub fn wire_alarm(a: &m::MetricAlarm) -> cw::MetricAlarm {
    cw::MetricAlarm {
        alarm_name: Some(a.alarm_name.clone()),
        alarm_arn: Some(a.alarm_arn.clone()),
        alarm_description: a.alarm_description.clone(),
        alarm_configuration_updated_timestamp: secs(a.alarm_configuration_updated_timestamp),
        actions_enabled: Some(a.actions_enabled),
        ok_actions: Some(a.ok_actions.clone()),
        alarm_actions: Some(a.alarm_actions.clone()),
        insufficient_data_actions: Some(a.insufficient_data_actions.clone()),
        state_value: cw::StateValue::parse(a.state_value.as_str()),
        state_reason: Some(a.state_reason.clone()),
        state_reason_data: a.state_reason_data.clone(),
        state_updated_timestamp: secs(a.state_updated_timestamp),
        state_transitioned_timestamp: secs(a.state_transitioned_timestamp),
        metric_name: a.metric_name.clone(),
        namespace: a.namespace.clone(),
        statistic: a.statistic.and_then(wire_statistic),
        extended_statistic: a.extended_statistic.clone(),
        dimensions: Some(wire_dimensions(&a.dimensions)),
        period: a.period.and_then(|p| i32::try_from(p).ok()),
        unit: a.unit.and_then(wire_unit),
        evaluation_periods: i32::try_from(a.evaluation_periods).ok(),
        datapoints_to_alarm: a.datapoints_to_alarm.and_then(|d| i32::try_from(d).ok()),
        threshold: Some(a.threshold),
        comparison_operator: cw::ComparisonOperator::parse(a.comparison_operator.as_str()),
        treat_missing_data: a.treat_missing_data.map(|t| t.as_str().to_string()),
        evaluate_low_sample_count_percentile: a
            .evaluate_low_sample_count_percentile
            .map(|t| t.as_str().to_string()),
        metrics: (!a.metrics.is_empty()).then(|| wire_queries(&a.metrics)),
        ..Default::default()
    }
}
