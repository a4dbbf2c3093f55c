//! Where partitions and coordinator shards go: a pure function from what the controller
//! reads (live brokers, current assignments, existing partitions) to the assignments it
//! writes. Every unit that lands somewhere new gets the new epoch.

use std::collections::{BTreeMap, BTreeSet};

use stratus_meta::keys::PartitionId;
use stratus_meta::repo::Assignment;

/// A registered broker as placement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its incarnation.
    pub incarnation: u64,
    /// Whether it may take units (not draining, not leaving).
    pub eligible: bool,
}

/// What the controller read.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Registered brokers.
    pub members: BTreeMap<i32, Member>,
    /// Every assignment key, by node.
    pub current: BTreeMap<i32, Assignment>,
    /// Every existing partition.
    pub partitions: BTreeSet<PartitionId>,
    /// Number of coordinator shards.
    pub shards: u32,
    /// Epoch given to every unit placed by this round.
    pub epoch: i32,
    /// Also even out the load.
    pub rebalance: bool,
    /// Explicit moves: partition → node.
    pub moves: Vec<(PartitionId, i32)>,
    /// Measured bytes per second (in + out) per partition. When they add up to more than
    /// a trickle, a rebalance evens out these rather than partition counts
    /// ([`super::traffic`]).
    pub traffic: BTreeMap<PartitionId, u64>,
}

/// Unit of placement: a partition or a shard.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Unit {
    Partition(PartitionId),
    Shard(u32),
}

impl Unit {
    fn topic(&self) -> &str {
        match self {
            Unit::Partition(p) => &p.topic_id,
            Unit::Shard(_) => "",
        }
    }
    pub(super) fn is_shard(&self) -> bool {
        matches!(self, Unit::Shard(_))
    }
}

/// The assignments to write: one for every node that has a key or is registered. A
/// node that is not registered (or registered as another incarnation) owns nothing.
pub fn plan(input: &Input) -> BTreeMap<i32, Assignment> {
    let eligible: Vec<i32> = input
        .members
        .iter()
        .filter(|(_, m)| m.eligible)
        .map(|(n, _)| *n)
        .collect();
    // unit → (node, epoch) as things stand, only for valid holders.
    let mut held: BTreeMap<Unit, (i32, i32)> = BTreeMap::new();
    // Units a re-started broker held: they go back to it (new epoch).
    let mut sticky: BTreeMap<Unit, i32> = BTreeMap::new();
    let exists = |u: &Unit| match u {
        Unit::Partition(p) => input.partitions.contains(p),
        Unit::Shard(s) => *s < input.shards,
    };
    for (node, a) in &input.current {
        let units = a
            .partitions
            .iter()
            .map(|(p, e)| (Unit::Partition(p.clone()), *e))
            .chain(a.shards.iter().map(|(s, e)| (Unit::Shard(*s), *e)));
        let member = input.members.get(node);
        for (u, e) in units {
            if !exists(&u) {
                continue;
            }
            match member {
                Some(m)
                    if m.incarnation == a.incarnation && (m.eligible || eligible.is_empty()) =>
                {
                    held.insert(u, (*node, e));
                }
                Some(m) if m.incarnation == a.incarnation => {}
                Some(m) if m.eligible => {
                    sticky.insert(u, *node);
                }
                _ => {}
            }
        }
    }
    let mut placed: BTreeMap<Unit, (i32, i32)> = held.clone();
    let mut load = Load::new(&eligible);
    for (u, (n, _)) in &placed {
        load.add(*n, u);
    }
    let all_units = input
        .partitions
        .iter()
        .map(|p| Unit::Partition(p.clone()))
        .chain((0..input.shards).map(Unit::Shard));
    for u in all_units {
        if placed.contains_key(&u) {
            continue;
        }
        let target = match sticky.get(&u) {
            Some(n) => Some(*n),
            None => load.least(&u),
        };
        if let Some(n) = target {
            load.add(n, &u);
            placed.insert(u, (n, input.epoch));
        }
    }
    for (p, to) in &input.moves {
        let u = Unit::Partition(p.clone());
        if !eligible.contains(to) || !exists(&u) {
            continue;
        }
        if let Some((from, _)) = placed.get(&u).copied() {
            if from == *to {
                continue;
            }
            load.remove(from, &u);
        }
        load.add(*to, &u);
        placed.insert(u, (*to, input.epoch));
    }
    if input.rebalance {
        // Below twice the tolerance in all, no spread of traffic can start a byte pass:
        // counts (each topic spread) are the better balance then.
        let total: u64 = input.traffic.values().sum();
        let measured = total > 2 * super::traffic::MIN_TOLERANCE;
        if measured {
            super::traffic::rebalance(&mut placed, &eligible, &input.traffic, input.epoch);
        }
        rebalance(&mut placed, &mut load, input.epoch, !measured);
    }
    let mut out: BTreeMap<i32, Assignment> = BTreeMap::new();
    for (node, a) in &input.current {
        out.insert(
            *node,
            Assignment {
                incarnation: input
                    .members
                    .get(node)
                    .map(|m| m.incarnation)
                    .unwrap_or(a.incarnation),
                ..Default::default()
            },
        );
    }
    for (node, m) in &input.members {
        out.entry(*node).or_default().incarnation = m.incarnation;
    }
    for (u, (n, e)) in placed {
        let a = out.entry(n).or_default();
        match u {
            Unit::Partition(p) => {
                a.partitions.insert(p, e);
            }
            Unit::Shard(s) => {
                a.shards.insert(s, e);
            }
        }
    }
    out
}

