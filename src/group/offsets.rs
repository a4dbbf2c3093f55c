//! Committed offsets: kept in memory for reads, made durable in the metadata store in
//! batches. A commit is acknowledged only after its batch is committed, and a commit storm
//! becomes a few transactions (one key per group and topic, at most
//! [`MAX_TXN_OPS`] keys each), not one write per request.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::cluster::Fence;
use crate::error::{Error, Result};
use crate::supervisor::Supervisor;
use stratus_meta::{keys, repo, MetaStore, Op, MAX_TXN_OPS};

/// Prefix of committed-offset records: `offsets/<shard>/<group>/<topic>`.
const QUEUE: usize = 1024;

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The offset.
    pub offset: i64,
    /// Leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
    /// Broker time of the commit (ms).
    pub commit_ms: i64,
}

type TopicOffsets = BTreeMap<i32, Committed>;
type GroupOffsets = BTreeMap<String, TopicOffsets>;

/// A change to apply: `Some` sets, `None` deletes.
pub type Change = (String, String, i32, Option<Committed>);

struct Request {
    changes: Vec<Change>,
    done: oneshot::Sender<Result<()>>,
}

/// The offsets of every group.
pub struct OffsetStore {
    meta: Arc<dyn MetaStore>,
    fence: Option<Arc<Fence>>,
    groups: Mutex<HashMap<String, GroupOffsets>>,
    /// The epoch each loaded shard was loaded at (taken after `groups` when both are held):
    /// a write built from memory is fenced at that epoch, so offsets loaded before a shard
    /// moved away and back are never written over what the other coordinator committed.
    epochs: Mutex<HashMap<u32, i32>>,
    queue: mpsc::Sender<Request>,
}

impl OffsetStore {
    /// An empty store (shards are loaded as they are assigned) and its batching task.
    /// Writes compare `fence` (none: unfenced, for tests).
    pub fn open(
        tasks: &Arc<Supervisor>,
        meta: Arc<dyn MetaStore>,
        fence: Option<Arc<Fence>>,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let store = Arc::new(OffsetStore {
            meta,
            fence,
            groups: Mutex::new(HashMap::new()),
            epochs: Mutex::new(HashMap::new()),
            queue: tx,
        });
        // Ends when the store (the only sender) is dropped.
        tasks.spawn_owned("offset writer", Self::run(Arc::downgrade(&store), rx));
        store
    }

    /// Loads the committed offsets of one coordinator shard.
    pub async fn load_shard(&self, shard: u32, epoch: i32) -> Result<()> {
        let mut loaded: HashMap<String, GroupOffsets> = HashMap::new();
        for (k, v) in self.meta.range(&keys::offsets_prefix(shard)).await? {
            let Some((g, topic)) = keys::parse_offset_key(&k, shard) else {
                continue;
            };
            let offsets: TopicOffsets = repo::decode(&k, &v)?;
            loaded.entry(g).or_default().insert(topic, offsets);
        }
        let mut groups = self.groups();
        groups.retain(|g, _| keys::shard_of(g) != shard);
        groups.extend(loaded);
        self.epochs().insert(shard, epoch);
        Ok(())
    }

    /// Forgets the offsets of a shard this broker no longer coordinates.
    pub fn unload_shard(&self, shard: u32) {
        let mut groups = self.groups();
        groups.retain(|g, _| keys::shard_of(g) != shard);
        self.epochs().remove(&shard);
    }

    fn epochs(&self) -> std::sync::MutexGuard<'_, HashMap<u32, i32>> {
        self.epochs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<String, GroupOffsets>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies changes durably; returns once they are committed.
    pub async fn apply(&self, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let (done, rx) = oneshot::channel();
        self.queue
            .send(Request { changes, done })
            .await
            .map_err(|_| Error::not_durable("the offset store stopped"))?;
        rx.await
            .map_err(|_| Error::not_durable("the offset store stopped"))?
    }

