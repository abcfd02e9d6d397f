//! GetMetricStatistics, GetMetricData and ListMetrics: requests, results,
//! validation, and the bucketing of stored rows into periods.
//!
//! A query reads every stored row of its series in the (rounded) time range,
//! assigns each to the period that contains its timestamp, merges the rows of
//! a period and computes the statistics. CloudWatch's rules apply as
//! documented: `StartTime` rounding, periods of 1, 5, 10, 20, 30 or a
//! multiple of 60 seconds, and old data only for coarse enough periods
//! (`tiers::period_serves`).

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;
use flotilla_model::arn::Scope;

use crate::db::{Db, Row, Snapshot};
use crate::error::{check_count, MetricsError, Result};
use crate::math::{self, Env, Expr, Series, Value};
use crate::series::{check_namespace, MetricId, SeriesId};
use crate::stat::{Aggregate, Stat};
use crate::tiers::{period_serves, round_start};
use crate::types::{Dimension, RecentlyActive, ScanBy, StandardUnit, Statistic, Timestamp};

/// Datapoints GetMetricStatistics returns at most.
pub const MAX_STATISTICS_DATAPOINTS: i64 = 1440;
/// Datapoints one GetMetricData request may cover (across its metric
/// queries), and its default page size.
pub const MAX_METRIC_DATA_DATAPOINTS: i64 = 100_800;
/// Queries one GetMetricData request may hold.
pub const MAX_METRIC_DATA_QUERIES: usize = 500;
/// Metrics per ListMetrics page.
pub const LIST_METRICS_PAGE: usize = 500;

/// `GetMetricStatisticsInput`.
#[derive(Debug, Clone, Default)]
pub struct GetMetricStatisticsInput {
    /// `Namespace`.
    pub namespace: String,
    /// `MetricName`.
    pub metric_name: String,
    /// `Dimensions`: all of the metric's, in any order.
    pub dimensions: Vec<Dimension>,
    /// `StartTime` (inclusive, rounded as CloudWatch rounds it).
    pub start_time: Option<Timestamp>,
    /// `EndTime` (exclusive).
    pub end_time: Option<Timestamp>,
    /// `Period`, seconds.
    pub period: Option<i64>,
    /// `Statistics`.
    pub statistics: Vec<Statistic>,
    /// `ExtendedStatistics` (`p0.0`–`p100`), as the caller spelled them.
    pub extended_statistics: Vec<String>,
    /// `Unit`: only data stored with this unit.
    pub unit: Option<StandardUnit>,
}

/// `GetMetricStatisticsOutput`.
#[derive(Debug, Clone, PartialEq)]
pub struct GetMetricStatisticsOutput {
    /// `Label`: the metric name.
    pub label: String,
    /// `Datapoints`, oldest first; one per period and unit with data.
    pub datapoints: Vec<Datapoint>,
}

/// `Datapoint`.
#[derive(Debug, Clone, PartialEq)]
pub struct Datapoint {
    /// `Timestamp`: the period's start.
    pub timestamp: Timestamp,
    /// `SampleCount`, `Average`, `Sum`, `Minimum`, `Maximum`: those asked for.
    pub sample_count: Option<f64>,
    pub average: Option<f64>,
    pub sum: Option<f64>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    /// `Unit`.
    pub unit: StandardUnit,
    /// `ExtendedStatistics`: requested percentile → value, for those the data
    /// allows (none for negative values or loose statistic sets).
    pub extended_statistics: Vec<(String, f64)>,
}

/// `MetricStat`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricStat {
    /// `Metric.Namespace`.
    pub namespace: String,
    /// `Metric.MetricName`.
    pub metric_name: String,
    /// `Metric.Dimensions`.
    pub dimensions: Vec<Dimension>,
    /// `Period`, seconds.
    pub period: i64,
    /// `Stat`: any statistic name (`Average`, `p99`, `TM(10%:90%)`, …).
    pub stat: String,
    /// `Unit`.
    pub unit: Option<StandardUnit>,
}

/// `MetricDataQuery`.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct MetricDataQuery {
    /// `Id`: starts with a lowercase letter; letters, digits and `_`.
    pub id: String,
    /// `MetricStat` (exclusive with `Expression`).
    pub metric_stat: Option<MetricStat>,
    /// `Expression`: metric math.
    pub expression: Option<String>,
    /// `Label`.
    pub label: Option<String>,
    /// `ReturnData` (default true).
    pub return_data: Option<bool>,
    /// `Period` of an expression, seconds.
    pub period: Option<i64>,
    /// `AccountId`: only the caller's own account is served.
    pub account_id: Option<String>,
}

