//! Fetch: long polling (min_bytes / max_wait), per-partition and total byte limits, stored
//! batch bytes handed out as they are.
//!
//! Fetch sessions (KIP-227) are kept in [`super::fetch_session`]: a full fetch with epoch 0
//! opens one, and an incremental fetch is answered as a full fetch of the session's
//! partitions whose response keeps only what changed.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as Code;
use tokio::time::Instant;
use tracing::warn;

use super::fetch_session::{Context, FetchSessions};
use super::lookup;
use super::splice::Rest;
use crate::cluster::routing::Routing;
use crate::error::Error;
use crate::partition::Partition;
use crate::read;
use crate::read::Reader;
use crate::registry::Registry;
use crate::replica::Replicas;
use kafka_protocol::messages::BrokerId;
use tokio::sync::watch;

/// What Fetch uses.
pub struct Handles<'a> {
    /// Topics.
    pub registry: &'a Registry,
    /// Leaders and rack replicas.
    pub routing: &'a Routing,
    /// Reads through the cache.
    pub reader: &'a Reader,
    /// Read-only copies of partitions owned elsewhere (rack-aware reads).
    pub replicas: &'a Replicas,
    /// Bumped on every WAL commit: long polls wait on it.
    pub committed: &'a watch::Sender<u64>,
    /// `fetch.max.wait.cap.ms`.
    pub max_wait_cap_ms: u64,
    /// This broker's rack.
    pub rack: Option<&'a str>,
    /// `fetch.max.bytes`: the most a response carries, whatever the client asks.
    pub max_bytes: usize,
    /// What the client may do (READ on each topic).
    pub access: super::access::Access<'a>,
    /// Fetch sessions (KIP-227).
    pub sessions: &'a FetchSessions,
    /// The listener the client connected to (the addresses of new leaders are on it).
    pub listener: usize,
    /// The connection sends ranges of segment files itself (see [`read::read_for`]).
    pub sends_files: bool,
}

/// Handles Fetch: the response, and the pieces of its record data after each partition's
/// first ([`Rest`]).
pub async fn handle(h: Handles<'_>, req: FetchRequest, v: i16) -> (FetchResponse, Rest) {
    match h.sessions.context(&req, v) {
        Context::Sessionless => poll(&h, &req, v).await,
        Context::Error(code) => (
            FetchResponse::default().with_error_code(code.code()),
            Rest::default(),
        ),
        Context::Full => {
            let (mut resp, rest) = poll(&h, &req, v).await;
            if resp.error_code == 0 {
                resp.session_id = h.sessions.create(&req, &resp, v);
            }
            (resp, rest)
        }
        Context::Incremental(id, full) => {
            let (mut resp, rest) = poll(&h, &full, v).await;
            // Pieces of partitions it drops stay in `rest`, unused.
            h.sessions.filter(id, &mut resp, v);
            resp.session_id = id;
            (resp, rest)
        }
    }
}

/// Answers `req` once `min_bytes` are there, or at its `max_wait_ms` (capped).
async fn poll(h: &Handles<'_>, req: &FetchRequest, v: i16) -> (FetchResponse, Rest) {
    let cap = h.max_wait_cap_ms;
    let wait = Duration::from_millis((req.max_wait_ms.max(0) as u64).min(cap));
    let deadline = Instant::now() + wait;
    let mut committed = h.committed.subscribe();
    loop {
        committed.mark_unchanged();
        let (resp, rest, bytes, error) = fetch_once(h, req, v).await;
        if bytes >= req.min_bytes.max(0) as usize || error || Instant::now() >= deadline {
            return (resp, rest);
        }
        if tokio::time::timeout_at(deadline, committed.changed())
            .await
            .is_err()
        {
            // Timed out: answer with what is there now.
            let (resp, rest, _, _) = fetch_once(h, req, v).await;
            return (resp, rest);
        }
    }
}

fn fail(pd: &mut PartitionData, code: Code) {
    pd.error_code = code.code();
    pd.high_watermark = -1;
    pd.last_stable_offset = -1;
    pd.log_start_offset = -1;
}

/// KIP-951: a NOT_LEADER_OR_FOLLOWER names the partition's owner (v12+), whose address
/// the response then carries (v16+), so the consumer goes there without a Metadata round
/// trip.
fn name_leader(
    h: &Handles<'_>,
    p: &Partition,
    pd: &mut PartitionData,
    v: i16,
    leaders: &mut BTreeSet<i32>,
) {
    if v < 12 || pd.error_code != Code::NotLeaderOrFollower.code() {
        return;
    }
    if let Some((id, epoch)) = h.routing.new_leader(p) {
        pd.current_leader = LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(id))
            .with_leader_epoch(epoch);
        if v >= 16 {
            leaders.insert(id);
        }
    }
}

