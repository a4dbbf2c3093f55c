//! The conformance suite every metadata backend must pass unchanged.
//! It panics on the first violated guarantee (it is called from tests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;

use super::{Compare, MetaStore, Op, MAX_TXN_OPS};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Runs every check against a store whose keys under `conf/` are free.
pub async fn run_all(store: &dyn MetaStore) {
    get_put_range(store).await;
    large_ranges_keys_and_many_gets(store).await;
    transactions(store).await;
    watches(store).await;
    leases(store).await;
    revoke_races_a_put_under_another_lease(store).await;
}

async fn get_put_range(store: &dyn MetaStore) {
    assert!(store.get("conf/a/missing").await.unwrap().is_none());
    store.put("conf/a/1", b("one")).await.unwrap();
    store.put("conf/a/2", b("two")).await.unwrap();
    store.put("conf/b/1", b("other")).await.unwrap();
    let v1 = store.get("conf/a/1").await.unwrap().unwrap();
    assert_eq!(v1.value, b("one"));
    let all = store.range("conf/a/").await.unwrap();
    let keys: Vec<_> = all.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec!["conf/a/1", "conf/a/2"],
        "range is by prefix, in key order"
    );
    store.put("conf/a/1", b("uno")).await.unwrap();
    let v1b = store.get("conf/a/1").await.unwrap().unwrap();
    assert!(v1b.mod_revision > v1.mod_revision, "revisions increase");
}

/// A range larger than one answer can carry (etcd's client takes 4 MiB per message), with
/// more keys than one page, comes back whole and in order; a listing of keys gives the
/// same keys with the revisions `get` gives; `get_many` answers in the order asked,
/// across more keys than one transaction holds.
async fn large_ranges_keys_and_many_gets(store: &dyn MetaStore) {
    let big = Bytes::from(vec![b'x'; 512 << 10]);
    for i in 0..12 {
        store
            .put(&format!("conf/big-v/{i:03}"), big.clone())
            .await
            .unwrap();
    }
    let all = store.range("conf/big-v/").await.unwrap();
    assert_eq!(all.len(), 12, "a 6 MiB range comes back whole");
    assert!(all.iter().all(|(_, v)| v.value == big));
    let n = 3 * MAX_TXN_OPS + 7;
    for chunk in (0..n).collect::<Vec<_>>().chunks(MAX_TXN_OPS) {
        let ops = chunk
            .iter()
            .map(|i| Op::Put(format!("conf/many/{i:05}"), b(&i.to_string()), None))
            .collect();
        store.txn(vec![], ops).await.unwrap();
    }
    let all = store.range("conf/many/").await.unwrap();
    let expected: Vec<String> = (0..n).map(|i| format!("conf/many/{i:05}")).collect();
    let got: Vec<String> = all.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(got, expected, "every key, in key order");
    let listed = store.range_keys("conf/many/").await.unwrap();
    let from_range: Vec<(String, u64)> = all
        .iter()
        .map(|(k, v)| (k.clone(), v.mod_revision))
        .collect();
    assert_eq!(listed, from_range, "keys and revisions as range has them");
    assert!(store.range_keys("conf/none/").await.unwrap().is_empty());
    let mut asked: Vec<String> = expected.iter().rev().cloned().collect();
    asked.insert(5, "conf/many/absent".into());
    let got = store.get_many(&asked).await.unwrap();
    assert_eq!(got.len(), asked.len());
    for (key, v) in asked.iter().zip(&got) {
        match key
            .strip_prefix("conf/many/")
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) => {
                let v = v.as_ref().unwrap();
                assert_eq!(v.value, b(&i.to_string()), "{key}");
                assert_eq!(Some(v), all.get(i).map(|(_, v)| v));
            }
            None => assert!(v.is_none(), "an absent key reads as None"),
        }
    }
    assert!(store.get_many(&[]).await.unwrap().is_empty());
}

