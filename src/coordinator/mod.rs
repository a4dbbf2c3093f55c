//! What every coordinator shares: state split into shards by key hash
//! ([`stratus_meta::keys::shard_of`]), each shard coordinated by one broker at an epoch the
//! controller hands out, loaded when the shard is gained and dropped when it is lost, and
//! written only with a fence at the epoch it was loaded at. Groups use it now; the
//! transaction coordinator will use the same machinery.
//!
//! A coordinator may use the metadata store and the fence; it never sees partitions, the
//! WAL or the handlers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kafka_protocol::ResponseError as Code;
use tracing::warn;

use crate::cluster::{Fence, Owned};
use crate::error::{Error, Result};
use stratus_meta::{MetaStore, Op};

/// A coordinator's per-shard state.
#[async_trait]
pub trait ShardState: Send + Sync {
    /// Loads what shard `shard` holds, gained at `epoch`.
    async fn load(&self, shard: u32, epoch: i32) -> Result<()>;
    /// Drops what shard `shard` holds (it moved away, or moves back at a new epoch).
    fn unload(&self, shard: u32);
}

/// The shards this broker coordinates, and the epoch each was loaded at.
#[derive(Debug, Default)]
pub struct Shards {
    owned: Mutex<BTreeMap<u32, i32>>,
}

impl Shards {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, i32>> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The epoch a shard was loaded at, if this broker coordinates it.
    pub fn epoch(&self, shard: u32) -> Option<i32> {
        self.lock().get(&shard).copied()
    }

    /// Whether this broker coordinates a shard.
    pub fn owns(&self, shard: u32) -> bool {
        self.lock().contains_key(&shard)
    }

    /// Makes the owned shards `assigned`: unloads those lost or moved to another epoch,
    /// then loads those gained. A shard that fails to load stays unowned (requests for it
    /// get NOT_COORDINATOR) and is tried again at the next assignment.
    pub async fn set(&self, assigned: &BTreeMap<u32, i32>, state: &dyn ShardState) {
        let current = self.lock().clone();
        for (s, e) in &current {
            if assigned.get(s) != Some(e) {
                self.lock().remove(s);
                state.unload(*s);
            }
        }
        for (s, e) in assigned {
            if current.get(s) == Some(e) {
                continue;
            }
            match state.load(*s, *e).await {
                Ok(()) => {
                    self.lock().insert(*s, *e);
                }
                Err(err) => {
                    warn!(shard = s, error = %err, "coordinator shard not loaded; will retry")
                }
            }
        }
    }
}

/// A write of state of `shards`, each with the epoch it was loaded at: applied only while
/// this broker coordinates every one of them at that epoch; else NOT_COORDINATOR and
/// nothing is written. Without a fence (tests) it is applied as is.
pub async fn fenced_txn(
    meta: &Arc<dyn MetaStore>,
    fence: Option<&Fence>,
    shards: &[(u32, i32)],
    ops: &[Op],
) -> Result<()> {
    let Some(fence) = fence else {
        meta.txn(vec![], ops.to_vec()).await?;
        return Ok(());
    };
    let owns = |owned: &Owned| {
        shards
            .iter()
            .all(|(s, e)| owned.assignment.shards.get(s) == Some(e))
    };
    if fence.txn(meta.as_ref(), owns, ops).await? {
        Ok(())
    } else {
        Err(Error::Kafka(Code::NotCoordinator))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>, Mutex<Option<u32>>);

    #[async_trait]
    impl ShardState for Log {
        async fn load(&self, shard: u32, epoch: i32) -> Result<()> {
            if *self.1.lock().unwrap() == Some(shard) {
                return Err(Error::Kafka(Code::CoordinatorLoadInProgress));
            }
            self.0.lock().unwrap().push(format!("load {shard}@{epoch}"));
            Ok(())
        }
        fn unload(&self, shard: u32) {
            self.0.lock().unwrap().push(format!("unload {shard}"));
        }
    }

    #[tokio::test]
    async fn shards_follow_the_assignment_and_reload_at_a_new_epoch() {
        let (shards, log) = (Shards::default(), Log::default());
        shards.set(&BTreeMap::from([(1, 1), (2, 1)]), &log).await;
        assert_eq!((shards.epoch(1), shards.epoch(2)), (Some(1), Some(1)));
        // Shard 1 moved away and back (epoch 3): what was loaded at 1 is dropped first.
        shards.set(&BTreeMap::from([(1, 3), (2, 1)]), &log).await;
        // Shard 2 lost; shard 4 gained but fails to load: not owned, tried again later.
        *log.1.lock().unwrap() = Some(4);
        shards.set(&BTreeMap::from([(1, 3), (4, 3)]), &log).await;
        assert!(!shards.owns(2) && !shards.owns(4));
        *log.1.lock().unwrap() = None;
        shards.set(&BTreeMap::from([(1, 3), (4, 3)]), &log).await;
        assert_eq!(shards.epoch(4), Some(3));
        assert_eq!(
            *log.0.lock().unwrap(),
            ["load 1@1", "load 2@1", "unload 1", "load 1@3", "unload 2", "load 4@3"]
        );
    }
}
