//! The broker's global allocator: mimalloc, which returns memory it no longer uses.
//!
//! glibc's malloc kept about a gigabyte of freed buffers (sealing, large fetches) resident
//! under load; mimalloc returns them. It is built without transparent huge pages
//! ("no_thp"): with them the kernel zeroed a whole 2 MiB page for each one mimalloc touched
//! after returning part of it, a third of the broker's CPU at full produce load.
//!
//! mimalloc 3 returns freed memory to the kernel a second after it is freed (its
//! `purge_delay`), and the broker keeps that default. A shorter delay lowers the peak RSS
//! but costs throughput: memory returned that soon is faulted in and zeroed again by the
//! next buffer that takes it. With 10 ms, 100-partition produce at full speed fell from
//! 191–200 to 170–178 MB/s for 50–90 MiB less peak RSS (see `docs/design.md`, "Memory").
//! `MIMALLOC_PURGE_DELAY` (milliseconds) in the environment sets it; mimalloc reads it when
//! the process loads.

/// The allocator every binary of the broker installs.
pub use mimalloc::MiMalloc as Allocator;
