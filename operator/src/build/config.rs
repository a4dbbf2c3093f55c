//! The brokers' server.properties (a ConfigMap) and its hash.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::{owned_meta, Names, ADMIN_DIR, ADMIN_PORT, DATA_DIR, HTTP_PORT};
use crate::crd::{Listener, StratusCluster};
use crate::quantity;

/// Settings the operator owns; `spec.config` may not set them (the CRD's CEL rule says
/// the same to `kubectl`).
pub const MANAGED: &[&str] = &[
    "node.id",
    "listeners",
    "advertised.listeners",
    "broker.rack",
    "object.store.url",
    "metadata.store.url",
    "admin.listener",
    "http.listener",
    "data.dir",
];

/// Where listener `name`'s certificate Secret is mounted.
pub fn tls_dir(listener: &str) -> String {
    format!("/etc/stratus/tls/{}", listener.to_ascii_lowercase())
}

/// Where the metadata store's TLS Secret is mounted.
pub const ETCD_TLS_DIR: &str = "/etc/stratus/etcd-tls";
/// Where the object store's CA Secret is mounted.
pub const STORE_CA_DIR: &str = "/etc/stratus/store-ca";

fn protocol(l: &Listener) -> &'static str {
    match (l.tls.is_some(), !l.sasl.is_empty()) {
        (false, false) => "PLAINTEXT",
        (true, false) => "SSL",
        (false, true) => "SASL_PLAINTEXT",
        (true, true) => "SASL_SSL",
    }
}

/// The broker settings of `c`, by Kafka property name. `node.id`, `broker.rack` and
/// `advertised.listeners` differ per pod and come from the environment
/// (`STRATUS_NODE_ID`, …; see [`super::stateful_set`]).
pub fn broker_properties(c: &StratusCluster) -> Result<BTreeMap<String, String>, String> {
    let names = Names::of(c);
    let spec = &c.spec;
    let mut p = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        p.insert(k.to_string(), v);
    };
    let listeners = spec.listeners_or_default();
    set(
        "listeners",
        listeners
            .iter()
            .map(|l| format!("{}://0.0.0.0:{}", l.name, l.port))
            .collect::<Vec<_>>()
            .join(","),
    );
    set(
        "listener.security.protocol.map",
        listeners
            .iter()
            .map(|l| format!("{}:{}", l.name, protocol(l)))
            .collect::<Vec<_>>()
            .join(","),
    );
    for l in &listeners {
        let prefix = format!("listener.name.{}.", l.name.to_ascii_lowercase());
        if let Some(tls) = &l.tls {
            set(&format!("{prefix}ssl.keystore.type"), "PEM".into());
            set(&format!("{prefix}ssl.keystore.location"), tls_dir(&l.name));
            let auth = tls.client_auth.clone().unwrap_or_else(|| "none".into());
            if auth != "none" {
                set(
                    &format!("{prefix}ssl.truststore.location"),
                    format!("{}/ca.crt", tls_dir(&l.name)),
                );
            }
            set(&format!("{prefix}ssl.client.auth"), auth);
        }
        if !l.sasl.is_empty() {
            set(
                &format!("{prefix}sasl.enabled.mechanisms"),
                l.sasl.join(","),
            );
        }
    }
    set("admin.listener", format!("0.0.0.0:{ADMIN_PORT}"));
    set(
        "admin.ssl.keystore.location",
        format!("{ADMIN_DIR}/admin.pem"),
    );
    set("admin.token.file", format!("{ADMIN_DIR}/token"));
    set("http.listener", format!("0.0.0.0:{HTTP_PORT}"));
    set("data.dir", DATA_DIR.into());
    set("log.format", "json".into());

    if spec
        .metadata
        .endpoints
        .iter()
        .any(|e| e.contains(['/', ',']))
    {
        return Err("metadata.endpoints: give each etcd endpoint as host:port".into());
    }
    let prefix = spec
        .metadata
        .prefix
        .clone()
        .unwrap_or_else(|| format!("stratus/{}/{}", names.namespace, names.cluster));
    set(
        "metadata.store.url",
        format!(
            "etcd://{}/{}",
            spec.metadata.endpoints.join(","),
            prefix.trim_matches('/')
        ),
    );
    if spec.metadata.tls_secret.is_some() {
        set("metadata.store.security.protocol", "SSL".into());
        set(
            "metadata.store.ssl.truststore.location",
            format!("{ETCD_TLS_DIR}/ca.crt"),
        );
    }
    set("object.store.url", spec.object_store.url.clone());
    if spec.object_store.ca_secret.is_some() {
        set(
            "object.store.ssl.truststore.location",
            format!("{STORE_CA_DIR}/ca.crt"),
        );
    }
    if let Some(cache) = &spec.cache {
        if let Some(m) = &cache.memory {
            set("cache.memory.bytes", quantity::bytes(m)?.to_string());
        }
        if let Some(d) = &cache.disk {
            set("cache.disk.bytes", quantity::bytes(d)?.to_string());
        }
    }
    for (k, v) in &spec.config {
        if MANAGED.contains(&k.as_str()) {
            return Err(format!(
                "config.{k} is managed by the operator; use the StratusCluster's own field"
            ));
        }
        p.insert(k.clone(), v.clone());
    }
    Ok(p)
}

