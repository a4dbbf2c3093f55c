//! Compaction of etcd's history. etcd keeps every revision of every key until it is told
//! to forget them, and counts them all against its quota (2 GiB by default): Stratus
//! rewrites keys all the time (a WAL index entry per flush, put and later deleted; a
//! partition record per seal; committed offsets), so an etcd without compaction filled its
//! quota within a day or so under load, and then refused every write (its NOSPACE alarm).
//!
//! Each broker runs a round every `metadata.store.compaction.interval.ms`; one of them
//! wins it, by moving the version of the `compaction` key under the cluster's namespace
//! from the version it saw last, and compacts the history up to the revision it saw at its
//! previous round (so at least one interval of history is kept, for watches and paged
//! listings that read at a revision). A broker that loses learns the key's version, and
//! may win the next round. (The Kubernetes API server compacts its etcd the same way.)
//! Compaction is of the whole etcd, every namespace included.

use etcd_client::{Client, Compare as EtcdCompare, CompareOp, Txn, TxnOp, TxnOpResponse};
use tracing::{debug, info, warn};

/// One broker's part in the rounds.
pub struct Compactor {
    client: Client,
    /// [`crate::keys::COMPACTION`], namespaced.
    key: String,
    /// The key's version this broker saw last.
    version: i64,
    /// The store's revision at this broker's previous round.
    last: i64,
}

impl Compactor {
    pub(super) fn new(client: Client, namespace: &str) -> Self {
        Compactor {
            client,
            key: format!("{namespace}{}", crate::keys::COMPACTION),
            version: 0,
            last: 0,
        }
    }

    /// One round: the revision this broker compacted the history to, if it won the round
    /// and had a previous one.
    pub async fn round(&mut self) -> Result<Option<i64>, etcd_client::Error> {
        let mut kv = self.client.kv_client();
        let claim = Txn::new()
            .when([EtcdCompare::version(
                self.key.clone(),
                CompareOp::Equal,
                self.version,
            )])
            .and_then([TxnOp::put(self.key.clone(), Vec::new(), None)])
            .or_else([TxnOp::get(self.key.clone(), None)]);
        let resp = kv.txn(claim).await?;
        let now = resp.header().map_or(0, |h| h.revision());
        let mut compacted = None;
        if resp.succeeded() {
            self.version += 1;
            if self.last > 0 {
                match kv.compact(self.last, None).await {
                    Ok(_) => compacted = Some(self.last),
                    // Compacted further already (by etcd's own auto-compaction, say).
                    Err(e) if e.to_string().contains("compacted") => {
                        debug!(revision = self.last, error = %e, "etcd history already compacted");
                    }
                    Err(e) => return Err(e),
                }
            }
        } else {
            self.version = resp
                .op_responses()
                .into_iter()
                .find_map(|r| match r {
                    TxnOpResponse::Get(g) => Some(g.kvs().first().map_or(0, |kv| kv.version())),
                    _ => None,
                })
                .unwrap_or(0);
        }
        self.last = now;
        Ok(compacted)
    }

    /// Runs a round every `every`, for as long as the process runs.
    pub async fn run(mut self, every: std::time::Duration) {
        let mut failing = false;
        loop {
            tokio::time::sleep(every).await;
            match tokio::time::timeout(every, self.round()).await {
                Ok(Ok(done)) => {
                    if failing {
                        info!("etcd history compaction works again");
                        failing = false;
                    }
                    if let Some(revision) = done {
                        debug!(revision, "etcd history compacted");
                    }
                }
                Ok(Err(e)) if !failing => {
                    warn!(error = %e, "etcd history compaction failed; will retry");
                    failing = true;
                }
                Err(_) if !failing => {
                    warn!("etcd history compaction did not answer; will retry");
                    failing = true;
                }
                _ => {}
            }
        }
    }
}