/// `GetMetricDataInput`.
#[derive(Debug, Clone, Default)]
pub struct GetMetricDataInput {
    /// `MetricDataQueries`.
    pub metric_data_queries: Vec<MetricDataQuery>,
    /// `StartTime`.
    pub start_time: Option<Timestamp>,
    /// `EndTime`.
    pub end_time: Option<Timestamp>,
    /// `NextToken`.
    pub next_token: Option<String>,
    /// `ScanBy` (default `TimestampDescending`).
    pub scan_by: Option<ScanBy>,
    /// `MaxDatapoints` (default 100,800).
    pub max_datapoints: Option<i64>,
}

/// `StatusCode` of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    Complete,
    PartialData,
}

impl StatusCode {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Complete => "Complete",
            StatusCode::PartialData => "PartialData",
        }
    }
}

/// `MessageData`.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageData {
    pub code: String,
    pub value: String,
}

/// `MetricDataResult`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDataResult {
    pub id: String,
    pub label: String,
    pub timestamps: Vec<Timestamp>,
    pub values: Vec<f64>,
    pub status_code: StatusCode,
    pub messages: Vec<MessageData>,
}

/// `GetMetricDataOutput`.
#[derive(Debug, Clone, PartialEq)]
pub struct GetMetricDataOutput {
    pub metric_data_results: Vec<MetricDataResult>,
    pub next_token: Option<String>,
    pub messages: Vec<MessageData>,
}

/// `DimensionFilter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimensionFilter {
    pub name: String,
    /// `Value`: any value when absent.
    pub value: Option<String>,
}

/// `ListMetricsInput`.
#[derive(Debug, Clone, Default)]
pub struct ListMetricsInput {
    pub namespace: Option<String>,
    pub metric_name: Option<String>,
    pub dimensions: Vec<DimensionFilter>,
    pub next_token: Option<String>,
    pub recently_active: Option<RecentlyActive>,
}

/// `ListMetricsOutput`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListMetricsOutput {
    pub metrics: Vec<MetricId>,
    pub next_token: Option<String>,
}

/// Checks a `Period`: at least 1, and 1, 5, 10, 20, 30 or a multiple of 60.
pub(crate) fn check_query_period(period: i64, field: &str) -> Result<()> {
    if period < 1 {
        return Err(MetricsError::invalid(format!(
            "The parameter {field} must be greater than 0."
        )));
    }
    if period % 60 != 0 && ![1, 5, 10, 20, 30].contains(&period) {
        return Err(MetricsError::invalid(format!(
            "The value {period} for parameter {field} is invalid. The period must be 1, 5, 10, 20, 30 or a multiple of 60 seconds."
        )));
    }
    Ok(())
}

/// The periods of a query: rounded start, period and how many there are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Buckets {
    pub start: i64,
    pub period_ms: i64,
    pub count: i64,
}

impl Buckets {
    pub fn new(start: Timestamp, end: Timestamp, period_secs: i64, now: Timestamp) -> Buckets {
        let start = round_start(start, period_secs, now).millis();
        let period_ms = period_secs.saturating_mul(1000).max(1);
        let span = end.millis().saturating_sub(start).max(0);
        let count = span.div_euclid(period_ms) + i64::from(span % period_ms != 0);
        Buckets {
            start,
            period_ms,
            count,
        }
    }

    pub fn end(&self) -> i64 {
        self.start
            .saturating_add(self.count.saturating_mul(self.period_ms))
    }

    pub fn start_of(&self, index: i64) -> Timestamp {
        Timestamp(self.start + index * self.period_ms)
    }
}

/// Merges rows into their periods, per unit (`None` key when `by_unit` is
/// false: all units together). Rows of periods that CloudWatch would not
/// serve at that age, or of another unit than `unit`, are skipped.
pub(crate) fn bucketize(
    rows: &[Row],
    buckets: &Buckets,
    unit: Option<StandardUnit>,
    by_unit: bool,
    now: Timestamp,
) -> BTreeMap<(i64, Option<StandardUnit>), Aggregate> {
    let period_secs = buckets.period_ms / 1000;
    let mut out: BTreeMap<(i64, Option<StandardUnit>), Aggregate> = BTreeMap::new();
    for row in rows {
        if unit.is_some_and(|u| u != row.unit) || row.ts < buckets.start {
            continue;
        }
        let index = (row.ts - buckets.start) / buckets.period_ms;
        if index >= buckets.count || !period_serves(period_secs, buckets.start_of(index), now) {
            continue;
        }
        let key = (index, by_unit.then_some(row.unit));
        out.entry(key)
            .and_modify(|a| a.merge(&row.aggregate))
            .or_insert_with(|| row.aggregate.clone());
    }
    out
}

