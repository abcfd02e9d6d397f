//! The evaluator: a pure function from an alarm, the datapoints of its
//! evaluation range and the time, to its new state, state reason and
//! `StateReasonData`. No I/O, no clock.
//!
//! # How CloudWatch evaluates (and so this does)
//!
//! Each evaluation looks at more periods than `EvaluationPeriods` (N): the
//! *evaluation range*, N + 2 periods here (CloudWatch documents 5 for N = 3
//! and does not publish its rule). With M = `DatapointsToAlarm`:
//!
//! 1. If the range holds at least N real datapoints, the newest N of them
//!    decide: ALARM if at least M breach, else OK. Missing periods do not
//!    matter then.
//! 2. If it holds none, `TreatMissingData` decides: `missing` →
//!    INSUFFICIENT_DATA, `breaching` → ALARM, `notBreaching` → OK, `ignore`
//!    → the state stays.
//! 3. With some but fewer than N, `breaching`/`notBreaching` fill the gap
//!    with that many breaching/non-breaching points and decide as in 1.
//!    `missing` and `ignore` use the real points alone: ALARM if M of them
//!    breach; OK if one does not; and if all of them breach but fewer than M,
//!    ALARM only when the oldest of them is at least M periods old
//!    (CloudWatch's rule against premature alarms; `ignore` keeps its state
//!    instead), otherwise the state stays until more data arrives.
//!
//! This reproduces every row of the two tables in CloudWatch's "Configuring
//! how CloudWatch alarms treat missing data" (see the tests).
//!
//! With `EvaluateLowSampleCountPercentile = ignore`, a percentile alarm keeps
//! its state while a datapoint it would use has fewer samples than
//! 10/(1-p) (p ≥ 0.5) or 10/p (p < 0.5).

use serde::Serialize;

use crate::alarm::MetricAlarm;
use crate::stat::Stat;
use crate::types::{
    java_double, LowSampleCountPercentile, StateValue, Timestamp, TreatMissingData,
};

/// Periods beyond `EvaluationPeriods` an evaluation looks at.
pub const EXTRA_PERIODS: i64 = 2;

/// One period of the evaluation range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot {
    /// The period's start.
    pub start: Timestamp,
    /// The statistic's value; `None` when the period has no data (or the
    /// statistic cannot be computed from it).
    pub value: Option<f64>,
    /// Samples behind the value (0 when unknown, e.g. for math).
    pub sample_count: f64,
}

/// What an evaluation concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    /// The alarm keeps its state (and its reason).
    Keep,
    /// The alarm's state is this (which may be the state it already has).
    Set(Outcome),
}

/// A state with the words and data that justify it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub state: StateValue,
    /// `StateReason`, worded as CloudWatch words it.
    pub reason: String,
    /// `StateReasonData` (JSON).
    pub reason_data: String,
    /// The values of the real datapoints evaluated, oldest first.
    pub recent: Vec<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReasonData<'a> {
    version: &'static str,
    query_date: String,
    start_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    statistic: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extended_statistic: Option<&'a str>,
    period: i64,
    recent_datapoints: Vec<f64>,
    threshold: f64,
    evaluated_datapoints: Vec<Evaluated>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Evaluated {
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample_count: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

fn was(n: usize) -> &'static str {
    if n == 1 {
        "was"
    } else {
        "were"
    }
}

/// The sample count below which a percentile is "too few data points".
fn low_sample_threshold(p: f64) -> Option<f64> {
    let p = p / 100.0;
    if (0.5..1.0).contains(&p) {
        Some(10.0 / (1.0 - p))
    } else if p > 0.0 && p < 0.5 {
        Some(10.0 / p)
    } else {
        None
    }
}

