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
use stratus::partition::Partition;
use stratus_log::objects::Objects;
use stratus_meta::embedded::EmbeddedStore;
use stratus_meta::repo::PartitionRecord;
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

/// Brokers 1 and 2 over the shared stores, each flushing its WAL at once, served, with a
/// connection to each.
async fn two_brokers(
    meta: &Arc<dyn MetaStore>,
    objects: &Arc<Objects>,
) -> (Vec<TestBroker>, Vec<Arc<stratus::Broker>>, Vec<TcpStream>) {
    two_brokers_with(meta, objects, &[]).await
}

/// [`two_brokers`] with more settings.
async fn two_brokers_with(
    meta: &Arc<dyn MetaStore>,
    objects: &Arc<Objects>,
    extra: &[(&str, &str)],
) -> (Vec<TestBroker>, Vec<Arc<stratus::Broker>>, Vec<TcpStream>) {
    let (mut brokers, mut handles, mut conns) = (Vec::new(), Vec::new(), Vec::new());
    for node in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let id = node.to_string();
        let mut all = vec![("node.id", id.as_str()), ("wal.flush.interval.ms", "1")];
        all.extend_from_slice(extra);
        let s = settings(dir.path(), &all);
        let b = stratus::Broker::open_with(s, meta.clone(), objects.clone())
            .await
            .unwrap();
        handles.push(b.clone());
        let served = serve(b, dir).await;
        conns.push(TcpStream::connect(served.addr).await.unwrap());
        brokers.push(served);
    }
    (brokers, handles, conns)
}