fn series_rows(
    db: &Db,
    snap: &Snapshot<'_>,
    scope: &Scope,
    metric: &MetricId,
    buckets: &Buckets,
) -> Result<Vec<Row>> {
    let id: Option<SeriesId> = db.shared.catalog.read().get(scope, metric);
    match id {
        Some(id) => snap.rows(id, buckets.start, buckets.end()),
        None => Ok(Vec::new()),
    }
}

fn check_times(start: Option<Timestamp>, end: Option<Timestamp>) -> Result<(Timestamp, Timestamp)> {
    let start = start.ok_or_else(|| MetricsError::missing("StartTime"))?;
    let end = end.ok_or_else(|| MetricsError::missing("EndTime"))?;
    if start >= end {
        return Err(MetricsError::invalid(
            "The parameter StartTime must be less than the parameter EndTime.",
        ));
    }
    Ok((start, end))
}

/// "1,441" — how AWS writes datapoint counts in its messages.
fn thousands(n: i64) -> String {
    let digits = n.to_string();
    let mut groups: Vec<&str> = Vec::new();
    let mut end = digits.len();
    while end > 0 {
        let start = end.saturating_sub(3);
        groups.push(&digits[start..end]);
        end = start;
    }
    groups.reverse();
    groups.join(",")
}

pub(crate) fn get_metric_statistics(
    db: &Db,
    scope: &Scope,
    input: &GetMetricStatisticsInput,
    now: Timestamp,
) -> Result<GetMetricStatisticsOutput> {
    if input.namespace.is_empty() {
        return Err(MetricsError::missing("Namespace"));
    }
    if input.metric_name.is_empty() {
        return Err(MetricsError::missing("MetricName"));
    }
    let metric = MetricId::new(&input.namespace, &input.metric_name, &input.dimensions, "")?;
    let (start, end) = check_times(input.start_time, input.end_time)?;
    let period = input
        .period
        .ok_or_else(|| MetricsError::missing("Period"))?;
    check_query_period(period, "Period")?;
    match (input.statistics.is_empty(), input.extended_statistics.is_empty()) {
        (true, true) => {
            return Err(MetricsError::combination(
                "Must specify either Statistics or ExtendedStatistics.",
            ))
        }
        (false, false) => {
            return Err(MetricsError::combination(
                "The parameters Statistics and ExtendedStatistics are mutually exclusive and you have specified both.",
            ))
        }
        _ => {}
    }
    check_count(&input.statistics, "Statistics", 5)?;
    check_count(&input.extended_statistics, "ExtendedStatistics", 10)?;
    let extended: Vec<(String, Stat)> = input
        .extended_statistics
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Stat::parse_percentile(s, &format!("ExtendedStatistics.member.{}", i + 1))
                .map(|p| (s.clone(), p))
        })
        .collect::<Result<_>>()?;
    let buckets = Buckets::new(start, end, period, now);
    if buckets.count > MAX_STATISTICS_DATAPOINTS {
        return Err(MetricsError::combination(format!(
            "You have requested up to {} datapoints, which exceeds the limit of 1,440. You may reduce the datapoints requested by increasing Period, or decreasing the time range.",
            thousands(buckets.count)
        )));
    }
    let rows = db.read(|snap| series_rows(db, snap, scope, &metric, &buckets))?;
    let merged = bucketize(&rows, &buckets, input.unit, true, now);
    let wants = |s: Statistic| input.statistics.contains(&s);
    let datapoints = merged
        .into_iter()
        .map(|((index, unit), a)| Datapoint {
            timestamp: buckets.start_of(index),
            sample_count: wants(Statistic::SampleCount).then_some(a.count),
            average: wants(Statistic::Average).then(|| a.average()),
            sum: wants(Statistic::Sum).then_some(a.sum),
            minimum: wants(Statistic::Minimum).then_some(a.min),
            maximum: wants(Statistic::Maximum).then_some(a.max),
            unit: unit.unwrap_or(StandardUnit::None),
            extended_statistics: extended
                .iter()
                .filter_map(|(name, stat)| a.stat(stat).map(|v| (name.clone(), v)))
                .collect(),
        })
        .collect();
    Ok(GetMetricStatisticsOutput {
        label: input.metric_name.clone(),
        datapoints,
    })
}

