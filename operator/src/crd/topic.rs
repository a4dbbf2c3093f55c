//! `StratusTopic`: a Kafka topic of a StratusCluster.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Condition;

/// A Kafka topic, kept as the spec says; changes made with Kafka tools show in status
/// and are put back.
// Each printcolumn(...) repeats `type_ = ...`, which clippy takes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "stratus.io",
    version = "v1alpha1",
    kind = "StratusTopic",
    namespaced,
    status = "StratusTopicStatus",
    shortname = "st",
    category = "stratus",
    derive = "PartialEq",
    doc = "A Kafka topic of a StratusCluster in the same namespace.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".spec.partitions"),
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
pub struct StratusTopicSpec {
    /// The StratusCluster (same namespace).
    #[x_kube(validation = Rule::new("self == oldSelf").message("a topic cannot move to another cluster"))]
    pub cluster: String,
    /// The Kafka topic's name; the resource's name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("a topic cannot be renamed"))]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    pub topic_name: Option<String>,
    /// Partitions; can grow, never shrink.
    #[x_kube(validation = Rule::new("self >= oldSelf").message("partitions can be added, never removed"))]
    #[schemars(range(min = 1, max = 100000))]
    pub partitions: i32,
    /// Accepted for compatibility with Kafka tooling: durability comes from the object
    /// store, whatever the factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// Topic configs with Kafka's names (`retention.ms`, `cleanup.policy`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// What the topic is in Kafka.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StratusTopicStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Kafka topic's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// The topic's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// Partitions the topic has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Configs found changed outside this resource (and put back), last time seen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// Ready, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl StratusTopic {
    /// The Kafka topic's name.
    pub fn topic_name(&self) -> String {
        self.spec
            .topic_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}
