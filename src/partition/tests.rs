//! Unit tests of partition state: idempotence, commits, seals, retention, ownership.
// Test-only: the parent declares this file with #[cfg(test)].

use super::*;
use stratus_log::testing::make_batch;

fn part() -> Partition {
    let p = Partition::new(
        Arc::from("id"),
        Arc::from("t"),
        0,
        &PartitionRecord::default(),
    );
    p.state().owner_epoch = Some(0);
    p
}

fn appended(r: Result<Appended, Code>) -> (i64, i64) {
    match r.unwrap() {
        Appended::New {
            base_offset,
            end_offset,
            ..
        } => (base_offset, end_offset),
        Appended::Duplicate { base_offset } => (base_offset, -1),
    }
}

#[test]
fn idempotent_sequences() {
    let p = part();
    let mut s = p.state();
    let b1 = stratus_log::batch::validate(&make_batch(3, 9, 0, 1)).unwrap();
    let b2 = stratus_log::batch::validate(&make_batch(2, 9, 3, 1)).unwrap();
    assert_eq!(appended(s.append(&b1, None, 1)), (0, 3));
    assert_eq!(appended(s.append(&b2, None, 1)), (3, 5));
    assert_eq!(
        appended(s.append(&b1, None, 1)),
        (0, -1),
        "a retry is acked at its offset"
    );
    let gap = stratus_log::batch::validate(&make_batch(1, 9, 9, 1)).unwrap();
    assert_eq!(
        s.append(&gap, None, 1).unwrap_err(),
        Code::OutOfOrderSequenceNumber
    );
    assert_eq!(s.next_offset, 5);
    let anon = stratus_log::batch::validate(&make_batch(1, -1, -1, 1)).unwrap();
    assert_eq!(appended(s.append(&anon, None, 1)), (5, 6));
}

#[test]
fn commit_and_truncate() {
    let p = part();
    let mut s = p.state();
    let b = stratus_log::batch::validate(&make_batch(2, 4, 0, 1)).unwrap();
    s.append(&b, None, 1).unwrap();
    let b2 = stratus_log::batch::validate(&make_batch(2, 4, 2, 1)).unwrap();
    s.append(&b2, None, 1).unwrap();
    let obj: Arc<str> = Arc::from("wal/1/x");
    s.commit(2, &obj, 100, 0, 10);
    assert_eq!(s.high_watermark, 2);
    assert_eq!(s.tail.len(), 2);
    s.truncate_to_committed();
    assert_eq!(s.next_offset, 2);
    assert_eq!(s.tail.len(), 1);
    // The lost batch is forgotten, so its retry is written again.
    assert_eq!(appended(s.append(&b2, None, 1)), (2, 4));
}

#[test]
fn dropping_uncommitted_batches_keeps_the_producers_last_committed_ones() {
    // A committed batch whose ack was lost, then more than Kafka's 5 batches of the same
    // producer that a failed flush drops: the retry of the committed one is still a
    // duplicate, and the producer continues right after it.
    let p = part();
    let mut s = p.state();
    let obj: Arc<str> = Arc::from("wal/1/x");
    let batch = |seq: i32| stratus_log::batch::validate(&make_batch(2, 9, seq, 1)).unwrap();
    assert_eq!(appended(s.append(&batch(0), None, 1)), (0, 2));
    s.commit(2, &obj, 100, 0, 10);
    for k in 1..=7 {
        assert_eq!(
            appended(s.append(&batch(2 * k), None, 1)),
            (2 * k as i64, 2 * k as i64 + 2)
        );
    }
    s.truncate_to_committed();
    assert_eq!(s.next_offset, 2);
    assert_eq!(
        appended(s.append(&batch(0), None, 1)),
        (0, -1),
        "the committed batch's retry is acked at its offset, not written twice"
    );
    assert_eq!(appended(s.append(&batch(2), None, 1)), (2, 4));
    assert_eq!(
        s.append(&batch(8), None, 1).unwrap_err(),
        Code::OutOfOrderSequenceNumber,
        "the dropped batches are forgotten"
    );
}

