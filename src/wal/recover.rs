//! The WAL index rebuilt from WAL objects after a crash, on a metadata store whose WAL
//! commits may be lost ([`MetaStore::relaxed_may_be_lost`]: the embedded store).
//!
//! There a flush is acknowledged once its object is durable and its index entry is
//! committed in memory; the store makes such commits durable within
//! [`stratus_meta::embedded::SYNC_INTERVAL`] or with the next durable write. So after a
//! crash, the object is the commit record, like a record in Kafka's log: its footer holds
//! the very entry that was committed. At start, before anything reads the index, every
//! WAL object of this broker newer than the index (and than its void floor,
//! [`keys::wal_void_key`]) is read in sequence order, and each range whose partition
//! still exists, is assigned to this broker, and whose first offset is where the
//! partition's log ends is committed again, durably; then the void floor is raised to
//! the highest object listed, so that no sequence left out is ever used again. A range that does not continue its partition (the data of a flush
//! that failed before a crash, or that was left out because its topic went) is left out:
//! offsets stay contiguous, and nothing acknowledged is lost, because an acknowledged
//! range always continues the ranges committed before it.

use std::collections::{HashMap, HashSet};

use stratus_log::batch;
use stratus_log::paths::{WalObject, WAL};
use stratus_meta::repo::{Assignment, PartitionRecord, TopicRecord};
use stratus_meta::Versioned;

use super::*;

/// A partition: its topic id and index.
type Key = (String, i32);

