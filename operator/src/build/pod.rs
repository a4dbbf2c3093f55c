//! The brokers' StatefulSet, their PodDisruptionBudget and ServiceAccount.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, LocalObjectReference, ObjectFieldSelector, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector, SecretVolumeSource,
    SecurityContext, ServiceAccount, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{tls_dir, ETCD_TLS_DIR, STORE_CA_DIR};
use super::{
    owned_meta, Names, ADMIN_DIR, ADMIN_PORT, CONFIG_DIR, CONFIG_HASH_ANNOTATION, DATA_DIR,
    HTTP_PORT, POD_INDEX_LABEL,
};
use crate::crd::StratusCluster;

/// The node label the rack comes from unless `spec.rack.topologyKey` says otherwise.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn secret_env(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(optional),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: impl Into<String>) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(HTTP_PORT),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(3),
        ..Default::default()
    }
}

/// The broker container's environment: per-pod settings from the downward API, store
/// credentials from Secrets, then the user's extra variables.
fn environment(c: &StratusCluster, names: &Names) -> Vec<EnvVar> {
    let spec = &c.spec;
    let mut out = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env(
            "STRATUS_NODE_ID",
            &format!("metadata.labels['{POD_INDEX_LABEL}']"),
        ),
    ];
    let advertised = spec
        .listeners_or_default()
        .iter()
        .map(|l| {
            format!(
                "{}://$(POD_NAME).{}.{}.svc:{}",
                l.name,
                names.headless(),
                names.namespace,
                l.port
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    out.push(env("STRATUS_ADVERTISED_LISTENERS", advertised));
    if let Some(rack) = &spec.rack {
        // The pod carries its node's zone and region labels from binding on
        // (PodTopologyLabels admission, Kubernetes ≥ 1.33).
        let key = rack.topology_key.as_deref().unwrap_or(ZONE_LABEL);
        out.push(field_env(
            "STRATUS_BROKER_RACK",
            &format!("metadata.labels['{key}']"),
        ));
    }
    let store = &spec.object_store;
    if let Some(e) = &store.endpoint {
        out.push(env("AWS_ENDPOINT_URL", e.clone()));
        if e.starts_with("http://") {
            out.push(env("AWS_ALLOW_HTTP", "true"));
        }
    }
    if let Some(r) = &store.region {
        out.push(env("AWS_REGION", r.clone()));
    }
    if let Some(s) = &store.credentials_secret {
        out.push(secret_env(
            "AWS_ACCESS_KEY_ID",
            s,
            "AWS_ACCESS_KEY_ID",
            false,
        ));
        out.push(secret_env(
            "AWS_SECRET_ACCESS_KEY",
            s,
            "AWS_SECRET_ACCESS_KEY",
            false,
        ));
    }
    if let Some(s) = &spec.metadata.credentials_secret {
        out.push(secret_env("ETCD_USERNAME", s, "username", false));
        out.push(secret_env("ETCD_PASSWORD", s, "password", false));
    }
    if let Some(o) = &spec.pod_template {
        out.extend(o.env.iter().map(|(k, v)| env(k, v.clone())));
    }
    out
}

/// Volumes and where the broker container mounts them.
fn volumes(c: &StratusCluster, names: &Names) -> (Vec<Volume>, Vec<VolumeMount>) {
    let spec = &c.spec;
    let cache = spec.cache.clone().unwrap_or_default();
    let mut vols = vec![
        Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: cache.in_memory.filter(|m| *m).map(|_| "Memory".to_string()),
                size_limit: cache.disk.clone().map(Quantity),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.config(),
                ..Default::default()
            }),
            ..Default::default()
        },
        secret_volume("admin", &names.admin_secret()),
    ];
    let mut mounts = vec![
        VolumeMount {
            name: "data".into(),
            mount_path: DATA_DIR.into(),
            ..Default::default()
        },
        mount("config", CONFIG_DIR),
        mount("admin", ADMIN_DIR),
    ];
    for l in spec.listeners_or_default() {
        if let Some(tls) = &l.tls {
            let name = format!("tls-{}", l.name.to_ascii_lowercase().replace('_', "-"));
            vols.push(secret_volume(&name, &tls.secret_name));
            mounts.push(mount(&name, tls_dir(&l.name)));
        }
    }
    if let Some(s) = &spec.metadata.tls_secret {
        vols.push(secret_volume("etcd-tls", s));
        mounts.push(mount("etcd-tls", ETCD_TLS_DIR));
    }
    if let Some(s) = &spec.object_store.ca_secret {
        vols.push(secret_volume("store-ca", s));
        mounts.push(mount("store-ca", STORE_CA_DIR));
    }
    (vols, mounts)
}

