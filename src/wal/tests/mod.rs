//! The WAL against an in-memory object store with injected faults and an embedded
//! metadata store: pipelined flushes commit in order, a failed flush fails exactly the
//! writes it and later flushes held, and ranges of partitions that moved are fenced out.
// Test-only: the parent declares this file with #[cfg(test)].

use std::time::Duration;

use super::*;
use crate::testing::{Faults, FaultyMetaStore, FaultyObjectStore};
use stratus_log::testing::make_batch;
use stratus_meta::embedded::EmbeddedStore;
use stratus_meta::repo::{Assignment, PartitionRecord};

const NODE: i32 = 1;
const INCARNATION: u64 = 7;

mod model;
mod recover;

struct Rig {
    wal: Arc<Wal>,
    meta: Arc<dyn MetaStore>,
    /// The embedded store under `meta`'s faults.
    store: Arc<dyn MetaStore>,
    objects: Arc<Objects>,
    puts: Arc<Faults>,
    /// Faults of the metadata store's transactions (the WAL's commits among them).
    txns: Arc<Faults>,
    parts: Vec<Arc<Partition>>,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn assign(meta: &dyn MetaStore, epochs: &[i32]) {
    let a = Assignment {
        incarnation: INCARNATION,
        partitions: epochs
            .iter()
            .enumerate()
            .map(|(i, e)| (keys::PartitionId::new("t", i as i32), *e))
            .collect(),
        shards: Default::default(),
    };
    // Retried: the store may be injecting faults (a put that is applied twice is once).
    let value = repo::encode(&a);
    for _ in 0..1000 {
        if meta
            .put(&keys::assignment_key(NODE), value.clone())
            .await
            .is_ok()
        {
            return;
        }
    }
    panic!("the assignment was never written");
}

/// A WAL owning `n` partitions of topic `t` at epoch 1 (not running yet).
async fn rig(n: i32) -> Rig {
    rig_with(n, repo::WAL_ENTRY_BUDGET).await
}

/// [`rig`], with flushes whose index entries take at most `max_index_bytes`.
async fn rig_with(n: i32, max_index_bytes: usize) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn MetaStore> =
        Arc::new(EmbeddedStore::open(&dir.path().join("meta.redb")).unwrap());
    let faulty = FaultyMetaStore::new(embedded.clone());
    let txns = faulty.txns.clone();
    let meta: Arc<dyn MetaStore> = Arc::new(faulty);
    let store = Arc::new(FaultyObjectStore::new(Arc::new(
        object_store::memory::InMemory::new(),
    )));
    let puts = store.puts.clone();
    let objects = Arc::new(Objects::from_store(store));
    let cache = Arc::new(BlockCache::new(
        objects.clone(),
        1 << 16,
        1 << 24,
        dir.path().join("cache"),
        0,
    ));
    let fence = Arc::new(Fence::new(NODE, INCARNATION));
    assign(meta.as_ref(), &vec![1; n as usize]).await;
    fence.refresh(meta.as_ref()).await.unwrap();
    let parts = (0..n)
        .map(|i| {
            let p = Arc::new(Partition::new(
                Arc::from("t"),
                Arc::from("t"),
                i,
                &PartitionRecord::default(),
            ));
            p.state().take_ownership(1);
            p
        })
        .collect();
    let cfg = WalConfig {
        node_id: NODE,
        incarnation: INCARNATION,
        flush_interval: Duration::ZERO,
        flush_min_bytes: 0,
        flush_bytes: 1 << 20,
        max_buffer_bytes: 1 << 24,
        max_in_flight: 4,
        max_index_bytes,
    };
    let wal = Arc::new(Wal::new(
        cfg,
        meta.clone(),
        objects.clone(),
        cache,
        1,
        fence,
    ));
    Rig {
        wal,
        meta,
        store: embedded,
        objects,
        puts,
        txns,
        parts,
        cancel: CancellationToken::new(),
        _dir: dir,
    }
}

impl Rig {
    fn start(&self) {
        tokio::spawn(self.wal.clone().run(self.cancel.clone()));
    }

    async fn append(&self, partition: usize, records: i32) -> Pending {
        let batches = stratus_log::batch::validate(&make_batch(records, -1, -1, 1)).unwrap();
        self.wal
            .append(&self.parts[partition], &batches, None, 1)
            .await
            .unwrap()
    }

