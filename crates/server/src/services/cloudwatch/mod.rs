//! CloudWatch (metrics and metric alarms): the wire side of
//! `flotilla-metrics`. Each handler turns the generated request type into
//! the engine's input, calls one `MetricStore` method, and turns the result
//! back; the engine owns every rule, limit and message.
//!
//! The model lists three protocols and the front speaks them all from the
//! generated schema: Smithy RPC v2 CBOR (recent SDKs), AWS JSON 1.0 with
//! `x-amzn-query-mode` (the AWS CLI v1 and botocore), and Query (older
//! SDKs). CloudWatch is `awsQueryCompatible`: errors carry the Query code
//! (`InvalidParameterValue`) beside the shape name on every protocol, which
//! the front does from the codes the handlers return here.
//!
//! - [`metrics`]: PutMetricData, GetMetricStatistics, GetMetricData,
//!   ListMetrics;
//! - [`alarms`]: PutMetricAlarm and the other alarm operations, tags.
//!
//! Reads are bounded SQLite queries: they run on tokio's blocking pool, so a
//! large GetMetricData never holds an API thread.

use flotilla_metrics::{MetricsError, Timestamp};
use flotilla_model::wire::cloudwatch::{self as cw, Operation};
use flotilla_model::Shape;
use serde::de::DeserializeOwned;

use crate::api::{Call, Env, Input, Reply, ServiceDef};
use crate::error::{ApiError, ApiResult};

mod alarms;
mod convert;
mod metrics;

/// Amazon CloudWatch, signed as `monitoring`.
pub static SERVICE: ServiceDef = ServiceDef {
    schema: &cw::SERVICE,
    dispatch: |env, call| Box::pin(dispatch(env, call)),
    // PutMetricData takes up to 1 MB (its documented request limit), and
    // SDKs may gzip it: the front inflates within this bound.
    max_body: 1024 * 1024,
    body_too_large: "InvalidParameterValue",
};

async fn dispatch(env: &Env, call: Call<'_>) -> ApiResult<Reply> {
    let Some(op) = Operation::from_name(call.name()) else {
        return Err(call.unsupported("CloudWatch"));
    };
    match op {
        Operation::PutMetricData => metrics::put_metric_data(env, &call).await,
        Operation::GetMetricStatistics => metrics::get_metric_statistics(env, &call).await,
        Operation::GetMetricData => metrics::get_metric_data(env, &call).await,
        Operation::ListMetrics => metrics::list_metrics(env, &call).await,
        Operation::PutMetricAlarm => alarms::put_metric_alarm(env, &call).await,
        Operation::DescribeAlarms => alarms::describe_alarms(env, &call).await,
        Operation::DescribeAlarmsForMetric => alarms::describe_alarms_for_metric(env, &call).await,
        Operation::DeleteAlarms => alarms::delete_alarms(env, &call).await,
        Operation::SetAlarmState => alarms::set_alarm_state(env, &call).await,
        Operation::EnableAlarmActions => alarms::set_actions_enabled(env, &call, true).await,
        Operation::DisableAlarmActions => alarms::set_actions_enabled(env, &call, false).await,
        Operation::DescribeAlarmHistory => alarms::describe_alarm_history(env, &call).await,
        Operation::TagResource => alarms::tag_resource(env, &call).await,
        Operation::UntagResource => alarms::untag_resource(env, &call).await,
        Operation::ListTagsForResource => alarms::list_tags_for_resource(env, &call).await,
    }
}

/// The engine's error as the model's: the Query code, which the front maps
/// to the shape, status and fault of every protocol.
pub(crate) fn api_error(e: MetricsError) -> ApiError {
    if let MetricsError::Internal(detail) = &e {
        tracing::error!(error = %detail, "metric store failure");
        return ApiError::new(
            "InternalServiceError",
            "The metric store failed; nothing of this request was acknowledged.",
        );
    }
    ApiError::new(e.code(), e.to_string())
}

