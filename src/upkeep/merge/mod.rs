//! Segment merging: once a partition retains more than `segment.merge.min.segments`
//! segments, its owner writes runs of adjacent old ones again as one segment each, in size
//! tiers ([`plan`]), and its record names the merged segment in their place. A partition's
//! record lists every segment it retains and is written whole at every seal; etcd refuses
//! one over its request limit (1.5 MiB, about 7,000 segments), and would hold every record
//! in its database besides. Merging bounds the list by what the partition retains.
//!
//! A merge streams the inputs' batches in offset order into one object ([`write`]), named
//! after its first input with one more merge in its name, under the owner's epoch: no
//! named segment has that name. Under the partition's record lock, and fenced by the owner
//! epoch as seals are, the record replaces the inputs by it, if they are still there side
//! by side (retention or an ownership change may have moved on meanwhile: the merged
//! object is then deleted). The inputs are deleted after a grace period, so that reads
//! already holding their names finish.
//!
//! A crash before the commit leaves a merged object no record names; a crash after it
//! leaves the inputs, which no record names either. Both start below the sealed end, and
//! the controller's segment sweep ([`super::orphans`]) deletes them once they are ten
//! minutes old. A merge therefore never commits an object it started writing more than
//! half that long ago: the sweep could be deleting it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Upkeep;
use crate::error::Result;
use crate::partition::Partition;
use stratus_log::paths::SegmentObject;
use stratus_meta::repo::SegmentRef;

mod plan;
mod write;

pub(crate) use plan::{plan, Limits};

/// A merge whose write took longer than this is not committed (see the module's notes).
const MAX_UNNAMED_MS: i64 = super::orphans::ORPHAN_MIN_AGE_MS / 2;

/// What a merge run did.
#[derive(Debug, Default)]
pub struct Merged {
    /// Merged segments written and named.
    pub merges: usize,
    /// Bytes of batches written again.
    pub bytes: u64,
    /// The segments replaced: delete them after the grace period ([`delete_replaced`]).
    pub replaced: Vec<SegmentRef>,
    /// Most segments a partition of this broker retains (after the run).
    pub most_segments: usize,
}

/// Runs merges every `segment.merge.interval.ms` until cancelled (never if 0). A merge in
/// progress when cancelled stops where it is: what it wrote, no record names.
pub async fn run(up: Arc<Upkeep>, cancel: CancellationToken) {
    let every = up.settings.storage.segment_merge_interval_ms;
    if every == 0 {
        return cancel.cancelled().await;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let done = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => tokio::select! {
                _ = cancel.cancelled() => return,
                done = merge_due(&up) => done,
            },
        };
        match done {
            Ok(done) if !done.replaced.is_empty() => {
                // Reads may still hold the inputs' names for a moment.
                let up = up.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(grace(every)).await;
                    delete_replaced(&up, &done.replaced).await;
                });
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "segment merge failed; will retry"),
        }
    }
}

/// Merges the due segments of the partitions this broker owns, writing about
/// `segment.merge.max.bytes` at most (and at least one merge, if one is due).
pub async fn merge_due(up: &Upkeep) -> Result<Merged> {
    let s = &up.settings.storage;
    let now = up.clock.now_ms();
    let mut done = Merged::default();
    let mut first_error = None;
    let mut slice = super::Slice::start();
    for topic in up.registry.topics() {
        let (retention_ms, retention_bytes) = super::retention::limits(up, &topic);
        let limits = Limits {
            min_segments: s.segment_merge_min_segments,
            min_age_ms: s.segment_merge_min_age_ms,
            max_bytes: s.segment_merge_max_bytes,
            retention_ms,
            retention_bytes,
        };
        for p in &topic.partitions {
            slice.check().await;
            let (groups, epoch) = {
                let st = p.state();
                let Some(epoch) = st.owner_epoch() else {
                    continue;
                };
                let groups: Vec<Vec<SegmentRef>> = plan(st.segments(), now, &limits)
                    .into_iter()
                    .map(|r| st.segments()[r].to_vec())
                    .collect();
                (groups, epoch)
            };
            for inputs in groups {
                if done.merges > 0 && done.bytes >= s.segment_merge_max_bytes {
                    break;
                }
                match merge(up, p, &inputs, epoch).await {
                    Ok(Some(replaced)) => {
                        done.merges += 1;
                        done.bytes += inputs.iter().map(|g| g.data_len).sum::<u64>();
                        done.replaced.extend(replaced);
                    }
                    // The partition moved on meanwhile: the next run plans again.
                    Ok(None) => break,
                    Err(e) => {
                        up.metrics.segment_merge_failures.inc();
                        debug!(topic = %p.topic, partition = p.index, error = %e, "segment merge failed; will retry");
                        first_error.get_or_insert(e);
                        break;
                    }
                }
            }
            done.most_segments = done.most_segments.max(p.state().segments().len());
        }
    }
    up.metrics.segments_most.set(done.most_segments as f64);
    if done.merges > 0 {
        up.metrics.segment_merges.add(done.merges as u64);
        up.metrics.segment_merged_bytes.add(done.bytes);
    }
    match first_error {
        Some(e) if done.merges == 0 => Err(e),
        Some(e) => {
            warn!(error = %e, "a segment merge failed; will retry");
            Ok(done)
        }
        None => Ok(done),
    }
}