/// Rebuilds the index entries of this broker's WAL objects whose commits a crash lost;
/// returns how many objects it committed again. Does nothing on a store whose WAL
/// commits are durable.
pub async fn recover(meta: &dyn MetaStore, objects: &Objects, node: i32) -> Result<usize> {
    if !meta.relaxed_may_be_lost() {
        return Ok(0);
    }
    let void = void_floor(meta, node).await?;
    let index = meta.range(keys::WAL).await?;
    let floor = index
        .iter()
        .filter(|(k, _)| keys::wal_node(k) == Some(node))
        .filter_map(|(k, _)| keys::wal_last_seq(k))
        .max()
        .unwrap_or(0)
        .max(void);
    let mut candidates: Vec<(WalObject, String)> = objects
        .list(&format!("{WAL}{node}/"))
        .await?
        .into_iter()
        .filter_map(|(name, _)| WalObject::parse(&name).map(|w| (w, name)))
        .filter(|(w, _)| w.node == node && w.seq > floor)
        .collect();
    if candidates.is_empty() {
        return Ok(0);
    }
    candidates.sort_by_key(|(w, _)| (w.seq, w.incarnation));
    let highest = candidates.last().map_or(floor, |(w, _)| w.seq);
    let mut ends = log_ends(meta, &index).await?;
    let owned = owned(meta, node).await?;
    let mut recovered = 0;
    for (w, name) in candidates {
        let body = match objects.get(&name).await {
            Ok(b) => b,
            Err(e) if e.not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let Some(entry) = footer_entry(&name, &body) else {
            info!(
                object = name,
                "WAL object without a whole footer left out (its write never finished)"
            );
            continue;
        };
        let ranges: Vec<WalRange> = entry
            .ranges
            .into_iter()
            .filter(|r| {
                let key = (r.topic_id.clone(), r.partition);
                owned.contains(&key) && ends.get(&key) == Some(&r.base_offset) && whole(&body, r)
            })
            .collect();
        if ranges.is_empty() {
            continue;
        }
        let key = keys::wal_key(node, w.seq, w.incarnation);
        let value = repo::encode(&WalEntry {
            object: name.clone(),
            ranges: ranges.clone(),
        });
        meta.txn(
            vec![Compare::Revision(key.clone(), None)],
            vec![Op::Put(key, value, None)],
        )
        .await?;
        for r in &ranges {
            ends.insert((r.topic_id.clone(), r.partition), r.end_offset);
        }
        recovered += 1;
    }
    // Every object up to the highest one listed is now committed or void: the sequences
    // of those left out are never used again (a later flush of the same sequence could
    // otherwise be ordered after them in the next rebuild).
    raise_void(meta, node, highest).await?;
    if recovered > 0 {
        info!(
            objects = recovered,
            "WAL index entries a crash lost were committed again from their objects"
        );
    }
    Ok(recovered)
}

/// Raises the node's void floor to `seq` durably; a lower `seq` leaves it as it is (one
/// writer per node: this process).
pub(super) async fn raise_void(meta: &dyn MetaStore, node: i32, seq: u64) -> Result<()> {
    if void_floor(meta, node).await? < seq {
        meta.put(&keys::wal_void_key(node), seq.to_string().into())
            .await?;
    }
    Ok(())
}

/// The node's void floor ([`keys::wal_void_key`]); 0 if none was written. The next flush
/// sequence must be above it (so must every sequence a new incarnation uses, even when
/// the index is empty).
pub async fn void_floor(meta: &dyn MetaStore, node: i32) -> Result<u64> {
    Ok(match meta.get(&keys::wal_void_key(node)).await? {
        Some(v) => String::from_utf8_lossy(&v.value).parse().unwrap_or(0),
        None => 0,
    })
}

/// The partitions the node's assignment gives it: nothing else was acknowledged by it
/// (an append needs ownership, whose record is durable before any relaxed commit after it).
async fn owned(meta: &dyn MetaStore, node: i32) -> Result<HashSet<Key>> {
    let key = keys::assignment_key(node);
    Ok(match meta.get(&key).await? {
        Some(v) => repo::decode::<Assignment>(&key, &v)?
            .partitions
            .into_keys()
            .map(|p| (p.topic_id.to_string(), p.index))
            .collect(),
        None => HashSet::new(),
    })
}

/// Where the log of every existing partition ends: its sealed end, or the end of its last
/// committed WAL range.
async fn log_ends(
    meta: &dyn MetaStore,
    index: &[(String, Versioned)],
) -> Result<HashMap<Key, i64>> {
    let mut ends: HashMap<Key, i64> = HashMap::new();
    let mut topics: HashSet<String> = HashSet::new();
    for (k, v) in meta.range(keys::TOPICS).await? {
        let t: TopicRecord = repo::decode(&k, &v)?;
        for p in 0..t.partitions {
            ends.insert((t.id.clone(), p), 0);
        }
        topics.insert(t.id);
    }
    for (k, v) in meta.range(keys::PARTITIONS).await? {
        let Some(id) = keys::parse_partition_key(&k) else {
            continue;
        };
        let rec: PartitionRecord = repo::decode_struct(&k, &v.value)?;
        if let Some(end) = ends.get_mut(&(id.topic_id.to_string(), id.index)) {
            *end = (*end).max(rec.sealed_end);
        }
    }
    for (k, v) in index {
        let entry: WalEntry = repo::decode_struct(k, &v.value)?;
        for r in entry.ranges {
            if let Some(end) = ends.get_mut(&(r.topic_id.clone(), r.partition)) {
                *end = (*end).max(r.end_offset);
            }
        }
    }
    Ok(ends)
}

/// The entry in a WAL object's footer, if the object is whole and names itself.
fn footer_entry(name: &str, body: &Bytes) -> Option<WalEntry> {
    let footer = wal_format::footer(body).ok()?;
    let entry: WalEntry = repo::decode_struct(name, &footer).ok()?;
    (entry.object == name).then_some(entry)
}

/// Whether a range's bytes are whole batches (CRCs checked) holding exactly its offsets.
fn whole(body: &Bytes, r: &WalRange) -> bool {
    let (Ok(pos), Ok(len)) = (usize::try_from(r.pos), usize::try_from(r.len)) else {
        return false;
    };
    let Some(end) = pos.checked_add(len).filter(|e| *e <= body.len()) else {
        return false;
    };
    match batch::validate(&body.slice(pos..end)) {
        Ok(batches) => {
            batches.first().map(|b| b.base_offset) == Some(r.base_offset)
                && batches.last().map(|b| b.last_offset() + 1) == Some(r.end_offset)
        }
        Err(_) => false,
    }
}
