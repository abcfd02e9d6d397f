//! Metric alarms: their configuration and state ([`MetricAlarm`]), the
//! validation of PutMetricAlarm, the filters of DescribeAlarms and
//! DescribeAlarmsForMetric, history items, and what a state change hands to
//! the server ([`AlarmTransition`]).
//!
//! Submodules: [`evaluate`] (the pure evaluator) and [`schedule`] (when each
//! alarm is due).

pub mod evaluate;
pub mod schedule;

use serde::{Deserialize, Serialize};
use serde_json::json;

use flotilla_model::arn::Scope;

use crate::error::{check_count, check_len, MetricsError, Result};
use crate::query::{compile_queries, Compiled, MetricDataQuery};
use crate::series::{canonical_dimensions, check_namespace};
use crate::stat::Stat;
use crate::types::{
    AlarmType, ComparisonOperator, Dimension, HistoryItemType, LowSampleCountPercentile, ScanBy,
    StandardUnit, StateValue, Statistic, Tag, Timestamp, TreatMissingData,
};

/// Actions per list (`OKActions`, `AlarmActions`, `InsufficientDataActions`).
pub const MAX_ACTIONS: usize = 5;
/// Tags per alarm.
pub const MAX_TAGS: usize = 50;
/// Queries in an alarm's `Metrics`.
pub const MAX_ALARM_METRICS: usize = 10;
/// The reason of a new alarm.
pub const INITIAL_REASON: &str = "Unchecked: Initial alarm creation";

/// A metric alarm, as DescribeAlarms returns it (`MetricAlarm`) and as the
/// store keeps it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricAlarm {
    pub alarm_name: String,
    pub alarm_arn: String,
    pub alarm_description: Option<String>,
    pub alarm_configuration_updated_timestamp: Timestamp,
    pub actions_enabled: bool,
    pub ok_actions: Vec<String>,
    pub alarm_actions: Vec<String>,
    pub insufficient_data_actions: Vec<String>,
    pub state_value: StateValue,
    pub state_reason: String,
    pub state_reason_data: Option<String>,
    pub state_updated_timestamp: Timestamp,
    pub state_transitioned_timestamp: Timestamp,
    /// Single-metric alarms: `MetricName`, `Namespace`, `Statistic` or
    /// `ExtendedStatistic`, `Dimensions` (canonical order), `Period`, `Unit`.
    pub metric_name: Option<String>,
    pub namespace: Option<String>,
    pub statistic: Option<Statistic>,
    pub extended_statistic: Option<String>,
    pub dimensions: Vec<Dimension>,
    pub period: Option<i64>,
    pub unit: Option<StandardUnit>,
    /// Alarms on metric math: `Metrics`, one of them with `ReturnData`.
    pub metrics: Vec<MetricDataQuery>,
    pub evaluation_periods: i64,
    pub datapoints_to_alarm: Option<i64>,
    pub threshold: f64,
    pub comparison_operator: ComparisonOperator,
    pub treat_missing_data: Option<TreatMissingData>,
    pub evaluate_low_sample_count_percentile: Option<LowSampleCountPercentile>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Set by SetAlarmState: the next evaluation records its own reason even
    /// when it agrees with the state that was set.
    #[serde(default)]
    pub state_set_manually: bool,
}

impl MetricAlarm {
    /// The statistic a single-metric alarm evaluates.
    pub fn stat(&self) -> Option<Stat> {
        if let Some(s) = self.statistic {
            return Some(Stat::Basic(s));
        }
        self.extended_statistic
            .as_deref()
            .and_then(|e| Stat::parse_extended(e, "ExtendedStatistic").ok())
    }

    /// The period the alarm evaluates, seconds: `Period`, or the period of
    /// the metrics of a math alarm.
    pub fn period_secs(&self) -> i64 {
        self.period
            .unwrap_or_else(|| math_period(&self.metrics).unwrap_or(60))
    }

