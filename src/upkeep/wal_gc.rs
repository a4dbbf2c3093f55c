//! WAL garbage collection: index entries, then their objects, once every range in them
//! is sealed (or belongs to a deleted topic).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::warn;

use super::Upkeep;
use crate::error::Result;
use stratus_meta::keys::PartitionId;
use stratus_meta::repo;
use stratus_meta::{keys, Op, MAX_TXN_OPS};

/// What collection needs of each index entry, kept between runs. An entry is written once
/// and never changed (its revision would tell), but the index holds thousands after a
/// burst, each a JSON record of up to a range per partition: decoded again at every run
/// (every 5 s) they cost 350-600 ms of a runtime thread after 2.5 GB into 100 partitions.
#[derive(Default)]
pub struct Memo {
    entries: Mutex<HashMap<String, Summary>>,
}

/// An index entry as collection reads it.
struct Summary {
    revision: u64,
    object: String,
    /// Where the object's data ends (its size for the cache).
    data_end: u64,
    /// Each range's partition and end offset.
    ranges: Vec<(PartitionId, i64)>,
}

impl Memo {
    fn take(&self) -> HashMap<String, Summary> {
        std::mem::take(&mut *self.entries.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn keep(&self, entries: HashMap<String, Summary>) {
        *self.entries.lock().unwrap_or_else(|p| p.into_inner()) = entries;
    }

    /// Entries remembered (for tests).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Summary {
    /// Decodes an entry; `ids` shares each topic id among the entries of a run.
    fn decode(
        key: &str,
        v: &stratus_meta::Versioned,
        ids: &mut HashMap<String, Arc<str>>,
    ) -> Result<Self> {
        let entry: repo::WalEntry = repo::decode(key, v)?;
        let data_end = entry.data_end();
        let ranges = entry
            .ranges
            .into_iter()
            .map(|r| {
                let topic_id = ids
                    .entry(r.topic_id)
                    .or_insert_with_key(|k| Arc::from(k.as_str()))
                    .clone();
                let name = PartitionId {
                    topic_id,
                    index: r.partition,
                };
                (name, r.end_offset)
            })
            .collect();
        Ok(Summary {
            revision: v.mod_revision,
            object: entry.object,
            data_end,
            ranges,
        })
    }
}

/// Deletes WAL index entries, then their objects, once every range in them is sealed
/// (or belongs to a deleted topic). Each broker collects its own entries; the controller
/// also collects those of brokers that are gone. Evidence comes from the store (or from
/// the state of partitions this broker owns), read after the entries: the sealed end only
/// grows, so an entry judged sealed stays sealed.
pub async fn collect_wal_garbage(up: &Upkeep) -> Result<()> {
    let node = up.settings.server.node_id;
    let view = up.view.borrow().clone();
    let controller = view.controller == Some(node);
    let prefix = if controller {
        keys::WAL.to_string()
    } else {
        keys::wal_prefix(node)
    };
    let entries: Vec<_> = up
        .meta
        .range(&prefix)
        .await?
        .into_iter()
        .filter(|(k, _)| {
            let owner = keys::wal_node(k).unwrap_or(node);
            owner == node || !view.brokers.contains_key(&owner)
        })
        .collect();
    let own = entries
        .iter()
        .filter(|(k, _)| keys::wal_node(k) == Some(node))
        .map(|(k, v)| k.len() + v.value.len());
    let (count, bytes) = own.fold((0, 0), |(c, b), n| (c + 1, b + n));
    up.metrics.wal_index_entries.set(count as f64);
    up.metrics.wal_index_bytes.set(bytes as f64);
    if entries.is_empty() {
        return Ok(());
    }
    let topics = super::topic_ids(up).await?;
    let mut sealed: HashMap<PartitionId, i64> = HashMap::new();
    let mut freed = Vec::new();
    let mut slice = super::Slice::start();
    // Only the entries listed now are remembered: the others are gone. A run that fails
    // forgets them all (the next decodes them again).
    let mut known = up.gc_memo.take();
    let mut listed = HashMap::with_capacity(entries.len());
    let mut ids = HashMap::new();
    for (k, v) in entries {
        slice.check().await;
        let entry = match known.remove(&k) {
            Some(s) if s.revision == v.mod_revision => s,
            _ => Summary::decode(&k, &v, &mut ids)?,
        };
        let mut done = true;
        for (name, end_offset) in &entry.ranges {
            if !topics.contains(name.topic_id.as_ref()) {
                continue;
            }
            let end = match sealed.get(name) {
                Some(e) => *e,
                None => {
                    let e = sealed_end(up, &name.topic_id, name.index).await?;
                    sealed.insert(name.clone(), e);
                    e
                }
            };
            if *end_offset > end {
                done = false;
                break;
            }
        }
        if done {
            freed.push((k, entry.object, entry.data_end));
        } else {
            listed.insert(k, entry);
        }
    }
    up.gc_memo.keep(listed);
    for chunk in freed.chunks(MAX_TXN_OPS) {
        let ops = chunk
            .iter()
            .map(|(k, _, _)| Op::Delete(k.clone()))
            .collect();
        up.meta.txn(vec![], ops).await?;
        for (_, object, size) in chunk {
            up.cache
                .forget_object(&Arc::from(object.as_str()), *size)
                .await;
            match up.objects.delete_recycling(object).await {
                Ok(()) => up.metrics.wal_collected.inc(),
                Err(e) => warn!(object, error = %e, "wal object not deleted"),
            }
        }
    }
    Ok(())
}

/// Everything below this offset of a partition is in sealed segments.
pub(super) async fn sealed_end(up: &Upkeep, topic_id: &str, partition: i32) -> Result<i64> {
    if let Some(p) = super::local_partition(up, topic_id, partition) {
        let s = p.state();
        if s.owner_epoch().is_some() {
            return Ok(s.sealed_end());
        }
    }
    let key = keys::partition_key(topic_id, partition);
    Ok(repo::load::<repo::PartitionRecord>(up.meta.as_ref(), &key)
        .await?
        .map(|(r, _)| r.sealed_end)
        .unwrap_or(0))
}
