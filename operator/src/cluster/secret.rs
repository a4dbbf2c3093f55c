//! The admin API's credentials: a CA the operator makes for each cluster, a server
//! certificate for the brokers' admin listener, and a bearer token. Made once and kept
//! in a Secret; the brokers mount it, the operator reads it to call them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use rand::RngCore;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::build::{owned_meta, Names};
use crate::crd::StratusCluster;

/// The keys the Secret holds.
pub const KEYS: [&str; 3] = ["ca.crt", "admin.pem", "token"];

/// Whether `s` holds every key.
pub fn complete(s: &Secret) -> bool {
    let data = s.data.clone().unwrap_or_default();
    KEYS.iter()
        .all(|k| data.get(*k).is_some_and(|v| !v.0.is_empty()))
}

/// A new admin Secret for `c`: a CA (10 years), a server certificate valid for the
/// client Service and every broker's name (825 days), and a 256-bit token.
pub fn admin_secret(c: &StratusCluster) -> Result<Secret, rcgen::Error> {
    let names = Names::of(c);
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("stratus admin CA {}", names.cluster),
    );
    ca.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let ca_cert = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let sans = vec![
        names.admin_host(),
        format!("{}.{}.svc.cluster.local", names.client(), names.namespace),
        format!("*.{}.{}.svc", names.headless(), names.namespace),
        format!(
            "*.{}.{}.svc.cluster.local",
            names.headless(),
            names.namespace
        ),
    ];
    let mut server = CertificateParams::new(sans)?;
    server
        .distinguished_name
        .push(DnType::CommonName, names.admin_host());
    server.not_after = rcgen::date_time_ymd(2028, 1, 1);
    let cert = server.signed_by(&key, &ca_cert, &ca_key)?;
    let mut token = [0u8; 32];
    rand::rng().fill_bytes(&mut token);
    let token: String = token.iter().map(|b| format!("{b:02x}")).collect();
    let data = BTreeMap::from([
        ("ca.crt".to_string(), ByteString(ca_cert.pem().into_bytes())),
        (
            "admin.pem".to_string(),
            ByteString(
                format!("{}{}{}", key.serialize_pem(), cert.pem(), ca_cert.pem()).into_bytes(),
            ),
        ),
        ("token".to_string(), ByteString(token.into_bytes())),
    ]);
    Ok(Secret {
        metadata: owned_meta(c, names.admin_secret()),
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::testing::cluster;

    #[test]
    fn the_secret_holds_a_ca_a_certificate_for_the_service_and_a_token() {
        let s = admin_secret(&cluster("prod", 3)).unwrap();
        assert!(complete(&s));
        let data = s.data.unwrap();
        let pem = String::from_utf8(data["admin.pem"].0.clone()).unwrap();
        assert!(pem.contains("PRIVATE KEY"));
        assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert_eq!(data["token"].0.len(), 64);
        let other = admin_secret(&cluster("prod", 3)).unwrap().data.unwrap();
        assert_ne!(other["token"], data["token"], "tokens are random");
        assert!(!complete(&Secret::default()));
    }
}
