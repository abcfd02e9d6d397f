//! The load-balancer targets controller: ECS services' tasks registered in
//! and deregistered from their target groups, drained targets forgotten,
//! tasks failing ELB health checks replaced (the decisions are in
//! `crate::core::lb::ecs`). One key per account and region; woken by
//! changes to services and their tasks, by the end of a draining, and every
//! few seconds while a service is behind a load balancer (health reports
//! are not durable writes).

use std::collections::BTreeSet;
use std::sync::Arc;

use flotilla_model::arn::Scope;

use super::runtime::{Controller, Next};
use crate::core::state::ServiceChanges;
use crate::core::State;

pub struct LbTargets {
    services: Arc<ServiceChanges>,
}

impl LbTargets {
    pub fn new(state: &Arc<State>) -> Self {
        LbTargets {
            services: state.watch_services(),
        }
    }
}

impl Controller for LbTargets {
    type Key = Scope;

    fn name(&self) -> &'static str {
        "lb-targets"
    }

    fn touched(&mut self) -> BTreeSet<Scope> {
        self.services
            .take()
            .into_iter()
            .map(|(s, _, _)| s)
            .collect()
    }

    fn all(&mut self, state: &State) -> BTreeSet<Scope> {
        state.scopes().into_iter().collect()
    }

    async fn reconcile(
        &mut self,
        state: &State,
        keys: BTreeSet<Scope>,
        now: f64,
    ) -> Vec<(Scope, Next)> {
        let mut out = Vec::new();
        for scope in keys {
            // Most accounts have no target group: no write lock for them.
            if state.read(&scope, |acct| acct.lb.target_groups.is_empty()) {
                out.push((scope, Next::Idle));
                continue;
            }
            let result = state
                .write(&scope, |acct, tx| {
                    Ok(crate::core::lb::ecs::sync(acct, tx, now))
                })
                .await;
            let next = match result {
                Ok(Some(at)) => Next::At(at.max(now + 0.1)),
                Ok(None) => Next::Idle,
                Err(e) => {
                    tracing::warn!(error = %e, "could not bring load-balancer targets up to date");
                    Next::Retry
                }
            };
            out.push((scope, next));
        }
        out
    }
}
