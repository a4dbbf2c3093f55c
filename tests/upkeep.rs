//! Upkeep jobs driven by a manual clock: segment.ms and retention.ms act exactly when the
//! clock says, with no sleeping and no dependence on the machine's speed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test

mod common;

use std::sync::Arc;

use common::clocked::clocked;
use common::*;
use stratus::partition::Partition;
use stratus_log::objects::Objects;
use stratus_meta::embedded::EmbeddedStore;
use tokio::net::TcpStream;

fn partition(broker: &stratus::Broker) -> Arc<Partition> {
    broker.registry.topic("r").unwrap().partitions[0].clone()
}

fn start_and_segments(p: &Partition) -> (i64, usize) {
    let s = p.state();
    (s.log_start(), s.segments().len())
}

#[tokio::test]
async fn segment_ms_seals_when_the_clock_says_and_not_before() {
    let mut c = clocked(
        1_000_000,
        &[
            ("log.roll.ms", "60000"),
            ("log.segment.bytes", "1073741824"),
        ],
    )
    .await;
    assert_eq!(
        produce_code(&mut c.conn, "r", batch(&["a", "b"], 2)).await,
        (0, 0)
    );
    let p = partition(&c.broker);
    stratus::upkeep::seal::seal_due(&c.broker.upkeep).await;
    assert_eq!(p.state().sealed_end(), 0, "younger than segment.ms");
    c.clock.advance(59_999);
    stratus::upkeep::seal::seal_due(&c.broker.upkeep).await;
    assert_eq!(
        p.state().sealed_end(),
        0,
        "one millisecond short of segment.ms"
    );
    c.clock.advance(1);
    let (failed, _) = stratus::upkeep::seal::seal_due(&c.broker.upkeep).await;
    assert_eq!(failed, 0);
    assert_eq!(p.state().sealed_end(), 2, "sealed at segment.ms");
    assert_eq!(
        fetch_values(&mut c.conn, "r").await,
        vec![(0, "a".to_string()), (1, "b".to_string())]
    );
}

#[tokio::test]
async fn data_older_than_wal_unsealed_max_ms_is_sealed_whatever_segment_ms_says() {
    // segment.ms of a week, as a user may set it: without the cap, slow partitions kept a
    // week of WAL index entries in the metadata store.
    let mut c = clocked(
        1_000_000,
        &[
            ("log.roll.ms", "604800000"),
            ("log.segment.bytes", "1073741824"),
            ("wal.unsealed.max.ms", "30000"),
        ],
    )
    .await;
    assert_eq!(
        produce_code(&mut c.conn, "r", batch(&["a", "b"], 2)).await,
        (0, 0)
    );
    let p = partition(&c.broker);
    c.clock.advance(29_999);
    stratus::upkeep::seal::seal_due(&c.broker.upkeep).await;
    assert_eq!(
        p.state().sealed_end(),
        0,
        "younger than wal.unsealed.max.ms"
    );
    c.clock.advance(1);
    let (failed, _) = stratus::upkeep::seal::seal_due(&c.broker.upkeep).await;
    assert_eq!(failed, 0);
    assert_eq!(p.state().sealed_end(), 2, "sealed at wal.unsealed.max.ms");
    assert_eq!(
        fetch_values(&mut c.conn, "r").await,
        vec![(0, "a".to_string()), (1, "b".to_string())]
    );

    // 0 turns the cap off: segment.ms alone decides.
    let mut off = clocked(
        1_000_000,
        &[
            ("log.roll.ms", "604800000"),
            ("log.segment.bytes", "1073741824"),
            ("wal.unsealed.max.ms", "0"),
        ],
    )
    .await;
    assert_eq!(
        produce_code(&mut off.conn, "r", batch(&["a"], 2)).await,
        (0, 0)
    );
    off.clock.advance(3_600_000 * 24);
    stratus::upkeep::seal::seal_due(&off.broker.upkeep).await;
    assert_eq!(partition(&off.broker).state().sealed_end(), 0);
}