/// Moves partition 0 of `topic` to broker `to` (as `stratus admin move` does) and waits
/// until Metadata names it with an epoch above `epoch`.
async fn move_partition(
    meta: &dyn MetaStore,
    broker: &stratus::Broker,
    conn: &mut TcpStream,
    topic: &str,
    to: i32,
    epoch: i32,
) {
    let t = broker.registry.topic(topic).unwrap();
    let name = stratus_meta::keys::PartitionId::new(&t.id_text, 0);
    stratus::cluster::controller::apply(meta, None, false, vec![(name, to)])
        .await
        .unwrap();
    for _ in 0..100 {
        let (l, e) = leader(conn, topic).await;
        if l == to && e > epoch {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Metadata never named broker {to} with an epoch above {epoch}");
}

/// Produces `value` to the new owner of partition 0 until it takes it; returns the result.
async fn produce_once_owned(conn: &mut TcpStream, topic: &str, value: &str) -> (i16, i64) {
    let mut ok = (0, -1);
    for _ in 0..100 {
        ok = produce_code(conn, topic, batch(&[value], 2)).await;
        if ok.0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_partition_keeps_its_data_and_the_old_owner_refuses_writes() {
    let (_meta_dir, meta, objects) = shared_stores();
    let (_brokers, handles, mut conns) = two_brokers(&meta, &objects).await;
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
    move_partition(
        meta.as_ref(),
        &handles[0],
        &mut conns[from],
        "moved",
        to as i32 + 1,
        epoch,
    )
    .await;
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
    let ok = produce_once_owned(&mut conns[to], "moved", "c").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_out_owners_late_seal_never_replaces_the_new_owners_segment() {
    let (_meta_dir, meta, objects) = shared_stores();
    let (_brokers, handles, mut conns) = two_brokers(&meta, &objects).await;
    create_topic(&mut conns[0], "resealed", 1).await;
    let (owner, epoch) = leader(&mut conns[1], "resealed").await;
    let (from, to) = (owner as usize - 1, 2 - owner as usize);
    assert_eq!(
        produce_code(&mut conns[from], "resealed", batch(&["a", "b"], 2)).await,
        (0, 0)
    );
    // The old owner's partition as it stands now, kept aside: a broker that stalls (a GC
    // pause, a network cut) with a seal under way and resumes it once the partition has
    // moved on.
    let old = handles[from].registry.topic("resealed").unwrap().partitions[0].clone();
    let zombie = Partition::new(
        old.topic_id.clone(),
        old.topic.clone(),
        0,
        &PartitionRecord::default(),
    );
    {
        let src = old.state();
        let mut z = zombie.state();
        for c in src.tail() {
            z.recover_range(c.clone(), &[]);
        }
        z.take_ownership(src.owner_epoch().unwrap());
        assert_eq!(z.sealable(u64::MAX).len(), src.tail().len());
    }
    move_partition(
        meta.as_ref(),
        &handles[0],
        &mut conns[from],
        "resealed",
        to as i32 + 1,
        epoch,
    )
    .await;
    assert_eq!(
        produce_once_owned(&mut conns[to], "resealed", "c").await,
        (0, 2)
    );
    let new = handles[to].registry.topic("resealed").unwrap().partitions[0].clone();
    stratus::upkeep::seal(&handles[to].upkeep, &new, u64::MAX)
        .await
        .unwrap();
    let seg = new.state().segments()[0].clone();
    assert_eq!((seg.base_offset, seg.end_offset), (0, 3));
    let sealed = objects.get_range(&seg.key, 0..seg.size).await.unwrap();

    let late = stratus::upkeep::seal(&handles[from].upkeep, &zombie, u64::MAX).await;
    assert!(
        matches!(
            late,
            Err(stratus::error::Error::Kafka(
                kafka_protocol::ResponseError::NotLeaderOrFollower
            ))
        ),
        "the ex-owner's record write is fenced: {late:?}"
    );
    assert_eq!(
        objects.get_range(&seg.key, 0..seg.size).await.unwrap(),
        sealed,
        "the segment the record names is as its owner sealed it"
    );
    let segments = |listed: Vec<(String, i64)>| -> Vec<String> {
        listed.into_iter().map(|(k, _)| k).collect()
    };
    let listed = segments(objects.list("topics/").await.unwrap());
    assert_eq!(
        listed.len(),
        2,
        "the late seal wrote its own object: {listed:?}"
    );
    // Nothing names the ex-owner's segment and it starts below the sealed end: the
    // controller sweeps it, and the one the record names stays.
    let mut swept = 0;
    for h in &handles {
        swept += stratus::upkeep::sweep_orphan_segments(&h.upkeep, 0)
            .await
            .unwrap();
    }
    assert_eq!(swept, 1);
    assert_eq!(
        segments(objects.list("topics/").await.unwrap()),
        vec![seg.key.clone()]
    );
    assert_eq!(
        fetch_values(&mut conns[to], "resealed").await,
        vec![(0, "a".into()), (1, "b".into()), (2, "c".into())],
    );
}

/// Produces 128 KiB to each of `partitions` of `topic`; returns their error codes.
async fn produce_128k(conn: &mut TcpStream, topic: &str, partitions: &[i32]) -> Vec<i16> {
    let value = "x".repeat(8 * 1024);
    let values: Vec<&str> = (0..16).map(|_| value.as_str()).collect();
    let mut req = produce_req(topic, batch(&values, 2));
    let data = req.topic_data[0].partition_data[0].clone();
    req.topic_data[0].partition_data = partitions
        .iter()
        .map(|i| data.clone().with_index(*i))
        .collect();
    let r: ProduceResponse = call(conn, ApiKey::Produce, 9, &req).await;
    r.responses[0]
        .partition_responses
        .iter()
        .map(|p| p.error_code)
        .collect()
}

/// Owner of each partition of `topic`, once every one has a live owner.
async fn owners_of(broker: &stratus::Broker, topic: &str, n: i32) -> Vec<i32> {
    let t = broker.registry.topic(topic).unwrap();
    for _ in 0..200 {
        let view = stratus::cluster::read_view(broker.meta.as_ref())
            .await
            .unwrap();
        let owners: Vec<i32> = (0..n)
            .filter_map(|i| view.owner(&t.id_text, i).map(|(o, _)| o))
            .collect();
        if owners.len() == n as usize {
            return owners;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("partitions of {topic} without an owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_splits_the_busy_partitions_by_their_measured_traffic() {
    let (_meta_dir, meta, objects) = shared_stores();
    let (_brokers, handles, mut conns) =
        two_brokers_with(&meta, &objects, &[("load.report.interval.ms", "300")]).await;
    create_topic(&mut conns[0], "busy", 4).await;
    let owners = owners_of(&handles[0], "busy", 4).await;
    // Counts are even: two partitions each. Make both of broker 1's the busy ones.
    assert_eq!(owners.iter().filter(|o| **o == 1).count(), 2, "{owners:?}");
    let hot: Vec<i32> = (0..4).filter(|i| owners[*i as usize] == 1).collect();
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < until {
        let codes = produce_128k(&mut conns[0], "busy", &hot).await;
        assert!(
            codes.iter().all(|c| *c == 0),
            "produce to broker 1's partitions: {codes:?}"
        );
    }
    // The dry run shows the measured imbalance and a plan that evens it out.
    let (changed, load) = stratus::cluster::controller::propose(meta.as_ref())
        .await
        .unwrap();
    let by_node = |n: i32| load.iter().find(|l| l.node == n).copied().unwrap();
    let (one, two) = (by_node(1), by_node(2));
    assert!(one.bytes_per_sec_before > 256 << 10, "{load:?}");
    assert_eq!(two.bytes_per_sec_before, 0, "{load:?}");
    assert!(
        two.bytes_per_sec_after > 0 && one.bytes_per_sec_after > 0,
        "{load:?}"
    );
    assert_eq!(
        (one.partitions_after, two.partitions_after),
        (2, 2),
        "{load:?}"
    );
    assert_eq!(
        changed.partitions, 2,
        "one busy and one idle partition trade places"
    );
    stratus::cluster::controller::apply(meta.as_ref(), None, true, Vec::new())
        .await
        .unwrap();
    let after = owners_of(&handles[0], "busy", 4).await;
    let busy_owners: Vec<i32> = hot.iter().map(|i| after[*i as usize]).collect();
    assert!(
        busy_owners.contains(&1) && busy_owners.contains(&2),
        "each broker owns one busy partition: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_rebalance_a_busy_broker_sheds_load_on_its_own() {
    let (_meta_dir, meta, objects) = shared_stores();
    let settings = [
        ("load.report.interval.ms", "300"),
        ("auto.rebalance.enable", "true"),
        ("auto.rebalance.interval.ms", "1000"),
    ];
    let (_brokers, handles, mut conns) = two_brokers_with(&meta, &objects, &settings).await;
    create_topic(&mut conns[0], "busy", 4).await;
    let owners = owners_of(&handles[0], "busy", 4).await;
    assert_eq!(owners.iter().filter(|o| **o == 1).count(), 2, "{owners:?}");
    let hot: Vec<i32> = (0..4).filter(|i| owners[*i as usize] == 1).collect();
    // Keep producing to broker 1's two partitions until one of them moves (a moved one
    // answers NOT_LEADER_OR_FOLLOWER, as a client would then look up its new owner).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let moved = loop {
        let codes = produce_128k(&mut conns[0], "busy", &hot).await;
        assert!(codes.iter().all(|c| *c == 0 || *c == 6), "{codes:?}");
        if codes.contains(&6) {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
    };
    assert!(moved, "no busy partition left broker 1 within 20 s");
    let after = owners_of(&handles[0], "busy", 4).await;
    let busy_owners: Vec<i32> = hot.iter().map(|i| after[*i as usize]).collect();
    assert!(
        busy_owners.contains(&1) && busy_owners.contains(&2),
        "each broker owns one busy partition: {after:?}"
    );
    assert_eq!(after.iter().filter(|o| **o == 1).count(), 2, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refused_by_the_old_owner_is_told_the_new_owner_and_its_address() {
    let (_meta_dir, meta, objects) = shared_stores();
    let (_brokers, handles, mut conns) = two_brokers(&meta, &objects).await;
    create_topic(&mut conns[0], "moved", 1).await;
    let (owner, epoch) = leader(&mut conns[1], "moved").await;
    let (from, to) = (owner as usize - 1, 2 - owner as usize);
    move_partition(
        meta.as_ref(),
        &handles[0],
        &mut conns[from],
        "moved",
        to as i32 + 1,
        epoch,
    )
    .await;
    let (_, new_epoch) = leader(&mut conns[to], "moved").await;
    // The new owner's address, as Metadata gives it on this listener.
    let md: MetadataResponse = call(
        &mut conns[from],
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![])),
    )
    .await;
    let b = md
        .brokers
        .iter()
        .find(|b| b.node_id.0 == to as i32 + 1)
        .unwrap();
    let address = vec![(to as i32 + 1, b.host.to_string(), b.port)];
    // Produce v11 to the old owner (KIP-951): refused, with the new owner and its address.
    let mut answer = None;
    for _ in 0..100 {
        let r: ProduceResponse = call(
            &mut conns[from],
            ApiKey::Produce,
            11,
            &produce_req("moved", batch(&["late"], 2)),
        )
        .await;
        if r.responses[0].partition_responses[0].error_code == 6 {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = answer.expect("the old owner refuses the write");
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.current_leader.leader_id.0, to as i32 + 1, "{r:?}");
    assert_eq!(p.current_leader.leader_epoch, new_epoch, "{r:?}");
    let ends: Vec<(i32, String, i32)> = r
        .node_endpoints
        .iter()
        .map(|e| (e.node_id.0, e.host.to_string(), e.port))
        .collect();
    assert_eq!(ends, address);
    // Fetch v16 likewise.
    let id = handles[0].registry.topic("moved").unwrap().id;
    let req = FetchRequest::default()
        .with_max_wait_ms(10)
        .with_max_bytes(1 << 20)
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic_id(id)
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let f: FetchResponse = call(&mut conns[from], ApiKey::Fetch, 16, &req).await;
    let fp = &f.responses[0].partitions[0];
    assert_eq!(fp.error_code, 6, "{f:?}");
    assert_eq!(
        (
            fp.current_leader.leader_id.0,
            fp.current_leader.leader_epoch
        ),
        (to as i32 + 1, new_epoch)
    );
    let ends: Vec<(i32, String, i32)> = f
        .node_endpoints
        .iter()
        .map(|e| (e.node_id.0, e.host.to_string(), e.port))
        .collect();
    assert_eq!(ends, address);
    // Older versions carry neither (they cannot encode them).
    let old: ProduceResponse = call(
        &mut conns[from],
        ApiKey::Produce,
        9,
        &produce_req("moved", batch(&["late"], 2)),
    )
    .await;
    assert_eq!(old.responses[0].partition_responses[0].error_code, 6);
    assert!(old.node_endpoints.is_empty());
}
