//! Sealing: the oldest committed WAL ranges of a partition become one segment object,
//! named in the partition record; the WAL objects are collected later ([`super::wal_gc`]).

use std::sync::Arc;

use kafka_protocol::ResponseError as Code;
use tracing::{debug, warn};

use super::Upkeep;
use crate::error::{Error, Result};
use crate::partition::{Location, Partition};
use stratus_log::bulk::{self, BulkWriter};
use stratus_log::objects::ObjectError;
use stratus_log::paths::SegmentObject;
use stratus_log::segment;
use stratus_meta::repo::SegmentRef;

/// Seals run at once. On a local store each reads exactly its ranges, once
/// ([`stratus_log::cache::BlockCache::read_once_many`]). On S3 they read by blocks, and the
/// partitions due together mostly hold ranges of the same WAL objects (one object per
/// flush holds every partition written meanwhile), so side by side their seals read each
/// block once ([`stratus_log::cache::BlockCache`] fetches a block once for all who wait on
/// it); one after another, each re-read every object it touched once the unsealed data
/// outgrew the memory cache. At 50 MB/s into 8 partitions, bytes read per byte sealed: 6.0
/// one after another, 2.0 four at once, 1.3 eight at once; but eight at once raised the
/// broker's peak RSS from 0.8 to 1.5 GB, four kept it at 0.8.
const SEALS_AT_ONCE: usize = 4;

/// Seals what is due; returns how many partitions failed to seal and the first error.
pub async fn seal_due(up: &Upkeep) -> (usize, Option<crate::error::Error>) {
    use futures::StreamExt as _;
    let now = up.clock.now_ms();
    // Data older than wal.unsealed.max.ms is sealed whatever segment.ms says: until then it
    // stays in WAL objects that the index names, and with many slow partitions the index
    // grows with every compacted object that fills (one per 32 MiB, a range for every
    // partition in it: about 0.76 MB per 32 MiB at 1,000 partitions), for as long as the
    // data stays unsealed (bench/results/footprint-hour.md).
    let cap = match up.settings.storage.wal_unsealed_max_ms {
        0 => i64::MAX,
        ms => ms,
    };
    let mut due = Vec::new();
    for topic in up.registry.topics() {
        let seg_bytes = up.registry.config_i64(&topic, "segment.bytes").max(1) as u64;
        let seg_ms = up.registry.config_i64(&topic, "segment.ms").clamp(1, cap);
        for p in &topic.partitions {
            let (bytes, oldest) = {
                let s = p.state();
                if s.owner_epoch().is_none() {
                    continue;
                }
                s.unsealed()
            };
            let old = oldest.is_some_and(|t| now - t >= seg_ms);
            if bytes > 0 && (bytes >= seg_bytes || old) {
                due.push((p.clone(), seg_bytes));
            }
        }
    }
    let mut results = futures::stream::iter(due)
        .map(|(p, seg_bytes)| async move { (seal(up, &p, seg_bytes).await, p) })
        .buffer_unordered(SEALS_AT_ONCE);
    let (mut failed, mut first) = (0, None);
    while let Some((result, p)) = results.next().await {
        if let Err(e) = result {
            up.metrics.seal_failures.inc();
            debug!(topic = %p.topic, partition = p.index, error = %e, "sealing failed; will retry");
            failed += 1;
            first.get_or_insert(e);
        }
    }
    (failed, first)
}

