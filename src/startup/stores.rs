//! Opening the data directory and the stores, with errors a new user can act on: each
//! names the path, URL or address involved and what to do. Both stores are probed before
//! the broker joins, instead of letting it start "healthy" and fail every write. A store
//! that refuses (credentials, permissions, a missing bucket) stops the broker; one that
//! does not answer is [`StoreError::down`]: a single broker stops, a broker of a cluster
//! waits for it (`startup::open`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use bytes::Bytes;

use crate::config::Settings;
use stratus_log::objects::{ObjectError, Objects};
use stratus_meta::embedded::EmbeddedStore;
use stratus_meta::etcd::{EtcdStore, EtcdTls};
use stratus_meta::{keys, MetaError, MetaStore};

/// Longest wait for the object store to answer the startup probe.
const OBJECT_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the probe object is written (outside `wal/` and `topics/`).
const PROBE_PREFIX: &str = "_stratus/probe/";

/// Why a store failed its startup probe.
#[derive(Debug)]
pub struct StoreError {
    /// What failed and what to check.
    pub message: String,
    /// The store did not answer (it may be starting): waiting may help. Otherwise it
    /// answered with a refusal that waiting does not change.
    pub down: bool,
}

impl StoreError {
    fn down(message: String) -> Self {
        StoreError {
            message,
            down: true,
        }
    }

