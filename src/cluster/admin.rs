//! The gRPC admin API (`proto/admin.proto`), served by every broker on `admin.listener`.
//! Every call works on any broker: reads come from the metadata store, and changes are
//! metadata transactions that compare what they read (see [`super::controller::apply`]).
//!
//! Locked down by [`AdminSecurity`]: TLS (`admin.ssl.keystore.location`), client
//! certificates (`admin.ssl.truststore.location`) and a bearer token (`admin.token.file`);
//! an admin listener other machines can reach must have TLS and one of the two.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{debug, info};

use super::controller;
use crate::broker::Broker;
use crate::error::Error;
use stratus_meta::keys;
use stratus_meta::Op;

use stratus_proto as pb;

use pb::admin_server::{Admin, AdminServer};
use pb::*;

/// How the admin API is protected.
pub struct AdminSecurity {
    tls: Option<tonic::transport::ServerTlsConfig>,
    token: Option<String>,
}

impl AdminSecurity {
    /// From the settings; refuses an admin listener that other machines can reach without
    /// TLS and client certificates or a token. The error names the setting to set.
    pub fn from_settings(s: &crate::config::Server) -> anyhow::Result<Self> {
        let read = |setting: &str, path: &str| {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("{setting} {path}: {e}"))
        };
        let tls = if s.admin_ssl_keystore_location.is_empty() {
            None
        } else {
            let pem = read(
                "admin.ssl.keystore.location",
                &s.admin_ssl_keystore_location,
            )?;
            let mut cfg = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(&pem, &pem));
            if !s.admin_ssl_truststore_location.is_empty() {
                let ca = read(
                    "admin.ssl.truststore.location",
                    &s.admin_ssl_truststore_location,
                )?;
                cfg = cfg.client_ca_root(tonic::transport::Certificate::from_pem(ca));
            }
            Some(cfg)
        };
        let token = if s.admin_token_file.is_empty() {
            None
        } else {
            let t = String::from_utf8(read("admin.token.file", &s.admin_token_file)?).map_err(
                |_| anyhow::anyhow!("admin.token.file {}: not text", s.admin_token_file),
            )?;
            let t = t.trim().to_string();
            if t.is_empty() {
                anyhow::bail!("admin.token.file {}: the file is empty", s.admin_token_file);
            }
            Some(t)
        };
        if let Some(addr) = &s.admin_listener {
            let authenticated = !s.admin_ssl_truststore_location.is_empty() || token.is_some();
            if !is_loopback(addr) && (tls.is_none() || !authenticated) {
                anyhow::bail!(
                    "admin.listener {addr} can be reached from other machines: set \
                     admin.ssl.keystore.location and admin.ssl.truststore.location (client \
                     certificates) or admin.token.file, or bind it to 127.0.0.1"
                );
            }
        }
        Ok(AdminSecurity { tls, token })
    }
}

/// Whether `HOST:PORT` names a loopback address.
fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks the bearer token of a call (in constant time).
#[allow(clippy::result_large_err)] // tonic's interceptor signature
fn check_token(token: &Option<String>, req: Request<()>) -> Result<Request<()>, Status> {
    let Some(want) = token else {
        return Ok(req);
    };
    let given = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if stratus_auth::scram::constant_time_eq(given.as_bytes(), want.as_bytes()) {
        Ok(req)
    } else {
        Err(Status::unauthenticated(
            "the admin API needs its token (stratus admin --token-file)",
        ))
    }
}

/// The service.
pub struct AdminService {
    broker: Arc<Broker>,
}

/// The one mapping of broker errors to gRPC status codes ([`Error::grpc`]).
fn status(e: impl Into<Error>) -> Status {
    e.into().into()
}

fn apply_status(e: controller::ApplyError) -> Status {
    match e {
        controller::ApplyError::Store(e) => status(e),
        e @ controller::ApplyError::Contended => Status::aborted(e.to_string()),
    }
}

impl AdminService {
    async fn view(&self) -> Result<super::View, Status> {
        super::read_view(self.broker.meta.as_ref())
            .await
            .map_err(status)
    }

