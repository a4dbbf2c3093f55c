//! The brokers' admin API (`proto/admin.proto`), the operator's only way into a cluster.
//! Any broker answers for the whole cluster, so the operator calls the client Service.

use std::sync::Arc;

mod grpc;
pub use grpc::Grpc;

use crate::cluster::plan::View;

/// How to reach one cluster's admin API.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// `https://host:port` (or `http://` on loopback, for tests and port-forwards).
    pub url: String,
    /// The CA of the admin certificate (the operator's own, from the admin Secret).
    pub ca_pem: Option<Vec<u8>>,
    /// Server name to check the certificate against.
    pub server_name: Option<String>,
    /// Bearer token.
    pub token: Option<String>,
}

/// Errors of admin calls.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Could not connect.
    #[error("admin API {0}: {1}")]
    Connect(String, String),
    /// The call failed.
    #[error("admin API call {0} failed: {1}")]
    Call(&'static str, tonic::Status),
}

/// What the operator asks of a cluster.
#[async_trait::async_trait]
pub trait Admin: Send + Sync {
    /// Brokers and ownership.
    async fn status(&self) -> Result<View, AdminError>;
    /// Starts draining a broker (does not wait).
    async fn drain(&self, id: i32) -> Result<(), AdminError>;
    /// Lets a broker take partitions again.
    async fn undrain(&self, id: i32) -> Result<(), AdminError>;
    /// Spreads partitions and shards evenly; returns (partitions, shards) moved.
    async fn rebalance(&self) -> Result<(u32, u32), AdminError>;
    /// What a rebalance would move now: (partitions, shards, [(broker, before, after)]).
    async fn propose(&self) -> Result<(u32, u32, Vec<(i32, u32, u32)>), AdminError>;
    /// Makes the topic what is asked (created, partitions added, configs set).
    async fn ensure_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &std::collections::BTreeMap<String, String>,
    ) -> Result<TopicState, AdminError>;
    /// Deletes a topic; `Ok(false)` when there was none.
    async fn delete_topic(&self, name: &str) -> Result<bool, AdminError>;
    /// Sets a user's SCRAM credential (when `scram` is given; none: no SCRAM credential)
    /// and exactly these ACLs.
    async fn ensure_user(
        &self,
        name: &str,
        scram: Option<Scram>,
        acls: &[AclSpec],
    ) -> Result<UserState, AdminError>;
    /// Removes a user's credentials and ACLs.
    async fn delete_user(&self, name: &str) -> Result<(), AdminError>;
}

/// Makes the admin client of a target: gRPC in the operator, a fake in unit tests.
pub type Connect = dyn Fn(&Target) -> Result<Arc<dyn Admin>, AdminError> + Send + Sync;

/// The gRPC [`Connect`].
pub fn connect_grpc(t: &Target) -> Result<Arc<dyn Admin>, AdminError> {
    Ok(Arc::new(grpc::Grpc::new(t)?))
}

/// What a topic is after [`Admin::ensure_topic`].
#[derive(Debug, Clone, PartialEq)]
pub struct TopicState {
    /// The topic id.
    pub id: String,
    /// Its partitions.
    pub partitions: i32,
    /// It was created by this call.
    pub created: bool,
    /// Config overrides that were set back to the request's.
    pub changed_configs: Vec<String>,
    /// Partitions added by this call.
    pub added_partitions: i32,
}

/// A SCRAM password for [`Admin::ensure_user`].
pub struct Scram {
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The password (from a Secret; never logged).
    pub password: String,
    /// PBKDF2 iterations; 0: the broker's default.
    pub iterations: u32,
}

impl std::fmt::Debug for Scram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scram")
            .field("mechanism", &self.mechanism)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// One ACL for [`Admin::ensure_user`] (one operation).
#[derive(Debug, Clone, PartialEq)]
pub struct AclSpec {
    /// topic, group, cluster, transactionalId.
    pub resource_type: String,
    /// The resource's name.
    pub resource_name: String,
    /// literal or prefixed.
    pub pattern: String,
    /// The operation.
    pub operation: String,
    /// allow or deny.
    pub permission: String,
    /// Host.
    pub host: String,
}

/// What [`Admin::ensure_user`] changed.
#[derive(Debug, Clone, PartialEq)]
pub struct UserState {
    /// ACLs in force.
    pub acls: u32,
    /// ACLs added.
    pub acls_added: u32,
    /// ACLs removed.
    pub acls_removed: u32,
    /// Mechanisms whose credential was set or removed.
    pub scram_changed: Vec<String>,
}

impl AdminError {
    /// Whether the broker refused the request itself (retrying the same will not help).
    pub fn refused(&self) -> Option<&str> {
        match self {
            AdminError::Call(_, s)
                if matches!(
                    s.code(),
                    tonic::Code::InvalidArgument
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::AlreadyExists
                ) =>
            {
                Some(s.message())
            }
            _ => None,
        }
    }
}
