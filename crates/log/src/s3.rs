//! An S3 store from an `s3://bucket/prefix` URL and the `AWS_*` environment variables, as
//! `AmazonS3Builder::from_env` reads them, with one default of our own: over https the
//! payload is not signed.
//!
//! A signed payload puts the SHA-256 of every body in the request's signature: the broker
//! hashes each WAL object and segment it writes, and the server hashes it again to check.
//! Over https TLS already guards the body in transit, so the AWS SDKs send
//! `UNSIGNED-PAYLOAD` there, and so does Stratus. Measured with Kafka's default producer
//! into one broker on MinIO on a 2-core machine (`bench/probes/produce_minio.py`, alternating
//! pairs), not signing cut the broker's CPU by a sixth (20 MiB/s over https: 2.1-2.2 s
//! against 2.5-2.6 s for 300 MB) to a fifth (full speed over http), and MinIO's by 10-30 %.
//! Over plain http the payload stays signed (nothing else guards it) unless
//! `AWS_UNSIGNED_PAYLOAD=true`; `AWS_UNSIGNED_PAYLOAD=false` signs it over https too.

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::prefix::PrefixStore;
use object_store::{Certificate, ClientOptions, ObjectStore};
use std::sync::Arc;

/// The store of `url` under its prefix, trusting `ca_pem` (a PEM bundle) for an https
/// endpoint besides the system's CA certificates. The error says what was wrong.
pub fn store(url: &str, ca_pem: Option<&[u8]>) -> Result<Arc<dyn ObjectStore>, String> {
    let mut options = ClientOptions::new();
    if let Some(pem) = ca_pem {
        for cert in
            Certificate::from_pem_bundle(pem).map_err(|e| format!("the CA certificates: {e}"))?
        {
            options = options.with_root_certificate(cert);
        }
    }
    let builder = from_vars(
        AmazonS3Builder::new().with_client_options(options),
        std::env::vars(),
    );
    let s3 = builder.with_url(url).build().map_err(|e| e.to_string())?;
    Ok(Arc::new(PrefixStore::new(s3, prefix(url))))
}

/// `builder` with the `AWS_*` variables of `vars` applied, and the payload unsigned when
/// the endpoint is https (no endpoint: AWS's own, https) and no variable said otherwise.
fn from_vars(
    mut builder: AmazonS3Builder,
    vars: impl Iterator<Item = (String, String)>,
) -> AmazonS3Builder {
    let mut signing_chosen = false;
    for (key, value) in vars {
        if !key.starts_with("AWS_") {
            continue;
        }
        if let Ok(k) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            signing_chosen |= k == AmazonS3ConfigKey::UnsignedPayload;
            builder = builder.with_config(k, value);
        }
    }
    let https = builder
        .get_config_value(&AmazonS3ConfigKey::Endpoint)
        .is_none_or(|e| e.trim().to_ascii_lowercase().starts_with("https://"));
    if https && !signing_chosen {
        builder = builder.with_unsigned_payload(true);
    }
    builder
}

/// The key prefix of an `s3://bucket/prefix` URL.
fn prefix(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or("");
    rest.split_once('/')
        .map(|(_, p)| p.trim_matches('/').to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsigned(vars: &[(&str, &str)]) -> bool {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        from_vars(AmazonS3Builder::new(), vars)
            .get_config_value(&AmazonS3ConfigKey::UnsignedPayload)
            .as_deref()
            == Some("true")
    }

    #[test]
    fn the_payload_is_unsigned_over_https_and_signed_over_http_unless_a_variable_says() {
        assert!(unsigned(&[]), "AWS's own endpoint is https");
        assert!(unsigned(&[("AWS_ENDPOINT_URL", "https://s3.example:9000")]));
        assert!(unsigned(&[("AWS_ENDPOINT", "HTTPS://s3.example")]));
        assert!(!unsigned(&[("AWS_ENDPOINT", "http://127.0.0.1:9000")]));
        assert!(unsigned(&[
            ("AWS_ENDPOINT", "http://127.0.0.1:9000"),
            ("AWS_UNSIGNED_PAYLOAD", "true")
        ]));
        assert!(!unsigned(&[
            ("AWS_ENDPOINT_URL", "https://s3.example"),
            ("AWS_UNSIGNED_PAYLOAD", "false")
        ]));
        assert!(
            !unsigned(&[("UNSIGNED_PAYLOAD", "true"), ("AWS_ENDPOINT", "http://x")]),
            "only AWS_ variables count (object_store would take this alias)"
        );
    }

    #[test]
    fn the_prefix_is_the_path_after_the_bucket() {
        assert_eq!(prefix("s3://bucket/a/b/"), "a/b");
        assert_eq!(prefix("s3://bucket"), "");
        assert_eq!(prefix("s3a://bucket/x"), "x");
    }
}
