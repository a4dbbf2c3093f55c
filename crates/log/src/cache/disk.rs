//! The disk tier of the block cache: blocks in the slots of ONE file, `blocks` in the
//! tier's directory, a slot per block (`cache.block.bytes`), found through an LRU index.
//!
//! A file per block, as before, created an inode for every block fetched from the object
//! store and unlinked one for every block evicted. On ext4 without a journal (the test
//! machines' root) creating an inode walks the inodes freed in the last seconds to
//! minutes (`recently_deleted`, `find_inode_bit`): about a sixth of the broker's CPU
//! samples during a cold read from MinIO. A slot is written over in place: no inode, no
//! directory entry, no unlink.
//!
//! A slot that is evicted goes back to the free list and may be written over while a
//! reader that found it in the index is still reading it. Every slot has a generation,
//! bumped before each write; an entry records the generation its write made, and a read
//! that finds the slot's generation moved when it is done is a miss (as a seqlock's
//! reader retries). The index holds a few slots fewer than the file has, so that a write
//! finds a free slot once the index has evicted down to its capacity.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use moka::future::Cache;

use super::BlockKey;

/// Where a block lies: its slot, its length, and the slot's generation when it was written.
#[derive(Debug, Clone, Copy)]
struct Slot {
    index: u32,
    len: u32,
    generation: u64,
}

/// The slots and what is free of them.
struct Slots {
    free: Mutex<Vec<u32>>,
    generations: Box<[AtomicU64]>,
    /// Bytes of the blocks the index holds.
    held: AtomicU64,
}

impl Slots {
    fn release(&self, s: Slot) {
        self.held.fetch_sub(u64::from(s.len), Ordering::Relaxed);
        if let Ok(mut free) = self.free.lock() {
            free.push(s.index);
        }
    }

    fn take(&self) -> Option<u32> {
        self.free.lock().ok()?.pop()
    }
}

/// The disk tier.
pub(super) struct DiskTier {
    file: Arc<std::fs::File>,
    block: u64,
    index: Cache<BlockKey, Slot>,
    slots: Arc<Slots>,
}

