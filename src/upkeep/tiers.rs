//! Size-tiered merging, shared by WAL compaction ([`super::compact`]: index entries) and
//! segment merging ([`super::merge`]: a partition's sealed segments). Items sit in a
//! sequence (time, or offsets); a merge takes adjacent ones only, so that what it makes
//! keeps the sequence's order.

use std::ops::Range;

/// The size tier of `bytes`: 0 below `base`, and one more for each `factor` above it.
pub(crate) fn tier(bytes: u64, base: u64, factor: u64) -> u32 {
    let mut t = 0;
    let mut bound = base;
    while bytes >= bound && t < 16 {
        bound = bound.saturating_mul(factor);
        t += 1;
    }
    t
}

/// The items to merge, given their tiers in order (`None`: full or not to be touched,
/// never merged): for each tier `t` from the lowest, every maximal run of adjacent items
/// of tier at most `t`, not taken by a lower tier, holding `merge_at` of tier `t` (so a
/// large item is never written again for a few small neighbours, and each byte is written
/// again about once per tier). Every tier that has enough merges in the same run: with one
/// merge per run, the lowest tier (new every run) took it each time and the items above it
/// were never merged, so they piled up with time.
pub(crate) fn merge_runs(tiers: &[Option<u32>], merge_at: usize) -> Vec<Range<usize>> {
    let mut levels: Vec<u32> = tiers.iter().flatten().copied().collect();
    levels.sort_unstable();
    levels.dedup();
    let mut taken = vec![false; tiers.len()];
    let mut out = Vec::new();
    for t in levels {
        let fits = |i: usize, taken: &[bool]| !taken[i] && tiers[i].is_some_and(|x| x <= t);
        let mut start = 0;
        while start < tiers.len() {
            if !fits(start, &taken) {
                start += 1;
                continue;
            }
            let end = (start..tiers.len())
                .find(|i| !fits(*i, &taken))
                .unwrap_or(tiers.len());
            if tiers[start..end].iter().filter(|x| **x == Some(t)).count() >= merge_at {
                taken[start..end].fill(true);
                out.push(start..end);
            }
            start = end;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MERGE_AT: usize = 8;

    #[test]
    fn merges_take_items_adjacent_in_order_of_the_lowest_tier_that_has_enough() {
        const NONE: Vec<Range<usize>> = Vec::new();
        let t = |v: &[u32]| v.iter().map(|x| Some(*x)).collect::<Vec<_>>();
        let eight = t(&[0; MERGE_AT]);
        assert_eq!(merge_runs(&eight, MERGE_AT), vec![0..MERGE_AT]);
        assert_eq!(merge_runs(&eight[1..], MERGE_AT), NONE);
        // Eight small items, but not adjacent: a larger one (or a full one) lies between.
        for between in [Some(1), None] {
            let mut split = eight.clone();
            split.insert(3, between);
            assert_eq!(merge_runs(&split, MERGE_AT), NONE);
        }
        // A large item is not written again with a few small neighbours...
        let mut one_big = vec![Some(2)];
        one_big.extend(&eight[1..]);
        assert_eq!(merge_runs(&one_big, MERGE_AT), NONE);
        // ...but eight of a tier take the smaller ones between and around them.
        let mut mixed = t(&[3, 0]);
        for _ in 0..MERGE_AT {
            mixed.extend(t(&[1, 0]));
        }
        mixed.push(Some(2));
        assert_eq!(merge_runs(&mixed, MERGE_AT), vec![1..2 + 2 * MERGE_AT]);
        // Every tier that has enough, the lowest first; an item merges once per run.
        let mut both = t(&[1; MERGE_AT]);
        both.push(Some(2));
        both.extend(t(&[0; MERGE_AT]));
        assert_eq!(
            merge_runs(&both, MERGE_AT),
            vec![MERGE_AT + 1..2 * MERGE_AT + 1, 0..MERGE_AT]
        );
        // Full items never merge, however many.
        assert_eq!(merge_runs(&[None; 3 * MERGE_AT], MERGE_AT), NONE);
    }

    #[test]
    fn tiers_grow_by_the_factor() {
        let (base, factor) = (1 << 20, 8);
        assert_eq!(tier(0, base, factor), 0);
        assert_eq!(tier(base - 1, base, factor), 0);
        assert_eq!(tier(base, base, factor), 1);
        assert_eq!(tier(base * factor - 1, base, factor), 1);
        assert_eq!(tier(base * factor, base, factor), 2);
        assert_eq!(tier(u64::MAX, base, factor), 16);
    }
}