/// A validated query of a GetMetricData request or a math alarm.
#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    Metric {
        metric: MetricId,
        period: i64,
        stat: Stat,
        unit: Option<StandardUnit>,
    },
    Expression {
        expr: Expr,
    },
}

/// Validates `MetricDataQueries` (field names under `field`, e.g.
/// `MetricDataQueries` or `Metrics`) and compiles each.
pub(crate) fn compile_queries(
    scope: &Scope,
    queries: &[MetricDataQuery],
    field: &str,
) -> Result<Vec<Compiled>> {
    if queries.is_empty() {
        return Err(MetricsError::missing(field));
    }
    check_count(queries, field, MAX_METRIC_DATA_QUERIES)?;
    let mut ids = HashSet::new();
    let mut compiled = Vec::with_capacity(queries.len());
    for (i, q) in queries.iter().enumerate() {
        let path = format!("{field}.member.{}", i + 1);
        let valid_id = q.id.starts_with(|c: char| c.is_ascii_lowercase())
            && q.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && q.id.len() <= 255;
        if q.id.is_empty() {
            return Err(MetricsError::missing(&format!("{path}.Id")));
        }
        if !valid_id {
            return Err(MetricsError::invalid(format!(
                "The value {} for parameter {path}.Id is invalid. An id starts with a lowercase letter and holds only letters, digits and underscores.",
                q.id
            )));
        }
        if !ids.insert(q.id.as_str()) {
            return Err(MetricsError::invalid(format!(
                "The value {} for parameter {path}.Id is used by more than one query; ids must be unique.",
                q.id
            )));
        }
        if let Some(account) = &q.account_id {
            if *account != scope.account {
                return Err(MetricsError::invalid(format!(
                    "The value {account} for parameter {path}.AccountId is invalid. Cross-account queries are not supported."
                )));
            }
        }
        if let Some(period) = q.period {
            check_query_period(period, &format!("{path}.Period"))?;
        }
        compiled.push(match (&q.metric_stat, &q.expression) {
            (Some(_), Some(_)) => {
                return Err(MetricsError::combination(format!(
                    "The parameters {path}.MetricStat and {path}.Expression are mutually exclusive and you have specified both."
                )))
            }
            (None, None) => {
                return Err(MetricsError::combination(format!(
                    "One of the parameters {path}.MetricStat or {path}.Expression must be specified."
                )))
            }
            (Some(ms), None) => {
                let stat_path = format!("{path}.MetricStat");
                if ms.namespace.is_empty() {
                    return Err(MetricsError::missing(&format!("{stat_path}.Metric.Namespace")));
                }
                if ms.metric_name.is_empty() {
                    return Err(MetricsError::missing(&format!("{stat_path}.Metric.MetricName")));
                }
                check_namespace(&ms.namespace, &format!("{stat_path}.Metric.Namespace"))?;
                let metric = MetricId::new(&ms.namespace, &ms.metric_name, &ms.dimensions, &format!("{stat_path}.Metric."))?;
                check_query_period(ms.period, &format!("{stat_path}.Period"))?;
                let stat = Stat::parse(&ms.stat, &format!("{stat_path}.Stat"))?;
                Compiled::Metric { metric, period: ms.period, stat, unit: ms.unit }
            }
            (None, Some(text)) => {
                if text.is_empty() || text.chars().count() > 2048 {
                    return Err(MetricsError::invalid(format!(
                        "The parameter {path}.Expression must be 1 to 2048 characters long."
                    )));
                }
                let expr = math::parse(text).map_err(|e| {
                    MetricsError::invalid(format!("Error in expression {} ({path}.Expression): {e}", q.id))
                })?;
                let mut refs = Vec::new();
                expr.references(&mut refs);
                if let Some(unknown) = refs
                    .iter()
                    .find(|r| r.as_str() != "METRICS()" && !queries.iter().any(|q| q.id == **r))
                {
                    return Err(MetricsError::invalid(format!(
                        "Error in expression {} ({path}.Expression): Unknown id '{unknown}'.",
                        q.id
                    )));
                }
                Compiled::Expression { expr }
            }
        });
    }
    Ok(compiled)
}

