//! Embedded metadata backend: a crash-safe redb file, for the single-node default.
//!
//! Each stored value is prefixed with a 16-byte header: the mod revision and the lease id
//! (0 for none). Leases live in memory: they cannot outlive this process, so keys written
//! under a lease are deleted when the store is opened again.
//!
//! Relaxed writes ([`MetaStore::txn_relaxed`]) commit without an fsync (redb's
//! `Durability::None`): the next durable write, or the sync every [`SYNC_INTERVAL`] while
//! any is pending, makes them durable. A crash loses at most those of the last interval,
//! which their writer must be able to rebuild (the WAL rebuilds its index entries from
//! the objects' footers).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::mpsc;

use super::{Compare, LeaseId, MetaError, MetaStore, Op, Versioned, WatchEvent, MAX_TXN_OPS};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const REV: TableDefinition<&str, u64> = TableDefinition::new("revision");
const WATCH_QUEUE: usize = 4096;
/// redb's page cache (its default is 1 GiB): the working set of the metadata is small,
/// and without a bound the cache grows with the file (tens of MiB an hour of WAL commits).
const CACHE_BYTES: usize = 32 << 20;
/// Longest time a relaxed write stays in memory only (while the process runs).
pub const SYNC_INTERVAL: Duration = Duration::from_millis(200);

