//! Writing a compacted object and committing its index entry in place of the entries it
//! replaces ([`write`]).
//!
//! The object is streamed: each partition's live ranges are read in turn and handed to a
//! [`BulkWriter`] a [`bulk::SLICE`] at a time, so a run never holds its object whole. (It
//! once held every piece, copied, and then the object built from them: twice the run's
//! 64 MiB, the largest share of the broker's peak RSS after a burst into many partitions.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, warn};

use super::{Input, COMMIT_ATTEMPTS, PRODUCER_BATCHES};
use crate::error::Result;
use crate::upkeep::Upkeep;
use stratus_log::bulk::{self, BulkWriter};
use stratus_log::paths::CompactedObject;
use stratus_log::wal_format;
use stratus_meta::keys::PartitionId;
use stratus_meta::repo::{self, ProducerBatch, WalEntry, WalRange};
use stratus_meta::{keys, Compare, Op};

/// A live range to copy, and the object it is in (with that object's size).
type Source = (WalRange, Arc<str>, u64);

/// What the object holds, learnt while streaming it.
struct Streamed {
    /// Partition → old object → its copied spans (old position, length, new position),
    /// and the offsets they hold.
    moved: HashMap<PartitionId, (crate::partition::Moved, Range<i64>)>,
    /// Partition → the end of its first range here (a seal reaching it ends the run).
    first_end: BTreeMap<PartitionId, i64>,
    /// The new entry, encoded (the object's footer).
    footer: Bytes,
    /// The object's size.
    size: u64,
}

