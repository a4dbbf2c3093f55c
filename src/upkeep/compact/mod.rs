//! WAL compaction: the live ranges of many small WAL objects are written again as one
//! object with one range per partition, and its index entry replaces theirs in one
//! transaction. The index in the metadata store then holds a bounded number of entries per
//! broker, however many slow partitions keep data unsealed for however long `segment.ms`
//! lets them (AutoMQ's stream-set objects are the same idea).
//!
//! A run takes this broker's flush entries older than the previous run, and, for every
//! size tier that has [`MERGE_AT`] compacted entries side by side, those and the smaller ones
//! among them (so each byte is written again about once per tier, not at every run; entries
//! of half the run's byte budget or more are full and stay). Entries are
//! merged only with their neighbours in time (a compacted entry's key names the flush
//! sequences it covers), so that every partition's data in a merged entry is one range and
//! the index's bytes stay flat, not only its entries. Sealed ranges and ranges of
//! deleted topics are left out. An entry with a live range of a partition this broker does
//! not own is left alone: its owner's memory points into the object. For the partitions it
//! does own, the run points their tail chunks at the new object once the transaction is
//! applied; the replaced objects are deleted after a grace period, so that reads and seals
//! already holding their old locations finish.
//!
//! The transaction compares the assignment and every replaced key's revision: a key
//! collected, or an assignment changed, since the entries were read makes it fail, and
//! nothing changes (the new object is deleted). A crash after the PUT and before the commit
//! leaves an object no entry names, which the orphan sweep deletes; a crash after the
//! commit leaves the replaced objects, which nothing names either.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{debug, warn};

use super::tiers::{merge_runs, tier};
use super::Upkeep;
use crate::error::Result;
use stratus_meta::keys::PartitionId;
use stratus_meta::repo::{self, WalEntry};
use stratus_meta::{keys, MAX_TXN_OPS};

mod write;
use write::write;

/// Compacted entries of one size tier that are merged together.
pub const MERGE_AT: usize = 8;
/// Most entries replaced by one compacted entry: its transaction compares and deletes
/// each, besides the assignment compare and the new entry's compare and put, and the store
/// counts compares and operations together.
const FAN_IN: usize = (MAX_TXN_OPS - 3) / 2;
const _: () = assert!(2 * FAN_IN + 3 <= MAX_TXN_OPS);
/// Live bytes of the smallest tier; each tier is [`TIER_FACTOR`] times the one below.
const TIER_BASE: u64 = 1 << 20;
const TIER_FACTOR: u64 = 8;
/// Attempts of a compaction's commit before the run gives up (its outcome unknown).
const COMMIT_ATTEMPTS: u32 = 5;
/// Idempotent batches kept per producer in a merged range (what deduplication needs).
const PRODUCER_BATCHES: usize = 5;

/// The compactor's memory between runs.
#[derive(Default)]
pub struct Compaction {
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Highest flush sequence seen by the previous run: later entries are too young.
    watermark: u64,
    /// Compactions written by this incarnation (names the next one).
    written: u64,
}

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct Compacted {
    /// Index entries replaced.
    pub replaced_entries: usize,
    /// Compacted entries written.
    pub written: usize,
    /// Live bytes written again.
    pub bytes: u64,
    /// The objects replaced, with their sizes: delete them after the grace period
    /// ([`delete_replaced`]).
    pub replaced: Vec<(String, u64)>,
}

/// One index entry a run may compact, as planned from its summary.
struct Candidate {
    key: String,
    /// A flush's entry (not a compacted one).
    young: bool,
    /// The flush sequences it covers.
    span: (u64, u64),
    revision: u64,
    live_bytes: u64,
    /// Its key and value bytes in the store: the entries of a group together take at most
    /// [`repo::WAL_ENTRY_BUDGET`], and so does the entry they become (one range per
    /// partition, a producer's last few batches), which etcd would refuse whole over its
    /// request limit.
    stored: usize,
    /// Nothing in it is dead: alone, it gains nothing from being written again.
    all_live: bool,
}