/// Decodes the request and checks the model's rules, with CloudWatch's
/// errors: a missing required member is `MissingParameter`, any other
/// broken rule (a length, a count, a value outside an enum) is
/// `InvalidParameterValue`, each naming the member as the Query protocol
/// spells it (`MetricData.member.1.MetricName`).
pub(crate) fn decode<T: DeserializeOwned + Shape>(call: &Call<'_>) -> ApiResult<T> {
    let value: T = match &call.input {
        Input::Json(body) => {
            let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
                b"{}"
            } else {
                body
            };
            let de = &mut serde_json::Deserializer::from_slice(body);
            let value = serde_path_to_error::deserialize(&mut *de).map_err(read_error)?;
            de.end().map_err(|e| {
                ApiError::new(
                    "SerializationException",
                    format!("Could not read the request body: {e}"),
                )
            })?;
            value
        }
        Input::Value(v) => serde_path_to_error::deserialize(v).map_err(read_error)?,
    };
    value.validate().map_err(|v| {
        let field = query_path(&v.field);
        if v.rule == "is required" {
            ApiError::new(
                "MissingParameter",
                format!("The parameter {field} is required."),
            )
        } else {
            ApiError::new(
                "InvalidParameterValue",
                format!("The parameter {field} {}.", v.rule),
            )
        }
    })?;
    Ok(value)
}

/// A value serde could not read. A string outside a member's enum is a bad
/// value (`InvalidParameterValue`, as CloudWatch answers it); anything else
/// is a body that is not the shape at all.
fn read_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> ApiError {
    let field = query_path(&e.path().to_string());
    let inner = e.into_inner().to_string();
    if let Some(rest) = inner.strip_prefix("unknown variant ") {
        let given = rest.split(',').next().unwrap_or_default().trim_matches('`');
        let allowed = rest
            .split_once("expected ")
            .map_or("", |(_, a)| a)
            .replace('`', "");
        return ApiError::new(
            "InvalidParameterValue",
            format!(
                "The value {given} for parameter {field} is invalid. Valid values are: {allowed}."
            ),
        );
    }
    ApiError::new(
        "SerializationException",
        if field.is_empty() || field == "." {
            format!("Could not read the request body: {inner}")
        } else {
            format!("Could not read {field}: {inner}")
        },
    )
}

/// `MetricData[0].Dimensions[2].Name` → `MetricData.member.1.Dimensions.member.3.Name`.
fn query_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 16);
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        let index = &rest[open + 1..open + close];
        match index.parse::<usize>() {
            Ok(i) => out.push_str(&format!(".member.{}", i + 1)),
            Err(_) => out.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// A wire timestamp (epoch seconds) as the engine's, or the error naming
/// `field`.
pub(crate) fn timestamp(value: Option<f64>, field: &str) -> ApiResult<Option<Timestamp>> {
    value
        .map(|s| {
            Timestamp::from_secs_f64(s).ok_or_else(|| {
                ApiError::new(
                    "InvalidParameterValue",
                    format!("The value for parameter {field} is invalid: it must be a date between 1970 and 9999."),
                )
            })
        })
        .transpose()
}

/// The time of the call, as the engine takes it.
pub(crate) fn now(call: &Call<'_>) -> Timestamp {
    Timestamp::from_secs_f64(call.ctx.now).unwrap_or_else(Timestamp::now)
}

/// Runs a read on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MetricsError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new("InternalServiceError", format!("the read failed: {e}")))?
        .map_err(api_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_spelled_as_query_members() {
        assert_eq!(
            query_path("MetricData[0].Dimensions[2].Name"),
            "MetricData.member.1.Dimensions.member.3.Name"
        );
        assert_eq!(query_path("AlarmName"), "AlarmName");
        assert_eq!(query_path("Tags[9]"), "Tags.member.10");
    }
}
