//! etcd backend of the metadata store, for clusters (etcd v3 API over gRPC).
//!
//! Every key lives under a namespace prefix (`/stratus/` unless the URL names another), so
//! several clusters may share one etcd. Each call has a deadline: an etcd that does not
//! answer gives [`MetaError::Unavailable`] (retriable) instead of a hang. Credentials, if
//! the etcd has auth enabled, come from `ETCD_USERNAME` / `ETCD_PASSWORD`, never from the
//! command line.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{Compare, LeaseId, MetaError, MetaStore, Op, Versioned, WatchEvent, MAX_TXN_OPS};

mod compact;
pub use compact::Compactor;

const WATCH_QUEUE: usize = 4096;
/// Keys per answer of a listing with values. etcd's client refuses an answer over its
/// message limit (4 MiB by default), and a range of the WAL index passed that at about a
/// thousand entries of a hundred partitions: every listing failed from then on. A listing
/// is read in pages at the revision of its first, so it is still one snapshot.
const PAGE: i64 = 128;
/// Keys per answer of a listing of keys alone.
const KEYS_PAGE: i64 = 4096;
/// Largest answer taken: a page of the largest values etcd stores (1.5 MiB by default).
const MAX_ANSWER: usize = 256 << 20;

/// The etcd store.
pub struct EtcdStore {
    client: Client,
    namespace: String,
    timeout: Duration,
    /// The highest store revision any answer to this client has named. A watch starts
    /// just after it, so a change made after [`MetaStore::watch`] returns is delivered
    /// even though the gRPC watch itself is set up later, in the background.
    seen: Arc<AtomicI64>,
}

fn unavailable(e: impl std::fmt::Display) -> MetaError {
    MetaError::Unavailable(e.to_string())
}

/// An error of the etcd client: a request etcd refused for its size (`--max-request-bytes`,
/// 1.5 MiB by default, or gRPC's own message limit) is [`MetaError::TooLarge`], a definite
/// refusal (nothing applied) that sending it again cannot mend; anything else may or may
/// not have applied and is [`MetaError::Unavailable`].
fn store_error(e: etcd_client::Error) -> MetaError {
    if let etcd_client::Error::GRpcStatus(s) = &e {
        let too_large = match s.code() {
            tonic::Code::InvalidArgument => s.message().contains("too large"),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange => {
                s.message().contains("message length too large")
                    || s.message().contains("larger than max")
            }
            _ => false,
        };
        if too_large {
            return MetaError::TooLarge(format!("etcd refused the request: {}", s.message()));
        }
    }
    unavailable(e)
}

/// TLS to etcd: the CA certificates that sign its server certificate (PEM; none: the
/// system's), and the client's certificate chain and key (PEM) when etcd asks for one
/// (`--client-cert-auth`).
#[derive(Clone, Default)]
pub struct EtcdTls {
    /// CA certificates (PEM).
    pub ca: Option<Vec<u8>>,
    /// The client's certificate chain and private key (PEM; one file may hold both).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The identity holds a private key.
        f.debug_struct("EtcdTls")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

/// Parses `etcd://host:port[,host:port...][/namespace]` into endpoints and namespace.
pub fn parse_url(url: &str) -> Result<(Vec<String>, String), String> {
    let rest = url
        .strip_prefix("etcd://")
        .ok_or_else(|| format!("'{url}' is not an etcd:// URL"))?;
    let (hosts, ns) = match rest.split_once('/') {
        Some((h, ns)) if !ns.trim_matches('/').is_empty() => {
            (h, format!("/{}/", ns.trim_matches('/')))
        }
        Some((h, _)) => (h, "/stratus/".to_string()),
        None => (rest, "/stratus/".to_string()),
    };
    let endpoints: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("http://{h}"))
        .collect();
    if endpoints.is_empty() {
        return Err(format!("'{url}' names no etcd endpoint"));
    }
    Ok((endpoints, ns))
}

