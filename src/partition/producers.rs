//! Idempotent producer state of a partition: each producer's last batches, to tell a retry
//! (a duplicate, acknowledged at the original's offset) from a gap (out of order).
//!
//! Two things differ from Kafka, because here appended data may be dropped before it is
//! durable (a failed WAL flush, a lost ownership), which a Kafka leader never does with
//! data it has appended:
//! - the bound of 5 batches per producer counts committed batches only, so that dropping
//!   pending ones still leaves the producer's last committed batches;
//! - a producer whose pending batches were dropped is remembered, with the sequence it must
//!   resend first: a batch that was in flight behind the dropped ones gets a retriable
//!   error, not OUT_OF_ORDER_SEQUENCE_NUMBER, on which librdkafka would bump its epoch and
//!   renumber batches whose acks it is missing, duplicating any that were in fact written.

use std::collections::{HashMap, HashSet, VecDeque};

use kafka_protocol::ResponseError as Code;

use stratus_log::batch::Batch;
use stratus_meta::repo::ProducerBatch;

/// Committed batches remembered per producer (Kafka's 5).
const PRODUCER_BATCHES: usize = 5;
/// Bound of the batches remembered per producer, committed or not (a client that keeps
/// more than this many batches in flight loses duplicate detection for the oldest).
const MAX_PENDING_BATCHES: usize = 256;

/// Every idempotent producer of a partition.
#[derive(Debug, Default)]
pub struct Producers {
    /// Last batches of each producer, oldest first.
    batches: HashMap<i64, VecDeque<ProducerBatch>>,
    /// Producers whose batches were dropped before they were durable.
    dropped: HashMap<i64, Dropped>,
}

/// The first batch of a producer that was dropped before it was durable.
#[derive(Debug, Clone, Copy)]
struct Dropped {
    epoch: i16,
    /// The sequence the producer has to send next.
    next_seq: i32,
    /// When the dropped batch was appended (for expiry with the producer).
    appended_ms: i64,
}

impl Producers {
    /// State from durable batches (a partition record, oldest first).
    pub fn from_committed(batches: &[ProducerBatch]) -> Self {
        let mut p = Producers::default();
        p.add_committed(batches);
        p
    }

    /// Adds durable batches (a committed WAL range found at recovery), oldest first.
    pub fn add_committed(&mut self, batches: &[ProducerBatch]) {
        for b in batches {
            self.remember(*b, i64::MAX);
        }
    }

    /// Batches just appended (pending until the high watermark passes them).
    pub fn appended(&mut self, batches: &[ProducerBatch], high_watermark: i64) {
        for b in batches {
            self.remember(*b, high_watermark);
        }
        if let Some(b) = batches.first() {
            self.dropped.remove(&b.pid);
        }
    }

    fn remember(&mut self, b: ProducerBatch, high_watermark: i64) {
        let q = self.batches.entry(b.pid).or_default();
        if q.back().is_some_and(|last| last.epoch != b.epoch) {
            q.clear();
        }
        q.push_back(b);
        let pending = q
            .iter()
            .rev()
            .take_while(|p| p.last_offset >= high_watermark)
            .count();
        let mut committed = q.len() - pending;
        while committed > PRODUCER_BATCHES || q.len() > MAX_PENDING_BATCHES {
            q.pop_front();
            committed = committed.saturating_sub(1);
        }
    }

    /// The remembered batches that end below `end` (the record's producer state as of
    /// `end`).
    pub fn below(&self, end: i64) -> Vec<ProducerBatch> {
        self.batches
            .values()
            .flatten()
            .filter(|b| b.last_offset < end)
            .copied()
            .collect()
    }

