//! The alarm controller: evaluates CloudWatch alarms on time and hands
//! their state changes to whoever acts on them, and keeps the metric store
//! rolled up and within retention.
//!
//! Alarms are due at their evaluation boundaries (every 10 s for periods
//! under a minute, every 60 s otherwise; `flotilla_metrics` owns the
//! schedule). The loop sleeps until the earliest due time, or until an
//! alarm is created, changed or deleted (`MetricStore::schedule_changed`),
//! then evaluates what is due *as of its boundary*. A transition comes back
//! from `evaluate_due` only once it is durable; it is then published on
//! `Env::alarm_actions`, with or without actions: deployments watch alarms
//! by name, not through actions.
//!
//! Maintenance (roll-up into coarser tiers, expiry) runs in its own loop
//! every [`MAINTENANCE_EVERY`], so a long roll-up never delays an
//! evaluation.

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_metrics::Timestamp;

use crate::api::Env;
use crate::core::alarm_actions::publish;

/// How late (ms) the last due evaluation ran after its boundary, for
/// `GET /metrics`: what a saturated machine costs alarms.
pub static LAST_DELAY_MS: AtomicU64 = AtomicU64::new(0);

/// How often the metric store is rolled up and expired.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

/// After a failed evaluation, how long before the next attempt.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Runs the evaluation and maintenance loops until `shutdown` resolves.
pub async fn run(env: Arc<Env>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::select! {
        _ = async { tokio::join!(evaluate(&env), maintain(&env)) } => {}
        _ = shutdown => {}
    }
}

async fn evaluate(env: &Env) {
    let changed = env.metrics.schedule_changed();
    loop {
        // Registered before the schedule is read, so a change made between
        // the read and the sleep still wakes us.
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = Timestamp::now();
        if let Some(due) = env.metrics.next_evaluation().filter(|d| *d <= now) {
            let late = u64::try_from(now.millis() - due.millis()).unwrap_or(0);
            LAST_DELAY_MS.store(late, Ordering::Relaxed);
        }
        let wait = match env.metrics.evaluate_due(now).await {
            Ok(transitions) => {
                publish(&env.alarm_actions, transitions);
                until(env.metrics.next_evaluation())
            }
            Err(e) => {
                tracing::warn!(error = %e, "alarm evaluation failed; retrying");
                RETRY_AFTER
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut notified => {}
        }
    }
}

/// How long until `next` (an hour when nothing is scheduled: a new alarm
/// wakes the loop anyway).
fn until(next: Option<Timestamp>) -> Duration {
    let Some(next) = next else {
        return Duration::from_secs(3600);
    };
    let ms = next.millis().saturating_sub(Timestamp::now().millis());
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

async fn maintain(env: &Env) {
    let mut ticks = tokio::time::interval(MAINTENANCE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match env.metrics.maintain(Timestamp::now()).await {
            Ok(report) => tracing::debug!(?report, "metric store maintained"),
            Err(e) => tracing::warn!(error = %e, "metric store maintenance failed"),
        }
    }
}
