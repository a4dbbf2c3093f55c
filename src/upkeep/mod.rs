//! Background upkeep of the log, one job per file: [`seal`] (WAL ranges into segment
//! objects), [`wal_gc`] (WAL objects once every range in them is sealed), [`compact`]
//! (small WAL objects into one, bounding the index), [`merge`] (old segments of a
//! partition into fewer, bounding its record), [`orphans`]
//! (WAL objects that no commit names), [`retention`] (segments past retention, and
//! DeleteRecords). Jobs read time from an injected clock, so tests move it by hand.
//!
//! [`Upkeep`] holds what the jobs use: the stores, the cache and segment reader, the
//! registry of partitions, the fenced writer of partition records and the cluster view. It
//! never sees the broker and never answers clients (the DeleteRecords handler calls
//! [`delete_records`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::records::PartitionRecords;
use crate::cluster::View;
use crate::config::Settings;
use crate::read::Reader;
use crate::registry::Registry;
use stratus_log::cache::BlockCache;
use stratus_log::clock::Clock;
use stratus_log::objects::Objects;
use stratus_meta::MetaStore;

pub mod compact;
pub mod index;
pub mod merge;
pub mod metrics;
pub mod orphans;
pub mod retention;
pub mod seal;
mod tiers;
pub mod wal_gc;

pub use orphans::{sweep_orphan_records, sweep_orphan_segments, sweep_orphan_wal_objects};
pub use retention::{apply_retention, delete_records};
pub use seal::seal;
pub use wal_gc::collect_wal_garbage;

/// What the upkeep jobs use.
pub struct Upkeep {
    /// Settings (the node id, the intervals, topic defaults).
    pub settings: Settings,
    /// Metadata store (WAL index, partition and topic records).
    pub meta: Arc<dyn MetaStore>,
    /// Object store (WAL objects and segments).
    pub objects: Arc<Objects>,
    /// Read cache (WAL ranges to seal; entries of collected objects are dropped).
    pub cache: Arc<BlockCache>,
    /// Segment reads (entries of deleted segments are dropped).
    pub reader: Arc<Reader>,
    /// Every topic this broker knows.
    pub registry: Arc<Registry>,
    /// Fenced writes of partition records.
    pub records: Arc<PartitionRecords>,
    /// The cluster (who is controller, which brokers live).
    pub view: watch::Receiver<Arc<View>>,
    /// Record timestamps, segment ages, retention and object ages.
    pub clock: Arc<dyn Clock>,
    /// Seals, retention and WAL collection, counted.
    pub metrics: Arc<metrics::UpkeepMetrics>,
    /// What this broker owns (WAL compaction moves only its own partitions' data).
    pub fence: Arc<crate::cluster::Fence>,
    /// WAL compaction's state between runs.
    pub compaction: compact::Compaction,
    /// The WAL index as collection and compaction last read it.
    pub wal_index: tokio::sync::Mutex<index::WalIndex>,
}

/// The ids of every topic that exists, as the store has them now.
async fn topic_ids(up: &Upkeep) -> crate::error::Result<std::collections::HashSet<String>> {
    let mut ids = std::collections::HashSet::new();
    for (k, v) in up.meta.range(stratus_meta::keys::TOPICS).await? {
        ids.insert(stratus_meta::repo::decode::<stratus_meta::repo::TopicRecord>(&k, &v)?.id);
    }
    Ok(ids)
}

/// Longest a job runs on a runtime thread between two yields ([`Slice`]).
const SLICE: Duration = Duration::from_millis(2);

/// Lets other tasks run once a job's loop has held its runtime thread for [`SLICE`]. The
/// jobs share the runtime's threads with the WAL's committer and the connections: a loop
/// over the WAL index (thousands of entries after a burst, each decoded) that never
/// awaited anything pending held a thread for 350-600 ms, and a WAL commit that yielded
/// meanwhile waited as long, with every producer behind it (produce p99 260 ms at 50 MiB/s
/// right after 2.5 GB into 100 partitions).
pub(crate) struct Slice(Instant);

impl Slice {
    pub(crate) fn start() -> Self {
        Slice(Instant::now())
    }

    /// Yields if the slice is used up, and starts the next one.
    pub(crate) async fn check(&mut self) {
        if self.0.elapsed() >= SLICE {
            tokio::task::yield_now().await;
            self.0 = Instant::now();
        }
    }
}

