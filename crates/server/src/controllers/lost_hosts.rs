//! The lost-hosts controller: an instance whose agent has been disconnected
//! longer than the grace period has its tasks marked STOPPED (so services
//! replace them); when the agent returns, the desired set it gets no longer
//! holds them, and it stops their containers.
//!
//! Each registered, disconnected instance is a timer due at the end of its
//! grace period; a reconnect (a write of the instance) cancels it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use flotilla_model::arn::Scope;

use super::runtime::{Controller, Next};
use crate::core::events::{Event, InstanceRef};
use crate::core::state::{Account, InstanceChanges, InstanceKey, State};
use crate::core::tasks::force_stopped;

pub struct LostHosts {
    grace: Duration,
    changes: Arc<InstanceChanges>,
    /// When each instance was first seen disconnected (seconds since the epoch).
    since: HashMap<InstanceKey, f64>,
}

impl LostHosts {
    pub fn new(state: &State, grace: Duration) -> LostHosts {
        LostHosts {
            grace,
            changes: state.watch_instances(),
            since: HashMap::new(),
        }
    }
}

impl Controller for LostHosts {
    type Key = InstanceKey;

    fn name(&self) -> &'static str {
        "lost-hosts"
    }

    fn touched(&mut self) -> BTreeSet<InstanceKey> {
        self.changes.take()
    }

    fn all(&mut self, state: &State) -> BTreeSet<InstanceKey> {
        let mut out = BTreeSet::new();
        for scope in state.scopes() {
            state.read(&scope, |acct| {
                for (cn, c) in &acct.clusters {
                    out.extend(
                        c.instances
                            .keys()
                            .map(|id| (scope.clone(), cn.clone(), id.clone())),
                    );
                }
            });
        }
        out
    }

    async fn reconcile(
        &mut self,
        state: &State,
        keys: BTreeSet<InstanceKey>,
        now: f64,
    ) -> Vec<(InstanceKey, Next)> {
        let grace = self.grace.as_secs_f64();
        let mut out = Vec::new();
        let mut lost: Vec<InstanceKey> = Vec::new();
        for key in keys {
            let (scope, cluster, id) = &key;
            let disconnected = state.read(scope, |acct| {
                acct.clusters
                    .get(cluster)
                    .and_then(|c| c.instances.get(id))
                    .is_some_and(|i| i.is_registered() && i.agent_connected != Some(true))
            });
            if !disconnected {
                self.since.remove(&key);
                out.push((key, Next::Idle));
                continue;
            }
            let since = *self.since.entry(key.clone()).or_insert(now);
            if now - since >= grace {
                lost.push(key);
            } else {
                out.push((key, Next::At(since + grace)));
            }
        }
        let mut by_scope: HashMap<Scope, Vec<InstanceKey>> = HashMap::new();
        for key in lost {
            by_scope.entry(key.0.clone()).or_default().push(key);
        }
        for (scope, keys) in by_scope {
            let result = state
                .write(&scope, |acct, tx| {
                    for (_, cluster, id) in &keys {
                        stop_tasks_of_lost_host(acct, tx, cluster, id, now, grace);
                    }
                    Ok(())
                })
                .await;
            for key in keys {
                match &result {
                    // Lost once; it counts again from its next disconnection.
                    Ok(()) => {
                        self.since.remove(&key);
                        out.push((key, Next::Idle));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not stop the tasks of a lost host");
                        out.push((key, Next::Retry));
                    }
                }
            }
        }
        out
    }
}

fn stop_tasks_of_lost_host(
    acct: &mut Account,
    tx: &mut crate::core::state::Tx<'_>,
    cluster: &str,
    id: &str,
    now: f64,
    grace: f64,
) {
    let Account {
        clusters, families, ..
    } = acct;
    let Some(c) = clusters.get_mut(cluster) else {
        return;
    };
    let Some(arn) = c
        .instances
        .get(id)
        .and_then(|i| i.container_instance_arn.clone())
    else {
        return;
    };
    let ids: Vec<String> = c
        .tasks_on(&arn)
        .filter(|(_, t)| !t.is_stopped())
        .map(|(tid, _)| tid.clone())
        .collect();
    for tid in ids {
        let reason = format!("Host lost: the agent on container instance {id} has been disconnected for more than {grace:.1} s");
        force_stopped(families, c, tx, &tid, now, reason);
    }
    tx.emit(|| Event::InstanceLost {
        instance: InstanceRef {
            cluster: cluster.to_string(),
            id: id.to_string(),
        },
    });
}
