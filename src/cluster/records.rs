//! Fenced writes of partition records: the one way a broker changes what the metadata
//! store says about a partition it owns (a seal, retention, DeleteRecords). A write applies
//! only while this broker owns the partition at the epoch its state was taken under; a write
//! that reported an error (it may have been applied anyway) is settled against the store
//! before anything else is built from the partition's state.
//!
//! Sees the metadata store, the fence and partition state; never the broker, the WAL or a
//! client.

use std::sync::Arc;

use kafka_protocol::ResponseError as Code;
use tracing::info;

use super::{Fence, Owned};
use crate::error::{Error, Result};
use crate::partition::Partition;
use stratus_meta::repo::{self, PartitionRecord};
use stratus_meta::{keys, MetaStore, Op};

/// The writer of partition records.
pub struct PartitionRecords {
    meta: Arc<dyn MetaStore>,
    fence: Arc<Fence>,
}

impl PartitionRecords {
    /// A writer over `meta`, fenced by `fence`.
    pub fn new(meta: Arc<dyn MetaStore>, fence: Arc<Fence>) -> Self {
        Self { meta, fence }
    }

    /// Writes a partition's durable record as its state has it (the caller holds its
    /// `record_lock`), with extra operations in the same transaction. Fenced: see
    /// [`PartitionRecords::write`].
    pub async fn persist(&self, p: &Partition, extra: Vec<Op>) -> Result<()> {
        let rec = p.record();
        self.write(p, &rec, extra).await
    }

    /// Writes `rec` as the partition's record (the caller holds its `record_lock`). It
    /// applies only while this broker owns the partition at the epoch its state was taken
    /// under; otherwise NOT_LEADER_OR_FOLLOWER and nothing is written. After an error the
    /// state is marked unsure and the next write settles it first.
    pub async fn write(&self, p: &Partition, rec: &PartitionRecord, extra: Vec<Op>) -> Result<()> {
        if self.settle(p).await? {
            // `rec` was built from a state that lacked an applied write: the caller builds
            // it again from the settled state.
            return Err(Error::not_durable(
                "the partition record was ahead of this broker's state; retry",
            ));
        }
        let result = self.try_write(p, rec, extra).await;
        if result.is_err() {
            p.state().mark_record_unsure();
        }
        result
    }

    /// After a record write that failed (it may have been applied anyway), makes the
    /// partition's state agree with the stored record before anything is built from it
    /// or written over it; otherwise a later write built from the older state would move
    /// the stored record backwards (dropping a segment, or data other brokers already
    /// collected from the WAL). Returns whether the state changed.
    pub async fn settle(&self, p: &Partition) -> Result<bool> {
        if !p.state().record_unsure() {
            return Ok(false);
        }
        let key = keys::partition_key(&p.topic_id, p.index);
        let stored = repo::load::<PartitionRecord>(self.meta.as_ref(), &key).await?;
        let mut s = p.state();
        let changed = match stored {
            Some((rec, _)) if s.owner_epoch().is_some() => s.adopt(&rec),
            _ => {
                s.record_settled();
                false
            }
        };
        if changed {
            info!(topic = %p.topic, partition = p.index, sealed_end = s.sealed_end(), log_start = s.log_start(),
                "a partition record write that reported an error had been applied; state taken from the store");
        }
        Ok(changed)
    }

    async fn try_write(&self, p: &Partition, rec: &PartitionRecord, extra: Vec<Op>) -> Result<()> {
        let epoch = p.state().owner_epoch();
        let mut ops = vec![Op::Put(
            keys::partition_key(&p.topic_id, p.index),
            repo::encode(rec),
            None,
        )];
        ops.extend(extra);
        let owns = |owned: &Owned| epoch.is_some() && owned.epoch(&p.topic_id, p.index) == epoch;
        if self.fence.txn(self.meta.as_ref(), owns, &ops).await? {
            Ok(())
        } else {
            Err(Error::Kafka(Code::NotLeaderOrFollower))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_meta::embedded::EmbeddedStore;

    const TOPIC_ID: &str = "00000000-0000-0000-0000-000000000001";

    /// Writes this broker's assignment (`topic_id:0` at `epoch`) and lets the fence read it.
    async fn assign(meta: &dyn MetaStore, fence: &Fence, epoch: i32) {
        let mut a = repo::Assignment {
            incarnation: fence.incarnation(),
            ..Default::default()
        };
        a.partitions
            .insert(keys::PartitionId::new(TOPIC_ID, 0), epoch);
        meta.put(&keys::assignment_key(1), repo::encode(&a))
            .await
            .unwrap();
        fence.refresh(meta).await.unwrap();
    }

    #[tokio::test]
    async fn a_record_is_written_only_at_the_epoch_the_state_was_taken_under() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetaStore> =
            Arc::new(EmbeddedStore::open(&dir.path().join("meta.redb")).unwrap());
        let fence = Arc::new(Fence::new(1, 7));
        assign(meta.as_ref(), &fence, 3).await;
        let p = Partition::new(
            Arc::from(TOPIC_ID),
            Arc::from("topic"),
            0,
            &PartitionRecord::default(),
        );
        let mut s = crate::partition::PartitionState::from_record(&PartitionRecord::default());
        s.take_ownership(3);
        p.install(s);
        let records = PartitionRecords::new(meta.clone(), fence.clone());
        records.persist(&p, vec![]).await.unwrap();
        let key = p.id().record_key();
        let written = meta.get(&key).await.unwrap().unwrap().mod_revision;

        // The controller moves the partition to epoch 4 (a take-over elsewhere and back):
        // the state taken at 3 may not write any more.
        assign(meta.as_ref(), &fence, 4).await;
        let err = records.persist(&p, vec![]).await.unwrap_err();
        assert_eq!(err.code(), Code::NotLeaderOrFollower.code());
        assert_eq!(
            meta.get(&key).await.unwrap().unwrap().mod_revision,
            written,
            "nothing was written"
        );
    }
}
