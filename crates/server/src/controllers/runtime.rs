//! The runtime every controller runs in: it owns queueing, resync, timers
//! and back-off, so a controller is only "reconcile these keys".
//!
//! A controller is woken by
//! - durable writes that touched its keys ([`Controller::touched`], after
//!   every change notification),
//! - its timers, at their due time (a key's [`Next::At`]), not at the next
//!   tick: a sleep until the earliest one,
//! - a full resync every `full_resync` ([`Controller::all`]), the
//!   level-triggered safety net (and the first pass at start),
//! - failures, retried with exponential back-off.
//!
//! Under load a pass covers whatever changed while the previous one ran:
//! resting as long as the pass took keeps a busy controller to about half a
//! core, leaving the rest to the API, the gateway and the store, and lets
//! the next pass gather more changes; an idle system's passes take
//! microseconds, so nothing waits there.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::core::{now, State};

/// When a key wants to be reconciled again, if nothing else wakes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Only when something touches it (or at the next full resync).
    Idle,
    /// At this time (seconds since the epoch), whatever else happens.
    At(f64),
    /// Reconciling failed: again after a back-off.
    Retry,
}

/// One controller: a reconcile over keys; the runtime decides when.
pub trait Controller: Send {
    type Key: Ord + Clone + Send + Sync + std::fmt::Debug;

    fn name(&self) -> &'static str;

    /// Keys durable writes touched since the last call.
    fn touched(&mut self) -> BTreeSet<Self::Key>;

    /// Every key there is (full resync).
    fn all(&mut self, state: &State) -> BTreeSet<Self::Key>;

    /// Reconciles `keys` at `now`; says when each wants to run again. Keys
    /// it does not answer for are [`Next::Idle`].
    fn reconcile(
        &mut self,
        state: &State,
        keys: BTreeSet<Self::Key>,
        now: f64,
    ) -> impl Future<Output = Vec<(Self::Key, Next)>> + Send;
}

/// How often the runtime resyncs everything, and how it backs off.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub full_resync: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// Passes shorter than this are followed at once by the next.
const MIN_REST: Duration = Duration::from_millis(2);
/// The longest a controller rests after a pass.
const MAX_REST: Duration = Duration::from_millis(200);

/// Runs `controller` until `shutdown` resolves.
pub async fn run<C: Controller>(
    mut controller: C,
    state: &State,
    schedule: Schedule,
    shutdown: impl Future<Output = ()>,
) {
    let mut changes = state.subscribe();
    let mut timers: BTreeMap<C::Key, f64> = BTreeMap::new();
    let mut failures: BTreeMap<C::Key, u32> = BTreeMap::new();
    let mut next_full = Instant::now();
    tokio::pin!(shutdown);
    loop {
        let due = timers.values().copied().fold(f64::INFINITY, f64::min);
        let wake = next_full.min(instant_at(due));
        tokio::select! {
            _ = &mut shutdown => return,
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep_until(wake) => {}
        }
        // Mark what we have seen before acting, so changes made while we
        // act wake us again.
        changes.borrow_and_update();
        let t = now();
        let mut keys = controller.touched();
        if Instant::now() >= next_full {
            keys.extend(controller.all(state));
            next_full = Instant::now() + schedule.full_resync;
        }
        let fired: Vec<C::Key> = timers
            .iter()
            .filter(|(_, at)| **at <= t)
            .map(|(k, _)| k.clone())
            .collect();
        for k in fired {
            timers.remove(&k);
            keys.insert(k);
        }
        if keys.is_empty() {
            continue;
        }
        let started = Instant::now();
        let looked_at: Vec<C::Key> = keys.iter().cloned().collect();
        let mut answered: BTreeMap<C::Key, Next> = controller
            .reconcile(state, keys, t)
            .await
            .into_iter()
            .collect();
        for k in looked_at {
            match answered.remove(&k).unwrap_or(Next::Idle) {
                Next::Idle => {
                    timers.remove(&k);
                    failures.remove(&k);
                }
                Next::At(at) => {
                    failures.remove(&k);
                    timers.insert(k, at);
                }
                Next::Retry => {
                    let n = failures.entry(k.clone()).or_insert(0);
                    *n += 1;
                    let wait = backoff(&schedule, *n);
                    tracing::debug!(controller = controller.name(), key = ?k, attempts = *n, ?wait, "reconcile failed; retrying");
                    timers.insert(k, t + wait.as_secs_f64());
                }
            }
        }
        let rest = started.elapsed().min(MAX_REST);
        if rest > MIN_REST {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(rest) => {}
            }
        }
    }
}

