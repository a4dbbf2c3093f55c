//! The admin API over gRPC (TLS and a bearer token, or plain HTTP/2 on loopback).

use std::time::Duration;

use stratus_proto as pb;
use stratus_proto::admin_client::AdminClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::{AclSpec, Admin, AdminError, Scram, Target, TopicState, UserState};
use crate::cluster::plan::{BrokerState, View};

/// The gRPC client.
pub struct Grpc {
    client: AdminClient<Channel>,
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    url: String,
}

impl Grpc {
    /// A lazily connected client of `t`.
    pub fn new(t: &Target) -> Result<Self, AdminError> {
        let err = |e: &dyn std::fmt::Display| AdminError::Connect(t.url.clone(), e.to_string());
        let mut endpoint = Endpoint::from_shared(t.url.clone())
            .map_err(|e| err(&e))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(15));
        if let Some(ca) = &t.ca_pem {
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            if let Some(name) = &t.server_name {
                tls = tls.domain_name(name.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| err(&e))?;
        }
        let token = match &t.token {
            Some(tok) => Some(
                format!("Bearer {tok}")
                    .parse()
                    .map_err(|_| err(&"the token is not ASCII"))?,
            ),
            None => None,
        };
        Ok(Grpc {
            client: AdminClient::new(endpoint.connect_lazy()),
            token,
            url: t.url.clone(),
        })
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        r
    }

    /// The URL called.
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[async_trait::async_trait]
impl Admin for Grpc {
    async fn status(&self) -> Result<View, AdminError> {
        let r = self
            .client
            .clone()
            .cluster_status(self.request(pb::ClusterStatusRequest {}))
            .await
            .map_err(|e| AdminError::Call("ClusterStatus", e))?
            .into_inner();
        Ok(View {
            brokers: r
                .brokers
                .iter()
                .map(|b| BrokerState {
                    id: b.node_id,
                    alive: b.alive,
                    draining: b.draining,
                    partitions: b.partitions,
                    shards: b.coordinator_shards,
                    incarnation: b.incarnation,
                })
                .collect(),
            unassigned: r.unassigned_partitions,
            controller: r.controller_id,
            rebalance_moves: r.rebalance_moves,
        })
    }

    async fn drain(&self, id: i32) -> Result<(), AdminError> {
        self.client
            .clone()
            .drain_broker(self.request(pb::DrainBrokerRequest {
                node_id: id,
                wait: false,
                timeout_ms: 0,
            }))
            .await
            .map_err(|e| AdminError::Call("DrainBroker", e))?;
        Ok(())
    }

    async fn undrain(&self, id: i32) -> Result<(), AdminError> {
        self.client
            .clone()
            .undrain_broker(self.request(pb::UndrainBrokerRequest { node_id: id }))
            .await
            .map_err(|e| AdminError::Call("UndrainBroker", e))?;
        Ok(())
    }

    async fn rebalance(&self) -> Result<(u32, u32), AdminError> {
        let r = self
            .client
            .clone()
            .rebalance(self.request(pb::RebalanceRequest { dry_run: false }))
            .await
            .map_err(|e| AdminError::Call("Rebalance", e))?
            .into_inner();
        Ok((r.moved_partitions, r.moved_shards))
    }

    /// Makes the topic what is asked (created, partitions added, configs set).
    async fn ensure_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &std::collections::BTreeMap<String, String>,
    ) -> Result<TopicState, AdminError> {
        let r = self
            .client
            .clone()
            .ensure_topic(self.request(pb::EnsureTopicRequest {
                name: name.into(),
                partitions,
                replication_factor,
                configs: configs.clone().into_iter().collect(),
            }))
            .await
            .map_err(|e| AdminError::Call("EnsureTopic", e))?
            .into_inner();
        Ok(TopicState {
            id: r.topic_id,
            partitions: r.partitions,
            created: r.created,
            changed_configs: r.changed_configs,
            added_partitions: r.added_partitions,
        })
    }

    /// Deletes a topic; `Ok(false)` when there was none.
    async fn delete_topic(&self, name: &str) -> Result<bool, AdminError> {
        match self
            .client
            .clone()
            .delete_topic(self.request(pb::DeleteTopicRequest { name: name.into() }))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(AdminError::Call("DeleteTopic", s)),
        }
    }

    /// What a rebalance would move now: (partitions, shards, [(broker, before, after)]).
    async fn propose(&self) -> Result<(u32, u32, Vec<(i32, u32, u32)>), AdminError> {
        let r = self
            .client
            .clone()
            .rebalance(self.request(pb::RebalanceRequest { dry_run: true }))
            .await
            .map_err(|e| AdminError::Call("Rebalance", e))?
            .into_inner();
        let load = r
            .load
            .iter()
            .map(|l| (l.node_id, l.partitions_before, l.partitions_after))
            .collect();
        Ok((r.moved_partitions, r.moved_shards, load))
    }
    /// Sets a user's SCRAM credential (when `scram` is given; none: no SCRAM credential)
    /// and exactly these ACLs.
    async fn ensure_user(
        &self,
        name: &str,
        scram: Option<Scram>,
        acls: &[AclSpec],
    ) -> Result<UserState, AdminError> {
        let r = self
            .client
            .clone()
            .ensure_user(
                self.request(pb::EnsureUserRequest {
                    name: name.into(),
                    scram: scram
                        .into_iter()
                        .map(|s| pb::ScramPassword {
                            mechanism: s.mechanism,
                            password: s.password,
                            iterations: s.iterations,
                        })
                        .collect(),
                    manage_scram: true,
                    acls: acls
                        .iter()
                        .map(|a| pb::AclEntry {
                            resource_type: a.resource_type.clone(),
                            resource_name: a.resource_name.clone(),
                            pattern: a.pattern.clone(),
                            operation: a.operation.clone(),
                            permission: a.permission.clone(),
                            host: a.host.clone(),
                        })
                        .collect(),
                }),
            )
            .await
            .map_err(|e| AdminError::Call("EnsureUser", e))?
            .into_inner();
        Ok(UserState {
            acls: r.acls,
            acls_added: r.acls_added,
            acls_removed: r.acls_removed,
            scram_changed: r.scram_changed,
        })
    }

    /// Removes a user's credentials and ACLs.
    async fn delete_user(&self, name: &str) -> Result<(), AdminError> {
        self.client
            .clone()
            .delete_user(self.request(pb::DeleteUserRequest { name: name.into() }))
            .await
            .map_err(|e| AdminError::Call("DeleteUser", e))?;
        Ok(())
    }
}
