//! The cluster: brokers register under a lease, one is elected controller and assigns
//! partitions and coordinator shards to live brokers, each with an epoch. A move is one
//! metadata transaction; the new owner recovers the unsealed tail from the WAL index, and
//! no data is copied.
//!
//! - [`Fence`]: what this broker owns, and the compare that every write it makes for what
//!   it owns carries (the revision of its assignment key);
//! - [`View`]: every live broker and every owner, from watching `brokers/`;
//! - `membership`: registration and keep-alive; `controller`: election and placement;
//!   `ownership`: applying this broker's assignment (recover what it gains, drop what it
//!   loses); `records`: fenced writes of partition records.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use stratus_meta::repo::{self, Assignment, ControllerRecord, Registration};
use stratus_meta::{keys, Compare, MetaError, MetaStore, Op};

pub mod admin;
pub mod cli;
pub mod controller;
pub mod load;
pub mod membership;
pub mod ownership;
pub mod placement;
pub mod records;
pub mod routing;
pub mod topics;
mod traffic;
pub mod users;

/// This broker's assignment as last seen, with the revision of its key.
#[derive(Debug, Clone, Default)]
pub struct Owned {
    /// Mod revision of `brokers/<node>/assignment` (0: none yet).
    pub revision: u64,
    /// What this incarnation owns (empty if the key names another incarnation).
    pub assignment: Assignment,
}

impl Owned {
    /// Epoch at which a partition is owned.
    pub fn epoch(&self, topic_id: &str, partition: i32) -> Option<i32> {
        self.assignment
            .partitions
            .get(&keys::PartitionId::new(topic_id, partition))
            .copied()
    }
}

/// What this broker owns, shared by every writer.
pub struct Fence {
    node: i32,
    incarnation: u64,
    current: Mutex<Arc<Owned>>,
    /// Bumped whenever `current` changes.
    pub changed: watch::Sender<u64>,
}

impl Fence {
    /// A fence that owns nothing yet.
    pub fn new(node: i32, incarnation: u64) -> Self {
        Fence {
            node,
            incarnation,
            current: Mutex::new(Arc::new(Owned::default())),
            changed: watch::Sender::new(0),
        }
    }

    /// This broker's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The current view.
    pub fn get(&self) -> Arc<Owned> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The compare a write for `owned` must carry.
    pub fn compare(&self, owned: &Owned) -> Compare {
        Compare::Revision(
            keys::assignment_key(self.node),
            (owned.revision > 0).then_some(owned.revision),
        )
    }

    /// Installs an assignment read at `revision`, if newer than the current one.
    pub fn update(&self, revision: u64, a: Assignment) -> Arc<Owned> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if revision > cur.revision {
            let assignment = if a.incarnation == self.incarnation {
                a
            } else {
                Assignment::default()
            };
            *cur = Arc::new(Owned {
                revision,
                assignment,
            });
            self.changed.send_modify(|c| *c += 1);
        }
        cur.clone()
    }

    /// The one fenced write: applies `ops` in a transaction that compares this broker's
    /// assignment revision, as long as `owns` holds for the assignment it compares. A lost
    /// compare (the assignment changed) re-reads the assignment and tries again, at most
    /// three times. Returns `false`, with nothing written, once `owns` no longer holds or
    /// the assignment keeps changing: the caller answers NOT_LEADER / NOT_COORDINATOR.
    pub async fn txn(
        &self,
        meta: &dyn MetaStore,
        owns: impl Fn(&Owned) -> bool,
        ops: &[Op],
    ) -> Result<bool, MetaError> {
        let mut owned = self.get();
        for _ in 0..3 {
            if !owns(&owned) {
                return Ok(false);
            }
            if meta.txn(vec![self.compare(&owned)], ops.to_vec()).await? {
                return Ok(true);
            }
            owned = self.refresh(meta).await?;
        }
        Ok(false)
    }

    /// Re-reads the assignment key (after a write failed its compare).
    pub async fn refresh(&self, meta: &dyn MetaStore) -> Result<Arc<Owned>, MetaError> {
        let key = keys::assignment_key(self.node);
        match repo::load::<Assignment>(meta, &key).await? {
            Some((a, rev)) => Ok(self.update(rev, a)),
            None => Ok(self.get()),
        }
    }
}

/// The cluster as this broker sees it.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Live brokers.
    pub brokers: BTreeMap<i32, Registration>,
    /// Drained brokers.
    pub drained: Vec<i32>,
    /// Every assignment key.
    pub assignments: BTreeMap<i32, (Assignment, u64)>,
    /// The controller.
    pub controller: Option<i32>,
    /// Partition → (owner, epoch), for live owners only.
    pub owners: HashMap<keys::PartitionId, (i32, i32)>,
    /// Shard → (owner, epoch), for live owners only.
    pub shard_owners: HashMap<u32, (i32, i32)>,
}

impl View {
    /// Owner and epoch of a partition.
    pub fn owner(&self, topic_id: &str, partition: i32) -> Option<(i32, i32)> {
        self.owners
            .get(&keys::PartitionId::new(topic_id, partition))
            .copied()
    }
}