/// Evaluation order: a query after every query its expression refers to.
pub(crate) fn evaluation_order(
    queries: &[MetricDataQuery],
    compiled: &[Compiled],
) -> Result<Vec<usize>> {
    let index: HashMap<&str, usize> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| (q.id.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = compiled
        .iter()
        .map(|c| match c {
            Compiled::Metric { .. } => Vec::new(),
            Compiled::Expression { expr } => {
                let mut refs = Vec::new();
                expr.references(&mut refs);
                let mut out = Vec::new();
                for r in refs {
                    if r == "METRICS()" {
                        out.extend(
                            compiled
                                .iter()
                                .enumerate()
                                .filter(|(_, c)| matches!(c, Compiled::Metric { .. }))
                                .map(|(i, _)| i),
                        );
                    } else if let Some(i) = index.get(r.as_str()) {
                        out.push(*i);
                    }
                }
                out
            }
        })
        .collect();
    // 0 = unvisited, 1 = in progress, 2 = done.
    let mut state = vec![0u8; compiled.len()];
    let mut order = Vec::with_capacity(compiled.len());
    for root in 0..compiled.len() {
        let mut stack = vec![(root, 0usize)];
        while let Some((node, next)) = stack.pop() {
            if next == 0 {
                match state[node] {
                    2 => continue,
                    1 => {
                        return Err(MetricsError::invalid(format!(
                            "Error in expression {}: circular dependency between queries.",
                            queries[node].id
                        )))
                    }
                    _ => state[node] = 1,
                }
            }
            if let Some(dep) = deps[node].get(next) {
                stack.push((node, next + 1));
                if state[*dep] != 2 {
                    if state[*dep] == 1 {
                        return Err(MetricsError::invalid(format!(
                            "Error in expression {}: circular dependency between queries.",
                            queries[node].id
                        )));
                    }
                    stack.push((*dep, 0));
                }
            } else {
                state[node] = 2;
                order.push(node);
            }
        }
    }
    Ok(order)
}

/// The time range of a set of queries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
    pub now: Timestamp,
    /// Round the start as CloudWatch rounds a request's `StartTime` (false
    /// for alarms, whose ranges are aligned already).
    pub round: bool,
}

/// Results of every query of a request, by index (arrays give several
/// series for one query).
pub(crate) fn run_queries(
    db: &Db,
    scope: &Scope,
    queries: &[MetricDataQuery],
    compiled: &[Compiled],
    window: Window,
) -> Result<Vec<Vec<Series>>> {
    db.read(|snap| run_queries_in(db, snap, scope, queries, compiled, window))
}

/// [`run_queries`] within a read snapshot the caller holds.
pub(crate) fn run_queries_in(
    db: &Db,
    snap: &Snapshot<'_>,
    scope: &Scope,
    queries: &[MetricDataQuery],
    compiled: &[Compiled],
    window: Window,
) -> Result<Vec<Vec<Series>>> {
    let Window {
        start,
        end,
        now,
        round,
    } = window;
    let order = evaluation_order(queries, compiled)?;
    let mut results: Vec<Option<Value>> = vec![None; compiled.len()];
    let label_of = |i: usize| -> String {
        queries[i]
            .label
            .clone()
            .unwrap_or_else(|| match &compiled[i] {
                Compiled::Metric { metric, .. } => metric.metric_name.clone(),
                Compiled::Expression { .. } => queries[i].id.clone(),
            })
    };
    {
        for &i in &order {
            let value = match &compiled[i] {
                Compiled::Metric {
                    metric,
                    period,
                    stat,
                    unit,
                } => {
                    let mut buckets = Buckets::new(start, end, *period, now);
                    if !round {
                        buckets.start = start.millis();
                    }
                    let rows = series_rows(db, snap, scope, metric, &buckets)?;
                    let points = bucketize(&rows, &buckets, *unit, false, now)
                        .into_iter()
                        .filter_map(|((index, _), a)| {
                            a.stat(stat).map(|v| (buckets.start_of(index).millis(), v))
                        })
                        .collect();
                    Value::Series(Series {
                        label: label_of(i),
                        points,
                    })
                }
                Compiled::Expression { expr } => {
                    let env = QueryEnv {
                        queries,
                        compiled,
                        results: &results,
                        label_of: &label_of,
                    };
                    let value = math::eval(expr, &env).map_err(|e| {
                        MetricsError::invalid(format!("Error in expression {}: {e}", queries[i].id))
                    })?;
                    match value {
                        Value::Series(mut s) => {
                            s.label = label_of(i);
                            Value::Series(s)
                        }
                        Value::Scalar(v) => {
                            // A number becomes a line over every metric timestamp.
                            let mut points = BTreeMap::new();
                            for s in env.metrics(None) {
                                for ts in s.points.keys() {
                                    points.insert(*ts, v);
                                }
                            }
                            Value::Series(Series {
                                label: label_of(i),
                                points,
                            })
                        }
                        Value::Array(members) => Value::Array(
                            members
                                .into_iter()
                                .map(|mut s| {
                                    if let Some(label) = &queries[i].label {
                                        s.label = format!("{label} {}", s.label);
                                    }
                                    s
                                })
                                .collect(),
                        ),
                    }
                }
            };
            results[i] = Some(value);
        }
    }
    Ok(results
        .into_iter()
        .map(|v| match v {
            Some(Value::Series(s)) => vec![s],
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        })
        .collect())
}