    fn refused(message: String) -> Self {
        StoreError {
            message,
            down: false,
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Creates the data directory and checks that it can be written.
pub fn data_dir(dir: &Path) -> anyhow::Result<()> {
    let hint = "give a writable directory with --data-dir (data.dir)";
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow!("cannot create data.dir {}: {e}; {hint}", dir.display()))?;
    let probe = dir.join(".stratus-write-probe");
    std::fs::write(&probe, b"probe")
        .map_err(|e| anyhow!("cannot write in data.dir {}: {e}; {hint}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Opens the metadata store named by `metadata.store.url` and checks that it answers.
pub async fn metadata(settings: &Settings) -> Result<Arc<dyn MetaStore>, StoreError> {
    let timeout = Duration::from_millis(settings.cluster.metadata_timeout_ms);
    match settings.cluster.metadata_url.as_str() {
        "" | "embedded" => {
            let path = settings.storage.data_dir.join("meta.redb");
            match EmbeddedStore::open(&path) {
                Ok(s) => Ok(Arc::new(s)),
                Err(MetaError::Locked(_)) => Err(StoreError::refused(format!(
                    "data.dir {} is in use by another running broker (its metadata file {} is \
                     locked); stop that broker, or give this one another --data-dir",
                    settings.storage.data_dir.display(),
                    path.display()
                ))),
                Err(e) => Err(StoreError::refused(format!(
                    "cannot open the embedded metadata store {}: {e}",
                    path.display()
                ))),
            }
        }
        url => {
            let failed = |e: MetaError| {
                let text = e.to_string();
                let message = format!(
                    "metadata store {url} did not answer: {text}; check that etcd runs at that \
                     address, {}, and {}",
                    etcd_tls_hint(settings),
                    etcd_credentials()
                );
                if etcd_refusal(&text) {
                    StoreError::refused(message)
                } else {
                    StoreError::down(message)
                }
            };
            let tls = etcd_tls(settings).map_err(StoreError::refused)?;
            let store = EtcdStore::connect(url, timeout, tls)
                .await
                .map_err(failed)?;
            // One read: etcd answers, the credentials are accepted, the namespace is readable.
            store.get(keys::CLUSTER_ID).await.map_err(failed)?;
            Ok(Arc::new(store))
        }
    }
}

/// TLS to etcd, as `metadata.store.security.protocol` and the `metadata.store.ssl.*` files
/// say.
fn etcd_tls(settings: &Settings) -> Result<Option<EtcdTls>, String> {
    let c = &settings.cluster;
    let read = |setting: &str, path: &str| {
        std::fs::read(path).map_err(|e| format!("{setting} {path}: {e}"))
    };
    if c.metadata_security_protocol != "SSL" {
        if !c.metadata_ssl_truststore_location.is_empty()
            || !c.metadata_ssl_keystore_location.is_empty()
        {
            return Err("metadata.store.ssl.* files are set but metadata.store.security.protocol                         is PLAINTEXT: set it to SSL to reach etcd over TLS"
                .into());
        }
        return Ok(None);
    }
    let ca = match c.metadata_ssl_truststore_location.as_str() {
        "" => None,
        path => Some(read("metadata.store.ssl.truststore.location", path)?),
    };
    let identity = match c.metadata_ssl_keystore_location.as_str() {
        "" => None,
        path => {
            let pem = read("metadata.store.ssl.keystore.location", path)?;
            Some((pem.clone(), pem))
        }
    };
    Ok(Some(EtcdTls { ca, identity }))
}

/// Whether etcd answered with a refusal (credentials, permissions, a malformed URL) rather
/// than not at all.
fn etcd_refusal(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "authentication failed",
        "permission denied",
        "invalid auth token",
        "user name",
        "not an etcd:// url",
        "names no etcd endpoint",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// What to check of TLS when etcd does not answer.
fn etcd_tls_hint(settings: &Settings) -> &'static str {
    let c = &settings.cluster;
    if c.metadata_security_protocol != "SSL" {
        "that it serves plain http (an etcd with TLS needs metadata.store.security.protocol=SSL)"
    } else if c.metadata_ssl_keystore_location.is_empty() {
        "that it serves TLS with a certificate metadata.store.ssl.truststore.location trusts, \
         and whether it asks for client certificates (--client-cert-auth closes the connection \
         of a client with none: set metadata.store.ssl.keystore.location)"
    } else {
        "that it serves TLS with a certificate metadata.store.ssl.truststore.location trusts, \
         and that its --trusted-ca-file signs metadata.store.ssl.keystore.location"
    }
}

fn etcd_credentials() -> &'static str {
    match std::env::var("ETCD_USERNAME") {
        Ok(_) => "that the user in ETCD_USERNAME / ETCD_PASSWORD may read and write",
        Err(_) => "whether it needs a user (ETCD_USERNAME / ETCD_PASSWORD are not set)",
    }
}

/// Opens the object store named by `object.store.url`, then writes, reads back and
/// deletes a small object.
pub async fn objects(settings: &Settings) -> Result<Arc<Objects>, StoreError> {
    let url = &settings.storage.object_store_url();
    let ca = match settings
        .storage
        .object_store_ssl_truststore_location
        .as_str()
    {
        "" => None,
        path => Some(std::fs::read(path).map_err(|e| {
            StoreError::refused(format!("object.store.ssl.truststore.location {path}: {e}"))
        })?),
    };
    let objects = Arc::new(
        Objects::from_url_trusting(url, ca.as_deref())
            .map_err(|e| StoreError::refused(format!("{e}")))?,
    );
    let key = format!(
        "{PROBE_PREFIX}{}-{}",
        settings.server.node_id,
        uuid::Uuid::new_v4()
    );
    let body = Bytes::from(key.clone());
    // object_store repeats each source in its message: the innermost one says it all.
    let step = |what: &'static str| {
        let key = key.clone();
        move |e: ObjectError| {
            let (text, answered) = innermost(&e);
            (format!("{what} {key}: {text}"), answered)
        }
    };
    let probe = async {
        objects
            .put_replacing(&key, body.clone())
            .await
            .map_err(step("writing"))?;
        let back = objects
            .get_range(&key, 0..body.len() as u64)
            .await
            .map_err(step("reading back"))?;
        if back != body {
            let wrong = format!("reading back {key}: other bytes than were written");
            return Err((wrong, true));
        }
        objects.delete(&key).await.map_err(step("deleting"))
    };
    match tokio::time::timeout(OBJECT_PROBE_TIMEOUT, probe).await {
        Ok(Ok(())) => Ok(objects),
        Ok(Err((e, answered))) => {
            let message = format!(
                "object store {url} failed the startup probe ({e}); {}",
                object_credentials(url)
            );
            // A store that answered refuses (credentials, bucket, permissions), unless it
            // said it is unavailable; one that did not answer may be starting.
            let unavailable = ["ServiceUnavailable", "SlowDown", "InternalError"]
                .iter()
                .any(|c| e.contains(c));
            Err(if answered && !unavailable {
                StoreError::refused(message)
            } else {
                StoreError::down(message)
            })
        }
        Err(_) => Err(StoreError::down(format!(
            "object store {url} did not answer the startup probe in {}s; {}",
            OBJECT_PROBE_TIMEOUT.as_secs(),
            object_credentials(url)
        ))),
    }
}

/// The innermost error's text, and whether the store answered (an S3 error body, or a
/// local file system error) rather than not at all.
fn innermost(e: &(dyn std::error::Error + 'static)) -> (String, bool) {
    let mut e = e;
    while let Some(s) = e.source() {
        e = s;
    }
    let text = e.to_string();
    // An S3 error body: its code and message are what a user needs.
    let tag = |t: &str| {
        let start = text.find(&format!("<{t}>"))? + t.len() + 2;
        let end = text[start..].find(&format!("</{t}>"))? + start;
        Some(text[start..end].to_string())
    };
    let io = e.downcast_ref::<std::io::Error>().is_some_and(|io| {
        !matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::TimedOut
        )
    });
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => (format!("{code}: {message}"), true),
        _ => (text.split_whitespace().collect::<Vec<_>>().join(" "), io),
    }
}

/// Where the credentials for `url` were looked for, in words.
fn object_credentials(url: &str) -> String {
    if !(url.starts_with("s3://") || url.starts_with("s3a://")) {
        return "check that the path exists and can be written".into();
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let endpoint = var("AWS_ENDPOINT_URL")
        .or_else(|| var("AWS_ENDPOINT"))
        .map(|e| format!("endpoint {e} (from AWS_ENDPOINT_URL / AWS_ENDPOINT)"))
        .unwrap_or_else(|| "the AWS endpoint of AWS_REGION (AWS_ENDPOINT_URL not set)".into());
    let credentials = if var("AWS_ACCESS_KEY_ID").is_some() {
        "the access key in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY".to_string()
    } else if var("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
        "the web identity token in AWS_WEB_IDENTITY_TOKEN_FILE (IRSA)".to_string()
    } else if var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some() {
        "the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)".to_string()
    } else {
        "no credentials: AWS_ACCESS_KEY_ID is not set, so the cloud instance-metadata \
         service was asked; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            .to_string()
    };
    format!("tried {endpoint} with {credentials}; the bucket must exist")
}
