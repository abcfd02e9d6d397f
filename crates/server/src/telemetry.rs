//! The control plane's own measurements, for `GET /metrics`
//! (`crate::prometheus` renders them): API latency per operation, the wait
//! for a write to be durable, and placement decisions. A leaf module: the
//! front, the core and the controllers record here; nothing here knows
//! them.

use std::fmt::Write;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Whether an API call was answered with its output or an error.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Error,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// The service's module name (`ecs`, `logs`, `cloudwatch`, …).
    pub service: &'static str,
    pub operation: &'static str,
    pub outcome: Outcome,
}

/// Whether a placement found instances for every task it was asked for.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum PlacementResult {
    Placed,
    Unplaced,
}

impl EncodeLabelValue for PlacementResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            PlacementResult::Placed => "placed",
            PlacementResult::Unplaced => "unplaced",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlacementLabels {
    pub result: PlacementResult,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Buckets from 50 µs to about 3.3 s, doubling: API calls, commits and
/// placements all fall in that range.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// Every measurement the control plane keeps about itself.
pub struct Telemetry {
    /// Seconds from a request's arrival to its encoded answer (a
    /// PutLogEvents's includes its batch becoming durable).
    pub api: Histograms<ApiLabels>,
    /// Seconds from a state write's queueing to its durability in the store
    /// (what every acknowledged write waited for).
    pub commit: Histogram,
    /// Seconds one placement decision took (the scheduler's pipeline over a
    /// cluster's instances).
    pub placement: Histograms<PlacementLabels>,
    /// Tasks placed on an instance (rendered with the plain figures).
    pub tasks_placed: Counter,
}

pub static TELEMETRY: LazyLock<Telemetry> = LazyLock::new(|| Telemetry {
    api: Family::new_with_constructor(latency),
    commit: latency(),
    placement: Family::new_with_constructor(latency),
    tasks_placed: Counter::default(),
});

impl Telemetry {
    pub fn api_call(&self, labels: ApiLabels, took: Duration) {
        self.api.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// A registry over these measurements (sharing them, not copying), to
    /// encode at a scrape.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("flotilla");
        r.register(
            "api_request_duration_seconds",
            "Seconds from an API request's arrival to its answer, by service, operation and outcome.",
            self.api.clone(),
        );
        r.register(
            "store_commit_wait_seconds",
            "Seconds from a state write's queueing to its durability in the store.",
            self.commit.clone(),
        );
        r.register(
            "placement_duration_seconds",
            "Seconds one placement decision took, by whether every task found an instance.",
            self.placement.clone(),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_histograms_with_labels() {
        let t = Telemetry {
            api: Family::new_with_constructor(latency),
            commit: latency(),
            placement: Family::new_with_constructor(latency),
            tasks_placed: Counter::default(),
        };
        let labels = ApiLabels {
            service: "ecs",
            operation: "ListTasks",
            outcome: Outcome::Success,
        };
        t.api_call(labels.clone(), Duration::from_micros(70));
        t.api_call(labels, Duration::from_millis(3));
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &t.registry()).unwrap();
        assert!(
            out.contains(
                "flotilla_api_request_duration_seconds_count{service=\"ecs\",operation=\"ListTasks\",outcome=\"success\"} 2"
            ),
            "{out}"
        );
        // 70 µs falls in the 100 µs bucket, not the 50 µs one.
        assert!(
            out.contains("le=\"5e-5\"} 0") || out.contains("le=\"0.00005\"} 0"),
            "{out}"
        );
    }
}