/// The brokers' StatefulSet. `image` is the operator's default image; `config_hash`
/// goes on the pod template so that a settings change is a new revision. Pods are
/// replaced by the operator, one at a time (`OnDelete`), never by the StatefulSet
/// controller; `replicas` is what the operator decided (a scale-down keeps leaving
/// brokers until they are drained).
pub fn stateful_set(
    c: &StratusCluster,
    image: &str,
    replicas: i32,
    config_hash: &str,
) -> StatefulSet {
    let names = Names::of(c);
    let spec = &c.spec;
    let overrides = spec.pod_template.clone().unwrap_or_default();
    let mut labels = names.selector();
    labels.extend(overrides.labels.clone());
    let mut annotations = overrides.annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.into());
    annotations.insert("prometheus.io/scrape".into(), "true".into());
    annotations.insert("prometheus.io/port".into(), HTTP_PORT.to_string());
    let (vols, mounts) = volumes(c, &names);
    let mut ports: Vec<ContainerPort> = spec
        .listeners_or_default()
        .iter()
        .map(|l| ContainerPort {
            name: Some(format!("kafka-{}", l.port)),
            container_port: l.port,
            ..Default::default()
        })
        .collect();
    ports.push(ContainerPort {
        name: Some("http".into()),
        container_port: HTTP_PORT,
        ..Default::default()
    });
    ports.push(ContainerPort {
        name: Some("admin".into()),
        container_port: ADMIN_PORT,
        ..Default::default()
    });
    let container = Container {
        name: "broker".into(),
        image: Some(spec.image.clone().unwrap_or_else(|| image.to_string())),
        image_pull_policy: spec.image_pull_policy.clone(),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/server.properties"),
        ]),
        env: Some(environment(c, &names)),
        ports: Some(ports),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        liveness_probe: Some(http_probe("/livez", 10, 6)),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        startup_probe: Some(http_probe("/livez", 2, 60)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let selector = LabelSelector {
        match_labels: Some(names.selector()),
        ..Default::default()
    };
    let spread = |key: &str| TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(selector.clone()),
        ..Default::default()
    };
    let mut constraints = vec![spread("kubernetes.io/hostname")];
    if let Some(rack) = &spec.rack {
        constraints.push(spread(rack.topology_key.as_deref().unwrap_or(ZONE_LABEL)));
    }
    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(vols),
        service_account_name: Some(names.brokers()),
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(
            overrides.termination_grace_period_seconds.unwrap_or(60),
        ),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            fs_group: Some(65532),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        topology_spread_constraints: Some(constraints),
        node_selector: Some(overrides.node_selector.clone()).filter(|m| !m.is_empty()),
        tolerations: Some(overrides.tolerations.clone()).filter(|t| !t.is_empty()),
        affinity: overrides.affinity.clone(),
        priority_class_name: overrides.priority_class_name.clone(),
        image_pull_secrets: Some(
            spec.image_pull_secrets
                .iter()
                .map(|s| LocalObjectReference { name: s.clone() })
                .collect::<Vec<_>>(),
        )
        .filter(|v| !v.is_empty()),
        ..Default::default()
    };
    StatefulSet {
        metadata: owned_meta(c, names.brokers()),
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            selector,
            service_name: Some(names.headless()),
            // Brokers start together: each is stateless and waits for nothing.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// At most one broker down at a time by voluntary disruptions (node drains).
pub fn pod_disruption_budget(c: &StratusCluster) -> PodDisruptionBudget {
    let names = Names::of(c);
    PodDisruptionBudget {
        metadata: owned_meta(c, names.brokers()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(names.selector()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The brokers' ServiceAccount: it needs no API access (no token is mounted).
pub fn service_account(c: &StratusCluster) -> ServiceAccount {
    ServiceAccount {
        metadata: owned_meta(c, Names::of(c).brokers()),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// The pod template's annotations, for tests and status.
pub fn template_annotations(s: &StatefulSet) -> BTreeMap<String, String> {
    s.spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::testing::cluster;
    use crate::crd::Rack;

    fn container(s: &StatefulSet) -> Container {
        s.spec.template.spec.as_ref().unwrap().containers[0].clone()
    }

    fn env_of(c: &Container, name: &str) -> EnvVar {
        c.env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .clone()
    }

    #[test]
    fn brokers_get_ids_addresses_and_probes_per_pod() {
        let c = cluster("prod", 3);
        let s = stateful_set(&c, "stratus:dev", 3, "abc");
        let spec = &s.spec;
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("prod-brokers"));
        assert_eq!(
            spec.update_strategy.as_ref().unwrap().type_.as_deref(),
            Some("OnDelete")
        );
        let k = container(&s);
        assert_eq!(k.image.as_deref(), Some("stratus:dev"));
        let id = env_of(&k, "STRATUS_NODE_ID");
        assert_eq!(
            id.value_from.unwrap().field_ref.unwrap().field_path,
            "metadata.labels['apps.kubernetes.io/pod-index']"
        );
        assert_eq!(
            env_of(&k, "STRATUS_ADVERTISED_LISTENERS").value.unwrap(),
            "PLAINTEXT://$(POD_NAME).prod-brokers.kafka.svc:9092"
        );
        let creds = env_of(&k, "AWS_SECRET_ACCESS_KEY").value_from.unwrap();
        assert_eq!(creds.secret_key_ref.unwrap().name, "s3-creds");
        let ready = k.readiness_probe.unwrap().http_get.unwrap();
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        assert_eq!(ready.port, IntOrString::Int(9644));
        assert_eq!(template_annotations(&s)[CONFIG_HASH_ANNOTATION], "abc");
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "StratusCluster");
        assert_eq!(owner.controller, Some(true));
    }

    #[test]
    fn racks_come_from_the_zone_and_pods_spread_over_zones() {
        let mut c = cluster("prod", 3);
        c.spec.rack = Some(Rack { topology_key: None });
        let s = stateful_set(&c, "img", 3, "h");
        let k = container(&s);
        let rack = env_of(&k, "STRATUS_BROKER_RACK").value_from.unwrap();
        assert_eq!(
            rack.field_ref.unwrap().field_path,
            "metadata.labels['topology.kubernetes.io/zone']"
        );
        let pod = s.spec.template.spec.unwrap();
        let keys: Vec<_> = pod
            .topology_spread_constraints
            .unwrap()
            .iter()
            .map(|t| t.topology_key.clone())
            .collect();
        assert!(keys.contains(&ZONE_LABEL.to_string()));
    }

    #[test]
    fn the_budget_allows_one_broker_down() {
        let p = pod_disruption_budget(&cluster("x", 3));
        assert_eq!(p.spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
    }
}
