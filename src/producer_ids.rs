//! Producer ids (InitProducerId): unique across the cluster, reserved from the metadata
//! store in blocks so that most allocations touch no store. The transaction coordinator
//! will take its ids here too.
//!
//! Sees the metadata store only.

use std::sync::Arc;

use stratus_meta::{keys, Compare, MetaStore, Op};

use crate::error::Result;

/// Ids reserved per metadata write.
const BLOCK: i64 = 1000;

/// The allocator of producer ids.
pub struct ProducerIds {
    meta: Arc<dyn MetaStore>,
    /// The reserved block not handed out yet: `next..end`.
    block: tokio::sync::Mutex<(i64, i64)>,
}

impl ProducerIds {
    /// An allocator that reserves its blocks in `meta`.
    pub fn new(meta: Arc<dyn MetaStore>) -> Self {
        Self {
            meta,
            block: tokio::sync::Mutex::new((0, 0)),
        }
    }

    /// A new producer id, never handed out before by any broker.
    pub async fn allocate(&self) -> Result<i64> {
        let mut ids = self.block.lock().await;
        if ids.0 >= ids.1 {
            *ids = self.reserve().await?;
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Moves the stored high mark one block up, with a compare on its revision so that two
    /// brokers never reserve the same block.
    async fn reserve(&self) -> Result<(i64, i64)> {
        loop {
            let cur = self.meta.get(keys::PRODUCER_IDS).await?;
            let start: i64 = cur
                .as_ref()
                .and_then(|v| std::str::from_utf8(&v.value).ok()?.parse().ok())
                .unwrap_or(0);
            let end = start + BLOCK;
            let compare = Compare::Revision(keys::PRODUCER_IDS.into(), cur.map(|v| v.mod_revision));
            let put = Op::Put(keys::PRODUCER_IDS.into(), end.to_string().into(), None);
            if self.meta.txn(vec![compare], vec![put]).await? {
                return Ok((start, end));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_meta::embedded::EmbeddedStore;

    #[tokio::test]
    async fn two_allocators_on_one_store_never_hand_out_the_same_id() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetaStore> =
            Arc::new(EmbeddedStore::open(&dir.path().join("meta.redb")).unwrap());
        let (a, b) = (
            ProducerIds::new(meta.clone()),
            ProducerIds::new(meta.clone()),
        );
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1500 {
            assert!(seen.insert(a.allocate().await.unwrap()));
            assert!(seen.insert(b.allocate().await.unwrap()));
        }
        // A restarted broker starts from the stored mark, past everything handed out.
        let c = ProducerIds::new(meta);
        assert!(c.allocate().await.unwrap() > *seen.iter().max().unwrap());
    }
}
