//! The headless Service (a DNS name per broker, as advertised) and the client Service
//! (bootstrap, metrics and the admin API).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{owned_meta, Names, ADMIN_PORT, HTTP_PORT};
use crate::crd::StratusCluster;

fn ports(c: &StratusCluster) -> Vec<ServicePort> {
    let mut out: Vec<ServicePort> = c
        .spec
        .listeners_or_default()
        .iter()
        .map(|l| ServicePort {
            name: Some(format!(
                "kafka-{}",
                l.name.to_ascii_lowercase().replace('_', "-")
            )),
            port: l.port,
            target_port: Some(IntOrString::Int(l.port)),
            ..Default::default()
        })
        .collect();
    for (name, port) in [("http", HTTP_PORT), ("admin", ADMIN_PORT)] {
        out.push(ServicePort {
            name: Some(name.into()),
            port,
            target_port: Some(IntOrString::Int(port)),
            ..Default::default()
        });
    }
    out
}

/// Gives `<pod>.<cluster>-brokers.<namespace>.svc` to every broker, ready or not: a
/// broker advertises that name from its first moment.
pub fn headless_service(c: &StratusCluster) -> Service {
    let names = Names::of(c);
    Service {
        metadata: owned_meta(c, names.headless()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names.selector()),
            ports: Some(ports(c)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `<cluster>.<namespace>.svc`: bootstrap servers for clients, and the admin API the
/// operator calls (any ready broker answers for the whole cluster).
pub fn client_service(c: &StratusCluster) -> Service {
    let names = Names::of(c);
    Service {
        metadata: owned_meta(c, names.client()),
        spec: Some(ServiceSpec {
            selector: Some(names.selector()),
            ports: Some(ports(c)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `bootstrap.servers` for clients in the cluster (the first listener).
pub fn bootstrap(c: &StratusCluster) -> String {
    let names = Names::of(c);
    let port = c.spec.listeners_or_default()[0].port;
    format!("{}.{}.svc:{port}", names.client(), names.namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::testing::cluster;

    #[test]
    fn the_headless_service_publishes_brokers_before_they_are_ready() {
        let c = cluster("prod", 3);
        let h = headless_service(&c).spec.unwrap();
        assert_eq!(h.cluster_ip.as_deref(), Some("None"));
        assert_eq!(h.publish_not_ready_addresses, Some(true));
        let names: Vec<_> = h.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(names, vec![9092, 9644, 9645]);
        assert_eq!(bootstrap(&c), "prod.kafka.svc:9092");
        assert!(client_service(&c).spec.unwrap().cluster_ip.is_none());
    }
}
