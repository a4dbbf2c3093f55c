//! Tests of the block cache.
use super::*;
use crate::objects::Op;

/// The directory (keep it), a store (a local directory or memory) holding the object
/// `key` of `len` patterned bytes `data`, and a cache over it with `block`-byte blocks,
/// 1 MiB of memory and `disk` bytes of disk tier.
type Fixture = (
    tempfile::TempDir,
    Arc<Objects>,
    Arc<BlockCache>,
    Arc<str>,
    Vec<u8>,
);

async fn fixture(local: bool, len: u32, block: u64, disk: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let objects = if local {
        let store = dir.path().join("store");
        std::fs::create_dir_all(&store).unwrap();
        Objects::from_url(&format!("file://{}", store.display())).unwrap()
    } else {
        Objects::from_url("memory://").unwrap()
    };
    let objects = Arc::new(objects);
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    objects
        .put_new("o", Bytes::from(data.clone()))
        .await
        .unwrap();
    let cache = Arc::new(BlockCache::new(
        objects.clone(),
        block,
        1 << 20,
        dir.path().join("c"),
        disk,
    ));
    (dir, objects, cache, Arc::from("o"), data)
}

#[tokio::test]
async fn reads_across_blocks_and_tiers() {
    let (_dir, objects, cache, key, data) = fixture(false, 10_000, 1000, 1 << 20).await;
    let got = cache.read(&key, 10_000, 1500..4200).await.unwrap();
    assert_eq!(&got[..], &data[1500..4200]);
    let gets = objects.metrics.requests(Op::Get);
    assert_eq!(gets, 4, "whole blocks 1..=4 are read");
    cache.clear_memory();
    let again = cache.read(&key, 10_000, 1500..4200).await.unwrap();
    assert_eq!(&again[..], &data[1500..4200]);
    let gets2 = objects.metrics.requests(Op::Get);
    assert_eq!(gets2, 4, "the disk tier served the second read");
    let m = &cache.metrics;
    assert_eq!((m.memory_misses.get(), m.disk_hits.get()), (8, 4));
    assert_eq!(m.store_bytes.get(), 4000);
    assert_eq!(m.disk_bytes.get(), 4000);
    let tail = cache.read(&key, 10_000, 9990..20_000).await.unwrap();
    assert_eq!(&tail[..], &data[9990..]);
}

