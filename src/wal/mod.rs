//! The write-ahead log: one buffer for every partition of the broker, flushed as ONE
//! object per flush, then committed with ONE metadata transaction of constant size. Only
//! after the commit do the partitions' high watermarks move and producers get their acks.
//! The commit is relaxed ([`MetaStore::txn_relaxed`]): on the embedded store a crash may
//! lose it, and [`recover`] commits it again from the object's footer at the next start.
//!
//! Object format ([`stratus_log::wal_format`]): each partition's batches, contiguous, then
//! a footer (the same versioned [`WalEntry`] record the index holds), its length and the
//! magic `STRWAL01`.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use opentelemetry::trace::FutureExt as _;
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cluster::Fence;
use crate::error::{Error, Result};
use crate::partition::{Appended, Partition};
use stratus_log::batch::Batch;
use stratus_log::cache::BlockCache;
use stratus_log::objects::{ObjectError, Objects};
use stratus_log::paths::WalObject;
use stratus_log::wal_format;
use stratus_meta::repo::{self, ProducerBatch, WalEntry, WalRange};
use stratus_meta::{keys, Compare, MetaStore, Op};
use stratus_metrics::trace::SpanGuard;

mod commit;
mod metrics;
mod object;
pub mod policy;
mod recover;

pub use recover::{recover, void_floor};

use object::{build_object, put_with_retries};
use policy::{BufferView, FlushPolicy, Next};

const PUT_ATTEMPTS: u32 = 5;
const FAILED_REMEMBERED: usize = 256;

struct Entry {
    partition: Arc<Partition>,
    /// The owner epoch the data was appended under: it commits only if the broker still
    /// owns the partition at that epoch.
    epoch: i32,
    end: i64,
    bytes: Bytes,
    max_timestamp: i64,
    producers: Vec<ProducerBatch>,
    _permit: OwnedSemaphorePermit,
    /// The sampled request that appended it, if any: its trace gets the flush's spans.
    trace: Option<opentelemetry::Context>,
}

/// A flush whose object is being written.
struct Flush {
    seq: u64,
    /// Held until the flush finishes: their permits bound the bytes in flight.
    _entries: Vec<Entry>,
    body: Bytes,
    entry: WalEntry,
    /// `entry` encoded (the object's footer): the index value when every range commits.
    index: Bytes,
    /// The partition of each range of `entry`, and its epoch, in the same order.
    partitions: Vec<(Arc<Partition>, i32)>,
    /// When it left the buffer.
    started: Instant,
    /// The flush's span, when a sampled request is in it.
    span: SpanGuard,
}

/// The PUT of a flush's object.
type Put = tokio::task::JoinHandle<Result<(), ObjectError>>;

#[derive(Default)]
struct Buffer {
    seq: u64,
    entries: Vec<Entry>,
    bytes: usize,
    first_at: Option<Instant>,
    /// When the newest buffered byte arrived.
    last_at: Option<Instant>,
    poisoned: bool,
    /// Flushes taken from the buffer and not yet finished.
    in_flight: usize,
    /// When the last flush was taken.
    last_flush: Option<Instant>,
    /// Bytes the flushes of the last intervals took.
    recent: policy::Recent,
    /// The ranges the buffered entries make (partition and epoch), and an upper bound of
    /// the size of their index entry ([`repo::wal_entry_bound`]).
    ranges: HashSet<(usize, i32)>,
    producer_batches: usize,
    /// An append waits for the buffer to be taken: one more range or batch would make
    /// its index entry larger than the metadata store takes.
    full: bool,
}

impl Buffer {
    /// Whether entries of `batches` for range `range` fit in the buffer's index entry (an
    /// empty buffer takes anything: alone, it is the smallest entry the data can make).
    fn fits(&self, range: (usize, i32), batches: &[Batch], max_index_bytes: usize) -> bool {
        if self.entries.is_empty() {
            return true;
        }
        let ranges = self.ranges.len() + usize::from(!self.ranges.contains(&range));
        let producers = self.producer_batches + idempotent(batches);
        repo::wal_entry_bound(ranges, producers) <= max_index_bytes
    }
}

/// The batches that carry a producer id (each is a producer batch in the index).
fn idempotent(batches: &[Batch]) -> usize {
    batches.iter().filter(|b| b.producer_id >= 0).count()
}