    /// The actions for a state (`OKActions`, `AlarmActions`,
    /// `InsufficientDataActions`).
    pub fn actions_for(&self, state: StateValue) -> &[String] {
        match state {
            StateValue::Ok => &self.ok_actions,
            StateValue::Alarm => &self.alarm_actions,
            StateValue::InsufficientData => &self.insufficient_data_actions,
        }
    }

    /// Whether the alarm watches exactly this metric (DescribeAlarmsForMetric).
    fn watches(&self, namespace: &str, metric_name: &str) -> bool {
        self.namespace.as_deref() == Some(namespace)
            && self.metric_name.as_deref() == Some(metric_name)
    }
}

/// The period shared by a math alarm's metrics.
fn math_period(metrics: &[MetricDataQuery]) -> Option<i64> {
    metrics
        .iter()
        .find_map(|q| q.metric_stat.as_ref().map(|m| m.period))
        .or_else(|| metrics.iter().find_map(|q| q.period))
}

/// `PutMetricAlarmInput`. `EvaluationCriteria` (PromQL), `EvaluationWindow`,
/// `EvaluationInterval`, `WarmUpConfiguration` and `ActionConfiguration` have
/// no members here: the handler refuses them (not supported).
#[derive(Debug, Clone, Default)]
pub struct PutMetricAlarmInput {
    pub alarm_name: String,
    pub alarm_description: Option<String>,
    /// `ActionsEnabled` (default true).
    pub actions_enabled: Option<bool>,
    pub ok_actions: Vec<String>,
    pub alarm_actions: Vec<String>,
    pub insufficient_data_actions: Vec<String>,
    pub metric_name: Option<String>,
    pub namespace: Option<String>,
    pub statistic: Option<Statistic>,
    pub extended_statistic: Option<String>,
    pub dimensions: Vec<Dimension>,
    pub period: Option<i64>,
    pub unit: Option<StandardUnit>,
    pub evaluation_periods: Option<i64>,
    pub datapoints_to_alarm: Option<i64>,
    pub threshold: Option<f64>,
    pub comparison_operator: Option<ComparisonOperator>,
    /// `TreatMissingData`: `missing`, `ignore`, `breaching`, `notBreaching`.
    pub treat_missing_data: Option<String>,
    /// `EvaluateLowSampleCountPercentile`: `evaluate` or `ignore`.
    pub evaluate_low_sample_count_percentile: Option<String>,
    pub metrics: Vec<MetricDataQuery>,
    /// `Tags`: applied when the alarm is created, ignored on update.
    pub tags: Vec<Tag>,
    /// `ThresholdMetricId`: anomaly detection, refused.
    pub threshold_metric_id: Option<String>,
}

/// `arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME`.
pub fn alarm_arn(scope: &Scope, name: &str) -> String {
    format!(
        "arn:aws:cloudwatch:{}:{}:alarm:{name}",
        scope.region, scope.account
    )
}

/// The alarm name an ARN names in this scope, if it is an alarm ARN.
pub(crate) fn name_from_arn<'a>(scope: &Scope, arn: &'a str) -> Option<&'a str> {
    let prefix = format!(
        "arn:aws:cloudwatch:{}:{}:alarm:",
        scope.region, scope.account
    );
    arn.strip_prefix(&prefix).filter(|n| !n.is_empty())
}

pub(crate) fn check_alarm_name(name: &str, field: &str) -> Result<()> {
    if name.is_empty() {
        return Err(MetricsError::missing(field));
    }
    check_len(name, field, 1, 255)?;
    if name.chars().any(|c| c.is_ascii_control()) {
        return Err(MetricsError::invalid(format!(
            "The value for parameter {field} is invalid. Alarm names must not contain ASCII control characters."
        )));
    }
    Ok(())
}

