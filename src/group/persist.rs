//! Group records made durable in the order they changed, and before the answers that
//! reveal them.
//!
//! A change is staged under the coordinator's group lock, in the same critical section
//! that made it, with a version from one counter; a writer task writes the newest staged
//! record of each group (an older one it replaces is never written after it) and then
//! raises the durable watermark. A consumer-protocol heartbeat whose answer depends on a
//! change waits for the watermark to pass that change's version, as Kafka answers only
//! once its records are written: after a crash the coordinator loads a state no older than
//! anything a member was told, so members keep their epochs and their commits are taken
//! at once (a member fenced by an older state re-sent an old commit after newer ones:
//! committed offsets went backwards, with librdkafka).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::cluster::Fence;
use crate::error::Error;
use stratus_meta::{keys, MetaStore, Op, MAX_TXN_OPS};

/// How long an answer waits for its change to be written before the member is told to
/// retry (COORDINATOR_NOT_AVAILABLE).
pub const WAIT: Duration = Duration::from_secs(5);

/// One staged record: `None` deletes the group.
struct Staged {
    value: Option<Bytes>,
    /// Epoch of the group's shard when the change was made: the write is fenced at it.
    shard_epoch: i32,
    version: u64,
}

#[derive(Default)]
struct Queue {
    pending: HashMap<String, Staged>,
    /// The version of each group's newest change not yet known durable.
    latest: HashMap<String, u64>,
    next: u64,
}

/// The staged records and the durable watermark.
pub struct Staging {
    queue: Mutex<Queue>,
    wake: mpsc::Sender<()>,
    durable: watch::Sender<u64>,
}

impl Staging {
    /// Staging and its writer task (ended when the staging is dropped).
    pub fn open(
        tasks: &Arc<crate::supervisor::Supervisor>,
        meta: Arc<dyn MetaStore>,
        fence: Arc<Fence>,
    ) -> Arc<Self> {
        let (wake, rx) = mpsc::channel(1);
        let staging = Arc::new(Staging {
            queue: Mutex::new(Queue::default()),
            wake,
            durable: watch::channel(0).0,
        });
        tasks.spawn_owned(
            "group state writer",
            write(Arc::downgrade(&staging), meta, fence, rx),
        );
        staging
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stages the new record of `group` (call it under the lock that made the change).
    pub fn stage(&self, group: &str, value: Option<Bytes>, shard_epoch: i32) {
        let mut q = self.queue();
        q.next += 1;
        let version = q.next;
        q.pending.insert(
            group.to_string(),
            Staged {
                value,
                shard_epoch,
                version,
            },
        );
        q.latest.insert(group.to_string(), version);
        drop(q);
        let _ = self.wake.try_send(());
    }

    /// The version of `group`'s newest change not yet known durable.
    fn pending(&self, group: &str) -> Option<u64> {
        self.queue().latest.get(group).copied()
    }

    /// Waits (up to [`WAIT`]) until every change of `group` staged so far is durable;
    /// whether it is. A record replaced before it was written is settled by the newer one.
    pub async fn settled(&self, group: &str) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut rx = self.durable.subscribe();
        while let Some(version) = self.pending(group) {
            match tokio::time::timeout_at(deadline, rx.wait_for(|d| *d >= version)).await {
                Ok(Ok(_)) => {}
                _ => return false,
            }
        }
        true
    }

    fn take(&self) -> Vec<(String, Staged)> {
        self.queue().pending.drain().collect()
    }

    /// Whether a newer record of `group` was staged since `version`.
    fn replaced(&self, group: &str, version: u64) -> bool {
        self.queue()
            .pending
            .get(group)
            .is_some_and(|s| s.version > version)
    }

    fn done(&self, up_to: u64) {
        self.queue().latest.retain(|_, v| *v > up_to);
        self.durable.send_if_modified(|d| {
            let raise = up_to > *d;
            *d = (*d).max(up_to);
            raise
        });
    }
}

