//! Segment merging: a partition's many small segments become a few, every offset and
//! timestamp reads back as before, the replaced objects go, and what a crash would leave
//! is swept.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test

mod common;

use std::sync::Arc;

use common::clocked::{clocked, Clocked};
use common::*;
use stratus::partition::Partition;
use stratus_log::paths::SegmentObject;
use stratus_meta::repo::{self, PartitionRecord};

const START: i64 = 1_700_000_000_000;

fn partition(c: &Clocked) -> Arc<Partition> {
    c.broker.registry.topic("r").unwrap().partitions[0].clone()
}

fn keys(p: &Partition) -> Vec<String> {
    p.state().segments().iter().map(|g| g.key.clone()).collect()
}

/// Produces `n` batches of two records, each a second after the last (the broker stamps
/// them: LogAppendTime), and seals each into its own segment.
async fn produce_sealed(c: &mut Clocked, from: usize, n: usize) {
    for i in from..from + n {
        let (a, b) = (format!("v{i}a"), format!("v{i}b"));
        assert_eq!(
            produce_code(&mut c.conn, "r", batch(&[&a, &b], 2)).await.0,
            0
        );
        c.clock.advance(1_000);
        let (failed, _) = stratus::upkeep::seal::seal_due(&c.broker.upkeep).await;
        assert_eq!(failed, 0);
    }
}

/// What a consumer can see: every record, and where each of some timestamps leads.
async fn view(c: &mut Clocked) -> (Vec<(i64, String)>, Vec<Option<(i64, i64)>>) {
    let p = partition(c);
    let mut found = Vec::new();
    for ts in (START - 500..START + 32_000).step_by(700) {
        found.push(
            stratus::read::offset_for_timestamp(&c.broker.reader, &p, ts)
                .await
                .unwrap(),
        );
    }
    (fetch_values(&mut c.conn, "r").await, found)
}

async fn stored_record(c: &Clocked) -> PartitionRecord {
    let topic = c.broker.registry.topic("r").unwrap();
    let key = stratus_meta::keys::partition_key(&topic.id_text, 0);
    repo::load::<PartitionRecord>(c.broker.meta.as_ref(), &key)
        .await
        .unwrap()
        .unwrap()
        .0
}

#[tokio::test]
async fn many_small_segments_become_one_that_reads_back_the_same() {
    let mut c = clocked(
        START,
        &[
            ("log.roll.ms", "1"),
            ("log.message.timestamp.type", "LogAppendTime"),
            ("segment.merge.min.segments", "4"),
            ("segment.merge.min.age.ms", "0"),
            ("segment.merge.interval.ms", "0"),
        ],
    )
    .await;
    produce_sealed(&mut c, 0, 20).await;
    let p = partition(&c);
    let before = keys(&p);
    assert_eq!(before.len(), 20);
    let seen = view(&mut c).await;
    assert_eq!(seen.0.len(), 40);
    assert!(
        seen.1.iter().flatten().count() > 20,
        "timestamps lead somewhere: {:?}",
        seen.1
    );

    let done = stratus::upkeep::merge::merge_due(&c.broker.upkeep)
        .await
        .unwrap();
    assert_eq!((done.merges, done.replaced.len()), (1, 20));
    let merged = keys(&p);
    assert_eq!(merged.len(), 1);
    assert_eq!(SegmentObject::parse(&merged[0]).unwrap().merges, 1);
    let rec = stored_record(&c).await;
    assert_eq!(
        rec.segments,
        p.state().segments(),
        "the record names what the state has"
    );
    assert_eq!(
        (rec.segments[0].base_offset, rec.segments[0].end_offset),
        (0, 40)
    );
    assert_eq!(
        view(&mut c).await,
        seen,
        "reads and timestamp lookups as before"
    );

    // The inputs stay readable until the grace period ends, then go.
    for k in &before {
        assert!(
            c.objects.get_range(k, 0..1).await.is_ok(),
            "{k} kept for now"
        );
    }
    stratus::upkeep::merge::delete_replaced(&c.broker.upkeep, &done.replaced).await;
    for k in &before {
        assert!(c.objects.get_range(k, 0..1).await.is_err(), "{k} deleted");
    }
    assert_eq!(view(&mut c).await, seen);

    // Later segments merge with the merged one: its successor's name counts two merges.
    produce_sealed(&mut c, 20, 10).await;
    let more = view(&mut c).await;
    assert_eq!(more.0.len(), 60);
    let done = stratus::upkeep::merge::merge_due(&c.broker.upkeep)
        .await
        .unwrap();
    assert_eq!(done.merges, 1);
    let merged = keys(&p);
    assert_eq!(merged.len(), 1);
    assert_eq!(SegmentObject::parse(&merged[0]).unwrap().merges, 2);
    assert_eq!(view(&mut c).await, more);
    // The log goes on at the same offsets.
    assert_eq!(
        produce_code(&mut c.conn, "r", batch(&["x"], 2)).await,
        (0, 60)
    );
}