/// Reads `brokers/` and the controller key into a [`View`].
pub async fn read_view(meta: &dyn MetaStore) -> Result<View, MetaError> {
    let mut view = View::default();
    for (k, v) in meta.range(keys::BROKERS).await? {
        let mut parts = k[keys::BROKERS.len()..].splitn(2, '/');
        let (Some(node), Some(what)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(node) = node.parse::<i32>() else {
            continue;
        };
        match what {
            "registration" => {
                if let Ok(r) = repo::decode::<Registration>(&k, &v) {
                    view.brokers.insert(node, r);
                }
            }
            "assignment" => {
                if let Ok(a) = repo::decode::<Assignment>(&k, &v) {
                    view.assignments.insert(node, (a, v.mod_revision));
                }
            }
            "drain" => view.drained.push(node),
            _ => {}
        }
    }
    if let Some((c, _)) = repo::load::<ControllerRecord>(meta, keys::CONTROLLER).await? {
        view.controller = Some(c.node);
    }
    for (node, (a, _)) in &view.assignments {
        let live = view
            .brokers
            .get(node)
            .is_some_and(|r| r.incarnation == a.incarnation);
        if !live {
            continue;
        }
        for (p, e) in &a.partitions {
            view.owners.insert(p.clone(), (*node, *e));
        }
        for (s, e) in &a.shards {
            view.shard_owners.insert(*s, (*node, *e));
        }
    }
    Ok(view)
}

/// Keeps `view` current: re-reads on every change under `brokers/` and `cluster/`, and
/// at least every `resync` (a watch may end; the store may have been away).
pub async fn watch_view(
    meta: Arc<dyn MetaStore>,
    view: watch::Sender<Arc<View>>,
    resync: Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut failing = false;
    loop {
        let mut brokers = meta.watch(keys::BROKERS);
        let mut cluster = meta.watch("cluster/");
        match read_view(meta.as_ref()).await {
            Ok(v) => {
                view.send_replace(Arc::new(v));
                failing = false;
            }
            Err(e) => {
                if !failing {
                    warn!(error = %e, "cluster view not refreshed; retrying");
                }
                failing = true;
                // The store is away: back off instead of spinning on closed watches.
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
        }
        let deadline = tokio::time::sleep(resync);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = &mut deadline => break,
                e = brokers.recv() => if e.is_none() { break },
                e = cluster.recv() => if e.is_none() { break },
            }
            failing = false;
            // Coalesce a burst of changes into one re-read.
            tokio::time::sleep(Duration::from_millis(20)).await;
            while brokers.try_recv().is_ok() || cluster.try_recv().is_ok() {}
            match read_view(meta.as_ref()).await {
                Ok(v) => {
                    view.send_replace(Arc::new(v));
                }
                Err(e) => {
                    if !failing {
                        warn!(error = %e, "cluster view not refreshed; retrying");
                    }
                    failing = true;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use stratus_meta::embedded::EmbeddedStore;

    fn assignment(incarnation: u64, epoch: Option<i32>) -> Assignment {
        Assignment {
            incarnation,
            partitions: epoch
                .into_iter()
                .map(|e| (keys::PartitionId::new("t", 0), e))
                .collect(),
            shards: BTreeMap::new(),
        }
    }

    async fn assign(meta: &dyn MetaStore, a: &Assignment) {
        meta.put(&keys::assignment_key(1), repo::encode(a))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_fenced_write_follows_the_assignment_and_stops_when_ownership_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let meta = EmbeddedStore::open(&dir.path().join("m.redb")).unwrap();
        let fence = Fence::new(1, 7);
        let owns_at_1 = |o: &Owned| o.epoch("t", 0) == Some(1);
        let put = |v: &'static str| [Op::Put("k".into(), Bytes::from(v), None)];
        assign(&meta, &assignment(7, Some(1))).await;
        fence.refresh(&meta).await.unwrap();
        assert!(fence.txn(&meta, owns_at_1, &put("a")).await.unwrap());

        // The controller rewrites the assignment (same partition, same epoch): the first
        // compare fails, the fence re-reads, and the write applies.
        assign(&meta, &assignment(7, Some(1))).await;
        assert!(fence.txn(&meta, owns_at_1, &put("b")).await.unwrap());
        assert_eq!(&meta.get("k").await.unwrap().unwrap().value[..], b"b");

        // The partition moved to epoch 2 elsewhere and back: a write built at epoch 1 is
        // refused, and so is every write once the assignment names another incarnation.
        assign(&meta, &assignment(7, Some(2))).await;
        assert!(!fence.txn(&meta, owns_at_1, &put("c")).await.unwrap());
        assign(&meta, &assignment(8, Some(1))).await;
        let owns_any = |o: &Owned| o.epoch("t", 0).is_some();
        assert!(!fence.txn(&meta, owns_any, &put("d")).await.unwrap());
        assert_eq!(&meta.get("k").await.unwrap().unwrap().value[..], b"b");
    }
}