/// Evens out the load with as few moves as it takes: first each topic (its partitions
/// within one of each other on every node, so that a topic's traffic is spread), then the
/// totals of partitions and of shards, moving only units whose topic is denser on the
/// source than on the target, which keeps every topic even. Without `partitions`, only
/// the shards (the partitions were balanced by their measured traffic).
fn rebalance(
    placed: &mut BTreeMap<Unit, (i32, i32)>,
    load: &mut Load,
    epoch: i32,
    partitions: bool,
) {
    let relocate = |placed: &mut BTreeMap<Unit, (i32, i32)>, load: &mut Load, u: Unit, from, to| {
        load.remove(from, &u);
        load.add(to, &u);
        placed.insert(u, (to, epoch));
    };
    let topics: BTreeSet<String> = placed
        .keys()
        .filter(|u| !u.is_shard())
        .map(|u| u.topic().to_string())
        .collect();
    for t in topics.iter().filter(|_| partitions) {
        while let Some((from, to)) = load.topic_imbalance(t) {
            let Some(u) = placed
                .iter()
                .filter(|(u, (n, _))| *n == from && !u.is_shard() && u.topic() == t)
                .map(|(u, _)| u.clone())
                .next_back()
            else {
                break;
            };
            relocate(placed, load, u, from, to);
        }
    }
    for shards in [false, true] {
        if !shards && !partitions {
            continue;
        }
        while let Some((from, to)) = load.imbalance(shards) {
            let denser = |u: &Unit| {
                load.topic_count(from, u.topic()) as i64 - load.topic_count(to, u.topic()) as i64
            };
            let Some(u) = placed
                .iter()
                .filter(|(u, (n, _))| *n == from && u.is_shard() == shards)
                .map(|(u, _)| u.clone())
                .max_by_key(|u| (denser(u), u.clone()))
            else {
                break;
            };
            relocate(placed, load, u, from, to);
        }
    }
}

/// Units per eligible node, overall and per topic.
struct Load {
    total: BTreeMap<i32, (usize, usize)>,
    per_topic: BTreeMap<(i32, String), usize>,
}

