//! PutMetricAlarm, DescribeAlarms, DescribeAlarmsForMetric, DeleteAlarms,
//! SetAlarmState, Enable/DisableAlarmActions, DescribeAlarmHistory, and the
//! tagging operations (alarms are CloudWatch's taggable resource here).
//!
//! A state change an operation causes (PutMetricAlarm evaluates the new
//! alarm at once; SetAlarmState) is published on `Env::alarm_actions` once
//! durable, as the alarm controller publishes the evaluations' changes.

use flotilla_metrics as m;
use flotilla_model::wire::cloudwatch as cw;

use super::{api_error, blocking, convert, decode, now, timestamp};
use crate::api::{Call, Env, Reply};
use crate::error::{ApiError, ApiResult};

fn publish(env: &Env, transition: Option<m::AlarmTransition>) {
    crate::core::alarm_actions::publish(&env.alarm_actions, transition);
}

fn not_supported(field: &str, why: &str) -> ApiError {
    ApiError::new(
        "InvalidParameterCombination",
        format!("The parameter {field} is not supported by Flotilla: {why}"),
    )
}

pub async fn put_metric_alarm(env: &Env, call: &Call<'_>) -> ApiResult<Reply> {
    let req: cw::PutMetricAlarmInput = decode(call)?;
    // What Flotilla cannot honour is refused rather than stored and
    // silently never applied.
    if req.evaluation_criteria.is_some() {
        return Err(not_supported(
            "EvaluationCriteria",
            "PromQL alarms need a Prometheus query engine; use MetricName or Metrics.",
        ));
    }
    if req.evaluation_window.is_some() || req.evaluation_interval.is_some() {
        return Err(not_supported(
            "EvaluationWindow",
            "alarms are evaluated over sliding windows of their Period.",
        ));
    }
    if req.warm_up_configuration.is_some() {
        return Err(not_supported(
            "WarmUpConfiguration",
            "alarms are evaluated from their creation.",
        ));
    }
    if req.action_configuration.is_some() {
        return Err(not_supported(
            "ActionConfiguration",
            "alarm tags are not propagated to the targets of actions.",
        ));
    }
    let input = m::PutMetricAlarmInput {
        alarm_name: req.alarm_name.unwrap_or_default(),
        alarm_description: req.alarm_description,
        actions_enabled: req.actions_enabled,
        ok_actions: req.ok_actions.unwrap_or_default(),
        alarm_actions: req.alarm_actions.unwrap_or_default(),
        insufficient_data_actions: req.insufficient_data_actions.unwrap_or_default(),
        metric_name: req.metric_name,
        namespace: req.namespace,
        statistic: req
            .statistic
            .map(|s| convert::statistic(s, "Statistic"))
            .transpose()?,
        extended_statistic: req.extended_statistic,
        dimensions: convert::dimensions(req.dimensions),
        period: req.period.map(i64::from),
        unit: convert::unit(req.unit, "Unit")?,
        evaluation_periods: req.evaluation_periods.map(i64::from),
        datapoints_to_alarm: req.datapoints_to_alarm.map(i64::from),
        threshold: req.threshold,
        comparison_operator: req
            .comparison_operator
            .map(|c| m::ComparisonOperator::parse(c.as_str(), "ComparisonOperator"))
            .transpose()
            .map_err(api_error)?,
        treat_missing_data: req.treat_missing_data,
        evaluate_low_sample_count_percentile: req.evaluate_low_sample_count_percentile,
        metrics: convert::queries(req.metrics, "Metrics")?,
        tags: convert::tags(req.tags),
        threshold_metric_id: req.threshold_metric_id,
    };
    let transition = env
        .metrics
        .put_metric_alarm(&call.ctx.scope, &input, now(call))
        .await
        .map_err(api_error)?;
    publish(env, transition);
    call.reply(&serde_json::json!({}))
}

pub async fn describe_alarms(env: &Env, call: &Call<'_>) -> ApiResult<Reply> {
    let req: cw::DescribeAlarmsInput = decode(call)?;
    let input = m::DescribeAlarmsInput {
        alarm_names: req.alarm_names.unwrap_or_default(),
        alarm_name_prefix: req.alarm_name_prefix,
        alarm_types: convert::alarm_types(req.alarm_types)?,
        children_of_alarm_name: req.children_of_alarm_name,
        parents_of_alarm_name: req.parents_of_alarm_name,
        state_value: req
            .state_value
            .map(|s| convert::state(s, "StateValue"))
            .transpose()?,
        action_prefix: req.action_prefix,
        max_records: req.max_records.map(i64::from),
        next_token: req.next_token,
    };
    let out = env
        .metrics
        .describe_alarms(&call.ctx.scope, &input)
        .map_err(api_error)?;
    call.reply(&cw::DescribeAlarmsOutput {
        composite_alarms: Some(Vec::new()),
        metric_alarms: Some(out.metric_alarms.iter().map(convert::wire_alarm).collect()),
        log_alarms: None,
        next_token: out.next_token,
    })
}

