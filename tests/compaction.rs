//! WAL compaction: the metadata store's WAL index stays flat while slow partitions keep
//! taking data, every record stays readable (after seals, collection and restarts), and a
//! compaction cut short anywhere (its commit failed, its answer lost, the broker gone
//! between its PUT and its commit or between its commit and its deletes) loses and
//! duplicates nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use stratus::testing::FaultyMetaStore;
use stratus::upkeep::compact::{compact_wal, delete_replaced, MERGE_AT};
use stratus_log::objects::Objects;
use stratus_meta::embedded::EmbeddedStore;
use stratus_meta::MetaStore;
use tokio::net::TcpStream;

const TOPICS: usize = 10;

struct Stores {
    _dir: tempfile::TempDir,
    meta: Arc<FaultyMetaStore>,
    objects: Arc<Objects>,
}

fn stores() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn MetaStore> =
        Arc::new(EmbeddedStore::open(&dir.path().join("meta.redb")).unwrap());
    Stores {
        _dir: dir,
        meta: Arc::new(FaultyMetaStore::new(inner)),
        objects: Arc::new(Objects::from_store(Arc::new(
            object_store::memory::InMemory::new(),
        ))),
    }
}

struct Node {
    broker: Arc<stratus::Broker>,
    conn: TcpStream,
    _served: TestBroker,
}

/// Broker 1 on the shared stores, WAL flushes at once and no retention (the test records'
/// timestamps are from 1970), with `extra` settings.
async fn open(st: &Stores, extra: &[(&str, &str)]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = vec![("wal.flush.interval.ms", "1"), ("log.retention.ms", "-1")];
    pairs.extend_from_slice(extra);
    let meta: Arc<dyn MetaStore> = st.meta.clone();
    let broker = stratus::Broker::open_with(settings(dir.path(), &pairs), meta, st.objects.clone())
        .await
        .unwrap();
    let served = serve(broker.clone(), dir).await;
    let conn = TcpStream::connect(served.addr).await.unwrap();
    Node {
        broker,
        conn,
        _served: served,
    }
}

/// Broker 1 with compaction by hand only; creates `s0..` when asked.
async fn node(st: &Stores, create: bool) -> Node {
    let mut n = open(
        st,
        &[
            ("wal.compaction.interval.ms", "0"),
            // A restart waits for the old incarnation's session to end.
            ("broker.session.timeout.ms", "1500"),
        ],
    )
    .await;
    if create {
        for t in 0..TOPICS {
            create_topic(&mut n.conn, &format!("s{t}"), 1).await;
        }
    }
    n
}

/// The WAL index: its entries and their bytes.
async fn index(meta: &dyn MetaStore) -> (usize, usize) {
    let all = meta.range("wal/").await.unwrap();
    (
        all.len(),
        all.iter().map(|(k, v)| k.len() + v.value.len()).sum(),
    )
}

/// Produces one record to every topic; `round` is the offset each must get.
async fn produce_round(n: &mut Node, round: usize) {
    for t in 0..TOPICS {
        let v = format!("r{round}-t{t}");
        let got = produce_code(&mut n.conn, &format!("s{t}"), batch(&[&v], 2)).await;
        assert_eq!(got, (0, round as i64), "s{t} round {round}");
    }
}

/// Every topic holds exactly rounds 0..`rounds`, in order.
async fn assert_all(n: &mut Node, rounds: usize) {
    for t in 0..TOPICS {
        let want: Vec<(i64, String)> = (0..rounds)
            .map(|r| (r as i64, format!("r{r}-t{t}")))
            .collect();
        assert_eq!(
            fetch_values(&mut n.conn, &format!("s{t}")).await,
            want,
            "s{t}"
        );
    }
}

