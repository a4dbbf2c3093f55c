//! Load reports: every `load.report.interval.ms` a broker writes, under its lease, the
//! bytes per second each partition it owns took in and sent out (`loads/<node>`, one key
//! per broker, rewritten in place: the store's footprint stays flat). The controller reads
//! them when it rebalances ([`super::traffic`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::View;
use crate::registry::Registry;
use stratus_meta::keys::{self, PartitionId};
use stratus_meta::repo::{self, LoadReport};
use stratus_meta::{LeaseId, MetaError, MetaStore, Op};

/// Most partitions one report names (the busiest): bounds the key's size.
pub const MAX_REPORTED: usize = 10_000;

/// Turns byte totals into smoothed rates: each report averages the last interval's rate
/// with the previous report's, so one burst does not move partitions.
#[derive(Default)]
pub struct Sampler {
    last: HashMap<PartitionId, (u64, u64)>,
    rates: HashMap<PartitionId, (f64, f64)>,
    at: Option<Instant>,
}

impl Sampler {
    /// The rates of the partitions in `totals` (bytes in and out since the broker started)
    /// since the previous sample; `None` the first time (nothing to compare with). A
    /// partition seen for the first time has no rate yet.
    pub fn sample(
        &mut self,
        totals: impl IntoIterator<Item = (PartitionId, (u64, u64))>,
        now: Instant,
    ) -> Option<BTreeMap<PartitionId, (u64, u64)>> {
        let elapsed = self.at.map(|at| now.saturating_duration_since(at));
        self.at = Some(now);
        let mut last = HashMap::new();
        let mut rates = HashMap::new();
        for (p, (bytes_in, bytes_out)) in totals {
            if let (Some(elapsed), Some((was_in, was_out))) = (elapsed, self.last.get(&p)) {
                let secs = elapsed.as_secs_f64().max(1e-3);
                let now_in = bytes_in.saturating_sub(*was_in) as f64 / secs;
                let now_out = bytes_out.saturating_sub(*was_out) as f64 / secs;
                let rate = match self.rates.get(&p) {
                    Some((r_in, r_out)) => ((r_in + now_in) / 2.0, (r_out + now_out) / 2.0),
                    None => (now_in, now_out),
                };
                rates.insert(p.clone(), rate);
            }
            last.insert(p, (bytes_in, bytes_out));
        }
        self.last = last;
        self.rates = rates;
        elapsed?;
        let mut busiest: Vec<(PartitionId, (u64, u64))> = self
            .rates
            .iter()
            .map(|(p, (i, o))| (p.clone(), (i.round() as u64, o.round() as u64)))
            .filter(|(_, (i, o))| i + o > 0)
            .collect();
        busiest.sort_by_key(|(p, (i, o))| (std::cmp::Reverse(i + o), p.clone()));
        busiest.truncate(MAX_REPORTED);
        Some(busiest.into_iter().collect())
    }
}

/// Writes this broker's load report every `interval`, under the lease `lease()` gives,
/// until `cancel`. A failed write is retried at the next interval.
pub async fn run(
    meta: Arc<dyn MetaStore>,
    registry: Arc<Registry>,
    node: i32,
    incarnation: u64,
    lease: impl Fn() -> Option<LeaseId>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut sampler = Sampler::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let owned = registry.topics().into_iter().flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.state().owner_epoch().is_some())
                .map(|p| (p.id(), p.traffic.totals()))
                .collect::<Vec<_>>()
        });
        let Some(partitions) = sampler.sample(owned, Instant::now()) else {
            continue;
        };
        let Some(lease) = lease() else { continue };
        let report = LoadReport {
            incarnation,
            partitions,
        };
        let op = Op::Put(keys::load_key(node), repo::encode(&report), Some(lease));
        if let Err(e) = meta.txn(vec![], vec![op]).await {
            debug!(error = %e, "load report not written; next interval");
        }
    }
}

/// Bytes per second (in + out) per partition, from the reports of the live brokers in
/// `view`. A partition named by several reports (it moved since) takes its owner's figure.
pub async fn read(
    meta: &dyn MetaStore,
    view: &View,
) -> Result<BTreeMap<PartitionId, u64>, MetaError> {
    let mut owned = BTreeMap::new();
    let mut others = BTreeMap::new();
    for (k, v) in meta.range(keys::LOADS).await? {
        let Some(node) = k[keys::LOADS.len()..].parse::<i32>().ok() else {
            continue;
        };
        let Ok(report) = repo::decode::<LoadReport>(&k, &v) else {
            continue;
        };
        if view.brokers.get(&node).map(|r| r.incarnation) != Some(report.incarnation) {
            continue;
        }
        for (p, (bytes_in, bytes_out)) in report.partitions {
            let owner = view.owners.get(&p).map(|(n, _)| *n);
            let into = if owner == Some(node) {
                &mut owned
            } else {
                &mut others
            };
            into.insert(p, bytes_in.saturating_add(bytes_out));
        }
    }
    others.extend(owned);
    Ok(others)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_the_second_sample_and_are_smoothed() {
        let p = PartitionId::new("t", 0);
        let idle = PartitionId::new("t", 1);
        let t0 = Instant::now();
        let mut s = Sampler::default();
        assert_eq!(
            s.sample([(p.clone(), (1000, 0)), (idle.clone(), (5, 5))], t0),
            None
        );
        let one = s
            .sample(
                [(p.clone(), (3000, 500)), (idle.clone(), (5, 5))],
                t0 + Duration::from_secs(1),
            )
            .unwrap();
        // 2000 B/s in, 500 out; the idle partition is not named.
        assert_eq!(one, BTreeMap::from([(p.clone(), (2000, 500))]));
        let two = s
            .sample([(p.clone(), (3000, 500))], t0 + Duration::from_secs(2))
            .unwrap();
        // Silent for a second: half of the previous rate.
        assert_eq!(two, BTreeMap::from([(p.clone(), (1000, 250))]));
        // A partition no longer owned drops out; a new one waits for its second sample.
        let q = PartitionId::new("t", 2);
        let three = s
            .sample([(q.clone(), (100, 0))], t0 + Duration::from_secs(3))
            .unwrap();
        assert!(three.is_empty(), "{three:?}");
    }
}