/// Progress of flushes: every sequence up to `done` is finished, and those in `failed`
/// failed (their data was not committed and is forgotten).
#[derive(Debug, Clone, Default)]
pub struct FlushStatus {
    /// Highest finished flush.
    pub done: u64,
    /// Recently failed flushes.
    pub failed: VecDeque<u64>,
}

/// Settings of the WAL.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// This broker.
    pub node_id: i32,
    /// Unique per process start; part of object names so that no name is reused.
    pub incarnation: u64,
    /// Longest linger before a flush, and the shortest gap between flushes of an idle WAL.
    pub flush_interval: Duration,
    /// Buffered bytes that are flushed at once while the pipeline has room.
    pub flush_min_bytes: usize,
    /// Flush when this many bytes are buffered.
    pub flush_bytes: usize,
    /// Backpressure bound.
    pub max_buffer_bytes: usize,
    /// WAL objects being written at once.
    pub max_in_flight: usize,
    /// The largest index entry a flush makes ([`repo::WAL_ENTRY_BUDGET`]; tests lower it):
    /// with more partitions or producer batches buffered, appends wait for the next flush.
    pub max_index_bytes: usize,
}

/// The WAL.
pub struct Wal {
    cfg: WalConfig,
    policy: FlushPolicy,
    meta: Arc<dyn MetaStore>,
    objects: Arc<Objects>,
    cache: Arc<BlockCache>,
    buffer: Mutex<Buffer>,
    wake: Notify,
    /// Notified when the buffer is taken or emptied (appends waiting for room wait on it).
    taken: Notify,
    memory: Arc<Semaphore>,
    status: watch::Sender<FlushStatus>,
    /// Bumped after every commit: long-polling fetches wait on it.
    pub committed: watch::Sender<u64>,
    /// What this broker owns: every commit compares its revision.
    fence: Arc<Fence>,
    healthy: AtomicBool,
    max_memory: usize,
    metrics: metrics::WalMetrics,
}

/// Batches handed to the WAL: [`Pending::acked`] resolves once they are durable.
pub struct Pending {
    /// First offset of the batches (or of the original, for a duplicate).
    pub base_offset: i64,
    /// One past the last offset that must be committed for the ack.
    end_offset: i64,
    /// The owner epoch they were appended under.
    epoch: i32,
    /// The flush that makes them durable.
    pub seq: u64,
    partition: Arc<Partition>,
    status: watch::Receiver<FlushStatus>,
}

impl Pending {
    /// The base offset once the batches are committed; NOT_LEADER_OR_FOLLOWER if the
    /// partition moved (or moved away and back) before they were, so that they were not
    /// written here and the client retries with the owner; NotDurable if their flush
    /// failed.
    pub async fn acked(mut self) -> Result<i64> {
        flushed(&mut self.status, self.seq).await?;
        let s = self.partition.state();
        if s.owner_epoch() == Some(self.epoch) && s.high_watermark() >= self.end_offset {
            Ok(self.base_offset)
        } else {
            Err(Error::Kafka(
                kafka_protocol::ResponseError::NotLeaderOrFollower,
            ))
        }
    }
}

/// Waits until flush `seq` is finished; an error if it failed.
async fn flushed(rx: &mut watch::Receiver<FlushStatus>, seq: u64) -> Result<()> {
    let st = rx
        .wait_for(|s| s.done >= seq)
        .await
        .map_err(|_| Error::not_durable("the broker is shutting down"))?;
    if st.failed.contains(&seq) {
        return Err(Error::not_durable(
            "the WAL flush holding this write failed",
        ));
    }
    Ok(())
}

impl Wal {
    /// Creates the WAL; `next_seq` follows the highest committed index entry.
    pub fn new(
        cfg: WalConfig,
        meta: Arc<dyn MetaStore>,
        objects: Arc<Objects>,
        cache: Arc<BlockCache>,
        next_seq: u64,
        fence: Arc<Fence>,
    ) -> Self {
        let max = cfg.max_buffer_bytes.clamp(1 << 20, Semaphore::MAX_PERMITS);
        let policy = FlushPolicy {
            interval: cfg.flush_interval,
            min_bytes: cfg.flush_min_bytes.min(cfg.flush_bytes),
            max_in_flight: cfg.max_in_flight.max(1),
        };
        Wal {
            policy,
            memory: Arc::new(Semaphore::new(max)),
            max_memory: max,
            metrics: metrics::WalMetrics::new(),
            cfg,
            meta,
            objects,
            cache,
            buffer: Mutex::new(Buffer {
                seq: next_seq,
                ..Default::default()
            }),
            wake: Notify::new(),
            taken: Notify::new(),
            status: watch::Sender::new(FlushStatus {
                done: next_seq.saturating_sub(1),
                failed: VecDeque::new(),
            }),
            committed: watch::Sender::new(0),
            fence,
            healthy: AtomicBool::new(true),
        }
    }

