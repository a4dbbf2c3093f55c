//! The controller: one broker, elected through the metadata store (a key under its lease),
//! writes every broker's assignment. A round reads brokers, assignments and topics, plans
//! (see [`super::placement`]) and writes what changed in ONE transaction that compares the
//! controller key (a deposed controller cannot write) and every assignment it read.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::placement::{self, Input, Member};
use super::read_view;
use stratus_meta::keys::PartitionId;
use stratus_meta::repo::{self, ControllerRecord, PartitionRecord, TopicRecord};
use stratus_meta::{keys, Compare, LeaseId, MetaError, MetaStore, Op, MAX_TXN_OPS};

/// What a round changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    /// Partitions that got a new owner or epoch.
    pub partitions: usize,
    /// Shards that got a new owner or epoch.
    pub shards: usize,
}

/// One placement round: reads, plans, writes. `controller` is the record to compare (the
/// caller believes it is the controller), or `None` for an admin request applied by any
/// broker (then it compares the controller key as read, so it races no one).
pub async fn round(
    meta: &dyn MetaStore,
    me: Option<&ControllerRecord>,
    rebalance: bool,
    moves: Vec<(PartitionId, i32)>,
) -> Result<Option<Changed>, MetaError> {
    round_with(meta, me, rebalance, moves, None).await
}

/// What one broker carries before and after a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerLoad {
    /// The broker.
    pub node: i32,
    /// Partitions it owns now.
    pub partitions_before: usize,
    /// Partitions it would own.
    pub partitions_after: usize,
    /// Measured bytes per second (in + out) of the partitions it owns now.
    pub bytes_per_sec_before: u64,
    /// Measured bytes per second of the partitions it would own.
    pub bytes_per_sec_after: u64,
}

/// Every broker's load before and after a plan.
pub type Load = Vec<BrokerLoad>;

/// What a rebalance would change now, and each broker's partitions and measured traffic
/// before and after; writes nothing.
pub async fn propose(meta: &dyn MetaStore) -> Result<(Changed, Load), MetaError> {
    let mut load = Vec::new();
    let changed = round_with(meta, None, true, Vec::new(), Some(&mut load))
        .await?
        .unwrap_or_default();
    Ok((changed, load))
}

