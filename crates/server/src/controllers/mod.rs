//! The controllers: level-triggered loops that compare what is desired with
//! what is observed and act. Each is a module implementing
//! [`runtime::Controller`]; [`runtime`] owns when they run (changes, timers
//! at their due time, full resyncs, back-off).
//!
//! - [`services`]: REPLICA services (placement, rolling deployments, the
//!   circuit breaker), decisions by `flotilla_reconcile::reconcile`;
//! - [`daemon`]: DAEMON services, decisions by `flotilla_reconcile::daemon`;
//! - [`lost_hosts`]: tasks of instances whose agent stayed away;
//! - [`retention`]: forgetting old STOPPED tasks;
//! - [`autoscaling`]: Application Auto Scaling's policies (on alarm
//!   actions) and scheduled actions; it has a loop of its own (it is woken
//!   by alarm transitions, not by state changes), run beside these.
//! - [`log_retention`]: CloudWatch Logs retention policies (the log store).
//! - [`lb_targets`]: ECS services' tasks as load-balancer targets.
//! - [`task_sets`]: services with the EXTERNAL deployment controller, their
//!   task sets' tasks (decisions by `crate::core::task_sets::plan`).
//! - [`deployment_alarms`]: deployments watching CloudWatch alarms fail
//!   (and roll back) when one is in ALARM; a loop of its own like
//!   [`autoscaling`].
//!
//! Controllers act as themselves: they call the domain core
//! (`crate::core`) directly, never through an API principal.

use std::sync::Arc;
use std::time::Duration;

use crate::core::State;

pub mod alarms;
pub mod autoscaling;
pub mod batches;
pub mod daemon;
pub mod deployment_alarms;
pub mod lb_targets;
pub mod log_retention;
pub mod lost_hosts;
pub mod retention;
pub mod runtime;
pub mod services;
pub mod task_sets;
pub mod usage;

/// Controller timings.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How often every key of every controller is reconciled whether or not
    /// anything touched it (the level-triggered safety net).
    pub full_resync: Duration,
    /// How long an instance's agent may stay disconnected before its tasks
    /// are reported STOPPED.
    pub lost_host_grace: Duration,
    /// How long STOPPED tasks stay visible (DescribeTasks, ListTasks with
    /// desiredStatus STOPPED) before they are forgotten. ECS keeps them for
    /// about an hour; the deployment circuit breaker and restart back-off
    /// need at least the last 15 minutes of them.
    pub stopped_task_retention: Duration,
    /// The first retry of a failed reconcile; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often log segments past their group's retention are deleted.
    pub log_retention_interval: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            full_resync: Duration::from_secs(30),
            lost_host_grace: Duration::from_secs(60),
            stopped_task_retention: Duration::from_secs(3600),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            log_retention_interval: Duration::from_secs(600),
        }
    }
}

/// Runs every controller until `shutdown` resolves. `logs` is the log
/// store, for the log retention controller.
pub async fn run(
    state: Arc<State>,
    logs: flotilla_logstore::LogStore,
    config: ControllerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let schedule = runtime::Schedule {
        full_resync: config.full_resync,
        backoff_min: config.backoff_min,
        backoff_max: config.backoff_max,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let all = async {
        tokio::join!(
            runtime::run(
                services::Replicas::new(&state),
                &state,
                schedule.clone(),
                until_stopped()
            ),
            runtime::run(
                task_sets::TaskSets::new(&state),
                &state,
                schedule.clone(),
                until_stopped()
            ),
            runtime::run(
                daemon::Daemons::new(&state),
                &state,
                schedule.clone(),
                until_stopped()
            ),
            runtime::run(
                lost_hosts::LostHosts::new(&state, config.lost_host_grace),
                &state,
                schedule.clone(),
                until_stopped()
            ),
            runtime::run(
                retention::Retention::new(&state, config.stopped_task_retention),
                &state,
                schedule.clone(),
                until_stopped()
            ),
            runtime::run(
                log_retention::LogRetention::new(logs, config.log_retention_interval),
                &state,
                schedule.clone(),
                until_stopped()
            ),
            runtime::run(
                lb_targets::LbTargets::new(&state),
                &state,
                schedule.clone(),
                until_stopped()
            ),
        )
    };
    tokio::pin!(all);
    tokio::select! {
        _ = &mut all => {}
        _ = shutdown => {
            let _ = stop.send(true);
            all.await;
        }
    }
}
