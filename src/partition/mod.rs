//! A partition owned by this broker: offsets, high watermark, idempotent producer state and
//! the map of where its data lives (sealed segments, then WAL ranges, then pending bytes).
//!
//! Offsets are assigned under the partition lock and the stamped batches are handed to the
//! WAL buffer under the same lock, so WAL order is offset order. The high watermark moves
//! only when the WAL object holding the data and its index entry are committed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use kafka_protocol::ResponseError as Code;

use stratus_log::batch::{self, Batch};
use stratus_meta::keys::PartitionId;
use stratus_meta::repo::{PartitionRecord, ProducerBatch, SegmentRef};

mod producers;
mod relocate;
mod traffic;
use producers::Producers;
pub use traffic::Traffic;

/// Leader epochs a partition remembers.
const MAX_EPOCHS: usize = 1000;

/// Where a run of offsets is stored.
#[derive(Debug, Clone)]
pub enum Location {
    /// Appended, not yet committed: not readable.
    Pending(Bytes),
    /// Committed inside a WAL object.
    Wal {
        /// Object key.
        object: Arc<str>,
        /// Object size.
        object_size: u64,
        /// Position of the range.
        pos: u64,
        /// Length of the range.
        len: u64,
    },
}

/// Spans a WAL compaction copied, by old object: `(old position, length, new position)`,
/// sorted by old position.
pub type Moved = HashMap<Arc<str>, Vec<(u64, u64, u64)>>;

/// Offsets `[base, end)` beyond the sealed segments.
#[derive(Debug, Clone)]
pub struct TailChunk {
    /// First offset.
    pub base: i64,
    /// One past the last offset.
    pub end: i64,
    /// Largest timestamp.
    pub max_timestamp: i64,
    /// Where it is.
    pub location: Location,
    /// When it was appended, in clock milliseconds (drives segment.ms).
    pub created_ms: i64,
}

impl TailChunk {
    /// A committed WAL range, as recovery finds it in the index at `now_ms` (its age for
    /// segment.ms starts then).
    pub fn from_wal(
        r: &stratus_meta::repo::WalRange,
        object: &Arc<str>,
        object_size: u64,
        now_ms: i64,
    ) -> Self {
        TailChunk {
            base: r.base_offset,
            end: r.end_offset,
            max_timestamp: r.max_timestamp,
            location: Location::Wal {
                object: object.clone(),
                object_size,
                pos: r.pos,
                len: r.len,
            },
            created_ms: now_ms,
        }
    }

    /// Bytes of the chunk.
    pub fn size(&self) -> u64 {
        match &self.location {
            Location::Pending(b) => b.len() as u64,
            Location::Wal { len, .. } => *len,
        }
    }
}

/// Mutable state of a partition, owned by it: other modules read it through getters and
/// change it only through the intent-named methods below (append, commit, apply a seal,
/// drop segments, move the log start, take or give up ownership, mark deleted).
#[derive(Debug, Default)]
pub struct PartitionState {
    /// First readable offset.
    log_start: i64,
    /// Next offset to assign (log end offset, pending data included).
    next_offset: i64,
    /// Everything below is committed and readable.
    high_watermark: i64,
    /// Current leader epoch.
    leader_epoch: i32,
    /// Leader epochs and their start offsets.
    epochs: Vec<(i32, i64)>,
    /// Sealed segments.
    segments: Vec<SegmentRef>,
    /// Everything below is in `segments`.
    sealed_end: i64,
    /// Data beyond `sealed_end`.
    tail: VecDeque<TailChunk>,
    /// Idempotent producers' last batches.
    producers: Producers,
    /// Set once the topic is deleted: every later request fails.
    deleted: bool,
    /// The epoch at which this broker owns the partition; `None`: another broker does
    /// (writes and reads get NOT_LEADER_OR_FOLLOWER).
    owner_epoch: Option<i32>,
    /// The last write of the partition record failed, and may have been applied all the
    /// same (an answer lost with the connection): the stored record may be ahead of this
    /// state until [`PartitionState::adopt`] has compared them.
    record_unsure: bool,
}

