//! CloudWatch metrics and metric alarms for Flotilla: the engine beneath the
//! CloudWatch API handlers.
//!
//! This crate owns
//! - the **metric store**: datapoints by namespace, metric name and
//!   dimension set, written durably (group commit on a writer thread, WAL
//!   fsynced before a write returns) into SQLite, rolled up and expired as
//!   CloudWatch does (1 s data for 3 hours, 60 s for 15 days, 5 min for 63
//!   days, 1 hour for 455 days);
//! - the **queries**: GetMetricStatistics, GetMetricData (with metric math)
//!   and ListMetrics, with CloudWatch's statistics, percentiles and limits;
//! - the **alarms**: PutMetricAlarm and the other alarm operations, the pure
//!   evaluator that words state reasons as CloudWatch does, the schedule of
//!   evaluations, alarm history, and the [`AlarmTransition`]s the server
//!   delivers to auto scaling policies and deployments.
//!
//! It knows no HTTP and no wire protocol: requests and results are plain
//! Rust types whose fields mirror the model's member names
//! (`shared/reference/aws-models/cloudwatch`), and every error is a
//! [`MetricsError`] that maps 1:1 to the model's error shapes.
//!
//! # Where to start reading
//!
//! - [`store::MetricStore`]: one method per API operation, and the
//!   evaluation loop the server drives (`next_evaluation`, `evaluate_due`,
//!   `maintain`);
//! - [`alarm::evaluate`]: how an alarm decides its state (pure);
//! - `db`: the durable layer (SQLite, group commit, partitions) and `tiers`
//!   (resolutions, retention, roll-up);
//! - [`stat`]: aggregates and statistics; `query`: bucketing into periods;
//!   `math`: metric math.
//!
//! # Time
//!
//! Nothing here reads the clock: every operation takes `now`. The only
//! exception is [`Timestamp::now`], for binaries.

pub mod alarm;
mod db;
pub mod error;
mod ingest;
mod math;
mod query;
mod series;
pub mod stat;
pub mod store;
mod tiers;
pub mod types;

pub use alarm::{
    ActionOutcome, AlarmHistoryItem, AlarmTransition, DescribeAlarmHistoryInput,
    DescribeAlarmHistoryOutput, DescribeAlarmsForMetricInput, DescribeAlarmsInput,
    DescribeAlarmsOutput, MetricAlarm, PutMetricAlarmInput, SetAlarmStateInput,
};
pub use db::MaintenanceStep;
pub use error::MetricsError;
pub use ingest::{
    MetricDatum, PutMetricDataInput, StatisticSet, MAX_AGE_SECS, MAX_AHEAD_SECS,
    MAX_METRICS_PER_CALL, MAX_VALUES_PER_DATUM,
};
pub use query::{
    Datapoint, DimensionFilter, GetMetricDataInput, GetMetricDataOutput, GetMetricStatisticsInput,
    GetMetricStatisticsOutput, ListMetricsInput, ListMetricsOutput, MessageData, MetricDataQuery,
    MetricDataResult, MetricStat, StatusCode,
};
pub use series::MetricId;
pub use store::{MaintenanceReport, MetricStore, MetricStoreOptions};
pub use types::{
    AlarmType, ComparisonOperator, Dimension, HistoryItemType, LowSampleCountPercentile,
    RecentlyActive, ScanBy, StandardUnit, StateValue, Statistic, Tag, Timestamp, TreatMissingData,
};
