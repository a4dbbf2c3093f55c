//! What upkeep measures: seals (segments, bytes, time, failures), retention (segments and
//! bytes deleted), WAL collection (objects deleted) and WAL compaction.

use std::sync::Arc;

use stratus_metrics::{
    Collect, Counter, Family, FamilySnapshot, Gauge, Histogram, LATENCY_SECONDS,
};

/// The upkeep instruments.
pub struct UpkeepMetrics {
    families: Vec<Family<Counter>>,
    gauges: Vec<Family<Gauge>>,
    seal_time: Family<Histogram>,
    /// Segments sealed.
    pub sealed: Arc<Counter>,
    /// Bytes of segments sealed.
    pub sealed_bytes: Arc<Counter>,
    /// Seals that failed (retried at the next check).
    pub seal_failures: Arc<Counter>,
    /// Time of each seal (read the WAL ranges, PUT the segment, commit its record).
    pub seal_seconds: Arc<Histogram>,
    /// Segments deleted by retention or DeleteRecords.
    pub retention_segments: Arc<Counter>,
    /// Bytes of those segments.
    pub retention_bytes: Arc<Counter>,
    /// WAL objects deleted once every range in them was sealed.
    pub wal_collected: Arc<Counter>,
    /// Compacted WAL objects written.
    pub wal_compactions: Arc<Counter>,
    /// Live bytes WAL compaction wrote again.
    pub wal_compacted_bytes: Arc<Counter>,
    /// Merged segments written.
    pub segment_merges: Arc<Counter>,
    /// Bytes of batches merges wrote again.
    pub segment_merged_bytes: Arc<Counter>,
    /// Merges that failed (retried at the next run).
    pub segment_merge_failures: Arc<Counter>,
    /// Most segments a partition of this broker retains (at the last merge run).
    pub segments_most: Arc<Gauge>,
    /// This broker's entries in the metadata store's WAL index (at the last collection).
    pub wal_index_entries: Arc<Gauge>,
    /// Their bytes, keys included.
    pub wal_index_bytes: Arc<Gauge>,
}

impl Default for UpkeepMetrics {
    fn default() -> Self {
        let counter = |name, help| Family::new(name, help, &[], Counter::default);
        let families = vec![
            counter(
                "stratus_segments_sealed_total",
                "Segments sealed from WAL ranges.",
            ),
            counter("stratus_seal_bytes_total", "Bytes of the segments sealed."),
            counter(
                "stratus_seal_failures_total",
                "Seals that failed (retried at the next check).",
            ),
            counter(
                "stratus_retention_segments_deleted_total",
                "Segments deleted by retention or DeleteRecords.",
            ),
            counter(
                "stratus_retention_bytes_deleted_total",
                "Bytes of the segments deleted by retention or DeleteRecords.",
            ),
            counter(
                "stratus_wal_objects_collected_total",
                "WAL objects deleted once every range in them was sealed.",
            ),
            counter(
                "stratus_wal_compactions_total",
                "Compacted WAL objects written (each replaces several WAL index entries).",
            ),
            counter(
                "stratus_wal_compacted_bytes_total",
                "Live bytes WAL compaction wrote again.",
            ),
            counter(
                "stratus_segment_merges_total",
                "Merged segments written (each replaces several adjacent segments of a partition).",
            ),
            counter(
                "stratus_segment_merged_bytes_total",
                "Bytes of batches segment merges wrote again.",
            ),
            counter(
                "stratus_segment_merge_failures_total",
                "Segment merges that failed (retried at the next run).",
            ),
        ];
        let gauge = |name, help| Family::new(name, help, &[], Gauge::default);
        let gauges = vec![
            gauge(
                "stratus_wal_index_entries",
                "This broker's entries in the metadata store's WAL index (at the last WAL collection).",
            ),
            gauge(
                "stratus_wal_index_bytes",
                "Bytes of this broker's WAL index entries, keys included.",
            ),
            gauge(
                "stratus_partition_segments_max",
                "Most segments a partition of this broker retains (at the last segment merge run).",
            ),
        ];
        let bounds: Arc<[f64]> = Arc::from(LATENCY_SECONDS);
        let seal_time = Family::new(
            "stratus_seal_time_seconds",
            "Time of each seal: reading its WAL ranges, writing the segment, committing its record.",
            &[],
            move || Histogram::new(bounds.clone()),
        );
        UpkeepMetrics {
            sealed: families[0].get(&[]),
            sealed_bytes: families[1].get(&[]),
            seal_failures: families[2].get(&[]),
            retention_segments: families[3].get(&[]),
            retention_bytes: families[4].get(&[]),
            wal_collected: families[5].get(&[]),
            wal_compactions: families[6].get(&[]),
            wal_compacted_bytes: families[7].get(&[]),
            segment_merges: families[8].get(&[]),
            segment_merged_bytes: families[9].get(&[]),
            segment_merge_failures: families[10].get(&[]),
            segments_most: gauges[2].get(&[]),
            wal_index_entries: gauges[0].get(&[]),
            wal_index_bytes: gauges[1].get(&[]),
            seal_seconds: seal_time.get(&[]),
            families,
            gauges,
            seal_time,
        }
    }
}

impl Collect for UpkeepMetrics {
    fn collect(&self, out: &mut Vec<FamilySnapshot>) {
        for f in &self.families {
            f.collect(out);
        }
        for g in &self.gauges {
            g.collect(out);
        }
        self.seal_time.collect(out);
    }
}
