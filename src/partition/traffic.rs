//! Bytes a partition takes in (produce) and sends out (fetch) on this broker: totals since
//! the broker started, sampled by the load report (cluster `load`) to give the
//! controller measured rates to balance.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic byte counters of one partition.
#[derive(Debug, Default)]
pub struct Traffic {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Traffic {
    /// Counts record bytes appended.
    pub fn produced(&self, bytes: u64) {
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts record bytes sent to a fetcher.
    pub fn fetched(&self, bytes: u64) {
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (bytes in, bytes out) so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }
}