    /// Whether the last flush succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Validated batches → offsets under the partition lock → the WAL buffer. Waits for
    /// buffer space first (backpressure), and for the next flush when the buffer's index
    /// entry has no room for another range or producer batch.
    pub async fn append(
        &self,
        partition: &Arc<Partition>,
        batches: &[Batch],
        log_append_time: Option<i64>,
        now_ms: i64,
    ) -> Result<Pending> {
        let size: usize = batches.iter().map(|b| b.bytes.len()).sum();
        let permits = size.clamp(1, self.cfg.max_buffer_bytes.max(1 << 20)) as u32;
        let span = SpanGuard::child("wal.append");
        let mut permit = Some(
            self.memory
                .clone()
                .acquire_many_owned(permits)
                .await
                .map_err(|_| Error::not_durable("the broker is shutting down"))?,
        );
        let mut append =
            || self.try_append(partition, batches, log_append_time, now_ms, &mut permit);
        loop {
            if let Some(pending) = append()? {
                drop(span);
                return Ok(pending);
            }
            // Full: wait for the buffer to be taken, registered before looking again so
            // that a take in between is not missed (and only here, off the common path).
            let taken = self.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            if let Some(pending) = append()? {
                drop(span);
                return Ok(pending);
            }
            self.wake.notify_one();
            taken.await;
        }
    }