/// Merges `inputs`, adjacent segments of `p` as its owner at `epoch` had them; returns the
/// segments replaced, or `None` if `p` moved on meanwhile (nothing changed).
async fn merge(
    up: &Upkeep,
    p: &Partition,
    inputs: &[SegmentRef],
    epoch: i32,
) -> Result<Option<Vec<SegmentRef>>> {
    let Some(first) = inputs.first() else {
        return Ok(None);
    };
    let started = up.clock.now_ms();
    let merges = SegmentObject::parse(&first.key).map_or(0, |o| o.merges) + 1;
    let key = SegmentObject {
        topic_id: &p.topic_id,
        partition: p.index,
        base_offset: first.base_offset,
        epoch: Some(epoch),
        merges,
    }
    .name();
    let meta = write::write(up, &key, inputs).await?;
    let merged = SegmentRef {
        key: key.clone(),
        base_offset: meta.base_offset,
        end_offset: meta.end_offset,
        data_len: meta.data_len,
        size: meta.size,
        max_timestamp: meta.max_timestamp,
    };
    let _record = p.record_lock.lock().await;
    // A write whose outcome was unknown: the record is compared with the state first.
    up.records.settle(p).await?;
    let keys: Vec<&str> = inputs.iter().map(|g| g.key.as_str()).collect();
    let at = {
        let s = p.state();
        if s.owner_epoch() == Some(epoch) {
            s.segments_at(&keys)
        } else {
            None
        }
    };
    let late = up.clock.now_ms() - started > MAX_UNNAMED_MS;
    let Some(at) = at.filter(|_| !late) else {
        // Nothing names it, nor ever will.
        if let Err(e) = up.objects.delete(&key).await {
            warn!(object = key, error = %e, "merged segment not used and not deleted; the orphan sweep will");
        }
        return Ok(None);
    };
    let rec = p.state().record_after_merge(at, inputs.len(), &merged);
    // On an error the merged object stays: the write may have been applied all the same,
    // and then the record names it (the next write settles the state first).
    super::seal::write_naming(up, p, &rec, &key).await?;
    let replaced = p.state().apply_merge(at, inputs.len(), merged);
    debug!(topic = %p.topic, partition = p.index, segments = inputs.len(), base = meta.base_offset, end = meta.end_offset, bytes = meta.size, "merged segments");
    Ok(Some(replaced))
}

/// Deletes the segments merges replaced (after the grace period).
pub async fn delete_replaced(up: &Upkeep, replaced: &[SegmentRef]) {
    for g in replaced {
        let key: Arc<str> = Arc::from(g.key.as_str());
        up.reader.forget_segment(&key, g.size).await;
        if let Err(e) = up.objects.delete(&g.key).await {
            warn!(object = g.key, error = %e, "merged segment's input not deleted; the orphan sweep will");
        }
    }
}

/// How long replaced segments stay readable after the merge's commit.
fn grace(interval_ms: u64) -> Duration {
    Duration::from_millis(interval_ms.clamp(5_000, 60_000))
}
