//! Starting a broker: opening the stores named by the settings, recovering the cluster id
//! and the WAL sequence, joining the cluster and starting the cluster tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

mod stores;

use crate::broker::Broker;
use crate::cluster::membership::Membership;
use crate::cluster::ownership::Ownership;
use crate::cluster::records::PartitionRecords;
use crate::cluster::routing::Routing;
use crate::cluster::{Fence, View};
use crate::config::Settings;
use crate::producer_ids::ProducerIds;
use crate::registry::Registry;
use crate::supervisor::Supervisor;
use crate::wal::{Wal, WalConfig};
use stratus_log::cache::BlockCache;
use stratus_log::objects::Objects;
use stratus_meta::repo::{ControllerRecord, Registration};
use stratus_meta::{keys, Compare, MetaStore, Op};

/// Longest pause between two startup probes of a store that is down.
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Runs `probe` until it succeeds, while the store is down and `wait` holds.
async fn until_up<T, F, Fut>(wait: bool, probe: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, stores::StoreError>>,
{
    let mut delay = Duration::from_millis(500);
    loop {
        match probe().await {
            Ok(v) => return Ok(v),
            Err(e) if wait && e.down => {
                warn!("{e}; waiting for it (next try in {}s)", delay.as_secs_f32());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(PROBE_BACKOFF_MAX);
            }
            Err(e) => return Err(anyhow::anyhow!(e.message)),
        }
    }
}

impl Broker {
    /// Opens the stores named by the settings, joins the cluster and takes what it is
    /// assigned.
    ///
    /// A store that does not answer stops a single broker (embedded metadata) at once. A
    /// broker of a cluster (etcd) waits for it, saying so, as Kubernetes starts brokers and
    /// their stores in any order; a store that refuses stops it all the same.
    pub async fn open(settings: Settings) -> anyhow::Result<Arc<Broker>> {
        stores::data_dir(&settings.storage.data_dir)?;
        let cluster = settings.cluster.metadata_url.starts_with("etcd://");
        let meta = until_up(cluster, || stores::metadata(&settings)).await?;
        let objects = until_up(cluster, || stores::objects(&settings)).await?;
        Self::open_with(settings, meta, objects).await
    }

    /// Opens with given stores.
    pub async fn open_with(
        settings: Settings,
        meta: Arc<dyn MetaStore>,
        objects: Arc<Objects>,
    ) -> anyhow::Result<Arc<Broker>> {
        Self::open_with_clock(settings, meta, objects, stratus_log::clock::system()).await
    }

    /// Opens with given stores and clock.
    pub async fn open_with_clock(
        settings: Settings,
        meta: Arc<dyn MetaStore>,
        objects: Arc<Objects>,
        clock: Arc<dyn stratus_log::clock::Clock>,
    ) -> anyhow::Result<Arc<Broker>> {
        let telemetry = Arc::new(crate::telemetry::Telemetry::new(&settings));
        let meta = crate::telemetry::InstrumentedMeta::wrap(meta, &telemetry.registry);
        let cache = Arc::new(BlockCache::new(
            objects.clone(),
            settings.storage.cache_block_bytes,
            settings.storage.memory_cache_bytes(),
            settings.storage.data_dir.join("cache"),
            settings.storage.disk_cache_bytes(),
        ));
        let cluster_id = match meta.get(keys::CLUSTER_ID).await? {
            Some(v) => String::from_utf8_lossy(&v.value).to_string(),
            None => {
                let id = kafka_cluster_id();
                meta.txn(
                    vec![Compare::Revision(keys::CLUSTER_ID.into(), None)],
                    vec![Op::Put(keys::CLUSTER_ID.into(), id.clone().into(), None)],
                )
                .await?;
                match meta.get(keys::CLUSTER_ID).await? {
                    Some(v) => String::from_utf8_lossy(&v.value).to_string(),
                    None => id,
                }
            }
        };
        let node = settings.server.node_id;
        let incarnation = rand_u64();
        let fence = Arc::new(Fence::new(node, incarnation));
        crate::wal::recover(meta.as_ref(), &objects, node).await?;
        let next_seq = meta
            .range(&keys::wal_prefix(node))
            .await?
            .iter()
            .filter_map(|(k, _)| keys::wal_last_seq(k))
            .max()
            .unwrap_or(0)
            .max(crate::wal::void_floor(meta.as_ref(), node).await?)
            + 1;
        let wal = Arc::new(Wal::new(
            WalConfig {
                node_id: node,
                incarnation,
                flush_interval: Duration::from_millis(settings.storage.flush_interval_ms()),
                flush_min_bytes: settings.storage.flush_min_bytes(),
                flush_bytes: settings.storage.wal_flush_bytes,
                max_buffer_bytes: settings.storage.wal_buffer_max_bytes,
                max_in_flight: settings.storage.wal_max_in_flight,
                max_index_bytes: stratus_meta::repo::WAL_ENTRY_BUDGET,
            },
            meta.clone(),
            objects.clone(),
            cache.clone(),
            next_seq,
            fence.clone(),
        ));
        let supervisor = Arc::new(Supervisor::default());
        let groups = crate::group::Coordinator::open(
            &supervisor,
            meta.clone(),
            fence.clone(),
            crate::group::GroupSettings::from(&settings),
        )
        .await?;
        let registration = Registration {
            node,
            incarnation,
            listeners: settings
                .server
                .listeners
                .iter()
                .zip(&settings.advertised)
                .map(|(l, a)| (l.name.clone(), a.host.clone(), a.port))
                .collect(),
            rack: settings.server.rack.clone(),
            admin: settings.server.admin_listener.clone(),
            leaving: false,
        };
        let membership = Arc::new(Membership::new(
            meta.clone(),
            registration,
            Duration::from_millis(settings.cluster.broker_session_timeout_ms),
        ));
        let registry = Arc::new(Registry::new(settings.clone()));
        let view = watch::Sender::new(Arc::new(View::default()));
        let routing = Arc::new(Routing::new(&settings, fence.clone(), view.subscribe()));
        let topics = Arc::new(crate::topics::TopicAdmin::new(
            settings.topics.clone(),
            meta.clone(),
            objects.clone(),
            registry.clone(),
            view.subscribe(),
        ));
        let reader = Arc::new(crate::read::Reader::new(cache.clone()));
        let upkeep = Arc::new(crate::upkeep::Upkeep {
            settings: settings.clone(),
            meta: meta.clone(),
            objects: objects.clone(),
            cache: cache.clone(),
            reader: reader.clone(),
            registry: registry.clone(),
            records: Arc::new(PartitionRecords::new(meta.clone(), fence.clone())),
            view: view.subscribe(),
            clock: clock.clone(),
            metrics: Arc::new(crate::upkeep::metrics::UpkeepMetrics::default()),
            fence: fence.clone(),
            compaction: Default::default(),
            wal_index: Default::default(),
        });
        let ownership = Arc::new(Ownership::new(
            node,
            meta.clone(),
            fence.clone(),
            registry.clone(),
            topics.clone(),
            groups.clone(),
            clock.clone(),
        ));
        let producer_ids = Arc::new(ProducerIds::new(meta.clone()));
        let scram = Arc::new(crate::auth::scram_store::ScramStore::new(meta.clone()));
        let security = Arc::new(crate::auth::Security::from_settings(&settings, scram)?);
        let authz = Arc::new(crate::auth::acls::Authorizer::new(
            &settings.security,
            meta.clone(),
        ));
        authz.refresh().await?;
        let quotas = Arc::new(crate::quotas::Quotas::new(
            meta.clone(),
            settings.server.quota_window_num,
            settings.server.quota_window_size_seconds * 1000,
        ));
        quotas.refresh().await?;
        let fetch_sessions = Arc::new(crate::handlers::fetch_session::FetchSessions::new(
            settings.server.max_incremental_fetch_session_cache_slots,
        ));
        let broker = Arc::new(Broker {
            fetch_sessions,
            security,
            authz,
            quotas,
            request_memory: Arc::new(tokio::sync::Semaphore::new(
                settings.server.request_memory_bytes(),
            )),
            groups,
            settings,
            meta,
            objects,
            cache: cache.clone(),
            wal,
            reader,
            cluster_id,
            registry,
            producer_ids,
            started: Instant::now(),
            fence,
            view,
            routing,
            topics,
            membership,
            ownership,
            upkeep,
            cluster_cancel: CancellationToken::new(),
            replicas: Arc::new(crate::replica::Replicas::default()),
            supervisor,
            telemetry,
            clock,
        });
        crate::telemetry::collect::register(&broker);
        broker.topics.sync_topics().await?;
        broker.join().await?;
        Ok(broker)
    }

    /// Registers, starts the cluster tasks (keep-alive, view, controller campaign,
    /// ownership), and waits until the controller has answered this incarnation.
    async fn join(self: &Arc<Self>) -> anyhow::Result<()> {
        let started = Instant::now();
        self.membership.register().await?;
        let cancel = self.cluster_cancel.clone();
        let tasks = &self.supervisor;
        tasks.spawn(
            "lease keep-alive",
            cancel.clone(),
            self.membership.clone().keep_alive(cancel.clone()),
        );
        tasks.spawn(
            "cluster view",
            cancel.clone(),
            crate::cluster::watch_view(
                self.meta.clone(),
                self.view.clone(),
                Duration::from_secs(10),
                cancel.clone(),
            ),
        );
        let membership = self.membership.clone();
        tasks.spawn(
            "controller",
            cancel.clone(),
            crate::cluster::controller::run(
                self.meta.clone(),
                ControllerRecord {
                    node: self.settings.server.node_id,
                    incarnation: self.fence.incarnation(),
                },
                move || membership.lease(),
                Duration::from_secs(5),
                self.settings.cluster.auto_rebalance_enable.then(|| {
                    Duration::from_millis(self.settings.cluster.auto_rebalance_interval_ms)
                }),
                cancel.clone(),
            ),
        );
        let membership = self.membership.clone();
        tasks.spawn(
            "load report",
            cancel.clone(),
            crate::cluster::load::run(
                self.meta.clone(),
                self.registry.clone(),
                self.settings.server.node_id,
                self.fence.incarnation(),
                move || membership.lease(),
                Duration::from_millis(self.settings.cluster.load_report_interval_ms),
                cancel.clone(),
            ),
        );
        // Wait (bounded) for the first assignment naming this incarnation, so that a
        // single broker serves its partitions from the first request.
        let deadline = Instant::now()
            + Duration::from_millis(self.settings.cluster.broker_session_timeout_ms.max(1000) * 2);
        loop {
            let synced = self.ownership.sync().await.is_ok();
            if synced && self.fence.get().assignment.incarnation == self.fence.incarnation() {
                break;
            }
            if Instant::now() >= deadline {
                warn!("no assignment from the controller yet; serving what comes later");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::spawn(self.authz.clone().run(cancel.clone()));
        tokio::spawn(self.quotas.clone().run(cancel.clone()));
        for (listener, oauth) in self.security.oauth() {
            tokio::spawn(oauth.run(listener, cancel.clone()));
        }
        tasks.spawn(
            "topic watch",
            cancel.clone(),
            self.topics.clone().watch_topics(cancel.clone()),
        );
        if self.settings.server.rack.is_some() {
            tasks.spawn(
                "replica index",
                cancel.clone(),
                crate::replica::run(
                    self.meta.clone(),
                    self.replicas.clone(),
                    self.wal.committed.clone(),
                    cancel.clone(),
                ),
            );
        }
        tasks.spawn(
            "ownership",
            cancel.clone(),
            self.ownership.clone().run(cancel),
        );
        info!(
            node = self.settings.server.node_id,
            partitions = self.fence.get().assignment.partitions.len(),
            ms = started.elapsed().as_millis() as u64,
            "joined the cluster"
        );
        Ok(())
    }
}

fn rand_u64() -> u64 {
    let u = Uuid::new_v4();
    let b = u.as_bytes();
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// A cluster id in Kafka's form (base64 of 16 random bytes, url-safe, no padding).
fn kafka_cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = String::new();
    for b in bytes {
        bits = (bits << 8) | b as u32;
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}
