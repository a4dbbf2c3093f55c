//! The metadata store: a small key-value trait with two backends (embedded redb, etcd for
//! clusters), every key ([`keys`]) and the versioned records ([`repo`]).
//!
//! Every method documents its guarantees; `conformance` (feature `test-util`) is one test
//! suite that every backend must pass unchanged. This crate owns the stored layout of
//! metadata; it may not see the log, the object store or the broker.

use std::time::Duration;

use async_trait::async_trait;

/// A store's own upkeep task ([`MetaStore::upkeep`]): it runs until dropped.
pub type Upkeep = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;
use bytes::Bytes;

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
pub mod embedded;
pub mod etcd;
pub mod keys;
pub mod repo;

/// A value with the revision at which it was last modified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The stored bytes.
    pub value: Bytes,
    /// Store-wide revision of the last write to this key (strictly increasing per write).
    pub mod_revision: u64,
}

/// A condition a transaction checks before it applies its operations.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key's mod revision equals this (`None`: the key does not exist).
    Revision(String, Option<u64>),
    /// The key exists and holds exactly these bytes (`None`: the key does not exist).
    Value(String, Option<Bytes>),
}

/// A write inside a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Set a key; with a lease, the key is deleted when the lease expires or is revoked.
    Put(String, Bytes, Option<LeaseId>),
    /// Delete a key (no error if absent).
    Delete(String),
}

/// A lease handle.
pub type LeaseId = i64;

/// A change seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The key.
    pub key: String,
    /// New value, or `None` for a deletion.
    pub value: Option<Bytes>,
    /// Revision of the change.
    pub revision: u64,
}

/// Waits for the next event of `events`, or `every` at most. A watch that has ended (a
/// store that refuses connections ends it at once) is waited out for half a second
/// instead: a caller that reads and watches again in a loop would otherwise spin (the ACL
/// and quota watchers logged tens of thousands of warnings a second, and starved a
/// shutdown of the CPU it needed).
pub async fn next_event(events: &mut tokio::sync::mpsc::Receiver<WatchEvent>, every: Duration) {
    tokio::select! {
        e = events.recv() => {
            if e.is_none() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        _ = tokio::time::sleep(every) => {}
    }
}

/// Errors of a metadata store. All are retriable unless said otherwise.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The store could not be reached or failed; the operation may not have applied.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// The lease is unknown or expired.
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    /// A request over the store's limits (ops per transaction, value size).
    #[error("metadata request too large: {0}")]
    TooLarge(String),
    /// A stored record that does not decode (damaged, or written by a newer version).
    /// Not retriable: the record must be repaired or the broker upgraded.
    #[error("corrupt record at {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why it does not decode.
        reason: String,
    },
    /// The embedded store's file is open in another process. Not retriable.
    #[error("{0} is locked by another process")]
    Locked(String),
}

/// Most operations one transaction may hold: etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// A key-value metadata store.
///
/// Guarantees every backend gives: a successful write is durable before the call returns
/// (except a [`MetaStore::txn_relaxed`] one on a store that says it may lose those);
/// `txn` is atomic (all compares hold and all ops apply, or nothing applies); revisions
/// increase with every write; reads see every write that returned before they started.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, MetaError>;
    /// Reads every key that starts with `prefix`, in key order.
    async fn range(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, MetaError>;
    /// Lists every key that starts with `prefix`, in key order, with its revision but not
    /// its value: for callers that keep decoded values and fetch only the keys that changed
    /// ([`MetaStore::get_many`]).
    async fn range_keys(&self, prefix: &str) -> Result<Vec<(String, u64)>, MetaError>;
    /// Reads many keys, answering in the order asked (`None`: absent). Each key is read as
    /// `get` would, not all at one revision.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Versioned>>, MetaError>;
    /// Applies `ops` atomically if every compare holds; returns whether it applied.
    /// At most [`MAX_TXN_OPS`] compares plus ops.
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool, MetaError>;
    /// Subscribes to changes of keys under `prefix` made after this call.
    fn watch(&self, prefix: &str) -> tokio::sync::mpsc::Receiver<WatchEvent>;
    /// Grants a lease that expires `ttl` after its last keep-alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError>;
    /// Renews a lease.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), MetaError>;
    /// Revokes a lease now, deleting its keys.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), MetaError>;

    /// Like [`MetaStore::txn`], except that on a store where
    /// [`MetaStore::relaxed_may_be_lost`] is true the write may be lost in a crash (until
    /// a later durable write, or the store's own periodic sync, makes it durable): for
    /// writes the caller can rebuild after a crash from data it made durable elsewhere.
    /// Writes stay in order: a durable write makes every earlier relaxed one durable.
    async fn txn_relaxed(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool, MetaError> {
        self.txn(compares, ops).await
    }

    /// Whether [`MetaStore::txn_relaxed`] writes can be lost in a crash (false: they are
    /// as durable as `txn`).
    fn relaxed_may_be_lost(&self) -> bool {
        false
    }

    /// The store's own upkeep, every `every`, for the broker to run under its supervision
    /// until it stops (etcd: compaction of its history); `None` if it needs none. No
    /// default: a wrapper that forgot to forward it would drop the upkeep silently.
    fn upkeep(&self, every: Duration) -> Option<Upkeep>;

    /// Sets one key unconditionally.
    async fn put(&self, key: &str, value: Bytes) -> Result<(), MetaError> {
        self.txn(vec![], vec![Op::Put(key.to_string(), value, None)])
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// An event ends the wait at once; an ended watch holds it half a second, so that a
    /// loop that watches again does not spin; a quiet one holds it `every`.
    #[tokio::test(start_paused = true)]
    async fn a_wait_on_an_ended_watch_pauses_and_an_event_ends_it_at_once() {
        let every = Duration::from_secs(5);
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let event = WatchEvent {
            key: "k".into(),
            value: None,
            revision: 1,
        };
        tx.send(event).await.unwrap_or_default();
        let t = Instant::now();
        next_event(&mut rx, every).await;
        assert_eq!(t.elapsed(), Duration::ZERO, "an event");
        let t = Instant::now();
        next_event(&mut rx, every).await;
        assert_eq!(t.elapsed(), every, "nothing happened");
        drop(tx);
        let t = Instant::now();
        next_event(&mut rx, every).await;
        assert_eq!(t.elapsed(), Duration::from_millis(500), "the watch ended");
    }
}
