//! Rebalancing by measured traffic: what a broker carries is the bytes its partitions take
//! in and send out, not how many it owns (one busy partition outweighs a hundred idle
//! ones). Brokers report per-partition rates ([`super::load`]); a rebalance that has them
//! evens out bytes per second across the eligible brokers, then partition counts where that
//! costs no byte balance.
//!
//! 1. **Bytes.** While two brokers differ by more than the tolerance (10 % of the mean
//!    broker load, at least [`MIN_TOLERANCE`]), the partition of the busier one that
//!    brings the pair closest to even moves to the other. Only a partition lighter than
//!    the gap can move (the pair ends closer than it was), so every move lowers the sum of
//!    squared loads and the pass ends; it picks few, large moves over many small ones.
//!    A partition busier than the rest of its broker together never moves: that would
//!    only take the hot spot elsewhere.
//! 2. **Counts.** While two brokers' partition counts differ by more than one, the
//!    lightest partition of the fuller one moves to the emptier one if that keeps the
//!    spread of loads (busiest minus idlest) within the tolerance, or no wider than it was.
//!
//! Pass 1 starts only when the spread exceeds twice the tolerance, and then evens out to
//! within the tolerance: rates that wander a little move nothing. The plan is a fixed
//! point: planning again from its result with the same rates moves nothing, so an operator
//! (or `auto.rebalance.enable`) that rebalances on a schedule does not shuffle partitions
//! back and forth.

use std::collections::{BTreeMap, BTreeSet};

use stratus_meta::keys::PartitionId;

use super::placement::Unit;

/// Smallest gap between two brokers worth a move, in bytes per second.
pub const MIN_TOLERANCE: u64 = 64 * 1024;

/// Most rounds of the two passes.
const ROUNDS: usize = 8;

/// Per broker: its load, and its partitions by weight.
struct Nodes {
    load: BTreeMap<i32, u64>,
    held: BTreeMap<i32, BTreeSet<(u64, PartitionId)>>,
}

impl Nodes {
    fn spread(&self) -> u64 {
        let max = self.load.values().max().copied().unwrap_or(0);
        let min = self.load.values().min().copied().unwrap_or(0);
        max - min
    }

    /// Spread of loads if `w` moved from `from` to `to`.
    fn spread_after(&self, from: i32, to: i32, w: u64) -> u64 {
        let load = |n: i32| {
            let l = self.load.get(&n).copied().unwrap_or(0);
            if n == from {
                l - w
            } else if n == to {
                l + w
            } else {
                l
            }
        };
        let loads = self.load.keys().map(|n| load(*n));
        let (min, max) = loads.fold((u64::MAX, 0), |(lo, hi), l| (lo.min(l), hi.max(l)));
        max.saturating_sub(min)
    }

    fn shift(&mut self, from: i32, to: i32, w: u64, p: PartitionId) {
        if let Some(set) = self.held.get_mut(&from) {
            set.remove(&(w, p.clone()));
        }
        self.held.entry(to).or_default().insert((w, p));
        if let Some(l) = self.load.get_mut(&from) {
            *l -= w;
        }
        if let Some(l) = self.load.get_mut(&to) {
            *l += w;
        }
    }

    fn count(&self, n: i32) -> usize {
        self.held.get(&n).map_or(0, BTreeSet::len)
    }

    /// The partition of `from` whose move brings `from` and `to` closest to even: of
    /// weight in (0, gap), so that the pair ends closer than it was, and at most half of
    /// `from`'s load (a partition busier than the rest of its broker together would only
    /// take the hot spot elsewhere). On a tie, the lighter.
    fn best_between(&self, from: i32, to: i32) -> Option<(u64, PartitionId)> {
        let l_from = *self.load.get(&from)?;
        let gap = l_from.saturating_sub(*self.load.get(&to)?);
        let set = self.held.get(&from)?;
        let key = |w: u64| (w, PartitionId::new("", i32::MIN));
        let limit = gap.min(l_from / 2 + 1);
        let half = gap.div_ceil(2);
        let above = (half < limit)
            .then(|| set.range(key(half)..key(limit)).next())
            .flatten();
        let top = half.min(limit);
        let below = (top > 1)
            .then(|| set.range(key(1)..key(top)).next_back())
            .flatten();
        let off = |w: u64| (2 * w).abs_diff(gap);
        match (above, below) {
            (Some(a), Some(b)) => Some(if off(a.0) < off(b.0) { a } else { b }),
            (a, b) => a.or(b),
        }
        .cloned()
    }
}

