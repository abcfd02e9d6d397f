//! The usage controller: turns the container stats agents sent since the
//! last tick into `AWS/ECS` `CPUUtilization` and `MemoryUtilization`
//! datapoints (see `crate::core::usage` for the definition).
//!
//! Every [`FLUSH_EVERY`] (halfway through each 10 s of the wall clock) it
//! takes what the gateway gathered, reads each cluster's tasks once, and
//! writes one datapoint per metric for the cluster (`ClusterName`) and for
//! each service with reporting tasks (`ClusterName`, `ServiceName`),
//! timestamped at the flush. They are stored at high resolution
//! (`StorageResolution` 1): 1-minute statistics (what ECS publishes)
//! aggregate them, and high-resolution alarms (auto
//! scaling's target tracking on 10 s periods) see each of them.

use std::sync::Arc;
use std::time::Duration;

use flotilla_metrics::{Dimension, MetricDatum, PutMetricDataInput, StandardUnit, Timestamp};

use crate::api::Env;
use crate::core::usage::{shapes, utilization, Usage};

/// How often usage is written: twice the agents' default sampling rate
/// (5 s), so each flush normally holds every running task's sample, and a
/// 10 s high-resolution alarm period holds one datapoint.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);

/// Datapoints written since the process started (`GET /metrics`).
pub static WRITTEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The namespace ECS publishes in.
pub const NAMESPACE: &str = "AWS/ECS";

/// Runs until `shutdown` resolves.
pub async fn run(
    env: Arc<Env>,
    usage: Arc<Usage>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let work = async {
        loop {
            tokio::time::sleep(until_next_flush(Timestamp::now())).await;
            flush(&env, &usage, Timestamp::now()).await;
        }
    };
    tokio::select! {
        _ = work => {}
        _ = shutdown => {}
    }
}

/// Flushes happen halfway through each [`FLUSH_EVERY`] period of the wall
/// clock (at :05, :15, …), so every 10 s alarm period holds exactly one
/// datapoint however the flushes jitter, and the evaluation at the period's
/// end finds it written 5 s before.
fn until_next_flush(now: Timestamp) -> Duration {
    let every = FLUSH_EVERY.as_millis() as i64;
    let phase = every / 2;
    let next = (now.millis() - phase).div_euclid(every) * every + every + phase;
    Duration::from_millis(u64::try_from(next - now.millis()).unwrap_or(0))
}

/// Writes the datapoints of everything gathered since the last flush.
pub async fn flush(env: &Env, usage: &Usage, now: Timestamp) {
    for ((scope, cluster), tasks) in usage.take() {
        let shapes = env
            .state
            .read(&scope, |acct| shapes(acct, &cluster, &tasks));
        let mut metric_data = Vec::new();
        for u in utilization(&tasks, &shapes) {
            let mut dimensions = vec![Dimension::new("ClusterName", cluster.clone())];
            if let Some(service) = &u.service {
                dimensions.push(Dimension::new("ServiceName", service.clone()));
            }
            for (name, value) in [("CPUUtilization", u.cpu), ("MemoryUtilization", u.memory)] {
                let Some(value) = value else { continue };
                metric_data.push(MetricDatum {
                    metric_name: name.into(),
                    dimensions: dimensions.clone(),
                    timestamp: Some(now),
                    value: Some(value),
                    unit: Some(StandardUnit::Percent),
                    storage_resolution: Some(1),
                    ..Default::default()
                });
            }
        }
        // PutMetricData's own bound per call.
        for chunk in metric_data.chunks(flotilla_metrics::MAX_METRICS_PER_CALL) {
            let input = PutMetricDataInput {
                namespace: NAMESPACE.into(),
                metric_data: chunk.to_vec(),
            };
            match env
                .metrics
                .put_internal_metric_data(&scope, &input, now)
                .await
            {
                Ok(()) => {
                    WRITTEN.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(cluster, error = %e, "could not write ECS utilization"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_fall_mid_period() {
        let at = |ms| until_next_flush(Timestamp(ms)).as_millis();
        assert_eq!(at(1_000_000), 5_000);
        assert_eq!(at(1_004_999), 1);
        assert_eq!(at(1_005_000), 10_000);
        assert_eq!(at(1_009_000), 6_000);
    }
}
