//! The agent's own figures for `GET /metrics` on its metadata address
//! (Prometheus text format 0.0.4): counters kept here, gauges read from
//! the metadata index at the scrape. Counts only; never names or data
//! (containers can reach this address).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Desired-task sets received from the control plane and applied.
pub static DESIRED_APPLIED: AtomicU64 = AtomicU64::new(0);
/// Task state changes the control plane took.
pub static CHANGES_SENT: AtomicU64 = AtomicU64::new(0);
/// Container stats samples sent with the agent's reports.
pub static STATS_SENT: AtomicU64 = AtomicU64::new(0);
/// Sessions with the control plane begun (the first and every reconnect).
pub static CONNECTS: AtomicU64 = AtomicU64::new(0);
/// Log events the control plane acknowledged as durable (awslogs).
pub static LOG_EVENTS_SHIPPED: AtomicU64 = AtomicU64::new(0);

/// The figures as Prometheus text; `tasks` and `running` are the metadata
/// index's counts now.
pub fn render(tasks: usize, running: usize) -> String {
    let counter = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
    let figures = [
        (
            "flotilla_agent_tasks",
            "gauge",
            "Tasks this agent runs or is stopping.",
            tasks as f64,
        ),
        (
            "flotilla_agent_running_containers",
            "gauge",
            "Containers the agent knows as RUNNING.",
            running as f64,
        ),
        (
            "flotilla_agent_desired_sets_applied_total",
            "counter",
            "Desired-task sets received from the control plane and applied.",
            counter(&DESIRED_APPLIED),
        ),
        (
            "flotilla_agent_state_changes_sent_total",
            "counter",
            "Task state changes delivered to the control plane.",
            counter(&CHANGES_SENT),
        ),
        (
            "flotilla_agent_stats_samples_sent_total",
            "counter",
            "Container stats samples sent to the control plane.",
            counter(&STATS_SENT),
        ),
        (
            "flotilla_agent_control_plane_sessions_total",
            "counter",
            "Sessions with the control plane begun (reconnects included).",
            counter(&CONNECTS),
        ),
        (
            "flotilla_agent_log_events_shipped_total",
            "counter",
            "awslogs events the control plane acknowledged as durable.",
            counter(&LOG_EVENTS_SHIPPED),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in figures {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}