/// Moves partitions of `placed` (unit → (node, epoch)) between the `eligible` nodes to
/// even out `traffic` (bytes per second per partition; missing: idle); every partition it
/// moves gets `epoch`. Shards are left alone.
pub(super) fn rebalance(
    placed: &mut BTreeMap<Unit, (i32, i32)>,
    eligible: &[i32],
    traffic: &BTreeMap<PartitionId, u64>,
    epoch: i32,
) {
    if eligible.len() < 2 {
        return;
    }
    let mut nodes = Nodes {
        load: eligible.iter().map(|n| (*n, 0)).collect(),
        held: eligible.iter().map(|n| (*n, BTreeSet::new())).collect(),
    };
    for (u, (n, _)) in placed.iter() {
        let Unit::Partition(p) = u else { continue };
        let (Some(l), Some(set)) = (nodes.load.get_mut(n), nodes.held.get_mut(n)) else {
            continue;
        };
        let w = traffic.get(p).copied().unwrap_or(0);
        *l += w;
        set.insert((w, p.clone()));
    }
    let total: u64 = nodes.load.values().sum();
    let tolerance = (total / eligible.len() as u64 / 10).max(MIN_TOLERANCE);
    let bound = placed.len();
    // The two passes repeat until neither moves anything, so that planning again from
    // the result moves nothing (pass 2 may leave pass 1 something to do).
    for _ in 0..ROUNDS {
        let mut moved = 0;
        // 1. Bytes: the busiest pair first that has a partition that helps. It starts only
        // once the spread is twice the tolerance, so that rates that drift around the
        // tolerance do not move partitions back and forth.
        let start = nodes.spread() > 2 * tolerance;
        for _ in (0..bound).filter(|_| start) {
            let mut by_load: Vec<i32> = nodes.load.keys().copied().collect();
            by_load.sort_by_key(|n| (std::cmp::Reverse(nodes.load[n]), *n));
            let found = by_load.iter().find_map(|from| {
                by_load.iter().rev().find_map(|to| {
                    let gap = nodes.load[from].saturating_sub(nodes.load[to]);
                    if gap <= tolerance {
                        return None;
                    }
                    nodes.best_between(*from, *to).map(|m| (*from, *to, m))
                })
            });
            let Some((from, to, (w, p))) = found else {
                break;
            };
            nodes.shift(from, to, w, p);
            moved += 1;
        }
        // 2. Counts, without giving back what pass 1 gained.
        for _ in 0..bound {
            let key = |n: &i32| (nodes.count(*n), nodes.load[n]);
            let (Some(from), Some(to)) = (
                nodes.load.keys().copied().max_by_key(|n| (key(n), -n)),
                nodes.load.keys().copied().min_by_key(|n| (key(n), *n)),
            ) else {
                break;
            };
            if nodes.count(from) <= nodes.count(to) + 1 {
                break;
            }
            let limit = tolerance.max(nodes.spread());
            let lightest = nodes.held.get(&from).and_then(|set| {
                set.iter()
                    .find(|(w, _)| nodes.spread_after(from, to, *w) <= limit)
                    .cloned()
            });
            let Some((w, p)) = lightest else { break };
            nodes.shift(from, to, w, p);
            moved += 1;
        }
        if moved == 0 {
            break;
        }
    }
    // A partition that ends where it was keeps its epoch.
    for (n, set) in nodes.held {
        for (_, p) in set {
            let u = Unit::Partition(p);
            if placed.get(&u).is_some_and(|(was, _)| *was != n) {
                placed.insert(u, (n, epoch));
            }
        }
    }
}

#[cfg(test)]
mod tests;
