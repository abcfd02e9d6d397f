//! PutMetricData: the request, its validation, and the samples it becomes.
//!
//! Validation follows the model and CloudWatch's documented limits, checked
//! before anything is written (a rejected call writes nothing):
//! - `Namespace` 1–255 characters, not starting with `:`, and not `AWS/…`
//!   for callers (the control plane's own `AWS/ECS` and `AWS/ApplicationELB`
//!   metrics use the internal entry point);
//! - at most 1,000 metrics per call;
//! - per datum exactly one of `Value`, `StatisticValues` or `Values`;
//!   `Values` at most 150, `Counts` the same length, counts not negative;
//! - values finite and within ±2^360 (and not closer to zero than 2^-360);
//! - `Timestamp` at most two weeks old and at most two hours ahead;
//! - `StorageResolution` 1 or 60 (the default).
//!
//! A sample is stored at its resolution: standard (60 s) data at the start
//! of its minute, high-resolution data at the start of its second, as
//! CloudWatch stores them.

use std::sync::Arc;

use crate::error::{check_count, MetricsError, Result};
use crate::series::{check_namespace, MetricId};
use crate::stat::Aggregate;
use crate::types::{Dimension, StandardUnit, Timestamp};

/// Metrics one PutMetricData call may carry.
pub const MAX_METRICS_PER_CALL: usize = 1000;
/// Distinct values one `Values` array may carry.
pub const MAX_VALUES_PER_DATUM: usize = 150;
/// How far back a datapoint may be timestamped.
pub const MAX_AGE_SECS: i64 = 14 * 86_400;
/// How far ahead a datapoint may be timestamped.
pub const MAX_AHEAD_SECS: i64 = 2 * 3600;

/// `PutMetricDataInput`. Metric data of `EntityMetricData` entries belongs
/// in `metric_data` too (entities carry no meaning in Flotilla).
#[derive(Debug, Clone, Default)]
pub struct PutMetricDataInput {
    /// `Namespace`.
    pub namespace: String,
    /// `MetricData`.
    pub metric_data: Vec<MetricDatum>,
}

/// `MetricDatum`.
#[derive(Debug, Clone, Default)]
pub struct MetricDatum {
    /// `MetricName`.
    pub metric_name: String,
    /// `Dimensions` (any order).
    pub dimensions: Vec<Dimension>,
    /// `Timestamp`; the time of the call when absent.
    pub timestamp: Option<Timestamp>,
    /// `Value`.
    pub value: Option<f64>,
    /// `StatisticValues`.
    pub statistic_values: Option<StatisticSet>,
    /// `Values`.
    pub values: Vec<f64>,
    /// `Counts` (each defaults to 1).
    pub counts: Vec<f64>,
    /// `Unit`; `None` when absent.
    pub unit: Option<StandardUnit>,
    /// `StorageResolution`: 1 or 60 (the default).
    pub storage_resolution: Option<i32>,
}

/// `StatisticSet`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatisticSet {
    /// `SampleCount`.
    pub sample_count: f64,
    /// `Sum`.
    pub sum: f64,
    /// `Minimum`.
    pub minimum: f64,
    /// `Maximum`.
    pub maximum: f64,
}

/// Samples of one metric at one aligned timestamp and unit, ready to store.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub metric: Arc<MetricId>,
    /// Milliseconds, aligned to the second (high resolution) or minute.
    pub ts: i64,
    pub unit: StandardUnit,
    pub aggregate: Aggregate,
}

/// Whether the caller may write `AWS/` namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    User,
    ControlPlane,
}