/// A round; with `dry_run`, fills it with the load and writes nothing.
async fn round_with(
    meta: &dyn MetaStore,
    me: Option<&ControllerRecord>,
    rebalance: bool,
    moves: Vec<(PartitionId, i32)>,
    dry_run: Option<&mut Load>,
) -> Result<Option<Changed>, MetaError> {
    let view = read_view(meta).await?;
    let controller = meta.get(keys::CONTROLLER).await?;
    if let Some(me) = me {
        let holds = controller
            .as_ref()
            .and_then(|v| repo::decode::<ControllerRecord>(keys::CONTROLLER, v).ok())
            .is_some_and(|c| &c == me);
        if !holds {
            return Ok(None);
        }
    }
    let mut partitions = BTreeSet::new();
    for (k, v) in meta.range(keys::TOPICS).await? {
        let t: TopicRecord = repo::decode(&k, &v)?;
        for i in 0..t.partitions {
            partitions.insert(PartitionId::new(&t.id, i));
        }
    }
    let epoch_rec = meta.get(keys::EPOCH).await?;
    let last_epoch = match &epoch_rec {
        Some(v) => std::str::from_utf8(&v.value)
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
            .unwrap_or(0),
        None => highest_recorded_epoch(meta).await?,
    };
    let members = view
        .brokers
        .iter()
        .map(|(n, r)| {
            (
                *n,
                Member {
                    incarnation: r.incarnation,
                    eligible: !r.leaving && !view.drained.contains(n),
                },
            )
        })
        .collect();
    let traffic = if rebalance {
        super::load::read(meta, &view).await?
    } else {
        Default::default()
    };
    let input = Input {
        members,
        current: view
            .assignments
            .iter()
            .map(|(n, (a, _))| (*n, a.clone()))
            .collect(),
        partitions,
        shards: keys::SHARDS,
        epoch: last_epoch + 1,
        rebalance,
        moves,
        traffic,
    };
    let planned = placement::plan(&input);
    let mut changed = Changed::default();
    let mut compares = vec![
        Compare::Value(
            keys::CONTROLLER.into(),
            controller.as_ref().map(|v| v.value.clone()),
        ),
        Compare::Revision(
            keys::EPOCH.into(),
            epoch_rec.as_ref().map(|v| v.mod_revision),
        ),
    ];
    let mut ops = Vec::new();
    let mut written = Vec::new();
    for (node, a) in &planned {
        let current = view.assignments.get(node);
        if current.is_some_and(|(c, _)| c == a) {
            continue;
        }
        changed.partitions += a
            .partitions
            .iter()
            .filter(|(p, e)| current.and_then(|(c, _)| c.partitions.get(*p)) != Some(e))
            .count();
        changed.shards += a
            .shards
            .iter()
            .filter(|(s, e)| current.and_then(|(c, _)| c.shards.get(*s)) != Some(e))
            .count();
        compares.push(Compare::Revision(
            keys::assignment_key(*node),
            current.map(|(_, r)| *r),
        ));
        written.push((*node, a));
    }
    ops.extend(encode_assignments(&written));
    if let Some(load) = dry_run {
        let mut nodes: BTreeSet<i32> = planned.keys().copied().collect();
        nodes.extend(view.assignments.keys());
        let bytes = |a: &repo::Assignment| -> u64 {
            a.partitions
                .keys()
                .map(|p| input.traffic.get(p).copied().unwrap_or(0))
                .sum()
        };
        for n in nodes {
            let before = view.assignments.get(&n).map(|(a, _)| a);
            let after = planned.get(&n);
            load.push(BrokerLoad {
                node: n,
                partitions_before: before.map_or(0, |a| a.partitions.len()),
                partitions_after: after.map_or(0, |a| a.partitions.len()),
                bytes_per_sec_before: before.map_or(0, bytes),
                bytes_per_sec_after: after.map_or(0, bytes),
            });
        }
        return Ok(Some(changed));
    }
    if ops.is_empty() {
        return Ok(Some(changed));
    }
    ops.push(Op::Put(
        keys::EPOCH.into(),
        (last_epoch + 1).to_string().into(),
        None,
    ));
    if compares.len() + ops.len() > MAX_TXN_OPS {
        return Err(MetaError::TooLarge(format!(
            "{} brokers changed in one round",
            ops.len() - 1
        )));
    }
    if meta.txn(compares, ops).await? {
        info!(
            epoch = last_epoch + 1,
            partitions = changed.partitions,
            shards = changed.shards,
            "assignments written"
        );
        Ok(Some(changed))
    } else {
        debug!("placement raced another write; next round");
        Ok(None)
    }
}

/// Most bytes of assignments a placement round writes in their first encoding: past it,
/// they are written compact. etcd refuses a request over 1.5 MiB (`--max-request-bytes`);
/// the first encoding takes about 46 bytes a partition, so a round over about 30,000
/// partitions was refused whole and nothing was placed. Below it the first encoding
/// stays, which every earlier build reads (a cluster that large never ran on one).
const ASSIGNMENTS_BUDGET: usize = 1 << 20;

/// The writes of `assignments`: all in the first encoding if they fit in
/// [`ASSIGNMENTS_BUDGET`] together, else all compact.
fn encode_assignments(assignments: &[(i32, &repo::Assignment)]) -> Vec<Op> {
    let plain: Vec<bytes::Bytes> = assignments.iter().map(|(_, a)| repo::encode(a)).collect();
    let compact = plain.iter().map(bytes::Bytes::len).sum::<usize>() > ASSIGNMENTS_BUDGET;
    assignments
        .iter()
        .zip(plain)
        .map(|((node, a), plain)| {
            let value = if compact { a.encode_compact() } else { plain };
            Op::Put(keys::assignment_key(*node), value, None)
        })
        .collect()
}

