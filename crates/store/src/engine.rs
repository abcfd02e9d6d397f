//! What every implementation shares: how a txn is evaluated and applied, and
//! how committed events reach watchers. Both stores call into this module so
//! that the in-memory fake cannot drift from SQLite's semantics.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc::UnboundedSender;

use crate::{Compare, Event, KeyValue, Op, Revision, StoreError, Txn};

/// The key-value table as a txn sees it, including the writes of every txn
/// applied before it (for SQLite: earlier txns of the same batch, inside the
/// same SQLite transaction).
pub(crate) trait Tables {
    /// `(create_revision, mod_revision)` of a live key.
    fn lookup(&mut self, key: &str) -> Result<Option<(Revision, Revision)>, StoreError>;

    /// Writes `key` at `revision` and returns its create revision (`revision`
    /// itself if the key did not exist).
    fn put(&mut self, key: &str, value: &[u8], revision: Revision) -> Result<Revision, StoreError>;

    /// Writes `key` at `revision` when no event will be made of it, so its
    /// create revision is not needed (SQLite's write that also returns it
    /// took 1.5 to 2 times as long).
    fn put_unobserved(
        &mut self,
        key: &str,
        value: &[u8],
        revision: Revision,
    ) -> Result<(), StoreError> {
        self.put(key, value, revision).map(|_| ())
    }

    /// Removes `key` at `revision`; returns whether it existed.
    fn delete(&mut self, key: &str, revision: Revision) -> Result<bool, StoreError>;
}

pub(crate) enum Outcome {
    /// The txn took `revision`; these are its changes, in op order.
    Applied(Vec<Event>),
    /// This compare's key failed; nothing was written.
    Conflict(String),
}

/// Checks `txn`'s compares and, if they all hold, applies its ops at
/// `revision`. Every compare is checked before the first write, so a conflict
/// writes nothing. An `Err` comes only from the backing tables and leaves the
/// txn half applied: the caller must roll back.
pub(crate) fn execute<T: Tables>(
    tables: &mut T,
    txn: Txn,
    revision: Revision,
    observed: Observed,
) -> Result<Outcome, StoreError> {
    for compare in &txn.compares {
        let (key, holds) = match compare {
            Compare::Absent(key) => (key, tables.lookup(key)?.is_none()),
            Compare::ModRevision(key, want) => {
                (key, tables.lookup(key)?.is_some_and(|(_, m)| m == *want))
            }
        };
        if !holds {
            return Ok(Outcome::Conflict(key.clone()));
        }
    }
    let mut events = Vec::new();
    if observed == Observed::Yes {
        events.reserve(txn.ops.len());
    }
    for op in txn.ops {
        match (op, observed) {
            (Op::Put { key, value }, Observed::Yes) => {
                let create_revision = tables.put(&key, &value, revision)?;
                events.push(Event::Put(KeyValue {
                    key,
                    value,
                    create_revision,
                    mod_revision: revision,
                }));
            }
            (Op::Put { key, value }, Observed::No) => {
                tables.put_unobserved(&key, &value, revision)?
            }
            (Op::Delete { key }, observed) => {
                // Deleting a missing key is not an error (as in etcd) and, since
                // nothing changed, not an event either.
                if tables.delete(&key, revision)? && observed == Observed::Yes {
                    events.push(Event::Delete { key, revision });
                }
            }
        }
    }
    Ok(Outcome::Applied(events))
}

/// Whether anyone will see a txn's events (a watcher, the change log). If
/// not, none are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    Yes,
    No,
}

struct Watcher {
    prefix: String,
    after: Revision,
    tx: UnboundedSender<Event>,
}

/// Live watchers. The owner holds it under the same lock that publishes a new
/// durable revision, so a watcher registered under that lock gets every later
/// event exactly once.
#[derive(Default)]
pub(crate) struct Watchers {
    list: Vec<Watcher>,
}

impl Watchers {
    /// Registers a live watcher for events under `prefix` with a revision
    /// above `after`. The caller has already sent it the catch-up.
    pub(crate) fn add(&mut self, prefix: &str, after: Revision, tx: UnboundedSender<Event>) {
        self.list.push(Watcher {
            prefix: prefix.to_owned(),
            after,
            tx,
        });
    }

    /// Sends `events` (in revision order) to every interested watcher, and
    /// forgets watchers whose receiver is gone.
    pub(crate) fn dispatch(&mut self, events: &[Event]) {
        self.list.retain(|w| {
            for event in events {
                if event.revision() > w.after
                    && event.key().starts_with(&w.prefix)
                    && w.tx.send(event.clone()).is_err()
                {
                    return false;
                }
            }
            !w.tx.is_closed()
        });
    }

    /// Ends every watch stream.
    pub(crate) fn clear(&mut self) {
        self.list.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Locks `mutex` even if a panicking thread poisoned it: every critical
/// section in this crate leaves its data consistent before anything that could
/// panic, so the data is still good and refusing service would only turn one
/// bug into an outage.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The smallest byte string greater than every string that starts with
/// `prefix`, or `None` if there is none (empty prefix). Keys are compared as
/// bytes, so `[prefix, upper)` is exactly the keys under `prefix`.
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<Vec<u8>> {
    let mut bound = prefix.as_bytes().to_vec();
    while let Some(last) = bound.pop() {
        if last < u8::MAX {
            bound.push(last + 1);
            return Some(bound);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_upper_bound;

    #[test]
    fn upper_bound_of_prefix() {
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_upper_bound("é"), Some(vec![0xc3, 0xaa]));
    }
}