/// One index entry read whole for a group being written.
struct Input {
    key: String,
    /// The flush sequences it covers.
    span: (u64, u64),
    revision: u64,
    entry: WalEntry,
    /// Indexes of its live ranges.
    live: Vec<usize>,
}

/// Where each partition's sealed data ends, and whether this broker owns it.
type Sealed = HashMap<PartitionId, (i64, bool)>;

/// Compacts this broker's WAL index entries, writing at most about `max_bytes` again.
pub async fn compact_wal(up: &Upkeep, max_bytes: u64) -> Result<Compacted> {
    let mut state = up.compaction.state.lock().await;
    let node = up.settings.server.node_id;
    let owned = up.fence.get();
    let mut slice = super::Slice::start();
    let mut index = up.wal_index.lock().await;
    let listed = index
        .refresh(
            up.meta.as_ref(),
            &keys::wal_prefix(node),
            |_| true,
            &mut slice,
        )
        .await?;
    let watermark = state.watermark;
    state.watermark = listed
        .iter()
        .filter_map(|k| keys::wal_seq(k))
        .max()
        .unwrap_or(0)
        .max(watermark);
    let topics = super::topic_ids(up).await?;
    let mut sealed: Sealed = HashMap::new();
    let mut candidates = Vec::new();
    for key in listed {
        slice.check().await;
        let span = match (keys::wal_seq(&key), keys::compacted_span(&key)) {
            (Some(s), _) if s <= watermark => (s, s),
            // Too young: the next run takes it.
            (Some(_), _) => continue,
            (None, span) if keys::is_compacted_wal_key(&key) => span.unwrap_or((0, 0)),
            (None, _) => continue,
        };
        let Some(entry) = index.get(&key) else {
            continue;
        };
        let mut live = Vec::with_capacity(entry.ranges.len());
        let mut live_bytes = 0;
        let mut movable = true;
        for r in &entry.ranges {
            let id = index.partition(r);
            if !topics.contains(id.topic_id.as_ref()) {
                live.push(false);
                continue;
            }
            let (end, ours) = match sealed.get(id) {
                Some(s) => *s,
                None => {
                    let s = sealed_end(up, &owned, &id.topic_id, id.index).await?;
                    sealed.insert(id.clone(), s);
                    s
                }
            };
            live.push(r.end_offset > end);
            if r.end_offset > end {
                if !ours {
                    movable = false;
                    break;
                }
                live_bytes += r.len;
            }
        }
        // Another owner's data: left alone (and its ranges not all judged).
        if !movable {
            continue;
        }
        let count = live.iter().filter(|l| **l).count();
        let candidate = Candidate {
            young: !keys::is_compacted_wal_key(&key),
            span,
            revision: entry.revision,
            live_bytes,
            stored: entry.stored,
            all_live: count == entry.written,
            key,
        };
        // Dead ranges stay dead: the summary forgets them.
        if let Some(entry) = index.get_mut(&candidate.key) {
            let mut l = live.iter();
            entry.ranges.retain(|_| l.next().copied().unwrap_or(true));
        }
        // Nothing live: WAL collection deletes it.
        if count > 0 {
            candidates.push(candidate);
        }
    }
    drop(index);
    let groups = plan(candidates, max_bytes, repo::WAL_ENTRY_BUDGET);
    let mut done = Compacted::default();
    for group in groups {
        // At most `max_bytes` a run (a group alone may be larger): checked only after a
        // group was written, runs wrote twice that (131 MB at 64 MiB), read it at once
        // and stalled produce for longer.
        let live: u64 = group.iter().map(|i| i.live_bytes).sum();
        if done.written > 0 && done.bytes + live > max_bytes {
            break;
        }
        if let [one] = &group[..] {
            if one.all_live {
                continue;
            }
        }
        // Read whole only now, a group at a time: the run never holds the index.
        let Some(inputs) = read_group(up, &group, &topics, &sealed).await? else {
            break;
        };
        state.written += 1;
        let n = state.written;
        match write(up, &owned, &inputs, n).await {
            Ok(Some((bytes, replaced))) => {
                done.replaced_entries += group.len();
                done.written += 1;
                done.bytes += bytes;
                done.replaced.extend(replaced);
            }
            // The assignment or the index changed under the run: the next run sees it.
            Ok(None) => break,
            Err(e) if done.written == 0 => return Err(e),
            // What was committed already still has objects to delete.
            Err(e) => {
                warn!(error = %e, "wal compaction stopped early; will retry");
                break;
            }
        }
    }
    if done.written > 0 {
        up.metrics.wal_compactions.add(done.written as u64);
        up.metrics.wal_compacted_bytes.add(done.bytes);
        debug!(
            entries = done.replaced_entries,
            written = done.written,
            bytes = done.bytes,
            "wal compacted"
        );
    }
    Ok(done)
}