/// How long a broker that comes back (its lease lapsed, or it restarted, or it was
/// undrained) is eligible before a rebalance gives it a share of the work; a broker new
/// to the controller gets its share at once. A broker whose lease lapsed (a long pause,
/// a partition from the store) has just had its partitions moved away, and its clients
/// learn of that move only when it answers them again, which is when it registers again.
/// Moving partitions to it at once would show those clients two leader changes in the
/// same instant, the second undoing the first; librdkafka (2.16, issue #4976) can then
/// keep a partition on the broker it was moving to and never send it to the leader again.
/// Apache Kafka gives a restarted broker its leadership back minutes later, by preferred
/// leader election.
pub const JOIN_SETTLE: Duration = Duration::from_secs(5);

/// How long the controller sleeps when nothing changes: `period`, or less when an
/// automatic rebalance falls due sooner (but at least a second: a round that failed is
/// not retried in a tight loop), or when a joined broker's share falls due.
fn next_wake(
    period: Duration,
    auto_rebalance: Option<Duration>,
    last: tokio::time::Instant,
    share_due: Option<tokio::time::Instant>,
) -> Duration {
    let wake = match auto_rebalance {
        Some(every) => period
            .min(every.saturating_sub(last.elapsed()))
            .max(Duration::from_secs(1)),
        None => period,
    };
    match share_due {
        Some(due) => wake.min(due.saturating_duration_since(tokio::time::Instant::now())),
        None => wake,
    }
}

/// Leader epochs handed out before the epoch key existed (an upgrade from a single-node
/// store): the new epochs must be above all of them.
async fn highest_recorded_epoch(meta: &dyn MetaStore) -> Result<i32, MetaError> {
    let mut max = 0;
    for (k, v) in meta.range(keys::PARTITIONS).await? {
        if let Ok(r) = repo::decode_struct::<PartitionRecord>(&k, &v.value) {
            if let Some(e) = r.epochs.last() {
                max = max.max(e.0);
            }
        }
    }
    Ok(max)
}

