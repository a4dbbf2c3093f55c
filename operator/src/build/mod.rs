//! What a StratusCluster becomes: pure functions from the resource to the Kubernetes
//! objects the operator applies (server-side apply, field manager `stratus-operator`).
//! Nothing here talks to the API server, so every object is checked by unit tests.

mod config;
mod hpa;
mod pod;
mod services;

pub use config::{broker_properties, config_hash, config_map, restart_needed};
pub use hpa::autoscaler;
pub use pod::{pod_disruption_budget, service_account, stateful_set, template_annotations};
pub use services::{bootstrap, client_service, headless_service};

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::crd::StratusCluster;

/// The HTTP port of every broker (`/metrics`, `/livez`, `/readyz`).
pub const HTTP_PORT: i32 = 9644;
/// The admin gRPC port of every broker.
pub const ADMIN_PORT: i32 = 9645;
/// Where the pod's emptyDir (data.dir: WAL staging, disk cache) is mounted.
pub const DATA_DIR: &str = "/var/lib/stratus";
/// Where the generated server.properties is mounted.
pub const CONFIG_DIR: &str = "/etc/stratus";
/// Where the admin API's certificate and token are mounted.
pub const ADMIN_DIR: &str = "/etc/stratus/admin";
/// The label on StatefulSet pods that carries their ordinal (Kubernetes ≥ 1.28).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Pod-template annotation with the hash of everything that needs a restart to change.
pub const CONFIG_HASH_ANNOTATION: &str = "stratus.io/config-hash";

/// Names and settings every object of one cluster shares.
#[derive(Debug, Clone)]
pub struct Names {
    /// The StratusCluster's name.
    pub cluster: String,
    /// Its namespace.
    pub namespace: String,
}

impl Names {
    /// Of a cluster resource.
    pub fn of(c: &StratusCluster) -> Self {
        Names {
            cluster: c.metadata.name.clone().unwrap_or_default(),
            namespace: c
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
        }
    }
    /// The StatefulSet (and its pods' prefix, the PDB and the ServiceAccount).
    pub fn brokers(&self) -> String {
        format!("{}-broker", self.cluster)
    }
    /// The headless Service giving each broker its DNS name.
    pub fn headless(&self) -> String {
        format!("{}-brokers", self.cluster)
    }
    /// The client Service (bootstrap).
    pub fn client(&self) -> String {
        self.cluster.clone()
    }
    /// The ConfigMap with server.properties.
    pub fn config(&self) -> String {
        format!("{}-config", self.cluster)
    }
    /// The Secret with the admin API's certificate and token.
    pub fn admin_secret(&self) -> String {
        format!("{}-admin", self.cluster)
    }
    /// Pod `ordinal`'s name.
    pub fn pod(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.brokers())
    }
    /// Pod `ordinal`'s stable DNS name.
    pub fn pod_host(&self, ordinal: i32) -> String {
        format!(
            "{}.{}.{}.svc",
            self.pod(ordinal),
            self.headless(),
            self.namespace
        )
    }
    /// The admin API through the client Service.
    pub fn admin_host(&self) -> String {
        format!("{}.{}.svc", self.client(), self.namespace)
    }
    /// Labels selecting this cluster's broker pods.
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "stratus".to_string()),
            (
                "app.kubernetes.io/instance".to_string(),
                self.cluster.clone(),
            ),
            (
                "app.kubernetes.io/component".to_string(),
                "broker".to_string(),
            ),
        ])
    }
    /// The selector as a label-selector string (status.selector, for the HPA).
    pub fn selector_string(&self) -> String {
        self.selector()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
    /// Labels of every object.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut l = self.selector();
        l.insert(
            "app.kubernetes.io/managed-by".into(),
            "stratus-operator".into(),
        );
        l
    }
}

/// Metadata of an object owned by `c` (deleted with it by the garbage collector).
pub fn owned_meta(c: &StratusCluster, name: String) -> ObjectMeta {
    let names = Names::of(c);
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(names.labels()),
        owner_references: owner(c).map(|o| vec![o]),
        ..Default::default()
    }
}

fn owner(c: &StratusCluster) -> Option<OwnerReference> {
    let mut o = c.controller_owner_ref(&())?;
    o.block_owner_deletion = Some(true);
    Some(o)
}
