//! Sweeps of objects nothing names: WAL objects that no index entry names and no live
//! incarnation can still commit (left by crashes between a PUT and its commit), and
//! segments that no partition record names (left by seals whose record write failed, or by
//! a topic deletion cut short), and partition records of deleted topics.

use std::collections::{HashMap, HashSet};

use tracing::info;

use super::Upkeep;
use crate::error::Result;
use stratus_log::paths::{self, SegmentObject};
use stratus_meta::{keys, repo};

/// How long an unreferenced WAL object is left alone before it may be swept.
pub(super) const ORPHAN_MIN_AGE_MS: i64 = 10 * 60 * 1000;

/// The controller deletes WAL objects that no index entry names and that can never be
/// committed any more: written by an incarnation that is not registered, whose node's
/// assignment has since been rewritten (so a commit of that incarnation fails its compare),
/// and older than `min_age_ms`. They are left by crashes between a PUT and its commit.
/// Objects are listed first, then the index and the assignments are read: an object
/// committed after the listing was committed by a live incarnation, which is never swept.
pub async fn sweep_orphan_wal_objects(up: &Upkeep, min_age_ms: i64) -> Result<usize> {
    if !super::is_controller(up) {
        return Ok(0);
    }
    let listed = up.objects.list(paths::WAL).await?;
    let mut named = HashSet::new();
    let mut slice = super::Slice::start();
    for (k, v) in up.meta.range(keys::WAL).await? {
        slice.check().await;
        named.insert(repo::decode_struct::<repo::WalEntry>(&k, &v.value)?.object);
    }
    let view = crate::cluster::read_view(up.meta.as_ref()).await?;
    let now = up.clock.now_ms();
    let mut swept = 0;
    for (key, modified) in listed {
        if named.contains(&key) || now - modified < min_age_ms {
            continue;
        }
        let Some((n, inc)) = paths::wal_writer(&key) else {
            continue;
        };
        let registered = view.brokers.get(&n).is_some_and(|r| r.incarnation == inc);
        let may_commit = view
            .assignments
            .get(&n)
            .is_none_or(|(a, _)| a.incarnation == inc && !a.partitions.is_empty());
        if registered || may_commit {
            continue;
        }
        up.objects.delete(&key).await?;
        swept += 1;
    }
    if swept > 0 {
        info!(
            objects = swept,
            "swept WAL objects that were never committed"
        );
    }
    Ok(swept)
}

/// The controller deletes segment objects older than `min_age_ms` that no partition record
/// names and never will: those of topics that no longer exist, and those that start below
/// their partition's sealed end (a seal's segment starts at the sealed end until its record
/// is written, so a seal in progress is never swept, nor a segment retention is deleting).
/// Objects are listed first, then the topics and records are read.
pub async fn sweep_orphan_segments(up: &Upkeep, min_age_ms: i64) -> Result<usize> {
    if !super::is_controller(up) {
        return Ok(0);
    }
    let listed = up.objects.list(paths::TOPICS).await?;
    let topics = super::topic_ids(up).await?;
    let now = up.clock.now_ms();
    // (topic id, partition) → (sealed end, named segments), read once per partition.
    let mut records: HashMap<(String, i32), (i64, HashSet<String>)> = HashMap::new();
    let mut swept = 0;
    for (key, modified) in listed {
        let Some(seg) = SegmentObject::parse(&key) else {
            continue;
        };
        if now - modified < min_age_ms {
            continue;
        }
        let orphan = if !topics.contains(seg.topic_id) {
            true
        } else {
            let id = (seg.topic_id.to_string(), seg.partition);
            if !records.contains_key(&id) {
                let rec = repo::load::<repo::PartitionRecord>(
                    up.meta.as_ref(),
                    &keys::partition_key(seg.topic_id, seg.partition),
                )
                .await?
                .map(|(r, _)| r)
                .unwrap_or_default();
                let named = rec.segments.into_iter().map(|s| s.key).collect();
                records.insert(id.clone(), (rec.sealed_end, named));
            }
            records.get(&id).is_some_and(|(sealed_end, named)| {
                !named.contains(&key) && seg.base_offset < *sealed_end
            })
        };
        if orphan {
            up.objects.delete(&key).await?;
            swept += 1;
        }
    }
    if swept > 0 {
        info!(
            objects = swept,
            "swept segments that no partition record names"
        );
    }
    Ok(swept)
}

/// The controller deletes partition records of topics that no longer exist: a seal or an
/// ownership change of a partition may write its record after the topic's deletion
/// removed the records it found. Records are listed first, then the topics read: a topic
/// id is never reused, so a record whose topic is missing from the later read belongs to
/// a deleted topic (and its segments to the segment sweep).
pub async fn sweep_orphan_records(up: &Upkeep) -> Result<usize> {
    if !super::is_controller(up) {
        return Ok(0);
    }
    let listed = up.meta.range(keys::PARTITIONS).await?;
    let topics = super::topic_ids(up).await?;
    let orphans: Vec<stratus_meta::Op> = listed
        .into_iter()
        .filter(|(k, _)| {
            keys::parse_partition_key(k).is_some_and(|p| !topics.contains(&*p.topic_id))
        })
        .map(|(k, _)| stratus_meta::Op::Delete(k))
        .collect();
    for chunk in orphans.chunks(stratus_meta::MAX_TXN_OPS) {
        up.meta.txn(vec![], chunk.to_vec()).await?;
    }
    if !orphans.is_empty() {
        info!(
            records = orphans.len(),
            "swept partition records of deleted topics"
        );
    }
    Ok(orphans.len())
}
