//! The object store: object_store's backends chosen by URL, with the guarantees Stratus
//! needs on top (a local-directory object is durable only after fsync of the file and of
//! its directory) and metrics of every request (count, errors, bytes, latency) per
//! operation, for cost accounting and alerts.

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::budget::IoBudget;
use crate::local::{local_error, may_be_recycled, read_local, still_named, sync_dirs};
use crate::pool::BufferPool;
use crate::spares::Spares;
use bytes::Bytes;
use object_store::{path::Path, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use stratus_metrics::trace::SpanGuard;
use stratus_metrics::{Collect, Counter, Family, FamilySnapshot, Histogram, LATENCY_SECONDS};

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
    /// A failed read that several readers waited on at once (the block cache
    /// fetches a block once for all of them).
    #[error("{0}")]
    Shared(Arc<ObjectError>),
}

impl ObjectError {
    /// Whether a `put_new` found the object already there.
    pub fn already_exists(&self) -> bool {
        matches!(
            self,
            ObjectError::Store(object_store::Error::AlreadyExists { .. })
        )
    }

    /// Whether the object does not exist (also when several readers shared the read).
    pub fn not_found(&self) -> bool {
        match self {
            ObjectError::Store(object_store::Error::NotFound { .. }) => true,
            ObjectError::Shared(e) => e.not_found(),
            _ => false,
        }
    }
}

/// An object-store operation, as the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// PUT of a whole object.
    Put,
    /// Ranged GET.
    Get,
    /// LIST of a prefix.
    List,
    /// DELETE.
    Delete,
}

impl Op {
    const ALL: [Op; 4] = [Op::Put, Op::Get, Op::List, Op::Delete];

    /// The `operation` label.
    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::List => "list",
            Op::Delete => "delete",
        }
    }
}

struct OpMetrics {
    requests: Arc<Counter>,
    errors: Arc<Counter>,
    bytes: Arc<Counter>,
    time: Arc<Histogram>,
}

/// Requests, errors, bytes and latency per operation
/// (`stratus_object_store_requests_total{operation}` and its siblings).
pub struct ObjectMetrics {
    requests: Family<Counter>,
    errors: Family<Counter>,
    bytes: Family<Counter>,
    time: Family<Histogram>,
    ops: Vec<OpMetrics>,
}

impl Default for ObjectMetrics {
    fn default() -> Self {
        let requests = Family::new(
            "stratus_object_store_requests_total",
            "Object store requests, by operation (errors included).",
            &["operation"],
            Counter::default,
        );
        let errors = Family::new(
            "stratus_object_store_errors_total",
            "Object store requests that failed, by operation.",
            &["operation"],
            Counter::default,
        );
        let bytes = Family::new(
            "stratus_object_store_bytes_total",
            "Bytes written (put) and read (get) from the object store.",
            &["operation"],
            Counter::default,
        );
        let bounds: Arc<[f64]> = Arc::from(LATENCY_SECONDS);
        let time = Family::new(
            "stratus_object_store_request_time_seconds",
            "Latency of object store requests (a local PUT includes its fsync).",
            &["operation"],
            move || Histogram::new(bounds.clone()),
        );
        let ops = Op::ALL
            .iter()
            .map(|op| OpMetrics {
                requests: requests.get(&[op.name()]),
                errors: errors.get(&[op.name()]),
                bytes: bytes.get(&[op.name()]),
                time: time.get(&[op.name()]),
            })
            .collect();
        ObjectMetrics {
            requests,
            errors,
            bytes,
            time,
            ops,
        }
    }
}

impl std::fmt::Debug for ObjectMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectMetrics").finish_non_exhaustive()
    }
}

impl ObjectMetrics {
    fn op(&self, op: Op) -> &OpMetrics {
        &self.ops[op as usize]
    }

    /// Requests of `op` so far (errors included).
    pub fn requests(&self, op: Op) -> u64 {
        self.op(op).requests.get()
    }

    /// Bytes of `op` so far.
    pub fn bytes(&self, op: Op) -> u64 {
        self.op(op).bytes.get()
    }

    /// Requests of `op` that failed so far.
    pub fn errors(&self, op: Op) -> u64 {
        self.op(op).errors.get()
    }

