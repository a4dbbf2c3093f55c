//! Which of a partition's sealed segments a merge takes: pure, from the segment list.

use std::ops::Range;

use super::super::tiers::{merge_runs, tier};
use stratus_meta::repo::SegmentRef;

/// Segments of one size tier merged together.
pub(crate) const MERGE_AT: usize = 8;
/// Data bytes of the smallest tier; each tier is [`TIER_FACTOR`] times the one below.
const TIER_BASE: u64 = 1 << 20;
const TIER_FACTOR: u64 = 8;
/// A merged segment spans at most this fraction of the partition's retention (bytes or
/// time), so that retention still deletes in steps of about an eighth of what it keeps.
const RETENTION_STEPS: i64 = 8;

/// What bounds the merges of one partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Merges start once the partition retains more than this many segments.
    pub min_segments: usize,
    /// Segments whose newest record is younger than this are left alone.
    pub min_age_ms: i64,
    /// The largest merged segment (bytes of batches).
    pub max_bytes: u64,
    /// The topic's `retention.ms` (-1: none).
    pub retention_ms: i64,
    /// The topic's `retention.bytes` (-1: none).
    pub retention_bytes: i64,
}

/// The runs of `segments` (in offset order) to merge at `now`, oldest first, each of two
/// or more adjacent segments: none while the partition retains `min_segments` or fewer.
/// Segments are tiered by size ([`merge_runs`]: each byte is written again about once per
/// tier); a segment of half the largest merge or more is full and never merged again, nor
/// is one younger than `min_age_ms` (retention near the head keeps its granularity, and
/// what is read most is left where it is). A run is cut where its data would pass the
/// largest merge, or its records would span more than an eighth of the retention.
pub(crate) fn plan(segments: &[SegmentRef], now: i64, l: &Limits) -> Vec<Range<usize>> {
    if segments.len() <= l.min_segments {
        return Vec::new();
    }
    let mut cap = l.max_bytes.max(1);
    if l.retention_bytes > 0 {
        cap = cap.min((l.retention_bytes / RETENTION_STEPS).max(1) as u64);
    }
    let span = match l.retention_ms {
        ms if ms >= 0 => ms / RETENTION_STEPS,
        _ => i64::MAX,
    };
    let old_before = now.saturating_sub(l.min_age_ms);
    let tiers: Vec<Option<u32>> = segments
        .iter()
        .map(|g| {
            (g.max_timestamp < old_before && g.data_len < cap / 2)
                .then(|| tier(g.data_len, TIER_BASE, TIER_FACTOR))
        })
        .collect();
    let mut out = Vec::new();
    for run in merge_runs(&tiers, MERGE_AT) {
        let mut start = run.start;
        let mut bytes = 0u64;
        for i in run.clone() {
            let g = &segments[i];
            let too_big = bytes + g.data_len > cap;
            let too_long = g
                .max_timestamp
                .saturating_sub(segments[start].max_timestamp)
                > span;
            if i > start && (too_big || too_long) {
                if i - start >= 2 {
                    out.push(start..i);
                }
                start = i;
                bytes = 0;
            }
            bytes += g.data_len;
        }
        if run.end - start >= 2 {
            out.push(start..run.end);
        }
    }
    out.sort_by_key(|r| r.start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Segments of `sizes` bytes, one a minute from t=0, 100 offsets each.
    fn segments(sizes: &[u64]) -> Vec<SegmentRef> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, size)| SegmentRef {
                key: format!("s{i}"),
                base_offset: i as i64 * 100,
                end_offset: (i as i64 + 1) * 100,
                data_len: *size,
                size: size + 100,
                max_timestamp: i as i64 * 60_000,
            })
            .collect()
    }

    fn limits() -> Limits {
        Limits {
            min_segments: 0,
            min_age_ms: 0,
            max_bytes: 1 << 30,
            retention_ms: -1,
            retention_bytes: -1,
        }
    }

    const LATER: i64 = 1 << 40;

    #[test]
    fn nothing_merges_until_the_partition_holds_more_than_the_threshold() {
        let segs = segments(&[32 * MIB; 20]);
        let l = Limits {
            min_segments: 20,
            ..limits()
        };
        assert!(plan(&segs, LATER, &l).is_empty());
        let l = Limits {
            min_segments: 19,
            ..limits()
        };
        // Twenty of one tier: one run, cut where it would pass 1 GiB... which 20 × 32 MiB
        // does not reach.
        assert_eq!(plan(&segs, LATER, &l), vec![0..20]);
    }

    #[test]
    fn runs_are_cut_at_the_largest_merge_and_full_segments_stay() {
        let segs = segments(&[32 * MIB; 40]);
        let l = Limits {
            max_bytes: 256 * MIB,
            ..limits()
        };
        assert_eq!(
            plan(&segs, LATER, &l),
            vec![0..8, 8..16, 16..24, 24..32, 32..40]
        );
        // Segments of half the largest merge or more are full: never merged again.
        let segs = segments(&[128 * MIB; 20]);
        assert!(plan(&segs, LATER, &l).is_empty());
        // A run's last piece of one segment is left for later.
        let segs = segments(&[32 * MIB; 17]);
        assert_eq!(plan(&segs, LATER, &l), vec![0..8, 8..16]);
    }

    #[test]
    fn young_segments_are_left_alone() {
        let segs = segments(&[MIB / 2; 12]);
        // At 11 minutes with a 5-minute minimum age: segments of minutes 0-5 are old.
        let l = Limits {
            min_age_ms: 5 * 60_000,
            ..limits()
        };
        assert!(plan(&segs, 11 * 60_000, &l).is_empty(), "six old segments");
        assert_eq!(plan(&segs, 13 * 60_000, &l), vec![0..8]);
    }

    #[test]
    fn a_merge_spans_at_most_an_eighth_of_the_retention() {
        // Small segments a minute apart, retention.ms of 80 minutes: ten minutes a merge.
        let segs = segments(&[1000; 40]);
        let l = Limits {
            retention_ms: 80 * 60_000,
            ..limits()
        };
        let groups = plan(&segs, LATER, &l);
        assert_eq!(groups, vec![0..11, 11..22, 22..33, 33..40]);
        // retention.bytes of 8 MiB: merges of at most 1 MiB.
        let segs = segments(&[300 * 1024; 16]);
        let l = Limits {
            retention_bytes: 8 * MIB as i64,
            ..limits()
        };
        assert_eq!(
            plan(&segs, LATER, &l),
            vec![0..3, 3..6, 6..9, 9..12, 12..15]
        );
    }

    #[test]
    fn tiers_merge_separately_and_the_oldest_run_comes_first() {
        let mut sizes = vec![40 * MIB; 8];
        sizes.push(512 * MIB);
        sizes.extend([MIB / 4; 8]);
        let segs = segments(&sizes);
        assert_eq!(plan(&segs, LATER, &limits()), vec![0..8, 9..17]);
    }
}
