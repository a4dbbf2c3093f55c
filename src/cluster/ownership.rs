//! Applying this broker's assignment: partitions it loses stop taking writes at once (and
//! their uncommitted data is dropped: the WAL commit filters it out); partitions it gains
//! are recovered from the metadata store — the partition record, then every committed WAL
//! range beyond its sealed end, from any broker's WAL — and then take writes at the new
//! epoch. Nothing is copied: the tail stays in the WAL objects where it was written.
//!
//! [`Ownership`] sees the metadata store, the fence, the registry (and the topic lifecycle,
//! to learn a topic it has not seen yet) and the group coordinator's shards; never the
//! broker, the WAL or a client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Fence, Owned};
use crate::error::{Error, Result};
use crate::group::Coordinator;
use crate::partition::{Partition, PartitionState, TailChunk};
use crate::registry::Registry;
use crate::topics::TopicAdmin;
use stratus_log::clock::Clock;
use stratus_meta::keys::PartitionId;
use stratus_meta::repo::{self, Assignment, PartitionRecord, WalEntry, WalRange};
use stratus_meta::{keys, MetaStore, Op, MAX_TXN_OPS};

/// Applies this broker's assignment to its partitions and coordinator shards.
pub struct Ownership {
    node_id: i32,
    meta: Arc<dyn MetaStore>,
    fence: Arc<Fence>,
    registry: Arc<Registry>,
    topics: Arc<TopicAdmin>,
    groups: Arc<Coordinator>,
    clock: Arc<dyn Clock>,
    /// Serializes changes of ownership.
    serial: tokio::sync::Mutex<()>,
}