    fn object(&self, seq: u64) -> String {
        WalObject {
            node: NODE,
            incarnation: INCARNATION,
            seq,
        }
        .name()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn flushes_commit_in_order_while_an_earlier_put_is_still_in_flight() {
    let r = rig(1).await;
    r.start();
    r.puts.delay_next(500);
    let a = r.append(0, 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = r.append(0, 3).await;
    assert!(a.seq < b.seq, "two flushes: {} and {}", a.seq, b.seq);
    // The second object is written while the first PUT is still delayed...
    for _ in 0..100 {
        if r.objects.get_range(&r.object(b.seq), 0..1).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(r.objects.get_range(&r.object(b.seq), 0..1).await.is_ok());
    // ...but nothing is visible until the first one commits.
    assert_eq!(r.parts[0].state().high_watermark(), 0);
    r.wal.wait(b.seq).await.unwrap();
    r.wal.wait(a.seq).await.unwrap();
    assert_eq!((a.base_offset, b.base_offset), (0, 2));
    assert_eq!(r.parts[0].state().high_watermark(), 5);
    for seq in [a.seq, b.seq] {
        assert!(r
            .meta
            .get(&keys::wal_key(NODE, seq, INCARNATION))
            .await
            .unwrap()
            .is_some());
    }
}

#[tokio::test]
async fn a_failed_flush_fails_its_writes_and_the_log_continues_at_the_high_watermark() {
    let r = rig(1).await;
    r.start();
    let ok = r.append(0, 1).await;
    r.wal.wait(ok.seq).await.unwrap();
    r.puts.fail_next(u32::MAX);
    let lost = r.append(0, 2).await;
    let lost_seq = lost.seq;
    assert!(
        matches!(lost.acked().await, Err(Error::NotDurable { .. })),
        "never acknowledged"
    );
    assert!(!r.wal.healthy());
    let p = r.parts[0].clone();
    eventually("the lost data is forgotten", || {
        p.state().next_offset() == 1
    })
    .await;
    assert_eq!(p.state().high_watermark(), 1);
    // Before they are given again, the failed flushes are recorded void, durably: after
    // a crash their objects are never taken for commits a crash lost.
    let void = r
        .store
        .get(&keys::wal_void_key(NODE))
        .await
        .unwrap()
        .unwrap();
    let void: u64 = String::from_utf8_lossy(&void.value).parse().unwrap();
    assert!(
        void >= lost_seq,
        "void floor {void} below the failed flush {lost_seq}"
    );
    r.puts.heal();
    // The offsets the failed flush had taken are given again: nothing was acknowledged.
    let again = r.append(0, 1).await;
    assert_eq!(again.base_offset, 1);
    r.wal.wait(again.seq).await.unwrap();
    assert_eq!(p.state().high_watermark(), 2);
    assert!(r.wal.healthy());
}

#[tokio::test]
async fn ranges_of_a_partition_that_moved_are_left_out_of_the_commit() {
    let r = rig(2).await;
    let kept = r.append(0, 1).await;
    let moved = r.append(1, 1).await;
    assert_eq!(kept.seq, moved.seq, "one flush holds both");
    // Partition 1 moves away and back (epoch 2) before the flush commits.
    assign(r.meta.as_ref(), &[1, 2]).await;
    r.start();
    let seq = kept.seq;
    assert_eq!(kept.acked().await.unwrap(), 0);
    assert_eq!(
        moved.acked().await.unwrap_err().kafka(),
        kafka_protocol::ResponseError::NotLeaderOrFollower,
        "not written here: the producer retries with the owner"
    );
    assert_eq!(r.parts[0].state().high_watermark(), 1);
    assert_eq!(
        r.parts[1].state().high_watermark(),
        0,
        "appended at epoch 1, never committed"
    );
    let key = keys::wal_key(NODE, seq, INCARNATION);
    let entry: WalEntry = repo::decode(&key, &r.meta.get(&key).await.unwrap().unwrap()).unwrap();
    assert_eq!(entry.ranges.len(), 1);
    assert_eq!(entry.ranges[0].partition, 0);
    assert!(
        r.objects.get_range(&entry.object, 0..1).await.is_ok(),
        "the object holds committed data: it stays"
    );
}

/// The duplicate-retry race, made deterministic: a producer's retry arrives while the
/// flush holding its original is in flight (taken from the buffer, its PUT delayed). The
/// retry is acknowledged with the original's offset, never before the original commits,
/// and never if the original's flush fails; the data is written once.
#[tokio::test]
async fn a_retry_of_a_batch_in_flight_is_acked_with_its_original_and_never_before_it() {
    let r = rig(1).await;
    r.start();
    let p = r.parts[0].clone();
    let batch = |n, seq| stratus_log::batch::validate(&make_batch(n, 9, seq, 1)).unwrap();
    r.puts.delay_next(300);
    let original = r.wal.append(&p, &batch(3, 0), None, 1).await.unwrap();
    eventually("the flush is taken", || {
        r.wal.lock_buffer().entries.is_empty()
    })
    .await;
    let retry = r.wal.append(&p, &batch(3, 0), None, 1).await.unwrap();
    assert_eq!((retry.base_offset, retry.seq), (0, original.seq));
    let acked = tokio::spawn(retry.acked());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !acked.is_finished(),
        "acknowledged before its original committed"
    );
    assert_eq!(p.state().high_watermark(), 0);
    assert_eq!(acked.await.unwrap().unwrap(), 0);
    assert_eq!(original.acked().await.unwrap(), 0);
    assert_eq!(p.state().high_watermark(), 3, "written once");

    // The original's flush fails: neither it nor its retry is acknowledged.
    r.puts.delay_next(200);
    r.puts.fail_next(u32::MAX);
    let original = r.wal.append(&p, &batch(2, 3), None, 1).await.unwrap();
    eventually("the flush is taken", || {
        r.wal.lock_buffer().entries.is_empty()
    })
    .await;
    let retry = r.wal.append(&p, &batch(2, 3), None, 1).await.unwrap();
    assert_eq!((retry.base_offset, retry.seq), (3, original.seq));
    assert!(retry.acked().await.is_err());
    assert!(original.acked().await.is_err());
    r.puts.heal();
    eventually("the failed flush is forgotten", || {
        p.state().next_offset() == 3 && !r.wal.lock_buffer().poisoned
    })
    .await;
    // The producer's next retry is new data again, at the same offset.
    let again = r.wal.append(&p, &batch(2, 3), None, 1).await.unwrap();
    assert_eq!(again.acked().await.unwrap(), 3);
    assert_eq!(p.state().high_watermark(), 5);
}

/// A flush's index entry stays within what the metadata store takes (etcd refuses a
/// request over 1.5 MiB by default): appends that would make it larger wait for the next
/// flush, and every one of them is acknowledged.
#[tokio::test]
async fn flushes_are_cut_where_their_index_entry_would_outgrow_the_store_limit() {
    const PARTITIONS: usize = 12;
    let limit = repo::wal_entry_bound(4, 0);
    let r = Arc::new(rig_with(PARTITIONS as i32, limit).await);
    // Buffered while the WAL is not running yet: the buffer takes four ranges...
    let appends: Vec<_> = (0..PARTITIONS)
        .map(|i| {
            let r = r.clone();
            tokio::spawn(async move { r.append(i, 2).await })
        })
        .collect();
    eventually("four appends are buffered", || {
        r.wal.lock_buffer().ranges.len() == 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(r.wal.lock_buffer().entries.len(), 4, "the others wait");
    assert!(r.wal.lock_buffer().full);
    assert_eq!(r.wal.metrics.index_full.get(), 1, "counted once per buffer");
    // ...and the rest go in the next flushes.
    r.start();
    let mut seqs = HashSet::new();
    for a in appends {
        let pending = a.await.unwrap();
        seqs.insert(pending.seq);
        assert_eq!(pending.acked().await.unwrap(), 0);
    }
    assert!(
        seqs.len() >= 3,
        "{PARTITIONS} partitions in flushes {seqs:?}"
    );
    let mut ranges = 0;
    for seq in seqs {
        let v = r
            .meta
            .get(&keys::wal_key(NODE, seq, INCARNATION))
            .await
            .unwrap()
            .unwrap();
        assert!(v.value.len() <= limit);
        let entry: WalEntry = repo::decode_struct("k", &v.value).unwrap();
        assert!(entry.ranges.len() <= 4, "{} ranges", entry.ranges.len());
        ranges += entry.ranges.len();
    }
    assert_eq!(ranges, PARTITIONS);
    for p in &r.parts {
        assert_eq!(p.state().high_watermark(), 2);
    }
}

/// Producer batches count too: one partition's idempotent batches past the limit go in
/// the next flush, and deduplication still holds across the cut.
#[tokio::test]
async fn idempotent_batches_past_the_index_limit_wait_for_the_next_flush() {
    let r = Arc::new(rig_with(1, repo::wal_entry_bound(1, 2)).await);
    let batch = |seq: i32| stratus_log::batch::validate(&make_batch(1, 9, seq, 1)).unwrap();
    let mut waiting = Vec::new();
    for seq in 0..3 {
        let (rc, b) = (r.clone(), batch(seq));
        waiting.push(tokio::spawn(async move {
            rc.wal.append(&rc.parts[0], &b, None, 1).await.unwrap()
        }));
        // In order: a producer's sequences must arrive in order.
        eventually("the append is buffered or waits", || {
            let b = r.wal.lock_buffer();
            b.entries.len() as i32 > seq || b.full
        })
        .await;
    }
    assert_eq!(r.wal.lock_buffer().producer_batches, 2);
    r.start();
    let mut seqs = Vec::new();
    for (i, w) in waiting.into_iter().enumerate() {
        let pending = w.await.unwrap();
        seqs.push(pending.seq);
        assert_eq!(pending.acked().await.unwrap(), i as i64);
    }
    assert!(
        seqs[2] > seqs[1],
        "the third batch went in a later flush: {seqs:?}"
    );
    // A retry of the third batch is its original.
    let again = r.wal.append(&r.parts[0], &batch(2), None, 1).await.unwrap();
    assert_eq!(again.acked().await.unwrap(), 2);
    assert_eq!(r.parts[0].state().high_watermark(), 3);
}
