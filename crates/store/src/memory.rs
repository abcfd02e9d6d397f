//! An in-memory [`Store`] for tests: the same revisions, compares and watch
//! semantics as [`SqliteStore`](crate::sqlite::SqliteStore) (both run txns
//! through the same engine), nothing on disk.
//!
//! Every commit is applied inside the call, under one lock, so it is
//! "durable" (visible to `range`, `get` and watchers) before `commit` returns;
//! the returned future is already complete.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::engine::{self, lock, Outcome, Tables, Watchers};
use crate::{CommitFuture, Event, KeyValue, Revision, Store, StoreError, Txn};

/// How many revisions of history [`MemoryStore::new`] keeps for watch
/// catch-up; the same default as the SQLite store.
pub const DEFAULT_HISTORY: u64 = crate::sqlite::DEFAULT_HISTORY;

/// An in-memory [`Store`]. Cheap to create; share it behind an `Arc`.
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

struct Inner {
    kvs: BTreeMap<String, KeyValue>,
    revision: Revision,
    /// Events of the retained revisions, `(compacted, revision]`, in order.
    history: VecDeque<Event>,
    history_revisions: u64,
    /// Every revision up to this one has been dropped from `history`.
    compacted: Revision,
    watchers: Watchers,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_history(DEFAULT_HISTORY)
    }

    /// A store that keeps the events of the last `revisions` revisions (at
    /// least 1) for [`Store::watch`] catch-up; older ones are compacted.
    pub fn with_history(revisions: u64) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner {
                kvs: BTreeMap::new(),
                revision: 0,
                history: VecDeque::new(),
                history_revisions: revisions.max(1),
                compacted: 0,
                watchers: Watchers::default(),
            }),
        }
    }

    /// The latest committed revision.
    pub fn revision(&self) -> Revision {
        lock(&self.inner).revision
    }
}

struct MemTables<'a>(&'a mut BTreeMap<String, KeyValue>);

impl Tables for MemTables<'_> {
    fn lookup(&mut self, key: &str) -> Result<Option<(Revision, Revision)>, StoreError> {
        Ok(self
            .0
            .get(key)
            .map(|kv| (kv.create_revision, kv.mod_revision)))
    }

    fn put(&mut self, key: &str, value: &[u8], revision: Revision) -> Result<Revision, StoreError> {
        let kv = self.0.entry(key.to_owned()).or_insert_with(|| KeyValue {
            key: key.to_owned(),
            value: Vec::new(),
            create_revision: revision,
            mod_revision: revision,
        });
        kv.value = value.to_vec();
        kv.mod_revision = revision;
        Ok(kv.create_revision)
    }

    fn delete(&mut self, key: &str, _revision: Revision) -> Result<bool, StoreError> {
        Ok(self.0.remove(key).is_some())
    }
}

impl Inner {
    fn commit(&mut self, txn: Txn) -> Result<Revision, StoreError> {
        let revision = self.revision + 1;
        // MemTables cannot fail, so there is never a half-applied txn to undo.
        let events = match engine::execute(
            &mut MemTables(&mut self.kvs),
            txn,
            revision,
            engine::Observed::Yes,
        )? {
            Outcome::Applied(events) => events,
            Outcome::Conflict(key) => return Err(StoreError::Conflict { key }),
        };
        self.revision = revision;
        self.watchers.dispatch(&events);
        self.history.extend(events);
        self.compacted = self
            .compacted
            .max(revision.saturating_sub(self.history_revisions));
        while self
            .history
            .front()
            .is_some_and(|e| e.revision() <= self.compacted)
        {
            self.history.pop_front();
        }
        Ok(revision)
    }
}

impl Store for MemoryStore {
    fn commit(&self, txn: Txn) -> CommitFuture {
        let result = lock(&self.inner).commit(txn);
        Box::pin(std::future::ready(result))
    }

    fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let inner = lock(&self.inner);
        let kvs = inner
            .kvs
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok((kvs, inner.revision))
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(lock(&self.inner).kvs.get(key).cloned())
    }

    fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<mpsc::UnboundedReceiver<Event>, StoreError> {
        let mut inner = lock(&self.inner);
        if after < inner.compacted {
            return Err(StoreError::Compacted(after));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        // Catch-up and registration happen under one lock, so no commit can
        // fall between them.
        for event in inner
            .history
            .iter()
            .filter(|e| e.revision() > after && e.key().starts_with(prefix))
        {
            // The receiver is still in our hands, so this cannot fail.
            let _ = tx.send(event.clone());
        }
        inner.watchers.add(prefix, after, tx);
        Ok(rx)
    }
}