/// Validates a PutMetricData call into samples. Datums of the same metric
/// share one `Arc<MetricId>`.
pub(crate) fn validate(
    input: &PutMetricDataInput,
    now: Timestamp,
    caller: Caller,
) -> Result<Vec<Sample>> {
    if input.namespace.is_empty() {
        return Err(MetricsError::missing("Namespace"));
    }
    check_namespace(&input.namespace, "Namespace")?;
    if caller == Caller::User && input.namespace.starts_with("AWS/") {
        return Err(MetricsError::invalid(format!(
            "The value {} for parameter Namespace is invalid. Namespaces starting with \"AWS/\" are reserved for use by AWS products.",
            input.namespace
        )));
    }
    if input.metric_data.is_empty() {
        return Err(MetricsError::missing("MetricData"));
    }
    check_count(&input.metric_data, "MetricData", MAX_METRICS_PER_CALL)?;
    let mut samples = Vec::with_capacity(input.metric_data.len());
    let mut last: Option<Arc<MetricId>> = None;
    for (i, datum) in input.metric_data.iter().enumerate() {
        let path = format!("MetricData.member.{}.", i + 1);
        let metric = MetricId::new(
            &input.namespace,
            &datum.metric_name,
            &datum.dimensions,
            &path,
        )
        .map_err(|e| match e {
            // An empty name is a missing one.
            MetricsError::InvalidParameterValue(_) if datum.metric_name.is_empty() => {
                MetricsError::missing(&format!("{path}MetricName"))
            }
            other => other,
        })?;
        let metric = match &last {
            Some(prev) if **prev == metric => Arc::clone(prev),
            _ => Arc::new(metric),
        };
        last = Some(Arc::clone(&metric));
        if let Some(sample) = validate_datum(datum, &path, metric, now)? {
            samples.push(sample);
        }
    }
    Ok(samples)
}

fn validate_datum(
    datum: &MetricDatum,
    path: &str,
    metric: Arc<MetricId>,
    now: Timestamp,
) -> Result<Option<Sample>> {
    let given = [
        ("Value", datum.value.is_some()),
        ("StatisticValues", datum.statistic_values.is_some()),
        ("Values", !datum.values.is_empty()),
    ];
    let named: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
    match named.as_slice() {
        [] => {
            if !datum.counts.is_empty() {
                return Err(MetricsError::combination(format!(
                    "The parameter {path}Counts requires {path}Values."
                )));
            }
            return Err(MetricsError::combination(format!(
                "One of the parameters {path}Value, {path}StatisticValues or {path}Values must be specified."
            )));
        }
        [_] => {}
        [a, b, ..] => {
            return Err(MetricsError::combination(format!(
                "The parameters {path}{a} and {path}{b} are mutually exclusive and you have specified both."
            )))
        }
    }
    let high_resolution = match datum.storage_resolution {
        None | Some(60) => false,
        Some(1) => true,
        Some(other) => {
            return Err(MetricsError::invalid(format!(
                "The value {other} for parameter {path}StorageResolution is invalid. Valid values are 1 and 60."
            )))
        }
    };
    let ts = datum.timestamp.unwrap_or(now);
    if ts < now.minus_secs(MAX_AGE_SECS) || ts > now.plus_secs(MAX_AHEAD_SECS) {
        return Err(MetricsError::invalid(format!(
            "The parameter {path}Timestamp must specify a time no more than two weeks in the past and no more than two hours in the future (it is {ts})."
        )));
    }
    let aggregate = if let Some(v) = datum.value {
        check_value(v, &format!("{path}Value"))?;
        Aggregate::single(v)
    } else if let Some(set) = datum.statistic_values {
        let field = format!("{path}StatisticValues");
        check_value(set.sample_count, &format!("{field}.SampleCount"))?;
        check_value(set.sum, &format!("{field}.Sum"))?;
        check_value(set.minimum, &format!("{field}.Minimum"))?;
        check_value(set.maximum, &format!("{field}.Maximum"))?;
        if set.sample_count <= 0.0 {
            return Err(MetricsError::invalid(format!(
                "The parameter {field}.SampleCount must be greater than 0."
            )));
        }
        if set.minimum > set.maximum {
            return Err(MetricsError::combination(format!(
                "The parameter {field}.Minimum must not be greater than {field}.Maximum."
            )));
        }
        Aggregate::from_statistic_set(set.sample_count, set.sum, set.minimum, set.maximum)
    } else {
        check_count(
            &datum.values,
            &format!("{path}Values"),
            MAX_VALUES_PER_DATUM,
        )?;
        if !datum.counts.is_empty() && datum.counts.len() != datum.values.len() {
            return Err(MetricsError::combination(format!(
                "The parameters {path}Values and {path}Counts must be arrays of the same size."
            )));
        }
        for (j, v) in datum.values.iter().enumerate() {
            check_value(*v, &format!("{path}Values.member.{}", j + 1))?;
        }
        for (j, c) in datum.counts.iter().enumerate() {
            let field = format!("{path}Counts.member.{}", j + 1);
            check_value(*c, &field)?;
            if *c < 0.0 {
                return Err(MetricsError::invalid(format!(
                    "The value {c} for parameter {field} is invalid. Counts must not be negative."
                )));
            }
        }
        match Aggregate::from_values(&datum.values, &datum.counts) {
            Some(aggregate) => aggregate,
            None => return Ok(None), // every count was zero: nothing occurred
        }
    };
    let resolution = if high_resolution { 1 } else { 60 };
    Ok(Some(Sample {
        metric,
        ts: ts.floor_to(resolution).millis(),
        unit: datum.unit.unwrap_or(StandardUnit::None),
        aggregate,
    }))
}

