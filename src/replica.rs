//! Reads of partitions this broker does not own (KIP-392, fetch from the closest replica).
//!
//! Every broker can read every committed byte: sealed segments are named in the partition
//! records, and the unsealed tail in the WAL index. A broker with a rack keeps a read-only
//! index of both, fed by watches on `partitions/` and `wal/` (no data is copied, only the
//! index entries the owners commit), and serves consumers of its rack from it. The owner
//! points such consumers here with `preferred_read_replica`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::partition::{Partition, PartitionState, TailChunk};
use stratus_meta::keys::PartitionId;
use stratus_meta::repo::{self, PartitionRecord, WalEntry, WalRange};
use stratus_meta::{keys, MetaStore, Versioned};

/// One committed WAL range of a partition.
type Range = (WalRange, Arc<str>, u64);

/// A WAL key's object, and the partitions it has ranges of with their base offsets.
type KeyRanges = (Arc<str>, Vec<(PartitionId, i64)>);

#[derive(Default)]
struct Index {
    records: HashMap<PartitionId, PartitionRecord>,
    /// WAL key → its object, and the partitions it has ranges of with their base offsets.
    entries: HashMap<String, KeyRanges>,
    /// Partition → its committed WAL ranges by base offset.
    tails: HashMap<PartitionId, BTreeMap<i64, Range>>,
}

impl Index {
    fn put_record(&mut self, key: &str, v: &[u8]) {
        let Some(name) = keys::parse_partition_key(key) else {
            return;
        };
        match repo::decode_struct::<PartitionRecord>(key, v) {
            Ok(r) => {
                self.records.insert(name, r);
            }
            Err(e) => warn!(error = %e, "replica index skips a partition record"),
        }
    }

    fn put_wal(&mut self, key: &str, v: &[u8]) {
        let e = match repo::decode_struct::<WalEntry>(key, v) {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "replica index skips a WAL index entry");
                return;
            }
        };
        self.delete_wal(key);
        let object: Arc<str> = Arc::from(e.object.as_str());
        let size = e.data_end();
        let mut names = Vec::with_capacity(e.ranges.len());
        for r in e.ranges {
            let name = r.partition_id();
            names.push((name.clone(), r.base_offset));
            self.tails
                .entry(name)
                .or_default()
                .insert(r.base_offset, (r, object.clone(), size));
        }
        self.entries.insert(key.to_string(), (object, names));
    }

    fn delete_wal(&mut self, key: &str) {
        let Some((object, ranges)) = self.entries.remove(key) else {
            return;
        };
        for (n, base) in ranges {
            if let Some(t) = self.tails.get_mut(&n) {
                // Only this key's range: a WAL compaction puts the merged range (at the
                // same base, in another object) before it deletes the keys it replaces.
                if t.get(&base).is_some_and(|(_, o, _)| *o == object) {
                    t.remove(&base);
                }
                if t.is_empty() {
                    self.tails.remove(&n);
                }
            }
        }
    }
}

/// The read-only index of every partition.
#[derive(Default)]
pub struct Replicas {
    index: Mutex<Index>,
    ready: std::sync::atomic::AtomicBool,
}

impl Replicas {
    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A read-only copy of a partition as its owner committed it (`None` until the index
    /// is loaded).
    pub fn partition(&self, p: &Partition) -> Option<Partition> {
        if !self.ready.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let name = p.id();
        let ix = self.lock();
        let rec = ix.records.get(&name).cloned().unwrap_or_default();
        let mut s = PartitionState::from_record(&rec);
        if let Some(tail) = ix.tails.get(&name) {
            for (r, object, size) in tail.values() {
                if r.base_offset > s.next_offset() {
                    // A range not yet seen (watch order): stop at the gap.
                    break;
                }
                if r.end_offset <= s.next_offset() {
                    // Inside a merged range of a compaction whose deletes are still coming.
                    continue;
                }
                s.recover_range(
                    TailChunk::from_wal(r, object, *size, stratus_log::clock::now_ms()),
                    &[],
                );
            }
        }
        drop(ix);
        let copy = Partition::new(p.topic_id.clone(), p.topic.clone(), p.index, &rec);
        copy.install(s);
        Some(copy)
    }
}

/// Keeps the index current until `cancel`: loads `partitions/` and `wal/`, then applies
/// watch events; starts over when a watch ends. Each change wakes long-polling fetches
/// through `committed`.
pub async fn run(
    meta: Arc<dyn MetaStore>,
    replicas: Arc<Replicas>,
    committed: tokio::sync::watch::Sender<u64>,
    cancel: CancellationToken,
) {
    loop {
        let mut records = meta.watch(keys::PARTITIONS);
        let mut wal = meta.watch(keys::WAL);
        if let Err(e) = load(meta.as_ref(), &replicas).await {
            warn!(error = %e, "replica index not loaded; retrying");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        }
        replicas
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                e = records.recv() => e,
                e = wal.recv() => e,
            };
            let Some(e) = event else { break };
            {
                let mut ix = replicas.lock();
                match (&e.value, e.key.starts_with(keys::WAL)) {
                    (Some(v), true) => ix.put_wal(&e.key, v),
                    (None, true) => ix.delete_wal(&e.key),
                    (Some(v), false) => ix.put_record(&e.key, v),
                    (None, false) => {
                        if let Some(n) = keys::parse_partition_key(&e.key) {
                            ix.records.remove(&n);
                        }
                    }
                }
            }
            // Long-polling fetches wake up on new data here too.
            committed.send_modify(|c| *c += 1);
        }
        debug!("replica index watch ended; reloading");
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn load(meta: &dyn MetaStore, replicas: &Replicas) -> Result<(), stratus_meta::MetaError> {
    // WAL entries first: a range missing from them was sealed, and the records read after
    // show it.
    let wal: Vec<(String, Versioned)> = meta.range(keys::WAL).await?;
    let records = meta.range(keys::PARTITIONS).await?;
    let mut ix = Index::default();
    for (k, v) in &wal {
        ix.put_wal(k, &v.value);
    }
    for (k, v) in &records {
        ix.put_record(k, &v.value);
    }
    *replicas.lock() = ix;
    Ok(())
}