/// Seals the oldest committed WAL ranges of `p`, about `max_bytes` of them, into one
/// segment object.
pub async fn seal(up: &Upkeep, p: &Partition, max_bytes: u64) -> Result<()> {
    let _record = p.record_lock.lock().await;
    let started = std::time::Instant::now();
    // A seal whose write failed but was applied: take it, rather than seal that range
    // again from WAL objects that may be collected by now.
    up.records.settle(p).await?;
    let (chunks, epoch) = {
        let s = p.state();
        (s.sealable(max_bytes), s.owner_epoch())
    };
    let Some(epoch) = epoch.filter(|_| !chunks.is_empty()) else {
        return Ok(());
    };
    let Some((key, built)) = write_segment(up, p, &chunks, epoch).await? else {
        return Ok(());
    };
    let size = built.size;
    let seg = SegmentRef {
        key: key.clone(),
        base_offset: built.base_offset,
        end_offset: built.end_offset,
        data_len: built.data_len,
        size,
        max_timestamp: built.max_timestamp,
    };
    let rec = p.state().record_after_seal(&seg);
    // On an error the segment object stays: the record write may have been applied even
    // so (an answer lost when the store or the connection dies, or an earlier attempt
    // applied before a fenced retry), and then the record names it. Deleting it here lost
    // acknowledged data in the chaos test (kill -9 of etcd during a seal). The next seal
    // settles the state with the store first (PartitionRecords::settle); a segment no record
    // ever names is left behind.
    write_naming(up, p, &rec, &key).await?;
    p.state().apply_seal(seg);
    up.metrics.sealed.inc();
    up.metrics.sealed_bytes.add(size);
    up.metrics.seal_seconds.observe_duration(started.elapsed());
    debug!(topic = %p.topic, partition = p.index, base = built.base_offset, end = built.end_offset, bytes = size, "sealed segment");
    Ok(())
}

/// Writes `rec`, which names the new segment object `key`, as the partition's record. If
/// the topic was deleted meanwhile, its deletion removed the segments the records named,
/// which may not include this one: nothing will read it, so it is deleted. On another
/// error the object stays (the write may have been applied all the same).
pub(super) async fn write_naming(
    up: &Upkeep,
    p: &Partition,
    rec: &stratus_meta::repo::PartitionRecord,
    key: &str,
) -> Result<()> {
    let written = up.records.write(p, rec, vec![]).await;
    if p.state().is_deleted() {
        if let Err(e) = up.objects.delete(key).await {
            warn!(object = key, error = %e, "segment of a deleted topic not deleted");
        }
        return Err(Error::Kafka(Code::UnknownTopicOrPartition));
    }
    written
}

/// Writes the segment of `chunks` and returns its name and what it holds (`None`: the
/// chunks held no batch). A segment of up to [`bulk::PART`] goes in one PUT. A larger one
/// is never held whole: chunks are read one at a time and handed to a [`BulkWriter`] a
/// [`bulk::SLICE`] at a time (8 MiB parts here held up to 70 MiB across four seals at
/// once). The name carries the owner `epoch`, so only a seal of this ownership
/// can meet an object under it: one left by an earlier seal of the same ownership that
/// failed before its commit, which is replaced in place, never deleted first (a reader
/// never finds it missing). A fenced-out ex-owner sealing late writes under its own epoch's
/// name, never over the segment the new owner sealed from the same base offset.
async fn write_segment(
    up: &Upkeep,
    p: &Partition,
    chunks: &[crate::partition::TailChunk],
    epoch: i32,
) -> Result<Option<(String, segment::Meta)>> {
    let name = |base_offset| {
        SegmentObject {
            topic_id: &p.topic_id,
            partition: p.index,
            base_offset,
            epoch: Some(epoch),
            merges: 0,
        }
        .name()
    };
    // A slice is taken once it reaches SLICE: room for that and the chunk that crossed it.
    let total: u64 = chunks.iter().map(crate::partition::TailChunk::size).sum();
    let slice = if total > bulk::PART as u64 {
        bulk::SLICE
    } else {
        usize::MAX
    };
    let mut w = segment::Writer::with_capacity((total as usize).min(bulk::SLICE + (1 << 20)));
    let mut out: Option<(String, BulkWriter<'_>)> = None;
    let mut failed = None;
    let wal: Vec<(Arc<str>, u64, std::ops::Range<u64>)> = chunks
        .iter()
        .filter_map(|c| match &c.location {
            Location::Wal {
                object,
                object_size,
                pos,
                len,
            } => Some((object.clone(), *object_size, *pos..pos + len)),
            _ => None,
        })
        .collect();
    let mut next = 0;
    'reading: while next < wal.len() {
        let batch = &wal[next..next + read_batch(&wal[next..])];
        next += batch.len();
        for data in up.cache.read_once_many(batch).await {
            let data = match data {
                Ok(d) => d,
                Err(e) => {
                    failed = Some(Error::from(e));
                    break 'reading;
                }
            };
            w.push(&data);
            let Some(part) = w.take_part(slice) else {
                continue;
            };
            if out.is_none() {
                let key = name(w.base_offset().unwrap_or_default());
                match up.objects.bulk_writer(&key).await {
                    Ok(b) => out = Some((key, b)),
                    Err(e) => {
                        failed = Some(e.into());
                        break 'reading;
                    }
                }
            }
            if let Some((_, b)) = &mut out {
                if let Err(e) = b.write(part).await {
                    failed = Some(e.into());
                    break 'reading;
                }
            }
        }
    }
    let finished = match failed {
        None => w.finish(),
        Some(_) => None,
    };
    let Some((last, meta)) = finished else {
        if let Some((_, b)) = out {
            b.abort().await;
        }
        return failed.map_or(Ok(None), Err);
    };
    let (key, replaced) = match out {
        None => {
            let key = name(meta.base_offset);
            (key.clone(), put_whole(up, &key, last).await?)
        }
        Some((key, mut b)) => {
            if let Err(e) = b.write(last).await {
                b.abort().await;
                return Err(e.into());
            }
            let replaced = b.finish().await?;
            (key, replaced)
        }
    };
    if replaced {
        let cached: Arc<str> = Arc::from(key.as_str());
        up.reader.forget_segment(&cached, meta.size).await;
    }
    Ok(Some((key, meta)))
}

