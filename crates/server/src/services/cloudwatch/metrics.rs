//! PutMetricData, GetMetricStatistics, GetMetricData, ListMetrics.

use flotilla_metrics as m;
use flotilla_model::wire::cloudwatch as cw;

use super::{api_error, blocking, convert, decode, now, timestamp};
use crate::api::{Call, Env, Reply};
use crate::error::ApiResult;

/// PutMetricData. The metrics of `EntityMetricData` entries are stored like
/// the others (entities mean nothing in Flotilla). Durable before the
/// answer.
pub async fn put_metric_data(env: &Env, call: &Call<'_>) -> ApiResult<Reply> {
    let req: cw::PutMetricDataInput = decode(call)?;
    let mut data: Vec<(String, cw::MetricDatum)> = req
        .metric_data
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, d)| (format!("MetricData.member.{}", i + 1), d))
        .collect();
    for (i, e) in req.entity_metric_data.into_iter().flatten().enumerate() {
        for (j, d) in e.metric_data.into_iter().flatten().enumerate() {
            data.push((
                format!(
                    "EntityMetricData.member.{}.MetricData.member.{}",
                    i + 1,
                    j + 1
                ),
                d,
            ));
        }
    }
    let metric_data = data
        .into_iter()
        .map(|(at, d)| -> ApiResult<m::MetricDatum> {
            Ok(m::MetricDatum {
                metric_name: d.metric_name.unwrap_or_default(),
                dimensions: convert::dimensions(d.dimensions),
                timestamp: timestamp(d.timestamp, &format!("{at}.Timestamp"))?,
                value: d.value,
                statistic_values: d.statistic_values.map(|s| m::StatisticSet {
                    sample_count: s.sample_count.unwrap_or_default(),
                    sum: s.sum.unwrap_or_default(),
                    minimum: s.minimum.unwrap_or_default(),
                    maximum: s.maximum.unwrap_or_default(),
                }),
                values: d.values.unwrap_or_default(),
                counts: d.counts.unwrap_or_default(),
                unit: convert::unit(d.unit, &format!("{at}.Unit"))?,
                storage_resolution: d.storage_resolution,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let input = m::PutMetricDataInput {
        namespace: req.namespace.unwrap_or_default(),
        metric_data,
    };
    env.metrics
        .put_metric_data(&call.ctx.scope, &input, now(call))
        .await
        .map_err(api_error)?;
    call.reply(&serde_json::json!({}))
}

/// GetMetricStatistics.
pub async fn get_metric_statistics(env: &Env, call: &Call<'_>) -> ApiResult<Reply> {
    let req: cw::GetMetricStatisticsInput = decode(call)?;
    let statistics = req
        .statistics
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, s)| convert::statistic(s, &format!("Statistics.member.{}", i + 1)))
        .collect::<ApiResult<Vec<_>>>()?;
    let input = m::GetMetricStatisticsInput {
        namespace: req.namespace.unwrap_or_default(),
        metric_name: req.metric_name.unwrap_or_default(),
        dimensions: convert::dimensions(req.dimensions),
        start_time: timestamp(req.start_time, "StartTime")?,
        end_time: timestamp(req.end_time, "EndTime")?,
        period: req.period.map(i64::from),
        statistics,
        extended_statistics: req.extended_statistics.unwrap_or_default(),
        unit: convert::unit(req.unit, "Unit")?,
    };
    let (store, scope, at) = (env.metrics.clone(), call.ctx.scope.clone(), now(call));
    let out = blocking(move || store.get_metric_statistics(&scope, &input, at)).await?;
    call.reply(&cw::GetMetricStatisticsOutput {
        label: Some(out.label),
        datapoints: Some(
            out.datapoints
                .into_iter()
                .map(|d| cw::Datapoint {
                    timestamp: Some(d.timestamp.as_secs_f64()),
                    sample_count: d.sample_count,
                    average: d.average,
                    sum: d.sum,
                    minimum: d.minimum,
                    maximum: d.maximum,
                    unit: convert::wire_unit(d.unit),
                    extended_statistics: (!d.extended_statistics.is_empty())
                        .then(|| d.extended_statistics.into_iter().collect()),
                })
                .collect(),
        ),
    })
}

/// GetMetricData: MetricStat queries and metric math. `LabelOptions`
/// (a time zone for dynamic labels) is accepted and has no effect.
pub async fn get_metric_data(env: &Env, call: &Call<'_>) -> ApiResult<Reply> {
    let req: cw::GetMetricDataInput = decode(call)?;
    let input = m::GetMetricDataInput {
        metric_data_queries: convert::queries(req.metric_data_queries, "MetricDataQueries")?,
        start_time: timestamp(req.start_time, "StartTime")?,
        end_time: timestamp(req.end_time, "EndTime")?,
        next_token: req.next_token,
        scan_by: req
            .scan_by
            .map(|s| m::ScanBy::parse(s.as_str(), "ScanBy"))
            .transpose()
            .map_err(api_error)?,
        max_datapoints: req.max_datapoints.map(i64::from),
    };
    let (store, scope, at) = (env.metrics.clone(), call.ctx.scope.clone(), now(call));
    let out = blocking(move || store.get_metric_data(&scope, &input, at)).await?;
    let messages = |list: Vec<m::MessageData>| {
        list.into_iter()
            .map(|msg| cw::MessageData {
                code: Some(msg.code),
                value: Some(msg.value),
            })
            .collect::<Vec<_>>()
    };
    call.reply(&cw::GetMetricDataOutput {
        metric_data_results: Some(
            out.metric_data_results
                .into_iter()
                .map(|r| cw::MetricDataResult {
                    id: Some(r.id),
                    label: Some(r.label),
                    timestamps: Some(r.timestamps.iter().map(|t| t.as_secs_f64()).collect()),
                    values: Some(r.values),
                    status_code: cw::StatusCode::parse(r.status_code.as_str()),
                    messages: (!r.messages.is_empty()).then(|| messages(r.messages)),
                })
                .collect(),
        ),
        next_token: out.next_token,
        messages: Some(messages(out.messages)),
    })
}

/// ListMetrics. Flotilla has no cross-account observability:
/// `IncludeLinkedAccounts` lists the caller's own metrics, and
/// `OwningAccounts` is not returned.
pub async fn list_metrics(env: &Env, call: &Call<'_>) -> ApiResult<Reply> {
    let req: cw::ListMetricsInput = decode(call)?;
    let input = m::ListMetricsInput {
        namespace: req.namespace,
        metric_name: req.metric_name,
        dimensions: req
            .dimensions
            .unwrap_or_default()
            .into_iter()
            .map(|f| m::DimensionFilter {
                name: f.name.unwrap_or_default(),
                value: f.value,
            })
            .collect(),
        next_token: req.next_token,
        recently_active: req
            .recently_active
            .map(|r| m::RecentlyActive::parse(r.as_str(), "RecentlyActive"))
            .transpose()
            .map_err(api_error)?,
    };
    let (store, scope, at) = (env.metrics.clone(), call.ctx.scope.clone(), now(call));
    let out = blocking(move || store.list_metrics(&scope, &input, at)).await?;
    call.reply(&cw::ListMetricsOutput {
        metrics: Some(
            out.metrics
                .into_iter()
                .map(|id| cw::Metric {
                    namespace: Some(id.namespace),
                    metric_name: Some(id.metric_name),
                    dimensions: Some(convert::wire_dimensions(&id.dimensions)),
                })
                .collect(),
        ),
        next_token: out.next_token,
        owning_accounts: None,
    })
}