/// This broker's copy of a partition, if it knows the topic.
fn local_partition(
    up: &Upkeep,
    topic_id: &str,
    partition: i32,
) -> Option<Arc<crate::partition::Partition>> {
    uuid::Uuid::parse_str(topic_id)
        .ok()
        .and_then(|id| up.registry.topic_by_id(&id))
        .and_then(|t| t.partitions.get(partition as usize).cloned())
}

/// Whether this broker is the controller (the sweeps run there only).
fn is_controller(up: &Upkeep) -> bool {
    up.view.borrow().controller == Some(up.settings.server.node_id)
}

/// Runs sealing, retention, WAL collection and compaction, and the sweeps until cancelled
/// (segment merges run beside it: [`merge::run`]).
pub async fn run(up: Arc<Upkeep>, cancel: CancellationToken) {
    let mut seal_tick = tokio::time::interval(Duration::from_millis(
        up.settings.storage.seal_check_interval_ms,
    ));
    let retention_every =
        Duration::from_millis(up.settings.storage.retention_check_interval_ms.max(1));
    let mut retention_tick = tokio::time::interval(retention_every);
    let mut gc_tick = tokio::time::interval(Duration::from_millis(
        (up.settings.storage.seal_check_interval_ms * 5).max(1000),
    ));
    gc_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweep_tick = tokio::time::interval(Duration::from_secs(600));
    sweep_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    seal_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    retention_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let compact_every = up.settings.storage.wal_compaction_interval_ms;
    let mut compact_tick = tokio::time::interval(Duration::from_millis(compact_every.max(1)));
    compact_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sealing_failed = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = compact_tick.tick(), if compact_every > 0 => {
                let max = up.settings.storage.wal_compaction_max_bytes;
                match compact::compact_wal(&up, max).await {
                    Ok(done) if !done.replaced.is_empty() => {
                        // Reads and seals may still hold the old locations for a moment.
                        let up = up.clone();
                        let grace = Duration::from_millis(compact_every.max(5000));
                        tokio::spawn(async move {
                            tokio::time::sleep(grace).await;
                            compact::delete_replaced(&up, &done.replaced).await;
                        });
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "wal compaction failed; will retry"),
                }
            }
            _ = seal_tick.tick() => {
                // One line when sealing starts failing (a store outage fails every
                // partition, every tick) and one when it works again.
                match seal::seal_due(&up).await {
                    (0, _) if sealing_failed => {
                        info!("sealing works again");
                        sealing_failed = false;
                    }
                    (n, Some(e)) if n > 0 && !sealing_failed => {
                        warn!(partitions = n, error = %e, "sealing failed; will retry");
                        sealing_failed = true;
                    }
                    _ => {}
                }
            }
            _ = gc_tick.tick() => {
                if let Err(e) = collect_wal_garbage(&up).await {
                    warn!(error = %e, "wal garbage collection failed; will retry");
                }
            }
            _ = sweep_tick.tick() => {
                if let Err(e) = sweep_orphan_wal_objects(&up, orphans::ORPHAN_MIN_AGE_MS).await {
                    warn!(error = %e, "sweep of uncommitted WAL objects failed; will retry");
                }
                if let Err(e) = sweep_orphan_segments(&up, orphans::ORPHAN_MIN_AGE_MS).await {
                    warn!(error = %e, "sweep of unnamed segments failed; will retry");
                }
                if let Err(e) = sweep_orphan_records(&up).await {
                    warn!(error = %e, "sweep of partition records of deleted topics failed; will retry");
                }
            }
            _ = retention_tick.tick() => retention::run_once(&up).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// On one runtime thread, a task that is ready runs while a sliced loop is still busy:
    /// without the yield it would wait for the whole loop (here: forever).
    #[tokio::test(flavor = "current_thread")]
    async fn a_sliced_loop_lets_a_waiting_task_run_within_a_few_slices() {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        tokio::spawn(async move { flag.store(true, Ordering::Relaxed) });
        let started = Instant::now();
        let mut slice = Slice::start();
        while !ran.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(5) {
            slice.check().await;
        }
        assert!(ran.load(Ordering::Relaxed), "the other task never ran");
        assert!(
            started.elapsed() < SLICE * 25,
            "it ran only after {:?}",
            started.elapsed()
        );
    }
}
