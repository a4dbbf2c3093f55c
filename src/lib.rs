//! Stratus: a Kafka-compatible broker whose log lives in object storage.
//!
//! The produce path reads as the modules do: [`server`] (listeners, framing) →
//! [`handlers`] (one file per API family) → [`partition`] (offsets, idempotence) →
//! [`wal`] (one object per flush, one metadata commit) → the object store
//! (`stratus_log::objects`); [`upkeep`] seals WAL ranges into segments and applies
//! retention; reads go through [`read`] and the block cache (`stratus_log::cache`). The
//! metadata store is `stratus_meta`; [`config`] the settings; [`cluster`] membership,
//! ownership and fenced writes; [`broker`] assembles the parts.

#![forbid(unsafe_code)]

pub mod auth;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod group;
pub mod handlers;
pub mod partition;
pub mod producer_ids;
pub mod quotas;
pub mod read;
pub mod registry;
pub mod replica;
pub mod server;
mod startup;
pub mod supervisor;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod topic_config;
pub mod topics;
pub mod txn;
pub mod upkeep;
pub mod wal;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use broker::Broker;
pub use config::Settings;

/// How long shutdown waits for connections to answer their last requests.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a broker until `cancel`: binds its listeners, then serves. Returns the bound
/// addresses through `bound` as soon as they are known.
pub async fn run(
    settings: Settings,
    cancel: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<Vec<std::net::SocketAddr>>>,
) -> anyhow::Result<()> {
    // TLS and SASL settings first (a missing certificate file), then the listeners (a
    // taken port): either stops the broker before it touches the stores.
    auth::Security::check(&settings)?;
    cluster::admin::AdminSecurity::from_settings(&settings.server)?;
    let listeners = server::bind(&settings).await?;
    // A broker of a cluster waits for its stores: a shutdown meanwhile stops it.
    let broker = tokio::select! {
        b = Broker::open(settings) => b?,
        _ = cancel.cancelled() => {
            tracing::info!("stopped before joining the cluster");
            return Ok(());
        }
    };
    serve_on(broker, listeners, cancel, bound).await
}

/// Serves an opened broker until `cancel` (see [`run`]).
pub async fn serve(
    broker: Arc<Broker>,
    cancel: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<Vec<std::net::SocketAddr>>>,
) -> anyhow::Result<()> {
    let listeners = server::bind(&broker.settings).await?;
    serve_on(broker, listeners, cancel, bound).await
}

