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
    let mut budget = if v >= 3 && req.max_bytes > 0 {
        (req.max_bytes as usize).min(h.max_bytes)
    } else {
        h.max_bytes
    };
    let mut total = 0usize;
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
            let replica: Partition;
            let (p, epoch, owner) = match owned {
                Ok(e) => (p.as_ref(), e, true),
                Err(Code::NotLeaderOrFollower) if v >= 11 && serves_rack(h, &req.rack_id) => {
                    match (h.replicas.partition(p), h.routing.owner_of(p)) {
                        (Some(copy), Some((_, e))) => {
                            replica = copy;
                            (&replica, e, false)
                        }
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
            let max = (fp.partition_max_bytes.max(0) as usize).min(budget);
            let behind =
                !owner && fp.fetch_offset > w.high_watermark && fp.fetch_offset >= w.log_start;
            let records = if (max == 0 && total > 0) || behind {
                // A replica that has not seen the newest commit yet answers empty, not
                // OFFSET_OUT_OF_RANGE (which would make the consumer reset).
                Ok(read::Records::default())
            } else {
                read::read_for(h.reader, p, fp.fetch_offset, max.max(1), h.sends_files).await
            };
            match records {
                Ok(r) => {
                    total += r.len();
                    budget = budget.saturating_sub(r.len());
                    rest.put(&out, &mut pd, r.into_pieces());
                }
                Err(e) => {
                    if matches!(e, Error::Object(_) | Error::Meta(_)) {
                        // Committed data that cannot be read is an event for operators.
                        warn!(topic = %p.topic, partition = p.index, offset = fp.fetch_offset,
                            error = %e, "fetch failed: committed data could not be read");
                    }
                    pd.error_code = e.code();
                    pd.records = Some(Bytes::new());
                    error = true;
                }
            }
            out.partitions.push(pd);
        }
        resp.responses.push(out);
    }
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