#[tokio::test]
async fn retention_ms_deletes_a_segment_once_its_newest_record_is_old_enough() {
    // Records are stamped 1000 and 1001 by the producer (CreateTime).
    let mut c = clocked(2_000, &[("log.retention.ms", "5000"), ("log.roll.ms", "1")]).await;
    assert_eq!(
        produce_code(&mut c.conn, "r", batch(&["a", "b"], 2)).await,
        (0, 0)
    );
    let p = partition(&c.broker);
    c.clock.advance(1);
    stratus::upkeep::seal::seal_due(&c.broker.upkeep).await;
    let segment = p.state().segments()[0].key.clone();
    // At 6001 the newest record (1001) is exactly 5000 ms old: kept.
    c.clock.advance(4_000);
    stratus::upkeep::retention::run_once(&c.broker.upkeep).await;
    assert_eq!(start_and_segments(&p), (0, 1));
    // One millisecond later it is past retention.ms: the segment and its object go.
    c.clock.advance(1);
    stratus::upkeep::retention::run_once(&c.broker.upkeep).await;
    assert_eq!(start_and_segments(&p), (2, 0));
    assert!(
        c.objects.get_range(&segment, 0..1).await.is_err(),
        "the segment object is deleted"
    );
    // The log continues at the same offsets.
    assert_eq!(
        produce_code(&mut c.conn, "r", batch(&["c"], 2)).await,
        (0, 2)
    );
}