    async fn run(store: std::sync::Weak<Self>, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
                if batch.len() >= QUEUE {
                    break;
                }
            }
            let Some(store) = store.upgrade() else { return };
            let result = store.commit(&batch).await.map_err(Arc::new);
            for r in batch {
                let _ = r.done.send(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => match e.as_ref() {
                        Error::Kafka(c) => Err(Error::Kafka(*c)),
                        _ => Err(Error::not_durable_by("offsets not written", e)),
                    },
                });
            }
        }
    }

    /// Writes the new value of every (group, topic) the batch touches.
    async fn commit(&self, batch: &[Request]) -> Result<()> {
        let mut touched: BTreeMap<(String, String), TopicOffsets> = BTreeMap::new();
        let shards: Vec<(u32, i32)> = {
            let groups = self.groups();
            for r in batch {
                for (g, t, p, c) in &r.changes {
                    let entry = touched.entry((g.clone(), t.clone())).or_insert_with(|| {
                        groups
                            .get(g)
                            .and_then(|go| go.get(t))
                            .cloned()
                            .unwrap_or_default()
                    });
                    match c {
                        Some(c) => entry.insert(*p, c.clone()),
                        None => entry.remove(p),
                    };
                }
            }
            let epochs = self.epochs();
            let mut shards = Vec::new();
            for (g, _) in touched.keys() {
                let shard = keys::shard_of(g);
                match epochs.get(&shard) {
                    Some(e) => shards.push((shard, *e)),
                    // Unfenced (tests) stores have no shards to be fenced at.
                    None if self.fence.is_none() => shards.push((shard, 0)),
                    None => {
                        return Err(Error::Kafka(kafka_protocol::ResponseError::NotCoordinator))
                    }
                }
            }
            shards
        };
        let ops: Vec<Op> = touched
            .iter()
            .map(|((g, t), offsets)| {
                if offsets.is_empty() {
                    Op::Delete(keys::offset_key(g, t))
                } else {
                    Op::Put(keys::offset_key(g, t), repo::encode(offsets), None)
                }
            })
            .collect();
        for chunk in ops.chunks(MAX_TXN_OPS - 1) {
            if let Err(e) =
                crate::coordinator::fenced_txn(&self.meta, self.fence.as_deref(), &shards, chunk)
                    .await
            {
                warn!(error = %e, "offset commit failed");
                return Err(e);
            }
        }
        let mut groups = self.groups();
        for ((g, t), offsets) in touched {
            let go = groups.entry(g.clone()).or_default();
            if offsets.is_empty() {
                go.remove(&t);
            } else {
                go.insert(t, offsets);
            }
            if go.is_empty() {
                groups.remove(&g);
            }
        }
        Ok(())
    }

    /// The committed offset of one partition.
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<Committed> {
        self.groups()
            .get(group)?
            .get(topic)?
            .get(&partition)
            .cloned()
    }

    /// Every committed offset of a group: topic → partition → offset.
    pub fn group(&self, group: &str) -> GroupOffsets {
        self.groups().get(group).cloned().unwrap_or_default()
    }

    /// Whether a group has any committed offset.
    pub fn has_group(&self, group: &str) -> bool {
        self.groups().contains_key(group)
    }

    /// Groups that have committed offsets.
    pub fn group_ids(&self) -> Vec<String> {
        self.groups().keys().cloned().collect()
    }

    /// Deletes every offset of a group.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let changes: Vec<Change> = self
            .group(group)
            .into_iter()
            .flat_map(|(t, ps)| {
                let g = group.to_string();
                ps.into_keys().map(move |p| (g.clone(), t.clone(), p, None))
            })
            .collect();
        self.apply(changes).await
    }

    /// Offsets of `group` committed before `cutoff_ms` (for expiry of empty groups).
    pub fn older_than(&self, group: &str, cutoff_ms: i64) -> Vec<Change> {
        self.group(group)
            .into_iter()
            .flat_map(|(t, ps)| {
                let g = group.to_string();
                ps.into_iter()
                    .filter(move |(_, c)| c.commit_ms < cutoff_ms)
                    .map(move |(p, _)| (g.clone(), t.clone(), p, None))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_meta::embedded::EmbeddedStore;

    fn c(offset: i64) -> Option<Committed> {
        Some(Committed {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_ms: 1,
        })
    }

    #[tokio::test]
    async fn commits_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.redb");
        {
            let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(&path).unwrap());
            let s = OffsetStore::open(&Arc::default(), meta, None);
            let many: Vec<_> = (0..300)
                .map(|i| s.apply(vec![("g/1".into(), format!("t{i}"), 0, c(i))]))
                .collect();
            for r in futures::future::join_all(many).await {
                r.unwrap();
            }
            s.apply(vec![("g/1".into(), "t5".into(), 0, None)])
                .await
                .unwrap();
        }
        let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(&path).unwrap());
        let s = OffsetStore::open(&Arc::default(), meta, None);
        s.load_shard(keys::shard_of("g/1"), 1).await.unwrap();
        assert_eq!(s.get("g/1", "t7", 0).unwrap().offset, 7);
        assert!(s.get("g/1", "t5", 0).is_none());
        assert_eq!(s.group("g/1").len(), 299);
        s.delete_group("g/1").await.unwrap();
        assert!(!s.has_group("g/1"));
    }

    /// Offsets loaded at epoch 1 of a shard that moved away and came back at epoch 3 are
    /// never written back: the other coordinator's commits of epoch 2 would be overwritten
    /// (committed offsets going backwards, seen in the cluster chaos test).
    #[tokio::test]
    async fn offsets_loaded_before_a_move_away_and_back_are_not_written() {
        use stratus_meta::repo::Assignment;
        use stratus_meta::Op;
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetaStore> =
            Arc::new(EmbeddedStore::open(&dir.path().join("m.redb")).unwrap());
        let shard = keys::shard_of("g");
        let assign = |epoch: i32| Assignment {
            incarnation: 7,
            shards: [(shard, epoch)].into_iter().collect(),
            ..Default::default()
        };
        let write = |a: Assignment| {
            let meta = meta.clone();
            async move {
                meta.txn(
                    vec![],
                    vec![Op::Put(keys::assignment_key(1), repo::encode(&a), None)],
                )
                .await
                .unwrap();
            }
        };
        write(assign(1)).await;
        let fence = Arc::new(Fence::new(1, 7));
        fence.refresh(meta.as_ref()).await.unwrap();
        let s = OffsetStore::open(&Arc::default(), meta.clone(), Some(fence.clone()));
        s.load_shard(shard, 1).await.unwrap();
        s.apply(vec![("g".into(), "t".into(), 0, c(5))])
            .await
            .unwrap();

        // Away (epoch 2) and back (epoch 3) without this store reloading the shard.
        write(assign(3)).await;
        fence.refresh(meta.as_ref()).await.unwrap();
        let refused = s.apply(vec![("g".into(), "t".into(), 1, c(9))]).await;
        assert!(
            matches!(
                refused,
                Err(Error::Kafka(kafka_protocol::ResponseError::NotCoordinator))
            ),
            "{refused:?}"
        );
        // Reloaded at the new epoch, it writes again.
        s.load_shard(shard, 3).await.unwrap();
        s.apply(vec![("g".into(), "t".into(), 1, c(9))])
            .await
            .unwrap();
        assert_eq!(s.get("g", "t", 1).map(|c| c.offset), Some(9));
    }
}