    /// [`Self::append`] once the memory is held: `None` (nothing done) if the buffer's
    /// index entry is full.
    fn try_append(
        &self,
        partition: &Arc<Partition>,
        batches: &[Batch],
        log_append_time: Option<i64>,
        now_ms: i64,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<Option<Pending>> {
        let mut state = partition.state();
        let mut buf = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        if buf.poisoned {
            return Err(Error::not_durable("a WAL flush failed"));
        }
        let epoch = state.leader_epoch();
        let range = (Arc::as_ptr(partition) as usize, epoch);
        if !buf.fits(range, batches, self.cfg.max_index_bytes) {
            if !buf.full {
                buf.full = true;
                self.metrics.index_full.inc();
            }
            return Ok(None);
        }
        let mut seq = buf.seq;
        let end;
        let base_offset = match state.append(batches, log_append_time, now_ms)? {
            // A retry: wait for the flush that holds the original, never for an open
            // buffer that may stay empty. Committed already: nothing to wait for. Else it
            // is in the open buffer (non-empty, so it will flush) or in a flush already
            // taken, all of which commit no later than `seq - 1`.
            Appended::Duplicate { base_offset } => {
                if base_offset < state.high_watermark() {
                    seq = 0;
                } else if buf.entries.is_empty() {
                    seq = buf.seq.saturating_sub(1);
                }
                end = base_offset + 1;
                base_offset
            }
            Appended::New {
                base_offset,
                end_offset,
                bytes,
                max_timestamp,
                producers,
            } => {
                let Some(permit) = permit.take() else {
                    return Err(Error::not_durable("the WAL lost an append's memory"));
                };
                buf.bytes += bytes.len();
                let now = Instant::now();
                buf.first_at.get_or_insert(now);
                buf.last_at = Some(now);
                buf.ranges.insert(range);
                buf.producer_batches += producers.len();
                end = end_offset;
                buf.entries.push(Entry {
                    partition: partition.clone(),
                    epoch,
                    end: end_offset,
                    bytes,
                    max_timestamp,
                    producers,
                    _permit: permit,
                    trace: stratus_metrics::trace::sampled_context(),
                });
                base_offset
            }
        };
        drop(buf);
        drop(state);
        self.wake.notify_one();
        Ok(Some(Pending {
            base_offset,
            end_offset: end,
            epoch,
            seq,
            partition: partition.clone(),
            status: self.status.subscribe(),
        }))
    }

    /// Waits until flush `seq` is finished; an error if it failed.
    pub async fn wait(&self, seq: u64) -> Result<()> {
        flushed(&mut self.status.subscribe(), seq).await
    }

    /// The flush loop; runs until `cancel`, then flushes what is buffered once more.
    ///
    /// Two stages: this one takes the buffer when the [`policy`] says so, builds the
    /// object and starts its PUT; the committer commits finished PUTs strictly in
    /// sequence order. Up to `max_in_flight` objects are in flight, so a slow PUT does
    /// not stop the next flush from starting.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        // The policy keeps at most `max_in_flight` flushes taken: the channel never fills.
        let (tx, rx) = mpsc::channel::<(Flush, Put)>(self.policy.max_in_flight + 1);
        let mut committer = tokio::spawn(self.clone().commit_loop(rx));
        loop {
            let empty = self.lock_buffer().entries.is_empty();
            if empty {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = cancel.cancelled() => break,
                    // The committer only ends when this loop drops its sender: anything
                    // else is its panic, which is the WAL's.
                    done = &mut committer => return propagate_panic(done),
                }
                continue;
            }
            tokio::select! {
                _ = self.wait_ready() => {}
                // Shutting down: what is buffered is written now.
                _ = cancel.cancelled() => {}
                done = &mut committer => return propagate_panic(done),
            }
            let Some((seq, entries)) = self.take() else {
                // Poisoned: the committer is failing what is in flight.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let object = WalObject {
                node: self.cfg.node_id,
                incarnation: self.cfg.incarnation,
                seq,
            }
            .name();
            let started = Instant::now();
            // The first sampled request of the flush carries its spans.
            let span = entries
                .iter()
                .find_map(|e| e.trace.as_ref())
                .map_or_else(SpanGuard::default, |cx| {
                    SpanGuard::child_of("wal.flush", cx)
                });
            let (body, entry, index, partitions) = build_object(&object, &entries);
            self.metrics.bytes.observe(body.len() as f64);
            if span.is_recording() {
                span.set("wal.seq", seq as i64);
                span.set("bytes", body.len() as i64);
                span.set("partitions", partitions.len() as i64);
            }
            let put = put_with_retries(self.objects.clone(), object, body.clone());
            let put = match span.context().cloned() {
                Some(cx) => tokio::spawn(put.with_context(cx)),
                None => tokio::spawn(put),
            };
            let flush = Flush {
                seq,
                _entries: entries,
                body,
                entry,
                index,
                partitions,
                started,
                span,
            };
            if tx.send((flush, put)).await.is_err() {
                break;
            }
        }
        drop(tx);
        propagate_panic(committer.await);
    }

    /// Takes the buffer for a flush, unless a failure is being cleaned up.
    fn take(&self) -> Option<(u64, Vec<Entry>)> {
        let mut buf = self.lock_buffer();
        if buf.poisoned || buf.entries.is_empty() {
            return None;
        }
        let seq = buf.seq;
        let now = Instant::now();
        let taken = buf.bytes;
        buf.recent.add(taken, now, self.policy.interval);
        buf.seq += 1;
        buf.bytes = 0;
        buf.first_at = None;
        buf.last_at = None;
        buf.in_flight += 1;
        buf.last_flush = Some(now);
        buf.ranges.clear();
        buf.producer_batches = 0;
        buf.full = false;
        let entries = std::mem::take(&mut buf.entries);
        drop(buf);
        self.taken.notify_waiters();
        Some((seq, entries))
    }

    fn lock_buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the policy says to flush (see [`policy`]); returns at once if the
    /// buffer is empty.
    async fn wait_ready(&self) {
        loop {
            let view = {
                let b = self.lock_buffer();
                BufferView {
                    bytes: b.bytes,
                    first_at: b.first_at,
                    last_at: b.last_at,
                    in_flight: b.in_flight,
                    last_flush: b.last_flush,
                    recent_bytes: b.recent.bytes(Instant::now(), self.policy.interval),
                    full: b.full,
                }
            };
            if view.first_at.is_none() {
                return;
            }
            match self.policy.next(view, Instant::now()) {
                Next::Flush => return,
                Next::Wait => self.wake.notified().await,
                Next::WaitUntil(at) => {
                    let _ = tokio::time::timeout_at(at.into(), self.wake.notified()).await;
                }
            }
        }
    }

    fn finish(&self, seq: u64, failed: bool) {
        self.status.send_modify(|s| {
            s.done = s.done.max(seq);
            if failed {
                s.failed.push_back(seq);
                while s.failed.len() > FAILED_REMEMBERED {
                    s.failed.pop_front();
                }
            }
        });
    }
}

/// Re-raises a sub-task's panic in the task that awaited it (whose supervisor reports it).
fn propagate_panic(done: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

#[cfg(test)]
mod tests;
