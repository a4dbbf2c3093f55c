use super::*;
use crate::cluster::placement::{plan, Input, Member};
use stratus_meta::repo::Assignment;

const MB: u64 = 1 << 20;

fn p(i: i32) -> PartitionId {
    PartitionId::new("t", i)
}

fn members(nodes: &[i32]) -> BTreeMap<i32, Member> {
    nodes
        .iter()
        .map(|n| {
            (
                *n,
                Member {
                    incarnation: 1,
                    eligible: true,
                },
            )
        })
        .collect()
}

/// Assignments at epoch 1: node → its partitions.
fn current(layout: &[(i32, &[i32])]) -> BTreeMap<i32, Assignment> {
    layout
        .iter()
        .map(|(n, ps)| {
            (
                *n,
                Assignment {
                    incarnation: 1,
                    partitions: ps.iter().map(|i| (p(*i), 1)).collect(),
                    shards: Default::default(),
                },
            )
        })
        .collect()
}

fn input(layout: &[(i32, &[i32])], traffic: &[(i32, u64)]) -> Input {
    let nodes: Vec<i32> = layout.iter().map(|(n, _)| *n).collect();
    Input {
        members: members(&nodes),
        current: current(layout),
        partitions: layout
            .iter()
            .flat_map(|(_, ps)| ps.iter().map(|i| p(*i)))
            .collect(),
        epoch: 2,
        rebalance: true,
        traffic: traffic.iter().map(|(i, b)| (p(*i), *b)).collect(),
        ..Default::default()
    }
}

/// (bytes per second, partitions) per node.
fn loads(out: &BTreeMap<i32, Assignment>, input: &Input) -> BTreeMap<i32, (u64, usize)> {
    out.iter()
        .map(|(n, a)| {
            let bytes = a
                .partitions
                .keys()
                .map(|q| input.traffic.get(q).copied().unwrap_or(0))
                .sum();
            (*n, (bytes, a.partitions.len()))
        })
        .collect()
}

/// Busiest minus idlest node, in bytes per second.
fn spread_of(l: &BTreeMap<i32, (u64, usize)>) -> u64 {
    let bytes = || l.values().map(|(b, _)| *b);
    bytes().max().unwrap_or(0) - bytes().min().unwrap_or(0)
}

fn moved(before: &Input, out: &BTreeMap<i32, Assignment>) -> usize {
    out.values()
        .flat_map(|a| a.partitions.iter())
        .filter(|(_, e)| **e == before.epoch)
        .count()
}

/// Plans again from `out` with the same traffic.
fn replan(before: &Input, out: &BTreeMap<i32, Assignment>) -> BTreeMap<i32, Assignment> {
    let again = Input {
        current: out.clone(),
        epoch: before.epoch + 1,
        ..before.clone()
    };
    plan(&again)
}

#[test]
fn two_hot_partitions_on_one_broker_are_split_and_counts_stay_even() {
    // Counts are even (2 and 2) but broker 1 carries both busy partitions.
    let input = input(&[(1, &[0, 1]), (2, &[2, 3])], &[(0, 10 * MB), (1, 9 * MB)]);
    let out = plan(&input);
    let l = loads(&out, &input);
    assert_eq!(l[&1].1, 2, "{l:?}");
    assert_eq!(l[&2].1, 2, "{l:?}");
    assert!(l[&1].0 >= 9 * MB && l[&2].0 >= 9 * MB, "{l:?}");
    // One busy partition and one idle one traded places; nothing else moved.
    assert_eq!(moved(&input, &out), 2, "{out:?}");
    // Planning again moves nothing.
    let again = replan(&input, &out);
    assert_eq!(
        moved(
            &Input {
                epoch: 3,
                ..input.clone()
            },
            &again
        ),
        0,
        "{again:?}"
    );
}

#[test]
fn a_balanced_cluster_is_left_alone() {
    let input = input(
        &[(1, &[0, 1, 2]), (2, &[3, 4, 5])],
        &[(0, 5 * MB), (1, MB), (3, 3 * MB), (4, 3 * MB)],
    );
    let out = plan(&input);
    assert_eq!(moved(&input, &out), 0, "{out:?}");
}

#[test]
fn one_partition_hotter_than_the_rest_together_stays_put_and_the_rest_move_off() {
    // Partition 0 alone is 40 MB/s: nothing can even that out, but its broker should carry
    // nothing else that another broker can take.
    let input = input(
        &[(1, &[0, 1, 2]), (2, &[3]), (3, &[4])],
        &[(0, 40 * MB), (1, 4 * MB), (2, 4 * MB), (3, MB), (4, MB)],
    );
    let out = plan(&input);
    let l = loads(&out, &input);
    assert_eq!(l[&1], (40 * MB, 1), "{l:?}");
    assert!(out[&1].partitions.contains_key(&p(0)), "{out:?}");
    assert_eq!(
        moved(
            &Input {
                epoch: 3,
                ..input.clone()
            },
            &replan(&input, &out)
        ),
        0
    );
}