/// What an append did.
#[derive(Debug)]
pub enum Appended {
    /// New data at `base_offset`; `bytes` are the stamped batches.
    New {
        /// First offset assigned.
        base_offset: i64,
        /// One past the last.
        end_offset: i64,
        /// Stamped batches, concatenated.
        bytes: Bytes,
        /// Largest timestamp.
        max_timestamp: i64,
        /// Idempotent batches in it.
        producers: Vec<ProducerBatch>,
    },
    /// A retry of a batch already written at `base_offset`.
    Duplicate {
        /// Where the original is.
        base_offset: i64,
    },
}

/// A partition of a topic.
#[derive(Debug)]
pub struct Partition {
    /// Topic id.
    pub topic_id: Arc<str>,
    /// Topic name.
    pub topic: Arc<str>,
    /// Index.
    pub index: i32,
    state: Mutex<PartitionState>,
    /// Serializes read-modify-write of the partition record (seal, retention, delete).
    pub record_lock: tokio::sync::Mutex<()>,
    /// Woken when this broker takes or gives up ownership.
    pub ownership_changed: tokio::sync::Notify,
    /// Bytes produced to and fetched from it on this broker.
    pub traffic: Traffic,
}

impl Partition {
    /// Its topic id and index.
    pub fn id(&self) -> PartitionId {
        PartitionId {
            topic_id: self.topic_id.clone(),
            index: self.index,
        }
    }

    /// A partition this broker does not own (yet).
    pub fn new(topic_id: Arc<str>, topic: Arc<str>, index: i32, rec: &PartitionRecord) -> Self {
        Partition {
            topic_id,
            topic,
            index,
            state: Mutex::new(PartitionState::from_record(rec)),
            record_lock: tokio::sync::Mutex::new(()),
            ownership_changed: tokio::sync::Notify::new(),
            traffic: Traffic::default(),
        }
    }

    /// Locks the state. A poisoned lock is recovered: every critical section leaves the
    /// state consistent before anything that can panic.
    pub fn state(&self) -> MutexGuard<'_, PartitionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Snapshot of the durable record.
    pub fn record(&self) -> PartitionRecord {
        self.state().record()
    }

    /// Takes ownership with a freshly recovered state.
    pub fn install(&self, state: PartitionState) {
        let mut s = self.state();
        let deleted = s.deleted;
        let previous = std::mem::take(&mut s.producers);
        *s = state;
        s.deleted = deleted;
        // Requests the producers sent before they saw a drop may still come here.
        s.producers.keep_dropped(previous);
        drop(s);
        self.ownership_changed.notify_waiters();
    }

    /// Gives ownership up: writes are refused from now on, and what is not committed is
    /// forgotten (the WAL commit leaves it out).
    pub fn release(&self) {
        let mut s = self.state();
        s.owner_epoch = None;
        s.truncate_to_committed();
        drop(s);
        self.ownership_changed.notify_waiters();
    }
}

impl PartitionState {
    /// State from a durable record: everything sealed, nothing owned yet.
    pub fn from_record(rec: &PartitionRecord) -> Self {
        let producers = Producers::from_committed(&rec.producers);
        PartitionState {
            log_start: rec.log_start_offset,
            next_offset: rec.sealed_end,
            high_watermark: rec.sealed_end,
            leader_epoch: rec.epochs.last().map(|e| e.0).unwrap_or(0),
            epochs: rec.epochs.clone(),
            segments: rec.segments.clone(),
            sealed_end: rec.sealed_end,
            tail: VecDeque::new(),
            producers,
            deleted: false,
            owner_epoch: None,
            record_unsure: false,
        }
    }

