//! An in-process cluster: two brokers over one metadata store and one object store. A
//! partition moved from one to the other keeps every acknowledged record and its offsets;
//! the old owner refuses writes (NOT_LEADER_OR_FOLLOWER) and Metadata follows the move.
//! (The process-level tests with etcd, MinIO, kill -9 and SIGSTOP are in
//! tests/clients/test_cluster.py.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use stratus_log::objects::Objects;
use stratus_meta::embedded::EmbeddedStore;
use stratus_meta::MetaStore;
use tokio::net::TcpStream;

/// The leader and epoch of partition 0, once this broker knows one (as a client retries
/// Metadata: a broker learns of a new topic's owner through its cluster view).
async fn leader(s: &mut TcpStream, topic: &str) -> (i32, i32) {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(TopicName(StrBytes::from_string(topic.into()))))]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r: MetadataResponse = call(s, ApiKey::Metadata, 12, &req).await;
        let p = &r.topics[0].partitions[0];
        if p.leader_id.0 >= 0 || std::time::Instant::now() > deadline {
            return (p.leader_id.0, p.leader_epoch);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Keys of every WAL object in the bucket.
async fn wal_objects(objects: &Objects) -> Vec<String> {
    let listed = objects.list("wal/").await.unwrap();
    listed.into_iter().map(|o| o.0).collect()
}

/// One metadata store and one bucket, shared by the brokers of a test.
fn shared_stores() -> (tempfile::TempDir, Arc<dyn MetaStore>, Arc<Objects>) {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn MetaStore> =
        Arc::new(EmbeddedStore::open(&dir.path().join("meta.redb")).unwrap());
    let objects = Arc::new(Objects::from_store(Arc::new(
        object_store::memory::InMemory::new(),
    )));
    (dir, meta, objects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_partition_keeps_its_data_and_the_old_owner_refuses_writes() {
    let (_meta_dir, meta, objects) = shared_stores();
    let mut brokers = Vec::new();
    let mut handles = Vec::new();
    for node in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(
            dir.path(),
            &[
                ("node.id", &node.to_string()),
                ("wal.flush.interval.ms", "1"),
            ],
        );
        let b = stratus::Broker::open_with(s, meta.clone(), objects.clone())
            .await
            .unwrap();
        handles.push(b.clone());
        brokers.push(serve(b, dir).await);
    }
    let mut conns = Vec::new();
    for b in &brokers {
        conns.push(TcpStream::connect(b.addr).await.unwrap());
    }
    create_topic(&mut conns[0], "moved", 1).await;
    let (owner, epoch) = leader(&mut conns[1], "moved").await;
    assert!(owner == 1 || owner == 2, "an owner is assigned: {owner}");
    let (from, to) = (owner as usize - 1, 2 - owner as usize);
    assert_eq!(
        produce_code(&mut conns[from], "moved", batch(&["a", "b"], 2)).await,
        (0, 0)
    );
    let other = produce_code(&mut conns[to], "moved", batch(&["x"], 2)).await;
    assert_eq!(
        other.0, 6,
        "NOT_LEADER_OR_FOLLOWER from a broker that does not own it"
    );

    // Move it, as `stratus admin move` does.
    let topic = handles[0].registry.topic("moved").unwrap();
    let name = stratus_meta::keys::PartitionId::new(&topic.id_text, 0);
    stratus::cluster::controller::apply(meta.as_ref(), None, false, vec![(name, to as i32 + 1)])
        .await
        .unwrap();
    let mut moved = false;
    for _ in 0..100 {
        let (l, e) = leader(&mut conns[from], "moved").await;
        if l == to as i32 + 1 && e > epoch {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved, "Metadata names the new owner with a higher epoch");
    let mut refused = false;
    for _ in 0..100 {
        if produce_code(&mut conns[from], "moved", batch(&["late"], 2))
            .await
            .0
            == 6
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the old owner refuses writes");
    let mut ok = (0, -1);
    for _ in 0..100 {
        ok = produce_code(&mut conns[to], "moved", batch(&["c"], 2)).await;
        if ok.0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ok, (0, 2), "the new owner continues at the next offset");
    assert_eq!(
        fetch_values(&mut conns[to], "moved").await,
        vec![(0, "a".into()), (1, "b".into()), (2, "c".into())],
        "the new owner serves what the old one committed; nothing refused is visible"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_sweeps_only_wal_objects_that_can_never_be_committed() {
    let (_meta_dir, meta, objects) = shared_stores();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), &[("wal.flush.interval.ms", "1")]);
    let b = stratus::Broker::open_with(s, meta.clone(), objects.clone())
        .await
        .unwrap();
    let handle = b.clone();
    let served = serve(b, dir).await;
    let mut conn = TcpStream::connect(served.addr).await.unwrap();
    create_topic(&mut conn, "swept", 1).await;
    assert_eq!(
        produce_code(&mut conn, "swept", batch(&["kept"], 2)).await,
        (0, 0)
    );
    let inc = handle.fence.incarnation();
    // Left by a crash of an earlier incarnation of node 1 between a PUT and its commit
    // (node 1's assignment now names the live incarnation), and one of the live incarnation.
    let dead = "wal/1/00000000000000ab-00000000000000000007.wal".to_string();
    let live = format!("wal/1/{inc:016x}-00000000000000099999.wal");
    for k in [&dead, &live] {
        objects
            .put_new(k, bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    let before = wal_objects(&objects).await;
    let swept = stratus::upkeep::sweep_orphan_wal_objects(&handle.upkeep, 0)
        .await
        .unwrap();
    let after = wal_objects(&objects).await;
    assert_eq!(
        swept, 1,
        "only the dead incarnation's object: {before:?} -> {after:?}"
    );
    assert!(!after.contains(&dead));
    assert!(
        after.contains(&live),
        "a live incarnation may still commit its objects"
    );
    assert_eq!(
        after.len(),
        before.len() - 1,
        "committed WAL objects are kept"
    );
    assert_eq!(
        fetch_values(&mut conn, "swept").await,
        vec![(0, "kept".into())]
    );
    // Too young: nothing is swept before the minimum age.
    objects
        .put_new(&dead, bytes::Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(
        stratus::upkeep::sweep_orphan_wal_objects(&handle.upkeep, 60_000)
            .await
            .unwrap(),
        0
    );
}
