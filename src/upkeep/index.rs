//! The WAL index as collection ([`super::wal_gc`]) and compaction ([`super::compact`]) read
//! it: listed by key and revision only, each entry fetched and decoded once, and kept
//! between runs as a summary of the ranges that may still be live.
//!
//! After a burst into many partitions the index holds thousands of entries of up to a
//! range per partition (37 MB after 2.5 GB into 100 partitions). Listing it with values at
//! every run (collection every 5 s, compaction every 10 s) copied all of it each time, out
//! of the store and again into decoded entries: tens of MiB of a broker's peak memory, and
//! hundreds of milliseconds of a runtime thread. An entry is written once and never
//! changed (its revision would tell), and a range once dead (sealed, or of a deleted
//! topic) stays dead, so a summary only shrinks.

use std::collections::HashMap;

use stratus_meta::keys::PartitionId;
use stratus_meta::repo::{self, WalEntry};
use stratus_meta::MetaStore;

use super::Slice;
use crate::error::Result;

/// Entries fetched per read of the store: bounds the copies held at once.
const FETCH: usize = 128;

/// The remembered index (under `Upkeep::wal_index`; the upkeep jobs run one at a time).
#[derive(Default)]
pub struct WalIndex {
    entries: HashMap<String, Summary>,
    /// Partitions named by summaries, by number (a range names its partition in 4 bytes).
    partitions: Vec<PartitionId>,
    numbers: HashMap<PartitionId, u32>,
    fetched: u64,
}

/// What the jobs need of one entry.
pub(crate) struct Summary {
    /// The revision it was read at.
    pub revision: u64,
    /// The WAL object.
    pub object: String,
    /// Where the object's data ends (its size for the cache).
    pub data_end: u64,
    /// Key and value bytes in the store.
    pub stored: usize,
    /// Ranges in the entry as written.
    pub written: usize,
    /// Its ranges not yet found dead, in the entry's order.
    pub ranges: Vec<Range>,
}

/// One range of an entry.
#[derive(Clone, Copy)]
pub(crate) struct Range {
    partition: u32,
    /// One past its last offset.
    pub end_offset: i64,
    /// Its bytes.
    pub len: u64,
}

impl WalIndex {
    /// Lists the index under `prefix`, fetches and decodes the entries `wanted` accepts
    /// that are not remembered at their current revision, and forgets every entry under
    /// `prefix` no longer listed (or no longer wanted). Returns the wanted keys in key
    /// order.
    pub(crate) async fn refresh(
        &mut self,
        meta: &dyn MetaStore,
        prefix: &str,
        wanted: impl Fn(&str) -> bool,
        slice: &mut Slice,
    ) -> Result<Vec<String>> {
        let listed: Vec<(String, u64)> = meta
            .range_keys(prefix)
            .await?
            .into_iter()
            .filter(|(k, _)| wanted(k))
            .collect();
        let current: HashMap<&str, u64> = listed.iter().map(|(k, r)| (k.as_str(), *r)).collect();
        self.entries.retain(|k, s| match k.strip_prefix(prefix) {
            Some(_) => current.get(k.as_str()) == Some(&s.revision),
            None => true,
        });
        let missing: Vec<String> = listed
            .iter()
            .filter(|(k, _)| !self.entries.contains_key(k))
            .map(|(k, _)| k.clone())
            .collect();
        for chunk in missing.chunks(FETCH) {
            let values = meta.get_many(chunk).await?;
            for (key, v) in chunk.iter().zip(values) {
                slice.check().await;
                // Collected since it was listed: the caller skips it.
                let Some(v) = v else { continue };
                let entry: WalEntry = repo::decode_struct(key, &v.value)?;
                let summary = self.summarize(entry, v.mod_revision, key.len() + v.value.len());
                self.entries.insert(key.clone(), summary);
                self.fetched += 1;
            }
        }
        self.forget_partitions();
        Ok(listed.into_iter().map(|(k, _)| k).collect())
    }

    fn summarize(&mut self, entry: WalEntry, revision: u64, stored: usize) -> Summary {
        let data_end = entry.data_end();
        let written = entry.ranges.len();
        let ranges = entry
            .ranges
            .iter()
            .map(|r| Range {
                partition: self.number(r.partition_id()),
                end_offset: r.end_offset,
                len: r.len,
            })
            .collect();
        Summary {
            revision,
            object: entry.object,
            data_end,
            stored,
            written,
            ranges,
        }
    }

    fn number(&mut self, id: PartitionId) -> u32 {
        if let Some(n) = self.numbers.get(&id) {
            return *n;
        }
        let n = self.partitions.len() as u32;
        self.partitions.push(id.clone());
        self.numbers.insert(id, n);
        n
    }

    /// Renumbers the partitions once most of those named are no longer in any summary
    /// (partitions of deleted topics, sealed data of moved ones).
    fn forget_partitions(&mut self) {
        if self.partitions.len() < 1024 {
            return;
        }
        let mut used = vec![false; self.partitions.len()];
        for s in self.entries.values() {
            for r in &s.ranges {
                used[r.partition as usize] = true;
            }
        }
        if used.iter().filter(|u| **u).count() * 2 > used.len() {
            return;
        }
        let old = std::mem::take(&mut self.partitions);
        self.numbers.clear();
        let mut renumbered = vec![u32::MAX; old.len()];
        for (i, id) in old.into_iter().enumerate() {
            if used[i] {
                renumbered[i] = self.partitions.len() as u32;
                self.numbers.insert(id.clone(), renumbered[i]);
                self.partitions.push(id);
            }
        }
        for s in self.entries.values_mut() {
            for r in &mut s.ranges {
                r.partition = renumbered[r.partition as usize];
            }
        }
    }

    /// The summary of a listed entry (`None`: collected before it could be fetched).
    pub(crate) fn get(&self, key: &str) -> Option<&Summary> {
        self.entries.get(key)
    }

    /// The summary of a listed entry, to drop ranges found dead.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Summary> {
        self.entries.get_mut(key)
    }

    /// The partition of a range.
    pub(crate) fn partition(&self, r: &Range) -> &PartitionId {
        &self.partitions[r.partition as usize]
    }

    /// Forgets an entry (deleted from the index).
    pub(crate) fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Entries remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries fetched and decoded since the broker started.
    pub fn fetched(&self) -> u64 {
        self.fetched
    }
}
