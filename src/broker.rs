//! The broker's shared state: settings, stores, the WAL, and the topics it owns; recovery
//! at start and the topic lifecycle (create, delete, add partitions, alter configs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError as Code;
use tracing::{info, warn};

use crate::config::Settings;
use crate::error::{Error, Result};
use stratus_log::cache::BlockCache;
use stratus_log::clock::Clock;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::membership::Membership;
use crate::cluster::routing::Routing;
use crate::cluster::{Fence, Owned, View};
use crate::partition::Partition;
use crate::registry::Registry;
pub use crate::registry::Topic;
use crate::supervisor::Supervisor;
use crate::wal::Wal;
use stratus_log::objects::Objects;
use stratus_meta::repo;
use stratus_meta::{keys, Compare, MetaStore, Op};

pub use crate::config::MAX_PARTITIONS;
const PRODUCER_ID_BLOCK: i64 = 1000;

/// The broker.
pub struct Broker {
    /// Settings.
    pub settings: Settings,
    /// Metadata store.
    pub meta: Arc<dyn MetaStore>,
    /// Object store.
    pub objects: Arc<Objects>,
    /// Read cache.
    pub cache: Arc<BlockCache>,
    /// The WAL.
    pub wal: Arc<Wal>,
    /// Reads of partitions: the block cache and parsed segment indexes.
    pub reader: Arc<crate::read::Reader>,
    /// Cluster id.
    pub cluster_id: String,
    /// Every topic this broker knows.
    pub registry: Arc<Registry>,
    pub(crate) producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// The topic lifecycle (create, delete, grow, reconfigure, follow the records).
    pub topics: Arc<crate::topics::TopicAdmin>,
    /// When the broker started.
    pub started: Instant,
    /// The group coordinator.
    pub groups: Arc<crate::group::Coordinator>,
    /// Bytes of requests read and not yet answered (`queued.max.request.bytes`).
    pub request_memory: Arc<tokio::sync::Semaphore>,
    /// What this broker owns, and the compare its writes carry.
    pub fence: Arc<Fence>,
    /// Every live broker and every owner.
    pub view: watch::Sender<Arc<View>>,
    /// Where clients go (leaders, live brokers, rack replicas).
    pub routing: Arc<Routing>,
    /// This broker's registration.
    pub membership: Arc<Membership>,
    /// Serializes changes of ownership.
    pub(crate) ownership_lock: tokio::sync::Mutex<()>,
    /// Stops the cluster tasks (after the listeners and the WAL).
    pub(crate) cluster_cancel: CancellationToken,
    /// Read-only index of partitions owned elsewhere (brokers with a rack serve them to
    /// consumers of that rack).
    pub replicas: Arc<crate::replica::Replicas>,
    /// The critical background tasks; the broker stops when one of them does.
    pub supervisor: Arc<Supervisor>,
    /// Wall-clock time for record timestamps, segment age, retention and object ages
    /// (tests move a manual clock instead of sleeping).
    pub clock: Arc<dyn Clock>,
}

pub use crate::error::AdminError;

impl Broker {
    /// SIGTERM: marks this broker as leaving, so the controller moves its partitions and
    /// shards to the others, and waits (up to `controlled.shutdown.timeout.ms`) until it
    /// owns nothing — or at once if no other broker can take them.
    pub async fn hand_off(&self) {
        let started = Instant::now();
        if let Err(e) = self.membership.leave().await {
            warn!(error = %e, "could not announce the shutdown; partitions move when the lease expires");
            return;
        }
        let deadline =
            started + Duration::from_millis(self.settings.server.controlled_shutdown_timeout_ms);
        let me = self.settings.server.node_id;
        let mut changed = self.fence.changed.subscribe();
        loop {
            let owned = self.fence.get();
            if owned.assignment.partitions.is_empty() && owned.assignment.shards.is_empty() {
                info!(
                    ms = started.elapsed().as_millis() as u64,
                    "handed everything off"
                );
                return;
            }
            let others = {
                let v = self.view.borrow();
                v.brokers
                    .iter()
                    .any(|(n, r)| *n != me && !r.leaving && !v.drained.contains(n))
            };
            if !others || Instant::now() >= deadline {
                if others {
                    warn!("hand-off timed out; the rest moves when the lease ends");
                }
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), changed.changed()).await;
        }
    }

    /// Writes a partition's durable record (the caller holds its `record_lock`), with
    /// extra operations in the same transaction. Fenced: it applies only while this broker
    /// owns the partition at the epoch its state was taken under; otherwise
    /// NOT_LEADER_OR_FOLLOWER and nothing is written.
    pub async fn persist_partition(&self, p: &Partition, extra: Vec<Op>) -> Result<()> {
        let rec = p.record();
        self.write_partition_record(p, &rec, extra).await
    }

    /// Writes `rec` as the partition's record, fenced as [`Broker::persist_partition`].
    pub async fn write_partition_record(
        &self,
        p: &Partition,
        rec: &stratus_meta::repo::PartitionRecord,
        extra: Vec<Op>,
    ) -> Result<()> {
        if self.settle_record(p).await? {
            // `rec` was built from a state that lacked an applied write: the caller builds
            // it again from the settled state.
            return Err(Error::not_durable(
                "the partition record was ahead of this broker's state; retry",
            ));
        }
        let result = self.try_write_partition_record(p, rec, extra).await;
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
    pub async fn settle_record(&self, p: &Partition) -> Result<bool> {
        if !p.state().record_unsure() {
            return Ok(false);
        }
        let key = keys::partition_key(&p.topic_id, p.index);
        let stored = repo::load::<repo::PartitionRecord>(self.meta.as_ref(), &key).await?;
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

    async fn try_write_partition_record(
        &self,
        p: &Partition,
        rec: &stratus_meta::repo::PartitionRecord,
        extra: Vec<Op>,
    ) -> Result<()> {
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

    /// A new producer id; ids are reserved from the metadata store in blocks.
    pub async fn allocate_producer_id(&self) -> Result<i64> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            loop {
                let cur = self.meta.get(keys::PRODUCER_IDS).await?;
                let start: i64 = cur
                    .as_ref()
                    .and_then(|v| std::str::from_utf8(&v.value).ok()?.parse().ok())
                    .unwrap_or(0);
                let end = start + PRODUCER_ID_BLOCK;
                let ok = self
                    .meta
                    .txn(
                        vec![Compare::Revision(
                            keys::PRODUCER_IDS.into(),
                            cur.map(|v| v.mod_revision),
                        )],
                        vec![Op::Put(
                            keys::PRODUCER_IDS.into(),
                            end.to_string().into(),
                            None,
                        )],
                    )
                    .await?;
                if ok {
                    *ids = (start, end);
                    break;
                }
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }
}