    /// Takes what the stored record (written by this owner) has that this state lacks: a
    /// seal, a retention or a DeleteRecords whose write failed here but was applied.
    /// Returns whether anything changed. Written only by the owner at its epoch, the
    /// stored record is never behind what this state has committed.
    pub fn adopt(&mut self, stored: &PartitionRecord) -> bool {
        let mut changed = false;
        if stored.sealed_end > self.sealed_end {
            self.sealed_end = stored.sealed_end;
            self.tail.retain(|c| c.end > stored.sealed_end);
            changed = true;
        }
        if stored.segments != self.segments {
            self.segments = stored.segments.clone();
            changed = true;
        }
        if stored.log_start_offset > self.log_start {
            self.log_start = stored.log_start_offset;
            changed = true;
        }
        self.record_unsure = false;
        changed
    }

    /// Adds a committed WAL range found at recovery.
    pub fn recover_range(&mut self, chunk: TailChunk, producers: &[ProducerBatch]) {
        if chunk.end <= self.sealed_end || chunk.end <= self.next_offset {
            return;
        }
        self.next_offset = chunk.end;
        self.high_watermark = chunk.end;
        self.producers.add_committed(producers);
        self.tail.push_back(chunk);
    }

    /// Snapshot of the durable record.
    pub fn record(&self) -> PartitionRecord {
        PartitionRecord {
            log_start_offset: self.log_start,
            sealed_end: self.sealed_end,
            segments: self.segments.clone(),
            epochs: self.epochs.clone(),
            producers: self.producers.below(self.sealed_end),
        }
    }

    /// First readable offset.
    pub fn log_start(&self) -> i64 {
        self.log_start
    }
    /// Next offset to assign (pending data included).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    /// Everything below is committed and readable.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }
    /// Current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }
    /// Leader epochs and their start offsets.
    pub fn epochs(&self) -> &[(i32, i64)] {
        &self.epochs
    }
    /// Sealed segments, in offset order.
    pub fn segments(&self) -> &[SegmentRef] {
        &self.segments
    }
    /// Everything below is in `segments`.
    pub fn sealed_end(&self) -> i64 {
        self.sealed_end
    }
    /// Bytes beyond the sealed end (in WAL objects, or appended and not yet committed).
    pub fn unsealed_bytes(&self) -> u64 {
        self.tail
            .iter()
            .map(|c| match &c.location {
                Location::Wal { len, .. } => *len,
                Location::Pending(b) => b.len() as u64,
            })
            .sum()
    }

    /// Data beyond the sealed end, in offset order.
    pub fn tail(&self) -> &VecDeque<TailChunk> {
        &self.tail
    }
    /// The epoch at which this broker owns the partition (`None`: it does not).
    pub fn owner_epoch(&self) -> Option<i32> {
        self.owner_epoch
    }
    /// Whether the topic was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }
    /// Whether the last write of the record failed (see [`PartitionState::adopt`]).
    pub fn record_unsure(&self) -> bool {
        self.record_unsure
    }

    /// The topic is deleted: every later request fails, nothing is owned.
    pub fn mark_deleted(&mut self) {
        self.deleted = true;
        self.owner_epoch = None;
    }

    /// A write of the record failed and may have been applied all the same.
    pub fn mark_record_unsure(&mut self) {
        self.record_unsure = true;
    }

    /// The stored record was found to agree with this state (or is gone).
    pub fn record_settled(&mut self) {
        self.record_unsure = false;
    }

    /// Becomes the owner at `epoch` (a state just recovered from the record and the WAL):
    /// the epoch starts at the log end, replacing epochs under which nothing was written
    /// (as Kafka's leader epoch cache does, so OffsetForLeaderEpoch answers the epoch that
    /// wrote the data).
    pub fn take_ownership(&mut self, epoch: i32) {
        self.leader_epoch = epoch;
        if self.epochs.last().map(|e| e.0) != Some(epoch) {
            let start = self.next_offset;
            while self.epochs.last().is_some_and(|e| e.1 >= start) {
                self.epochs.pop();
            }
            self.epochs.push((epoch, start));
            if self.epochs.len() > MAX_EPOCHS {
                self.epochs.remove(0);
            }
        }
        self.owner_epoch = Some(epoch);
    }