#[test]
fn a_batch_in_flight_past_dropped_ones_is_retried_not_out_of_order() {
    // Committed: seq 0-1. Dropped by a failed flush: 2-3 and 4-5. The batch at 6, sent
    // before the producer saw the failure, must not get OUT_OF_ORDER_SEQUENCE_NUMBER
    // (librdkafka would renumber everything unacknowledged under a new epoch).
    let p = part();
    let mut s = p.state();
    let obj: Arc<str> = Arc::from("wal/1/x");
    let batch = |seq: i32| stratus_log::batch::validate(&make_batch(2, 9, seq, 1)).unwrap();
    s.append(&batch(0), None, 1).unwrap();
    s.commit(2, &obj, 100, 0, 10);
    s.append(&batch(2), None, 1).unwrap();
    s.append(&batch(4), None, 1).unwrap();
    s.truncate_to_committed();
    assert_eq!(
        s.append(&batch(6), None, 1).unwrap_err(),
        Code::NotLeaderOrFollower
    );
    assert_eq!(
        s.append(&batch(4), None, 1).unwrap_err(),
        Code::NotLeaderOrFollower
    );
    assert_eq!(appended(s.append(&batch(0), None, 1)), (0, -1));
    assert_eq!(appended(s.append(&batch(2), None, 1)), (2, 4));
    assert_eq!(appended(s.append(&batch(4), None, 1)), (4, 6));
    assert_eq!(
        s.append(&batch(10), None, 1).unwrap_err(),
        Code::OutOfOrderSequenceNumber,
        "once the producer resent in order, a real gap is out of order again"
    );

    s.commit(6, &obj, 100, 0, 10);

    // A producer whose only batches were dropped: known by what it must send first.
    let batch = |seq: i32| stratus_log::batch::validate(&make_batch(1, 11, seq, 1)).unwrap();
    s.append(&batch(0), None, 1).unwrap();
    s.append(&batch(1), None, 1).unwrap();
    s.truncate_to_committed();
    assert_eq!(
        s.append(&batch(1), None, 1).unwrap_err(),
        Code::NotLeaderOrFollower
    );
    assert_eq!(appended(s.append(&batch(0), None, 1)), (6, 7));
    assert_eq!(appended(s.append(&batch(1), None, 1)), (7, 8));
}

#[test]
fn what_a_lost_ownership_dropped_is_still_known_when_the_partition_comes_back() {
    // Ownership lost with a batch pending, then taken again (a state recovered from the
    // store): a batch that was in flight behind the dropped one is retried, not refused as
    // out of order.
    let p = part();
    let obj: Arc<str> = Arc::from("wal/1/x");
    let batch = |seq: i32| stratus_log::batch::validate(&make_batch(2, 9, seq, 1)).unwrap();
    {
        let mut s = p.state();
        s.append(&batch(0), None, 1).unwrap();
        s.commit(2, &obj, 100, 0, 10);
        s.append(&batch(2), None, 1).unwrap();
    }
    p.release();
    let mut recovered = PartitionState::from_record(&p.state().record());
    recovered.recover_range(
        TailChunk {
            base: 0,
            end: 2,
            max_timestamp: 1,
            location: Location::Wal {
                object: obj.clone(),
                object_size: 100,
                pos: 0,
                len: 10,
            },
            created_ms: 1,
        },
        &[ProducerBatch {
            pid: 9,
            epoch: 0,
            first_seq: 0,
            last_seq: 1,
            base_offset: 0,
            last_offset: 1,
            appended_ms: 1,
        }],
    );
    recovered.take_ownership(1);
    p.install(recovered);
    let mut s = p.state();
    assert_eq!(
        s.append(&batch(4), None, 1).unwrap_err(),
        Code::NotLeaderOrFollower
    );
    assert_eq!(appended(s.append(&batch(0), None, 1)), (0, -1));
    assert_eq!(appended(s.append(&batch(2), None, 1)), (2, 4));
}

#[test]
fn committed_batches_are_remembered_five_per_producer() {
    let p = part();
    let mut s = p.state();
    let obj: Arc<str> = Arc::from("wal/1/x");
    let batch = |seq: i32| stratus_log::batch::validate(&make_batch(1, 9, seq, 1)).unwrap();
    for k in 0..8 {
        s.append(&batch(k), None, 1).unwrap();
        s.commit(k as i64 + 1, &obj, 100, 0, 10);
    }
    let remembered = s.producers.first_seqs(9);
    assert_eq!(remembered, vec![2, 3, 4, 5, 6, 7]);
    s.append(&batch(8), None, 1).unwrap();
    let remembered = s.producers.first_seqs(9);
    assert_eq!(
        remembered,
        vec![3, 4, 5, 6, 7, 8],
        "five committed ones and the pending one"
    );
}

