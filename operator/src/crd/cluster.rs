//! `StratusCluster`: a set of brokers sharing one bucket and one metadata store.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Condition;

/// A Stratus cluster: brokers (a StatefulSet the operator owns), the bucket that holds the
/// data, the metadata store, listeners and settings. Scaling it (`kubectl scale`, an HPA)
/// drains leaving brokers and rebalances onto new ones; nothing is copied.
// Each printcolumn(...) repeats `type_ = ...`, which clippy takes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "stratus.io",
    version = "v1alpha1",
    kind = "StratusCluster",
    namespaced,
    status = "StratusClusterStatus",
    shortname = "sc",
    category = "stratus",
    derive = "PartialEq",
    doc = "A Stratus cluster: stateless brokers over an object-store bucket and a metadata store.",
    scale(
        spec_replicas_path = ".spec.brokers",
        status_replicas_path = ".status.brokers",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Brokers", type_ = "integer", json_path = ".spec.brokers"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyBrokers"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Bootstrap",
        type_ = "string",
        json_path = ".status.bootstrap",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct StratusClusterSpec {
    /// Number of brokers (the `/scale` subresource's replicas).
    #[schemars(range(min = 0, max = 1000))]
    pub brokers: i32,
    /// Broker image; the operator's own default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image pull policy (Always, IfNotPresent, Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Names of Secrets to pull the image with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// CPU and memory of each broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Where the data lives. The bucket cannot change once set.
    pub object_store: ObjectStore,
    /// The metadata store (etcd).
    pub metadata: Metadata,
    /// Kafka listeners; one PLAINTEXT listener on 9092 when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Listener>,
    /// Local cache sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Cache>,
    /// Broker settings with Apache Kafka's property names (`num.partitions`,
    /// `log.retention.ms`, `super.users`, …). Settings the operator manages (listeners,
    /// `node.id`, stores) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new(
        "self.all(k, !(k in ['node.id', 'listeners', 'advertised.listeners', 'broker.rack', 'object.store.url', 'metadata.store.url', 'admin.listener', 'http.listener', 'data.dir']))"
    ).message("this setting is managed by the operator; use the StratusCluster's own field"))]
    pub config: BTreeMap<String, String>,
    /// Spread brokers over zones and set `broker.rack` from the node's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<Rack>,
    /// An HorizontalPodAutoscaler on this cluster's `/scale` (the operator makes it): each
    /// step drains or rebalances like `kubectl scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Rebalance by itself whenever the brokers' plan would move something: measured
    /// traffic (bytes per second in and out) uneven across brokers, or partition counts
    /// after scaling up, a roll, or moves made by hand; default true. False: only
    /// StratusRebalance does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rebalance: Option<bool>,
    /// What happens to a Kafka topic when its StratusTopic is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_deletion: Option<TopicDeletion>,
    /// Extra pod settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodOverrides>,
}

/// The bucket and how to reach it.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStore {
    /// `s3://bucket/prefix`. Immutable: the data is there.
    #[x_kube(validation = Rule::new("self == oldSelf").message("the bucket cannot change: the cluster's data is in it"))]
    #[schemars(length(min = 6))]
    pub url: String,
    /// S3 endpoint for a non-AWS store (MinIO, Ceph, R2…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region (`AWS_REGION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`; unset: the pod's
    /// own identity (IRSA, workload identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// A Secret whose `ca.crt` is trusted for an `https://` endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<String>,
}

/// The etcd cluster holding metadata.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// etcd client endpoints, `host:port`.
    #[schemars(length(min = 1))]
    pub endpoints: Vec<String>,
    /// Key prefix of this cluster in etcd (default: the namespace and name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A Secret with `ca.crt` (and `tls.crt`, `tls.key` for client certificates): etcd over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
    /// A Secret with `username` and `password` for etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