/// Evaluates `alarm` over `slots` (its evaluation range, oldest first, each
/// one period). `query_date` is when the evaluation runs.
pub fn evaluate(alarm: &MetricAlarm, slots: &[Slot], query_date: Timestamp) -> Evaluation {
    let n = usize::try_from(alarm.evaluation_periods)
        .unwrap_or(1)
        .max(1);
    let m = alarm
        .datapoints_to_alarm
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or(n)
        .clamp(1, n);
    let mode = alarm
        .treat_missing_data
        .unwrap_or(TreatMissingData::Missing);
    let op = alarm.comparison_operator;
    let threshold = alarm.threshold;
    let range = slots.len();
    // (index, value, breaching), oldest first.
    let real: Vec<(usize, f64, bool)> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.value.map(|v| (i, v, op.breaches(v, threshold))))
        .collect();
    let k = real.len();
    let used: &[(usize, f64, bool)] = if k >= n { &real[k - n..] } else { &real };

    if let (Some(LowSampleCountPercentile::Ignore), Some(Stat::Percentile(p))) =
        (alarm.evaluate_low_sample_count_percentile, alarm.stat())
    {
        if let Some(needed) = low_sample_threshold(p) {
            if used.iter().any(|(i, _, _)| slots[*i].sample_count < needed) {
                return Evaluation::Keep;
            }
        }
    }

    let b = used.iter().filter(|u| u.2).count();
    let old = alarm.state_value;
    let (state, filled) = if k >= n {
        (
            if b >= m {
                StateValue::Alarm
            } else {
                StateValue::Ok
            },
            None,
        )
    } else if k == 0 {
        let state = match mode {
            TreatMissingData::Missing => StateValue::InsufficientData,
            TreatMissingData::Breaching => StateValue::Alarm,
            TreatMissingData::NotBreaching => StateValue::Ok,
            TreatMissingData::Ignore => return Evaluation::Keep,
        };
        (state, Some(n))
    } else {
        match mode {
            TreatMissingData::Breaching => (
                if b + (n - k) >= m {
                    StateValue::Alarm
                } else {
                    StateValue::Ok
                },
                Some(n - k),
            ),
            TreatMissingData::NotBreaching => (
                if b >= m {
                    StateValue::Alarm
                } else {
                    StateValue::Ok
                },
                Some(n - k),
            ),
            TreatMissingData::Missing | TreatMissingData::Ignore => {
                if b >= m {
                    (StateValue::Alarm, None)
                } else if b == k {
                    // All real points breach, but fewer than M. Age of the
                    // oldest: the newest period is 1 period old.
                    let oldest_age = range - real[0].0;
                    if oldest_age >= m && mode == TreatMissingData::Missing {
                        (StateValue::Alarm, None)
                    } else {
                        return Evaluation::Keep;
                    }
                } else {
                    (StateValue::Ok, None)
                }
            }
        }
    };

    let reason = reason(alarm, slots, state, old, (n, m), used, filled, mode);
    let first_evaluated = used
        .first()
        .map_or(range.saturating_sub(n), |u| u.0)
        .min(range.saturating_sub(n));
    let evaluated: Vec<Evaluated> = slots[first_evaluated..]
        .iter()
        .rev()
        .map(|s| Evaluated {
            timestamp: s.start.iso_millis(),
            sample_count: s.value.map(|_| s.sample_count),
            value: s.value,
        })
        .collect();
    let recent: Vec<f64> = slots[first_evaluated..]
        .iter()
        .filter_map(|s| s.value)
        .collect();
    let stat = alarm.stat();
    let data = ReasonData {
        version: "1.0",
        query_date: query_date.iso_millis(),
        start_date: slots
            .get(first_evaluated)
            .map_or(query_date, |s| s.start)
            .iso_millis(),
        unit: alarm.unit.map(|u| u.as_str()),
        statistic: match stat {
            Some(Stat::Basic(s)) => Some(s.as_str()),
            _ => None,
        },
        extended_statistic: alarm.extended_statistic.as_deref(),
        period: alarm.period_secs(),
        recent_datapoints: recent.clone(),
        threshold,
        evaluated_datapoints: evaluated,
    };
    let reason_data = serde_json::to_string(&data).unwrap_or_else(|_| "{}".into());
    Evaluation::Set(Outcome {
        state,
        reason,
        reason_data,
        recent,
    })
}

/// The state reason, in CloudWatch's words.
#[allow(clippy::too_many_arguments)]
fn reason(
    alarm: &MetricAlarm,
    slots: &[Slot],
    state: StateValue,
    old: StateValue,
    (n, m): (usize, usize),
    used: &[(usize, f64, bool)],
    filled: Option<usize>,
    mode: TreatMissingData,
) -> String {
    if state == StateValue::InsufficientData {
        return format!(
            "Insufficient Data: {} {} unknown.",
            plural(n, "datapoint", "datapoints"),
            was(n)
        );
    }
    let alarming = state == StateValue::Alarm;
    // The datapoints that say so, newest first.
    let telling: Vec<&(usize, f64, bool)> = used.iter().rev().filter(|u| u.2 == alarming).collect();
    let listed: Vec<String> = telling
        .iter()
        .map(|u| format!("{} ({})", java_double(u.1), slots[u.0].start.reason_date()))
        .collect();
    let relation = format!(
        "{}{} the threshold ({})",
        if alarming { "" } else { "not " },
        alarm.comparison_operator.phrase(),
        java_double(alarm.threshold)
    );
    let mut parts = Vec::new();
    if !telling.is_empty() {
        let c = telling.len();
        if n == 1 {
            parts.push(format!(
                "1 datapoint [{}] was {relation}",
                listed.join(", ")
            ));
        } else {
            parts.push(format!(
                "{c} out of the last {n} datapoints [{}] {} {relation}",
                listed.join(", "),
                was(c)
            ));
        }
    }
    let filled = filled.filter(|f| {
        *f > 0
            && matches!(
                mode,
                TreatMissingData::Breaching | TreatMissingData::NotBreaching
            )
    });
    if let Some(f) = filled {
        let treated = if mode == TreatMissingData::Breaching {
            "Breaching"
        } else {
            "NonBreaching"
        };
        let missing = format!(
            "{} {} treated as [{treated}]",
            plural(f, "missing datapoint", "missing datapoints"),
            was(f)
        );
        if used.is_empty() {
            parts.push(format!(
                "no datapoints were received for {} and {missing}",
                plural(f, "period", "periods")
            ));
        } else {
            parts.push(missing);
        }
    }
    let mut text = format!("Threshold Crossed: {}", parts.join(" and "));
    if n > 1 && !telling.is_empty() {
        let minimum = if alarming { m } else { n - m + 1 };
        text.push_str(&format!(
            " (minimum {} for {old} -> {state} transition)",
            plural(minimum, "datapoint", "datapoints")
        ));
    }
    text.push('.');
    text
}
