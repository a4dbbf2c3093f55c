//! The metadata store, measured: requests, errors and latency per operation
//! (`stratus_metadata_store_*{operation}`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use stratus_meta::{Compare, LeaseId, MetaError, MetaStore, Op, Versioned, WatchEvent};
use stratus_metrics::trace::SpanGuard;
use stratus_metrics::{Counter, Histogram, Registry, LATENCY_SECONDS};

struct OpMetrics {
    requests: Arc<Counter>,
    errors: Arc<Counter>,
    time: Arc<Histogram>,
}

/// A metadata store whose every call is counted and timed.
pub struct InstrumentedMeta {
    inner: Arc<dyn MetaStore>,
    get: OpMetrics,
    range: OpMetrics,
    txn: OpMetrics,
    lease: OpMetrics,
}

impl InstrumentedMeta {
    /// Measures `inner` into `registry`.
    pub fn wrap(inner: Arc<dyn MetaStore>, registry: &Registry) -> Arc<dyn MetaStore> {
        let requests = registry.counters(
            "stratus_metadata_store_requests_total",
            "Metadata store requests, by operation (errors included).",
            &["operation"],
        );
        let errors = registry.counters(
            "stratus_metadata_store_errors_total",
            "Metadata store requests that failed, by operation.",
            &["operation"],
        );
        let time = registry.histograms(
            "stratus_metadata_store_request_time_seconds",
            "Latency of metadata store requests.",
            &["operation"],
            LATENCY_SECONDS,
        );
        let op = |name: &str| OpMetrics {
            requests: requests.get(&[name]),
            errors: errors.get(&[name]),
            time: time.get(&[name]),
        };
        Arc::new(InstrumentedMeta {
            get: op("get"),
            range: op("range"),
            txn: op("txn"),
            lease: op("lease"),
            inner,
        })
    }
}

impl InstrumentedMeta {
    async fn timed_txn(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
        relaxed: bool,
    ) -> Result<bool, MetaError> {
        let span = SpanGuard::child("metadata.txn");
        if span.is_recording() {
            span.set("ops", ops.len() as i64);
            span.set("relaxed", relaxed);
        }
        let t = Instant::now();
        let r = if relaxed {
            self.inner.txn_relaxed(compares, ops).await
        } else {
            self.inner.txn(compares, ops).await
        };
        let r = record(&self.txn, t, r);
        match &r {
            Ok(applied) => span.set("applied", *applied),
            Err(e) => span.fail(e),
        }
        r
    }
}

fn record<T>(m: &OpMetrics, started: Instant, r: Result<T, MetaError>) -> Result<T, MetaError> {
    m.requests.inc();
    m.time.observe_duration(started.elapsed());
    if r.is_err() {
        m.errors.inc();
    }
    r
}

#[async_trait]
impl MetaStore for InstrumentedMeta {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, MetaError> {
        let _span = SpanGuard::child("metadata.get");
        let t = Instant::now();
        record(&self.get, t, self.inner.get(key).await)
    }

    async fn range(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, MetaError> {
        let _span = SpanGuard::child("metadata.range");
        let t = Instant::now();
        record(&self.range, t, self.inner.range(prefix).await)
    }

    async fn range_keys(&self, prefix: &str) -> Result<Vec<(String, u64)>, MetaError> {
        let _span = SpanGuard::child("metadata.range_keys");
        let t = Instant::now();
        record(&self.range, t, self.inner.range_keys(prefix).await)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Versioned>>, MetaError> {
        let _span = SpanGuard::child("metadata.get_many");
        let t = Instant::now();
        record(&self.get, t, self.inner.get_many(keys).await)
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool, MetaError> {
        self.timed_txn(compares, ops, false).await
    }

    async fn txn_relaxed(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool, MetaError> {
        self.timed_txn(compares, ops, true).await
    }

    fn relaxed_may_be_lost(&self) -> bool {
        self.inner.relaxed_may_be_lost()
    }
    fn upkeep(&self, every: std::time::Duration) -> Option<stratus_meta::Upkeep> {
        self.inner.upkeep(every)
    }

    fn watch(&self, prefix: &str) -> tokio::sync::mpsc::Receiver<WatchEvent> {
        self.inner.watch(prefix)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError> {
        let t = Instant::now();
        record(&self.lease, t, self.inner.grant_lease(ttl).await)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), MetaError> {
        let t = Instant::now();
        record(&self.lease, t, self.inner.keep_alive(lease).await)
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), MetaError> {
        let t = Instant::now();
        record(&self.lease, t, self.inner.revoke_lease(lease).await)
    }
}
