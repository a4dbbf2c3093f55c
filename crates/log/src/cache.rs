//! The read cache between fetches and the object store: blocks of objects in memory
//! (moka, bounded by bytes), then in a bounded local directory, then ranged GETs of whole
//! blocks (read-ahead) from the object store.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use moka::future::Cache;

use crate::objects::{ObjectError, Objects};

type BlockKey = (Arc<str>, u64);

/// The tiered block cache.
pub struct BlockCache {
    objects: Arc<Objects>,
    block: u64,
    memory: Cache<BlockKey, Bytes>,
    disk: Option<DiskCache>,
}

struct DiskCache {
    dir: PathBuf,
    index: Cache<BlockKey, u32>,
}

fn file_name(key: &BlockKey) -> String {
    format!("{}.{}", key.0.replace('/', "_"), key.1)
}

impl BlockCache {
    /// Creates the cache; `disk_dir` with `disk_bytes > 0` enables the disk tier.
    pub fn new(
        objects: Arc<Objects>,
        block: u64,
        memory_bytes: u64,
        disk_dir: PathBuf,
        disk_bytes: u64,
    ) -> Self {
        // LRU, not moka's default TinyLFU: fresh WAL blocks are read next by consumers
        // of the tail, and a frequency filter would refuse to admit them.
        let memory = Cache::builder()
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .weigher(|_k: &BlockKey, v: &Bytes| v.len().min(u32::MAX as usize) as u32)
            .max_capacity(memory_bytes)
            .build();
        let disk = (disk_bytes > 0).then(|| {
            // Blocks left by an earlier process are not indexed: start empty.
            let _ = std::fs::remove_dir_all(&disk_dir);
            let _ = std::fs::create_dir_all(&disk_dir);
            let dir = disk_dir.clone();
            let index = Cache::builder()
                .weigher(|_k: &BlockKey, v: &u32| *v)
                .max_capacity(disk_bytes)
                .eviction_listener(move |k: Arc<BlockKey>, _v, _cause| {
                    let _ = std::fs::remove_file(dir.join(file_name(&k)));
                })
                .build();
            DiskCache {
                dir: disk_dir,
                index,
            }
        });
        BlockCache {
            objects,
            block,
            memory,
            disk,
        }
    }

    /// Inserts the blocks of an object just written, so that reads of fresh data hit memory.
    /// Each block is a copy: a slice would keep the whole object alive while the cache
    /// counts one block of it.
    pub async fn insert_object(&self, key: &Arc<str>, data: &Bytes) {
        let mut start = 0u64;
        while start < data.len() as u64 {
            let end = (start + self.block).min(data.len() as u64);
            self.memory
                .insert(
                    (key.clone(), start / self.block),
                    Bytes::copy_from_slice(&data[start as usize..end as usize]),
                )
                .await;
            start = end;
        }
    }

    /// Forgets every block of an object (it was deleted).
    pub async fn forget_object(&self, key: &Arc<str>, size: u64) {
        for b in 0..size.div_ceil(self.block) {
            let k = (key.clone(), b);
            self.memory.invalidate(&k).await;
            if let Some(d) = &self.disk {
                d.index.invalidate(&k).await;
            }
        }
    }

    /// Reads `range` of the object `key` whose total size is `size`.
    pub async fn read(
        &self,
        key: &Arc<str>,
        size: u64,
        range: Range<u64>,
    ) -> Result<Bytes, ObjectError> {
        let end = range.end.min(size);
        if range.start >= end {
            return Ok(Bytes::new());
        }
        let first = range.start / self.block;
        let last = (end - 1) / self.block;
        let blocks = futures::future::try_join_all(
            (first..=last).map(|b| self.block_of(key.clone(), size, b)),
        )
        .await?;
        let skip = (range.start - first * self.block) as usize;
        let len = (end - range.start) as usize;
        if blocks.len() == 1 {
            let b = &blocks[0];
            return Ok(b.slice(skip.min(b.len())..(skip + len).min(b.len())));
        }
        let mut out = BytesMut::with_capacity(len + skip);
        for b in &blocks {
            out.extend_from_slice(b);
        }
        let out = out.freeze();
        Ok(out.slice(skip.min(out.len())..(skip + len).min(out.len())))
    }

    async fn block_of(&self, key: Arc<str>, size: u64, block: u64) -> Result<Bytes, ObjectError> {
        let k: BlockKey = (key, block);
        if let Some(b) = self.memory.get(&k).await {
            return Ok(b);
        }
        if let Some(d) = &self.disk {
            if d.index.get(&k).await.is_some() {
                let path = d.dir.join(file_name(&k));
                if let Ok(data) = tokio::fs::read(&path).await {
                    let b = Bytes::from(data);
                    self.memory.insert(k, b.clone()).await;
                    return Ok(b);
                }
            }
        }
        let start = block * self.block;
        let end = (start + self.block).min(size);
        let b = self.objects.get_range(&k.0, start..end).await?;
        self.memory.insert(k.clone(), b.clone()).await;
        if let Some(d) = &self.disk {
            let path = d.dir.join(file_name(&k));
            if tokio::fs::write(&path, &b).await.is_ok() {
                d.index.insert(k, b.len() as u32).await;
            }
        }
        Ok(b)
    }

    /// Drops every cached block in memory (the benchmark's "cold" reads).
    pub fn clear_memory(&self) {
        self.memory.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_across_blocks_and_tiers() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Arc::new(Objects::from_url("memory://").unwrap());
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        objects
            .put_new("o", Bytes::from(data.clone()))
            .await
            .unwrap();
        let cache = BlockCache::new(
            objects.clone(),
            1000,
            1 << 20,
            dir.path().join("c"),
            1 << 20,
        );
        let key: Arc<str> = Arc::from("o");
        let got = cache.read(&key, 10_000, 1500..4200).await.unwrap();
        assert_eq!(&got[..], &data[1500..4200]);
        let gets = objects
            .metrics
            .gets
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(gets, 4, "whole blocks 1..=4 are read");
        cache.clear_memory();
        let again = cache.read(&key, 10_000, 1500..4200).await.unwrap();
        assert_eq!(&again[..], &data[1500..4200]);
        let gets2 = objects
            .metrics
            .gets
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(gets2, 4, "the disk tier served the second read");
        let tail = cache.read(&key, 10_000, 9990..20_000).await.unwrap();
        assert_eq!(&tail[..], &data[9990..]);
    }
}
