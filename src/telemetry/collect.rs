//! Metrics of the broker's state, read at scrape time: partitions and coordinator shards
//! owned (and being taken over), partitions with no live owner, consumer groups by state,
//! and consumer lag (end offset minus committed offset) of the groups this broker
//! coordinates.

use std::collections::BTreeMap;
use std::sync::Arc;

use stratus_metrics::{FamilySnapshot, Kind, Value};

use crate::broker::Broker;

/// Registers the state collectors of `broker` (holding it weakly: the registry lives in
/// the broker).
pub fn register(broker: &Arc<Broker>) {
    let weak = Arc::downgrade(broker);
    broker.telemetry.registry.collector(move |out| {
        if let Some(b) = weak.upgrade() {
            ownership(&b, out);
            groups(&b, out);
            certificates(&b, out);
            b.telemetry.topics.retain(|t| b.registry.topic(t).is_some());
        }
    });
    let r = &broker.telemetry.registry;
    r.register(broker.objects.clone());
    r.register(broker.cache.clone());
    r.register(broker.wal.clone());
    r.register(broker.supervisor.polls());
    r.register(broker.quotas.clone());
    r.register(broker.upkeep.metrics.clone());
}

fn gauge(name: &'static str, help: &'static str, v: f64) -> FamilySnapshot {
    let mut f = FamilySnapshot::new(name, help, Kind::Gauge, &[]);
    f.push(vec![], Value::Gauge(v));
    f
}

fn ownership(b: &Broker, out: &mut Vec<FamilySnapshot>) {
    let owned = b.fence.get();
    let moving = super::health::not_serving(b, &owned.assignment);
    out.push(gauge(
        "stratus_partitions_owned",
        "Partitions assigned to this broker (Kafka's LeaderCount).",
        owned.assignment.partitions.len() as f64,
    ));
    out.push(gauge(
        "stratus_partitions_moving",
        "Partitions assigned to this broker that it is still taking over (recovering their tail).",
        moving as f64,
    ));
    let unsealed: u64 = b
        .registry
        .topics()
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            let s = p.state();
            if s.owner_epoch().is_some() {
                s.unsealed_bytes()
            } else {
                0
            }
        })
        .sum();
    out.push(gauge(
        "stratus_unsealed_bytes",
        "Bytes of the owned partitions still in WAL objects, not yet sealed into segments.",
        unsealed as f64,
    ));
    out.push(gauge(
        "stratus_coordinator_shards_owned",
        "Group coordinator shards assigned to this broker.",
        owned.assignment.shards.len() as f64,
    ));
    let view = b.view.borrow().clone();
    let total: usize = b.registry.topics().iter().map(|t| t.partitions.len()).sum();
    let unowned = total.saturating_sub(view.owners.len());
    out.push(gauge(
        "stratus_partitions_unowned",
        "Partitions of the cluster with no live owner, as this broker sees it (Kafka's OfflinePartitionsCount): clients cannot write or read them.",
        unowned as f64,
    ));
    out.push(gauge(
        "stratus_cluster_brokers",
        "Live brokers, as this broker sees the cluster.",
        view.brokers.len() as f64,
    ));
    out.push(gauge(
        "stratus_is_controller",
        "1 on the broker that is the cluster's controller.",
        if view.controller == Some(b.settings.server.node_id) {
            1.0
        } else {
            0.0
        },
    ));
}

fn certificates(b: &Broker, out: &mut Vec<FamilySnapshot>) {
    let mut f = FamilySnapshot::new(
        "stratus_tls_certificate_expiry_timestamp_seconds",
        "When the certificate a TLS listener presents expires, in seconds since the Unix epoch.",
        Kind::Gauge,
        &["listener"],
    );
    for l in &b.security.listeners {
        if let Some(at) = l.tls.as_ref().and_then(|t| t.not_after()) {
            f.push(vec![l.name.as_str().into()], Value::Gauge(at as f64));
        }
    }
    if !f.series.is_empty() {
        out.push(f);
    }
}

fn groups(b: &Broker, out: &mut Vec<FamilySnapshot>) {
    let mut states: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
    for (_, _, state, protocol) in b.groups.list() {
        *states.entry((state, protocol)).or_default() += 1;
    }
    let mut f = FamilySnapshot::new(
        "stratus_consumer_groups",
        "Groups this broker coordinates, by state and protocol (classic or consumer).",
        Kind::Gauge,
        &["state", "protocol"],
    );
    for ((state, protocol), n) in states {
        f.push(vec![state.into(), protocol.into()], Value::Gauge(n as f64));
    }
    out.push(f);
    let mut lag = FamilySnapshot::new(
        "stratus_consumergroup_lag",
        "Records a group has yet to consume: the sum over a topic's partitions of end offset minus committed offset, for the groups this broker coordinates.",
        Kind::Gauge,
        &["group", "topic"],
    );
    let mut per_partition = FamilySnapshot::new(
        "stratus_consumergroup_partition_lag",
        "End offset minus committed offset of one partition (metrics.partition.series=true).",
        Kind::Gauge,
        &["group", "topic", "partition"],
    );
    let mut sums: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (group, topic, partition, committed) in b.groups.committed_offsets() {
        let Some(end) = end_offset(b, &topic, partition) else {
            continue;
        };
        let l = (end - committed).max(0);
        if b.telemetry.partition_series {
            per_partition.push(
                vec![
                    group.as_str().into(),
                    topic.as_str().into(),
                    partition.to_string().into(),
                ],
                Value::Gauge(l as f64),
            );
        }
        *sums.entry((group, topic)).or_default() += l;
    }
    for ((group, topic), l) in sums {
        lag.push(vec![group.into(), topic.into()], Value::Gauge(l as f64));
    }
    out.push(lag);
    if b.telemetry.partition_series {
        out.push(per_partition);
    }
}

/// The end offset (high watermark) of a partition this broker can see: one it owns, or
/// one its rack replica index follows.
fn end_offset(b: &Broker, topic: &str, partition: i32) -> Option<i64> {
    let t = b.registry.topic(topic)?;
    let p = t.partitions.get(usize::try_from(partition).ok()?)?;
    {
        let state = p.state();
        if state.owner_epoch().is_some() {
            return Some(state.high_watermark());
        }
    }
    b.replicas.partition(p).map(|r| r.state().high_watermark())
}