impl EtcdStore {
    /// Connects to etcd, over TLS when `tls` is given. The connection is lazy: an etcd
    /// that is down now makes calls fail (retriably) until it is back, and the store
    /// reconnects by itself.
    pub async fn connect(
        url: &str,
        timeout: Duration,
        tls: Option<EtcdTls>,
    ) -> Result<Self, MetaError> {
        let (mut endpoints, namespace) = parse_url(url).map_err(MetaError::Unavailable)?;
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), timeout)
            .with_keep_alive_while_idle(true);
        if let (Ok(user), Ok(password)) = (
            std::env::var("ETCD_USERNAME"),
            std::env::var("ETCD_PASSWORD"),
        ) {
            opts = opts.with_user(user, password);
        }
        if let Some(tls) = tls {
            for e in &mut endpoints {
                *e = e.replacen("http://", "https://", 1);
            }
            let mut config = etcd_client::TlsOptions::new().with_enabled_roots();
            if let Some(ca) = tls.ca {
                config = config.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = tls.identity {
                config = config.identity(etcd_client::Identity::from_pem(cert, key));
            }
            opts = opts.with_tls(config);
        }
        let client = Client::connect(endpoints, Some(opts))
            .await
            .map_err(unavailable)?;
        Ok(EtcdStore {
            client,
            namespace,
            timeout,
            seen: Arc::new(AtomicI64::new(0)),
        })
    }

    /// This broker's part in compacting etcd's history ([`Compactor::run`]).
    pub fn compactor(&self) -> Compactor {
        Compactor::new(self.client.clone(), &self.namespace)
    }

    /// Notes the revision an answer was given at.
    fn saw(&self, header: Option<&etcd_client::ResponseHeader>) {
        if let Some(h) = header {
            self.seen.fetch_max(h.revision(), Ordering::AcqRel);
        }
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.namespace)
    }

    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_ANSWER)
    }

    /// Every key under `prefix` (values too unless `keys_only`), in pages read at the
    /// revision of the first.
    async fn list<T>(
        &self,
        prefix: &str,
        keys_only: bool,
        mut each: impl FnMut(&str, &KeyValue) -> T,
    ) -> Result<Vec<T>, MetaError> {
        let mut from = self.key(prefix).into_bytes();
        let end = prefix_end(&from);
        let mut at = 0;
        let mut out = Vec::new();
        let mut kv = self.kv();
        loop {
            let mut opts = GetOptions::new().with_range(end.clone());
            opts = match keys_only {
                true => opts.with_keys_only().with_limit(KEYS_PAGE),
                false => opts.with_limit(PAGE),
            };
            if at > 0 {
                opts = opts.with_revision(at);
            }
            let resp = self.deadline(kv.get(from.clone(), Some(opts))).await?;
            self.saw(resp.header());
            if at == 0 {
                at = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            for kv in resp.kvs() {
                if let Some(k) = self.strip(kv.key()) {
                    out.push(each(k, kv));
                }
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    fn strip<'a>(&self, k: &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(k)
            .ok()?
            .strip_prefix(self.namespace.as_str())
    }

    async fn deadline<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, MetaError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(store_error),
            Err(_) => Err(MetaError::Unavailable(format!(
                "etcd did not answer within {:?}",
                self.timeout
            ))),
        }
    }
}

fn revision(r: i64) -> u64 {
    r.max(0) as u64
}

/// The first key after every key that starts with `prefix` (`\0`: no end).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn versioned(kv: &KeyValue) -> Versioned {
    Versioned {
        value: Bytes::copy_from_slice(kv.value()),
        mod_revision: revision(kv.mod_revision()),
    }
}

#[async_trait]
impl MetaStore for EtcdStore {
    fn upkeep(&self, every: std::time::Duration) -> Option<crate::Upkeep> {
        Some(Box::pin(self.compactor().run(every)))
    }

    async fn get(&self, key: &str) -> Result<Option<Versioned>, MetaError> {
        let mut kv = self.kv();
        let resp = self.deadline(kv.get(self.key(key), None)).await?;
        self.saw(resp.header());
        Ok(resp.kvs().first().map(versioned))
    }