    pub(crate) fn record<T, E>(&self, op: Op, started: Instant, bytes: u64, r: &Result<T, E>) {
        let m = self.op(op);
        m.requests.inc();
        m.time.observe_duration(started.elapsed());
        match r {
            Ok(_) => m.bytes.add(bytes),
            Err(_) => m.errors.inc(),
        }
    }
}

impl Collect for ObjectMetrics {
    fn collect(&self, out: &mut Vec<FamilySnapshot>) {
        self.requests.collect(out);
        self.errors.collect(out);
        self.bytes.collect(out);
        self.time.collect(out);
    }
}

/// The object store as Stratus uses it.
pub struct Objects {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) local_root: Option<PathBuf>,
    synced_dirs: Mutex<HashSet<PathBuf>>,
    /// The pace of background writes to a local directory.
    pub(crate) budget: Arc<IoBudget>,
    /// Buffers of ranged reads of a local directory, reused.
    buffers: Arc<BufferPool>,
    /// Collected WAL objects of a local directory, kept to be written over.
    spares: Arc<Spares>,
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
                crate::paced::clear_staging(&root).map_err(|e| bad(&e))?;
                crate::spares::clear(&root).map_err(|e| bad(&e))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| bad(&e))?;
                (Arc::new(fs), Some(root))
            } else if url.starts_with("memory:") {
                (Arc::new(object_store::memory::InMemory::new()), None)
            } else if url.starts_with("s3://") || url.starts_with("s3a://") {
                (crate::s3::store(url, ca_pem).map_err(|e| bad(&e))?, None)
            } else {
                return Err(bad(&"expected file://, memory:// or s3://"));
            };
        Ok(Objects {
            store,
            local_root,
            synced_dirs: Mutex::new(HashSet::new()),
            budget: Arc::default(),
            buffers: Arc::default(),
            spares: Arc::default(),
            metrics: ObjectMetrics::default(),
        })
    }

    /// Uses a given store (tests inject faults this way). No local fsync is done.
    pub fn from_store(store: Arc<dyn ObjectStore>) -> Self {
        Objects {
            store,
            local_root: None,
            synced_dirs: Mutex::new(HashSet::new()),
            budget: Arc::default(),
            buffers: Arc::default(),
            spares: Arc::default(),
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

    /// Writes a large object in the background of the foreground's writes (a sealed
    /// segment): on a local directory a slice at a time (see [`crate::paced`]), so that
    /// WAL fsyncs never wait for all of it; elsewhere as [`Objects::put_new`] or
    /// [`Objects::put_replacing`].
    pub async fn put_bulk(&self, key: &str, data: Bytes, replace: bool) -> Result<(), ObjectError> {
        let Some(root) = self.local_root.clone() else {
            let mode = if replace {
                PutMode::Overwrite
            } else {
                PutMode::Create
            };
            return self.put_mode(key, data, mode).await;
        };
        let len = data.len() as u64;
        let started = Instant::now();
        let owned = key.to_string();
        let mode = if replace {
            crate::paced::Mode::Replace
        } else {
            crate::paced::Mode::Create
        };
        let budget = Some(self.budget.clone());
        let r = match tokio::task::spawn_blocking(move || {
            crate::paced::write(&root, &owned, &data, mode, budget)
        })
        .await
        {
            Ok(Ok(file)) => self.fsync_local(file).await,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(ObjectError::Store(object_store::Error::AlreadyExists {
                    path: key.to_string(),
                    source: Box::new(e),
                }))
            }
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(std::io::Error::other(e.to_string()).into()),
        };
        let failed = matches!(&r, Err(e) if !e.already_exists());
        let counted: Result<(), ()> = if failed { Err(()) } else { Ok(()) };
        self.metrics
            .record(Op::Put, started, if r.is_ok() { len } else { 0 }, &counted);
        r
    }

    async fn put_mode(&self, key: &str, data: Bytes, mode: PutMode) -> Result<(), ObjectError> {
        let len = data.len() as u64;
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        let span = SpanGuard::child("object_store.put");
        if span.is_recording() {
            span.set("object", key.to_string());
            span.set("bytes", len as i64);
        }
        let started = Instant::now();
        let r = self.put_durably(key, data, opts).await;
        self.put_done(&span, started, len, r)
    }

    async fn put_durably(
        &self,
        key: &str,
        data: Bytes,
        opts: PutOptions,
    ) -> Result<(), ObjectError> {
        self.store
            .put_opts(&Path::from(key), PutPayload::from_bytes(data), opts)
            .await?;
        if let Some(root) = &self.local_root {
            self.fsync_local(root.join(key)).await?;
        }
        Ok(())
    }

    pub(crate) async fn fsync_local(&self, file: PathBuf) -> Result<(), ObjectError> {
        let root = self.local_root.clone().unwrap_or_default();
        let known = self.known_dirs();
        let synced = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<PathBuf>> {
            std::fs::File::open(&file)?.sync_all()?;
            sync_dirs(&file, &root, &known)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        self.add_known_dirs(synced);
        Ok(())
    }

    /// Ends a PUT: its span fails with its error, its metrics count it.
    fn put_done(
        &self,
        span: &SpanGuard,
        started: Instant,
        len: u64,
        r: Result<(), ObjectError>,
    ) -> Result<(), ObjectError> {
        if let Err(e) = &r {
            span.fail(e);
        }
        // An object that already exists is an answer, not a failure of the store.
        let failed = matches!(&r, Err(e) if !e.already_exists());
        let counted: Result<(), ()> = if failed { Err(()) } else { Ok(()) };
        self.metrics
            .record(Op::Put, started, if r.is_ok() { len } else { 0 }, &counted);
        r
    }

    fn known_dirs(&self) -> HashSet<PathBuf> {
        self.synced_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn add_known_dirs(&self, dirs: Vec<PathBuf>) {
        self.synced_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(dirs);
    }

    /// Writes, durably, an object whose name no other writer ever uses (a WAL object:
    /// the name holds the process's incarnation). On a local directory it goes straight
    /// to its name in one blocking call (create, write, fsync of the file and of its
    /// directory), without `put_new`'s staging file and link. So a failure or a crash
    /// mid-write can leave a torn object under the name: an attempt with `again` replaces
    /// it, and a reader must tell a whole object from a torn one (a WAL object by its
    /// footer) or read only objects whose write it saw succeed. Elsewhere as
    /// [`Objects::put_new`].
    pub async fn put_own(&self, key: &str, data: Bytes, again: bool) -> Result<(), ObjectError> {
        let Some(root) = self.local_root.clone() else {
            return self.put_new(key, data).await;
        };
        let len = data.len() as u64;
        let span = SpanGuard::child("object_store.put");
        if span.is_recording() {
            span.set("object", key.to_string());
            span.set("bytes", len as i64);
        }
        let started = Instant::now();
        let file = root.join(key);
        let known = self.known_dirs();
        let spares = self.spares.clone();
        let r = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<PathBuf>> {
            use std::io::Write;
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // A spare (a collected WAL object) if there is one: no new inode (see
            // `crate::spares`); it is written over and cut to length. `sync_all`: its
            // inode (link count, size, times) is made durable with it.
            if !again && spares.reuse(&file)? {
                let mut f = std::fs::OpenOptions::new().write(true).open(&file)?;
                f.write_all(&data)?;
                f.set_len(data.len() as u64)?;
                f.sync_all()?;
            } else {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(again)
                    .create_new(!again)
                    .truncate(again)
                    .open(&file)?;
                f.write_all(&data)?;
                f.sync_all()?;
            }
            sync_dirs(&file, &root, &known)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()));
        let r: Result<(), ObjectError> = match r {
            Ok(Ok(synced)) => {
                self.add_known_dirs(synced);
                self.budget.foreground(len, Instant::now());
                Ok(())
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(ObjectError::Store(object_store::Error::AlreadyExists {
                    path: key.to_string(),
                    source: Box::new(e),
                }))
            }
            Ok(Err(e)) | Err(e) => Err(e.into()),
        };
        self.put_done(&span, started, len, r)
    }

    /// Reads a byte range of an object.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, ObjectError> {
        let span = SpanGuard::child("object_store.get");
        if span.is_recording() {
            span.set("object", key.to_string());
            span.set("bytes", (range.end - range.start) as i64);
        }
        let started = Instant::now();
        let r = match &self.local_root {
            Some(root) => {
                let read = vec![(root.join(key), key.to_string(), range)];
                let mut r = read_local(&self.buffers, &self.spares, read).await;
                r.pop().unwrap_or_else(|| Ok(Bytes::new()))
            }
            None => self.get_remote(key, range).await,
        };
        if let Err(e) = &r {
            span.fail(e);
        }
        let len = r.as_ref().map_or(0, |b| b.len() as u64);
        self.metrics.record(Op::Get, started, len, &r);
        Ok(r?)
    }

    /// A ranged GET of a remote store. A body that arrives in several chunks is gathered
    /// into a buffer of the pool (which object_store's own `get_range` would allocate
    /// afresh): a block is cached until evicted, a sequential reader frees one for every
    /// one it reads, and a fresh megabyte is faulted in and zeroed by the kernel again
    /// (page faults were a tenth of the broker's CPU samples in a cold read from MinIO).
    async fn get_remote(&self, key: &str, range: Range<u64>) -> object_store::Result<Bytes> {
        use futures::TryStreamExt;
        let len = usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
        let options = object_store::GetOptions::new().with_range(Some(range));
        let got = self.store.get_opts(&Path::from(key), options).await?;
        let mut body = got.into_stream();
        let first = body.try_next().await?.unwrap_or_default();
        let Some(second) = body.try_next().await? else {
            return Ok(first);
        };
        let mut buf = self.buffers.take(len.max(first.len() + second.len()));
        buf.extend_from_slice(&first);
        buf.extend_from_slice(&second);
        while let Some(more) = body.try_next().await? {
            buf.extend_from_slice(&more);
        }
        Ok(self.buffers.bytes(buf))
    }

    /// Reads byte ranges of objects, answering in the order asked: on a local directory
    /// all in one blocking call, elsewhere one request after another.
    pub async fn get_ranges(
        &self,
        reads: &[(Arc<str>, Range<u64>)],
    ) -> Vec<Result<Bytes, ObjectError>> {
        let Some(root) = &self.local_root else {
            let mut out = Vec::with_capacity(reads.len());
            for (key, range) in reads {
                out.push(self.get_range(key, range.clone()).await);
            }
            return out;
        };
        let span = SpanGuard::child("object_store.get");
        if span.is_recording() {
            span.set("objects", reads.len() as i64);
        }
        let started = Instant::now();
        let asked = reads
            .iter()
            .map(|(k, r)| (root.join(k.as_ref()), k.to_string(), r.clone()))
            .collect();
        let got = read_local(&self.buffers, &self.spares, asked).await;
        got.into_iter()
            .map(|r| {
                if let Err(e) = &r {
                    span.fail(e);
                }
                let len = r.as_ref().map_or(0, |b| b.len() as u64);
                self.metrics.record(Op::Get, started, len, &r);
                Ok(r?)
            })
            .collect()
    }

    /// The file that holds `key` on a local store (`None` on any other).
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.local_root.as_ref().map(|root| root.join(key))
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, ObjectError> {
        let started = Instant::now();
        let r = match &self.local_root {
            Some(root) => {
                let file = root.join(key);
                let path = key.to_string();
                let recycled = may_be_recycled(key);
                let read = move || -> std::io::Result<Vec<u8>> {
                    use std::io::Read;
                    let mut f = std::fs::File::open(&file)?;
                    let mut buf = Vec::new();
                    f.read_to_end(&mut buf)?;
                    if recycled {
                        still_named(&f, &file)?;
                    }
                    Ok(buf)
                };
                match tokio::task::spawn_blocking(read).await {
                    Ok(Ok(v)) => Ok(Bytes::from(v)),
                    Ok(Err(e)) => Err(local_error(path, e)),
                    Err(e) => Err(local_error(path, std::io::Error::other(e.to_string()))),
                }
            }
            None => match self.store.get(&Path::from(key)).await {
                Ok(g) => g.bytes().await,
                Err(e) => Err(e),
            },
        };
        let len = r.as_ref().map_or(0, |b| b.len() as u64);
        self.metrics.record(Op::Get, started, len, &r);
        Ok(r?)
    }

    /// Every object under `prefix`: its key and when it was last modified (ms since the
    /// epoch).
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, i64)>, ObjectError> {
        use futures::TryStreamExt;
        let p = Path::from(prefix);
        let started = Instant::now();
        let r: Result<Vec<object_store::ObjectMeta>, _> =
            self.store.list(Some(&p)).try_collect().await;
        self.metrics.record(Op::List, started, 0, &r);
        Ok(r?
            .into_iter()
            .map(|m| (m.location.to_string(), m.last_modified.timestamp_millis()))
            .collect())
    }

    /// Deletes a WAL object (one written by [`Objects::put_own`]); on a local directory
    /// its file is kept, under another name, for a later [`Objects::put_own`] to write
    /// over (see [`crate::spares`]). A missing object is not an error.
    pub async fn delete_recycling(&self, key: &str) -> Result<(), ObjectError> {
        let Some(root) = self.local_root.clone() else {
            return self.delete(key).await;
        };
        let started = Instant::now();
        let spares = self.spares.clone();
        let file = root.join(key);
        let r = tokio::task::spawn_blocking(move || spares.retire(&file))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
            .map_err(ObjectError::from);
        self.metrics.record(Op::Delete, started, 0, &r);
        r
    }

    /// How many collected WAL objects are kept to be written over, and their bytes.
    pub fn spares_held(&self) -> (usize, u64) {
        self.spares.held()
    }

    /// Deletes an object; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        if let Some(root) = &self.local_root {
            self.spares.forget(&root.join(key));
        }
        let started = Instant::now();
        let r = match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        };
        self.metrics.record(Op::Delete, started, 0, &r);
        r
    }
}