/// The entries of a group, read whole, with their live ranges as the run judged them
/// (`None`: one was replaced or collected since it was listed; the next run sees it).
async fn read_group(
    up: &Upkeep,
    group: &[Candidate],
    topics: &std::collections::HashSet<String>,
    sealed: &Sealed,
) -> Result<Option<Vec<Input>>> {
    let keys: Vec<String> = group.iter().map(|c| c.key.clone()).collect();
    let values = up.meta.get_many(&keys).await?;
    let mut inputs = Vec::with_capacity(group.len());
    for (c, v) in group.iter().zip(values) {
        let Some(v) = v.filter(|v| v.mod_revision == c.revision) else {
            return Ok(None);
        };
        let entry: WalEntry = repo::decode_struct(&c.key, &v.value)?;
        // A partition the run did not look up had only ranges found dead before.
        let live = (0..entry.ranges.len())
            .filter(|i| {
                let r = &entry.ranges[*i];
                topics.contains(&r.topic_id)
                    && sealed
                        .get(&r.partition_id())
                        .is_some_and(|(end, _)| r.end_offset > *end)
            })
            .collect();
        inputs.push(Input {
            key: c.key.clone(),
            span: c.span,
            revision: c.revision,
            entry,
            live,
        });
    }
    Ok(Some(inputs))
}

/// Deletes objects a compaction replaced (after the grace period).
pub async fn delete_replaced(up: &Upkeep, replaced: &[(String, u64)]) {
    for (object, size) in replaced {
        up.cache
            .forget_object(&Arc::from(object.as_str()), *size)
            .await;
        if let Err(e) = up.objects.delete_recycling(object).await {
            warn!(object, error = %e, "compacted wal object not deleted; the orphan sweep will");
        }
    }
}

/// The groups of a run, each of entries adjacent in time (so that every partition's data
/// in the entry a group becomes is one range): the runs of flush entries between compacted
/// ones, then the compacted entries [`merge_runs`] picks, lowest tier first. An entry of
/// half `max_bytes` or more is full: merged, it would be cut again at `max_bytes`; so is
/// one of half `max_index` or more, the most index bytes a group takes.
fn plan(mut inputs: Vec<Candidate>, max_bytes: u64, max_index: usize) -> Vec<Vec<Candidate>> {
    inputs.sort_by_key(|i| i.span);
    let young: Vec<bool> = inputs.iter().map(|i| i.young).collect();
    let compacted: Vec<usize> = (0..inputs.len()).filter(|i| !young[*i]).collect();
    let tiers: Vec<Option<u32>> = compacted
        .iter()
        .map(|i| &inputs[*i])
        .map(|c| {
            (c.live_bytes < max_bytes / 2 && c.stored < max_index / 2)
                .then(|| tier(c.live_bytes, TIER_BASE, TIER_FACTOR))
        })
        .collect();
    let mut picked: Vec<Vec<usize>> = young_runs(&young)
        .into_iter()
        .map(|r| r.collect())
        .collect();
    picked.extend(
        merge_runs(&tiers, MERGE_AT)
            .into_iter()
            .map(|r| compacted[r].to_vec()),
    );
    let mut slots: Vec<Option<Candidate>> = inputs.into_iter().map(Some).collect();
    let mut groups = Vec::new();
    for indexes in picked {
        let run = indexes.iter().filter_map(|i| slots[*i].take()).collect();
        groups.extend(batches(run, max_bytes, max_index));
    }
    groups
}