    /// Waits until `node` owns nothing (or `timeout`); returns what it still owns.
    async fn wait_empty(&self, node: i32, timeout: Duration) -> Result<(u32, u32), Status> {
        let deadline = Instant::now() + timeout;
        loop {
            let view = self.view().await?;
            let (p, s) = view
                .assignments
                .get(&node)
                .map(|(a, _)| (a.partitions.len() as u32, a.shards.len() as u32))
                .unwrap_or((0, 0));
            if (p == 0 && s == 0) || Instant::now() >= deadline {
                return Ok((p, s));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn cluster_status(
        &self,
        _req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let view = self.view().await?;
        let topics = self.broker.registry.topics();
        let partitions: u32 = topics.iter().map(|t| t.partitions.len() as u32).sum();
        let assigned = view.owners.len() as u32;
        let mut nodes: Vec<i32> = view.brokers.keys().copied().collect();
        nodes.extend(view.assignments.keys());
        nodes.sort_unstable();
        nodes.dedup();
        let brokers = nodes
            .into_iter()
            .map(|n| {
                let r = view.brokers.get(&n);
                let a = view.assignments.get(&n).map(|(a, _)| a);
                let live = r.is_some_and(|r| a.is_none_or(|a| a.incarnation == r.incarnation));
                BrokerStatus {
                    node_id: n,
                    rack: r.and_then(|r| r.rack.clone()).unwrap_or_default(),
                    listeners: r
                        .map(|r| {
                            r.listeners
                                .iter()
                                .map(|(name, h, p)| format!("{name}://{h}:{p}"))
                                .collect()
                        })
                        .unwrap_or_default(),
                    admin_address: r.and_then(|r| r.admin.clone()).unwrap_or_default(),
                    alive: r.is_some(),
                    draining: view.drained.contains(&n) || r.is_some_and(|r| r.leaving),
                    partitions: if live {
                        a.map_or(0, |a| a.partitions.len() as u32)
                    } else {
                        0
                    },
                    coordinator_shards: if live {
                        a.map_or(0, |a| a.shards.len() as u32)
                    } else {
                        0
                    },
                    incarnation: r.map(|r| r.incarnation).unwrap_or_default(),
                }
            })
            .collect();
        // What a rebalance would move now (by measured traffic, else by count): the
        // operator's autoRebalance acts on this, so that it never repeats a rebalance that
        // moves nothing.
        let rebalance_moves = match controller::propose(self.broker.meta.as_ref()).await {
            Ok((changed, _)) => Some((changed.partitions + changed.shards) as u32),
            Err(e) => {
                debug!(error = %e, "no rebalance proposal for the status");
                None
            }
        };
        Ok(Response::new(ClusterStatusResponse {
            cluster_id: self.broker.cluster_id.clone(),
            controller_id: view.controller.unwrap_or(-1),
            brokers,
            topics: topics.len() as u32,
            partitions,
            unassigned_partitions: partitions.saturating_sub(assigned),
            coordinator_shards: view.shard_owners.len() as u32,
            rebalance_moves,
        }))
    }

    async fn list_partitions(
        &self,
        req: Request<ListPartitionsRequest>,
    ) -> Result<Response<ListPartitionsResponse>, Status> {
        let want = req.into_inner().topic;
        let view = self.view().await?;
        let mut out = Vec::new();
        for t in self.broker.registry.topics() {
            if !want.is_empty() && *t.name != *want {
                continue;
            }
            for i in 0..t.partitions.len() as i32 {
                let (owner, epoch) = view.owner(&t.id_text, i).unwrap_or((-1, -1));
                out.push(PartitionOwner {
                    topic: t.name.to_string(),
                    partition: i,
                    owner,
                    leader_epoch: epoch,
                });
            }
        }
        if !want.is_empty() && out.is_empty() {
            return Err(Status::not_found(format!("no topic '{want}'")));
        }
        Ok(Response::new(ListPartitionsResponse { partitions: out }))
    }

    async fn drain_broker(
        &self,
        req: Request<DrainBrokerRequest>,
    ) -> Result<Response<DrainBrokerResponse>, Status> {
        let r = req.into_inner();
        self.broker
            .meta
            .txn(
                vec![],
                vec![Op::Put(keys::drain_key(r.node_id), "drain".into(), None)],
            )
            .await
            .map_err(status)?;
        info!(node = r.node_id, "drain requested");
        let timeout = Duration::from_millis(if r.wait {
            r.timeout_ms.max(1) as u64
        } else {
            0
        });
        let (p, s) = self.wait_empty(r.node_id, timeout).await?;
        Ok(Response::new(DrainBrokerResponse {
            remaining_partitions: p,
            remaining_shards: s,
        }))
    }

    async fn undrain_broker(
        &self,
        req: Request<UndrainBrokerRequest>,
    ) -> Result<Response<UndrainBrokerResponse>, Status> {
        let node = req.into_inner().node_id;
        self.broker
            .meta
            .txn(vec![], vec![Op::Delete(keys::drain_key(node))])
            .await
            .map_err(status)?;
        info!(node, "drain lifted");
        Ok(Response::new(UndrainBrokerResponse {}))
    }

    async fn move_partition(
        &self,
        req: Request<MovePartitionRequest>,
    ) -> Result<Response<MovePartitionResponse>, Status> {
        let r = req.into_inner();
        let topic = self
            .broker
            .registry
            .topic(&r.topic)
            .ok_or_else(|| Status::not_found(format!("no topic '{}'", r.topic)))?;
        if r.partition < 0 || r.partition as usize >= topic.partitions.len() {
            return Err(Status::not_found(format!(
                "topic '{}' has no partition {}",
                r.topic, r.partition
            )));
        }
        let view = self.view().await?;
        let eligible = view.brokers.get(&r.to_node_id).is_some_and(|b| !b.leaving)
            && !view.drained.contains(&r.to_node_id);
        if !eligible {
            return Err(Status::failed_precondition(format!(
                "broker {} is not live, or is draining",
                r.to_node_id
            )));
        }
        let name = keys::PartitionId::new(&topic.id_text, r.partition);
        controller::apply(
            self.broker.meta.as_ref(),
            None,
            false,
            vec![(name, r.to_node_id)],
        )
        .await
        .map_err(apply_status)?;
        let view = self.view().await?;
        match view.owner(&topic.id_text, r.partition) {
            Some((node, epoch)) if node == r.to_node_id => {
                info!(
                    topic = r.topic,
                    partition = r.partition,
                    to = node,
                    epoch,
                    "partition moved"
                );
                Ok(Response::new(MovePartitionResponse {
                    leader_epoch: epoch,
                }))
            }
            _ => Err(Status::aborted("the partition did not move; try again")),
        }
    }

    async fn rebalance(
        &self,
        req: Request<RebalanceRequest>,
    ) -> Result<Response<RebalanceResponse>, Status> {
        if req.into_inner().dry_run {
            let (changed, load) = controller::propose(self.broker.meta.as_ref())
                .await
                .map_err(status)?;
            return Ok(Response::new(RebalanceResponse {
                moved_partitions: changed.partitions as u32,
                moved_shards: changed.shards as u32,
                load: load
                    .into_iter()
                    .map(|l| BrokerLoad {
                        node_id: l.node,
                        partitions_before: l.partitions_before as u32,
                        partitions_after: l.partitions_after as u32,
                        bytes_per_sec_before: l.bytes_per_sec_before,
                        bytes_per_sec_after: l.bytes_per_sec_after,
                    })
                    .collect(),
            }));
        }
        let changed = controller::apply(self.broker.meta.as_ref(), None, true, Vec::new())
            .await
            .map_err(apply_status)?;
        Ok(Response::new(RebalanceResponse {
            moved_partitions: changed.partitions as u32,
            moved_shards: changed.shards as u32,
            load: Vec::new(),
        }))
    }

    async fn ensure_topic(
        &self,
        req: Request<EnsureTopicRequest>,
    ) -> Result<Response<EnsureTopicResponse>, Status> {
        let r = req.into_inner();
        super::topics::ensure(&self.broker, r)
            .await
            .map(Response::new)
    }

    async fn delete_topic(
        &self,
        req: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let name = req.into_inner().name;
        super::topics::delete(&self.broker, &name)
            .await
            .map(Response::new)
    }

    async fn ensure_user(
        &self,
        req: Request<EnsureUserRequest>,
    ) -> Result<Response<EnsureUserResponse>, Status> {
        super::users::ensure(&self.broker, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_user(
        &self,
        req: Request<DeleteUserRequest>,
    ) -> Result<Response<DeleteUserResponse>, Status> {
        let name = req.into_inner().name;
        super::users::delete(&self.broker, &name)
            .await
            .map(Response::new)
    }
}

/// Serves the admin API on `addr` until `cancel`.
pub async fn serve(
    broker: Arc<Broker>,
    listener: tokio::net::TcpListener,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let security = AdminSecurity::from_settings(&broker.settings.server)?;
    let incoming = tokio_stream_from(listener);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = security.tls {
        server = server.tls_config(tls)?;
    }
    let token = security.token;
    let service =
        AdminServer::with_interceptor(AdminService { broker }, move |req| check_token(&token, req));
    server
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
        .await?;
    Ok(())
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}
