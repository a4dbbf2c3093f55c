//! The broker: every component, built once at startup (`startup`), and the hand-off at
//! shutdown. Components take narrow handles to each other, never the broker; only the
//! listeners, the request dispatch and the admin gRPC service see it whole.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::Settings;
use stratus_log::cache::BlockCache;
use stratus_log::clock::Clock;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::membership::Membership;
use crate::cluster::routing::Routing;
use crate::cluster::{Fence, View};
use crate::registry::Registry;
pub use crate::registry::Topic;
use crate::supervisor::Supervisor;
use crate::wal::Wal;
use stratus_log::objects::Objects;
use stratus_meta::MetaStore;

pub use crate::config::MAX_PARTITIONS;

/// The broker.
pub struct Broker {
    /// Settings.
    pub settings: Settings,
    /// Metadata store.
    pub meta: Arc<dyn MetaStore>,
    /// Object store.
    pub objects: Arc<Objects>,
    /// Read cache.
    pub cache: Arc<BlockCache>,
    /// The WAL.
    pub wal: Arc<Wal>,
    /// Reads of partitions: the block cache and parsed segment indexes.
    pub reader: Arc<crate::read::Reader>,
    /// Cluster id.
    pub cluster_id: String,
    /// Every topic this broker knows.
    pub registry: Arc<Registry>,
    /// Producer ids (InitProducerId).
    pub producer_ids: Arc<crate::producer_ids::ProducerIds>,
    /// The topic lifecycle (create, delete, grow, reconfigure, follow the records).
    pub topics: Arc<crate::topics::TopicAdmin>,
    /// When the broker started.
    pub started: Instant,
    /// The group coordinator.
    pub groups: Arc<crate::group::Coordinator>,
    /// ACLs and the decision whether a principal may do something.
    pub authz: Arc<crate::auth::acls::Authorizer>,
    /// Client quotas.
    pub quotas: Arc<crate::quotas::Quotas>,
    /// What each listener asks of its clients (TLS, SASL), and SCRAM credentials.
    pub security: Arc<crate::auth::Security>,
    /// Bytes of requests read and not yet answered (`queued.max.request.bytes`).
    pub request_memory: Arc<tokio::sync::Semaphore>,
    /// What this broker owns, and the compare its writes carry.
    pub fence: Arc<Fence>,
    /// Every live broker and every owner.
    pub view: watch::Sender<Arc<View>>,
    /// Where clients go (leaders, live brokers, rack replicas).
    pub routing: Arc<Routing>,
    /// This broker's registration.
    pub membership: Arc<Membership>,
    /// Applies this broker's assignment (partitions and shards it gains and loses).
    pub ownership: Arc<crate::cluster::ownership::Ownership>,
    /// Sealing, retention, WAL collection and sweeps (and DeleteRecords).
    pub upkeep: Arc<crate::upkeep::Upkeep>,
    /// Stops the cluster tasks (after the listeners and the WAL).
    pub(crate) cluster_cancel: CancellationToken,
    /// Fetch sessions (KIP-227), shared by every connection.
    pub fetch_sessions: Arc<crate::handlers::fetch_session::FetchSessions>,
    /// Read-only index of partitions owned elsewhere (brokers with a rack serve them to
    /// consumers of that rack).
    pub replicas: Arc<crate::replica::Replicas>,
    /// The critical background tasks; the broker stops when one of them does.
    pub supervisor: Arc<Supervisor>,
    /// Metrics and health.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// Wall-clock time for record timestamps, segment age, retention and object ages
    /// (tests move a manual clock instead of sleeping).
    pub clock: Arc<dyn Clock>,
}

pub use crate::error::AdminError;

impl Broker {
    /// SIGTERM: marks this broker as leaving, so the controller moves its partitions and
    /// shards to the others, and waits (up to `controlled.shutdown.timeout.ms`) until it
    /// owns nothing — or at once if no other broker can take them.
    pub async fn hand_off(&self) {
        let started = Instant::now();
        match self.membership.leave().await {
            Ok(true) => {}
            Ok(false) => {
                info!("another process of this node id registered: nothing to hand off");
                return;
            }
            Err(e) => {
                warn!(error = %e, "could not announce the shutdown; partitions move when the lease expires");
                return;
            }
        }
        let deadline =
            started + Duration::from_millis(self.settings.server.controlled_shutdown_timeout_ms);
        let me = self.settings.server.node_id;
        let mut changed = self.fence.changed.subscribe();
        loop {
            let owned = self.fence.get();
            if owned.assignment.partitions.is_empty() && owned.assignment.shards.is_empty() {
                info!(
                    ms = started.elapsed().as_millis() as u64,
                    "handed everything off"
                );
                return;
            }
            let others = {
                let v = self.view.borrow();
                v.brokers
                    .iter()
                    .any(|(n, r)| *n != me && !r.leaving && !v.drained.contains(n))
            };
            if !others || Instant::now() >= deadline {
                if others {
                    warn!("hand-off timed out; the rest moves when the lease ends");
                }
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), changed.changed()).await;
        }
    }
}