/// How many of `reads` (at least one) a seal reads at once: up to [`READ_AT_ONCE`] bytes,
/// [`READS_AT_ONCE`] ranges. A seal reads a range of every WAL flush that held its
/// partition, hundreds per segment; read one at a time, each went to a blocking thread and
/// back on a local store (the broker's threads waking each other took more CPU than the
/// reads at full-speed produce into 8 partitions).
fn read_batch(reads: &[(Arc<str>, u64, std::ops::Range<u64>)]) -> usize {
    let mut bytes = 0;
    let n = reads
        .iter()
        .take(READS_AT_ONCE)
        .take_while(|(_, _, r)| {
            bytes += r.end - r.start;
            bytes <= READ_AT_ONCE
        })
        .count();
    n.max(1).min(reads.len())
}

/// Bytes a seal reads at once at most (a range larger than this is read alone).
const READ_AT_ONCE: u64 = 1 << 20;
/// Ranges a seal reads at once at most.
const READS_AT_ONCE: usize = 64;

/// One PUT of a small segment; whether it replaced one left under its name.
async fn put_whole(up: &Upkeep, key: &str, body: bytes::Bytes) -> Result<bool> {
    match up.objects.put_bulk(key, body.clone(), false).await {
        Ok(()) => Ok(false),
        Err(ObjectError::Store(object_store::Error::AlreadyExists { .. })) => {
            up.objects.put_bulk(key, body, true).await?;
            Ok(true)
        }
        // Any other failure (the object store is down) ends the seal before its record
        // names the segment. (Once, every other error was ignored here and the record
        // committed a segment that was never written; WAL collection then lost the data.)
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_reads_up_to_a_mib_or_64_ranges_at_once_and_always_one() {
        let o: Arc<str> = Arc::from("o");
        let of = |lens: &[u64]| -> Vec<(Arc<str>, u64, std::ops::Range<u64>)> {
            lens.iter().map(|l| (o.clone(), 1 << 30, 0..*l)).collect()
        };
        assert_eq!(read_batch(&of(&[])), 0);
        assert_eq!(read_batch(&of(&[4 << 20, 1])), 1, "a large range alone");
        assert_eq!(read_batch(&of(&[512 << 10, 512 << 10, 1])), 2);
        assert_eq!(read_batch(&of(&[1000; 100])), READS_AT_ONCE);
        assert_eq!(read_batch(&of(&[1000; 3])), 3);
    }
}