/// Writes what is staged, in batches, until the staging is dropped.
async fn write(
    staging: std::sync::Weak<Staging>,
    meta: Arc<dyn MetaStore>,
    fence: Arc<Fence>,
    mut wake: mpsc::Receiver<()>,
) {
    while wake.recv().await.is_some() {
        let Some(staging) = staging.upgrade() else {
            return;
        };
        loop {
            let batch = staging.take();
            let Some(up_to) = batch.iter().map(|(_, s)| s.version).max() else {
                break;
            };
            for chunk in batch.chunks(MAX_TXN_OPS - 1) {
                write_chunk(&staging, &meta, &fence, chunk).await;
            }
            staging.done(up_to);
        }
    }
}

/// Writes a chunk in one transaction; if a shard moved away, each record on its own (the
/// others still belong to this broker).
async fn write_chunk(
    staging: &Staging,
    meta: &Arc<dyn MetaStore>,
    fence: &Fence,
    chunk: &[(String, Staged)],
) {
    let op = |id: &str, s: &Staged| match &s.value {
        Some(v) => Op::Put(keys::group_key(id), v.clone(), None),
        None => Op::Delete(keys::group_key(id)),
    };
    let shards: Vec<(u32, i32)> = chunk
        .iter()
        .map(|(id, s)| (keys::shard_of(id), s.shard_epoch))
        .collect();
    let ops: Vec<Op> = chunk.iter().map(|(id, s)| op(id, s)).collect();
    match crate::coordinator::fenced_txn(meta, Some(fence), &shards, &ops).await {
        Ok(()) => return,
        Err(Error::Kafka(_)) if chunk.len() > 1 => {}
        // Another broker coordinates the group now; its state is that broker's.
        Err(Error::Kafka(_)) => return,
        Err(e) => warn!(error = %e, "group state not persisted; retrying"),
    }
    for (id, s) in chunk {
        let shard = [(keys::shard_of(id), s.shard_epoch)];
        let mut delay = Duration::from_millis(50);
        loop {
            // A newer record replaces this one: it is written next.
            if staging.replaced(id, s.version) {
                break;
            }
            match crate::coordinator::fenced_txn(
                meta,
                Some(fence),
                &shard,
                std::slice::from_ref(&op(id, s)),
            )
            .await
            {
                Ok(()) | Err(Error::Kafka(_)) => break,
                Err(e) => {
                    warn!(group = %id, error = %e, "group state not persisted; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FaultyMetaStore;
    use stratus_meta::embedded::EmbeddedStore;
    use stratus_meta::repo::{self, Assignment};

    #[tokio::test]
    async fn an_answer_waits_until_its_group_is_written_and_the_newest_record_wins() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn MetaStore> =
            Arc::new(EmbeddedStore::open(&dir.path().join("m.redb")).unwrap());
        let faulty = Arc::new(FaultyMetaStore::new(inner.clone()));
        let meta: Arc<dyn MetaStore> = faulty.clone();
        let shard = keys::shard_of("g");
        let a = Assignment {
            incarnation: 7,
            shards: [(shard, 1)].into_iter().collect(),
            ..Default::default()
        };
        meta.txn(
            vec![],
            vec![Op::Put(keys::assignment_key(1), repo::encode(&a), None)],
        )
        .await
        .unwrap();
        let fence = Arc::new(Fence::new(1, 7));
        fence.refresh(meta.as_ref()).await.unwrap();
        let staging = Staging::open(&Arc::default(), meta.clone(), fence);
        let stored = || async {
            inner
                .get(&keys::group_key("g"))
                .await
                .unwrap()
                .map(|v| v.value)
        };

        // The store fails: the change is not durable, so it is not answered.
        faulty.txns.fail_next(u32::MAX);
        staging.stage("g", Some(Bytes::from_static(b"1")), 1);
        assert!(!staging.settled("g").await);
        assert_eq!(stored().await, None);
        // A newer record replaces the one being retried; the group settles with it.
        staging.stage("g", Some(Bytes::from_static(b"2")), 1);
        faulty.txns.heal();
        assert!(staging.settled("g").await);
        assert_eq!(stored().await, Some(Bytes::from_static(b"2")));
        // Unrelated groups do not wait for it, and a deletion is a record too.
        assert!(staging.settled("other").await);
        staging.stage("g", None, 1);
        assert!(staging.settled("g").await);
        assert_eq!(stored().await, None);
    }
}
