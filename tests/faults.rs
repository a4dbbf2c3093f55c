//! Object-store and metadata-store faults: never an acknowledgement for data that is not
//! durable, retriable errors while a store is down, and recovery by itself afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test

mod common;

use std::sync::Arc;

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use stratus::testing::{FaultyMetaStore, FaultyObjectStore};
use stratus_log::objects::Objects;
use stratus_meta::embedded::EmbeddedStore;
use stratus_meta::keys;
use tokio::net::TcpStream;

async fn latest(s: &mut TcpStream) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("f")))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
            ])]);
    let r: ListOffsetsResponse = call(s, ApiKey::ListOffsets, 5, &req).await;
    r.topics[0].partitions[0].offset
}

#[tokio::test]
async fn store_faults_never_ack_lost_data() {
    let dir = tempfile::tempdir().unwrap();
    let objects = Arc::new(FaultyObjectStore::new(Arc::new(
        object_store::memory::InMemory::new(),
    )));
    let meta = Arc::new(FaultyMetaStore::new(Arc::new(
        EmbeddedStore::open(&dir.path().join("meta.redb")).unwrap(),
    )));
    let (puts, txns) = (objects.puts.clone(), meta.txns.clone());
    let settings = settings(dir.path(), &[("wal.flush.interval.ms", "1")]);
    let broker = stratus::Broker::open_with(settings, meta, Arc::new(Objects::from_store(objects)))
        .await
        .unwrap();
    let b = serve(broker, dir).await;
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    create_topic(&mut s, "f", 1).await;
    assert_eq!(produce_code(&mut s, "f", batch(&["a"], 2)).await, (0, 0));

    // Every PUT fails: the producer gets a retriable error, nothing becomes visible.
    puts.fail_next(u32::MAX);
    let (code, _) = produce_code(&mut s, "f", batch(&["lost"], 2)).await;
    assert_eq!(
        code, 56,
        "KAFKA_STORAGE_ERROR while the object store is down"
    );
    assert_eq!(latest(&mut s).await, 1, "the high watermark did not move");
    puts.heal();
    // A producer retries after its retry backoff: the failed flush's data is forgotten by
    // then (a retry that comes at once may find it still being dropped: retriable too).
    let mut tries = 0;
    let b = loop {
        tries += 1;
        match produce_code(&mut s, "f", batch(&["b"], 2)).await {
            (56, _) if tries < 20 => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            answer => break answer,
        }
    };
    assert_eq!(b, (0, 1), "offsets stay contiguous");

    // A PUT that succeeded but whose answer was lost is retried and acknowledged once.
    puts.lose_next_answers(1);
    assert_eq!(produce_code(&mut s, "f", batch(&["c"], 2)).await, (0, 2));

    // A metadata commit that applied but answered with an error is not applied twice.
    txns.lose_next_answers(2);
    assert_eq!(produce_code(&mut s, "f", batch(&["d"], 2)).await, (0, 3));

    // The metadata store is down for longer than the produce timeout: the producer times
    // out (retriable), and the commit goes through once the store is back.
    txns.fail_next(u32::MAX);
    let req = produce_req("f", batch(&["e"], 2)).with_timeout_ms(300);
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 7,
        "REQUEST_TIMED_OUT"
    );
    assert_eq!(latest(&mut s).await, 4, "nothing visible before the commit");
    txns.heal();
    assert_eq!(produce_code(&mut s, "f", batch(&["f"], 2)).await, (0, 5));

    let values = fetch_values(&mut s, "f").await;
    let want: Vec<(i64, String)> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v.to_string()))
        .collect();
    assert_eq!(
        values, want,
        "every acknowledged record once, in order, and no lost one"
    );
}

/// A critical task that panics stops the broker: `serve` returns an error naming the
/// task, and the listener no longer accepts connections (never a half-alive broker).
#[tokio::test]
async fn a_panicking_critical_task_stops_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = stratus::Broker::open(settings(dir.path(), &[]))
        .await
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let served = tokio::spawn(stratus::serve(broker.clone(), cancel.clone(), Some(tx)));
    let addr = rx.await.unwrap()[0];
    let mut s = TcpStream::connect(addr).await.unwrap();
    create_topic(&mut s, "alive", 1).await;

    broker
        .supervisor
        .spawn("wal", tokio_util::sync::CancellationToken::new(), async {
            panic!("injected by the test")
        });
    let result = tokio::time::timeout(std::time::Duration::from_secs(10), served)
        .await
        .expect("serve returns soon after the panic")
        .expect("serve itself does not panic");
    let err = result.expect_err("serve reports the failure").to_string();
    assert!(
        err.contains("'wal'") && err.contains("injected by the test"),
        "{err}"
    );
    let mut closed = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(closed, "the listener closes once the broker stopped");
}

/// A broker over fault-injecting stores whose topic "f" holds two committed records that
/// nothing has sealed yet (`log.roll.ms` is an hour: tests call `seal` themselves).
struct Unsealed {
    broker: Arc<stratus::Broker>,
    _served: TestBroker,
    conn: TcpStream,
    p: Arc<stratus::partition::Partition>,
    meta: Arc<FaultyMetaStore>,
    puts: Arc<stratus::testing::Faults>,
    objects: Arc<Objects>,
}

