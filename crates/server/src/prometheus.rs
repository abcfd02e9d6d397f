//! `GET /metrics`: a few of the control plane's own figures in the
//! Prometheus text format (0.0.4), for a scraper on the operator's network.
//! Unsigned, like any Prometheus endpoint: it shows counts, never names,
//! accounts or data. Everything here is a cheap read of a counter or a
//! size; nothing scans the state.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State as AxumState;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Router;

use crate::api::Env;
use crate::core::usage::Usage;

#[derive(Clone)]
struct Sources {
    env: Arc<Env>,
    usage: Arc<Usage>,
}

/// The route, over the server's environment and the stats gatherer.
pub fn router(env: Arc<Env>, usage: Arc<Usage>) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(render))
        .with_state(Sources { env, usage })
}

async fn render(AxumState(s): AxumState<Sources>) -> impl IntoResponse {
    use crate::services::logs;
    let figures: [(&str, &str, &str, f64); 10] = [
        (
            "flotilla_accounts",
            "gauge",
            "Account and region pairs with state.",
            s.env.state.scopes().len() as f64,
        ),
        (
            "flotilla_cloudwatch_alarms",
            "gauge",
            "CloudWatch metric alarms, all accounts.",
            s.env.metrics.alarm_count() as f64,
        ),
        (
            "flotilla_cloudwatch_metric_series",
            "gauge",
            "CloudWatch metric series (namespace, name, dimensions), all accounts.",
            s.env.metrics.series_count() as f64,
        ),
        (
            "flotilla_alarm_transitions_published_total",
            "counter",
            "Alarm state changes and action repeats published to their consumers.",
            crate::core::alarm_actions::PUBLISHED.load(Ordering::Relaxed) as f64,
        ),
        (
            "flotilla_alarm_evaluation_delay_seconds",
            "gauge",
            "How late the last due alarm evaluation ran after its boundary.",
            crate::controllers::alarms::LAST_DELAY_MS.load(Ordering::Relaxed) as f64 / 1000.0,
        ),
        (
            "flotilla_agent_task_stats_received_total",
            "counter",
            "Task stats samples received from agents.",
            s.usage.received.load(Ordering::Relaxed) as f64,
        ),
        (
            "flotilla_ecs_utilization_datapoints_total",
            "counter",
            "AWS/ECS utilization datapoints written.",
            crate::controllers::usage::WRITTEN.load(Ordering::Relaxed) as f64,
        ),
        (
            "flotilla_log_events_stored_total",
            "counter",
            "CloudWatch Logs events stored by PutLogEvents (durable), all accounts.",
            logs::EVENTS_STORED.load(Ordering::Relaxed) as f64,
        ),
        (
            "flotilla_log_event_bytes_stored_total",
            "counter",
            "Message bytes of those events.",
            logs::EVENT_BYTES_STORED.load(Ordering::Relaxed) as f64,
        ),
        (
            "flotilla_log_put_calls_total",
            "counter",
            "PutLogEvents calls answered with success.",
            logs::PUTS_ACCEPTED.load(Ordering::Relaxed) as f64,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in figures {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
}
