//! Liveness and readiness. Live: the process answers. Ready: the metadata store answers
//! (probed every two seconds), this broker is registered and not leaving, and every
//! partition and coordinator shard it is assigned is loaded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stratus_meta::{keys, MetaStore};
use stratus_metrics::{Gauge, Registry};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::Broker;

/// How often the metadata store is probed, and how long a probe may take.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// What the probes found.
pub struct Health {
    meta_ok: AtomicBool,
    meta_error: Mutex<String>,
    meta_up: Arc<Gauge>,
    serving: AtomicBool,
}

impl Health {
    pub(super) fn new(registry: &Registry) -> Self {
        Health {
            meta_ok: AtomicBool::new(true),
            meta_error: Mutex::new(String::new()),
            meta_up: registry.gauge(
                "stratus_metadata_store_up",
                "1 if the metadata store answered the last probe (every 2 s), else 0.",
            ),
            serving: AtomicBool::new(false),
        }
    }

    /// The listeners accept clients.
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
    }

    fn set_meta(&self, result: Result<(), String>) {
        let ok = result.is_ok();
        let was = self.meta_ok.swap(ok, Ordering::Relaxed);
        self.meta_up.set(if ok { 1.0 } else { 0.0 });
        let mut error = self.meta_error.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                if !was {
                    info!("the metadata store answers again");
                }
                error.clear();
            }
            Err(e) => {
                if was {
                    warn!(error = %e, "the metadata store does not answer: not ready");
                }
                *error = e;
            }
        }
    }

    fn meta(&self) -> Result<(), String> {
        if self.meta_ok.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(self
                .meta_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone())
        }
    }

    /// Probes the metadata store until `cancel`.
    pub async fn probe(&self, meta: Arc<dyn MetaStore>, cancel: CancellationToken) {
        loop {
            let started = Instant::now();
            let r = match tokio::time::timeout(PROBE_EVERY, meta.get(keys::CLUSTER_ID)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} s", PROBE_EVERY.as_secs())),
            };
            self.set_meta(r);
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(PROBE_EVERY.saturating_sub(started.elapsed())) => {}
            }
        }
    }
}

/// How many partitions of `assignment` this broker does not serve yet at their assigned
/// epoch (it is still taking them over).
pub fn not_serving(broker: &Broker, assignment: &stratus_meta::repo::Assignment) -> usize {
    assignment
        .partitions
        .iter()
        .filter(|(id, epoch)| {
            uuid::Uuid::parse_str(&id.topic_id)
                .ok()
                .and_then(|t| broker.registry.topic_by_id(&t))
                .and_then(|t| t.partitions.get(usize::try_from(id.index).ok()?).cloned())
                .is_none_or(|p| p.state().owner_epoch() != Some(**epoch))
        })
        .count()
}

/// Each readiness check by name, and why it fails.
pub fn readiness(broker: &Broker) -> Vec<(&'static str, Result<(), String>)> {
    let health = &broker.telemetry.health;
    let me = broker.settings.server.node_id;
    let registered = {
        let view = broker.view.borrow();
        match view.brokers.get(&me) {
            _ if !health.serving.load(Ordering::Relaxed) => Err("not serving clients yet".into()),
            _ if broker.membership.lease().is_none() => Err("no lease".into()),
            None => Err("not in the cluster's view of live brokers".into()),
            Some(r) if r.leaving => Err("shutting down".into()),
            Some(_) => Ok(()),
        }
    };
    let owned = broker.fence.get();
    let unloaded = not_serving(broker, &owned.assignment);
    let partitions = if unloaded == 0 {
        Ok(())
    } else {
        Err(format!(
            "{unloaded} of {} assigned partitions not loaded yet",
            owned.assignment.partitions.len()
        ))
    };
    let missing = owned
        .assignment
        .shards
        .keys()
        .filter(|s| !broker.groups.owns_shard(**s))
        .count();
    let shards = if missing == 0 {
        Ok(())
    } else {
        Err(format!(
            "{missing} of {} assigned coordinator shards not loaded yet",
            owned.assignment.shards.len()
        ))
    };
    vec![
        ("metadata-store", health.meta()),
        ("registered", registered),
        ("partitions", partitions),
        ("coordinator-shards", shards),
    ]
}