    async fn range(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, MetaError> {
        self.list(prefix, false, |k, kv| (k.to_string(), versioned(kv)))
            .await
    }

    async fn range_keys(&self, prefix: &str) -> Result<Vec<(String, u64)>, MetaError> {
        self.list(prefix, true, |k, kv| {
            (k.to_string(), revision(kv.mod_revision()))
        })
        .await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Versioned>>, MetaError> {
        let mut out = Vec::with_capacity(keys.len());
        let mut kv = self.kv();
        for chunk in keys.chunks(MAX_TXN_OPS) {
            let gets: Vec<TxnOp> = chunk
                .iter()
                .map(|k| TxnOp::get(self.key(k), None))
                .collect();
            let resp = self.deadline(kv.txn(Txn::new().and_then(gets))).await?;
            self.saw(resp.header());
            let answers = resp.op_responses();
            if answers.len() != chunk.len() {
                return Err(MetaError::Unavailable(format!(
                    "etcd answered {} of {} reads",
                    answers.len(),
                    chunk.len()
                )));
            }
            for a in answers {
                match a {
                    TxnOpResponse::Get(g) => out.push(g.kvs().first().map(versioned)),
                    _ => {
                        return Err(MetaError::Unavailable(
                            "etcd answered a read with a write".into(),
                        ))
                    }
                }
            }
        }
        Ok(out)
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<bool, MetaError> {
        if compares.len() + ops.len() > MAX_TXN_OPS {
            return Err(MetaError::TooLarge(format!(
                "{} compares and ops in one transaction (at most {MAX_TXN_OPS})",
                compares.len() + ops.len()
            )));
        }
        let when: Vec<EtcdCompare> = compares
            .into_iter()
            .map(|c| match c {
                Compare::Revision(k, rev) => EtcdCompare::mod_revision(
                    self.key(&k),
                    CompareOp::Equal,
                    rev.map(|r| r as i64).unwrap_or(0),
                ),
                Compare::Value(k, Some(v)) => {
                    EtcdCompare::value(self.key(&k), CompareOp::Equal, v.to_vec())
                }
                Compare::Value(k, None) => EtcdCompare::version(self.key(&k), CompareOp::Equal, 0),
            })
            .collect();
        let then: Vec<TxnOp> = ops
            .into_iter()
            .map(|o| match o {
                Op::Put(k, v, lease) => TxnOp::put(
                    self.key(&k),
                    v.to_vec(),
                    lease.map(|l| PutOptions::new().with_lease(l)),
                ),
                Op::Delete(k) => TxnOp::delete(self.key(&k), None),
            })
            .collect();
        let mut kv = self.kv();
        let resp = self
            .deadline(kv.txn(Txn::new().when(when).and_then(then)))
            .await?;
        self.saw(resp.header());
        Ok(resp.succeeded())
    }

    fn watch(&self, prefix: &str) -> mpsc::Receiver<WatchEvent> {
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        let mut client = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_ANSWER);
        let key = self.key(prefix);
        let ns = self.namespace.clone();
        let timeout = self.timeout;
        // Every change after this call has a revision above the highest one this client
        // has been told of, so watching from just after it misses none of them (and may
        // replay a few older ones, which a watcher re-reads anyway). A start revision
        // etcd has compacted cancels the watch, and the watcher re-reads.
        let mut options = WatchOptions::new().with_prefix();
        let seen = self.seen.load(Ordering::Acquire);
        if seen > 0 {
            options = options.with_start_revision(seen + 1);
        }
        tokio::spawn(async move {
            // Ends (closing the channel) when the stream breaks or the receiver is gone:
            // the watcher then re-reads and watches again, as the trait asks.
            let stream =
                tokio::time::timeout(timeout, client.watch(key.clone(), Some(options))).await;
            let mut stream = match stream {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(prefix = key, error = %e, "etcd watch not started");
                    return;
                }
                Err(_) => return,
            };
            loop {
                let msg = tokio::select! {
                    m = stream.message() => m,
                    _ = tx.closed() => return,
                };
                let resp = match msg {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(e) => {
                        debug!(prefix = key, error = %e, "etcd watch ended");
                        return;
                    }
                };
                if resp.canceled() {
                    warn!(
                        prefix = key,
                        reason = resp.cancel_reason(),
                        "etcd watch canceled"
                    );
                    return;
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let Some(k) = std::str::from_utf8(kv.key())
                        .ok()
                        .and_then(|k| k.strip_prefix(ns.as_str()))
                    else {
                        continue;
                    };
                    let event = WatchEvent {
                        key: k.to_string(),
                        value: match ev.event_type() {
                            EventType::Put => Some(Bytes::copy_from_slice(kv.value())),
                            EventType::Delete => None,
                        },
                        revision: revision(kv.mod_revision()),
                    };
                    if tx.try_send(event).is_err() {
                        // Full or closed: the watcher re-reads, as with the embedded store.
                        return;
                    }
                }
            }
        });
        rx
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError> {
        let mut lease = self.client.lease_client();
        let secs = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let resp = self.deadline(lease.grant(secs, None)).await?;
        Ok(resp.id())
    }

    async fn keep_alive(&self, id: LeaseId) -> Result<(), MetaError> {
        let mut lease = self.client.lease_client();
        let once = async {
            let (mut keeper, mut stream) = lease.keep_alive(id).await?;
            keeper.keep_alive().await?;
            stream.message().await
        };
        match self.deadline(once).await {
            Ok(Some(r)) if r.ttl() > 0 => Ok(()),
            Ok(_) => Err(MetaError::LeaseNotFound(id)),
            Err(MetaError::Unavailable(m)) if m.contains("not found") => {
                Err(MetaError::LeaseNotFound(id))
            }
            Err(e) => Err(e),
        }
    }

    async fn revoke_lease(&self, id: LeaseId) -> Result<(), MetaError> {
        let mut lease = self.client.lease_client();
        match self.deadline(lease.revoke(id)).await {
            Ok(_) => Ok(()),
            Err(MetaError::Unavailable(m)) if m.contains("not found") => {
                Err(MetaError::LeaseNotFound(id))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("etcd://127.0.0.1:2379").unwrap(),
            (
                vec!["http://127.0.0.1:2379".to_string()],
                "/stratus/".into()
            )
        );
        assert_eq!(
            parse_url("etcd://a:1,b:2/prod/kafka/").unwrap(),
            (
                vec!["http://a:1".to_string(), "http://b:2".to_string()],
                "/prod/kafka/".into()
            )
        );
        assert!(parse_url("etcd:///x").is_err());
        assert!(parse_url("http://a:1").is_err());
    }

    /// A store in a namespace of its own on the etcd `STRATUS_TEST_ETCD` names
    /// (scripts/test.sh starts one); `None` (the test skips) when it names none, unless
    /// `STRATUS_REQUIRE_ETCD` is set.
    async fn test_store(what: &str) -> Option<EtcdStore> {
        let Ok(endpoint) = std::env::var("STRATUS_TEST_ETCD") else {
            assert!(
                std::env::var("STRATUS_REQUIRE_ETCD").is_err(),
                "STRATUS_REQUIRE_ETCD is set but STRATUS_TEST_ETCD names no etcd"
            );
            eprintln!("STRATUS_TEST_ETCD not set: skipping the etcd {what} test");
            return None;
        };
        let ns = uuid::Uuid::new_v4();
        let store = EtcdStore::connect(
            &format!("etcd://{endpoint}/{what}-{ns}"),
            Duration::from_secs(5),
            None,
        )
        .await
        .unwrap();
        Some(store)
    }

    /// The conformance suite against a real etcd.
    #[tokio::test]
    async fn etcd_passes_conformance() {
        let Some(store) = test_store("conformance").await else {
            return;
        };
        crate::conformance::run_all(&store).await;
    }

    /// One broker a round compacts the history, up to the revision it saw at its
    /// previous round: older revisions are gone, the current values stay.
    #[tokio::test]
    async fn one_broker_a_round_compacts_etcds_history_keeping_an_interval() {
        let Some(store) = test_store("compaction").await else {
            return;
        };
        let (mut a, mut b) = (store.compactor(), store.compactor());
        store.put("k", Bytes::from_static(b"1")).await.unwrap();
        let first = store.get("k").await.unwrap().unwrap().mod_revision as i64;
        // The first round: a claims it (nothing to compact yet), b loses.
        assert_eq!(a.round().await.unwrap(), None);
        assert_eq!(b.round().await.unwrap(), None);
        store.put("k", Bytes::from_static(b"2")).await.unwrap();
        let mut kv = store.client.kv_client();
        let old = |rev| GetOptions::new().with_revision(rev);
        assert!(kv.get(store.key("k"), Some(old(first))).await.is_ok());
        // The next round: one of them compacts, to a revision after the first write.
        let (x, y) = (a.round().await.unwrap(), b.round().await.unwrap());
        let to = match (x, y) {
            (Some(r), None) | (None, Some(r)) => r,
            other => panic!("one compaction a round, not {other:?}"),
        };
        assert!(to > first);
        let gone = kv.get(store.key("k"), Some(old(first))).await;
        assert!(
            gone.as_ref()
                .is_err_and(|e| e.to_string().contains("compacted")),
            "{gone:?}"
        );
        assert_eq!(store.get("k").await.unwrap().unwrap().value, "2");
        // And the round after that, again one.
        store.put("k", Bytes::from_static(b"3")).await.unwrap();
        let (x, y) = (a.round().await.unwrap(), b.round().await.unwrap());
        assert!(x.is_some() != y.is_some(), "{x:?} {y:?}");
    }

    /// A transaction over etcd's request limit (1.5 MiB by default, the one scripts/test.sh
    /// starts etcd with) is a definite refusal, TooLarge, not an outage to retry; and
    /// nothing of it applied.
    #[tokio::test]
    async fn a_transaction_over_etcds_request_limit_is_too_large_and_applies_nothing() {
        let Some(store) = test_store("limit").await else {
            return;
        };
        // Over etcd's limit; and over gRPC's limit on what it receives (the limit plus
        // 512 KiB), which etcd answers with another code.
        for size in [1700 << 10, 3 << 20] {
            let value = Bytes::from(vec![b'x'; size]);
            let res = store
                .txn(
                    vec![Compare::Revision("k".into(), None)],
                    vec![Op::Put("k".into(), value, None)],
                )
                .await;
            assert!(
                matches!(res, Err(MetaError::TooLarge(_))),
                "{size} B: {res:?}"
            );
            assert!(store.get("k").await.unwrap().is_none());
        }
        let small = Bytes::from(vec![b'x'; 1 << 20]);
        assert!(store
            .txn(vec![], vec![Op::Put("k".into(), small, None)])
            .await
            .unwrap());
    }
}