struct QueryEnv<'a, F: Fn(usize) -> String> {
    queries: &'a [MetricDataQuery],
    compiled: &'a [Compiled],
    results: &'a [Option<Value>],
    label_of: &'a F,
}

impl<F: Fn(usize) -> String> Env for QueryEnv<'_, F> {
    fn get(&self, id: &str) -> Option<Value> {
        let i = self.queries.iter().position(|q| q.id == id)?;
        self.results[i].clone()
    }

    fn metrics(&self, filter: Option<&str>) -> Vec<Series> {
        self.compiled
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c, Compiled::Metric { .. }))
            .filter(|(i, _)| filter.is_none_or(|f| (self.label_of)(*i).contains(f)))
            .filter_map(|(i, _)| match &self.results[i] {
                Some(Value::Series(s)) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }
}

pub(crate) fn get_metric_data(
    db: &Db,
    scope: &Scope,
    input: &GetMetricDataInput,
    now: Timestamp,
) -> Result<GetMetricDataOutput> {
    let (start, end) = check_times(input.start_time, input.end_time)?;
    let compiled = compile_queries(scope, &input.metric_data_queries, "MetricDataQueries")?;
    let mut total = 0i64;
    for c in &compiled {
        if let Compiled::Metric { period, .. } = c {
            total = total.saturating_add(Buckets::new(start, end, *period, now).count);
        }
    }
    if total > MAX_METRIC_DATA_DATAPOINTS {
        return Err(MetricsError::combination(format!(
            "You have requested up to {} datapoints, which exceeds the limit of 100,800. You may reduce the datapoints requested by increasing Period, or decreasing the time range.",
            thousands(total)
        )));
    }
    let page = match input.max_datapoints {
        None => MAX_METRIC_DATA_DATAPOINTS,
        Some(n) if n >= 1 => n,
        Some(n) => {
            return Err(MetricsError::invalid(format!(
                "The value {n} for parameter MaxDatapoints is invalid. It must be at least 1."
            )))
        }
    };
    let fingerprint = fingerprint(input, start, end);
    let offset = match &input.next_token {
        None => 0,
        Some(token) => decode_gmd_token(token, fingerprint)?,
    };
    let window = Window {
        start,
        end,
        now,
        round: true,
    };
    let results = run_queries(db, scope, &input.metric_data_queries, &compiled, window)?;
    let descending =
        input.scan_by.unwrap_or(ScanBy::TimestampDescending) == ScanBy::TimestampDescending;
    let mut out = Vec::new();
    let mut skip = offset;
    let mut room = page;
    let mut more = false;
    for (i, series_list) in results.into_iter().enumerate() {
        let query = &input.metric_data_queries[i];
        if !query.return_data.unwrap_or(true) {
            continue;
        }
        for series in series_list {
            let mut points: Vec<(i64, f64)> = series.points.into_iter().collect();
            if descending {
                points.reverse();
            }
            let n = points.len() as i64;
            let skipped = skip.min(n);
            skip -= skipped;
            let available = n - skipped;
            if skipped == n && n > 0 {
                continue; // returned in full on an earlier page
            }
            let take = available.min(room);
            room -= take;
            let slice = &points[skipped as usize..(skipped + take) as usize];
            let complete = take == available;
            if !complete {
                more = true;
            }
            out.push(MetricDataResult {
                id: query.id.clone(),
                label: series.label,
                timestamps: slice.iter().map(|p| Timestamp(p.0)).collect(),
                values: slice.iter().map(|p| p.1).collect(),
                status_code: if complete {
                    StatusCode::Complete
                } else {
                    StatusCode::PartialData
                },
                messages: Vec::new(),
            });
        }
    }
    let next_token = more.then(|| encode_gmd_token(fingerprint, offset + page));
    Ok(GetMetricDataOutput {
        metric_data_results: out,
        next_token,
        messages: Vec::new(),
    })
}