async fn serve_on(
    broker: Arc<Broker>,
    listeners: server::Bound,
    cancel: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<Vec<std::net::SocketAddr>>>,
) -> anyhow::Result<()> {
    let tasks = broker.supervisor.clone();
    let server::Bound {
        kafka: listeners,
        admin,
        http,
        limits,
    } = listeners;
    if let Some(l) = http {
        if let Ok(addr) = l.local_addr() {
            let _ = broker.telemetry.http_addr.set(addr);
        }
        tokio::spawn(telemetry::http::serve(
            Arc::downgrade(&broker),
            l,
            broker.cluster_cancel.clone(),
        ));
    }
    {
        let b = broker.clone();
        let stop = broker.cluster_cancel.clone();
        tokio::spawn(async move { b.telemetry.health.probe(b.meta.clone(), stop).await });
    }
    let otlp = match telemetry::otel::OtelConfig::from_settings(&broker.settings) {
        Some(cfg) => {
            match telemetry::otel::install_tracing(&cfg) {
                Ok(true) => broker.telemetry.trace(cfg.ratio),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "traces will not be exported"),
            }
            Some(tokio::spawn(telemetry::otel::export_metrics(
                cfg,
                broker.telemetry.registry.clone(),
                broker.cluster_cancel.clone(),
            )))
        }
        None => None,
    };
    let admin = match admin {
        Some(l) => {
            let until = broker.cluster_cancel.clone();
            let admin = cluster::admin::serve(broker.clone(), l, until.clone());
            let failed = tasks.clone();
            Some(tasks.spawn("admin API", until, async move {
                if let Err(e) = admin.await {
                    failed.fail("admin API", format!("{e:#}"));
                }
            }))
        }
        None => None,
    };
    if let Some(tx) = bound {
        let addrs = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let _ = tx.send(addrs);
    }
    let wal_cancel = CancellationToken::new();
    let wal = tasks.spawn(
        "wal",
        wal_cancel.clone(),
        broker.wal.clone().run(wal_cancel.clone()),
    );
    let upkeep = tasks.spawn(
        "upkeep",
        cancel.clone(),
        upkeep::run(broker.upkeep.clone(), cancel.clone()),
    );
    // The metadata store's own upkeep (etcd: compaction of its history).
    let every = broker.settings.cluster.metadata_compaction_interval_ms;
    let store_upkeep = (every > 0)
        .then(|| broker.meta.upkeep(std::time::Duration::from_millis(every)))
        .flatten()
        .map(|task| {
            let stop = cancel.clone();
            tasks.spawn("metadata store upkeep", cancel.clone(), async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = task => {}
                }
            })
        });
    // Merges write up to a GiB each: in the upkeep loop they would hold back its seals.
    let merges = tasks.spawn(
        "segment merge",
        cancel.clone(),
        upkeep::merge::run(broker.upkeep.clone(), cancel.clone()),
    );
    let coordinator = tasks.spawn(
        "group coordinator",
        cancel.clone(),
        broker.groups.clone().run(cancel.clone()),
    );
    // TLS files are checked every second: a rotated certificate reaches new connections.
    if broker.security.listeners.iter().any(|l| l.tls.is_some()) {
        let security = broker.security.clone();
        let stop = cancel.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => security.reload_tls(),
                }
            }
        });
    }
    let connections = tokio_util::task::TaskTracker::new();
    let mut servers = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        servers.push(tasks.spawn(
            "listener",
            cancel.clone(),
            server::serve(
                broker.clone(),
                l,
                i,
                limits.clone(),
                cancel.clone(),
                connections.clone(),
            ),
        ));
    }
    broker.telemetry.health.set_serving(true);
    let failure = tokio::select! {
        _ = cancel.cancelled() => None,
        f = tasks.failed() => Some(f),
    };
    if let Some(f) = failure {
        // No hand-off: a broker missing a critical task cannot be trusted to finish one.
        // What it did not commit was never acknowledged; the lease expires and the
        // partitions move (or the restarted process takes them back).
        cancel.cancel();
        wal_cancel.cancel();
        broker.cluster_cancel.cancel();
        return Err(anyhow::anyhow!("{f}; stopping"));
    }
    broker.telemetry.health.set_serving(false);
    broker.hand_off().await;
    for s in servers {
        let _ = s.await;
    }
    // Connections stop reading and answer what they have, which needs the WAL running.
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
    wal_cancel.cancel();
    // A commit waits for the metadata store to answer; a store that is gone for good must
    // not keep the process: what is not committed was never acknowledged.
    if tokio::time::timeout(SHUTDOWN_GRACE, wal).await.is_err() {
        tracing::warn!(
            "the last WAL flush did not commit in time; its producers were not acknowledged"
        );
    }
    // The background tasks stop at their next await, but one may be in a call to a store
    // that is gone: the process does not wait for them past the grace period.
    let background = async {
        let _ = upkeep.await;
        let _ = merges.await;
        if let Some(t) = store_upkeep {
            let _ = t.await;
        }
        let _ = coordinator.await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, background)
        .await
        .is_err()
    {
        tracing::warn!("background tasks still running after the shutdown grace period");
    }
    broker.cluster_cancel.cancel();
    if let Some(a) = admin {
        let _ = a.await;
    }
    telemetry::otel::flush_traces();
    if let Some(export) = otlp {
        // The last push of the metrics, bounded: a collector that is gone does not hold
        // the shutdown.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), export).await;
    }
    broker.membership.deregister().await;
    if let Some(f) = tasks.failure() {
        return Err(anyhow::anyhow!("{f} during shutdown"));
    }
    tracing::info!("stopped");
    Ok(())
}

/// Keeps `Arc` in the public surface for embedding.
pub type SharedBroker = Arc<Broker>;