#[tokio::test]
async fn nothing_merges_below_the_threshold_and_young_segments_stay() {
    let mut c = clocked(
        START,
        &[
            ("log.roll.ms", "1"),
            ("log.message.timestamp.type", "LogAppendTime"),
            ("segment.merge.min.segments", "12"),
            ("segment.merge.min.age.ms", "10000"),
        ],
    )
    .await;
    produce_sealed(&mut c, 0, 12).await;
    let p = partition(&c);
    let done = stratus::upkeep::merge::merge_due(&c.broker.upkeep)
        .await
        .unwrap();
    assert_eq!(
        (done.merges, keys(&p).len()),
        (0, 12),
        "12 segments: not more than 12"
    );
    produce_sealed(&mut c, 12, 8).await;
    // Twenty segments, stamped a second apart up to now: the newest ten are younger than
    // ten seconds, so only the oldest ten merge.
    let done = stratus::upkeep::merge::merge_due(&c.broker.upkeep)
        .await
        .unwrap();
    assert_eq!(done.merges, 1);
    assert_eq!(done.replaced.len(), 10);
    assert_eq!(keys(&p).len(), 11);
    assert_eq!(done.most_segments, 11);
}

#[tokio::test]
async fn the_sweep_deletes_a_merged_object_no_record_names() {
    // Objects' ages are the store's: the clock starts at the real time.
    let mut c = clocked(
        stratus_log::clock::now_ms(),
        &[
            ("log.roll.ms", "1"),
            ("segment.merge.min.segments", "4"),
            ("segment.merge.min.age.ms", "0"),
        ],
    )
    .await;
    produce_sealed(&mut c, 0, 10).await;
    stratus::upkeep::merge::merge_due(&c.broker.upkeep)
        .await
        .unwrap();
    let p = partition(&c);
    let named = keys(&p);
    assert_eq!(named.len(), 1);
    // A merge that crashed before its commit left its object (below the sealed end).
    let id = c.broker.registry.topic("r").unwrap().id_text.to_string();
    let left = SegmentObject {
        topic_id: &id,
        partition: 0,
        base_offset: 0,
        epoch: Some(0),
        merges: 7,
    }
    .name();
    c.objects
        .put_new(&left, bytes::Bytes::from_static(b"x"))
        .await
        .unwrap();
    c.clock.advance(60_000);
    let swept = stratus::upkeep::sweep_orphan_segments(&c.broker.upkeep, 30_000)
        .await
        .unwrap();
    // The merge's own inputs (not yet deleted) are swept too: nothing names them.
    assert_eq!(swept, 11);
    assert!(c.objects.get_range(&left, 0..1).await.is_err());
    assert!(c.objects.get_range(&named[0], 0..1).await.is_ok());
    assert_eq!(fetch_values(&mut c.conn, "r").await.len(), 20);
}