/// A partition owning `n` committed single-record WAL chunks of 10 bytes each, written at
/// timestamps 1000, 2000, ….
fn committed(n: i64) -> Partition {
    let p = part();
    {
        let mut s = p.state();
        let obj: Arc<str> = Arc::from("wal/1/x");
        for i in 0..n {
            let b = stratus_log::batch::validate(&make_batch(1, -1, -1, 1000 * (i + 1))).unwrap();
            s.append(&b, None, 1).unwrap();
            s.commit(i + 1, &obj, 1000, (i * 10) as u64, 10);
        }
    }
    p
}

fn segment(base: i64, end: i64, max_timestamp: i64) -> SegmentRef {
    SegmentRef {
        key: format!("topics/id/0/{base:020}.seg"),
        base_offset: base,
        end_offset: end,
        data_len: 10 * (end - base) as u64,
        size: 10 * (end - base) as u64 + 24,
        max_timestamp,
    }
}

#[test]
fn a_seal_takes_the_oldest_committed_chunks_and_applies_only_once_written() {
    let p = committed(4);
    let mut s = p.state();
    assert_eq!(
        s.sealable(25).len(),
        2,
        "about max_bytes: 10 + 10, not the third"
    );
    assert_eq!(s.sealable(1).len(), 1, "at least one chunk");
    let seg = segment(0, 2, 2000);
    let rec = s.record_after_seal(&seg);
    assert_eq!((rec.sealed_end, rec.segments.len()), (2, 1));
    assert_eq!(
        (s.sealed_end(), s.segments().len()),
        (0, 0),
        "nothing applied yet"
    );
    s.apply_seal(seg);
    assert_eq!(
        (s.sealed_end(), s.segments().len(), s.tail().len()),
        (2, 1, 2)
    );
    assert_eq!(s.record(), rec, "the state is what was written");
    // Pending (uncommitted) data is never sealed.
    let b = stratus_log::batch::validate(&make_batch(1, -1, -1, 9)).unwrap();
    s.append(&b, None, 1).unwrap();
    assert_eq!(s.sealable(u64::MAX).len(), 2);
}

#[test]
fn retention_drops_whole_old_segments_and_moves_the_log_start() {
    let p = committed(6);
    let mut s = p.state();
    s.apply_seal(segment(0, 2, 2000));
    s.apply_seal(segment(2, 4, 4000));
    s.apply_seal(segment(4, 6, 6000));
    assert_eq!(s.expired_segments(10_000, -1, -1), None, "nothing is due");
    // retention.ms 5000 at 7500: segments whose newest record is older than 2500.
    assert_eq!(s.expired_segments(7_500, 5_000, -1), Some((1, 2)));
    // retention.bytes 40: keep at most 40 bytes of the 60.
    assert_eq!(s.expired_segments(0, -1, 40), Some((1, 2)));
    assert_eq!(s.expired_segments(0, -1, 0), Some((3, 6)));
    let rec = s.record_after_drop(1, 2);
    assert_eq!((rec.log_start_offset, rec.segments.len()), (2, 2));
    let dropped = s.drop_segments(1, 2);
    assert_eq!(dropped, vec![segment(0, 2, 2000)]);
    assert_eq!((s.log_start(), s.segments().len()), (2, 2));
    assert_eq!(s.record(), rec);
    // DeleteRecords inside a segment: the log start moves, the segment stays until
    // wholly below it, and the log start never moves back.
    assert_eq!(s.record_with_log_start(5).log_start_offset, 5);
    s.move_log_start(5);
    assert_eq!(s.expired_segments(0, -1, -1), Some((1, 5)));
    s.move_log_start(3);
    assert_eq!(s.log_start(), 5);
}