/// server.properties text.
pub fn render(props: &BTreeMap<String, String>) -> String {
    let mut out =
        String::from("# Written by stratus-operator from the StratusCluster; edit that instead.\n");
    for (k, v) in props {
        out.push_str(&format!(
            "{k}={}\n",
            v.replace('\\', "\\\\").replace('\n', "\\n")
        ));
    }
    out
}

/// The ConfigMap holding server.properties.
pub fn config_map(c: &StratusCluster, props: &BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: owned_meta(c, Names::of(c).config()),
        data: Some(BTreeMap::from([(
            "server.properties".to_string(),
            render(props),
        )])),
        ..Default::default()
    }
}

/// A short hash of the settings: the pod template carries it, so that a settings change
/// makes a new StatefulSet revision and the operator rolls the brokers onto it.
pub fn config_hash(props: &BTreeMap<String, String>) -> String {
    let digest = Sha256::digest(render(props).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether going from `old` to `new` settings needs the brokers restarted. Every broker
/// setting is read at startup, so any change does; what changes live is not a setting:
/// certificates (re-read when their Secret's files change), SCRAM users, ACLs, quotas and
/// topic configs (Kafka's admin APIs).
pub fn restart_needed(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> bool {
    old != new
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::testing::cluster;
    use crate::crd::ListenerTls;

    #[test]
    fn settings_name_every_store_listener_and_endpoint() {
        let mut c = cluster("prod", 3);
        c.spec.listeners = vec![
            Listener {
                name: "INTERNAL".into(),
                port: 9092,
                tls: None,
                sasl: vec![],
            },
            Listener {
                name: "EXTERNAL".into(),
                port: 9093,
                tls: Some(ListenerTls {
                    secret_name: "prod-tls".into(),
                    client_auth: Some("required".into()),
                }),
                sasl: vec!["SCRAM-SHA-512".into()],
            },
        ];
        c.spec.config.insert("num.partitions".into(), "6".into());
        let p = broker_properties(&c).unwrap();
        assert_eq!(
            p["listeners"],
            "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9093"
        );
        assert_eq!(
            p["listener.security.protocol.map"],
            "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL"
        );
        assert_eq!(
            p["listener.name.external.ssl.keystore.location"],
            "/etc/stratus/tls/external"
        );
        assert_eq!(
            p["listener.name.external.ssl.truststore.location"],
            "/etc/stratus/tls/external/ca.crt"
        );
        assert_eq!(
            p["listener.name.external.sasl.enabled.mechanisms"],
            "SCRAM-SHA-512"
        );
        assert_eq!(
            p["metadata.store.url"],
            "etcd://etcd-0:2379,etcd-1:2379/stratus/kafka/prod"
        );
        assert_eq!(p["object.store.url"], "s3://bucket/prod");
        assert_eq!(p["num.partitions"], "6");
        assert_eq!(p["admin.listener"], "0.0.0.0:9645");
        assert!(p["admin.token.file"].starts_with(ADMIN_DIR));
    }

    #[test]
    fn managed_settings_and_bad_quantities_are_refused() {
        let mut c = cluster("a", 1);
        c.spec.config.insert("node.id".into(), "7".into());
        assert!(broker_properties(&c).unwrap_err().contains("node.id"));
        let mut c = cluster("a", 1);
        c.spec.cache = Some(crate::crd::Cache {
            memory: Some("lots".into()),
            ..Default::default()
        });
        assert!(broker_properties(&c).unwrap_err().contains("lots"));
    }

    #[test]
    fn the_hash_follows_the_settings_and_nothing_else() {
        let a = cluster("a", 1);
        let mut b = cluster("a", 5);
        let pa = broker_properties(&a).unwrap();
        assert_eq!(
            config_hash(&pa),
            config_hash(&broker_properties(&b).unwrap())
        );
        b.spec
            .config
            .insert("log.retention.ms".into(), "1000".into());
        let pb = broker_properties(&b).unwrap();
        assert_ne!(config_hash(&pa), config_hash(&pb));
        assert!(restart_needed(&pa, &pb));
        assert!(!restart_needed(&pa, &pa.clone()));
    }
}
