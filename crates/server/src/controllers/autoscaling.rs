//! The autoscaling controller: runs Application Auto Scaling's policies
//! when their alarms fire, and scheduled actions when they come due.
//!
//! - **Alarms.** It subscribes to `Env::alarm_actions` (alarm transitions
//!   the alarm controller publishes once durable, and CloudWatch's
//!   once-a-minute repeats of Auto Scaling actions while an alarm stays in
//!   a state). Each action of the new state that is a scaling policy's ARN
//!   runs that policy (`core::autoscaling::run_policy`) and the
//!   delivery is recorded in the alarm's history
//!   (`MetricStore::record_action`). The channel is a hint: a subscriber
//!   that fell behind re-reads, for every policy, the state of the alarms
//!   that name it and runs those in ALARM.
//! - **Scheduled actions.** It sleeps until the earliest next run, and
//!   looks again at least every [`TICK`], so an action created or changed a
//!   moment before its time still runs within a second of it.
//!
//! Every change goes through `State::write` (durable before it counts) and
//! the same domain operations as the API, so the service controller sees
//! the new desired count like an UpdateService's.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flotilla_metrics::{
    ActionOutcome, AlarmTransition, DescribeAlarmsInput, StateValue, Timestamp,
};
use tokio::sync::broadcast::error::RecvError;

use crate::api::Env;
use crate::core::autoscaling::{self as core, Ran, Trigger};
use crate::core::now;

/// How often scheduled actions are looked at, whatever the timers say.
const TICK: Duration = Duration::from_millis(500);

/// Runs until `shutdown` resolves.
pub async fn run(env: Arc<Env>, shutdown: impl Future<Output = ()>) {
    let mut alarms = env.alarm_actions.subscribe();
    tokio::pin!(shutdown);
    loop {
        let wait = next_due(&env)
            .map(|at| Duration::from_secs_f64((at - now()).clamp(0.0, TICK.as_secs_f64())))
            .unwrap_or(TICK);
        tokio::select! {
            _ = &mut shutdown => return,
            msg = alarms.recv() => match msg {
                Ok(t) => on_transition(&env, &t).await,
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "alarm actions lagged; re-reading alarm states");
                    resync(&env).await;
                }
                // The sender lives in `env`: closed only as the server stops.
                Err(RecvError::Closed) => {
                    shutdown.as_mut().await;
                    return;
                }
            },
            _ = tokio::time::sleep(wait) => run_due(&env).await,
        }
    }
}

/// The earliest next run of any scheduled action.
fn next_due(env: &Env) -> Option<f64> {
    env.state
        .scopes()
        .iter()
        .filter_map(|scope| env.state.read(scope, core::next_due))
        .min_by(f64::total_cmp)
}

