//! The operator's own metrics (Prometheus text on `/metrics`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use stratus_metrics::{Counter, Family, Gauge, Histogram, Registry, LATENCY_SECONDS};

/// Instruments.
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// Reconciles by kind and result (`ok`, `error`).
    pub reconciles: Arc<Family<Counter>>,
    /// Reconcile time by kind.
    pub reconcile_time: Arc<Family<Histogram>>,
    /// Actions taken by kind and action (`drain`, `restart`, `rebalance`, …).
    pub actions: Arc<Family<Counter>>,
    /// Clusters by phase.
    pub phase: Arc<Family<Gauge>>,
    /// 1 while this replica holds the leader Lease.
    pub leader: Arc<Gauge>,
    /// Whether the controllers have started (readiness).
    pub started: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::default();
        Metrics {
            reconciles: registry.counters(
                "stratus_operator_reconciles_total",
                "Reconciles by resource kind and result",
                &["kind", "result"],
            ),
            reconcile_time: registry.histograms(
                "stratus_operator_reconcile_seconds",
                "Time of one reconcile",
                &["kind"],
                LATENCY_SECONDS,
            ),
            actions: registry.counters(
                "stratus_operator_actions_total",
                "Actions taken on clusters: apply, drain, undrain, rebalance, restart",
                &["kind", "action"],
            ),
            phase: registry.gauges(
                "stratus_operator_cluster_phase",
                "1 for the phase each StratusCluster is in",
                &["namespace", "cluster", "phase"],
            ),
            leader: registry.gauge(
                "stratus_operator_leader",
                "1 while this replica holds the leader Lease",
            ),
            registry,
            started: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Whether the controllers run.
    pub fn ready(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }
}