async fn transactions(store: &dyn MetaStore) {
    let cur = store.get("conf/a/2").await.unwrap().unwrap();
    // A failed compare applies nothing.
    let applied = store
        .txn(
            vec![Compare::Revision(
                "conf/a/2".into(),
                Some(cur.mod_revision + 1000),
            )],
            vec![
                Op::Put("conf/t/x".into(), b("x"), None),
                Op::Delete("conf/a/2".into()),
            ],
        )
        .await
        .unwrap();
    assert!(!applied);
    assert!(store.get("conf/t/x").await.unwrap().is_none());
    assert!(store.get("conf/a/2").await.unwrap().is_some());
    // A holding compare applies every op.
    let applied = store
        .txn(
            vec![
                Compare::Revision("conf/a/2".into(), Some(cur.mod_revision)),
                Compare::Revision("conf/t/absent".into(), None),
                Compare::Value("conf/b/1".into(), Some(b("other"))),
            ],
            vec![
                Op::Put("conf/t/x".into(), b("x"), None),
                Op::Delete("conf/a/2".into()),
            ],
        )
        .await
        .unwrap();
    assert!(applied);
    assert_eq!(store.get("conf/t/x").await.unwrap().unwrap().value, b("x"));
    assert!(store.get("conf/a/2").await.unwrap().is_none());
    // Create-if-absent is a compare on absence.
    let again = store
        .txn(
            vec![Compare::Revision("conf/t/x".into(), None)],
            vec![Op::Put("conf/t/x".into(), b("y"), None)],
        )
        .await
        .unwrap();
    assert!(!again);
    // Too many operations are refused, not truncated.
    let ops = (0..=MAX_TXN_OPS)
        .map(|i| Op::Put(format!("conf/big/{i}"), b("v"), None))
        .collect();
    assert!(store.txn(vec![], ops).await.is_err());
    assert!(store.range("conf/big/").await.unwrap().is_empty());
}

async fn watches(store: &dyn MetaStore) {
    let mut rx = store.watch("conf/w/");
    store.put("conf/x/ignored", b("1")).await.unwrap();
    store.put("conf/w/k", b("v")).await.unwrap();
    store
        .txn(vec![], vec![Op::Delete("conf/w/k".into())])
        .await
        .unwrap();
    let e1 = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (e1.key.as_str(), e1.value.clone()),
        ("conf/w/k", Some(b("v")))
    );
    let e2 = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e2.key.as_str(), e2.value), ("conf/w/k", None));
    assert!(e2.revision > e1.revision);
    // A change made right after `watch` returns is delivered, however long the store
    // takes to set the watch up behind it: watchers read, then wait on a watch made before
    // the read, and a change lost in between would go unseen until their next poll.
    for round in 0..20 {
        let prefix = format!("conf/wr/{round}/");
        let mut rx = store.watch(&prefix);
        store.put(&format!("{prefix}k"), b("v")).await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .ok()
            .flatten();
        assert!(
            e.is_some_and(|e| e.key == format!("{prefix}k")),
            "round {round}: a put right after watch() was not delivered"
        );
    }
}

async fn leases(store: &dyn MetaStore) {
    let lease = store.grant_lease(Duration::from_secs(2)).await.unwrap();
    store
        .txn(
            vec![],
            vec![Op::Put("conf/l/a".into(), b("1"), Some(lease))],
        )
        .await
        .unwrap();
    // Kept alive, the lease outlives its TTL: 3.5 s of keep-alives on a 2 s lease.
    let granted = std::time::Instant::now();
    while granted.elapsed() < Duration::from_millis(3500) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        store.keep_alive(lease).await.unwrap();
    }
    assert!(
        store.get("conf/l/a").await.unwrap().is_some(),
        "a lease kept alive keeps its keys past its TTL"
    );
    store.revoke_lease(lease).await.unwrap();
    assert!(
        store.get("conf/l/a").await.unwrap().is_none(),
        "revoking deletes the lease's keys"
    );
    let short = store.grant_lease(Duration::from_secs(1)).await.unwrap();
    store
        .txn(
            vec![],
            vec![Op::Put("conf/l/b".into(), b("1"), Some(short))],
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.get("conf/l/b").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an expired lease deletes its keys"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(store.keep_alive(short).await.is_err());
}

/// A key put again under a new lease while its old lease is revoked stays: the revoke
/// deletes what is under the old lease when it happens, never a key that moved on (a
/// process restarting over its predecessor's registration lost it this way).
async fn revoke_races_a_put_under_another_lease(store: &dyn MetaStore) {
    for i in 0..40 {
        let key = format!("conf/r/{i}");
        let old = store.grant_lease(Duration::from_secs(30)).await.unwrap();
        let new = store.grant_lease(Duration::from_secs(30)).await.unwrap();
        let put = |lease| store.txn(vec![], vec![Op::Put(key.clone(), b("v"), Some(lease))]);
        put(old).await.unwrap();
        let (revoked, moved) = tokio::join!(store.revoke_lease(old), put(new));
        revoked.unwrap();
        assert!(moved.unwrap());
        assert!(
            store.get(&key).await.unwrap().is_some(),
            "round {i}: revoking the old lease deleted the key put under the new one"
        );
        store.revoke_lease(new).await.unwrap();
        assert!(store.get(&key).await.unwrap().is_none());
    }
}