/// Whether this broker serves reads of partitions it does not own to this client's rack.
fn serves_rack(h: &Handles<'_>, rack: &kafka_protocol::protocol::StrBytes) -> bool {
    !rack.is_empty() && h.rack == Some(rack.as_str())
}

async fn fetch_once(
    h: &Handles<'_>,
    req: &FetchRequest,
    v: i16,
) -> (FetchResponse, Rest, usize, bool) {
    let read_committed = req.isolation_level == 1;
    let budget = if v >= 3 && req.max_bytes > 0 {
        (req.max_bytes as usize).min(h.max_bytes)
    } else {
        h.max_bytes
    };
    let mut reads = Vec::new();
    let mut error = false;
    let mut resp = FetchResponse::default();
    let mut rest = Rest::default();
    let ownership_deadline = lookup::ownership_deadline();
    let mut leaders = BTreeSet::new();
    for t in &req.topics {
        let topic = lookup::topic(h.registry, v >= 13, &t.topic_id, t.topic.0.as_str());
        let mut out = FetchableTopicResponse::default();
        if v >= 13 {
            out.topic_id = t.topic_id;
        } else {
            out.topic = t.topic.clone();
        }
        let allowed = h.access.topic_as_named(
            stratus_auth::acl::op::READ,
            t.topic.0.as_str(),
            topic.as_ref().map(|tp| tp.name.as_ref()),
            v >= 13,
        );
        for fp in &t.partitions {
            let mut pd = PartitionData::default()
                .with_partition_index(fp.partition)
                .with_high_watermark(-1);
            if v >= 4 {
                pd.aborted_transactions = read_committed.then(Vec::new);
            }
            if !allowed {
                pd.error_code = Code::TopicAuthorizationFailed.code();
                error = true;
                out.partitions.push(pd);
                continue;
            }
            let Some(p) = lookup::partition(topic.as_ref(), fp.partition) else {
                let unknown = lookup::unknown_topic(v >= 13 && topic.is_none());
                pd.error_code = unknown.code();
                error = true;
                out.partitions.push(pd);
                continue;
            };
            let owned_epoch = || {
                let s = p.state();
                s.check_owner().map(|_| s.leader_epoch())
            };
            let mut owned = owned_epoch();
            if owned == Err(Code::NotLeaderOrFollower) {
                // Assigned here but maybe not taken over yet: wait for it, then look again.
                h.routing.await_ownership(p, ownership_deadline).await;
                owned = owned_epoch();
            }
            // Owned here, or a read-only copy for a consumer of this broker's rack.
            let (target, epoch) = match owned {
                Ok(e) => (Target::Owned(p.clone()), e),
                Err(Code::NotLeaderOrFollower) if v >= 11 && serves_rack(h, &req.rack_id) => {
                    match (h.replicas.partition(p), h.routing.owner_of(p)) {
                        (Some(copy), Some((_, e))) => (Target::Copy(Box::new(copy)), e),
                        _ => {
                            fail(&mut pd, Code::NotLeaderOrFollower);
                            name_leader(h, p, &mut pd, v, &mut leaders);
                            error = true;
                            out.partitions.push(pd);
                            continue;
                        }
                    }
                }
                Err(code) => {
                    fail(&mut pd, code);
                    name_leader(h, p, &mut pd, v, &mut leaders);
                    error = true;
                    out.partitions.push(pd);
                    continue;
                }
            };
            let owner = matches!(target, Target::Owned(_));
            let p = target.get();
            let w = read::watermarks(p);
            pd.high_watermark = w.high_watermark;
            if v >= 4 {
                pd.last_stable_offset = w.high_watermark;
            }
            if v >= 5 {
                pd.log_start_offset = w.log_start;
            }
            let client_epoch = if v >= 9 { fp.current_leader_epoch } else { -1 };
            if let Err(code) = lookup::check_leader_epoch(client_epoch, epoch) {
                pd.error_code = code.code();
                error = true;
                out.partitions.push(pd);
                continue;
            }
            if owner && v >= 11 {
                if let Some(node) = h.routing.preferred_replica(&req.rack_id, p.index) {
                    // Never records together with a preferred replica.
                    pd.preferred_read_replica = BrokerId(node);
                    pd.records = Some(Bytes::new());
                    out.partitions.push(pd);
                    continue;
                }
            }
            let behind =
                !owner && fp.fetch_offset > w.high_watermark && fp.fetch_offset >= w.log_start;
            reads.push(ToRead {
                topic: resp.responses.len(),
                slot: out.partitions.len(),
                offset: fp.fetch_offset,
                limit: fp.partition_max_bytes.max(0) as usize,
                until: w.high_watermark,
                behind,
                target,
            });
            out.partitions.push(pd);
        }
        resp.responses.push(out);
    }
    let (total, read_error) = read_all(h, &reads, budget, &mut resp, &mut rest).await;
    error |= read_error;
    resp.node_endpoints = h
        .routing
        .endpoints(h.listener, &leaders)
        .into_iter()
        .map(|b| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(b.node))
                .with_host(StrBytes::from_string(b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.map(StrBytes::from_string))
        })
        .collect();
    (resp, rest, total, error)
}