fn check_actions(actions: &[String], field: &str) -> Result<()> {
    check_count(actions, field, MAX_ACTIONS)?;
    for (i, action) in actions.iter().enumerate() {
        let item = format!("{field}.member.{}", i + 1);
        check_len(action, &item, 1, 1024)?;
        if !action.starts_with("arn:") || action.split(':').count() < 6 {
            return Err(MetricsError::invalid(format!(
                "The value {action} for parameter {item} is invalid. An action is an ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE)."
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_tags(tags: &[Tag], field: &str) -> Result<()> {
    check_count(tags, field, MAX_TAGS)?;
    for (i, tag) in tags.iter().enumerate() {
        check_len(&tag.key, &format!("{field}.member.{}.Key", i + 1), 1, 128)?;
        check_len(
            &tag.value,
            &format!("{field}.member.{}.Value", i + 1),
            0,
            256,
        )?;
        if tag.key.starts_with("aws:") {
            return Err(MetricsError::invalid(format!(
                "The value {} for parameter {field}.member.{}.Key is invalid. Tag keys starting with \"aws:\" are reserved.",
                tag.key,
                i + 1
            )));
        }
    }
    Ok(())
}

/// Validates PutMetricAlarm into the alarm's configuration (state fields
/// are filled in by the caller). `now` stamps the configuration.
pub(crate) fn validate_put(
    scope: &Scope,
    input: &PutMetricAlarmInput,
    now: Timestamp,
) -> Result<MetricAlarm> {
    check_alarm_name(&input.alarm_name, "AlarmName")?;
    if let Some(d) = &input.alarm_description {
        check_len(d, "AlarmDescription", 0, 1024)?;
    }
    check_actions(&input.ok_actions, "OKActions")?;
    check_actions(&input.alarm_actions, "AlarmActions")?;
    check_actions(&input.insufficient_data_actions, "InsufficientDataActions")?;
    if input.threshold_metric_id.is_some() {
        return Err(MetricsError::combination(
            "The parameter ThresholdMetricId is not supported: Flotilla has no anomaly detection models. Use a static Threshold.",
        ));
    }
    let comparison_operator = input
        .comparison_operator
        .ok_or_else(|| MetricsError::missing("ComparisonOperator"))?;
    if !comparison_operator.is_static() {
        return Err(MetricsError::combination(format!(
            "The value {comparison_operator} for parameter ComparisonOperator is only valid for alarms on anomaly detection models, which Flotilla does not support. Use GreaterThanOrEqualToThreshold, GreaterThanThreshold, LessThanThreshold or LessThanOrEqualToThreshold."
        )));
    }
    let evaluation_periods = input
        .evaluation_periods
        .ok_or_else(|| MetricsError::missing("EvaluationPeriods"))?;
    if evaluation_periods < 1 {
        return Err(MetricsError::invalid(
            "The parameter EvaluationPeriods must be greater than or equal to 1.",
        ));
    }
    let threshold = input
        .threshold
        .ok_or_else(|| MetricsError::missing("Threshold"))?;
    if !threshold.is_finite() {
        return Err(MetricsError::invalid(format!(
            "The value {threshold} for parameter Threshold is invalid. It must be a finite number."
        )));
    }

    let single = input.metric_name.is_some();
    let math = !input.metrics.is_empty();
    let (period, statistic, extended_statistic, dimensions) = match (single, math) {
        (true, true) => {
            return Err(MetricsError::combination(
                "The parameters MetricName and Metrics are mutually exclusive and you have specified both.",
            ))
        }
        (false, false) => {
            return Err(MetricsError::MissingParameter(
                "One of the parameters MetricName or Metrics must be specified.".into(),
            ))
        }
        (true, false) => {
            let name = input.metric_name.as_deref().unwrap_or_default();
            check_len(name, "MetricName", 1, 255)?;
            let namespace = input.namespace.as_deref().ok_or_else(|| MetricsError::missing("Namespace"))?;
            check_namespace(namespace, "Namespace")?;
            let period = input.period.ok_or_else(|| MetricsError::missing("Period"))?;
            match (input.statistic, &input.extended_statistic) {
                (Some(_), Some(_)) => {
                    return Err(MetricsError::combination(
                        "The parameters Statistic and ExtendedStatistic are mutually exclusive and you have specified both.",
                    ))
                }
                (None, None) => {
                    return Err(MetricsError::MissingParameter(
                        "One of the parameters Statistic or ExtendedStatistic must be specified.".into(),
                    ))
                }
                (None, Some(e)) => {
                    Stat::parse_extended(e, "ExtendedStatistic")?;
                }
                (Some(_), None) => {}
            }
            let dimensions = canonical_dimensions(&input.dimensions, "Dimensions")?;
            (period, input.statistic, input.extended_statistic.clone(), dimensions)
        }
        (false, true) => {
            for (given, field) in [
                (input.namespace.is_some(), "Namespace"),
                (!input.dimensions.is_empty(), "Dimensions"),
                (input.period.is_some(), "Period"),
                (input.unit.is_some(), "Unit"),
                (input.statistic.is_some(), "Statistic"),
                (input.extended_statistic.is_some(), "ExtendedStatistic"),
            ] {
                if given {
                    return Err(MetricsError::combination(format!(
                        "The parameter {field} must not be used with Metrics: give it in the Metrics array instead."
                    )));
                }
            }
            check_count(&input.metrics, "Metrics", MAX_ALARM_METRICS)?;
            compile_queries(scope, &input.metrics, "Metrics")?;
            let returning = input.metrics.iter().filter(|q| q.return_data.unwrap_or(true)).count();
            if returning != 1 {
                return Err(MetricsError::invalid(format!(
                    "Exactly one element of the Metrics array must have ReturnData set to true ({returning} do); set ReturnData to false on the others."
                )));
            }
            let periods: Vec<i64> = input
                .metrics
                .iter()
                .filter_map(|q| q.metric_stat.as_ref().map(|m| m.period).or(q.period))
                .collect();
            let period = *periods.first().ok_or_else(|| {
                MetricsError::invalid("The Metrics array must retrieve at least one metric (a MetricStat).")
            })?;
            if periods.iter().any(|p| *p != period) {
                return Err(MetricsError::invalid(
                    "All metrics of an alarm's Metrics array must use the same Period.",
                ));
            }
            (period, None, None, Vec::new())
        }
    };
    if period < 1 || (period % 60 != 0 && ![10, 20, 30].contains(&period)) {
        return Err(MetricsError::invalid(format!(
            "The value {period} for parameter Period is invalid. Valid values are 10, 20, 30, and any multiple of 60."
        )));
    }
    let total = period.saturating_mul(evaluation_periods);
    if period < 3600 && total > 86_400 {
        return Err(MetricsError::combination(
            "Metrics cannot be checked across more than a day (EvaluationPeriods * Period must be <= 86400) for alarms with a period under 3600 seconds.",
        ));
    }
    if total > 604_800 {
        return Err(MetricsError::combination(
            "Metrics cannot be checked across more than a week (EvaluationPeriods * Period must be <= 604800).",
        ));
    }
    if let Some(m) = input.datapoints_to_alarm {
        if m < 1 {
            return Err(MetricsError::invalid(
                "The parameter DatapointsToAlarm must be greater than or equal to 1.",
            ));
        }
        if m > evaluation_periods {
            return Err(MetricsError::invalid(
                "DatapointsToAlarm must be less than or equal to EvaluationPeriods.",
            ));
        }
    }
    let treat_missing_data = input
        .treat_missing_data
        .as_deref()
        .map(|t| TreatMissingData::parse(t, "TreatMissingData"))
        .transpose()?;
    let evaluate_low_sample_count_percentile = input
        .evaluate_low_sample_count_percentile
        .as_deref()
        .map(|t| LowSampleCountPercentile::parse(t, "EvaluateLowSampleCountPercentile"))
        .transpose()?;
    check_tags(&input.tags, "Tags")?;
    Ok(MetricAlarm {
        alarm_name: input.alarm_name.clone(),
        alarm_arn: alarm_arn(scope, &input.alarm_name),
        alarm_description: input.alarm_description.clone(),
        alarm_configuration_updated_timestamp: now,
        actions_enabled: input.actions_enabled.unwrap_or(true),
        ok_actions: input.ok_actions.clone(),
        alarm_actions: input.alarm_actions.clone(),
        insufficient_data_actions: input.insufficient_data_actions.clone(),
        state_value: StateValue::InsufficientData,
        state_reason: INITIAL_REASON.into(),
        state_reason_data: None,
        state_updated_timestamp: now,
        state_transitioned_timestamp: now,
        metric_name: input.metric_name.clone(),
        namespace: input.namespace.clone(),
        statistic,
        extended_statistic,
        dimensions,
        period: single.then_some(period),
        unit: input.unit,
        metrics: input.metrics.clone(),
        evaluation_periods,
        datapoints_to_alarm: input.datapoints_to_alarm,
        threshold,
        comparison_operator,
        treat_missing_data,
        evaluate_low_sample_count_percentile,
        tags: input.tags.clone(),
        state_set_manually: false,
    })
}

/// Compiles a math alarm's queries (validated when it was put).
pub(crate) fn compiled_metrics(scope: &Scope, alarm: &MetricAlarm) -> Result<Vec<Compiled>> {
    compile_queries(scope, &alarm.metrics, "Metrics")
}

/// `DescribeAlarmsInput`.
#[derive(Debug, Clone, Default)]
pub struct DescribeAlarmsInput {
    pub alarm_names: Vec<String>,
    pub alarm_name_prefix: Option<String>,
    /// `AlarmTypes`: metric alarms only when empty.
    pub alarm_types: Vec<AlarmType>,
    pub children_of_alarm_name: Option<String>,
    pub parents_of_alarm_name: Option<String>,
    pub state_value: Option<StateValue>,
    pub action_prefix: Option<String>,
    /// `MaxRecords`: 1 to 100, default 50.
    pub max_records: Option<i64>,
    pub next_token: Option<String>,
}

/// `DescribeAlarmsOutput`. `CompositeAlarms` and `LogAlarms` are always
/// empty (Flotilla has only metric alarms).
#[derive(Debug, Clone, PartialEq)]
pub struct DescribeAlarmsOutput {
    pub metric_alarms: Vec<MetricAlarm>,
    pub next_token: Option<String>,
}

/// The checked filters of a DescribeAlarms call.
pub(crate) struct AlarmFilter {
    pub names: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub state: Option<StateValue>,
    pub action_prefix: Option<String>,
    /// Nothing can match (composite-only types, children/parents queries).
    pub none: bool,
    pub limit: usize,
    pub after: Option<String>,
}

impl AlarmFilter {
    pub fn new(input: &DescribeAlarmsInput) -> Result<AlarmFilter> {
        check_count(&input.alarm_names, "AlarmNames", 100)?;
        for (i, name) in input.alarm_names.iter().enumerate() {
            check_alarm_name(name, &format!("AlarmNames.member.{}", i + 1))?;
        }
        if !input.alarm_names.is_empty() && input.alarm_name_prefix.is_some() {
            return Err(MetricsError::combination(
                "The parameters AlarmNames and AlarmNamePrefix are mutually exclusive and you have specified both.",
            ));
        }
        if let Some(p) = &input.alarm_name_prefix {
            check_len(p, "AlarmNamePrefix", 1, 255)?;
        }
        if let Some(p) = &input.action_prefix {
            check_len(p, "ActionPrefix", 1, 1024)?;
        }
        let relation =
            input.children_of_alarm_name.is_some() || input.parents_of_alarm_name.is_some();
        if relation
            && (!input.alarm_names.is_empty()
                || input.alarm_name_prefix.is_some()
                || input.state_value.is_some()
                || input.action_prefix.is_some()
                || !input.alarm_types.is_empty()
                || (input.children_of_alarm_name.is_some()
                    && input.parents_of_alarm_name.is_some()))
        {
            return Err(MetricsError::combination(
                "ChildrenOfAlarmName or ParentsOfAlarmName can only be used with MaxRecords and NextToken.",
            ));
        }
        let limit = match input.max_records {
            None => 50,
            Some(n @ 1..=100) => n as usize,
            Some(n) => {
                return Err(MetricsError::invalid(format!(
                "The value {n} for parameter MaxRecords is invalid. It must be between 1 and 100."
            )))
            }
        };
        let after = match &input.next_token {
            None => None,
            Some(token) => Some(
                crate::query::decode_token(token)?
                    .strip_prefix("da:")
                    .ok_or_else(MetricsError::bad_token)?
                    .to_string(),
            ),
        };
        let metric_alarms_asked =
            input.alarm_types.is_empty() || input.alarm_types.contains(&AlarmType::MetricAlarm);
        Ok(AlarmFilter {
            names: (!input.alarm_names.is_empty()).then(|| input.alarm_names.clone()),
            prefix: input.alarm_name_prefix.clone(),
            state: input.state_value,
            action_prefix: input.action_prefix.clone(),
            // A metric alarm has neither children nor composite parents here.
            none: relation || !metric_alarms_asked,
            limit,
            after,
        })
    }

    pub fn matches(&self, alarm: &MetricAlarm) -> bool {
        !self.none
            && self
                .names
                .as_ref()
                .is_none_or(|n| n.contains(&alarm.alarm_name))
            && self
                .prefix
                .as_ref()
                .is_none_or(|p| alarm.alarm_name.starts_with(p.as_str()))
            && self.state.is_none_or(|s| s == alarm.state_value)
            && self.action_prefix.as_ref().is_none_or(|p| {
                alarm
                    .ok_actions
                    .iter()
                    .chain(&alarm.alarm_actions)
                    .chain(&alarm.insufficient_data_actions)
                    .any(|a| a.starts_with(p.as_str()))
            })
    }

    pub fn token_after(name: &str) -> String {
        crate::query::encode_token(&format!("da:{name}"))
    }
}

/// `DescribeAlarmsForMetricInput`.
#[derive(Debug, Clone, Default)]
pub struct DescribeAlarmsForMetricInput {
    pub metric_name: String,
    pub namespace: String,
    pub statistic: Option<Statistic>,
    pub extended_statistic: Option<String>,
    pub dimensions: Vec<Dimension>,
    pub period: Option<i64>,
    pub unit: Option<StandardUnit>,
}

/// The checked filter of DescribeAlarmsForMetric: single-metric alarms on
/// exactly this metric, narrowed by the optional members.
pub(crate) fn for_metric_filter(
    input: &DescribeAlarmsForMetricInput,
) -> Result<impl Fn(&MetricAlarm) -> bool + '_> {
    if input.metric_name.is_empty() {
        return Err(MetricsError::missing("MetricName"));
    }
    if input.namespace.is_empty() {
        return Err(MetricsError::missing("Namespace"));
    }
    check_namespace(&input.namespace, "Namespace")?;
    let dimensions = canonical_dimensions(&input.dimensions, "Dimensions")?;
    Ok(move |alarm: &MetricAlarm| {
        alarm.watches(&input.namespace, &input.metric_name)
            && input.statistic.is_none_or(|s| alarm.statistic == Some(s))
            && input
                .extended_statistic
                .as_ref()
                .is_none_or(|e| alarm.extended_statistic.as_ref() == Some(e))
            && (input.dimensions.is_empty() || alarm.dimensions == dimensions)
            && input.period.is_none_or(|p| alarm.period == Some(p))
            && input.unit.is_none_or(|u| alarm.unit == Some(u))
    })
}

/// `SetAlarmStateInput`.
#[derive(Debug, Clone)]
pub struct SetAlarmStateInput {
    pub alarm_name: String,
    pub state_value: StateValue,
    pub state_reason: String,
    pub state_reason_data: Option<String>,
}

/// `DescribeAlarmHistoryInput`.
#[derive(Debug, Clone, Default)]
pub struct DescribeAlarmHistoryInput {
    pub alarm_name: Option<String>,
    /// `AlarmTypes`: metric alarms when empty.
    pub alarm_types: Vec<AlarmType>,
    pub history_item_type: Option<HistoryItemType>,
    pub start_date: Option<Timestamp>,
    pub end_date: Option<Timestamp>,
    /// `MaxRecords`: 1 to 100, default 100.
    pub max_records: Option<i64>,
    pub next_token: Option<String>,
    /// `ScanBy` (default `TimestampDescending`).
    pub scan_by: Option<ScanBy>,
}

/// `AlarmHistoryItem`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmHistoryItem {
    pub alarm_name: String,
    pub alarm_type: AlarmType,
    pub timestamp: Timestamp,
    pub history_item_type: HistoryItemType,
    pub history_summary: String,
    pub history_data: String,
}

/// `DescribeAlarmHistoryOutput`.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribeAlarmHistoryOutput {
    pub alarm_history_items: Vec<AlarmHistoryItem>,
    pub next_token: Option<String>,
}

/// A state change, durable and visible, for the server to deliver: its
/// actions go to auto scaling policies, and deployments watching the alarm
/// by name roll back on ALARM.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmTransition {
    pub scope: Scope,
    pub alarm_name: String,
    pub alarm_arn: String,
    pub old_state: StateValue,
    pub new_state: StateValue,
    /// `StateReason` and `StateReasonData` of the new state.
    pub reason: String,
    pub reason_data: Option<String>,
    /// The alarm's threshold and the values it evaluated (oldest first):
    /// step scaling measures the breach from them.
    pub threshold: f64,
    pub recent_datapoints: Vec<f64>,
    /// The actions of the new state; empty when the alarm's actions are
    /// disabled.
    pub actions: Vec<String>,
    pub at: Timestamp,
    /// The state did not change: the alarm stays in it, and `actions` are
    /// its Auto Scaling actions, invoked again. CloudWatch repeats Auto
    /// Scaling actions (only those) once a minute while the alarm stays in
    /// the state; nothing is written for a repeat.
    pub repeat: bool,
}

impl AlarmTransition {
    pub(crate) fn new(
        scope: &Scope,
        old: &MetricAlarm,
        new: &MetricAlarm,
        recent: Vec<f64>,
        at: Timestamp,
    ) -> Self {
        AlarmTransition {
            scope: scope.clone(),
            alarm_name: new.alarm_name.clone(),
            alarm_arn: new.alarm_arn.clone(),
            old_state: old.state_value,
            new_state: new.state_value,
            reason: new.state_reason.clone(),
            reason_data: new.state_reason_data.clone(),
            threshold: new.threshold,
            recent_datapoints: recent,
            actions: if new.actions_enabled {
                new.actions_for(new.state_value).to_vec()
            } else {
                Vec::new()
            },
            at,
            repeat: false,
        }
    }
}

/// Whether an action names an Auto Scaling policy (EC2 Auto Scaling and
/// Application Auto Scaling policies share the `autoscaling` service).
pub fn is_auto_scaling_action(action: &str) -> bool {
    action.starts_with("arn:aws:autoscaling:")
}

/// How a delivered action went (reported by the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    Succeeded,
    Failed(String),
}

/// The alarm as history JSON shows it (camelCase, as CloudWatch writes it).
pub(crate) fn alarm_json(a: &MetricAlarm) -> serde_json::Value {
    let mut v = json!({
        "alarmName": a.alarm_name,
        "alarmArn": a.alarm_arn,
        "alarmDescription": a.alarm_description,
        "actionsEnabled": a.actions_enabled,
        "okactions": a.ok_actions,
        "alarmActions": a.alarm_actions,
        "insufficientDataActions": a.insufficient_data_actions,
        "stateValue": a.state_value.as_str(),
        "stateReason": a.state_reason,
        "stateUpdatedTimestamp": a.state_updated_timestamp.iso_millis(),
        "alarmConfigurationUpdatedTimestamp": a.alarm_configuration_updated_timestamp.iso_millis(),
        "evaluationPeriods": a.evaluation_periods,
        "threshold": a.threshold,
        "comparisonOperator": a.comparison_operator.as_str(),
    });
    let map = v.as_object_mut().expect("a JSON object");
    let mut put = |k: &str, value: serde_json::Value| {
        if !value.is_null() {
            map.insert(k.into(), value);
        }
    };
    put("metricName", json!(a.metric_name));
    put("namespace", json!(a.namespace));
    put("statistic", json!(a.statistic.map(|s| s.as_str())));
    put("extendedStatistic", json!(a.extended_statistic));
    put("period", json!(a.period));
    put("unit", json!(a.unit.map(|u| u.as_str())));
    put("datapointsToAlarm", json!(a.datapoints_to_alarm));
    put(
        "treatMissingData",
        json!(a.treat_missing_data.map(|t| t.as_str())),
    );
    put(
        "evaluateLowSampleCountPercentile",
        json!(a.evaluate_low_sample_count_percentile.map(|t| t.as_str())),
    );
    if !a.dimensions.is_empty() {
        put(
            "dimensions",
            json!(a
                .dimensions
                .iter()
                .map(|d| json!({"name": d.name, "value": d.value}))
                .collect::<Vec<_>>()),
        );
    }
    if !a.metrics.is_empty() {
        put(
            "metrics",
            serde_json::to_value(&a.metrics).unwrap_or_default(),
        );
    }
    v
}

/// `Alarm "NAME" created` / `updated` / `deleted` with its HistoryData.
pub(crate) fn configuration_item(
    old: Option<&MetricAlarm>,
    new: Option<&MetricAlarm>,
) -> (String, String) {
    match (old, new) {
        (None, Some(new)) => (
            format!("Alarm \"{}\" created", new.alarm_name),
            json!({"type": "Create", "version": "1.0", "createdAlarm": alarm_json(new)})
                .to_string(),
        ),
        (Some(old), Some(new)) => {
            let (before, after) = (alarm_json(old), alarm_json(new));
            let mut changed = serde_json::Map::new();
            if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
                for (k, v) in b {
                    if a.get(k) != Some(v)
                        && !k.starts_with("state")
                        && k != "alarmConfigurationUpdatedTimestamp"
                    {
                        changed.insert(k.clone(), v.clone());
                    }
                }
            }
            (
                format!("Alarm \"{}\" updated", new.alarm_name),
                json!({"type": "Update", "version": "1.0", "originalUpdatedFields": changed, "updatedAlarm": after})
                    .to_string(),
            )
        }
        (Some(old), None) => (
            format!("Alarm \"{}\" deleted", old.alarm_name),
            json!({"type": "Delete", "version": "1.0", "deletedAlarm": alarm_json(old)})
                .to_string(),
        ),
        (None, None) => (String::new(), String::new()),
    }
}