impl Ownership {
    /// Ownership of `node_id`'s partitions (in `registry`, learning new topics through
    /// `topics`) and shards (of `groups`), fenced by `fence`.
    pub fn new(
        node_id: i32,
        meta: Arc<dyn MetaStore>,
        fence: Arc<Fence>,
        registry: Arc<Registry>,
        topics: Arc<TopicAdmin>,
        groups: Arc<Coordinator>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            node_id,
            meta,
            fence,
            registry,
            topics,
            groups,
            clock,
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// Follows this broker's assignment key until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let key = keys::assignment_key(self.node_id);
        loop {
            let mut events = self.meta.watch(&key);
            let mut fence_changed = self.fence.changed.subscribe();
            if let Err(e) = self.sync().await {
                warn!(error = %e, "assignment not applied; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            let closed = tokio::select! {
                _ = cancel.cancelled() => return,
                e = events.recv() => e.is_none(),
                _ = fence_changed.changed() => false,
                _ = tokio::time::sleep(Duration::from_secs(5)) => false,
            };
            if closed {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// Reads the assignment and applies it.
    pub async fn sync(&self) -> Result<()> {
        let owned = self.fence.refresh(self.meta.as_ref()).await?;
        self.apply(&owned).await
    }

    /// Makes the partitions' and shards' ownership match `owned`.
    pub async fn apply(&self, owned: &Owned) -> Result<()> {
        let _serial = self.serial.lock().await;
        let known = |a: &Assignment| {
            a.partitions.keys().all(|p| {
                uuid::Uuid::parse_str(&p.topic_id)
                    .ok()
                    .is_some_and(|id| self.registry.topic_by_id(&id).is_some())
            })
        };
        if !known(&owned.assignment) {
            // A topic created on another broker that this one has not seen yet.
            self.topics.sync_topics().await?;
        }
        let mut gain = Vec::new();
        let mut lost = 0;
        for topic in self.registry.topics() {
            for p in &topic.partitions {
                let want = owned.epoch(&p.topic_id, p.index);
                let have = p.state().owner_epoch();
                if have.is_some() && have != want {
                    p.release();
                    lost += 1;
                }
                if let Some(e) = want {
                    if have != want {
                        gain.push((p.clone(), e));
                    }
                }
            }
        }
        if !gain.is_empty() {
            let started = Instant::now();
            let n = gain.len();
            self.acquire(owned, gain).await?;
            info!(
                partitions = n,
                ms = started.elapsed().as_millis() as u64,
                "took ownership"
            );
        }
        if lost > 0 {
            info!(partitions = lost, "gave up ownership");
        }
        self.groups.set_shards(&owned.assignment.shards).await;
        Ok(())
    }

    /// Recovers partitions from the metadata store and starts taking writes for them.
    async fn acquire(&self, owned: &Owned, gain: Vec<(Arc<Partition>, i32)>) -> Result<()> {
        // WAL ranges first, then partition records: a range missing from the index was
        // sealed before it went, so the record read after shows it sealed.
        let mut ranges: HashMap<PartitionId, Vec<(WalRange, Arc<str>, u64)>> =
            gain.iter().map(|(p, _)| (p.id(), Vec::new())).collect();
        for (k, v) in self.meta.range(keys::WAL).await? {
            let entry: WalEntry = repo::decode_struct(&k, &v.value)?;
            let object: Arc<str> = Arc::from(entry.object.as_str());
            let size = entry.data_end();
            for r in entry.ranges {
                if let Some(list) = ranges.get_mut(&r.partition_id()) {
                    list.push((r, object.clone(), size));
                }
            }
        }
        for chunk in gain.chunks(MAX_TXN_OPS - 1) {
            let mut states = Vec::with_capacity(chunk.len());
            let mut ops = Vec::with_capacity(chunk.len());
            for (p, epoch) in chunk {
                let key = p.id().record_key();
                let rec: PartitionRecord = repo::load(self.meta.as_ref(), &key)
                    .await?
                    .map(|(r, _)| r)
                    .unwrap_or_else(|| PartitionRecord {
                        epochs: vec![],
                        ..Default::default()
                    });
                let mut list = ranges.remove(&p.id()).unwrap_or_default();
                list.sort_by_key(|(r, _, _)| r.base_offset);
                let state = rebuild(p, &rec, &list, *epoch, self.clock.now_ms());
                ops.push(Op::Put(key, repo::encode(&state.record()), None));
                states.push((p.clone(), state));
            }
            let applied = self.meta.txn(vec![self.fence.compare(owned)], ops).await?;
            if !applied {
                // The assignment changed again; the next round applies the newer one.
                return Err(Error::Kafka(
                    kafka_protocol::ResponseError::NotLeaderOrFollower,
                ));
            }
            for (p, state) in states {
                p.install(state);
            }
        }
        Ok(())
    }
}

/// A partition's state from its record and the committed WAL ranges past its sealed end.
pub(crate) fn rebuild(
    p: &Partition,
    rec: &PartitionRecord,
    ranges: &[(WalRange, Arc<str>, u64)],
    epoch: i32,
    now_ms: i64,
) -> PartitionState {
    let mut s = PartitionState::from_record(rec);
    for (r, object, size) in ranges {
        if r.end_offset <= s.next_offset() {
            continue;
        }
        if r.base_offset != s.next_offset() {
            warn!(topic = %p.topic, partition = p.index, expected = s.next_offset(), found = r.base_offset,
                "gap in the committed WAL ranges; the partition continues after it");
        }
        s.recover_range(TailChunk::from_wal(r, object, *size, now_ms), &r.producers);
    }
    s.take_ownership(epoch);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(base: i64, end: i64) -> (WalRange, Arc<str>, u64) {
        let r = WalRange {
            topic_id: "t".into(),
            partition: 0,
            base_offset: base,
            end_offset: end,
            pos: 0,
            len: 10,
            max_timestamp: base,
            producers: vec![],
        };
        (r, Arc::from(format!("wal/1/{base}").as_str()), 100)
    }

    #[test]
    fn a_gained_partition_is_its_record_plus_the_committed_ranges_past_its_sealed_end() {
        let p = Partition::new(
            Arc::from("t"),
            Arc::from("t"),
            0,
            &PartitionRecord::default(),
        );
        let rec = PartitionRecord {
            log_start_offset: 2,
            sealed_end: 5,
            epochs: vec![(3, 0)],
            ..Default::default()
        };
        // 3..5 is sealed already; 5..8 and 8..10 follow; 10..12 is missing (a gap the
        // index cannot fill) and 12..14 continues after it.
        let ranges = [range(3, 5), range(5, 8), range(8, 10), range(12, 14)];
        let s = rebuild(&p, &rec, &ranges, 7, 1_000);
        assert_eq!((s.log_start(), s.sealed_end()), (2, 5));
        assert_eq!((s.next_offset(), s.high_watermark()), (14, 14));
        let tail: Vec<_> = s
            .tail()
            .iter()
            .map(|c| (c.base, c.end, c.created_ms))
            .collect();
        assert_eq!(tail, vec![(5, 8, 1_000), (8, 10, 1_000), (12, 14, 1_000)]);
        assert_eq!(s.owner_epoch(), Some(7));
        assert_eq!(
            s.epochs(),
            &[(3, 0), (7, 14)],
            "the new epoch starts at the log end"
        );
    }
}
