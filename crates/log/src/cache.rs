//! The read cache between fetches and the object store: blocks of objects in memory
//! (moka, bounded by bytes), then in the slots of a local file ([`disk`]), then ranged GETs of whole
//! blocks from the object store. A sequential reader's next blocks are fetched ahead of it
//! ([`BlockCache::read_ahead`]), a bounded number at once.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use moka::future::Cache;
use stratus_metrics::trace::SpanGuard;
use stratus_metrics::{Collect, Counter, Family, FamilySnapshot, Kind, Value};

use crate::objects::{ObjectError, Objects};

mod disk;

type BlockKey = (Arc<str>, u64);

/// Blocks being read ahead at once, for all readers together; more are not started.
const READ_AHEAD_AT_ONCE: usize = 8;

/// The tiered block cache.
pub struct BlockCache {
    objects: Arc<Objects>,
    block: u64,
    memory: Cache<BlockKey, Bytes>,
    disk: Option<disk::DiskTier>,
    metrics: CacheMetrics,
    /// Permits for blocks being read ahead.
    reading_ahead: Arc<tokio::sync::Semaphore>,
    /// Bytes put in memory since moka last evicted ([`BlockCache::admitted`]).
    unswept: AtomicU64,
    /// Bytes put in memory after which moka is made to evict.
    sweep_every: u64,
    /// Whether an eviction is under way.
    sweeping: Arc<std::sync::atomic::AtomicBool>,
}

/// Lookups per tier (`memory`, `disk`), and bytes served per tier (`object_store` for
/// blocks read from the store).
struct CacheMetrics {
    hits: Family<Counter>,
    misses: Family<Counter>,
    served: Family<Counter>,
    read_ahead: Family<Counter>,
    read_ahead_blocks: Arc<Counter>,
    memory_hits: Arc<Counter>,
    memory_misses: Arc<Counter>,
    disk_hits: Arc<Counter>,
    disk_misses: Arc<Counter>,
    memory_bytes: Arc<Counter>,
    disk_bytes: Arc<Counter>,
    store_bytes: Arc<Counter>,
}

impl CacheMetrics {
    fn new() -> Self {
        let hits = Family::new(
            "stratus_cache_hits_total",
            "Block lookups a cache tier answered.",
            &["tier"],
            Counter::default,
        );
        let misses = Family::new(
            "stratus_cache_misses_total",
            "Block lookups a cache tier could not answer (the next tier was asked).",
            &["tier"],
            Counter::default,
        );
        let served = Family::new(
            "stratus_cache_read_bytes_total",
            "Bytes of blocks served, by the tier that had them (object_store: read from the store).",
            &["tier"],
            Counter::default,
        );
        let read_ahead = Family::new(
            "stratus_cache_read_ahead_blocks_total",
            "Blocks fetched ahead of sequential readers (from the disk tier or the store).",
            &[],
            Counter::default,
        );
        CacheMetrics {
            read_ahead_blocks: read_ahead.get(&[]),
            read_ahead,
            memory_hits: hits.get(&["memory"]),
            memory_misses: misses.get(&["memory"]),
            disk_hits: hits.get(&["disk"]),
            disk_misses: misses.get(&["disk"]),
            memory_bytes: served.get(&["memory"]),
            disk_bytes: served.get(&["disk"]),
            store_bytes: served.get(&["object_store"]),
            hits,
            misses,
            served,
        }
    }
}

impl BlockCache {
    /// Creates the cache; `disk_dir` with `disk_bytes > 0` enables the disk tier.
    pub fn new(
        objects: Arc<Objects>,
        block: u64,
        memory_bytes: u64,
        disk_dir: PathBuf,
        disk_bytes: u64,
    ) -> Self {
        // LRU, not moka's default TinyLFU: fresh WAL blocks are read next by consumers
        // of the tail, and a frequency filter would refuse to admit them.
        let memory = Cache::builder()
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .weigher(|_k: &BlockKey, v: &Bytes| v.len().min(u32::MAX as usize) as u32)
            .max_capacity(memory_bytes)
            .build();
        let disk = if disk_bytes > 0 {
            disk::DiskTier::new(&disk_dir, block, disk_bytes)
        } else {
            None
        };
        BlockCache {
            objects,
            block,
            memory,
            disk,
            metrics: CacheMetrics::new(),
            reading_ahead: Arc::new(tokio::sync::Semaphore::new(READ_AHEAD_AT_ONCE)),
            unswept: AtomicU64::new(0),
            sweep_every: (memory_bytes / 8).max(1),
            sweeping: Default::default(),
        }
    }