/// Runs every scheduled action that is due.
async fn run_due(env: &Env) {
    let t = now();
    for scope in env.state.scopes() {
        let due = env.state.read(&scope, |acct| core::due_actions(acct, t));
        if due.is_empty() {
            continue;
        }
        let result = env
            .state
            .write(&scope, |acct, tx| {
                for (rid, name) in &due {
                    core::run_scheduled(acct, tx, rid, name, t);
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => tracing::debug!(?due, "scheduled actions ran"),
            Err(e) => tracing::warn!(error = %e, "scheduled actions could not run; retrying"),
        }
    }
}

/// Runs the policies a transition names among its new state's actions
/// (a step policy may sit in `OKActions` too; target tracking's alarms name
/// theirs only in `AlarmActions`).
async fn on_transition(env: &Env, t: &AlarmTransition) {
    for action in t
        .actions
        .iter()
        .filter(|a| core::parse_policy_arn(a).is_some())
    {
        let trigger = Trigger {
            alarm: &t.alarm_name,
            state: t.new_state.as_str(),
            threshold: t.threshold,
            datapoints: &t.recent_datapoints,
        };
        let outcome = run_policy(env, t, action, trigger).await;
        if let Err(e) = env
            .metrics
            .record_action(&t.scope, &t.alarm_name, action, &outcome, t.at)
            .await
        {
            tracing::warn!(error = %e, alarm = t.alarm_name, "could not record an alarm action");
        }
    }
}

async fn run_policy(
    env: &Env,
    t: &AlarmTransition,
    action: &str,
    trigger: Trigger<'_>,
) -> ActionOutcome {
    let at = now();
    let result = env
        .state
        .write(&t.scope, |acct, tx| {
            Ok(core::run_policy(acct, tx, action, trigger, at))
        })
        .await;
    match result {
        Ok(Ok(ran)) => {
            match ran {
                Ran::Scaled(n) => {
                    tracing::info!(policy = action, alarm = t.alarm_name, desired = n, "scaled")
                }
                Ran::NotScaled(code) => {
                    tracing::debug!(policy = action, reason = code.as_str(), "not scaled")
                }
                Ran::Held(why) => tracing::debug!(policy = action, why, "held"),
            }
            ActionOutcome::Succeeded
        }
        Ok(Err(why)) => ActionOutcome::Failed(why),
        Err(e) => ActionOutcome::Failed(e.to_string()),
    }
}

/// After falling behind: every policy whose alarm is in ALARM runs as if
/// the alarm had repeated its action.
async fn resync(env: &Env) {
    for scope in env.state.scopes() {
        let policies: Vec<String> = env.state.read(&scope, |acct| {
            acct.autoscaling
                .targets
                .values()
                .flat_map(|t| t.policies.values().map(|p| p.arn.clone()))
                .collect()
        });
        for arn in policies {
            let input = DescribeAlarmsInput {
                action_prefix: Some(arn.clone()),
                state_value: Some(StateValue::Alarm),
                max_records: Some(100),
                ..Default::default()
            };
            let Ok(out) = env.metrics.describe_alarms(&scope, &input) else {
                continue;
            };
            for alarm in out.metric_alarms {
                if !alarm.actions_enabled || !alarm.alarm_actions.contains(&arn) {
                    continue;
                }
                let t = AlarmTransition {
                    scope: scope.clone(),
                    alarm_name: alarm.alarm_name.clone(),
                    alarm_arn: alarm.alarm_arn.clone(),
                    old_state: StateValue::Alarm,
                    new_state: StateValue::Alarm,
                    reason: alarm.state_reason.clone(),
                    reason_data: alarm.state_reason_data.clone(),
                    threshold: alarm.threshold,
                    recent_datapoints: Vec::new(),
                    actions: vec![arn.clone()],
                    at: Timestamp::from_secs_f64(now()).unwrap_or(alarm.state_updated_timestamp),
                    repeat: true,
                };
                on_transition(env, &t).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flotilla_metrics::{
        ComparisonOperator, PutMetricAlarmInput, SetAlarmStateInput, Statistic,
    };
    use flotilla_model::arn::Scope;
    use flotilla_model::ecs;
    use flotilla_model::lifecycle::{ClusterStatus, ServiceStatus};
    use flotilla_model::wire::autoscaling as wire;
    use flotilla_store::memory::MemoryStore;

    use super::*;
    use crate::core::autoscaling::{Policy, Target};
    use crate::core::State;

    /// A subscriber that fell behind re-reads the alarms: a step policy
    /// whose alarm is in ALARM runs, and the delivery is in the alarm's
    /// history, though no transition was ever received.
    #[tokio::test]
    async fn after_lag_alarms_in_alarm_run_their_policies() {
        let dir = tempfile::tempdir().unwrap();
        let (alarm_actions, _) = tokio::sync::broadcast::channel(8);
        let env = Env {
            state: State::open(Arc::new(MemoryStore::new())).unwrap(),
            logs: flotilla_logstore::LogStore::open(&dir.path().join("logs")).unwrap(),
            metrics: flotilla_metrics::MetricStore::open(
                &dir.path().join("metrics.db"),
                Default::default(),
            )
            .unwrap(),
            alarm_actions,
        };
        let scope = Scope::new("111111111111", "us-east-1");
        let rid = "service/default/web";
        let arn = core::policy_arn(&scope, rid, "up");
        let policy = Policy {
            name: "up".into(),
            arn: arn.clone(),
            policy_type: wire::PolicyType::StepScaling,
            creation_time: 0.0,
            step: Some(wire::StepScalingPolicyConfiguration {
                adjustment_type: Some(wire::AdjustmentType::ChangeInCapacity),
                step_adjustments: Some(vec![wire::StepAdjustment {
                    metric_interval_lower_bound: Some(0.0),
                    metric_interval_upper_bound: None,
                    scaling_adjustment: Some(2),
                }]),
                ..Default::default()
            }),
            target_tracking: None,
            alarms: Vec::new(),
            cooldowns: Default::default(),
        };
        env.state
            .write(&scope, |acct, _| {
                let c = acct.clusters.entry("default".into()).or_default();
                c.cluster = ecs::Cluster {
                    cluster_name: Some("default".into()),
                    status: Some(ClusterStatus::Active),
                    ..Default::default()
                };
                c.services.insert(
                    "web".into(),
                    ecs::Service {
                        service_name: Some("web".into()),
                        status: Some(ServiceStatus::Active),
                        desired_count: Some(1),
                        ..Default::default()
                    },
                );
                acct.autoscaling.targets.insert(
                    rid.into(),
                    Target {
                        resource_id: rid.into(),
                        min_capacity: 1,
                        max_capacity: 5,
                        policies: BTreeMap::from([("up".to_string(), policy)]),
                        ..Default::default()
                    },
                );
                Ok(())
            })
            .await
            .unwrap();
        let now = Timestamp::now();
        env.metrics
            .put_metric_alarm(
                &scope,
                &PutMetricAlarmInput {
                    alarm_name: "busy".into(),
                    alarm_actions: vec![arn.clone()],
                    namespace: Some("App".into()),
                    metric_name: Some("Load".into()),
                    statistic: Some(Statistic::Average),
                    period: Some(60),
                    evaluation_periods: Some(1),
                    threshold: Some(1.0),
                    comparison_operator: Some(ComparisonOperator::GreaterThanThreshold),
                    ..Default::default()
                },
                now,
            )
            .await
            .unwrap();
        let set = |state| SetAlarmStateInput {
            alarm_name: "busy".into(),
            state_value: state,
            state_reason: "test".into(),
            state_reason_data: None,
        };
        env.metrics
            .set_alarm_state(&scope, &set(StateValue::Alarm), now)
            .await
            .unwrap();

        resync(&env).await;
        let (desired, activities) = env.state.read(&scope, |acct| {
            (
                acct.clusters["default"].services["web"].desired_count,
                acct.autoscaling.activities.get(rid).map_or(0, |a| a.len()),
            )
        });
        assert_eq!(desired, Some(3));
        assert_eq!(activities, 1);
        let history = env
            .metrics
            .describe_alarm_history(
                &scope,
                &flotilla_metrics::DescribeAlarmHistoryInput {
                    alarm_name: Some("busy".into()),
                    history_item_type: Some(flotilla_metrics::HistoryItemType::Action),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(history.alarm_history_items.len(), 1);

        // An alarm back to OK is not run again.
        env.metrics
            .set_alarm_state(&scope, &set(StateValue::Ok), now)
            .await
            .unwrap();
        resync(&env).await;
        let desired = env.state.read(&scope, |acct| {
            acct.clusters["default"].services["web"].desired_count
        });
        assert_eq!(desired, Some(3));
        env.metrics.close();
        env.logs.close();
    }
}