#[test]
fn taking_ownership_starts_an_epoch_at_the_log_end_and_forgets_empty_ones() {
    let p = committed(3);
    let mut s = p.state();
    s.take_ownership(4);
    assert_eq!(s.epochs(), &[(4, 3)]);
    // Epoch 6 after 4 with nothing written under 4 since: 4 leaves the list.
    s.take_ownership(6);
    assert_eq!(s.epochs(), &[(6, 3)]);
    // Data under 6, then epoch 9: both stay.
    let b = stratus_log::batch::validate(&make_batch(1, -1, -1, 9)).unwrap();
    s.append(&b, None, 1).unwrap();
    s.take_ownership(9);
    assert_eq!(s.epochs(), &[(6, 3), (9, 4)]);
    assert_eq!((s.leader_epoch(), s.owner_epoch()), (9, Some(9)));
    s.mark_deleted();
    assert!(s.is_deleted() && s.owner_epoch().is_none());
    assert_eq!(s.check_owner(), Err(Code::UnknownTopicOrPartition));
}

#[test]
fn relocated_chunks_point_into_the_compacted_object_and_merge_where_it_merged_them() {
    let mut s = PartitionState::default();
    let chunk = |base, end, object: &str, pos, len| TailChunk {
        base,
        end,
        max_timestamp: base,
        location: Location::Wal {
            object: Arc::from(object),
            object_size: 1000,
            pos,
            len,
        },
        created_ms: 10 * base,
    };
    s.recover_range(chunk(0, 2, "a", 0, 10), &[]);
    s.recover_range(chunk(2, 3, "a", 10, 5), &[]);
    s.recover_range(chunk(3, 4, "b", 40, 7), &[]);
    s.recover_range(chunk(4, 5, "c", 0, 3), &[]);
    // `a` 0..15 went to 100, `b` 40..47 right after it; `c` stayed.
    let moved = HashMap::from([
        (Arc::from("a"), vec![(0, 15, 100)]),
        (Arc::from("b"), vec![(40, 7, 115)]),
    ]);
    let to: Arc<str> = Arc::from("n");
    // Offsets where no copied range lies: nothing is looked at, nothing moves.
    assert_eq!(s.relocate(&moved, 5..9, &to, 500), 0);
    assert_eq!(s.relocate(&moved, 0..4, &to, 500), 3);
    let tail: Vec<_> = s
        .tail()
        .iter()
        .map(|c| match &c.location {
            Location::Wal {
                object,
                object_size,
                pos,
                len,
            } => (c.base, c.end, object.to_string(), *object_size, *pos, *len),
            Location::Pending(_) => unreachable!(),
        })
        .collect();
    assert_eq!(
        tail,
        vec![
            (0, 4, "n".into(), 500, 100, 22),
            (4, 5, "c".into(), 1000, 0, 3)
        ]
    );
    assert_eq!(s.tail()[0].max_timestamp, 3);
    assert_eq!(s.tail()[0].created_ms, 0);
    // A span that does not hold the whole chunk leaves it where it is.
    let partial = HashMap::from([(Arc::from("c"), vec![(0, 2, 7)])]);
    assert_eq!(s.relocate(&partial, 4..5, &to, 500), 0);
}

#[test]
fn a_merge_replaces_its_inputs_only_while_they_are_still_there_side_by_side() {
    let p = committed(8);
    let mut s = p.state();
    for b in [0, 2, 4, 6] {
        s.apply_seal(segment(b, b + 2, 1000 * b));
    }
    let keys: Vec<String> = s.segments().iter().map(|g| g.key.clone()).collect();
    let k: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(s.segments_at(&k[1..3]), Some(1));
    assert_eq!(s.segments_at(&[k[1], k[3]]), None, "not side by side");
    assert_eq!(s.segments_at(&[k[2], k[1]]), None, "not in order");
    assert_eq!(s.segments_at(&[]), None);
    let merged = SegmentRef {
        key: "merged".into(),
        ..segment(2, 6, 4000)
    };
    let rec = s.record_after_merge(1, 2, &merged);
    let replaced = s.apply_merge(1, 2, merged.clone());
    assert_eq!(replaced, vec![segment(2, 4, 2000), segment(4, 6, 4000)]);
    assert_eq!(s.record(), rec);
    let now: Vec<i64> = s.segments().iter().map(|g| g.base_offset).collect();
    assert_eq!(now, vec![0, 2, 6]);
    // Retention dropped the first input meanwhile: a merge planned before finds it gone.
    s.drop_segments(1, 2);
    assert_eq!(s.segments_at(&k[0..2]), None);
}
