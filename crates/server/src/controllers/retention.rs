//! The retention controller: STOPPED tasks are forgotten once older than the
//! retention (ECS keeps them about an hour), a bounded number per pass so
//! that one pass never holds the state lock for long.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use flotilla_model::arn::Scope;

use super::runtime::{Controller, Next};
use crate::core::State;

/// At most this many tasks are forgotten per pass.
const PER_PASS: usize = 10_000;

pub struct Retention {
    state: Arc<State>,
    stopped_tasks: Duration,
    /// The accounts already scheduled: a new account is reconciled at the
    /// first write that creates it, not at the next full resync.
    known: BTreeSet<Scope>,
}

impl Retention {
    pub fn new(state: &Arc<State>, stopped_tasks: Duration) -> Self {
        Retention {
            state: state.clone(),
            stopped_tasks,
            known: BTreeSet::new(),
        }
    }
}

impl Controller for Retention {
    /// One key per account and region.
    type Key = Scope;

    fn name(&self) -> &'static str {
        "retention"
    }

    fn touched(&mut self) -> BTreeSet<Scope> {
        let new: BTreeSet<Scope> = self
            .state
            .scopes()
            .into_iter()
            .filter(|s| !self.known.contains(s))
            .collect();
        self.known.extend(new.iter().cloned());
        new
    }

    fn all(&mut self, state: &State) -> BTreeSet<Scope> {
        let all: BTreeSet<Scope> = state.scopes().into_iter().collect();
        self.known.clone_from(&all);
        all
    }

    async fn reconcile(
        &mut self,
        state: &State,
        keys: BTreeSet<Scope>,
        now: f64,
    ) -> Vec<(Scope, Next)> {
        let cutoff = now - self.stopped_tasks.as_secs_f64();
        // Forgetting looks at every task, so it runs a few times per
        // retention period, and again at once while there is a backlog.
        let again = now + (self.stopped_tasks.as_secs_f64() / 10.0).min(30.0);
        let mut out = Vec::new();
        for scope in keys {
            let result = state
                .write(&scope, |acct, tx| {
                    let mut budget = PER_PASS;
                    for c in acct.clusters.values_mut() {
                        if budget == 0 {
                            break;
                        }
                        let old: Vec<String> = c
                            .tasks
                            .iter()
                            .filter(|(_, t)| t.is_stopped() && t.stopped_at.unwrap_or(0.0) < cutoff)
                            .map(|(id, _)| id.clone())
                            .take(budget)
                            .collect();
                        budget -= old.len();
                        let cluster = c.name().to_string();
                        for id in old {
                            c.remove_task(&id);
                            tx.delete_task(&cluster, &id);
                        }
                    }
                    Ok(budget == 0)
                })
                .await;
            let next = match result {
                Ok(true) => Next::At(now),
                Ok(false) => Next::At(again),
                Err(e) => {
                    tracing::warn!(error = %e, "could not forget old stopped tasks");
                    Next::Retry
                }
            };
            out.push((scope, next));
        }
        out
    }
}
