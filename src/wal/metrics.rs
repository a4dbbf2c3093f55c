//! What the WAL measures: flushes, their size and latency (PUT, then metadata commit),
//! failures, and the bytes appended and not yet durable.

use std::sync::Arc;
use std::time::Duration;

use stratus_metrics::{
    Collect, Counter, Family, FamilySnapshot, Histogram, Kind, Value, LATENCY_SECONDS, SIZE_BYTES,
};

use super::Wal;

pub(super) struct WalMetrics {
    flushes: Family<Counter>,
    failures: Family<Counter>,
    cut: Family<Counter>,
    size: Family<Histogram>,
    time: Family<Histogram>,
    pub(super) flushed: Arc<Counter>,
    pub(super) failed: Arc<Counter>,
    /// Flushes taken early because their index entry was full.
    pub(super) index_full: Arc<Counter>,
    pub(super) bytes: Arc<Histogram>,
    put: Arc<Histogram>,
    commit: Arc<Histogram>,
    total: Arc<Histogram>,
}

fn histograms(
    name: &'static str,
    help: &'static str,
    labels: &[&'static str],
    b: &[f64],
) -> Family<Histogram> {
    let bounds: Arc<[f64]> = Arc::from(b);
    Family::new(name, help, labels, move || Histogram::new(bounds.clone()))
}

impl WalMetrics {
    pub(super) fn new() -> Self {
        let flushes = Family::new(
            "stratus_wal_flushes_total",
            "WAL objects written and committed.",
            &[],
            Counter::default,
        );
        let failures = Family::new(
            "stratus_wal_flush_failures_total",
            "WAL flushes that failed (their producers were told to retry).",
            &[],
            Counter::default,
        );
        let cut = Family::new(
            "stratus_wal_flushes_index_full_total",
            "WAL flushes taken early because one more partition or idempotent batch could have made their index entry larger than the metadata store takes (1 MiB, inside etcd's request limit); the appends waited for the next flush.",
            &[],
            Counter::default,
        );
        let size = histograms(
            "stratus_wal_flush_size_bytes",
            "Size of each WAL object.",
            &[],
            SIZE_BYTES,
        );
        let time = histograms(
            "stratus_wal_flush_time_seconds",
            "Time of each WAL flush by stage: put (object write), commit (metadata store), total (from leaving the buffer to committed).",
            &["stage"],
            LATENCY_SECONDS,
        );
        WalMetrics {
            flushed: flushes.get(&[]),
            failed: failures.get(&[]),
            index_full: cut.get(&[]),
            bytes: size.get(&[]),
            put: time.get(&["put"]),
            commit: time.get(&["commit"]),
            total: time.get(&["total"]),
            flushes,
            failures,
            cut,
            size,
            time,
        }
    }

    pub(super) fn timed(&self, put: Duration, commit: Duration, total: Duration) {
        self.put.observe_duration(put);
        self.commit.observe_duration(commit);
        self.total.observe_duration(total);
    }
}

impl Collect for Wal {
    fn collect(&self, out: &mut Vec<FamilySnapshot>) {
        let m = &self.metrics;
        m.flushes.collect(out);
        m.failures.collect(out);
        m.cut.collect(out);
        m.size.collect(out);
        m.time.collect(out);
        let held = self.max_memory - self.memory.available_permits();
        let mut f = FamilySnapshot::new(
            "stratus_wal_buffered_bytes",
            "Bytes appended to the WAL and not yet durable (buffered or being flushed).",
            Kind::Gauge,
            &[],
        );
        f.push(vec![], Value::Gauge(held as f64));
        out.push(f);
        let in_flight = self.lock_buffer().in_flight;
        let mut f = FamilySnapshot::new(
            "stratus_wal_flushes_in_flight",
            "WAL objects being written or committed now.",
            Kind::Gauge,
            &[],
        );
        f.push(vec![], Value::Gauge(in_flight as f64));
        out.push(f);
    }
}