/// The back-off after `attempts` consecutive failures: doubling from the
/// minimum, capped.
fn backoff(schedule: &Schedule, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
    schedule
        .backoff_min
        .saturating_mul(factor)
        .min(schedule.backoff_max)
}

/// The monotonic instant of a wall-clock time (seconds since the epoch);
/// far away for "never".
fn instant_at(at: f64) -> Instant {
    let far = Instant::now() + Duration::from_secs(3600);
    if !at.is_finite() {
        return far;
    }
    let wait = at - now();
    if wait <= 0.0 {
        Instant::now()
    } else {
        Instant::now() + Duration::from_secs_f64(wait.min(3600.0))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use flotilla_store::memory::MemoryStore;

    use super::*;

    /// Records when each key is reconciled, and answers from a script.
    struct Probe {
        seen: Arc<Mutex<Vec<(u32, f64)>>>,
        answers: HashMap<u32, Vec<Next>>,
        everything: BTreeSet<u32>,
    }

    impl Controller for Probe {
        type Key = u32;
        fn name(&self) -> &'static str {
            "probe"
        }
        fn touched(&mut self) -> BTreeSet<u32> {
            BTreeSet::new()
        }
        fn all(&mut self, _: &State) -> BTreeSet<u32> {
            std::mem::take(&mut self.everything)
        }
        async fn reconcile(
            &mut self,
            _: &State,
            keys: BTreeSet<u32>,
            now: f64,
        ) -> Vec<(u32, Next)> {
            keys.into_iter()
                .map(|k| {
                    self.seen.lock().unwrap().push((k, now));
                    let next = self
                        .answers
                        .get_mut(&k)
                        .and_then(|a| (!a.is_empty()).then(|| a.remove(0)))
                        .unwrap_or(Next::Idle);
                    (k, next)
                })
                .collect()
        }
    }

    /// A timer fires at its due time, not at a tick; a failure is retried
    /// after the back-off; an idle key is left alone.
    #[tokio::test]
    async fn timers_fire_when_due_and_failures_back_off() {
        let state = State::open(Arc::new(MemoryStore::new())).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let start = now();
        let probe = Probe {
            seen: seen.clone(),
            answers: HashMap::from([
                (1, vec![Next::At(start + 0.3)]),
                (2, vec![Next::Retry, Next::Idle]),
                (3, vec![Next::Idle]),
            ]),
            everything: BTreeSet::from([1, 2, 3]),
        };
        let schedule = Schedule {
            full_resync: Duration::from_secs(3600),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(1),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runner = tokio::spawn({
            let state = state.clone();
            async move {
                run(probe, &state, schedule, async {
                    let _ = stopped.await;
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let _ = stop.send(());
        runner.await.unwrap();
        let seen = seen.lock().unwrap().clone();
        let times = |k: u32| {
            seen.iter()
                .filter(|(key, _)| *key == k)
                .map(|(_, t)| *t)
                .collect::<Vec<_>>()
        };
        assert_eq!(times(3).len(), 1, "{seen:?}");
        let one = times(1);
        assert_eq!(one.len(), 2, "{seen:?}");
        assert!(
            one[1] >= start + 0.3 && one[1] < start + 0.8,
            "timer fired at +{:.3}",
            one[1] - start
        );
        let two = times(2);
        assert_eq!(two.len(), 2, "{seen:?}");
        assert!(
            two[1] - two[0] >= 0.2,
            "retried after {:.3} s",
            two[1] - two[0]
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Schedule {
            full_resync: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
        };
        let waits: Vec<_> = (1..=6).map(|n| backoff(&s, n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
    }
}