    /// Notes `bytes` put in memory, and has moka evict once an eighth of the capacity came
    /// in since it last did. moka evicts only when it gets to its pending work, every 64
    /// writes: with blocks of 1 MiB a 64 MiB cache held up to twice that. The eviction
    /// runs in a task of its own (the WAL publishes through here before producers are
    /// answered); outside a runtime, here.
    async fn admitted(&self, bytes: u64) {
        let before = self.unswept.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes < self.sweep_every || self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        self.unswept.store(0, Ordering::Relaxed);
        let (memory, sweeping) = (self.memory.clone(), self.sweeping.clone());
        let sweep = async move {
            memory.run_pending_tasks().await;
            sweeping.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(sweep)),
            Err(_) => sweep.await,
        }
    }

    /// Starts fetching blocks `blocks` of the object `key` (of `size` bytes) into memory in
    /// the background, those not there yet, while fewer than [`READ_AHEAD_AT_ONCE`] are
    /// being fetched; the others are left to the reader. A read of a block being fetched
    /// waits for that fetch instead of starting its own. Needs a Tokio runtime (does
    /// nothing outside one).
    pub fn read_ahead(self: &Arc<Self>, key: &Arc<str>, size: u64, blocks: Range<u64>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for b in blocks.start..blocks.end.min(size.div_ceil(self.block)) {
            if self.memory.contains_key(&(key.clone(), b)) {
                continue;
            }
            let Ok(permit) = self.reading_ahead.clone().try_acquire_owned() else {
                return;
            };
            self.metrics.read_ahead_blocks.inc();
            let (cache, key) = (self.clone(), key.clone());
            rt.spawn(async move {
                if let Err(e) = cache.block_of(key.clone(), size, b).await {
                    tracing::debug!(object = %key, block = b, error = %e, "read-ahead failed");
                }
                drop(permit);
            });
        }
    }

    /// Inserts the blocks of an object just written, so that reads of fresh data hit memory.
    /// `data` is the object, alone in its allocation. An object of one block is cached as
    /// it is; a larger one's blocks are copies, since a slice would keep the whole object
    /// alive while the cache counts one block of it. (Copying every object cost the WAL a
    /// copy, and fresh pages, for every byte produced.)
    pub async fn insert_object(&self, key: &Arc<str>, data: &Bytes) {
        if !data.is_empty() && data.len() as u64 <= self.block {
            self.memory.insert((key.clone(), 0), data.clone()).await;
            self.admitted(data.len() as u64).await;
            return;
        }
        let mut start = 0u64;
        while start < data.len() as u64 {
            if start > 0 {
                // A copy per block of what may be many: let other tasks run between them.
                // Not after the last: the WAL publishes each flush's object through here
                // before its producers are answered (most are one block), and a yield
                // there waited for whatever held the runtime thread next.
                tokio::task::yield_now().await;
            }
            let end = (start + self.block).min(data.len() as u64);
            self.memory
                .insert(
                    (key.clone(), start / self.block),
                    Bytes::copy_from_slice(&data[start as usize..end as usize]),
                )
                .await;
            self.admitted(end - start).await;
            start = end;
        }
    }

    /// Inserts the blocks of a part of an object written again from data already stored (a
    /// WAL compaction's output) that starts at `offset`, a multiple of the block size (the
    /// last part may end inside a block: the object ends there). Only where reading it back
    /// would cost a request: a local store reads it from its file, and the memory keeps the
    /// recent data it holds. A run's 64 MiB inserted into a 64 MiB memory cache
    /// evicted all of that, and cost 50-60 ms of copying on the runtime threads produce was
    /// waiting for.
    pub async fn insert_rewritten(&self, key: &Arc<str>, offset: u64, data: &Bytes) {
        if self.objects.local_root.is_some() || !offset.is_multiple_of(self.block) {
            return;
        }
        let first = offset / self.block;
        for (i, start) in (0..data.len()).step_by(self.block as usize).enumerate() {
            // A copy per block of what may be many: let other tasks run between them.
            tokio::task::yield_now().await;
            let end = (start + self.block as usize).min(data.len());
            self.memory
                .insert(
                    (key.clone(), first + i as u64),
                    Bytes::copy_from_slice(&data[start..end]),
                )
                .await;
            self.admitted((end - start) as u64).await;
        }
    }

    /// Forgets every block of an object (it was deleted).
    pub async fn forget_object(&self, key: &Arc<str>, size: u64) {
        for b in 0..size.div_ceil(self.block) {
            let k = (key.clone(), b);
            self.memory.invalidate(&k).await;
            if let Some(d) = &self.disk {
                d.forget(&k).await;
            }
        }
    }

    /// The file that holds the object `key` on a local store (`None` on any other).
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.objects.local_path(key)
    }

    /// Size of a block: a read within one block returns a slice of it, not a copy.
    pub fn block_size(&self) -> u64 {
        self.block
    }

    /// Reads `range` of the object `key` whose total size is `size`: a slice of a cached
    /// block when the range lies in one, else a copy (see [`BlockCache::read_pieces`]).
    pub async fn read(
        &self,
        key: &Arc<str>,
        size: u64,
        range: Range<u64>,
    ) -> Result<Bytes, ObjectError> {
        Ok(join(self.read_pieces(key, size, range).await?))
    }

    /// Reads `range` of the object `key` whose total size is `size` as slices of the
    /// cached blocks it spans, in order, without copying.
    pub async fn read_pieces(
        &self,
        key: &Arc<str>,
        size: u64,
        range: Range<u64>,
    ) -> Result<Vec<Bytes>, ObjectError> {
        let Some((range, first, last)) = self.blocks_of(size, range) else {
            return Ok(Vec::new());
        };
        let blocks = futures::future::try_join_all(
            (first..=last).map(|b| self.block_of(key.clone(), size, b)),
        )
        .await?;
        Ok(pieces_of(&blocks, first * self.block, self.block, range))
    }

    /// `range` cut at the object's `size`, and its first and last blocks; `None` if empty.
    fn blocks_of(&self, size: u64, range: Range<u64>) -> Option<(Range<u64>, u64, u64)> {
        let end = range.end.min(size);
        (range.start < end).then(|| {
            (
                range.start..end,
                range.start / self.block,
                (end - 1) / self.block,
            )
        })
    }

    /// Reads `range` for a reader that reads it only once (a seal): from the memory tier if
    /// every block of it is there; otherwise, on a local store, exactly the range, from the
    /// store and not cached. A seal's range is one partition's part of WAL objects that
    /// hold many: read by blocks, it brought in the other partitions' data too (two bytes
    /// read per byte sealed with four seals at once), each block evicting one a consumer
    /// was about to read. On a remote store it is read as [`BlockCache::read`] does: a GET
    /// per range would multiply requests, and the seals of partitions due together share
    /// the blocks they fetch.
    pub async fn read_once(
        &self,
        key: &Arc<str>,
        size: u64,
        range: Range<u64>,
    ) -> Result<Bytes, ObjectError> {
        let read = [(key.clone(), size, range)];
        let mut got = self.read_once_many(&read).await;
        got.pop().unwrap_or_else(|| Ok(Bytes::new()))
    }

    /// [`BlockCache::read_once`] of many ranges (object, its size, the range), answering
    /// in the order asked; on a local store, the ranges memory does not hold are read in
    /// one blocking call.
    pub async fn read_once_many(
        &self,
        reads: &[(Arc<str>, u64, Range<u64>)],
    ) -> Vec<Result<Bytes, ObjectError>> {
        let mut out: Vec<Option<Result<Bytes, ObjectError>>> = Vec::with_capacity(reads.len());
        let mut missed = Vec::new();
        for (i, (key, size, range)) in reads.iter().enumerate() {
            if self.objects.local_root.is_none() {
                out.push(Some(self.read(key, *size, range.clone()).await));
                continue;
            }
            let Some((range, first, last)) = self.blocks_of(*size, range.clone()) else {
                out.push(Some(Ok(Bytes::new())));
                continue;
            };
            match self.held_in_memory(key, first, last).await {
                Some(held) => out.push(Some(Ok(join(pieces_of(
                    &held,
                    first * self.block,
                    self.block,
                    range,
                ))))),
                None => {
                    out.push(None);
                    missed.push((i, (key.clone(), range)));
                }
            }
        }
        let asked: Vec<(Arc<str>, Range<u64>)> = missed.iter().map(|(_, r)| r.clone()).collect();
        let got = self.objects.get_ranges(&asked).await;
        for ((i, _), r) in missed.into_iter().zip(got) {
            if let Ok(b) = &r {
                self.metrics.store_bytes.add(b.len() as u64);
            }
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Ok(Bytes::new())))
            .collect()
    }

    /// Blocks `first..=last` of an object if memory holds every one of them (counted as
    /// hits).
    async fn held_in_memory(&self, key: &Arc<str>, first: u64, last: u64) -> Option<Vec<Bytes>> {
        let mut held = Vec::new();
        for b in first..=last {
            held.push(self.memory.get(&(key.clone(), b)).await?);
        }
        let m = &self.metrics;
        m.memory_hits.add(held.len() as u64);
        m.memory_bytes
            .add(held.iter().map(|b| b.len() as u64).sum());
        Some(held)
    }

    async fn block_of(&self, key: Arc<str>, size: u64, block: u64) -> Result<Bytes, ObjectError> {
        let k: BlockKey = (key, block);
        let m = &self.metrics;
        let span = SpanGuard::child("cache.read");
        if let Some(b) = self.memory.get(&k).await {
            m.memory_hits.inc();
            m.memory_bytes.add(b.len() as u64);
            span.set("tier", "memory");
            return Ok(b);
        }
        m.memory_misses.inc();
        // One fetch per block however many read it at once: the seals of partitions that
        // share WAL objects run side by side and reach the same blocks together (sealed one
        // after another, each re-read every object it touched: six bytes read per byte
        // sealed at 8 partitions once the memory tier no longer held the unsealed data).
        // The fetched block is inserted by `try_get_with` itself.
        let fetch = async {
            if let Some(d) = &self.disk {
                if let Some(data) = d.get(&k).await {
                    span.set("tier", "disk");
                    m.disk_hits.inc();
                    m.disk_bytes.add(data.len() as u64);
                    return Ok(data);
                }
                m.disk_misses.inc();
            }
            let start = block * self.block;
            let end = (start + self.block).min(size);
            span.set("tier", "object_store");
            let b = span.run(self.objects.get_range(&k.0, start..end)).await?;
            m.store_bytes.add(b.len() as u64);
            if let Some(d) = &self.disk {
                d.put(k.clone(), b.clone()).await;
            }
            Ok::<_, ObjectError>(b)
        };
        let fetched = std::sync::atomic::AtomicBool::new(false);
        let fetch = async {
            let b = fetch.await;
            fetched.store(true, Ordering::Relaxed);
            b
        };
        let b = self
            .memory
            .try_get_with(k.clone(), fetch)
            .await
            .map_err(|e| Arc::try_unwrap(e).unwrap_or_else(ObjectError::Shared))?;
        if fetched.load(Ordering::Relaxed) {
            self.admitted(b.len() as u64).await;
        }
        Ok(b)
    }

    /// Blocks read ahead since the start (fetches started by [`BlockCache::read_ahead`]).
    pub fn read_ahead_total(&self) -> u64 {
        self.metrics.read_ahead_blocks.get()
    }

    /// Blocks being read ahead now.
    pub fn reading_ahead(&self) -> usize {
        READ_AHEAD_AT_ONCE.saturating_sub(self.reading_ahead.available_permits())
    }

    /// Bytes held by each tier now: memory, then disk (0 without a disk tier).
    pub fn held_bytes(&self) -> (u64, u64) {
        (
            self.memory.weighted_size(),
            self.disk.as_ref().map_or(0, |d| d.held_bytes()),
        )
    }

    /// Drops every cached block in memory (the benchmark's "cold" reads).
    pub fn clear_memory(&self) {
        self.memory.invalidate_all();
    }
}

