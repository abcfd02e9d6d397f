//! Publishing alarm state changes to their consumers (auto scaling
//! policies, deployments watching alarms), from wherever they happen: the
//! alarm controller's evaluations, and the API calls that change a state
//! (PutMetricAlarm's first evaluation, SetAlarmState). One function, so
//! every publication is counted the same way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flotilla_metrics::AlarmTransition;
use tokio::sync::broadcast::Sender;

/// Transitions published since the process started (repeats included),
/// for `GET /metrics`.
pub static PUBLISHED: AtomicU64 = AtomicU64::new(0);

/// Publishes durable transitions. Nobody listening is fine: the metric
/// store holds the states, and a consumer that starts later reads them.
pub fn publish(
    to: &Sender<Arc<AlarmTransition>>,
    transitions: impl IntoIterator<Item = AlarmTransition>,
) {
    for t in transitions {
        tracing::debug!(alarm = t.alarm_name, from = %t.old_state, to = %t.new_state, repeat = t.repeat, "alarm transition");
        PUBLISHED.fetch_add(1, Ordering::Relaxed);
        let _ = to.send(Arc::new(t));
    }
}