pub async fn describe_alarms_for_metric(env: &Env, call: &Call<'_>) -> ApiResult<Reply> {
    let req: cw::DescribeAlarmsForMetricInput = decode(call)?;
    let input = m::DescribeAlarmsForMetricInput {
        metric_name: req.metric_name.unwrap_or_default(),
        namespace: req.namespace.unwrap_or_default(),
        statistic: req
            .statistic
            .map(|s| convert::statistic(s, "Statistic"))
            .transpose()?,
        extended_statistic: req.extended_statistic,
        dimensions: convert::dimensions(req.dimensions),
        period: req.period.map(i64::from),
        unit: convert::unit(req.unit, "Unit")?,
    };
    let alarms = env
        .metrics
        .describe_alarms_for_metric(&call.ctx.scope, &input)
        .map_err(api_error)?;
    call.reply(&cw::DescribeAlarmsForMetricOutput {
        metric_alarms: Some(alarms.iter().map(convert::wire_alarm).collect()),
    })
}

pub async fn delete_alarms(env: &Env, call: &Call<'_>) -> ApiResult<Reply> {
    let req: cw::DeleteAlarmsInput = decode(call)?;
    env.metrics
        .delete_alarms(
            &call.ctx.scope,
            &req.alarm_names.unwrap_or_default(),
            now(call),
        )
        .await
        .map_err(api_error)?;
    call.reply(&serde_json::json!({}))
}

pub async fn set_alarm_state(env: &Env, call: &Call<'_>) -> ApiResult<Reply> {
    let req: cw::SetAlarmStateInput = decode(call)?;
    let input = m::SetAlarmStateInput {
        alarm_name: req.alarm_name.unwrap_or_default(),
        state_value: convert::state(
            req.state_value.unwrap_or(cw::StateValue::InsufficientData),
            "StateValue",
        )?,
        state_reason: req.state_reason.unwrap_or_default(),
        state_reason_data: req.state_reason_data,
    };
    let transition = env
        .metrics
        .set_alarm_state(&call.ctx.scope, &input, now(call))
        .await
        .map_err(api_error)?;
    publish(env, transition);
    call.reply(&serde_json::json!({}))
}

/// EnableAlarmActions (`enabled`) and DisableAlarmActions.
pub async fn set_actions_enabled(env: &Env, call: &Call<'_>, enabled: bool) -> ApiResult<Reply> {
    let names = if enabled {
        decode::<cw::EnableAlarmActionsInput>(call)?.alarm_names
    } else {
        decode::<cw::DisableAlarmActionsInput>(call)?.alarm_names
    };
    env.metrics
        .set_alarm_actions_enabled(&call.ctx.scope, &names.unwrap_or_default(), enabled)
        .await
        .map_err(api_error)?;
    call.reply(&serde_json::json!({}))
}

pub async fn describe_alarm_history(env: &Env, call: &Call<'_>) -> ApiResult<Reply> {
    let req: cw::DescribeAlarmHistoryInput = decode(call)?;
    let input = m::DescribeAlarmHistoryInput {
        alarm_name: req.alarm_name,
        alarm_types: convert::alarm_types(req.alarm_types)?,
        history_item_type: req
            .history_item_type
            .map(|t| m::HistoryItemType::parse(t.as_str(), "HistoryItemType"))
            .transpose()
            .map_err(api_error)?,
        start_date: timestamp(req.start_date, "StartDate")?,
        end_date: timestamp(req.end_date, "EndDate")?,
        max_records: req.max_records.map(i64::from),
        next_token: req.next_token,
        scan_by: req
            .scan_by
            .map(|s| m::ScanBy::parse(s.as_str(), "ScanBy"))
            .transpose()
            .map_err(api_error)?,
    };
    let (store, scope) = (env.metrics.clone(), call.ctx.scope.clone());
    let out = blocking(move || store.describe_alarm_history(&scope, &input)).await?;
    call.reply(&cw::DescribeAlarmHistoryOutput {
        alarm_history_items: Some(
            out.alarm_history_items
                .into_iter()
                .map(|h| cw::AlarmHistoryItem {
                    alarm_name: Some(h.alarm_name),
                    alarm_type: cw::AlarmType::parse(h.alarm_type.as_str()),
                    timestamp: Some(h.timestamp.as_secs_f64()),
                    history_item_type: cw::HistoryItemType::parse(h.history_item_type.as_str()),
                    history_summary: Some(h.history_summary),
                    history_data: Some(h.history_data),
                    ..Default::default()
                })
                .collect(),
        ),
        next_token: out.next_token,
    })
}

pub async fn tag_resource(env: &Env, call: &Call<'_>) -> ApiResult<Reply> {
    let req: cw::TagResourceInput = decode(call)?;
    env.metrics
        .tag_resource(
            &call.ctx.scope,
            &req.resource_arn.unwrap_or_default(),
            &convert::tags(req.tags),
        )
        .await
        .map_err(api_error)?;
    call.reply(&serde_json::json!({}))
}

pub async fn untag_resource(env: &Env, call: &Call<'_>) -> ApiResult<Reply> {
    let req: cw::UntagResourceInput = decode(call)?;
    env.metrics
        .untag_resource(
            &call.ctx.scope,
            &req.resource_arn.unwrap_or_default(),
            &req.tag_keys.unwrap_or_default(),
        )
        .await
        .map_err(api_error)?;
    call.reply(&serde_json::json!({}))
}

pub async fn list_tags_for_resource(env: &Env, call: &Call<'_>) -> ApiResult<Reply> {
    let req: cw::ListTagsForResourceInput = decode(call)?;
    let tags = env
        .metrics
        .list_tags_for_resource(&call.ctx.scope, &req.resource_arn.unwrap_or_default())
        .map_err(api_error)?;
    call.reply(&cw::ListTagsForResourceOutput {
        tags: Some(convert::wire_tags(&tags)),
    })
}