/// FNV-1a of what defines a GetMetricData result set, so a token is only
/// accepted for the request that produced it.
fn fingerprint(input: &GetMetricDataInput, start: Timestamp, end: Timestamp) -> u64 {
    let text = format!(
        "{:?}|{}|{}|{:?}|{:?}",
        input.metric_data_queries,
        start.millis(),
        end.millis(),
        input.scan_by,
        input.max_datapoints
    );
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn encode_gmd_token(fingerprint: u64, offset: i64) -> String {
    encode_token(&format!("gmd:{fingerprint:016x}:{offset}"))
}

fn decode_gmd_token(token: &str, fingerprint: u64) -> Result<i64> {
    let text = decode_token(token)?;
    let mut parts = text.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("gmd"), Some(fp), Some(offset), None) if fp == format!("{fingerprint:016x}") => {
            offset
                .parse::<i64>()
                .ok()
                .filter(|o| *o >= 0)
                .ok_or_else(MetricsError::bad_token)
        }
        _ => Err(MetricsError::bad_token()),
    }
}

/// Opaque tokens: URL-safe base64 of a small text.
pub(crate) fn encode_token(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

pub(crate) fn decode_token(token: &str) -> Result<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| MetricsError::bad_token())?;
    String::from_utf8(bytes).map_err(|_| MetricsError::bad_token())
}