async fn unsealed() -> Unsealed {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FaultyObjectStore::new(Arc::new(
        object_store::memory::InMemory::new(),
    )));
    let puts = store.puts.clone();
    let meta = Arc::new(FaultyMetaStore::new(Arc::new(
        EmbeddedStore::open(&dir.path().join("meta.redb")).unwrap(),
    )));
    let settings = settings(
        dir.path(),
        &[("wal.flush.interval.ms", "1"), ("log.roll.ms", "3600000")],
    );
    let objects = Arc::new(Objects::from_store(store));
    let broker = stratus::Broker::open_with(settings, meta.clone(), objects.clone())
        .await
        .unwrap();
    let served = serve(broker.clone(), dir).await;
    let mut conn = TcpStream::connect(served.addr).await.unwrap();
    create_topic(&mut conn, "f", 1).await;
    assert_eq!(
        produce_code(&mut conn, "f", batch(&["a", "b"], 2)).await,
        (0, 0)
    );
    let p = broker.registry.topic("f").unwrap().partitions[0].clone();
    Unsealed {
        broker,
        _served: served,
        conn,
        p,
        meta,
        puts,
        objects,
    }
}

/// A seal whose record write was applied but answered with an error (the metadata store
/// died mid-request) keeps its segment object: the record names it, and a new owner
/// reads through it. (Deleting it lost acknowledged data under kill -9 of etcd.)
#[tokio::test]
async fn a_seal_whose_commit_answer_is_lost_keeps_its_segment() {
    use stratus_meta::{repo, MetaStore};
    let Unsealed {
        broker,
        _served,
        conn: mut s,
        p,
        meta,
        objects,
        ..
    } = unsealed().await;
    let txns = meta.txns.clone();
    txns.lose_next_answers(1);
    assert!(
        stratus::upkeep::seal(&broker.upkeep, &p, 1 << 20)
            .await
            .is_err(),
        "the seal saw its record write fail"
    );
    let key = keys::partition_key(&p.topic_id, p.index);
    let stored = meta
        .get(&key)
        .await
        .unwrap()
        .expect("the write was applied");
    let rec: repo::PartitionRecord = repo::decode(&key, &stored).unwrap();
    assert_eq!(
        rec.segments.len(),
        1,
        "the applied record names the segment"
    );
    for g in &rec.segments {
        objects
            .get_range(&g.key, 0..g.size)
            .await
            .unwrap_or_else(|e| panic!("segment {} named by the record is gone: {e}", g.key));
    }

    // The next seal takes the applied write from the store instead of sealing the range
    // again (its WAL objects may be collected by now), and the data reads back.
    stratus::upkeep::seal(&broker.upkeep, &p, 1 << 20)
        .await
        .unwrap();
    assert_eq!(
        p.state().segments(),
        rec.segments,
        "the state took the stored seal"
    );
    assert_eq!(p.state().sealed_end(), 2);
    assert_eq!(produce_code(&mut s, "f", batch(&["c"], 2)).await, (0, 2));
    let values: Vec<String> = fetch_values(&mut s, "f")
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["a", "b", "c"]);

    // DeleteRecords whose write is applied but answered with an error: a later write (a
    // seal) never moves the stored log start back.
    txns.lose_next_answers(1);
    assert!(stratus::upkeep::delete_records(&broker.upkeep, &p, 1)
        .await
        .is_err());
    stratus::upkeep::seal(&broker.upkeep, &p, 1 << 20)
        .await
        .unwrap();
    let stored = meta.get(&key).await.unwrap().unwrap();
    let rec: repo::PartitionRecord = repo::decode(&key, &stored).unwrap();
    assert_eq!(
        rec.log_start_offset, 1,
        "the applied DeleteRecords stays applied"
    );
    assert_eq!(rec.sealed_end, 3, "and the seal after it went through");
    assert_eq!(p.state().log_start(), 1);
}

/// A seal whose segment PUT fails commits nothing: no record names a segment that was
/// never written (the WAL ranges it came from would be collected, and the data lost).
#[tokio::test]
async fn a_seal_whose_segment_put_fails_commits_nothing() {
    use stratus_meta::{repo, MetaStore};
    let Unsealed {
        broker,
        _served,
        conn: mut s,
        p,
        meta,
        puts,
        ..
    } = unsealed().await;
    puts.fail_next(1);
    stratus::upkeep::seal(&broker.upkeep, &p, 1 << 20)
        .await
        .expect_err("a seal whose PUT failed fails");
    let key = keys::partition_key(&p.topic_id, p.index);
    let named = match meta.get(&key).await.unwrap() {
        Some(v) => {
            repo::decode::<repo::PartitionRecord>(&key, &v)
                .unwrap()
                .segments
        }
        None => vec![],
    };
    assert!(
        named.is_empty(),
        "no record names the unwritten segment: {named:?}"
    );
    assert_eq!(p.state().sealed_end(), 0);

    stratus::upkeep::seal(&broker.upkeep, &p, 1 << 20)
        .await
        .unwrap();
    assert_eq!(p.state().sealed_end(), 2, "the next seal goes through");
    let values: Vec<String> = fetch_values(&mut s, "f")
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["a", "b"]);
}