#[tokio::test]
async fn read_ahead_fetches_blocks_once_and_a_bounded_number_at_once() {
    let (_dir, objects, cache, key, data) = fixture(false, 30_000, 1000, 0).await;
    // 20 blocks asked for at once: READ_AHEAD_AT_ONCE start, the rest are left.
    cache.read_ahead(&key, 30_000, 5..25);
    assert_eq!(
        cache.metrics.read_ahead_blocks.get(),
        READ_AHEAD_AT_ONCE as u64
    );
    let gets_done = || objects.metrics.requests(Op::Get);
    while gets_done() < READ_AHEAD_AT_ONCE as u64 {
        tokio::task::yield_now().await;
    }
    while cache.reading_ahead() > 0 {
        tokio::task::yield_now().await;
    }
    // The blocks read ahead are in memory: reading them makes no request.
    let got = cache.read(&key, 30_000, 5000..13_000).await.unwrap();
    assert_eq!(&got[..], &data[5000..13_000]);
    assert_eq!(gets_done(), READ_AHEAD_AT_ONCE as u64);
    // Blocks held already and blocks past the end are not fetched again.
    cache.read_ahead(&key, 30_000, 5..13);
    cache.read_ahead(&key, 30_000, 30..40);
    assert_eq!(
        cache.metrics.read_ahead_blocks.get(),
        READ_AHEAD_AT_ONCE as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_of_the_same_blocks_at_once_fetch_each_block_once() {
    let (_dir, objects, cache, key, data) = fixture(true, 300_000, 100_000, 0).await;
    let readers = (0..16).map(|i| {
        let (cache, key) = (cache.clone(), key.clone());
        tokio::spawn(async move {
            let from = (i * 1000) as u64;
            (from, cache.read(&key, 300_000, from..from + 250_000).await)
        })
    });
    for r in futures::future::join_all(readers).await {
        let (from, got) = r.unwrap();
        let got = got.unwrap();
        assert_eq!(&got[..], &data[from as usize..from as usize + 250_000]);
    }
    assert_eq!(
        objects.metrics.requests(Op::Get),
        3,
        "16 readers of blocks 0..=2 at once: one GET per block"
    );
}

#[tokio::test]
async fn a_read_once_of_a_local_store_reads_just_its_range_and_caches_nothing() {
    let (_dir, objects, cache, key, data) = fixture(true, 10_000, 1000, 1 << 20).await;
    let got = cache.read_once(&key, 10_000, 1500..4200).await.unwrap();
    assert_eq!(&got[..], &data[1500..4200]);
    assert_eq!(objects.metrics.requests(Op::Get), 1, "one ranged read");
    assert_eq!(
        cache.metrics.store_bytes.get(),
        2700,
        "the range, not its blocks"
    );
    cache.memory.run_pending_tasks().await;
    assert_eq!(cache.memory.entry_count(), 0, "nothing cached");
    // Blocks in memory are used: blocks 1..=4 read (and cached) by an ordinary read.
    cache.read(&key, 10_000, 1000..5000).await.unwrap();
    let gets = objects.metrics.requests(Op::Get);
    let again = cache.read_once(&key, 10_000, 1500..4200).await.unwrap();
    assert_eq!(&again[..], &data[1500..4200]);
    let within = cache.read_once(&key, 10_000, 2100..2900).await.unwrap();
    assert_eq!(&within[..], &data[2100..2900]);
    assert_eq!(
        objects.metrics.requests(Op::Get),
        gets,
        "served from memory"
    );
    // Partly in memory: read from the store. Past the end: cut at the end.
    let part = cache.read_once(&key, 10_000, 4500..12_000).await.unwrap();
    assert_eq!(&part[..], &data[4500..]);
    assert_eq!(objects.metrics.requests(Op::Get), gets + 1);
    assert!(cache
        .read_once(&key, 10_000, 10_000..10_100)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_read_once_of_a_remote_store_reads_and_caches_blocks() {
    let (_dir, objects, cache, key, data) = fixture(false, 10_000, 1000, 0).await;
    let got = cache.read_once(&key, 10_000, 1500..4200).await.unwrap();
    assert_eq!(&got[..], &data[1500..4200]);
    assert_eq!(objects.metrics.requests(Op::Get), 4, "whole blocks 1..=4");
    cache.memory.run_pending_tasks().await;
    assert_eq!(cache.memory.entry_count(), 4, "and cached");
}

#[tokio::test]
async fn an_object_of_one_block_is_cached_as_it_is_and_a_larger_one_block_by_block() {
    let (_dir, objects, cache, _key, _data) = fixture(false, 10, 1000, 0).await;
    let small: Arc<str> = Arc::from("small");
    let one = Bytes::from(vec![7u8; 1000]);
    cache.insert_object(&small, &one).await;
    let got = cache.read(&small, 1000, 10..990).await.unwrap();
    assert_eq!(&got[..], &one[10..990]);
    assert_eq!(got.as_ptr(), one[10..].as_ptr(), "the object's own buffer");
    let large: Arc<str> = Arc::from("large");
    let three: Bytes = (0..2500u32).map(|i| (i % 251) as u8).collect();
    cache.insert_object(&large, &three).await;
    cache.memory.run_pending_tasks().await;
    assert_eq!(cache.memory.entry_count(), 4, "one block, then three");
    let got = cache.read(&large, 2500, 1200..1800).await.unwrap();
    assert_eq!(&got[..], &three[1200..1800]);
    assert_ne!(got.as_ptr(), three[1200..].as_ptr(), "a copy of its block");
    assert_eq!(objects.metrics.requests(Op::Get), 0, "all from memory");
}

/// The memory tier holds about its capacity, never its capacity and a backlog: moka
/// evicts only when it gets to its pending work (every 64 writes), so blocks of 1 MiB
/// let 64 MiB of memory hold up to twice that.
#[tokio::test]
async fn the_memory_tier_holds_its_capacity_however_fast_blocks_arrive() {
    let block = 64 << 10;
    let (_dir, _objects, cache, _key, _data) = fixture(false, 10, block, 0).await;
    let keys: Vec<Arc<str>> = (0..60).map(|i| Arc::from(format!("w{i}"))).collect();
    let mut held = 0;
    for k in &keys {
        cache
            .insert_object(k, &Bytes::from(vec![1u8; block as usize]))
            .await;
        // The eviction runs in a task of its own.
        tokio::task::yield_now().await;
        while cache.sweeping.load(Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
        held = keys
            .iter()
            .filter(|k| cache.memory.contains_key(&((*k).clone(), 0)))
            .count();
        assert!(
            held as u64 * block <= (1 << 20) + (1 << 20) / 4,
            "{held} blocks of 64 KiB held in 1 MiB"
        );
    }
    assert!(held >= 12, "only {held} blocks kept: evicting too much");
}

#[tokio::test]
async fn a_rewritten_object_is_cached_only_where_reading_it_costs_a_request() {
    for local in [true, false] {
        let (_dir, objects, cache, key, data) = fixture(local, 10_000, 1000, 0).await;
        // In two parts, the second from a block boundary; one not from a boundary is
        // left out.
        let whole = Bytes::from(data.clone());
        cache.insert_rewritten(&key, 0, &whole.slice(..4000)).await;
        cache
            .insert_rewritten(&key, 4000, &whole.slice(4000..))
            .await;
        cache
            .insert_rewritten(&key, 4500, &whole.slice(4500..))
            .await;
        cache.memory.run_pending_tasks().await;
        let blocks = if local { 0 } else { 10 };
        assert_eq!(cache.memory.entry_count(), blocks, "local store: {local}");
        let got = cache.read(&key, 10_000, 2500..7300).await.unwrap();
        assert_eq!(&got[..], &data[2500..7300]);
        // Local: blocks 2..=7 come from the file; remote: all from memory.
        let gets = if local { 6 } else { 0 };
        assert_eq!(
            objects.metrics.requests(Op::Get),
            gets,
            "local store: {local}"
        );
    }
}

/// Many ranges read at once answer in the order asked: those memory holds from memory,
/// the others from the store (on a local one, in one blocking call), and a range of a
/// missing object fails alone.
#[tokio::test]
async fn many_ranges_read_at_once_answer_in_order_from_memory_or_the_store() {
    for local in [true, false] {
        let (_dir, objects, cache, key, data) = fixture(local, 10_000, 1000, 0).await;
        let fresh: Arc<str> = Arc::from("fresh");
        let held = Bytes::from(vec![9u8; 800]);
        cache.insert_object(&fresh, &held).await;
        let gone: Arc<str> = Arc::from("gone");
        let reads = vec![
            (key.clone(), 10_000, 100..2300),
            (fresh.clone(), 800, 50..80),
            (gone.clone(), 500, 0..10),
            (key.clone(), 10_000, 9000..10_000),
        ];
        let got = cache.read_once_many(&reads).await;
        assert_eq!(got.len(), 4);
        assert_eq!(&got[0].as_ref().unwrap()[..], &data[100..2300]);
        assert_eq!(&got[1].as_ref().unwrap()[..], &held[50..80]);
        assert!(
            got[2].as_ref().is_err_and(|e| e.not_found()),
            "{:?}",
            got[2]
        );
        assert_eq!(&got[3].as_ref().unwrap()[..], &data[9000..10_000]);
        if local {
            assert_eq!(
                objects.metrics.requests(Op::Get),
                3,
                "the held range from memory"
            );
        }
    }
}