impl Load {
    fn new(eligible: &[i32]) -> Self {
        Load {
            total: eligible.iter().map(|n| (*n, (0, 0))).collect(),
            per_topic: BTreeMap::new(),
        }
    }
    fn slot(&mut self, n: i32, u: &Unit) -> Option<&mut usize> {
        let t = self.total.get_mut(&n)?;
        Some(if u.is_shard() { &mut t.1 } else { &mut t.0 })
    }
    fn add(&mut self, n: i32, u: &Unit) {
        if let Some(c) = self.slot(n, u) {
            *c += 1;
            *self
                .per_topic
                .entry((n, u.topic().to_string()))
                .or_default() += 1;
        }
    }
    fn remove(&mut self, n: i32, u: &Unit) {
        if let Some(c) = self.slot(n, u) {
            *c = c.saturating_sub(1);
            if let Some(t) = self.per_topic.get_mut(&(n, u.topic().to_string())) {
                *t = t.saturating_sub(1);
            }
        }
    }
    fn topic_count(&self, n: i32, topic: &str) -> usize {
        self.per_topic
            .get(&(n, topic.to_string()))
            .copied()
            .unwrap_or(0)
    }
    fn count(&self, n: i32, shards: bool) -> usize {
        self.total
            .get(&n)
            .map(|t| if shards { t.1 } else { t.0 })
            .unwrap_or(0)
    }
    /// The eligible node with the fewest units of this topic, then overall.
    fn least(&self, u: &Unit) -> Option<i32> {
        self.total
            .keys()
            .min_by_key(|n| {
                (
                    self.topic_count(**n, u.topic()),
                    self.count(**n, u.is_shard()),
                    **n,
                )
            })
            .copied()
    }
    /// (node with the most partitions of `topic`, node with the fewest) if they differ by
    /// more than one; ties go to the node with more (fewer) partitions overall.
    fn topic_imbalance(&self, topic: &str) -> Option<(i32, i32)> {
        let key = |n: i32| (self.topic_count(n, topic), self.count(n, false));
        let max = self.total.keys().max_by_key(|n| (key(**n), -**n))?;
        let min = self.total.keys().min_by_key(|n| (key(**n), **n))?;
        (self.topic_count(*max, topic) > self.topic_count(*min, topic) + 1).then_some((*max, *min))
    }
    /// (most loaded, least loaded) if they differ by more than one.
    fn imbalance(&self, shards: bool) -> Option<(i32, i32)> {
        let max = self
            .total
            .keys()
            .max_by_key(|n| (self.count(**n, shards), -**n))?;
        let min = self
            .total
            .keys()
            .min_by_key(|n| (self.count(**n, shards), **n))?;
        (self.count(*max, shards) > self.count(*min, shards) + 1).then_some((*max, *min))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(topic: &str, n: i32) -> BTreeSet<PartitionId> {
        (0..n).map(|i| PartitionId::new(topic, i)).collect()
    }

    fn members(nodes: &[(i32, u64)]) -> BTreeMap<i32, Member> {
        nodes
            .iter()
            .map(|(n, inc)| {
                (
                    *n,
                    Member {
                        incarnation: *inc,
                        eligible: true,
                    },
                )
            })
            .collect()
    }

    fn counts(out: &BTreeMap<i32, Assignment>) -> Vec<(i32, usize, usize)> {
        out.iter()
            .map(|(n, a)| (*n, a.partitions.len(), a.shards.len()))
            .collect()
    }

    #[test]
    fn spreads_each_topic_and_the_shards() {
        let mut partitions = parts("a", 6);
        partitions.extend(parts("b", 3));
        let input = Input {
            members: members(&[(1, 10), (2, 20), (3, 30)]),
            partitions,
            shards: 64,
            epoch: 5,
            ..Default::default()
        };
        let out = plan(&input);
        assert_balanced(&input, &out);
        for a in out.values() {
            assert!(a.partitions.values().all(|e| *e == 5));
        }
        assert_eq!(out[&2].incarnation, 20);
        // Planning again from the result moves nothing.
        let again = plan(&Input {
            current: out.clone(),
            epoch: 6,
            ..input
        });
        assert_eq!(again, out);
    }

    /// Every partition and shard is placed exactly once, on an eligible member; each
    /// member's count of partitions of every topic, of all partitions, and of shards is
    /// within one of every other's.
    fn assert_balanced(input: &Input, out: &BTreeMap<i32, Assignment>) {
        let placed: Vec<&PartitionId> = out.values().flat_map(|a| a.partitions.keys()).collect();
        assert_eq!(placed.len(), input.partitions.len(), "each partition once");
        assert_eq!(
            placed.into_iter().cloned().collect::<BTreeSet<_>>(),
            input.partitions
        );
        let shards: Vec<u32> = out
            .values()
            .flat_map(|a| a.shards.keys().copied())
            .collect();
        assert_eq!(shards.len(), input.shards as usize, "each shard once");
        assert_eq!(
            shards.into_iter().collect::<BTreeSet<_>>(),
            (0..input.shards).collect()
        );
        let eligible: Vec<i32> = input
            .members
            .iter()
            .filter(|(_, m)| m.eligible)
            .map(|(n, _)| *n)
            .collect();
        for (n, a) in out {
            if !eligible.contains(n) {
                assert!(
                    a.partitions.is_empty() && a.shards.is_empty(),
                    "{n} owns nothing"
                );
            }
        }
        let spread = |count: &dyn Fn(&Assignment) -> usize, what: &str| {
            let c: Vec<usize> = eligible
                .iter()
                .map(|n| out.get(n).map(count).unwrap_or(0))
                .collect();
            let (lo, hi) = (c.iter().min(), c.iter().max());
            assert!(
                hi.zip(lo).is_none_or(|(h, l)| h - l <= 1),
                "{what} spread over {eligible:?}: {c:?}"
            );
        };
        spread(&|a| a.partitions.len(), "partitions");
        spread(&|a| a.shards.len(), "shards");
        let topics: BTreeSet<&str> = input
            .partitions
            .iter()
            .map(|p| p.topic_id.as_ref())
            .collect();
        for t in topics {
            spread(
                &|a| {
                    a.partitions
                        .keys()
                        .filter(|p| p.topic_id.as_ref() == t)
                        .count()
                },
                t,
            );
        }
    }

    /// Topics `t0`, `t1`, … with the given partition counts, and nodes 1..=n.
    fn topics_and_nodes(topics: &[i32], nodes: usize) -> (BTreeSet<PartitionId>, Vec<(i32, u64)>) {
        let mut partitions = BTreeSet::new();
        for (i, n) in topics.iter().enumerate() {
            partitions.extend(parts(&format!("t{i}"), *n));
        }
        let m = (1..=nodes as i32).map(|n| (n, n as u64 * 10)).collect();
        (partitions, m)
    }

    proptest::proptest! {
        #[test]
        fn fresh_placement_is_balanced(
            nodes in 1usize..6,
            topics in proptest::collection::vec(1i32..13, 0..5),
            shards in 0u32..65,
        ) {
            let (partitions, m) = topics_and_nodes(&topics, nodes);
            let input = Input {
                members: members(&m),
                partitions,
                shards,
                epoch: 1,
                ..Default::default()
            };
            assert_balanced(&input, &plan(&input));
        }

        #[test]
        fn a_rebalance_after_a_join_is_balanced(
            nodes in 1usize..5,
            topics in proptest::collection::vec(1i32..13, 1..4),
            shards in 0u32..65,
        ) {
            let (partitions, m) = topics_and_nodes(&topics, nodes);
            let before = Input {
                members: members(&m),
                partitions: partitions.clone(),
                shards,
                epoch: 1,
                ..Default::default()
            };
            let first = plan(&before);
            let mut grown = m.clone();
            grown.push((nodes as i32 + 1, 99));
            let after = Input {
                members: members(&grown),
                current: first,
                partitions,
                shards,
                epoch: 2,
                rebalance: true,
                ..Default::default()
            };
            assert_balanced(&after, &plan(&after));
        }
    }

    #[test]
    fn a_dead_broker_loses_everything_and_a_restarted_one_gets_it_back() {
        let first = plan(&Input {
            members: members(&[(1, 10), (2, 20)]),
            partitions: parts("t", 4),
            shards: 2,
            epoch: 1,
            ..Default::default()
        });
        // Broker 2 is gone: its units move to 1 with the new epoch; 1 keeps its epochs.
        let dead = plan(&Input {
            members: members(&[(1, 10)]),
            current: first.clone(),
            partitions: parts("t", 4),
            shards: 2,
            epoch: 2,
            ..Default::default()
        });
        assert_eq!(counts(&dead), vec![(1, 4, 2), (2, 0, 0)]);
        let moved: Vec<i32> = dead[&1]
            .partitions
            .iter()
            .filter(|(p, _)| first[&2].partitions.contains_key(*p))
            .map(|(_, e)| *e)
            .collect();
        assert_eq!(moved, vec![2, 2]);
        // Broker 2 restarted fast (new incarnation, old assignment still there): its units
        // come back to it with a new epoch, and nothing else moves.
        let again = plan(&Input {
            members: members(&[(1, 10), (2, 21)]),
            current: first.clone(),
            partitions: parts("t", 4),
            shards: 2,
            epoch: 3,
            ..Default::default()
        });
        assert_eq!(again[&1], first[&1]);
        assert_eq!(again[&2].incarnation, 21);
        assert_eq!(
            again[&2].partitions.keys().collect::<Vec<_>>(),
            first[&2].partitions.keys().collect::<Vec<_>>()
        );
        assert!(again[&2].partitions.values().all(|e| *e == 3));
    }

    #[test]
    fn drain_rebalance_and_moves() {
        let mut m = members(&[(1, 10), (2, 20)]);
        let first = plan(&Input {
            members: m.clone(),
            partitions: parts("t", 4),
            shards: 0,
            epoch: 1,
            ..Default::default()
        });
        m.get_mut(&2).unwrap().eligible = false;
        let drained = plan(&Input {
            members: m.clone(),
            current: first.clone(),
            partitions: parts("t", 4),
            epoch: 2,
            ..Default::default()
        });
        assert_eq!(counts(&drained), vec![(1, 4, 0), (2, 0, 0)]);
        // Alone and leaving: it keeps what it has, there is nowhere to go.
        m.get_mut(&1).unwrap().eligible = false;
        let stuck = plan(&Input {
            members: m.clone(),
            current: drained.clone(),
            partitions: parts("t", 4),
            epoch: 3,
            ..Default::default()
        });
        assert_eq!(stuck, drained);
        // A third broker joins; a rebalance evens things out.
        let m = members(&[(1, 10), (2, 20), (3, 30)]);
        let even = plan(&Input {
            members: m.clone(),
            current: drained.clone(),
            partitions: parts("t", 4),
            epoch: 4,
            rebalance: true,
            ..Default::default()
        });
        let c: Vec<usize> = counts(&even).iter().map(|c| c.1).collect();
        assert_eq!(c.iter().sum::<usize>(), 4);
        assert!(c.iter().all(|n| (1..=2).contains(n)), "{c:?}");
        let moved = plan(&Input {
            members: m,
            current: even.clone(),
            partitions: parts("t", 4),
            epoch: 5,
            moves: vec![(PartitionId::new("t", 0), 3)],
            ..Default::default()
        });
        assert_eq!(
            moved[&3].partitions.get(&PartitionId::new("t", 0)),
            Some(&5)
        );
        // Deleted partitions disappear.
        let gone = plan(&Input {
            members: members(&[(1, 10), (2, 20), (3, 30)]),
            current: moved,
            partitions: parts("t", 2),
            epoch: 6,
            ..Default::default()
        });
        assert_eq!(gone.values().map(|a| a.partitions.len()).sum::<usize>(), 2);
    }
}