/// CloudWatch's value range: finite, within ±2^360, and zero or at least
/// 2^-360 away from it.
fn check_value(v: f64, field: &str) -> Result<()> {
    let (small, large) = (2f64.powi(-360), 2f64.powi(360));
    let abs = v.abs();
    if !v.is_finite() || abs > large || (abs != 0.0 && abs < small) {
        return Err(MetricsError::invalid(format!(
            "The value {v} for parameter {field} is invalid. Values must be finite numbers between -2^360 and 2^360 (NaN and Infinity are not supported)."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_secs(1_781_258_460)
    }

    fn put(data: Vec<MetricDatum>) -> PutMetricDataInput {
        PutMetricDataInput {
            namespace: "App".into(),
            metric_data: data,
        }
    }

    fn datum(value: f64) -> MetricDatum {
        MetricDatum {
            metric_name: "Latency".into(),
            value: Some(value),
            ..Default::default()
        }
    }

    #[test]
    fn a_value_becomes_one_sample_at_its_minute() {
        let mut d = datum(3.5);
        d.timestamp = Some(now().minus_secs(75)); // 10:59:45
        let samples = validate(&put(vec![d]), now(), Caller::User).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].ts, now().minus_secs(120).millis());
        assert_eq!(samples[0].unit, StandardUnit::None);
        assert_eq!(samples[0].aggregate, Aggregate::single(3.5));
    }

    #[test]
    fn high_resolution_samples_keep_their_second() {
        let mut d = datum(1.0);
        d.storage_resolution = Some(1);
        d.timestamp = Some(Timestamp(now().millis() - 1_500));
        let samples = validate(&put(vec![d]), now(), Caller::User).unwrap();
        assert_eq!(samples[0].ts, now().millis() - 2_000);
    }

    #[test]
    fn reserved_namespaces_are_for_the_control_plane() {
        let input = PutMetricDataInput {
            namespace: "AWS/ECS".into(),
            metric_data: vec![datum(1.0)],
        };
        let err = validate(&input, now(), Caller::User).unwrap_err();
        assert_eq!(err.code(), "InvalidParameterValue");
        assert!(err.to_string().contains("AWS/"), "{err}");
        assert!(validate(&input, now(), Caller::ControlPlane).is_ok());
    }

    #[test]
    fn limits_are_enforced() {
        let err = validate(&put(vec![datum(1.0); 1001]), now(), Caller::User).unwrap_err();
        assert!(err.to_string().contains("1000"), "{err}");
        assert!(validate(&put(vec![datum(1.0); 1000]), now(), Caller::User).is_ok());

        let mut many = datum(0.0);
        many.value = None;
        many.values = (0..151).map(f64::from).collect();
        let err = validate(&put(vec![many.clone()]), now(), Caller::User).unwrap_err();
        assert!(
            err.to_string().contains("MetricData.member.1.Values"),
            "{err}"
        );
        many.values.truncate(150);
        assert!(validate(&put(vec![many]), now(), Caller::User).is_ok());

        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e200, 1e-200] {
            let err = validate(&put(vec![datum(bad)]), now(), Caller::User).unwrap_err();
            assert!(
                err.to_string().contains("MetricData.member.1.Value"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn timestamps_must_be_recent() {
        for (offset, ok) in [
            (-MAX_AGE_SECS - 1, false),
            (-MAX_AGE_SECS, true),
            (MAX_AHEAD_SECS, true),
            (MAX_AHEAD_SECS + 1, false),
        ] {
            let mut d = datum(1.0);
            d.timestamp = Some(now().plus_secs(offset));
            let result = validate(&put(vec![d]), now(), Caller::User);
            assert_eq!(result.is_ok(), ok, "{offset}: {result:?}");
        }
    }

    #[test]
    fn value_kinds_are_exclusive_and_required() {
        let mut both = datum(1.0);
        both.values = vec![2.0];
        let err = validate(&put(vec![both]), now(), Caller::User).unwrap_err();
        assert_eq!(err.code(), "InvalidParameterCombination");
        let mut none = datum(1.0);
        none.value = None;
        let err = validate(&put(vec![none]), now(), Caller::User).unwrap_err();
        assert_eq!(err.code(), "InvalidParameterCombination");
        let mut counts = datum(0.0);
        counts.value = None;
        counts.values = vec![1.0, 2.0];
        counts.counts = vec![1.0];
        let err = validate(&put(vec![counts]), now(), Caller::User).unwrap_err();
        assert!(err.to_string().contains("Counts"), "{err}");
    }

    #[test]
    fn statistic_sets_and_values_aggregate() {
        let mut set = datum(0.0);
        set.value = None;
        set.statistic_values = Some(StatisticSet {
            sample_count: 4.0,
            sum: 10.0,
            minimum: 1.0,
            maximum: 4.0,
        });
        let mut values = datum(0.0);
        values.value = None;
        values.values = vec![2.0, 1.0, 2.0];
        values.counts = vec![3.0, 1.0, 0.0];
        let samples = validate(&put(vec![set, values]), now(), Caller::User).unwrap();
        assert_eq!(samples[0].aggregate.count, 4.0);
        assert_eq!(samples[1].aggregate.count, 4.0);
        assert_eq!(samples[1].aggregate.sum, 7.0);
        assert!(Arc::ptr_eq(&samples[0].metric, &samples[1].metric));

        let mut inverted = datum(0.0);
        inverted.value = None;
        inverted.statistic_values = Some(StatisticSet {
            sample_count: 1.0,
            sum: 1.0,
            minimum: 2.0,
            maximum: 1.0,
        });
        assert!(validate(&put(vec![inverted]), now(), Caller::User).is_err());
    }

    #[test]
    fn missing_names_are_missing_parameters() {
        let input = PutMetricDataInput {
            namespace: String::new(),
            metric_data: vec![datum(1.0)],
        };
        assert_eq!(
            validate(&input, now(), Caller::User).unwrap_err().code(),
            "MissingParameter"
        );
        let mut nameless = datum(1.0);
        nameless.metric_name.clear();
        let err = validate(&put(vec![nameless]), now(), Caller::User).unwrap_err();
        assert_eq!(err.code(), "MissingParameter");
        assert_eq!(
            err.to_string(),
            "The parameter MetricData.member.1.MetricName is required."
        );
        let err = validate(&put(vec![]), now(), Caller::User).unwrap_err();
        assert_eq!(err.code(), "MissingParameter");
    }
}
