//! The index rebuilt from WAL objects after a crash lost commits that were acknowledged
//! (relaxed commits of the embedded store): every lost entry comes back as it was, and
//! nothing that does not continue its partition is taken for one.

use super::*;
use stratus_meta::repo::TopicRecord;

/// Topic `t` (id `t`) with `n` partitions, as the topic admin writes it.
async fn topic(meta: &dyn MetaStore, n: i32) {
    let t = TopicRecord {
        id: "t".into(),
        name: "t".into(),
        partitions: n,
        replication_factor: 1,
        configs: Default::default(),
    };
    meta.put(&keys::topic_key("t"), repo::encode(&t))
        .await
        .unwrap();
}

/// Flushes, each acknowledged: p0 0..3 and p1 0..2 (one or two), then p0 3..5, then p0
/// 5..6. Returns the index as committed.
async fn three_flushes(r: &Rig) -> Vec<(String, Bytes)> {
    topic(r.meta.as_ref(), 2).await;
    r.start();
    let (a, b) = (r.append(0, 3).await, r.append(1, 2).await);
    a.acked().await.unwrap();
    b.acked().await.unwrap();
    r.append(0, 2).await.acked().await.unwrap();
    r.append(0, 1).await.acked().await.unwrap();
    index(r).await
}

async fn index(r: &Rig) -> Vec<(String, Bytes)> {
    r.store
        .range(&keys::wal_prefix(NODE))
        .await
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.value))
        .collect()
}

/// What a crash does to relaxed commits: the entries from `from` on are gone.
async fn lose_from(r: &Rig, committed: &[(String, Bytes)], from: usize) {
    let ops = committed[from..]
        .iter()
        .map(|(k, _)| Op::Delete(k.clone()))
        .collect();
    assert!(r.store.txn(vec![], ops).await.unwrap());
}

async fn recover(r: &Rig) -> usize {
    super::super::recover(r.store.as_ref(), &r.objects, NODE)
        .await
        .unwrap()
}

#[tokio::test]
async fn entries_a_crash_lost_are_committed_again_as_they_were() {
    let r = rig(2).await;
    let committed = three_flushes(&r).await;
    assert!(committed.len() >= 3, "{committed:?}");
    lose_from(&r, &committed, 1).await;
    assert_eq!(recover(&r).await, committed.len() - 1);
    assert_eq!(index(&r).await, committed);
    // Run again (a second crash before anything new): nothing more to do.
    assert_eq!(recover(&r).await, 0);
}

#[tokio::test]
async fn a_range_that_does_not_continue_its_partition_is_left_out() {
    let r = rig(2).await;
    let committed = three_flushes(&r).await;
    let last = committed.len() - 1;
    lose_from(&r, &committed, last - 1).await;
    // The object of the second-to-last flush is gone (a failed flush that a crash cut
    // short): the last one's ranges start past where the log now ends.
    let seq = keys::wal_seq(&committed[last - 1].0).unwrap();
    r.objects.delete(&r.object(seq)).await.unwrap();
    assert_eq!(recover(&r).await, 0);
    assert_eq!(index(&r).await, committed[..last - 1].to_vec());
    // The sequence of the object left out is never used again: a flush of the next
    // incarnation under it could be ordered after it in the next rebuild.
    let last_seq = keys::wal_seq(&committed[last].0).unwrap();
    let void = super::super::void_floor(r.store.as_ref(), NODE)
        .await
        .unwrap();
    assert!(void >= last_seq, "void floor {void} below {last_seq}");
}

#[tokio::test]
async fn flushes_below_the_void_floor_are_never_taken_for_lost_commits() {
    let r = rig(2).await;
    let committed = three_flushes(&r).await;
    lose_from(&r, &committed, 1).await;
    let last = keys::wal_seq(&committed[committed.len() - 1].0).unwrap();
    r.store
        .put(&keys::wal_void_key(NODE), last.to_string().into())
        .await
        .unwrap();
    assert_eq!(recover(&r).await, 0);
    assert_eq!(index(&r).await, committed[..1].to_vec());
}

#[tokio::test]
async fn a_torn_object_a_deleted_topic_and_a_partition_not_owned_are_left_out() {
    let r = rig(2).await;
    let committed = three_flushes(&r).await;
    let last = committed.len() - 1;
    lose_from(&r, &committed, last).await;
    let seq = keys::wal_seq(&committed[last].0).unwrap();
    let name = r.object(seq);
    let whole = r.objects.get(&name).await.unwrap();
    r.objects.delete(&name).await.unwrap();
    r.objects
        .put_new(&name, whole.slice(..whole.len() - 3))
        .await
        .unwrap();
    assert_eq!(recover(&r).await, 0);
    // Each rebuild voids what it left out; the void floor is cleared here so that the
    // same object is judged again for another reason.
    let unvoid = || async {
        let ops = vec![Op::Delete(keys::wal_void_key(NODE))];
        r.store.txn(vec![], ops).await.unwrap();
    };
    unvoid().await;
    // Whole again, but its topic is gone.
    r.objects.delete(&name).await.unwrap();
    r.objects.put_new(&name, whole).await.unwrap();
    let ops = vec![Op::Delete(keys::topic_key("t"))];
    r.store.txn(vec![], ops).await.unwrap();
    assert_eq!(recover(&r).await, 0);
    unvoid().await;
    topic(r.store.as_ref(), 2).await;
    // The topic is back, but its partitions are no longer assigned to this broker.
    assign(r.store.as_ref(), &[]).await;
    assert_eq!(recover(&r).await, 0);
    unvoid().await;
    assign(r.store.as_ref(), &[1, 1]).await;
    assert_eq!(recover(&r).await, 1);
    assert_eq!(index(&r).await, committed);
}