#[tokio::test]
async fn the_sweep_deletes_segments_no_record_names_and_keeps_a_seal_in_progress() {
    let now = stratus_log::clock::now_ms();
    let mut c = clocked(now, &[("log.roll.ms", "1")]).await;
    assert_eq!(
        produce_code(&mut c.conn, "r", batch(&["a", "b"], 2)).await,
        (0, 0)
    );
    c.clock.advance(1);
    stratus::upkeep::seal::seal_due(&c.broker.upkeep).await;
    let p = partition(&c.broker);
    assert_eq!(p.state().sealed_end(), 2);
    let id = c.broker.registry.topic("r").unwrap().id_text.to_string();
    let name = |topic_id: &str, base_offset: i64| {
        stratus_log::paths::SegmentObject {
            topic_id,
            partition: 0,
            base_offset,
            epoch: Some(0),
            merges: 0,
        }
        .name()
    };
    // Below the sealed end and named by nothing (a retention delete that failed): swept.
    let stale = name(&id, 1);
    // At the sealed end: the next seal's segment before its record is written: kept.
    let sealing = name(&id, 2);
    // Of a topic that no longer exists (its deletion was cut short): swept.
    let gone = name("0b5e8a52-0000-4000-8000-000000000000", 0);
    for key in [&stale, &sealing, &gone] {
        c.objects
            .put_new(key, bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    c.clock.advance(60_000);
    let swept = stratus::upkeep::sweep_orphan_segments(&c.broker.upkeep, 30_000)
        .await
        .unwrap();
    assert_eq!(swept, 2);
    assert!(c.objects.get_range(&stale, 0..1).await.is_err());
    assert!(c.objects.get_range(&gone, 0..1).await.is_err());
    assert!(c.objects.get_range(&sealing, 0..1).await.is_ok());
    let named = p.state().segments()[0].key.clone();
    assert!(c.objects.get_range(&named, 0..1).await.is_ok());
    assert_eq!(
        fetch_values(&mut c.conn, "r").await,
        vec![(0, "a".to_string()), (1, "b".to_string())]
    );
}

#[tokio::test]
async fn a_record_written_after_its_topics_deletion_is_swept_and_live_records_stay() {
    let now = stratus_log::clock::now_ms();
    let mut c = clocked(now, &[]).await;
    assert_eq!(
        produce_code(&mut c.conn, "r", batch(&["a", "b"], 2)).await,
        (0, 0)
    );
    let topic = c.broker.registry.topic("r").unwrap();
    let key = stratus_meta::keys::partition_key(&topic.id_text, 0);
    c.broker.topics.delete_topic(&topic).await.unwrap();
    assert!(c.broker.meta.get(&key).await.unwrap().is_none());
    // An owner's record write that passed its fence before the controller took the
    // partition away (a seal, an ownership change) lands after the deletion's cleanup.
    let late = stratus_meta::repo::PartitionRecord::default();
    c.broker
        .meta
        .put(&key, stratus_meta::repo::encode(&late))
        .await
        .unwrap();
    // A live topic's record is never touched.
    create_topic(&mut c.conn, "kept", 1).await;
    let kept = c.broker.registry.topic("kept").unwrap();
    let kept_key = stratus_meta::keys::partition_key(&kept.id_text, 0);
    assert!(c.broker.meta.get(&kept_key).await.unwrap().is_some());
    let swept = stratus::upkeep::sweep_orphan_records(&c.broker.upkeep)
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert!(
        c.broker.meta.get(&key).await.unwrap().is_none(),
        "no record behind a deleted topic"
    );
    assert!(c.broker.meta.get(&kept_key).await.unwrap().is_some());
}

/// A segment larger than an upload part is streamed to the store in parts (a multipart
/// upload; on a local directory, a staging file) and reads back whole: every batch, in
/// order, with its index, and served to a fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_larger_than_a_part_is_streamed_and_reads_back_whole() {
    let local = tempfile::tempdir().unwrap();
    let stores = [
        Objects::from_store(Arc::new(object_store::memory::InMemory::new())),
        Objects::from_url(&format!("file://{}", local.path().display())).unwrap(),
    ];
    for objects in stores {
        let objects = Arc::new(objects);
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(EmbeddedStore::open(&dir.path().join("meta.redb")).unwrap());
        let broker = stratus::Broker::open_with(
            settings(dir.path(), &[("log.segment.bytes", "1073741824")]),
            meta,
            objects.clone(),
        )
        .await
        .unwrap();
        let served = serve(broker.clone(), dir).await;
        let mut conn = TcpStream::connect(served.addr).await.unwrap();
        create_topic(&mut conn, "r", 1).await;
        // 2.5 parts of 100 KiB records.
        let n = (stratus_log::bulk::PART * 5 / 2).div_ceil(100 << 10);
        let value = |i: usize| format!("{i:06}-{}", "x".repeat(100 << 10));
        for i in 0..n {
            let v = value(i);
            assert_eq!(
                produce_code(&mut conn, "r", batch(&[&v], 2)).await,
                (0, i as i64)
            );
        }
        let p = partition(&broker);
        stratus::upkeep::seal(&broker.upkeep, &p, u64::MAX)
            .await
            .unwrap();
        assert_eq!(p.state().sealed_end(), n as i64);
        let segs = p.state().segments().to_vec();
        assert_eq!(segs.len(), 1);
        let seg = &segs[0];
        assert!(
            seg.size > 2 * stratus_log::bulk::PART as u64,
            "{}",
            seg.size
        );
        // The object holds every batch in order, then an index that finds them.
        let body = objects.get_range(&seg.key, 0..seg.size).await.unwrap();
        assert_eq!(body.len() as u64, seg.size);
        let index =
            stratus_log::segment::parse_index(&body.slice(seg.data_len as usize..)).unwrap();
        assert!(index.len() > 1);
        let mut data = body.slice(..seg.data_len as usize);
        let values: Vec<(i64, String)> =
            kafka_protocol::records::RecordBatchDecoder::decode_all(&mut data)
                .unwrap()
                .into_iter()
                .flat_map(|set| set.records)
                .map(|r| {
                    let v = r.value.unwrap_or_default();
                    (r.offset, String::from_utf8_lossy(&v[..6]).to_string())
                })
                .collect();
        let want: Vec<(i64, String)> = (0..n).map(|i| (i as i64, format!("{i:06}"))).collect();
        assert_eq!(values, want);
        // A fetch reads it from the segment.
        let fetched = fetch_values(&mut conn, "r").await;
        assert!(!fetched.is_empty());
        assert_eq!(fetched[0], (0, value(0)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_reader_of_a_sealed_segment_finds_its_next_blocks_in_memory() {
    let c = clocked(1_000, &[("cache.block.bytes", "65536")]).await;
    let mut conn = c.conn;
    // About 1 MiB in 40 batches of 25 KiB.
    let value = "v".repeat(25 << 10);
    for i in 0..40 {
        assert_eq!(
            produce_code(&mut conn, "r", batch(&[&value], 2)).await,
            (0, i)
        );
    }
    let p = partition(&c.broker);
    stratus::upkeep::seal(&c.broker.upkeep, &p, u64::MAX)
        .await
        .unwrap();
    assert_eq!(p.state().sealed_end(), 40);
    c.broker.cache.clear_memory();
    let gets = |o: &Objects| o.metrics.requests(stratus_log::objects::Op::Get);
    // A consumer reading 64 KiB at a time, from the start: each fetch finds the blocks it
    // needs read ahead by the one before, so it makes no GET of its own after the first.
    let cache = &c.broker.cache;
    let mut offset = 0i64;
    let mut fetches = 0;
    while offset < 40 {
        let before = gets(&c.objects) - cache.read_ahead_total();
        let bytes = stratus::read::read(&c.broker.reader, &p, offset, 64 << 10)
            .await
            .unwrap()
            .join()
            .unwrap();
        let batches: Vec<_> = stratus_log::batch::stored(&bytes).collect();
        assert!(!batches.is_empty());
        assert_eq!(batches[0].base_offset, offset);
        offset = batches.last().unwrap().last_offset() + 1;
        // The read-ahead it started lands before the consumer's next fetch.
        while cache.reading_ahead() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        if fetches > 0 {
            assert_eq!(
                gets(&c.objects) - cache.read_ahead_total(),
                before,
                "fetch {fetches} at offset {offset} had to read from the store"
            );
        }
        fetches += 1;
    }
    assert!(
        cache.read_ahead_total() >= 10,
        "{}",
        cache.read_ahead_total()
    );
    assert!(fetches >= 15, "{fetches} fetches");
}

/// Batches larger than what is left of their block (as producers that batch for object
/// storage send: 1 MiB batches in 1 MiB blocks) are read as the slices of the blocks they
/// span, not joined: every read, from the WAL and from a sealed segment, from memory and
/// from the store, at every offset and with small and large byte limits, gives the
/// produced records whole (CRC) and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_across_blocks_are_read_whole_as_slices_of_the_blocks() {
    // Blocks of 64 KiB: a read takes at least 64 KiB (`MIN_WINDOW`), so smaller blocks
    // would be joined by that read.
    let c = clocked(1_000, &[("cache.block.bytes", "65536")]).await;
    let mut conn = c.conn;
    // From 3 KiB to 200 KiB: most batches cross one or more block boundaries.
    let values: Vec<String> = (0..30)
        .map(|i| format!("{i:04}").repeat(800 + (i * 3989) % 50_000))
        .collect();
    for (i, v) in values.iter().enumerate() {
        assert_eq!(
            produce_code(&mut conn, "r", batch(&[v.as_str()], 2)).await,
            (0, i as i64)
        );
    }
    let p = partition(&c.broker);
    let split = reads_are_whole(&c.broker, &p, &values, "wal, memory").await;
    assert!(split >= 10, "{split} batches read as slices of blocks");
    c.broker.cache.clear_memory();
    reads_are_whole(&c.broker, &p, &values, "wal, store").await;
    stratus::upkeep::seal(&c.broker.upkeep, &p, u64::MAX)
        .await
        .unwrap();
    assert_eq!(p.state().sealed_end(), 30);
    c.broker.cache.clear_memory();
    let split = reads_are_whole(&c.broker, &p, &values, "segment, store").await;
    assert!(split >= 10, "{split} batches read as slices of blocks");
    reads_are_whole(&c.broker, &p, &values, "segment, memory").await;
}

/// Reads at every offset with several byte limits and checks the records; returns how
/// many reads of one batch came as several pieces.
async fn reads_are_whole(
    broker: &stratus::Broker,
    p: &Partition,
    values: &[String],
    label: &str,
) -> usize {
    let mut split = 0;
    for offset in 0..values.len() as i64 {
        for max in [1usize, 100_000, 300_000, 8 << 20] {
            let r = stratus::read::read(&broker.reader, p, offset, max)
                .await
                .unwrap();
            let pieces = r.clone().into_pieces().len();
            let bytes = r.join().unwrap();
            let batches = stratus_log::batch::validate(&bytes)
                .unwrap_or_else(|e| panic!("{label}: at {offset}, max {max}: {e}"));
            assert!(!batches.is_empty(), "{label}: at {offset}, max {max}");
            if max == 1 {
                assert_eq!(batches.len(), 1, "{label}: at {offset}");
                split += usize::from(pieces > 1);
            }
            if max == 8 << 20 {
                assert_eq!(batches.len(), values.len() - offset as usize, "{label}");
            }
            for (k, b) in batches.iter().enumerate() {
                let at = offset as usize + k;
                assert_eq!(b.base_offset, at as i64, "{label}: at {offset}, max {max}");
                let mut body = b.bytes.clone();
                let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut body).unwrap();
                assert_eq!(
                    set.records[0].value.as_deref(),
                    Some(values[at].as_bytes()),
                    "{label}: record {at}"
                );
            }
        }
    }
    split
}

/// A fetch at `offset` of at most `max` bytes of partition 0 of `r` (v11): its records.
async fn fetch_raw(conn: &mut TcpStream, offset: i64, max: i32) -> bytes::Bytes {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(max)
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("r")))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(max)])]);
    let r: FetchResponse = call(conn, ApiKey::Fetch, 11, &req).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "fetch at {offset}");
    p.records.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_from_sealed_segments_of_a_local_store_are_sent_from_their_files_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("objects").display());
    let broker = stratus::Broker::open(settings(dir.path(), &[("object.store.url", &url)]))
        .await
        .unwrap();
    let served = serve(broker.clone(), dir).await;
    let mut conn = TcpStream::connect(served.addr).await.unwrap();
    create_topic(&mut conn, "r", 1).await;
    let p = partition(&broker);
    // Batches of 1 to 8 records of 50 B to 2.5 KiB (the index has an entry every 4 KiB):
    // two sealed segments, then a WAL tail.
    let mut next = 0i64;
    for round in 0..3 {
        for i in 0..50usize {
            let n = 1 + (i * 7 + round) % 8;
            let value = "x".repeat(50 + (i * 997 + round * 13) % 2500);
            let values: Vec<&str> = (0..n).map(|_| value.as_str()).collect();
            assert_eq!(
                produce_code(&mut conn, "r", batch(&values, 2)).await,
                (0, next)
            );
            next += n as i64;
        }
        if round < 2 {
            stratus::upkeep::seal(&broker.upkeep, &p, u64::MAX)
                .await
                .unwrap();
            assert_eq!(p.state().sealed_end(), next);
        }
    }
    assert_eq!(p.state().segments().len(), 2);
    let sent = || broker.telemetry.connections.sendfile_bytes.get();
    let before = sent();
    // From offsets inside batches, at their starts, across the segments and the tail; with
    // limits smaller than a batch, around an index interval, and larger than the log.
    let mut fetched = 0u64;
    for offset in (0..next).step_by(23).chain([0, 1, next - 1]) {
        for max in [1, 3000, 10_000, 40_000, 1 << 20] {
            let got = fetch_raw(&mut conn, offset, max).await;
            let want = stratus::read::read(&broker.reader, &p, offset, max as usize)
                .await
                .unwrap()
                .join()
                .unwrap();
            assert!(got == want, "fetch at {offset} of at most {max} bytes");
            let batches: Vec<_> = stratus_log::batch::stored(&got).collect();
            assert!(batches[0].base_offset <= offset && batches[0].last_offset() >= offset);
            fetched += got.len() as u64;
        }
    }
    // Most of what was fetched lay in the segments, and went from their files.
    let by_file = sent() - before;
    assert!(
        by_file > fetched / 2,
        "{by_file} of {fetched} bytes by sendfile"
    );
}