/// The maximal runs of `true`.
fn young_runs(young: &[bool]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, y) in young.iter().chain([&false]).enumerate() {
        match (*y, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Inputs in order, cut into groups of at most [`FAN_IN`] entries, about `max_bytes`
/// of data and at most `max_index` bytes of index entries (an entry alone is a group).
fn batches(inputs: Vec<Candidate>, max_bytes: u64, max_index: usize) -> Vec<Vec<Candidate>> {
    let mut out: Vec<Vec<Candidate>> = Vec::new();
    let mut bytes = 0;
    let mut index = 0;
    for i in inputs {
        let full = out.last().is_none_or(|g| {
            g.len() >= FAN_IN || bytes + i.live_bytes > max_bytes || index + i.stored > max_index
        });
        if full {
            out.push(Vec::new());
            bytes = 0;
            index = 0;
        }
        bytes += i.live_bytes;
        index += i.stored;
        if let Some(g) = out.last_mut() {
            g.push(i);
        }
    }
    out
}

/// Everything below this offset of a partition is sealed, and whether this broker owns
/// it at the epoch of `owned` with that epoch installed (so that its memory is the only
/// one pointing into WAL objects, besides read-only replicas that follow the index).
async fn sealed_end(
    up: &Upkeep,
    owned: &crate::cluster::Owned,
    topic_id: &str,
    partition: i32,
) -> Result<(i64, bool)> {
    if let Some(p) = super::local_partition(up, topic_id, partition) {
        let s = p.state();
        let epoch = s.owner_epoch();
        if epoch.is_some() && epoch == owned.epoch(topic_id, partition) {
            return Ok((s.sealed_end(), true));
        }
    }
    Ok((
        super::wal_gc::sealed_end(up, topic_id, partition).await?,
        false,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_entries_are_merged_in_their_runs_between_compacted_ones() {
        assert_eq!(young_runs(&[]), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(
            young_runs(&[true, true, false, true, false, false, true]),
            vec![0..2, 3..4, 6..7]
        );
    }

    fn candidate(seq: u64, young: bool, stored: usize) -> Candidate {
        Candidate {
            key: format!("k{seq}"),
            young,
            span: (seq, seq),
            revision: 1,
            live_bytes: 10,
            stored,
            all_live: false,
        }
    }

    fn sizes(groups: &[Vec<Candidate>]) -> Vec<usize> {
        groups.iter().map(Vec::len).collect()
    }

    /// etcd refuses a request over its limit whole: a group's entries, and so the entry
    /// they become, stay within the index budget, and an entry of half of it or more is
    /// never merged again (merging it would only rewrite it).
    #[test]
    fn groups_keep_within_the_index_budget() {
        let young = (0..10).map(|s| candidate(s, true, 300)).collect();
        assert_eq!(sizes(&plan(young, 1 << 30, 1000)), vec![3, 3, 3, 1]);
        let compacted = (0..MERGE_AT as u64)
            .map(|s| candidate(s, false, 400))
            .collect();
        assert_eq!(
            sizes(&plan(compacted, 1 << 30, 1000)),
            vec![2; MERGE_AT / 2]
        );
        let full = (0..MERGE_AT as u64)
            .map(|s| candidate(s, false, 500))
            .collect();
        assert!(plan(full, 1 << 30, 1000).is_empty());
        // Under the budget, one group as before.
        let small = (0..MERGE_AT as u64)
            .map(|s| candidate(s, false, 100))
            .collect();
        assert_eq!(sizes(&plan(small, 1 << 30, 1000)), vec![MERGE_AT]);
    }
}