#[test]
fn idle_partitions_are_spread_by_count_without_undoing_the_byte_balance() {
    // Broker 1: one busy partition; broker 2: one busy and six idle ones.
    let input = input(
        &[(1, &[0]), (2, &[1, 2, 3, 4, 5, 6, 7])],
        &[(0, 8 * MB), (1, 8 * MB)],
    );
    let out = plan(&input);
    let l = loads(&out, &input);
    assert_eq!((l[&1].0, l[&2].0), (8 * MB, 8 * MB), "{l:?}");
    assert_eq!((l[&1].1, l[&2].1), (4, 4), "{l:?}");
    assert_eq!(moved(&input, &out), 3, "only idle partitions move: {out:?}");
}

#[test]
fn many_partitions_of_uneven_rates_end_within_the_tolerance_on_every_broker() {
    // 40 partitions of 1..=40 × 100 KiB/s, all on broker 1 of four.
    let all: Vec<i32> = (0..40).collect();
    let traffic: Vec<(i32, u64)> = all
        .iter()
        .map(|i| (*i, (*i as u64 + 1) * 100 * 1024))
        .collect();
    let input = input(&[(1, &all), (2, &[]), (3, &[]), (4, &[])], &traffic);
    let out = plan(&input);
    let l = loads(&out, &input);
    let total: u64 = l.values().map(|(b, _)| b).sum();
    let tolerance = (total / 4 / 10).max(MIN_TOLERANCE);
    let spread = spread_of(&l);
    assert!(spread <= tolerance, "spread {spread} > {tolerance}: {l:?}");
    let counts: Vec<usize> = l.values().map(|(_, c)| *c).collect();
    assert!(counts.iter().all(|c| *c >= 5), "{counts:?}");
    assert_eq!(
        moved(
            &Input {
                epoch: 3,
                ..input.clone()
            },
            &replan(&input, &out)
        ),
        0
    );
}

#[test]
fn without_measured_traffic_a_rebalance_evens_out_counts_as_before() {
    let input = input(&[(1, &[0, 1, 2, 3]), (2, &[])], &[]);
    let out = plan(&input);
    let l = loads(&out, &input);
    assert_eq!((l[&1].1, l[&2].1), (2, 2), "{l:?}");
    // A trickle (under twice the tolerance in all) is no measure either: the same plan.
    let trickle = Input {
        traffic: [(p(0), 1000), (p(3), 50_000)].into_iter().collect(),
        ..input.clone()
    };
    assert_eq!(plan(&trickle), out);
}

#[test]
fn a_spread_between_one_and_two_tolerances_moves_nothing() {
    // Mean 10 MB/s, tolerance 1 MB/s: a 1.5 MB/s spread is left alone, 2.5 MB/s is not.
    let calm = input(
        &[(1, &[0, 1]), (2, &[2, 3])],
        &[(0, 5 * MB), (1, 5 * MB + MB / 2), (2, 5 * MB), (3, 4 * MB)],
    );
    assert_eq!(moved(&calm, &plan(&calm)), 0);
    let hot = input(
        &[(1, &[0, 1, 4]), (2, &[2, 3])],
        &[
            (0, 5 * MB),
            (1, 5 * MB),
            (4, 2 * MB),
            (2, 5 * MB),
            (3, 4 * MB),
        ],
    );
    let out = plan(&hot);
    assert_eq!(moved(&hot, &out), 1, "{out:?}");
    assert!(out[&2].partitions.contains_key(&p(4)), "{out:?}");
}

proptest::proptest! {
    #[test]
    fn a_plan_never_widens_the_spread_and_is_a_fixed_point(
        nodes in 2i32..6,
        rates in proptest::collection::vec((0i32..6, 0u64..50), 1..40),
    ) {
        // Partition i starts on node (seed % nodes) + 1 at rate × 256 KiB/s (0: idle).
        let mut layout: Vec<(i32, Vec<i32>)> = (1..=nodes).map(|n| (n, Vec::new())).collect();
        let mut traffic = Vec::new();
        for (i, (seed, rate)) in rates.iter().enumerate() {
            layout[(*seed % nodes) as usize].1.push(i as i32);
            traffic.push((i as i32, rate * 256 * 1024));
        }
        let layout: Vec<(i32, &[i32])> = layout.iter().map(|(n, ps)| (*n, ps.as_slice())).collect();
        let input = input(&layout, &traffic);
        let out = plan(&input);
        let before = loads(&input.current, &input);
        let after = loads(&out, &input);
        let spread = spread_of;
        let total: u64 = after.values().map(|(b, _)| b).sum();
        let tolerance = (total / nodes as u64 / 10).max(MIN_TOLERANCE);
        proptest::prop_assert!(spread(&after) <= spread(&before).max(tolerance), "{before:?} -> {after:?}");
        let placed: usize = after.values().map(|(_, c)| c).sum();
        proptest::prop_assert_eq!(placed, rates.len());
        let again = replan(&input, &out);
        proptest::prop_assert_eq!(moved(&Input { epoch: 3, ..input.clone() }, &again), 0);
    }
}