/// Writes one compacted object for `group` and commits its entry in place of theirs.
/// Returns the live bytes written and the replaced objects, or `None` if the transaction
/// found the index or the assignment changed.
pub(super) async fn write(
    up: &Upkeep,
    owned: &crate::cluster::Owned,
    group: &[Input],
    n: u64,
) -> Result<Option<(u64, Vec<(String, u64)>)>> {
    // Each partition's live ranges, by base offset.
    let mut parts: BTreeMap<PartitionId, Vec<Source>> = BTreeMap::new();
    for input in group {
        let object: Arc<str> = Arc::from(input.entry.object.as_str());
        let size = input.entry.data_end();
        for i in &input.live {
            let r = &input.entry.ranges[*i];
            parts
                .entry(r.partition_id())
                .or_default()
                .push((r.clone(), object.clone(), size));
        }
    }
    for list in parts.values_mut() {
        list.sort_by_key(|(r, _, _)| r.base_offset);
    }
    let total: u64 = parts.values().flatten().map(|(r, _, _)| r.len).sum();
    let node = up.settings.server.node_id;
    let incarnation = up.fence.incarnation();
    let name = CompactedObject {
        node,
        incarnation,
        n,
    }
    .name();
    let new_object: Arc<str> = Arc::from(name.as_str());
    // Written in the background of the WAL's own writes (a slice at a time on a local
    // directory): written whole and fsynced at the end, a run's 64 MiB made the WAL fsyncs
    // issued meanwhile wait for all of it, and produce at 50 MiB/s after 100 partitions
    // took 2.5 GB had a p99 of 86 ms (17 ms with compaction off).
    let mut out = up.objects.bulk_writer(&name).await?;
    let streamed = match stream(up, &new_object, &mut out, parts).await {
        Ok(s) => s,
        Err(e) => {
            out.abort().await;
            return Err(e);
        }
    };
    out.finish().await?;
    let Streamed {
        moved,
        first_end,
        footer,
        size,
    } = streamed;
    // No seal of these partitions may run between here and the relocation: a seal that
    // read the old chunks and ended inside a merged range would leave that range of the
    // index partly sealed. One that ended since the ranges were read makes the run stop.
    let partitions: Vec<(Arc<crate::partition::Partition>, i64)> = first_end
        .iter()
        .filter_map(|(id, end)| {
            Some((
                crate::upkeep::local_partition(up, &id.topic_id, id.index)?,
                *end,
            ))
        })
        .collect();
    let mut guards = Vec::with_capacity(partitions.len());
    for (p, _) in &partitions {
        guards.push(p.record_lock.lock().await);
    }
    if partitions
        .iter()
        .any(|(p, end)| p.state().sealed_end() >= *end)
    {
        drop(guards);
        discard(up, &new_object, size, "a seal ended meanwhile").await;
        return Ok(None);
    }
    let first = group.iter().map(|i| i.span.0).min().unwrap_or(0);
    let last = group.iter().map(|i| i.span.1).max().unwrap_or(0);
    let key = keys::compacted_wal_key(node, first, last, incarnation, n);
    let mut compares = vec![
        up.fence.compare(owned),
        Compare::Revision(key.clone(), None),
    ];
    let mut ops = vec![Op::Put(key.clone(), footer, None)];
    for input in group {
        compares.push(Compare::Revision(input.key.clone(), Some(input.revision)));
        ops.push(Op::Delete(input.key.clone()));
    }
    // An error leaves the outcome unknown: the transaction is sent again, and once it
    // answers, a refusal after an unknown attempt is checked against the new key (the
    // first attempt may have been applied). Never guessed: deleting an object whose entry
    // was committed would lose its data.
    let mut unknown = false;
    let mut attempt = 0;
    let applied = loop {
        attempt += 1;
        match up.meta.txn(compares.clone(), ops.clone()).await {
            Ok(true) => break true,
            Ok(false) if !unknown => break false,
            Ok(false) => break up.meta.get(&key).await?.is_some(),
            // Refused before anything applied (a limit of the store): a bug, never a guess.
            Err(e @ stratus_meta::MetaError::TooLarge(_)) if !unknown => {
                drop(guards);
                discard(
                    up,
                    &new_object,
                    size,
                    "the store refused the transaction as too large",
                )
                .await;
                return Err(e.into());
            }
            Err(e) if attempt < COMMIT_ATTEMPTS => {
                unknown = true;
                debug!(object = name, error = %e, "wal compaction commit failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
            }
            Err(e) => {
                warn!(object = name, error = %e, "wal compaction commit unknown; its object stays until the orphan sweep");
                return Err(e.into());
            }
        }
    };
    if !applied {
        drop(guards);
        discard(
            up,
            &new_object,
            size,
            "the index or the assignment changed meanwhile",
        )
        .await;
        return Ok(None);
    }
    for (id, (mut moves, offsets)) in moved {
        for spans in moves.values_mut() {
            spans.sort_unstable();
        }
        if let Some(p) = crate::upkeep::local_partition(up, &id.topic_id, id.index) {
            p.state().relocate(&moves, offsets, &new_object, size);
        }
    }
    drop(guards);
    let replaced: HashSet<(String, u64)> = group
        .iter()
        .map(|i| (i.entry.object.clone(), i.entry.data_end()))
        .collect();
    Ok(Some((total, replaced.into_iter().collect())))
}

/// Copies the live ranges of `parts`, partition after partition, into the object `out`
/// writes, then its footer. Slices go out at block boundaries, so that on a remote store
/// each is cached whole ([`stratus_log::cache::BlockCache::insert_rewritten`]).
async fn stream(
    up: &Upkeep,
    name: &Arc<str>,
    out: &mut BulkWriter<'_>,
    parts: BTreeMap<PartitionId, Vec<Source>>,
) -> Result<Streamed> {
    let block = up.cache.block_size().max(1) as usize;
    let slice_len = bulk::SLICE.div_ceil(block) * block;
    let mut buf = BytesMut::with_capacity(slice_len + block);
    // Bytes handed to `out` so far.
    let mut sent = 0u64;
    let mut ranges: Vec<WalRange> = Vec::new();
    let mut moved: HashMap<PartitionId, (crate::partition::Moved, Range<i64>)> = HashMap::new();
    let mut first_end: BTreeMap<PartitionId, i64> = BTreeMap::new();
    // The copying is CPU work on a runtime thread: it gives way every 2 ms, so that
    // requests on the same thread do not wait for all of it.
    let mut slice = crate::upkeep::Slice::start();
    for (id, list) in parts {
        if let Some((r, _, _)) = list.first() {
            first_end.insert(id.clone(), r.end_offset);
        }
        // The offsets the copied ranges hold: only the tail chunks there can move.
        let offsets = list
            .iter()
            .map(|(r, _, _)| r.base_offset)
            .min()
            .unwrap_or(0)
            ..list.iter().map(|(r, _, _)| r.end_offset).max().unwrap_or(0);
        let (moves, _) = moved.entry(id).or_insert((HashMap::new(), offsets));
        for (r, object, size) in list {
            // Copied out of the block at once: a slice of a cached block would pin it.
            // Read through the blocks, not range by range: a small WAL object is one
            // block, read once for the dozen partitions it holds. (Exact ranges read in
            // batches, as a seal reads, read each object once per range: with 1,000 slow
            // partitions, bench/probes/slow.sh, the broker's CPU rose from 21-25 % of a
            // core to 27-32 %.)
            let data = up.cache.read(&object, size, r.pos..r.pos + r.len).await?;
            let pos = sent + buf.len() as u64;
            buf.extend_from_slice(&data);
            drop(data);
            slice.check().await;
            moves.entry(object).or_default().push((r.pos, r.len, pos));
            match ranges.last_mut() {
                // Contiguous with the previous range of the same partition: one range.
                Some(last)
                    if last.topic_id == r.topic_id
                        && last.partition == r.partition
                        && last.end_offset == r.base_offset
                        && last.pos + last.len == pos =>
                {
                    last.end_offset = r.end_offset;
                    last.len += r.len;
                    last.max_timestamp = last.max_timestamp.max(r.max_timestamp);
                    last.producers.extend(r.producers);
                    last.producers = trim(std::mem::take(&mut last.producers));
                }
                _ => ranges.push(WalRange { pos, ..r }),
            }
            if buf.len() >= slice_len {
                let part = buf.split_to(buf.len() / block * block).freeze();
                sent += send(up, name, out, sent, part).await?;
                buf.reserve(slice_len + block);
            }
        }
    }
    strip_superseded(up, &mut ranges);
    let entry = WalEntry {
        object: name.to_string(),
        ranges,
    };
    let footer = repo::encode(&entry);
    wal_format::finish(&mut buf, &footer);
    let size = sent + buf.len() as u64;
    send(up, name, out, sent, buf.freeze()).await?;
    Ok(Streamed {
        moved,
        first_end,
        footer,
        size,
    })
}

/// Hands `part` (at `offset` of the object) to `out`, and caches it where reading it back
/// would cost a request; returns its length.
async fn send(
    up: &Upkeep,
    name: &Arc<str>,
    out: &mut BulkWriter<'_>,
    offset: u64,
    part: Bytes,
) -> Result<u64> {
    let len = part.len() as u64;
    up.cache.insert_rewritten(name, offset, &part).await;
    out.write(part).await?;
    Ok(len)
}

/// Deletes a compacted object whose entry was not committed, and what was cached of it.
async fn discard(up: &Upkeep, name: &Arc<str>, size: u64, why: &str) {
    up.cache.forget_object(name, size).await;
    if let Err(e) = up.objects.delete(name).await {
        debug!(object = %name, error = %e, "unused compacted wal object not deleted");
    }
    info!(reason = why, "wal compaction skipped; the next run retries");
}

/// Drops from `ranges` the idempotent batches of producers that later committed batches
/// of this broker's partitions supersede ([`crate::partition::PartitionState::superseded_producers`]).
/// A compacted entry stays in the index until the last of its partitions seals its range,
/// and with many slow partitions each range's producer batches were most of its bytes:
/// about 0.76 MB per entry of 1,000 partitions, 600 B of a range's 760 (five batches of
/// one producer), kept up to an hour (`bench/results/footprint-hour.md`).
fn strip_superseded(up: &Upkeep, ranges: &mut [WalRange]) {
    for r in ranges.iter_mut().filter(|r| !r.producers.is_empty()) {
        let Some(p) = crate::upkeep::local_partition(up, &r.topic_id, r.partition) else {
            continue;
        };
        let gone = p.state().superseded_producers(r.end_offset);
        if !gone.is_empty() {
            r.producers.retain(|b| !gone.contains(&b.pid));
        }
    }
}

/// The last [`PRODUCER_BATCHES`] batches of each producer, in order.
fn trim(batches: Vec<ProducerBatch>) -> Vec<ProducerBatch> {
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut kept: Vec<ProducerBatch> = batches
        .into_iter()
        .rev()
        .filter(|b| {
            let n = seen.entry(b.pid).or_default();
            *n += 1;
            *n <= PRODUCER_BATCHES
        })
        .collect();
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merged_range_keeps_each_producers_last_five_batches() {
        let b = |pid: i64, seq: i32| ProducerBatch {
            pid,
            epoch: 0,
            first_seq: seq,
            last_seq: seq,
            base_offset: seq as i64,
            last_offset: seq as i64,
            appended_ms: 0,
        };
        let mut all = Vec::new();
        for s in 0..8 {
            all.push(b(1, s));
            if s < 3 {
                all.push(b(2, s));
            }
        }
        let kept = trim(all);
        let seqs = |pid| {
            kept.iter()
                .filter(|x| x.pid == pid)
                .map(|x| x.first_seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(seqs(1), vec![3, 4, 5, 6, 7]);
        assert_eq!(seqs(2), vec![0, 1, 2]);
    }
}