    /// The oldest committed WAL chunks to seal into one segment: about `max_bytes` of
    /// them, at least one.
    pub fn sealable(&self, max_bytes: u64) -> Vec<TailChunk> {
        let mut total = 0u64;
        self.tail
            .iter()
            .take_while(|c| {
                c.end <= self.high_watermark && matches!(c.location, Location::Wal { .. })
            })
            .take_while(|c| {
                let first = total == 0;
                if let Location::Wal { len, .. } = &c.location {
                    total += len;
                }
                first || total <= max_bytes
            })
            .cloned()
            .collect()
    }

    /// The record once `seg` is sealed (to write before [`PartitionState::apply_seal`]).
    pub fn record_after_seal(&self, seg: &SegmentRef) -> PartitionRecord {
        let mut rec = self.record();
        rec.segments.push(seg.clone());
        rec.sealed_end = seg.end_offset;
        rec.producers = self.producers.below(seg.end_offset);
        rec
    }

    /// A seal whose record is written: the segment holds what the WAL chunks held.
    pub fn apply_seal(&mut self, seg: SegmentRef) {
        self.sealed_end = seg.end_offset;
        self.tail.retain(|c| c.end > seg.end_offset);
        // A burst's chunks (one per WAL flush) grew the tail; a seal leaves few.
        if self.tail.capacity() > 64 && self.tail.len() * 4 < self.tail.capacity() {
            self.tail.shrink_to(self.tail.len() * 2);
        }
        self.segments.push(seg);
    }

    /// Where the segments named by `keys` lie in [`PartitionState::segments`], if they
    /// are still there, side by side and in that order (a merge planned from an older
    /// view checks this before it commits).
    pub fn segments_at(&self, keys: &[&str]) -> Option<usize> {
        let first = keys.first()?;
        let at = self.segments.iter().position(|g| g.key == *first)?;
        let run = self.segments.get(at..at + keys.len())?;
        run.iter().zip(keys).all(|(g, k)| g.key == *k).then_some(at)
    }

    /// The record with the `count` segments from `at` replaced by `merged`, which holds
    /// what they held (to write before [`PartitionState::apply_merge`]).
    pub fn record_after_merge(
        &self,
        at: usize,
        count: usize,
        merged: &SegmentRef,
    ) -> PartitionRecord {
        let mut rec = self.record();
        rec.segments.splice(at..at + count, [merged.clone()]);
        rec
    }

    /// A merge whose record is written: returns the segments it replaced (their objects
    /// are deleted after a grace period).
    pub fn apply_merge(&mut self, at: usize, count: usize, merged: SegmentRef) -> Vec<SegmentRef> {
        self.segments.splice(at..at + count, [merged]).collect()
    }