/// `Alarm updated from OK to ALARM` with its HistoryData.
pub(crate) fn state_item(old: &MetricAlarm, new: &MetricAlarm) -> (String, String) {
    let state = |a: &MetricAlarm| {
        let mut s = json!({"stateValue": a.state_value.as_str(), "stateReason": a.state_reason});
        if let Some(data) = &a.state_reason_data {
            let parsed: serde_json::Value = serde_json::from_str(data)
                .unwrap_or_else(|_| serde_json::Value::String(data.clone()));
            s["stateReasonData"] = parsed;
        }
        s
    };
    (
        format!(
            "Alarm updated from {} to {}",
            old.state_value, new.state_value
        ),
        json!({"version": "1.0", "oldState": state(old), "newState": state(new)}).to_string(),
    )
}

/// `Successfully executed action ARN` / `Failed to execute action ARN` with
/// its HistoryData.
pub(crate) fn action_item(
    action: &str,
    outcome: &ActionOutcome,
    at: Timestamp,
) -> (String, String) {
    match outcome {
        ActionOutcome::Succeeded => (
            format!("Successfully executed action {action}"),
            json!({"actionState": "Succeeded", "stateUpdateTimestamp": at.millis(), "notificationResource": action})
                .to_string(),
        ),
        ActionOutcome::Failed(error) => (
            format!("Failed to execute action {action}"),
            json!({"actionState": "Failed", "stateUpdateTimestamp": at.millis(), "notificationResource": action, "error": error})
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests;
