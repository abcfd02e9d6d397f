//! The store: the one source of truth behind Flotilla's cluster state.
//!
//! The control plane keeps its working state in memory and writes every
//! change through a [`Store`] before acknowledging it. The store is a
//! revisioned key-value log in the style of etcd, so that an etcd-backed
//! implementation for a highly available control plane fits behind the same
//! trait:
//! - every committed [`Txn`] gets the next store-wide [`Revision`] (even one
//!   with no ops, or whose deletes found nothing), so revisions are gapless;
//! - a txn's [`Compare`]s are checked atomically with its writes (compare-and-swap);
//!   if one fails, the txn writes nothing and takes no revision;
//! - [`Store::commit`] takes its place in the commit order *when called*, and
//!   its future resolves only once the write is durable: concurrent callers
//!   are batched into one disk sync (group commit). The commit happens whether
//!   or not the future is polled or kept;
//! - [`Store::watch`] streams committed changes under a key prefix, in
//!   revision order (op order within a revision), from a past revision as long
//!   as the store still retains it, else [`StoreError::Compacted`].
//!
//! Keys are ordered and matched by prefix as bytes (UTF-8), like Rust's `str`.
//!
//! Implementations: [`sqlite::SqliteStore`] (WAL, the embedded default; start
//! reading there for the group commit) and [`memory::MemoryStore`] (tests).
//! Both run txns through the private `engine` module, which holds the rules
//! above in one place.

use std::future::Future;
use std::pin::Pin;

mod engine;
pub mod memory;
pub mod sqlite;

#[cfg(test)]
mod tests;

/// A store-wide, strictly increasing commit number. 0 means "nothing yet".
pub type Revision = u64;

/// A key and its current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created this key (since its last deletion).
    pub create_revision: Revision,
    /// The revision that last wrote this key.
    pub mod_revision: Revision,
}

/// A condition checked atomically before a txn's writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key exists and was last written at exactly this revision.
    ModRevision(String, Revision),
}

/// A write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// Compares and writes applied all or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Txn::default()
    }

    pub fn put(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }

    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }
}

/// A committed change seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(KeyValue),
    /// The key was deleted at this revision.
    Delete {
        key: String,
        revision: Revision,
    },
}

impl Event {
    pub fn key(&self) -> &str {
        match self {
            Event::Put(kv) => &kv.key,
            Event::Delete { key, .. } => key,
        }
    }

    /// The revision of the txn that made this change.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put(kv) => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare did not hold; nothing was written.
    #[error("compare failed on key {key}")]
    Conflict { key: String },
    /// The watcher fell behind the retained history; it must reload (`range`)
    /// and watch again from the revision that returns. Carries the `after`
    /// that was asked for.
    #[error("revision {0} has been compacted")]
    Compacted(Revision),
    #[error("store closed")]
    Closed,
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type CommitFuture = Pin<Box<dyn Future<Output = Result<Revision, StoreError>> + Send>>;

/// A revisioned, durable key-value store. See the crate docs for the contract.
pub trait Store: Send + Sync + 'static {
    /// Queues `txn` behind every commit already called and returns a future
    /// that resolves with its revision once it is durable, or with
    /// [`StoreError::Conflict`] if a compare failed (then nothing was written).
    fn commit(&self, txn: Txn) -> CommitFuture;

    /// Every key under `prefix`, in key order, as of the latest durable revision,
    /// and that revision.
    fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError>;

    /// One key as of the latest durable revision.
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Changes under `prefix` committed after revision `after`, in commit order,
    /// then every later one as it becomes durable.
    fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<Event>, StoreError>;
}