/// Partitions fetched at once: the reads of a fetch overlap, so that one waiting for a GET
/// (a cold read from an object store, a segment's index) does not hold up the others.
const READS_AT_ONCE: usize = 16;

/// The partition a read is of: owned here, or a read-only copy (a rack-aware read).
enum Target {
    Owned(std::sync::Arc<Partition>),
    Copy(Box<Partition>),
}

impl Target {
    fn get(&self) -> &Partition {
        match self {
            Target::Owned(p) => p,
            Target::Copy(p) => p,
        }
    }
}

/// A partition of the response whose records are read once every partition has been
/// looked at: `resp.responses[topic].partitions[slot]`.
struct ToRead {
    topic: usize,
    slot: usize,
    target: Target,
    offset: i64,
    /// `partition_max_bytes`.
    limit: usize,
    /// The high watermark the response reports: nothing at or past it is handed out.
    until: i64,
    /// A rack replica behind the owner's high watermark: answered empty.
    behind: bool,
}

impl ToRead {
    /// The byte limit of its read with `budget` left of the response after `total` bytes,
    /// or `None` if it is answered empty (the budget is spent, or a replica is behind).
    fn limit(&self, budget: usize, total: usize) -> Option<usize> {
        let max = self.limit.min(budget);
        ((max > 0 || total == 0) && !self.behind).then_some(max.max(1))
    }
}

/// Reads the records of `reads` into the response, in order, within `budget` bytes in all
/// (at least one batch), as Kafka does one partition after another; up to
/// [`READS_AT_ONCE`] reads run at once, each with the budget left when it starts. A read
/// that got more than the budget left when its turn comes (the ones before it took more)
/// is read again with that (from the cache, which the first read filled). Returns the
/// bytes handed out and whether a partition failed.
async fn read_all(
    h: &Handles<'_>,
    reads: &[ToRead],
    budget: usize,
    resp: &mut FetchResponse,
    rest: &mut Rest,
) -> (usize, bool) {
    use futures::StreamExt;
    let (mut budget, mut total) = (budget, 0usize);
    let mut error = false;
    let mut started = futures::stream::FuturesOrdered::new();
    let mut next = reads.iter();
    for r in reads {
        while started.len() < READS_AT_ONCE {
            let Some(q) = next.next() else { break };
            started.push_back(start_read(h, q, q.limit(budget, total)));
        }
        let got = started.next().await.flatten();
        let records = match (r.limit(budget, total), got) {
            (None, _) => Ok(read::Records::default()),
            (Some(max), Some(Ok(got))) if got.len() <= max => Ok(got),
            (Some(_), Some(Err(e))) => Err(e),
            (Some(max), _) => read_one(h, r, max).await,
        };
        let Some(topic) = resp.responses.get_mut(r.topic) else {
            continue;
        };
        let Some(mut pd) = topic.partitions.get_mut(r.slot).map(std::mem::take) else {
            continue;
        };
        match records {
            Ok(got) => {
                total += got.len();
                budget = budget.saturating_sub(got.len());
                rest.put(topic, &mut pd, got.into_pieces());
            }
            Err(e) => {
                let p = r.target.get();
                if matches!(e, Error::Object(_) | Error::Meta(_)) {
                    // Committed data that cannot be read is an event for operators.
                    warn!(topic = %p.topic, partition = p.index, offset = r.offset,
                        error = %e, "fetch failed: committed data could not be read");
                }
                pd.error_code = e.code();
                pd.records = Some(Bytes::new());
                error = true;
            }
        }
        if let Some(slot) = topic.partitions.get_mut(r.slot) {
            *slot = pd;
        }
    }
    (total, error)
}

/// The read of `r` with `max` bytes, or `None` (answered empty).
async fn start_read(
    h: &Handles<'_>,
    r: &ToRead,
    max: Option<usize>,
) -> Option<crate::error::Result<read::Records>> {
    Some(read_one(h, r, max?).await)
}

/// The read of `r` with `max` bytes.
async fn read_one(h: &Handles<'_>, r: &ToRead, max: usize) -> crate::error::Result<read::Records> {
    read::read_for(
        h.reader,
        r.target.get(),
        r.offset,
        max,
        h.sends_files,
        r.until,
    )
    .await
}