impl DiskTier {
    /// A tier of `bytes` in `dir` with `block`-byte slots, emptied first (blocks left by an
    /// earlier process are not indexed); `None` if it holds fewer than two slots or its
    /// file cannot be made.
    pub(super) fn new(dir: &Path, block: u64, bytes: u64) -> Option<DiskTier> {
        let count = u32::try_from(bytes / block.max(1)).unwrap_or(u32::MAX);
        if count < 2 || block > u64::from(u32::MAX) {
            return None;
        }
        let _ = std::fs::remove_dir_all(dir);
        let made = std::fs::create_dir_all(dir).and_then(|()| {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.join("blocks"))?;
            f.set_len(u64::from(count) * block)?;
            Ok(f)
        });
        let file = match made {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "disk cache tier disabled: cannot make its file");
                return None;
            }
        };
        let slots = Arc::new(Slots {
            free: Mutex::new((0..count).rev().collect()),
            generations: (0..count).map(|_| AtomicU64::new(0)).collect(),
            held: AtomicU64::new(0),
        });
        // The index evicts down to this many slots, keeping the rest free for writes.
        let indexed = u64::from(count - (count / 16).max(1));
        let on_evict = slots.clone();
        let index = Cache::builder()
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .weigher(|_k: &BlockKey, _v: &Slot| 1)
            .max_capacity(indexed)
            .eviction_listener(move |_k: Arc<BlockKey>, s: Slot, _cause| on_evict.release(s))
            .build();
        Some(DiskTier {
            file: Arc::new(file),
            block,
            index,
            slots,
        })
    }

    /// The block `k`, if the tier holds it and it reads whole.
    pub(super) async fn get(&self, k: &BlockKey) -> Option<Bytes> {
        let s = self.index.get(k).await?;
        let (file, at) = (self.file.clone(), u64::from(s.index) * self.block);
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; s.len as usize];
            file.read_exact_at(&mut buf, at).map(|()| buf)
        })
        .await;
        let data = match read {
            Ok(Ok(data)) => data,
            _ => return None,
        };
        // Written over since it was found: not this block any more.
        let now = self.slots.generations[s.index as usize].load(Ordering::SeqCst);
        (now == s.generation).then(|| Bytes::from(data))
    }

    /// Keeps the block `k`; without a free slot even after the index evicted, or if the
    /// write fails, it is not kept.
    pub(super) async fn put(&self, k: BlockKey, data: Bytes) {
        if data.len() as u64 > self.block {
            return;
        }
        let index = match self.slots.take() {
            Some(i) => i,
            None => {
                self.index.run_pending_tasks().await;
                let Some(i) = self.slots.take() else { return };
                i
            }
        };
        let generation = self.slots.generations[index as usize].fetch_add(1, Ordering::SeqCst) + 1;
        let slot = Slot {
            index,
            len: data.len() as u32,
            generation,
        };
        let (file, at) = (self.file.clone(), u64::from(index) * self.block);
        let wrote = tokio::task::spawn_blocking(move || file.write_all_at(&data, at)).await;
        if matches!(wrote, Ok(Ok(()))) {
            self.slots
                .held
                .fetch_add(u64::from(slot.len), Ordering::Relaxed);
            self.index.insert(k, slot).await;
        } else if let Ok(mut free) = self.slots.free.lock() {
            free.push(index);
        }
    }

    /// Whether the tier holds the block `k` (it may still read as a miss).
    #[cfg(test)]
    pub(super) async fn contains(&self, k: &BlockKey) -> bool {
        self.index.get(k).await.is_some()
    }

    /// Forgets the block `k`.
    pub(super) async fn forget(&self, k: &BlockKey) {
        self.index.invalidate(k).await;
    }

    /// Bytes of the blocks held.
    pub(super) fn held_bytes(&self) -> u64 {
        self.slots.held.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> BlockKey {
        (Arc::from("o"), n)
    }

    #[tokio::test]
    async fn blocks_come_back_as_written_and_evicted_slots_are_written_over_in_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::new(&dir.path().join("c"), 1000, 16_000).unwrap();
        for n in 0..200u64 {
            let data = Bytes::from(vec![n as u8; 1 + (n as usize * 7) % 1000]);
            tier.put(key(n), data.clone()).await;
            assert_eq!(tier.get(&key(n)).await, Some(data), "block {n}");
        }
        tier.index.run_pending_tasks().await;
        // 16 slots, the index keeps at most 15 of them: the rest were evicted, and their
        // slots written over by later blocks.
        assert!(tier.index.entry_count() <= 15);
        assert!(!tier.contains(&key(0)).await);
        let files: Vec<_> = std::fs::read_dir(dir.path().join("c")).unwrap().collect();
        assert_eq!(files.len(), 1, "one file for every block");
        assert_eq!(
            std::fs::metadata(dir.path().join("c/blocks"))
                .unwrap()
                .len(),
            16_000
        );
        let held: u64 = (185..200u64).map(|n| 1 + (n * 7) % 1000).sum();
        assert_eq!(tier.held_bytes(), held, "the last 15 blocks");
        for n in 185..200u64 {
            let got = tier.get(&key(n)).await.unwrap();
            assert!(got.iter().all(|b| *b == n as u8), "block {n}");
        }
    }

    #[tokio::test]
    async fn a_slot_written_over_while_it_is_read_reads_as_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::new(&dir.path().join("c"), 100, 200).unwrap();
        tier.put(key(1), Bytes::from(vec![1u8; 100])).await;
        let s = tier.index.get(&key(1)).await.unwrap();
        // The slot is evicted and taken by another block while a reader holds its entry.
        tier.slots.generations[s.index as usize].fetch_add(1, Ordering::SeqCst);
        assert_eq!(tier.get(&key(1)).await, None);
        tier.forget(&key(1)).await;
        tier.index.run_pending_tasks().await;
        assert_eq!(tier.held_bytes(), 0);
        assert_eq!(tier.slots.free.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_tier_of_fewer_than_two_slots_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DiskTier::new(&dir.path().join("c"), 1000, 1999).is_none());
    }
}