pub(crate) fn list_metrics(
    db: &Db,
    scope: &Scope,
    input: &ListMetricsInput,
    now: Timestamp,
) -> Result<ListMetricsOutput> {
    if let Some(ns) = &input.namespace {
        check_namespace(ns, "Namespace")?;
    }
    if let Some(name) = &input.metric_name {
        crate::error::check_len(name, "MetricName", 1, 255)?;
    }
    check_count(&input.dimensions, "Dimensions", 10)?;
    for (i, f) in input.dimensions.iter().enumerate() {
        crate::error::check_len(
            &f.name,
            &format!("Dimensions.member.{}.Name", i + 1),
            1,
            255,
        )?;
        if let Some(v) = &f.value {
            crate::error::check_len(v, &format!("Dimensions.member.{}.Value", i + 1), 1, 1024)?;
        }
    }
    let after = match &input.next_token {
        None => None,
        Some(token) => {
            let text = decode_token(token)?;
            let key = text
                .strip_prefix("lm:")
                .ok_or_else(MetricsError::bad_token)?;
            let (ns, rest) = key
                .split_once('\u{0}')
                .ok_or_else(MetricsError::bad_token)?;
            let (name, dims) = rest
                .split_once('\u{0}')
                .ok_or_else(MetricsError::bad_token)?;
            Some(MetricId::from_stored(
                ns.to_string(),
                name.to_string(),
                dims,
            ))
        }
    };
    // Not reported for two weeks: not listed (CloudWatch's horizon).
    let horizon = now.minus_secs(14 * 86_400).millis();
    let recent = now.minus_secs(3 * 3600).millis();
    let catalog = db.shared.catalog.read();
    let mut metrics = Vec::new();
    let mut next_token = None;
    for (metric, entry) in catalog.range(scope, after.as_ref()) {
        if input
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != metric.namespace)
            || input
                .metric_name
                .as_ref()
                .is_some_and(|n| *n != metric.metric_name)
            || entry.last_ts < horizon
            || (input.recently_active.is_some() && entry.last_ts < recent)
            || !input.dimensions.iter().all(|f| {
                metric
                    .dimensions
                    .iter()
                    .any(|d| d.name == f.name && f.value.as_ref().is_none_or(|v| *v == d.value))
            })
        {
            continue;
        }
        if metrics.len() == LIST_METRICS_PAGE {
            let last: &MetricId = &metrics[LIST_METRICS_PAGE - 1];
            next_token = Some(encode_token(&format!(
                "lm:{}\u{0}{}\u{0}{}",
                last.namespace,
                last.metric_name,
                last.dims_text()
            )));
            break;
        }
        metrics.push(MetricId::clone(metric));
    }
    Ok(ListMetricsOutput {
        metrics,
        next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts: i64, unit: StandardUnit, v: f64) -> Row {
        Row {
            ts,
            unit,
            aggregate: Aggregate::single(v),
        }
    }

    #[test]
    fn buckets_count_partial_periods() {
        let now = Timestamp::from_secs(1_000_000);
        // 999,010 rounds down to the minute 999,000; 1,000 s are 16 full
        // minutes and a partial one.
        let b = Buckets::new(Timestamp::from_secs(999_010), now, 60, now);
        assert_eq!(b.start, 999_000_000);
        assert_eq!(b.count, 17);
        assert_eq!(b.end(), 1_000_020_000);
    }

    #[test]
    fn rows_merge_into_their_periods_per_unit() {
        let now = Timestamp::from_secs(10_000);
        let buckets = Buckets {
            start: 9_000_000,
            period_ms: 60_000,
            count: 3,
        };
        let rows = [
            row(9_000_000, StandardUnit::Percent, 1.0),
            row(9_030_000, StandardUnit::Percent, 3.0),
            row(9_030_000, StandardUnit::Count, 5.0),
            row(9_120_000, StandardUnit::Percent, 7.0),
            row(9_180_000, StandardUnit::Percent, 9.0), // past the end
        ];
        let by_unit = bucketize(&rows, &buckets, None, true, now);
        assert_eq!(by_unit.len(), 3);
        assert_eq!(by_unit[&(0, Some(StandardUnit::Percent))].sum, 4.0);
        assert_eq!(by_unit[&(0, Some(StandardUnit::Count))].sum, 5.0);
        let merged = bucketize(&rows, &buckets, None, false, now);
        assert_eq!(merged[&(0, None)].count, 3.0);
        let filtered = bucketize(&rows, &buckets, Some(StandardUnit::Count), false, now);
        assert_eq!(filtered.len(), 1);
    }

    #[test]
    fn old_rows_are_not_served_at_fine_periods() {
        let now = Timestamp::from_secs(100_000);
        let start = now.minus_secs(5 * 3600).millis();
        let buckets = Buckets {
            start,
            period_ms: 10_000,
            count: 3,
        };
        let rows = [row(start, StandardUnit::None, 1.0)];
        assert!(bucketize(&rows, &buckets, None, false, now).is_empty());
        let minute = Buckets {
            start,
            period_ms: 60_000,
            count: 3,
        };
        assert_eq!(bucketize(&rows, &minute, None, false, now).len(), 1);
    }

    #[test]
    fn periods_are_checked() {
        for ok in [1, 5, 10, 20, 30, 60, 120, 86_400] {
            assert!(check_query_period(ok, "Period").is_ok(), "{ok}");
        }
        for bad in [0, -60, 7, 45, 90] {
            let err = check_query_period(bad, "Period").unwrap_err();
            assert!(err.to_string().contains("Period"), "{bad}: {err}");
        }
    }

    #[test]
    fn counts_read_like_aws() {
        assert_eq!(thousands(1441), "1,441");
        assert_eq!(thousands(16666), "16,666");
        assert_eq!(thousands(100800), "100,800");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn evaluation_order_follows_references_and_finds_cycles() {
        let q = |id: &str, expr: Option<&str>| MetricDataQuery {
            id: id.into(),
            expression: expr.map(str::to_string),
            metric_stat: expr.is_none().then(|| MetricStat {
                namespace: "App".into(),
                metric_name: "M".into(),
                dimensions: vec![],
                period: 60,
                stat: "Sum".into(),
                unit: None,
            }),
            ..Default::default()
        };
        let scope = Scope::new("1", "r");
        let queries = vec![
            q("e2", Some("e1 * 2")),
            q("e1", Some("SUM(METRICS())")),
            q("m1", None),
        ];
        let compiled = compile_queries(&scope, &queries, "MetricDataQueries").unwrap();
        assert_eq!(
            evaluation_order(&queries, &compiled).unwrap(),
            vec![2, 1, 0]
        );
        let cyclic = vec![q("a", Some("b + 1")), q("b", Some("a + 1"))];
        let compiled = compile_queries(&scope, &cyclic, "MetricDataQueries").unwrap();
        assert!(evaluation_order(&cyclic, &compiled)
            .unwrap_err()
            .to_string()
            .contains("circular"));
        let unknown = vec![q("a", Some("zz + 1"))];
        assert!(compile_queries(&scope, &unknown, "MetricDataQueries").is_err());
        let dup = vec![q("m1", None), q("m1", None)];
        assert!(compile_queries(&scope, &dup, "MetricDataQueries").is_err());
        let bad_id = vec![q("M1", None)];
        assert!(compile_queries(&scope, &bad_id, "MetricDataQueries").is_err());
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let token = encode_gmd_token(42, 100);
        assert_eq!(decode_gmd_token(&token, 42).unwrap(), 100);
        assert!(decode_gmd_token(&token, 43).is_err());
        assert!(decode_gmd_token("!!!", 42).is_err());
        assert_eq!(
            decode_gmd_token("bm9wZQ", 42).unwrap_err().code(),
            "InvalidNextToken"
        );
    }
}