    /// How many of the oldest segments retention deletes (past `retention_ms` at `now`,
    /// past `retention_bytes`, or wholly below the log start), and the log start after
    /// them; `None` if none.
    pub fn expired_segments(
        &self,
        now: i64,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> Option<(usize, i64)> {
        let mut total: i64 = self.segments.iter().map(|g| g.data_len as i64).sum();
        let mut drop = 0;
        for g in &self.segments {
            let expired = retention_ms >= 0 && g.max_timestamp < now - retention_ms;
            let oversize = retention_bytes >= 0 && total - g.data_len as i64 >= retention_bytes;
            let below = g.end_offset <= self.log_start;
            if !(expired || oversize || below) {
                break;
            }
            total -= g.data_len as i64;
            drop += 1;
        }
        if drop == 0 {
            return None;
        }
        let next = self
            .segments
            .get(drop)
            .map(|g| g.base_offset)
            .unwrap_or(self.sealed_end);
        Some((drop, next.max(self.log_start)))
    }

    /// The record without the `count` oldest segments, starting at `log_start` (to write
    /// before [`PartitionState::drop_segments`]).
    pub fn record_after_drop(&self, count: usize, log_start: i64) -> PartitionRecord {
        let mut rec = self.record();
        rec.segments.drain(..count.min(rec.segments.len()));
        rec.log_start_offset = log_start;
        rec
    }

    /// Retention whose record is written: forgets the `count` oldest segments and returns
    /// them (their objects are deleted next).
    pub fn drop_segments(&mut self, count: usize, log_start: i64) -> Vec<SegmentRef> {
        self.log_start = self.log_start.max(log_start);
        self.segments
            .drain(..count.min(self.segments.len()))
            .collect()
    }

    /// The record with the log start at `offset` (DeleteRecords, to write before
    /// [`PartitionState::move_log_start`]).
    pub fn record_with_log_start(&self, offset: i64) -> PartitionRecord {
        let mut rec = self.record();
        rec.log_start_offset = offset;
        rec
    }

    /// DeleteRecords whose record is written: the log starts at `offset` (never moves back).
    pub fn move_log_start(&mut self, offset: i64) {
        self.log_start = self.log_start.max(offset);
    }

    /// NOT_LEADER_OR_FOLLOWER unless this broker owns the partition.
    pub fn check_owner(&self) -> Result<(), Code> {
        if self.deleted {
            return Err(Code::UnknownTopicOrPartition);
        }
        if self.owner_epoch.is_none() {
            return Err(Code::NotLeaderOrFollower);
        }
        Ok(())
    }

    /// Checks idempotence, assigns offsets and stamps the batches, at `now_ms` (with
    /// `log_append_time`, the timestamp written in them). Nothing changes on error.
    pub fn append(
        &mut self,
        batches: &[Batch],
        log_append_time: Option<i64>,
        now_ms: i64,
    ) -> Result<Appended, Code> {
        self.check_owner()?;
        let first = &batches[0];
        if first.producer_id >= 0 {
            if let Some(dup) = self.producers.check(first)? {
                return Ok(Appended::Duplicate { base_offset: dup });
            }
        }
        let base_offset = self.next_offset;
        let mut next = base_offset;
        let mut out = bytes::BytesMut::with_capacity(batches.iter().map(|b| b.bytes.len()).sum());
        let mut max_timestamp = i64::MIN;
        let mut producers = Vec::new();
        for b in batches {
            if b.producer_id != first.producer_id {
                return Err(Code::InvalidRecord);
            }
            batch::stamp_into(&mut out, b, next, self.leader_epoch, log_append_time);
            max_timestamp = max_timestamp.max(log_append_time.unwrap_or(b.max_timestamp));
            if b.producer_id >= 0 {
                producers.push(ProducerBatch {
                    pid: b.producer_id,
                    epoch: b.producer_epoch,
                    first_seq: b.base_sequence,
                    last_seq: b.last_sequence(),
                    base_offset: next,
                    last_offset: next + b.last_offset_delta as i64,
                    appended_ms: now_ms,
                });
            }
            next += b.last_offset_delta as i64 + 1;
        }
        self.producers.appended(&producers, self.high_watermark);
        self.next_offset = next;
        let bytes = out.freeze();
        self.tail.push_back(TailChunk {
            base: base_offset,
            end: next,
            max_timestamp,
            location: Location::Pending(bytes.clone()),
            created_ms: now_ms,
        });
        Ok(Appended::New {
            base_offset,
            end_offset: next,
            bytes,
            max_timestamp,
            producers,
        })
    }

    /// Marks pending data up to `end` committed in a WAL object and moves the high watermark.
    pub fn commit(&mut self, end: i64, object: &Arc<str>, object_size: u64, pos: u64, len: u64) {
        if self.deleted || end <= self.high_watermark {
            return;
        }
        let base = self.high_watermark;
        // Pending chunks are the last ones of the tail: find the first of them from the
        // back, so a commit costs what it commits, not the length of the unsealed tail.
        let pending = self
            .tail
            .iter()
            .rev()
            .take_while(|c| matches!(c.location, Location::Pending(_)))
            .count();
        let first = self.tail.len() - pending;
        let count = self
            .tail
            .iter()
            .skip(first)
            .take_while(|c| c.end <= end)
            .count();
        if count == 0 {
            return;
        }
        let mut max_timestamp = i64::MIN;
        let mut created_ms = i64::MAX;
        for c in self.tail.range(first..first + count) {
            max_timestamp = max_timestamp.max(c.max_timestamp);
            created_ms = created_ms.min(c.created_ms);
        }
        self.tail.drain(first..first + count);
        self.tail.insert(
            first,
            TailChunk {
                base,
                end,
                max_timestamp,
                location: Location::Wal {
                    object: object.clone(),
                    object_size,
                    pos,
                    len,
                },
                created_ms,
            },
        );
        self.high_watermark = end;
    }

    /// Forgets everything not committed (a flush failed): the log ends at the high
    /// watermark again and producer state forgets the lost batches.
    pub fn truncate_to_committed(&mut self) {
        let hw = self.high_watermark;
        self.tail
            .retain(|c| !matches!(c.location, Location::Pending(_)));
        self.next_offset = hw;
        self.producers.drop_from(hw);
    }

    /// Producers whose idempotent batches in a committed range ending at `end` a rebuild
    /// of this state no longer needs ([`Producers::superseded_before`]); none while the
    /// partition is not owned here (its state here is not the whole story).
    pub fn superseded_producers(&self, end: i64) -> std::collections::HashSet<i64> {
        if self.owner_epoch.is_none() {
            return Default::default();
        }
        self.producers.superseded_before(end, self.high_watermark)
    }

    /// Forgets producers whose last append is older than `max_age_ms` (Kafka's
    /// `producer.id.expiration.ms`), so that state does not grow with every producer ever
    /// seen. Returns how many were forgotten.
    pub fn expire_producers(&mut self, now_ms: i64, max_age_ms: i64) -> usize {
        self.producers.expire(now_ms, max_age_ms)
    }

    /// Committed bytes not yet sealed, and when (clock ms) the oldest was appended.
    pub fn unsealed(&self) -> (u64, Option<i64>) {
        let mut bytes = 0;
        let mut oldest = None::<i64>;
        for c in self.tail.iter().filter(|c| c.end <= self.high_watermark) {
            bytes += c.size();
            oldest = Some(oldest.map_or(c.created_ms, |o| o.min(c.created_ms)));
        }
        (bytes, oldest)
    }

    /// Kafka's answer to OffsetForLeaderEpoch for `epoch`: the epoch found and its end
    /// offset (the start of the next larger epoch, or the high watermark for the latest);
    /// `(-1, -1)` when the epoch is undefined or newer than the latest.
    pub fn epoch_end(&self, epoch: i32) -> (i32, i64) {
        let Some(latest) = self.epochs.last() else {
            return (-1, -1);
        };
        if epoch < 0 {
            return (-1, -1);
        }
        if epoch == latest.0 {
            return (epoch, self.high_watermark);
        }
        let Some(higher) = self.epochs.iter().find(|e| e.0 > epoch) else {
            return (-1, -1);
        };
        let floor = self.epochs.iter().rev().find(|e| e.0 <= epoch);
        let end = higher.1.min(self.high_watermark);
        (floor.map(|f| f.0).unwrap_or(epoch), end)
    }

    /// The leader epoch under which `offset` was written.
    pub fn epoch_of(&self, offset: i64) -> i32 {
        self.epochs
            .iter()
            .rev()
            .find(|e| e.1 <= offset)
            .map(|e| e.0)
            .unwrap_or(self.leader_epoch)
    }
}

#[cfg(test)]
mod tests;
