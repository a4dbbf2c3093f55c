//! Fault injection for tests: an object store and a metadata store that fail, or lose
//! the answer to a request that did succeed, when told to.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use stratus_meta::{Compare, LeaseId, MetaError, MetaStore, Op, Versioned, WatchEvent};

/// What the next requests of a kind do.
#[derive(Debug, Default)]
pub struct Faults {
    /// Requests that fail without doing anything.
    pub fail: AtomicU32,
    /// Requests that succeed but answer with an error.
    pub lose_answer: AtomicU32,
    /// The next request waits this many milliseconds first (then it is back to 0).
    pub delay_ms: std::sync::atomic::AtomicU64,
    /// Seeded random faults of every request, besides the counted ones.
    random: std::sync::Mutex<Option<RandomFaults>>,
}

/// Random faults: every request waits up to `max_delay_ms`, fails with probability
/// `fail_per_mille` / 1000 and loses its answer with `lose_per_mille` / 1000.
#[derive(Debug)]
struct RandomFaults {
    state: u64,
    max_delay_ms: u64,
    fail_per_mille: u64,
    lose_per_mille: u64,
}

impl RandomFaults {
    /// xorshift64*: deterministic for a seed.
    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Faults {
    /// Makes the next `n` requests fail (`u32::MAX`: until healed).
    pub fn fail_next(&self, n: u32) {
        self.fail.store(n, Ordering::SeqCst);
    }
    /// Makes the next `n` requests succeed but answer with an error.
    pub fn lose_next_answers(&self, n: u32) {
        self.lose_answer.store(n, Ordering::SeqCst);
    }
    /// Back to normal (random faults stop too).
    pub fn heal(&self) {
        self.fail.store(0, Ordering::SeqCst);
        self.lose_answer.store(0, Ordering::SeqCst);
        *self.random.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
    /// From now on every request waits a random time up to `max_delay_ms`, fails with
    /// probability `fail_per_mille` / 1000, and loses its answer (after succeeding) with
    /// probability `lose_per_mille` / 1000; the same seed gives the same sequence.
    pub fn randomize(
        &self,
        seed: u64,
        max_delay_ms: u64,
        fail_per_mille: u64,
        lose_per_mille: u64,
    ) {
        *self.random.lock().unwrap_or_else(|p| p.into_inner()) = Some(RandomFaults {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            max_delay_ms,
            fail_per_mille,
            lose_per_mille,
        });
    }
    /// Draws this request's random faults: (delay ms, fail, lose).
    fn draw(&self) -> (u64, bool, bool) {
        let mut r = self.random.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = r.as_mut() else {
            return (0, false, false);
        };
        let delay = r.next() % (r.max_delay_ms + 1);
        let fail = r.next() % 1000 < r.fail_per_mille;
        let lose = r.next() % 1000 < r.lose_per_mille;
        (delay, fail, lose)
    }
    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                u32::MAX => Some(u32::MAX),
                n => Some(n - 1),
            })
            .is_ok()
    }
    fn should_fail(&self) -> bool {
        Self::take(&self.fail)
    }
    fn should_lose(&self) -> bool {
        Self::take(&self.lose_answer)
    }
    /// Waits as told, then whether the request fails and whether its answer is lost.
    async fn begin(&self) -> (bool, bool) {
        self.wait_if_delayed().await;
        let (delay, fail, lose) = self.draw();
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        (self.should_fail() || fail, lose)
    }
    /// Makes the next request wait `ms` first.
    pub fn delay_next(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
    async fn wait_if_delayed(&self) {
        let ms = self.delay_ms.swap(0, Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

/// An object store whose PUTs and GETs can be made to fail.
pub struct FaultyObjectStore {
    inner: Arc<dyn ObjectStore>,
    /// Faults of PUT requests.
    pub puts: Arc<Faults>,
    /// Faults of GET requests.
    pub gets: Arc<Faults>,
}

impl FaultyObjectStore {
    /// Wraps a store.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyObjectStore {
            inner,
            puts: Arc::default(),
            gets: Arc::default(),
        }
    }
}

fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "faulty",
        source: "injected fault".into(),
    }
}

impl fmt::Debug for FaultyObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyObjectStore")
    }
}
impl fmt::Display for FaultyObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyObjectStore")
    }
}

#[async_trait]
impl ObjectStore for FaultyObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let (fail, lose) = self.puts.begin().await;
        if fail {
            return Err(injected());
        }
        let r = self.inner.put_opts(location, payload, opts).await?;
        if self.puts.should_lose() || lose {
            return Err(injected());
        }
        Ok(r)
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if self.gets.should_fail() {
            return Err(injected());
        }
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        if self.gets.should_fail() {
            return Err(injected());
        }
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A metadata store whose transactions can be made to fail.
pub struct FaultyMetaStore {
    inner: Arc<dyn MetaStore>,
    /// Faults of transactions.
    pub txns: Arc<Faults>,
}

impl FaultyMetaStore {
    /// Wraps a store.
    pub fn new(inner: Arc<dyn MetaStore>) -> Self {
        FaultyMetaStore {
            inner,
            txns: Arc::default(),
        }
    }
}

impl FaultyMetaStore {
    async fn faulty_txn(
        &self,
        compares: Vec<Compare>,
        ops: Vec<Op>,
        relaxed: bool,
    ) -> Result<bool, MetaError> {
        let (fail, lose) = self.txns.begin().await;
        if fail {
            return Err(unavailable());
        }
        let r = if relaxed {
            self.inner.txn_relaxed(compares, ops).await?
        } else {
            self.inner.txn(compares, ops).await?
        };
        if self.txns.should_lose() || lose {
            return Err(unavailable());
        }
        Ok(r)
    }
}

fn unavailable() -> MetaError {
    MetaError::Unavailable("injected fault".into())
}

#[async_trait]
impl MetaStore for FaultyMetaStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, MetaError> {
        self.inner.get(key).await
    }
    async fn range(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, MetaError> {
        self.inner.range(prefix).await
    }
    async fn range_keys(&self, prefix: &str) -> Result<Vec<(String, u64)>, MetaError> {
        self.inner.range_keys(prefix).await
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Versioned>>, MetaError> {
        self.inner.get_many(keys).await
    }
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool, MetaError> {
        self.faulty_txn(compares, ops, false).await
    }
    async fn txn_relaxed(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool, MetaError> {
        self.faulty_txn(compares, ops, true).await
    }
    fn relaxed_may_be_lost(&self) -> bool {
        self.inner.relaxed_may_be_lost()
    }
    fn upkeep(&self, every: std::time::Duration) -> Option<stratus_meta::Upkeep> {
        self.inner.upkeep(every)
    }
    fn watch(&self, prefix: &str) -> tokio::sync::mpsc::Receiver<WatchEvent> {
        self.inner.watch(prefix)
    }
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError> {
        self.inner.grant_lease(ttl).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), MetaError> {
        self.inner.keep_alive(lease).await
    }
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), MetaError> {
        self.inner.revoke_lease(lease).await
    }
}
