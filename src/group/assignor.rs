//! Server-side assignors of the consumer group protocol (KIP-848): `uniform` (balanced and
//! sticky) and `range` (contiguous ranges per topic).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// A topic partition by topic id.
pub type Tp = (Uuid, i32);

/// What an assignor sees of one member.
pub struct MemberSpec<'a> {
    /// Member id.
    pub id: &'a str,
    /// Topics it subscribes to (resolved to ids).
    pub topics: &'a BTreeSet<Uuid>,
    /// What it has now (for stickiness).
    pub current: &'a BTreeSet<Tp>,
}

/// Names of the assignors, default first.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// Computes a target assignment. `partitions` gives each topic's partition count.
pub fn assign(
    name: &str,
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, BTreeSet<Tp>> {
    match name {
        "range" => range(members, partitions),
        _ => uniform(members, partitions),
    }
}

/// Every member with no partitions yet.
fn nothing_for(members: &[MemberSpec<'_>]) -> BTreeMap<String, BTreeSet<Tp>> {
    members
        .iter()
        .map(|m| (m.id.to_string(), BTreeSet::new()))
        .collect()
}

fn range(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out = nothing_for(members);
    for (topic, count) in partitions {
        let mut subs: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .map(|m| m.id)
            .collect();
        subs.sort();
        if subs.is_empty() {
            continue;
        }
        let n = subs.len() as i32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in subs.iter().enumerate() {
            let take = per + if (i as i32) < extra { 1 } else { 0 };
            let set = out.entry(m.to_string()).or_default();
            for p in next..next + take {
                set.insert((*topic, p));
            }
            next += take;
        }
    }
    out
}

/// Balanced: every member ends within one partition of the others that share its topics;
/// a partition stays with its current owner whenever that keeps the balance.
fn uniform(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out = nothing_for(members);
    let all: Vec<Tp> = partitions
        .iter()
        .flat_map(|(t, n)| (0..*n).map(move |p| (*t, p)))
        .filter(|(t, _)| members.iter().any(|m| m.topics.contains(t)))
        .collect();
    if members.is_empty() || all.is_empty() {
        return out;
    }
    let quota = all.len().div_ceil(members.len());
    let mut unassigned = Vec::new();
    // Stickiness first: keep current owners up to the quota.
    for tp in &all {
        let owner = members
            .iter()
            .find(|m| m.current.contains(tp) && m.topics.contains(&tp.0));
        match owner {
            Some(m) if out[m.id].len() < quota => {
                out.get_mut(m.id).map(|s| s.insert(*tp));
            }
            _ => unassigned.push(*tp),
        }
    }
    // Then the least loaded member that subscribes to the topic.
    for tp in unassigned {
        let best = members
            .iter()
            .filter(|m| m.topics.contains(&tp.0))
            .min_by_key(|m| (out[m.id].len(), m.id));
        if let Some(m) = best {
            out.get_mut(m.id).map(|s| s.insert(tp));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_balanced_and_sticky() {
        let t = Uuid::new_v4();
        let topics: BTreeSet<Uuid> = [t].into();
        let parts: BTreeMap<Uuid, i32> = [(t, 6)].into();
        let empty = BTreeSet::new();
        let two = [
            MemberSpec {
                id: "a",
                topics: &topics,
                current: &empty,
            },
            MemberSpec {
                id: "b",
                topics: &topics,
                current: &empty,
            },
        ];
        let first = assign("uniform", &two, &parts);
        assert_eq!((first["a"].len(), first["b"].len()), (3, 3));
        let three = [
            MemberSpec {
                id: "a",
                topics: &topics,
                current: &first["a"],
            },
            MemberSpec {
                id: "b",
                topics: &topics,
                current: &first["b"],
            },
            MemberSpec {
                id: "c",
                topics: &topics,
                current: &empty,
            },
        ];
        let second = assign("uniform", &three, &parts);
        assert!(second.values().all(|s| s.len() == 2));
        assert!(second["a"].is_subset(&first["a"]), "a keeps what it can");
        let r = assign("range", &three, &parts);
        assert_eq!(r["a"], [(t, 0), (t, 1)].into());
    }
}
