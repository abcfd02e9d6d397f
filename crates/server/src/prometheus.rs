//! `GET /metrics`: the control plane's own figures in the Prometheus text
//! format, for a scraper on the operator's network: gauges and counters read
//! from where they are kept, and the histograms of `crate::telemetry` (API
//! latency per operation, commit waits, placements).
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
use crate::gateway::agents::Sessions;
use crate::gateway::lb::LbSessions;
use crate::telemetry::TELEMETRY;

/// What a scrape reads.
#[derive(Clone)]
pub struct Sources {
    pub env: Arc<Env>,
    pub usage: Arc<Usage>,
    pub sessions: Arc<Sessions>,
    pub lb_sessions: Arc<LbSessions>,
}

/// The route, over what it reads.
pub fn router(sources: Sources) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(render))
        .with_state(sources)
}

async fn render(AxumState(s): AxumState<Sources>) -> impl IntoResponse {
    use crate::services::logs;
    let figures: [(&str, &str, &str, f64); 13] = [
        (
            "flotilla_accounts",
            "gauge",
            "Account and region pairs with state.",
            s.env.state.scopes().len() as f64,
        ),
        (
            "flotilla_agent_sessions",
            "gauge",
            "Agents connected to this control plane.",
            s.sessions.connected() as f64,
        ),
        (
            "flotilla_lb_node_sessions",
            "gauge",
            "Load-balancer nodes connected to this control plane.",
            s.lb_sessions.connected() as f64,
        ),
        (
            "flotilla_tasks_placed_total",
            "counter",
            "Tasks placed on container instances.",
            TELEMETRY.tasks_placed.get() as f64,
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
    // Histograms and counters with labels (OpenMetrics text, which
    // Prometheus's text parser reads as well).
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &TELEMETRY.registry());
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
}