impl Collect for Objects {
    fn collect(&self, out: &mut Vec<FamilySnapshot>) {
        self.metrics.collect(out);
    }
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
    }

    #[tokio::test]
    async fn a_collected_wal_object_is_written_over_by_the_next_and_never_read_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let o = Objects::from_url(&format!("file://{}", dir.path().display())).unwrap();
        let big: Bytes = (0..10_000u32).map(|i| i as u8).collect();
        o.put_own("wal/1/a", big.clone(), false).await.unwrap();
        // Read once: its file is kept open for the reads that follow.
        assert_eq!(
            o.get_range("wal/1/a", 0..10).await.unwrap(),
            big.slice(0..10)
        );
        o.delete_recycling("wal/1/a").await.unwrap();
        assert_eq!(o.spares_held(), (1, 10_000));
        let e = o.get_range("wal/1/a", 0..10).await.unwrap_err();
        assert!(e.not_found(), "{e}");
        // The next WAL object takes the spare, shorter than it: exactly its own bytes.
        o.put_own("wal/1/b", Bytes::from_static(b"short"), false)
            .await
            .unwrap();
        assert_eq!(o.spares_held(), (0, 0));
        let e = o.get_range("wal/1/a", 0..5).await.unwrap_err();
        assert!(
            e.not_found(),
            "the kept file is not read for the old name: {e}"
        );
        assert_eq!(&o.get("wal/1/b").await.unwrap()[..], b"short");
        assert_eq!(&o.get_range("wal/1/b", 1..4).await.unwrap()[..], b"hor");
        // Longer than the spare: extended.
        o.delete_recycling("wal/1/b").await.unwrap();
        o.put_own("wal/1/c", big.clone(), false).await.unwrap();
        assert_eq!(o.spares_held(), (0, 0));
        assert_eq!(o.get("wal/1/c").await.unwrap(), big);
        // A name that is taken is refused as before, and the spare kept for the next.
        o.put_own("wal/1/d", Bytes::from_static(b"d"), false)
            .await
            .unwrap();
        o.delete_recycling("wal/1/c").await.unwrap();
        let e = o
            .put_own("wal/1/d", Bytes::from_static(b"x"), false)
            .await
            .unwrap_err();
        assert!(e.already_exists(), "{e}");
        assert_eq!(&o.get("wal/1/d").await.unwrap()[..], b"d");
        assert_eq!(o.spares_held(), (1, 10_000));
        o.delete_recycling("wal/1/missing").await.unwrap();
    }
}