/// Campaigns for the controller key while alive; while holding it, runs rounds on every
/// change of brokers or topics, on requests, and every `period`.
pub async fn run(
    meta: Arc<dyn MetaStore>,
    me: ControllerRecord,
    lease: impl Fn() -> Option<LeaseId> + Send + 'static,
    period: Duration,
    auto_rebalance: Option<Duration>,
    cancel: CancellationToken,
) {
    let mut leading = false;
    let mut eligible_before: Option<BTreeSet<i32>> = None;
    let mut last_rebalance = tokio::time::Instant::now();
    // When the brokers that came back get their share (a rebalance).
    let mut share_due: Option<tokio::time::Instant> = None;
    // Brokers eligible at some point while this broker leads.
    let mut seen: BTreeSet<i32> = BTreeSet::new();
    loop {
        let mut brokers = meta.watch(keys::BROKERS);
        let mut topics = meta.watch(keys::TOPICS);
        let mut control = meta.watch(keys::CONTROLLER);
        if !leading {
            if let Some(l) = lease() {
                let won = meta
                    .txn(
                        vec![Compare::Revision(keys::CONTROLLER.into(), None)],
                        vec![Op::Put(keys::CONTROLLER.into(), repo::encode(&me), Some(l))],
                    )
                    .await;
                if matches!(won, Ok(true)) {
                    info!(
                        node = me.node,
                        incarnation = me.incarnation,
                        "elected controller"
                    );
                    leading = true;
                    eligible_before = None;
                    share_due = None;
                    seen.clear();
                }
            }
        }
        if leading {
            let eligible = read_view(meta.as_ref()).await.ok().map(|v| {
                v.brokers
                    .iter()
                    .filter(|(n, r)| !r.leaving && !v.drained.contains(n))
                    .map(|(n, _)| *n)
                    .collect::<BTreeSet<i32>>()
            });
            // A broker that joined gets a share of the work: at once if it is new here,
            // once it has settled if it comes back (see JOIN_SETTLE).
            let joined: Vec<i32> = match (&eligible_before, &eligible) {
                (Some(before), Some(now)) => now
                    .iter()
                    .filter(|n| !before.contains(n))
                    .copied()
                    .collect(),
                _ => Vec::new(),
            };
            let returned = joined.iter().any(|n| seen.contains(n));
            let first_seen = joined.iter().any(|n| !seen.contains(n));
            if returned && share_due.is_none() {
                share_due = Some(tokio::time::Instant::now() + JOIN_SETTLE);
            }
            // A rebalance for a new broker would give a returning one its share too: while
            // one is settling, a new one waits with it.
            let settled = share_due.is_some_and(|d| d <= tokio::time::Instant::now());
            let share = settled || (share_due.is_none() && first_seen);
            // With auto.rebalance.enable, the controller also evens out the measured
            // traffic on its own (a plan within the tolerance moves nothing).
            let due = auto_rebalance.is_some_and(|every| last_rebalance.elapsed() >= every);
            match round(meta.as_ref(), Some(&me), share || due, Vec::new()).await {
                Ok(Some(changed)) => {
                    seen.extend(eligible.iter().flatten());
                    eligible_before = eligible;
                    if settled {
                        share_due = None;
                    }
                    if due {
                        last_rebalance = tokio::time::Instant::now();
                        if changed.partitions > 0 {
                            info!(
                                partitions = changed.partitions,
                                "auto rebalance moved partitions"
                            );
                        }
                    }
                }
                Ok(None) => {
                    if !holds(meta.as_ref(), &me).await {
                        info!(
                            node = me.node,
                            incarnation = me.incarnation,
                            "no longer controller"
                        );
                        leading = false;
                    }
                }
                Err(e) => warn!(error = %e, "placement round failed; retrying"),
            }
        }
        let closed = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(next_wake(period, auto_rebalance.filter(|_| leading), last_rebalance,
                share_due.filter(|_| leading))) => false,
            e = brokers.recv() => e.is_none(),
            e = topics.recv() => e.is_none(),
            e = control.recv() => e.is_none(),
        };
        if closed {
            // A watch ended (the store is away): back off before watching again.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Coalesce bursts (a restart re-registers and re-assigns at once).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Applies an admin request (rebalance, moves) from any broker, with a few retries against
/// concurrent writes: every write compares what it read, so a request and the controller
/// never undo each other silently.
pub async fn apply(
    meta: &dyn MetaStore,
    me: Option<&ControllerRecord>,
    rebalance: bool,
    moves: Vec<(PartitionId, i32)>,
) -> Result<Changed, ApplyError> {
    for _ in 0..10 {
        match round(meta, me, rebalance, moves.clone()).await? {
            Some(c) => return Ok(c),
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Err(ApplyError::Contended)
}

/// Why an admin request to the controller failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] MetaError),
    /// Other writes kept changing the placement under the request.
    #[error("the placement kept changing under the request; try again")]
    Contended,
}

async fn holds(meta: &dyn MetaStore, me: &ControllerRecord) -> bool {
    match repo::load::<ControllerRecord>(meta, keys::CONTROLLER).await {
        Ok(Some((c, _))) => &c == me,
        Ok(None) => false,
        // Unknown: keep trying as controller; every write compares anyway.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_meta::embedded::EmbeddedStore;
    use stratus_meta::repo::Registration;

    async fn register(meta: &dyn MetaStore, node: i32) {
        let r = Registration {
            node,
            incarnation: 100 + node as u64,
            listeners: vec![],
            rack: None,
            admin: None,
            leaving: false,
        };
        meta.put(&keys::registration_key(node), repo::encode(&r))
            .await
            .unwrap();
    }

    /// Topic "orders" (id "t") with `partitions` partitions.
    async fn put_orders(meta: &dyn MetaStore, partitions: i32) {
        let topic = TopicRecord {
            id: "t".into(),
            name: "orders".into(),
            partitions,
            replication_factor: 1,
            configs: Default::default(),
        };
        meta.put(&keys::topic_key("orders"), repo::encode(&topic))
            .await
            .unwrap();
    }

    async fn owners(meta: &dyn MetaStore) -> Vec<(PartitionId, (i32, i32))> {
        let v = read_view(meta).await.unwrap();
        assert_eq!(
            v.shard_owners.len(),
            keys::SHARDS as usize,
            "every shard owned"
        );
        let mut o: Vec<_> = v.owners.into_iter().collect();
        o.sort();
        o
    }

    #[tokio::test]
    async fn rounds_place_everything_on_live_brokers_and_move_what_a_dead_one_had() {
        let dir = tempfile::tempdir().unwrap();
        let meta = EmbeddedStore::open(&dir.path().join("m.redb")).unwrap();
        let me = ControllerRecord {
            node: 1,
            incarnation: 101,
        };
        meta.put(keys::CONTROLLER, repo::encode(&me)).await.unwrap();
        register(&meta, 1).await;
        register(&meta, 2).await;
        put_orders(&meta, 4).await;

        let changed = round(&meta, Some(&me), false, vec![])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(changed.partitions, 4);
        let before = owners(&meta).await;
        assert_eq!(before.len(), 4, "every partition owned: {before:?}");
        let on = |n: i32, o: &[(PartitionId, (i32, i32))]| o.iter().filter(|x| x.1 .0 == n).count();
        assert_eq!((on(1, &before), on(2, &before)), (2, 2), "spread evenly");
        assert_eq!(
            round(&meta, Some(&me), false, vec![]).await.unwrap(),
            Some(Changed::default()),
            "a second round with nothing new changes nothing"
        );

        // A controller that lost the election writes nothing.
        let deposed = ControllerRecord {
            node: 2,
            incarnation: 102,
        };
        meta.txn(vec![], vec![Op::Delete(keys::registration_key(2))])
            .await
            .unwrap();
        assert_eq!(
            round(&meta, Some(&deposed), false, vec![]).await.unwrap(),
            None
        );

        // Broker 2 is gone: its partitions move to 1 at a higher epoch.
        round(&meta, Some(&me), false, vec![])
            .await
            .unwrap()
            .unwrap();
        let after = owners(&meta).await;
        assert_eq!(on(1, &after), 4);
        for ((name, (was, old_epoch)), (_, (_, new_epoch))) in before.iter().zip(&after) {
            if *was == 2 {
                assert!(new_epoch > old_epoch, "{name} moved at a higher epoch");
            } else {
                assert_eq!(new_epoch, old_epoch, "{name} stayed at its epoch");
            }
        }

        // Broker 2 comes back and broker 1 is drained: 1 ends up with nothing.
        register(&meta, 2).await;
        meta.put(&keys::drain_key(1), "drain".into()).await.unwrap();
        round(&meta, Some(&me), false, vec![])
            .await
            .unwrap()
            .unwrap();
        let drained = owners(&meta).await;
        assert_eq!((on(1, &drained), on(2, &drained)), (0, 4));

        // Undrained, broker 1 would get half back: a proposal says so and writes nothing.
        meta.txn(vec![], vec![Op::Delete(keys::drain_key(1))])
            .await
            .unwrap();
        let (changed, load) = propose(&meta).await.unwrap();
        assert_eq!(changed.partitions, 2);
        let counts: Vec<_> = load
            .iter()
            .map(|l| (l.node, l.partitions_before, l.partitions_after))
            .collect();
        assert_eq!(counts, vec![(1, 0, 2), (2, 4, 2)]);
        assert_eq!(owners(&meta).await, drained, "a proposal writes nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_broker_gets_its_share_at_once_and_one_that_comes_back_once_it_has_settled() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetaStore> =
            Arc::new(EmbeddedStore::open(&dir.path().join("m.redb")).unwrap());
        register(meta.as_ref(), 1).await;
        put_orders(meta.as_ref(), 6).await;
        let lease = meta.grant_lease(Duration::from_secs(3600)).await.unwrap();
        let me = ControllerRecord {
            node: 1,
            incarnation: 101,
        };
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            meta.clone(),
            me,
            move || Some(lease),
            Duration::from_secs(5),
            None,
            cancel.clone(),
        ));
        let on = |n: i32, o: &[(PartitionId, (i32, i32))]| o.iter().filter(|x| x.1 .0 == n).count();
        // Waits until broker `n` owns `count` partitions; returns how long that took.
        let until = |n: i32, count: usize| {
            let meta = meta.clone();
            async move {
                let from = tokio::time::Instant::now();
                loop {
                    let view = read_view(meta.as_ref()).await.unwrap();
                    if view.shard_owners.len() == keys::SHARDS as usize
                        && on(n, &owners(meta.as_ref()).await) == count
                    {
                        return from.elapsed();
                    }
                    assert!(
                        from.elapsed() < JOIN_SETTLE * 3,
                        "broker {n} never owned {count} partitions"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        until(1, 6).await;

        // A broker new to the controller gets its share at once.
        register(meta.as_ref(), 2).await;
        let took = until(2, 3).await;
        assert!(
            took < Duration::from_secs(1),
            "a new broker waited {took:?}"
        );

        // Its lease lapses: everything goes to broker 1. It registers again: its share
        // comes once it has settled, not at once.
        meta.txn(vec![], vec![Op::Delete(keys::registration_key(2))])
            .await
            .unwrap();
        until(1, 6).await;
        register(meta.as_ref(), 2).await;
        let took = until(2, 3).await;
        assert!(
            took >= JOIN_SETTLE,
            "broker 2 got partitions {took:?} after it came back, before it settled"
        );
        let o = owners(meta.as_ref()).await;
        assert_eq!((on(1, &o), on(2, &o)), (3, 3), "an even share: {o:?}");
        cancel.cancel();
        task.await.unwrap();
    }

    /// A round's assignments stay in the first encoding (which every earlier build reads)
    /// while they fit in the budget together, and are all written compact past it: 60,000
    /// partitions on two brokers, about 2.8 MB the first way, which etcd would refuse.
    #[test]
    fn assignments_too_large_for_one_request_are_written_compact() {
        let topic = "6f1d2c3b-0a4e-4b5f-9c8d-7e6f5a4b3c2d";
        let assignment = |node: i32, n: i32| repo::Assignment {
            incarnation: node as u64,
            partitions: (0..n)
                .filter(|i| i % 2 == node - 1)
                .map(|i| (PartitionId::new(topic, i), 5 + i % 3))
                .collect(),
            shards: Default::default(),
        };
        let value = |op: &Op| match op {
            Op::Put(_, v, _) => v.clone(),
            other => panic!("{other:?}"),
        };
        for (n, compact) in [(1_000, false), (60_000, true)] {
            let (a1, a2) = (assignment(1, n), assignment(2, n));
            let ops = encode_assignments(&[(1, &a1), (2, &a2)]);
            let total: usize = ops.iter().map(|o| value(o).len()).sum();
            for (op, a) in ops.iter().zip([&a1, &a2]) {
                let v = value(op);
                let text = String::from_utf8_lossy(&v);
                assert_eq!(text.ends_with(r#""v":2}"#), compact, "{n} partitions");
                let back: repo::Assignment = repo::decode_bytes("a", &v).unwrap();
                assert_eq!(&back, a, "{n} partitions read back");
            }
            if compact {
                assert!(total < 400_000, "{total} bytes for {n} partitions");
            }
        }
    }
}