/// Waits until the broker serves `s0` (after a restart, once it owns it again).
async fn await_owned(n: &mut Node) {
    let mut last = None;
    for _ in 0..1200 {
        let p = n
            .broker
            .registry
            .topic("s0")
            .map(|t| t.partitions[0].clone());
        let owner = p.map(|p| p.state().owner_epoch());
        if owner.is_some_and(|o| o.is_some()) {
            return;
        }
        last = Some(owner);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut state = Vec::new();
    for k in [
        "brokers/1/assignment",
        "brokers/1/registration",
        "cluster/controller",
    ] {
        let v = n.broker.meta.get(k).await.unwrap();
        state.push(format!(
            "{k}: {:?}",
            v.map(|v| String::from_utf8_lossy(&v.value).into_owned())
        ));
    }
    panic!("the restarted broker never owned its partitions: {last:?}; {state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_index_stays_flat_while_slow_partitions_take_data_and_nothing_is_lost() {
    let st = stores();
    let mut n = node(&st, true).await;
    let up = n.broker.upkeep.clone();
    let rounds = 30;
    let mut footprint = Vec::new();
    for round in 0..rounds {
        produce_round(&mut n, round).await;
        let done = compact_wal(&up, 64 << 20).await.unwrap();
        // No grace needed: nothing reads concurrently here.
        delete_replaced(&up, &done.replaced).await;
        if round == 15 {
            // A seal reads the relocated chunks, then collection frees what it covers.
            let p = n.broker.registry.topic("s0").unwrap().partitions[0].clone();
            stratus::upkeep::seal(&up, &p, u64::MAX).await.unwrap();
            assert_eq!(p.state().sealed_end(), 16);
            stratus::upkeep::collect_wal_garbage(&up).await.unwrap();
        }
        if round == 20 {
            // A seal of at most a few bytes takes one chunk: a whole merged range, so no
            // range of the index is ever partly sealed.
            let p = n.broker.registry.topic("s1").unwrap().partitions[0].clone();
            stratus::upkeep::seal(&up, &p, 1).await.unwrap();
            let sealed = p.state().sealed_end();
            assert!(sealed > 1, "a merged chunk was sealed whole: {sealed}");
            let id = p.topic_id.to_string();
            for (k, v) in st.meta.range("wal/").await.unwrap() {
                let e: stratus_meta::repo::WalEntry = stratus_meta::repo::decode(&k, &v).unwrap();
                for r in e.ranges.iter().filter(|r| r.topic_id == id) {
                    assert!(
                        !(r.base_offset < sealed && sealed < r.end_offset),
                        "{k} has {}..{} across the sealed end {sealed}",
                        r.base_offset,
                        r.end_offset
                    );
                }
            }
        }
        footprint.push(index(st.meta.as_ref()).await);
    }
    // Without compaction: one entry per produce, 300 by now.
    let (keys, _) = footprint[rounds - 1];
    let bound = TOPICS + MERGE_AT + 1;
    for (round, (k, _)) in footprint.iter().enumerate() {
        assert!(
            *k <= bound,
            "round {round}: {k} index entries: {footprint:?}"
        );
    }
    let early = footprint[2..10].iter().map(|f| f.1).max().unwrap();
    let late = footprint[10..].iter().map(|f| f.1).max().unwrap();
    assert!(
        late <= early + early / 4,
        "index bytes flat: {early} then {late}: {footprint:?}"
    );
    assert!(keys < rounds * TOPICS / 10);
    // The bucket holds what the index names (and the probe topic's nothing).
    let objects = st.objects.list("wal/").await.unwrap().len();
    assert!(objects <= bound, "{objects} WAL objects left");
    assert_all(&mut n, rounds).await;

    // A restart rebuilds every partition from the compacted index.
    drop(n);
    let mut n = node(&st, false).await;
    await_owned(&mut n).await;
    assert_all(&mut n, rounds).await;
    produce_round(&mut n, rounds).await;
    assert_all(&mut n, rounds + 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_cut_short_anywhere_loses_and_duplicates_nothing() {
    let st = stores();
    let mut n = node(&st, true).await;
    let up = n.broker.upkeep.clone();
    // The first run only notes which entries are old enough for the next.
    produce_round(&mut n, 0).await;
    compact_wal(&up, 64 << 20).await.unwrap();
    produce_round(&mut n, 1).await;

    // The commit's answer is lost once: the retry finds it applied.
    st.meta.txns.lose_next_answers(1);
    let done = compact_wal(&up, 64 << 20).await.unwrap();
    assert_eq!(done.written, 1, "{done:?}");
    assert!(done.replaced_entries >= TOPICS);
    delete_replaced(&up, &done.replaced).await;
    assert_all(&mut n, 2).await;

    // The store refuses every commit: the run gives up with the index as it was.
    produce_round(&mut n, 2).await;
    compact_wal(&up, 64 << 20).await.unwrap();
    let before = index(st.meta.as_ref()).await;
    st.meta.txns.fail_next(u32::MAX);
    assert!(compact_wal(&up, 64 << 20).await.is_err());
    st.meta.txns.heal();
    assert_eq!(index(st.meta.as_ref()).await, before);
    assert_all(&mut n, 3).await;

    // The broker dies between a compaction's commit and its deletes: the replaced
    // objects are left unnamed, and the restarted broker reads the compacted one.
    produce_round(&mut n, 3).await;
    let done = compact_wal(&up, 64 << 20).await.unwrap();
    assert!(done.written >= 1, "{done:?}");
    drop(n);
    drop(up);
    let mut n = node(&st, false).await;
    await_owned(&mut n).await;
    assert_all(&mut n, 4).await;
    produce_round(&mut n, 4).await;
    assert_all(&mut n, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_at_short_timers_the_index_and_the_bucket_stay_flat() {
    let st = stores();
    let Node {
        mut conn, _served, ..
    } = open(
        &st,
        &[
            ("wal.compaction.interval.ms", "300"),
            ("seal.check.interval.ms", "200"),
        ],
    )
    .await;
    let topics = 20;
    for t in 0..topics {
        create_topic(&mut conn, &format!("k{t}"), 1).await;
    }
    // Round robin over the topics as fast as acks come (each waits for its commit): every
    // topic gets a record about every half second, far from sealing by size or by age.
    let mut samples = Vec::new();
    let mut sent = vec![0i64; topics];
    let started = std::time::Instant::now();
    let mut i = 0usize;
    while started.elapsed() < Duration::from_secs(14) {
        let t = i % topics;
        let v = format!("k{t}-{}", sent[t]);
        let got = produce_code(&mut conn, &format!("k{t}"), batch(&[&v], 2)).await;
        assert_eq!(got, (0, sent[t]));
        sent[t] += 1;
        i += 1;
        if i.is_multiple_of(20) {
            let (keys, bytes) = index(st.meta.as_ref()).await;
            let objects = st.objects.list("wal/").await.unwrap().len();
            samples.push((started.elapsed().as_millis() as u64, keys, bytes, objects));
        }
    }
    let half = samples.len() / 2;
    let peak = |from: usize, to: usize, f: fn(&(u64, usize, usize, usize)) -> usize| {
        samples[from..to].iter().map(f).max().unwrap()
    };
    let produced = i;
    for (what, f) in [
        (
            "keys",
            (|s: &(u64, usize, usize, usize)| s.1) as fn(&_) -> usize,
        ),
        ("bytes", |s| s.2),
        ("objects", |s| s.3),
    ] {
        // The first seconds fill the pipeline; after that nothing grows.
        let early = peak(2, half, f);
        let late = peak(half, samples.len(), f);
        assert!(
            late <= early + early / 4 + 8,
            "{what} grew from {early} to {late} ({produced} produces): {samples:?}"
        );
    }
    let keys = samples.last().unwrap().1;
    assert!(keys * 4 < produced, "{keys} keys after {produced} produces");
    for (t, n) in sent.iter().enumerate() {
        let got = fetch_values(&mut conn, &format!("k{t}")).await;
        let want: Vec<(i64, String)> = (0..*n).map(|o| (o, format!("k{t}-{o}"))).collect();
        assert_eq!(got, want, "k{t}");
    }
}

/// A broker whose topics took `rounds` rounds, one WAL entry each; the index's entries.
async fn with_rounds(rounds: usize) -> (Stores, Node, usize) {
    let st = stores();
    let mut n = node(&st, true).await;
    for round in 0..rounds {
        produce_round(&mut n, round).await;
    }
    let (entries, _) = index(st.meta.as_ref()).await;
    (st, n, entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_more_entries_than_one_transaction_holds_commits_them_all() {
    let rounds = 16;
    let (st, mut n, before) = with_rounds(rounds).await;
    let up = n.broker.upkeep.clone();
    assert!(before >= rounds * TOPICS, "{before} entries");
    compact_wal(&up, 64 << 20).await.unwrap(); // notes the watermark
    let done = compact_wal(&up, 64 << 20).await.unwrap();
    assert_eq!(done.replaced_entries, before, "{done:?}");
    assert!(
        done.written >= 3,
        "{} entries need several transactions",
        before
    );
    delete_replaced(&up, &done.replaced).await;
    assert_eq!(index(st.meta.as_ref()).await.0, done.written);
    assert_all(&mut n, rounds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_at_most_its_byte_budget_and_the_next_runs_write_the_rest() {
    let rounds = 16;
    let (st, mut n, before) = with_rounds(rounds).await;
    let up = n.broker.upkeep.clone();
    // Well below the live bytes of the 160 entries, above those of one.
    let budget = 2048;
    compact_wal(&up, budget).await.unwrap(); // notes the watermark
    let mut runs = 0;
    loop {
        let done = compact_wal(&up, budget).await.unwrap();
        // (A group alone may be larger than the budget; two never are.)
        assert!(done.bytes <= budget || done.written == 1, "{done:?}");
        delete_replaced(&up, &done.replaced).await;
        if done.replaced_entries == 0 {
            break;
        }
        runs += 1;
        assert!(runs < 100, "compaction never settles");
    }
    assert!(
        runs >= 2,
        "{runs} runs: the budget should have cut the work"
    );
    assert!(index(st.meta.as_ref()).await.0 < before);
    assert_all(&mut n, rounds).await;
}

/// WAL collection and compaction keep what they decoded of each entry between runs, and
/// only the entries still listed: those a compaction replaced or a collection freed are
/// forgotten, so their memory follows the index; each entry is fetched from the store once,
/// and what they remember judges as well as a fresh decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_collection_remembers_exactly_the_entries_still_in_the_index() {
    let st = stores();
    // Upkeep by hand only (its first run finds nothing).
    let mut n = open(
        &st,
        &[
            ("wal.compaction.interval.ms", "0"),
            ("seal.check.interval.ms", "600000"),
        ],
    )
    .await;
    for t in 0..TOPICS {
        create_topic(&mut n.conn, &format!("s{t}"), 1).await;
    }
    let rounds = 4;
    for round in 0..rounds {
        produce_round(&mut n, round).await;
    }
    let up = n.broker.upkeep.clone();
    let (before, _) = index(st.meta.as_ref()).await;
    let remembered = || async { up.wal_index.lock().await.len() };
    let fetched = || async { up.wal_index.lock().await.fetched() };
    stratus::upkeep::collect_wal_garbage(&up).await.unwrap();
    assert_eq!(
        remembered().await,
        before,
        "nothing is sealed: every entry kept"
    );
    assert_eq!(fetched().await, before as u64);
    stratus::upkeep::collect_wal_garbage(&up).await.unwrap();
    compact_wal(&up, 64 << 20).await.unwrap(); // notes the watermark
    assert_eq!(fetched().await, before as u64, "nothing fetched again");
    let done = compact_wal(&up, 64 << 20).await.unwrap();
    assert!(done.replaced_entries > 0, "{done:?}");
    delete_replaced(&up, &done.replaced).await;
    stratus::upkeep::collect_wal_garbage(&up).await.unwrap();
    let (compacted, _) = index(st.meta.as_ref()).await;
    assert!(compacted < before, "{compacted} of {before}");
    assert_eq!(
        remembered().await,
        compacted,
        "the replaced entries are forgotten"
    );
    assert_eq!(
        fetched().await,
        (before + done.written) as u64,
        "only the compacted entries are new"
    );
    // Half the topics sealed: their entries stay while another topic's range is live.
    for t in 0..TOPICS {
        let p = n
            .broker
            .registry
            .topic(&format!("s{t}"))
            .unwrap()
            .partitions[0]
            .clone();
        stratus::upkeep::seal(&up, &p, u64::MAX).await.unwrap();
        assert_eq!(p.state().sealed_end(), rounds as i64);
        stratus::upkeep::collect_wal_garbage(&up).await.unwrap();
        let (left, _) = index(st.meta.as_ref()).await;
        assert_eq!(remembered().await, left, "after sealing s{t}");
    }
    assert_eq!(index(st.meta.as_ref()).await.0, 0, "all collected");
    assert!(up.wal_index.lock().await.is_empty());
    assert_all(&mut n, rounds).await;
}

/// A compacted object of several slices (the run streams it to the store a slice at a
/// time, caching each on a remote store) holds every record where its entry says: read
/// back from the cache it filled, and from the store alone after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_object_of_many_slices_reads_back_whole() {
    let st = stores();
    let mut n = node(&st, true).await;
    let up = n.broker.upkeep.clone();
    let rounds = 4;
    let value = |r: usize, t: usize| format!("r{r}-t{t}-{}", "x".repeat(90 << 10));
    for r in 0..rounds {
        for t in 0..TOPICS {
            let got = produce_code(&mut n.conn, &format!("s{t}"), batch(&[&value(r, t)], 2)).await;
            assert_eq!(got, (0, r as i64));
        }
    }
    compact_wal(&up, 64 << 20).await.unwrap(); // notes the watermark
    let done = compact_wal(&up, 64 << 20).await.unwrap();
    assert_eq!(done.written, 1, "{done:?}");
    assert!(
        done.bytes > 3 * stratus_log::bulk::SLICE as u64,
        "{} bytes: several slices",
        done.bytes
    );
    delete_replaced(&up, &done.replaced).await;
    let want = |t: usize| {
        (0..rounds)
            .map(|r| (r as i64, value(r, t)))
            .collect::<Vec<_>>()
    };
    for t in 0..TOPICS {
        assert_eq!(fetch_values(&mut n.conn, &format!("s{t}")).await, want(t));
    }
    drop(n);
    drop(up);
    let mut n = node(&st, false).await;
    await_owned(&mut n).await;
    for t in 0..TOPICS {
        assert_eq!(fetch_values(&mut n.conn, &format!("s{t}")).await, want(t));
    }
}

/// Batch `seq` of idempotent producer `pid` (epoch 0): one record, `value`.
fn idempotent(pid: i64, seq: i32, value: &str) -> bytes::Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: pid,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: seq,
        timestamp: 1000,
        key: None,
        value: Some(bytes::Bytes::copy_from_slice(value.as_bytes())),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
    buf.freeze()
}

/// A compacted range whose producer batches later committed ones supersede is written
/// without them (they were most of a full entry's bytes), and a restart that rebuilds the
/// producer's state from the index still knows its last batches: a retry of the last is
/// acknowledged at its offset, not written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_range_drops_superseded_producer_batches_and_a_restart_still_dedups() {
    let st = stores();
    let mut n = node(&st, true).await;
    let up = n.broker.upkeep.clone();
    let pid = 7;
    for seq in 0..6 {
        let got = produce_code(&mut n.conn, "s0", idempotent(pid, seq, &format!("v{seq}"))).await;
        assert_eq!(got, (0, i64::from(seq)));
    }
    compact_wal(&up, 64 << 20).await.unwrap(); // notes the watermark: after offset 5
    for seq in 6..12 {
        let got = produce_code(&mut n.conn, "s0", idempotent(pid, seq, &format!("v{seq}"))).await;
        assert_eq!(got, (0, i64::from(seq)));
    }
    // Compacts offsets 0..6 into one range; the producer's last five committed batches
    // (offsets 7..12) all come after it.
    let done = compact_wal(&up, 64 << 20).await.unwrap();
    delete_replaced(&up, &done.replaced).await;
    let id = n.broker.registry.topic("s0").unwrap().id.to_string();
    let mut compacted = None;
    let mut batches_in_index = 0;
    for (k, v) in st.meta.range("wal/").await.unwrap() {
        let e: stratus_meta::repo::WalEntry = stratus_meta::repo::decode(&k, &v).unwrap();
        for r in e.ranges.iter().filter(|r| r.topic_id == id) {
            batches_in_index += r.producers.len();
            if (r.base_offset, r.end_offset) == (0, 6) {
                compacted = Some(r.producers.len());
            }
        }
    }
    assert_eq!(
        compacted,
        Some(0),
        "the compacted range 0..6 of s0, with its producer batches"
    );
    assert_eq!(
        batches_in_index, 6,
        "the flush entries of offsets 6..12 keep theirs"
    );

    drop(n);
    let mut n = node(&st, false).await;
    await_owned(&mut n).await;
    // The retry of the last batch is a duplicate; the next batch goes on.
    let retry = produce_code(&mut n.conn, "s0", idempotent(pid, 11, "v11")).await;
    assert_eq!(
        retry,
        (0, 11),
        "a retry of the last batch after the restart"
    );
    let next = produce_code(&mut n.conn, "s0", idempotent(pid, 12, "v12")).await;
    assert_eq!(next, (0, 12));
    let want: Vec<(i64, String)> = (0..13).map(|o| (o, format!("v{o}"))).collect();
    assert_eq!(fetch_values(&mut n.conn, "s0").await, want);
}
