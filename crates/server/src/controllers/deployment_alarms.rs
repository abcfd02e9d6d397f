//! Deployments watching CloudWatch alarms (`deploymentConfiguration.alarms`):
//! when an alarm a service deployment under way (or baking) names is in
//! ALARM, the deployment fails and, with `rollback`, rolls back to its
//! source revision (`core::deployments::on_alarms`).
//!
//! It wakes on every alarm transition `Env::alarm_actions` publishes
//! (SetAlarmState, the alarm controller's evaluations) and, since the
//! channel is a hint and an alarm may already be in ALARM when a
//! deployment starts, also reads the watched alarms' states every
//! [`TICK`]. The reads are only for services with a deployment under way
//! that watches alarms, so an idle system does nothing.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flotilla_metrics::{DescribeAlarmsInput, StateValue};
use tokio::sync::broadcast::error::RecvError;

use crate::api::Env;
use crate::core::deployments::{self, is_finished, watched_alarms};
use crate::core::now;
use crate::core::state::Key;

/// How often watched alarms are read whatever the transitions say.
const TICK: Duration = Duration::from_secs(1);

/// Runs until `shutdown` resolves.
pub async fn run(env: Arc<Env>, shutdown: impl Future<Output = ()>) {
    let mut alarms = env.alarm_actions.subscribe();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            msg = alarms.recv() => match msg {
                Ok(t) if t.new_state != StateValue::Alarm || t.repeat => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => {
                    shutdown.as_mut().await;
                    return;
                }
            },
            _ = tick.tick() => {}
        }
        check(&env).await;
    }
}

/// (cluster, service, alarm names) of every service deployment under way
/// that watches alarms.
type Watched = Vec<(String, String, Vec<String>)>;

async fn check(env: &Env) {
    for scope in env.state.scopes() {
        let watched: Watched = env.state.read(&scope, |acct| {
            let mut out = Vec::new();
            for (cname, c) in &acct.clusters {
                for (sname, meta) in &c.service_meta {
                    let names: BTreeSet<String> = meta
                        .history
                        .deployments
                        .iter()
                        .filter(|r| r.view.status.is_some_and(|s| !is_finished(s)))
                        .filter_map(|r| watched_alarms(r.view.deployment_configuration.as_ref()))
                        .flat_map(|(names, _)| names.iter().cloned())
                        .collect();
                    if !names.is_empty() {
                        out.push((cname.clone(), sname.clone(), names.into_iter().collect()));
                    }
                }
            }
            out
        });
        if watched.is_empty() {
            continue;
        }
        let names: BTreeSet<&String> = watched.iter().flat_map(|(_, _, n)| n).collect();
        let names: Vec<String> = names.into_iter().cloned().collect();
        let mut in_alarm: Vec<String> = Vec::new();
        for chunk in names.chunks(100) {
            let input = DescribeAlarmsInput {
                alarm_names: chunk.to_vec(),
                alarm_name_prefix: None,
                alarm_types: Vec::new(),
                children_of_alarm_name: None,
                parents_of_alarm_name: None,
                state_value: Some(StateValue::Alarm),
                action_prefix: None,
                max_records: Some(100),
                next_token: None,
            };
            match env.metrics.describe_alarms(&scope, &input) {
                Ok(out) => in_alarm.extend(out.metric_alarms.into_iter().map(|a| a.alarm_name)),
                Err(e) => tracing::warn!(error = %e, "could not read the alarms deployments watch"),
            }
        }
        if in_alarm.is_empty() {
            continue;
        }
        let hit: Watched = watched
            .into_iter()
            .filter(|(_, _, n)| n.iter().any(|a| in_alarm.contains(a)))
            .collect();
        let t = now();
        let result = env
            .state
            .write(&scope, |acct, tx| {
                let crate::core::state::Account { clusters, lb, .. } = acct;
                for (cluster, service, _) in &hit {
                    let Some(c) = clusters.get_mut(cluster) else { continue };
                    let (Some(svc), Some(meta)) =
                        (c.services.get(service), c.service_meta.get(service))
                    else {
                        continue;
                    };
                    let (mut svc, mut meta) = (svc.clone(), meta.clone());
                    if deployments::on_alarms(&mut meta.history, &mut svc, lb, tx, &in_alarm, t) {
                        tracing::info!(cluster, service, alarms = ?in_alarm, "deployment failed on alarm");
                        tx.put(Key::Service(cluster, service), &svc);
                        tx.put(Key::ServiceMeta(cluster, service), &meta);
                        c.services.insert(service.clone(), svc);
                        c.service_meta.insert(service.clone(), meta);
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "a deployment's alarm rollback could not be written; retrying");
        }
    }
}
