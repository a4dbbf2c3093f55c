//! `StratusRebalance`: a proposal to spread partitions evenly, run once approved.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Condition;

/// The annotation that approves a proposal (`kubectl annotate stratusrebalance NAME
/// stratus.io/rebalance=approve`); `refresh` computes a new proposal.
pub const REBALANCE_ANNOTATION: &str = "stratus.io/rebalance";

/// A rebalance of a StratusCluster: the operator computes a proposal from the admin API
/// (which partitions and coordinator shards would move where), waits for the approval
/// annotation, then moves them. Moves change ownership only: nothing is copied.
// Each printcolumn(...) repeats `type_ = ...`, which clippy takes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "stratus.io",
    version = "v1alpha1",
    kind = "StratusRebalance",
    namespaced,
    status = "StratusRebalanceStatus",
    shortname = "sr",
    category = "stratus",
    derive = "PartialEq",
    doc = "A rebalance of a StratusCluster: proposed, approved by annotation, executed.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Moves",
        type_ = "integer",
        json_path = ".status.proposal.partitionMoves"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct StratusRebalanceSpec {
    /// The StratusCluster (same namespace).
    pub cluster: String,
    /// Approve the proposal without the annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<bool>,
}

/// Where a rebalance stands.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StratusRebalanceStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `ProposalReady`, `Rebalancing`, `Ready` (done) or `NotReady` (failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// What would move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<Proposal>,
    /// Ready, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A computed rebalance.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Proposal {
    /// Partitions that would change owner.
    pub partition_moves: i32,
    /// Coordinator shards that would change owner.
    pub shard_moves: i32,
    /// Partitions per broker now, `id=count`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<String>,
    /// Partitions per broker after, `id=count`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}