/// One Kafka listener.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Listener name (upper case, as in `listeners`: `PLAIN`, `INTERNAL`, `EXTERNAL`).
    #[schemars(regex(pattern = r"^[A-Z][A-Z0-9_]{0,31}$"))]
    pub name: String,
    /// Port on every broker.
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// TLS on this listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// SASL mechanisms offered (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER); none:
    /// no SASL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sasl: Vec<String>,
}

/// A listener's certificate.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`, optionally `ca.crt`), as
    /// cert-manager writes it.
    pub secret_name: String,
    /// Client certificates: `none`, `requested` or `required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^(none|requested|required)$"))]
    pub client_auth: Option<String>,
}

/// Local cache sizes (Kubernetes quantities).
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Cache {
    /// Memory cache (`cache.memory.bytes`), e.g. `512Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Disk cache on the pod's emptyDir (`cache.disk.bytes`), e.g. `20Gi`; also the
    /// emptyDir's size limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// Put the disk cache in memory (emptyDir medium Memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_memory: Option<bool>,
}

/// Autoscaling bounds and targets.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minBrokers <= self.maxBrokers").message("minBrokers must not exceed maxBrokers"))]
pub struct Autoscaling {
    /// Fewest brokers.
    #[schemars(range(min = 1))]
    pub min_brokers: i32,
    /// Most brokers.
    #[schemars(range(min = 1, max = 1000))]
    pub max_brokers: i32,
    /// Average CPU utilization (percent of requests) to keep; default 70.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: Option<i32>,
    /// Records produced per second per broker to keep (`stratus_broker_messages_in_per_second`, served to
    /// the HPA by a metrics adapter such as prometheus-adapter); unset: CPU only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_messages_in_per_second: Option<String>,
    /// Seconds of lower recommendations before scaling down (default 600): no flapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: Option<i32>,
}

/// Zone awareness.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rack {
    /// Node label whose value is the broker's rack (default `topology.kubernetes.io/zone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_key: Option<String>,
}

/// Whether deleting a StratusTopic deletes the topic.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default,
)]
pub enum TopicDeletion {
    /// The Kafka topic goes with its StratusTopic.
    #[default]
    Delete,
    /// The Kafka topic stays.
    Keep,
}

/// Pod settings merged into every broker pod.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Extra pod labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations (Kubernetes' own schema; checked when the StatefulSet is applied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "any_objects")]
    pub tolerations: Vec<Toleration>,
    /// Affinity (Kubernetes' own schema; checked when the StatefulSet is applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub affinity: Option<Affinity>,
    /// Priority class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Extra environment variables of the broker container.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Seconds a broker gets to hand its partitions over when stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
}

/// A Kubernetes object the API server checks where it is used (a StatefulSet field): its
/// whole OpenAPI schema copied into the CRD would be most of the CRD.
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// A list of such objects.
fn any_objects(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

/// What the operator last saw and did.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StratusClusterStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Brokers that exist (the `/scale` subresource's status replicas).
    #[serde(default)]
    pub brokers: i32,
    /// Brokers that are ready.
    #[serde(default)]
    pub ready_brokers: i32,
    /// Label selector of the broker pods (for the HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `bootstrap.servers` for clients inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<String>,
    /// Brokers being drained before their pods go (scale-down in progress).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<i32>,
    /// The broker a roll restarted last, until it is back as a new process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarting: Option<Restarting>,
    /// Hash of the broker configuration the running pods should have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Ready, Reconciling, Degraded, Scaling, Rolling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A broker restarted by a roll.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Restarting {
    /// Its id.
    pub broker: i32,
    /// Its incarnation before the restart.
    pub incarnation: i64,
}

impl StratusClusterSpec {
    /// The listeners, or the default one.
    pub fn listeners_or_default(&self) -> Vec<Listener> {
        if self.listeners.is_empty() {
            vec![Listener {
                name: "PLAINTEXT".into(),
                port: 9092,
                tls: None,
                sasl: Vec::new(),
            }]
        } else {
            self.listeners.clone()
        }
    }
}