/// The embedded store.
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` once the store is dropped: the file is closed then, even while a blocking
    /// task (the sync tick, an abandoned call) still holds this `Inner`, so the same path
    /// can be opened again at once.
    db: RwLock<Option<Database>>,
    watchers: Mutex<Vec<(String, mpsc::Sender<WatchEvent>)>>,
    leases: Mutex<HashMap<LeaseId, (Duration, Instant)>>,
    next_lease: Mutex<LeaseId>,
    /// A relaxed write committed since the last durable one.
    unsynced: AtomicBool,
}

fn err(e: impl std::fmt::Display) -> MetaError {
    MetaError::Unavailable(e.to_string())
}

fn decode(raw: &[u8]) -> Option<(u64, LeaseId, Bytes)> {
    if raw.len() < 16 {
        return None;
    }
    let rev = u64::from_be_bytes(raw[0..8].try_into().ok()?);
    let lease = i64::from_be_bytes(raw[8..16].try_into().ok()?);
    Some((rev, lease, Bytes::copy_from_slice(&raw[16..])))
}

/// The revision of a stored value, without copying the value.
fn revision_of(raw: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(raw.get(0..8)?.try_into().ok()?)).filter(|_| raw.len() >= 16)
}

impl EmbeddedStore {
    /// Opens (or creates) the store file; deletes keys of leases from an earlier process.
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    MetaError::Locked(path.display().to_string())
                }
                e => err(e),
            })?;
        let w = db.begin_write().map_err(err)?;
        {
            let mut kv = w.open_table(KV).map_err(err)?;
            w.open_table(REV).map_err(err)?;
            let stale: Vec<String> = kv
                .iter()
                .map_err(err)?
                .filter_map(|e| e.ok())
                .filter(|(_, v)| decode(v.value()).is_some_and(|(_, l, _)| l != 0))
                .map(|(k, _)| k.value().to_string())
                .collect();
            for k in stale {
                kv.remove(k.as_str()).map_err(err)?;
            }
        }
        w.commit().map_err(err)?;
        let inner = Arc::new(Inner {
            db: RwLock::new(Some(db)),
            watchers: Mutex::new(Vec::new()),
            leases: Mutex::new(HashMap::new()),
            next_lease: Mutex::new(1),
            unsynced: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SYNC_INTERVAL);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.unsynced.load(Ordering::Relaxed) {
                    let inner = inner.clone();
                    // A failure leaves the flag set: the next tick tries again.
                    let _ = tokio::task::spawn_blocking(move || inner.sync()).await;
                }
                let expired: Vec<LeaseId> = {
                    let leases = inner.leases.lock().unwrap_or_else(|p| p.into_inner());
                    leases
                        .iter()
                        .filter(|(_, (ttl, last))| last.elapsed() > *ttl)
                        .map(|(id, _)| *id)
                        .collect()
                };
                for id in expired {
                    let inner = inner.clone();
                    let _ = tokio::task::spawn_blocking(move || inner.revoke(id)).await;
                }
            }
        });
        Ok(EmbeddedStore { inner })
    }
}

impl Inner {
    /// Runs `f` on the open database; an error once the store is closed.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        match db.as_ref() {
            Some(db) => f(db),
            None => Err(MetaError::Unavailable(
                "the embedded store is closed".into(),
            )),
        }
    }

    /// Makes every relaxed write so far durable: an empty durable commit.
    fn sync(&self) -> Result<(), MetaError> {
        self.with_db(|db| self.sync_in(db))
    }

    fn sync_in(&self, db: &Database) -> Result<(), MetaError> {
        let unsynced = self.unsynced.swap(false, Ordering::AcqRel);
        let r = db
            .begin_write()
            .map_err(err)
            .and_then(|w| w.commit().map_err(err));
        if r.is_err() && unsynced {
            self.unsynced.store(true, Ordering::Release);
        }
        r
    }

    /// One write transaction: the compares, then `ops`, then (for a revoke) the deletion of
    /// every key under `revoked` as of this transaction — found and deleted in it, so a
    /// key put again under another lease meanwhile is never deleted with the old one.
    /// Not `durable`: committed without an fsync (see the module's documentation).
    fn write(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
        revoked: Option<LeaseId>,
        durable: bool,
    ) -> Result<bool, MetaError> {
        self.with_db(|db| self.write_in(db, compares, ops, revoked, durable))
    }

    fn write_in(
        &self,
        db: &Database,
        compares: Vec<Compare>,
        mut ops: Vec<Op>,
        revoked: Option<LeaseId>,
        durable: bool,
    ) -> Result<bool, MetaError> {
        let mut w = db.begin_write().map_err(err)?;
        if !durable {
            w.set_durability(Durability::None).map_err(err)?;
        }
        let mut events = Vec::new();
        {
            let mut kv = w.open_table(KV).map_err(err)?;
            if let Some(id) = revoked {
                for e in kv.iter().map_err(err)? {
                    let (k, v) = e.map_err(err)?;
                    if decode(v.value()).is_some_and(|(_, l, _)| l == id) {
                        ops.push(Op::Delete(k.value().to_string()));
                    }
                }
            }
            for c in &compares {
                let ok = match c {
                    Compare::Revision(k, want) => {
                        let cur = kv
                            .get(k.as_str())
                            .map_err(err)?
                            .and_then(|v| decode(v.value()));
                        cur.map(|(r, _, _)| r) == *want
                    }
                    Compare::Value(k, want) => {
                        let cur = kv
                            .get(k.as_str())
                            .map_err(err)?
                            .and_then(|v| decode(v.value()));
                        cur.map(|(_, _, v)| v) == *want
                    }
                };
                if !ok {
                    return Ok(false);
                }
            }
            if ops.is_empty() {
                return Ok(true);
            }
            let mut revt = w.open_table(REV).map_err(err)?;
            let rev = revt
                .get("rev")
                .map_err(err)?
                .map(|v| v.value())
                .unwrap_or(0)
                + 1;
            revt.insert("rev", rev).map_err(err)?;
            for op in ops {
                match op {
                    Op::Put(k, v, lease) => {
                        let mut raw = Vec::with_capacity(16 + v.len());
                        raw.extend_from_slice(&rev.to_be_bytes());
                        raw.extend_from_slice(&lease.unwrap_or(0).to_be_bytes());
                        raw.extend_from_slice(&v);
                        kv.insert(k.as_str(), raw.as_slice()).map_err(err)?;
                        events.push(WatchEvent {
                            key: k,
                            value: Some(v),
                            revision: rev,
                        });
                    }
                    Op::Delete(k) => {
                        if kv.remove(k.as_str()).map_err(err)?.is_some() {
                            events.push(WatchEvent {
                                key: k,
                                value: None,
                                revision: rev,
                            });
                        }
                    }
                }
            }
        }
        // Set before the commit: a sync that starts after it then covers this write.
        if !durable {
            self.unsynced.store(true, Ordering::Release);
        }
        w.commit().map_err(err)?;
        self.notify(events);
        Ok(true)
    }

    fn notify(&self, events: Vec<WatchEvent>) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        // A watcher whose queue is full is dropped: it sees its channel close and must
        // re-read with `range` instead of silently missing an event.
        watchers.retain(|(prefix, tx)| {
            events
                .iter()
                .filter(|e| e.key.starts_with(prefix.as_str()))
                .all(|e| tx.try_send(e.clone()).is_ok())
        });
    }

    fn revoke(&self, id: LeaseId) -> Result<(), MetaError> {
        if self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
            .is_none()
        {
            return Err(MetaError::LeaseNotFound(id));
        }
        self.write(vec![], vec![], Some(id), true).map(|_| ())
    }
}

impl Drop for EmbeddedStore {
    /// Closes the file, keeping the relaxed writes: waits for calls still running on it
    /// (a sync tick, a call whose future was dropped) — milliseconds — then syncs.
    fn drop(&mut self) {
        let mut db = self.inner.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = db.take() {
            if self.inner.unsynced.load(Ordering::Acquire) {
                let _ = self.inner.sync_in(&open);
            }
        }
    }
}

impl EmbeddedStore {
    /// A transaction within the size limit, durable or relaxed.
    async fn transact(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
        durable: bool,
    ) -> Result<bool, MetaError> {
        if compares.len() + ops.len() > MAX_TXN_OPS {
            return Err(MetaError::TooLarge(format!(
                "{} operations in one transaction",
                compares.len() + ops.len()
            )));
        }
        let inner = self.inner.clone();
        blocking(move || inner.write(compares, ops, None, durable)).await
    }
}

impl EmbeddedStore {
    /// Every key under `prefix` in key order, as `each` makes of it and its stored bytes
    /// (`None`: left out), in one read transaction.
    async fn scan<T: Send + 'static>(
        &self,
        prefix: &str,
        each: impl Fn(&str, &[u8]) -> Option<T> + Send + 'static,
    ) -> Result<Vec<T>, MetaError> {
        let inner = self.inner.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            inner.with_db(|db| {
                let r = db.begin_read().map_err(err)?;
                let kv = r.open_table(KV).map_err(err)?;
                let mut out = Vec::new();
                for e in kv.range(prefix.as_str()..).map_err(err)? {
                    let (k, v) = e.map_err(err)?;
                    if !k.value().starts_with(prefix.as_str()) {
                        break;
                    }
                    out.extend(each(k.value(), v.value()));
                }
                Ok(out)
            })
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MetaError> + Send + 'static,
) -> Result<T, MetaError> {
    tokio::task::spawn_blocking(f).await.map_err(err)?
}

#[async_trait]
impl MetaStore for EmbeddedStore {
    /// Nothing: redb keeps no history to compact.
    fn upkeep(&self, _every: Duration) -> Option<crate::Upkeep> {
        None
    }

    async fn get(&self, key: &str) -> Result<Option<Versioned>, MetaError> {
        Ok(self.get_many(&[key.to_string()]).await?.pop().flatten())
    }

    async fn range(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, MetaError> {
        self.scan(prefix, |k, raw| {
            decode(raw).map(|(rev, _, value)| {
                let v = Versioned {
                    value,
                    mod_revision: rev,
                };
                (k.to_string(), v)
            })
        })
        .await
    }

    async fn range_keys(&self, prefix: &str) -> Result<Vec<(String, u64)>, MetaError> {
        self.scan(prefix, |k, raw| {
            revision_of(raw).map(|rev| (k.to_string(), rev))
        })
        .await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Versioned>>, MetaError> {
        let inner = self.inner.clone();
        let keys = keys.to_vec();
        blocking(move || {
            inner.with_db(|db| {
                let r = db.begin_read().map_err(err)?;
                let kv = r.open_table(KV).map_err(err)?;
                keys.iter()
                    .map(|key| {
                        Ok(kv
                            .get(key.as_str())
                            .map_err(err)?
                            .and_then(|v| decode(v.value()))
                            .map(|(rev, _, value)| Versioned {
                                value,
                                mod_revision: rev,
                            }))
                    })
                    .collect()
            })
        })
        .await
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool, MetaError> {
        self.transact(compares, ops, true).await
    }

    async fn txn_relaxed(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool, MetaError> {
        self.transact(compares, ops, false).await
    }

    fn relaxed_may_be_lost(&self) -> bool {
        true
    }

    fn watch(&self, prefix: &str) -> mpsc::Receiver<WatchEvent> {
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        self.inner
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((prefix.to_string(), tx));
        rx
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError> {
        let id = {
            let mut next = self
                .inner
                .next_lease
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        self.inner
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (ttl, Instant::now()));
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), MetaError> {
        let mut leases = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        match leases.get_mut(&lease) {
            Some((_, last)) => {
                *last = Instant::now();
                Ok(())
            }
            None => Err(MetaError::LeaseNotFound(lease)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), MetaError> {
        let inner = self.inner.clone();
        blocking(move || inner.revoke(lease)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embedded_passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("meta.redb")).unwrap();
        crate::conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn relaxed_writes_are_read_at_once_checked_like_others_and_kept_by_a_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let absent = || vec![Compare::Revision("a".into(), None)];
        let put = |v: &'static [u8]| vec![Op::Put("a".into(), Bytes::from_static(v), None)];
        {
            let store = EmbeddedStore::open(&path).unwrap();
            assert!(store.relaxed_may_be_lost());
            assert!(store.txn_relaxed(absent(), put(b"1")).await.unwrap());
            assert_eq!(store.get("a").await.unwrap().unwrap().value, &b"1"[..]);
            assert!(!store.txn_relaxed(absent(), put(b"2")).await.unwrap());
        }
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(store.get("a").await.unwrap().unwrap().value, &b"1"[..]);
    }

    #[tokio::test]
    async fn survives_reopen_and_drops_leased_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let store = EmbeddedStore::open(&path).unwrap();
            store.put("a", Bytes::from_static(b"1")).await.unwrap();
            let l = store.grant_lease(Duration::from_secs(60)).await.unwrap();
            store
                .txn(
                    vec![],
                    vec![Op::Put("b".into(), Bytes::from_static(b"2"), Some(l))],
                )
                .await
                .unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(
            store.get("a").await.unwrap().unwrap().value,
            Bytes::from_static(b"1")
        );
        assert!(store.get("b").await.unwrap().is_none());
    }
}
