//! `StratusUser`: SCRAM credentials and ACLs of one principal.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Condition;

/// A Kafka user: its SCRAM credentials (the password comes from a Secret) and its ACLs.
// Each printcolumn(...) repeats `type_ = ...`, which clippy takes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "stratus.io",
    version = "v1alpha1",
    kind = "StratusUser",
    namespaced,
    status = "StratusUserStatus",
    shortname = "su",
    category = "stratus",
    derive = "PartialEq",
    doc = "A Kafka user (SCRAM credentials, ACLs) of a StratusCluster in the same namespace.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct StratusUserSpec {
    /// The StratusCluster (same namespace).
    #[x_kube(validation = Rule::new("self == oldSelf").message("a user cannot move to another cluster"))]
    pub cluster: String,
    /// The user name; the resource's name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("a user cannot be renamed"))]
    pub username: Option<String>,
    /// SCRAM credentials; none: the user authenticates another way (mTLS, OAuth) and only
    /// gets ACLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scram: Option<Scram>,
    /// ACLs of `User:<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<Acl>,
}

/// SCRAM credentials.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Scram {
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[schemars(regex(pattern = "^SCRAM-SHA-(256|512)$"))]
    pub mechanism: String,
    /// The Secret holding the password.
    pub password_secret: SecretKey,
    /// PBKDF2 iterations (default 8192, at least 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 4096, max = 16384))]
    pub iterations: Option<i32>,
}

/// A key of a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKey {
    /// The Secret's name.
    pub name: String,
    /// The key (default `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// One ACL binding, as `kafka-acls` takes it.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Acl {
    /// `topic`, `group`, `cluster` or `transactionalId`.
    #[schemars(regex(pattern = "^(topic|group|cluster|transactionalId)$"))]
    pub resource_type: String,
    /// The resource's name (`kafka-cluster` for the cluster); `*` for all.
    pub resource_name: String,
    /// `literal` (default) or `prefixed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^(literal|prefixed)$"))]
    pub pattern: Option<String>,
    /// Operations: Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite, All.
    #[schemars(length(min = 1))]
    pub operations: Vec<String>,
    /// `allow` (default) or `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^(allow|deny)$"))]
    pub permission: Option<String>,
    /// Host (default `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// What the user is in Kafka.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StratusUserStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The principal, `User:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The password Secret's resourceVersion the credential was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_version: Option<String>,
    /// ACLs in force.
    #[serde(default)]
    pub acls: i32,
    /// Ready, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl StratusUser {
    /// The user name.
    pub fn username(&self) -> String {
        self.spec
            .username
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}