/// `pieces` as one buffer: the piece itself if there is one, else a copy.
pub fn join(mut pieces: Vec<Bytes>) -> Bytes {
    if pieces.len() <= 1 {
        return pieces.pop().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
    for p in pieces {
        out.extend_from_slice(&p);
    }
    out.freeze()
}

/// `range` of an object from its consecutive `block`-byte blocks, the first at `at`: the
/// slice of each block the range covers (none empty).
fn pieces_of(blocks: &[Bytes], at: u64, block: u64, range: Range<u64>) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(blocks.len());
    let mut at = at;
    for b in blocks {
        let from = range.start.saturating_sub(at).min(b.len() as u64) as usize;
        let to = (range.end.saturating_sub(at)).min(b.len() as u64) as usize;
        if to > from {
            out.push(b.slice(from..to));
        }
        at += block;
    }
    out
}

impl Collect for BlockCache {
    fn collect(&self, out: &mut Vec<FamilySnapshot>) {
        let m = &self.metrics;
        m.hits.collect(out);
        m.misses.collect(out);
        m.served.collect(out);
        m.read_ahead.collect(out);
        let (memory, disk) = self.held_bytes();
        let mut held = FamilySnapshot::new(
            "stratus_cache_bytes",
            "Bytes of blocks each cache tier holds.",
            Kind::Gauge,
            &["tier"],
        );
        held.push(vec!["memory".into()], Value::Gauge(memory as f64));
        if self.disk.is_some() {
            held.push(vec!["disk".into()], Value::Gauge(disk as f64));
        }
        out.push(held);
    }
}

#[cfg(test)]
mod tests;