    /// The producers whose batches before offset `end` no rebuild of this state needs:
    /// the committed batches remembered of each (committed: ending below
    /// `high_watermark`) are a full [`PRODUCER_BATCHES`], all from `end` on. State is
    /// rebuilt from the index oldest first, keeping each producer's last
    /// [`PRODUCER_BATCHES`] (and dropping older epochs), so those newer batches push out
    /// any earlier ones. They stay in the index for as long as an earlier range does:
    /// ranges are sealed oldest first, and a compaction keeps each producer's last
    /// batches of what it merges.
    pub fn superseded_before(&self, end: i64, high_watermark: i64) -> HashSet<i64> {
        self.batches
            .iter()
            .filter(|(_, q)| {
                q.iter()
                    .filter(|b| b.base_offset >= end && b.last_offset < high_watermark)
                    .count()
                    >= PRODUCER_BATCHES
            })
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// Forgets the batches from offset `hw` on (dropped before they were durable), and
    /// remembers which producers lost batches.
    pub fn drop_from(&mut self, hw: i64) {
        for (pid, q) in self.batches.iter_mut() {
            if let Some(at) = q.iter().position(|b| b.base_offset >= hw) {
                let first = q[at];
                self.dropped.insert(
                    *pid,
                    Dropped {
                        epoch: first.epoch,
                        next_seq: first.first_seq,
                        appended_ms: first.appended_ms,
                    },
                );
                q.truncate(at);
            }
        }
        self.batches.retain(|_, q| !q.is_empty());
    }

    /// Keeps what `previous` (the state this one replaces) knew of dropped batches.
    pub fn keep_dropped(&mut self, previous: Producers) {
        for (pid, d) in previous.dropped {
            self.dropped.entry(pid).or_insert(d);
        }
    }

    /// Forgets producers whose last append is older than `max_age_ms` (Kafka's
    /// `producer.id.expiration.ms`). Returns how many were forgotten.
    pub fn expire(&mut self, now_ms: i64, max_age_ms: i64) -> usize {
        let live = |appended_ms: i64| appended_ms == 0 || appended_ms >= now_ms - max_age_ms;
        self.dropped.retain(|_, d| live(d.appended_ms));
        let before = self.batches.len();
        self.batches
            .retain(|_, q| q.back().is_some_and(|b| live(b.appended_ms)));
        before - self.batches.len()
    }

    /// Kafka's sequence rules for `b`: `Some(offset)` for a duplicate of a remembered
    /// batch, `None` for the next batch. A batch that skips sequences because the ones
    /// before it were dropped here gets NOT_LEADER_OR_FOLLOWER (see the module doc).
    pub fn check(&self, b: &Batch) -> Result<Option<i64>, Code> {
        let dropped = self
            .dropped
            .get(&b.producer_id)
            .filter(|d| d.epoch == b.producer_epoch);
        let Some(q) = self.batches.get(&b.producer_id).filter(|q| !q.is_empty()) else {
            // Unknown producer (new, or its state expired with retention): any sequence,
            // unless it skips what was dropped.
            return match dropped {
                Some(d) if ahead(b.base_sequence, d.next_seq) => Err(Code::NotLeaderOrFollower),
                _ => Ok(None),
            };
        };
        let last = q[q.len() - 1];
        if b.producer_epoch < last.epoch {
            return Err(Code::InvalidProducerEpoch);
        }
        if b.producer_epoch > last.epoch {
            return if b.base_sequence == 0 {
                Ok(None)
            } else {
                Err(Code::OutOfOrderSequenceNumber)
            };
        }
        let last_seq = b.last_sequence();
        if let Some(d) = q
            .iter()
            .find(|p| p.first_seq == b.base_sequence && p.last_seq == last_seq)
        {
            return Ok(Some(d.base_offset));
        }
        let expected = next_seq(last.last_seq);
        if b.base_sequence == expected {
            return Ok(None);
        }
        let skips_dropped =
            dropped.is_some_and(|d| d.next_seq == expected && ahead(b.base_sequence, expected));
        Err(if skips_dropped {
            Code::NotLeaderOrFollower
        } else {
            Code::OutOfOrderSequenceNumber
        })
    }

    #[cfg(test)]
    pub fn first_seqs(&self, pid: i64) -> Vec<i32> {
        self.batches
            .get(&pid)
            .map(|q| q.iter().map(|b| b.first_seq).collect())
            .unwrap_or_default()
    }
}

/// Whether sequence `seq` comes after `expected` (sequences wrap at `i32::MAX`).
fn ahead(seq: i32, expected: i32) -> bool {
    let d = (i64::from(seq) - i64::from(expected)).rem_euclid(i64::from(i32::MAX) + 1);
    d > 0 && d < i64::from(i32::MAX) / 2
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap() {
        assert!(ahead(5, 3));
        assert!(!ahead(3, 3));
        assert!(!ahead(2, 3));
        assert!(ahead(1, i32::MAX));
        assert!(!ahead(i32::MAX, 1));
        assert_eq!(next_seq(i32::MAX), 0);
    }

    fn batch(pid: i64, epoch: i16, offset: i64) -> ProducerBatch {
        ProducerBatch {
            pid,
            epoch,
            first_seq: offset as i32,
            last_seq: offset as i32,
            base_offset: offset,
            last_offset: offset,
            appended_ms: 0,
        }
    }

    fn sorted(mut v: Vec<ProducerBatch>) -> Vec<ProducerBatch> {
        v.sort_by_key(|b| (b.pid, b.base_offset));
        v
    }

    #[test]
    fn batches_are_superseded_by_a_full_set_of_later_committed_ones() {
        let mut p = Producers::default();
        let all: Vec<_> = (0..10).map(|o| batch(1, 0, o)).collect();
        p.add_committed(&all);
        p.appended(&[batch(2, 0, 10)], 11);
        // Producer 1's committed batches are 5..10: those before 5 are superseded.
        assert_eq!(p.superseded_before(5, 11), HashSet::from([1]));
        assert!(p.superseded_before(6, 11).is_empty(), "only 4 from 6 on");
        // Batches not yet committed (at or above the high watermark) do not count.
        assert!(p.superseded_before(5, 9).is_empty());
    }

    /// A rebuild from ranges whose superseded batches were stripped (as a WAL compaction
    /// strips them) gives the state a rebuild from every batch gives.
    #[test]
    fn stripping_superseded_batches_changes_no_rebuilt_state() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            // Ranges of consecutive offsets, each with batches of up to 3 producers,
            // whose epochs sometimes go up.
            let mut ranges: Vec<(i64, Vec<ProducerBatch>)> = Vec::new();
            let mut epochs = [0i16; 3];
            let mut offset = 0;
            for _ in 0..1 + next(12) {
                let mut batches = Vec::new();
                for _ in 0..next(6) {
                    let pid = next(3) as usize;
                    if next(10) == 0 {
                        epochs[pid] += 1;
                    }
                    batches.push(batch(pid as i64, epochs[pid], offset));
                    offset += 1;
                }
                ranges.push((offset, batches));
            }
            let mut full = Producers::default();
            for (_, b) in &ranges {
                full.add_committed(b);
            }
            let mut stripped = Producers::default();
            for (end, b) in &ranges {
                let gone = full.superseded_before(*end, i64::MAX);
                let kept: Vec<_> = b
                    .iter()
                    .filter(|x| !gone.contains(&x.pid))
                    .copied()
                    .collect();
                stripped.add_committed(&kept);
            }
            assert_eq!(
                sorted(stripped.below(i64::MAX)),
                sorted(full.below(i64::MAX)),
                "{ranges:?}"
            );
        }
    }
}
