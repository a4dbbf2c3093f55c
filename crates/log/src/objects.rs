//! The object store: object_store's backends chosen by URL, with the guarantees Stratus
//! needs on top (a local-directory object is durable only after fsync of the file and of
//! its directory) and counters of requests for cost accounting.

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::{path::Path, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// Object store errors; all are retriable except `AlreadyExists`.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The store failed or could not be reached.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Local durability (fsync) failed.
    #[error("object store fsync: {0}")]
    Io(#[from] std::io::Error),
    /// The URL is not understood.
    #[error("object store url '{0}': {1}")]
    Url(String, String),
}

/// Request counters.
#[derive(Debug, Default)]
pub struct ObjectMetrics {
    /// PUT requests.
    pub puts: AtomicU64,
    /// Bytes PUT.
    pub put_bytes: AtomicU64,
    /// GET requests.
    pub gets: AtomicU64,
    /// Bytes read.
    pub get_bytes: AtomicU64,
    /// DELETE requests.
    pub deletes: AtomicU64,
}

/// The object store as Stratus uses it.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    local_root: Option<PathBuf>,
    synced_dirs: Mutex<HashSet<PathBuf>>,
    /// Request counters.
    pub metrics: ObjectMetrics,
}

impl Objects {
    /// Opens the store named by `url`: `file:///dir`, `memory://`, `s3://bucket/prefix`
    /// (credentials and endpoint from the usual `AWS_*` environment variables).
    pub fn from_url(url: &str) -> Result<Self, ObjectError> {
        Self::from_url_trusting(url, None)
    }

    /// [`Objects::from_url`], trusting the CA certificates of `ca_pem` (a PEM bundle) for
    /// an https S3 endpoint besides the system's.
    pub fn from_url_trusting(url: &str, ca_pem: Option<&[u8]>) -> Result<Self, ObjectError> {
        let bad = |e: &dyn std::fmt::Display| ObjectError::Url(url.to_string(), e.to_string());
        let (store, local_root): (Arc<dyn ObjectStore>, _) =
            if let Some(path) = url.strip_prefix("file://") {
                let root = PathBuf::from(path);
                std::fs::create_dir_all(&root).map_err(|e| bad(&e))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| bad(&e))?;
                (Arc::new(fs), Some(root))
            } else if url.starts_with("memory:") {
                (Arc::new(object_store::memory::InMemory::new()), None)
            } else if url.starts_with("s3://") || url.starts_with("s3a://") {
                let mut options = object_store::ClientOptions::new();
                if let Some(pem) = ca_pem {
                    for cert in object_store::Certificate::from_pem_bundle(pem)
                        .map_err(|e| bad(&format!("the CA certificates: {e}")))?
                    {
                        options = options.with_root_certificate(cert);
                    }
                }
                // As AmazonS3Builder::from_env, over these client options.
                let mut builder =
                    object_store::aws::AmazonS3Builder::new().with_client_options(options);
                for (key, value) in std::env::vars() {
                    if key.starts_with("AWS_") {
                        if let Ok(k) = key.to_ascii_lowercase().parse() {
                            builder = builder.with_config(k, value);
                        }
                    }
                }
                let s3 = builder.with_url(url).build().map_err(|e| bad(&e))?;
                let prefixed = object_store::prefix::PrefixStore::new(s3, s3_prefix(url));
                (Arc::new(prefixed), None)
            } else {
                return Err(bad(&"expected file://, memory:// or s3://"));
            };
        Ok(Objects {
            store,
            local_root,
            synced_dirs: Mutex::new(HashSet::new()),
            metrics: ObjectMetrics::default(),
        })
    }

    /// Uses a given store (tests inject faults this way). No local fsync is done.
    pub fn from_store(store: Arc<dyn ObjectStore>) -> Self {
        Objects {
            store,
            local_root: None,
            synced_dirs: Mutex::new(HashSet::new()),
            metrics: ObjectMetrics::default(),
        }
    }

    /// Writes an object that must never be overwritten (`PutMode::Create`). Returns once
    /// the object is durable.
    pub async fn put_new(&self, key: &str, data: Bytes) -> Result<(), ObjectError> {
        self.put_mode(key, data, PutMode::Create).await
    }

    /// Writes an object, replacing one of that name atomically (a reader sees the old
    /// bytes or the new ones, never no object). Returns once the object is durable.
    pub async fn put_replacing(&self, key: &str, data: Bytes) -> Result<(), ObjectError> {
        self.put_mode(key, data, PutMode::Overwrite).await
    }

    async fn put_mode(&self, key: &str, data: Bytes, mode: PutMode) -> Result<(), ObjectError> {
        let len = data.len() as u64;
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        self.store
            .put_opts(&Path::from(key), PutPayload::from_bytes(data), opts)
            .await?;
        self.metrics.puts.fetch_add(1, Ordering::Relaxed);
        self.metrics.put_bytes.fetch_add(len, Ordering::Relaxed);
        if let Some(root) = &self.local_root {
            self.fsync_local(root.join(key)).await?;
        }
        Ok(())
    }

    async fn fsync_local(&self, file: PathBuf) -> Result<(), ObjectError> {
        let root = self.local_root.clone().unwrap_or_default();
        let known: HashSet<PathBuf> = self
            .synced_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let synced = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<PathBuf>> {
            std::fs::File::open(&file)?.sync_all()?;
            // The file's directory always; its ancestors once, when first seen (a new
            // directory is durable only once its parent is synced).
            let mut newly = Vec::new();
            let mut dir = file.parent().map(PathBuf::from);
            let mut first = true;
            while let Some(d) = dir {
                if !first && known.contains(&d) {
                    break;
                }
                std::fs::File::open(&d)?.sync_all()?;
                newly.push(d.clone());
                if d == root {
                    break;
                }
                first = false;
                dir = d.parent().map(PathBuf::from);
            }
            Ok(newly)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        self.synced_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(synced);
        Ok(())
    }

    /// Reads a byte range of an object.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, ObjectError> {
        let b = self.store.get_range(&Path::from(key), range).await?;
        self.metrics.gets.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .get_bytes
            .fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    /// Every object under `prefix`: its key and when it was last modified (ms since the
    /// epoch).
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, i64)>, ObjectError> {
        use futures::TryStreamExt;
        let p = Path::from(prefix);
        let metas: Vec<object_store::ObjectMeta> = self.store.list(Some(&p)).try_collect().await?;
        Ok(metas
            .into_iter()
            .map(|m| (m.location.to_string(), m.last_modified.timestamp_millis()))
            .collect())
    }

    /// Deletes an object; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        self.metrics.deletes.fetch_add(1, Ordering::Relaxed);
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn s3_prefix(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or("");
    rest.split_once('/')
        .map(|(_, p)| p.trim_matches('/').to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_put_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let o = Objects::from_url(&format!("file://{}", dir.path().display())).unwrap();
        o.put_new("wal/1/a", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert!(dir.path().join("wal/1/a").exists());
        assert_eq!(&o.get_range("wal/1/a", 1..4).await.unwrap()[..], b"ell");
        assert!(
            o.put_new("wal/1/a", Bytes::from_static(b"x"))
                .await
                .is_err(),
            "never overwrite"
        );
        o.delete("wal/1/a").await.unwrap();
        o.delete("wal/1/a").await.unwrap();
        assert_eq!(s3_prefix("s3://bucket/a/b/"), "a/b");
    }
}
