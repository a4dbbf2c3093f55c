//! Request handlers, one file per API family, and the dispatch from a decoded header.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use opentelemetry::trace::FutureExt as _;
use tracing::error;

use crate::broker::Broker;
use crate::quotas::response::{Charge, Timed};
use crate::quotas::Throttle;

pub mod access;
pub mod acls;
pub mod admin;
pub mod api_versions;
pub mod configs;
pub mod coordination;
pub mod fetch;
pub mod fetch_session;
pub mod group_offsets;
pub mod groups;
pub mod lookup;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod quotas;
pub mod scram;
pub mod splice;

/// What a handler knows of the connection a request came on.
#[derive(Debug, Clone)]
pub struct Session {
    /// Index of the listener (in `listeners`) the client connected to.
    pub listener: usize,
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// Who the client is: what authorization will check.
    pub principal: Principal,
    /// The connection sends ranges of files itself (`sendfile`, plaintext only).
    pub sends_files: bool,
}

pub use crate::auth::Principal;

/// The response of one request, ready when its work is done; `None` sends nothing
/// (acks=0 produce).
pub type ResponseFuture = Pin<Box<dyn Future<Output = Option<splice::Frame>> + Send>>;

/// A response before it is encoded: a fetch response's record data may be in pieces, the
/// first in each partition's `records` and the others in `rest` (see [`splice`]).
#[derive(Debug)]
pub struct Reply {
    /// The response.
    pub kind: ResponseKind,
    /// The record pieces of a fetch response after each partition's first.
    pub rest: splice::Rest,
}

impl From<ResponseKind> for Reply {
    fn from(kind: ResponseKind) -> Self {
        Reply {
            kind,
            rest: splice::Rest::default(),
        }
    }
}

type ReplyFuture = Pin<Box<dyn Future<Output = Option<Reply>> + Send>>;

/// The APIs and versions this broker serves: every one of them works at every version.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
];

/// The supported range of an API.
pub fn supported(key: i16) -> Option<(ApiKey, i16, i16)> {
    SUPPORTED.iter().copied().find(|(k, _, _)| *k as i16 == key)
}

/// Encodes a response with its header as the pieces to write: a fetch response's record
/// data is not copied (see [`splice`]).
pub fn encode_frame(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    reply: &Reply,
) -> Option<splice::Frame> {
    if let ResponseKind::Fetch(f) = &reply.kind {
        let header = ResponseHeader::default().with_correlation_id(correlation_id);
        let hv = api.response_header_version(version);
        if let Some(frame) = splice::fetch(&header, hv, f, &reply.rest, version) {
            return Some(frame);
        }
        if !reply.rest.is_empty() {
            let whole = ResponseKind::Fetch(reply.rest.joined(f));
            return encode(api, version, correlation_id, &whole).map(splice::Frame::from);
        }
    }
    encode(api, version, correlation_id, &reply.kind).map(splice::Frame::from)
}

/// Encodes a response with its header.
pub fn encode(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    resp: &ResponseKind,
) -> Option<Bytes> {
    // A fetch response is mostly record data: sized up front, it is copied once, never
    // again by the buffer growing (which cost a tenth of a hot consumer's CPU).
    let capacity = match resp {
        ResponseKind::Fetch(f) => {
            use kafka_protocol::protocol::Encodable;
            f.compute_size(version).unwrap_or(0) + 16
        }
        _ => 0,
    };
    let mut buf = BytesMut::with_capacity(capacity);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let res = header
        .encode(&mut buf, api.response_header_version(version))
        .and_then(|_| resp.encode(&mut buf, version));
    match res {
        Ok(()) => Some(buf.freeze()),
        Err(e) => {
            // A bug: the response set a field this version cannot carry.
            error!(?api, version, error = %e, "response could not be encoded");
            None
        }
    }
}

/// The response of one request before it is encoded; `None` sends nothing.
pub type KindFuture = Pin<Box<dyn Future<Output = Option<ResponseKind>> + Send>>;

/// Decodes one request frame and starts it. Produce appends happen before this returns,
/// so they keep the connection's order; everything else runs when its response is due.
/// When client quotas are set, the request is charged to its client once answered, and
/// `throttle` mutes the connection of a client over its quota. A sampled request's work
/// runs in its `trace` context, so that what it does below shows in its trace.
pub async fn dispatch(
    broker: &Arc<Broker>,
    session: Session,
    frame: Bytes,
    throttle: &Arc<Throttle>,
    trace: Option<opentelemetry::Context>,
) -> anyhow::Result<ResponseFuture> {
    let size = frame.len();
    let (api, version, correlation_id) = peek(&frame)?;
    if !supports(api, version) {
        if api == ApiKey::ApiVersions {
            let resp = api_versions::unsupported_version(correlation_id);
            return Ok(Box::pin(async move { Some(splice::Frame::from(resp)) }));
        }
        bail!("unsupported version {version} of {api:?}");
    }
    let (header, request) = decode_request(frame)?;
    let broker = broker.clone();
    let charge = broker.quotas.enabled().then(|| Charge {
        quotas: broker.quotas.clone(),
        user: session.principal.name().to_string(),
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        throttle: throttle.clone(),
    });
    let mut busy = Duration::ZERO;
    let mut throttled_until = None;
    let work: ReplyFuture = if let RequestKind::Produce(req) = request {
        if let Some(charge) = &charge {
            throttled_until = charge.produce(size);
        }
        let handles = produce::Handles {
            registry: &broker.registry,
            routing: &broker.routing,
            wal: &broker.wal,
            clock: broker.clock.as_ref(),
            metrics: &broker.telemetry.topics,
            access: access::Access {
                authz: &broker.authz,
                principal: &session.principal,
                host: session.peer.ip(),
            },
            listener: session.listener,
        };
        let start = produce::start(handles, req, version);
        let start: Pin<Box<dyn Future<Output = KindFuture> + Send + '_>> = match &trace {
            Some(cx) => Box::pin(start.with_context(cx.clone())),
            None => Box::pin(start),
        };
        let work = if charge.is_some() {
            let (work, spent) = Timed::new(start, Duration::ZERO).await;
            busy = spent;
            work
        } else {
            start.await
        };
        Box::pin(async move { work.await.map(Reply::from) })
    } else {
        let broker = broker.clone();
        let work = async move { Some(handle(&broker, session, &header, request, version).await) };
        match trace {
            Some(cx) => Box::pin(work.with_context(cx)),
            None => Box::pin(work),
        }
    };
    let seen = broker.clone();
    Ok(match charge {
        None => Box::pin(async move {
            let resp = work.await?;
            observe(&seen, api, &resp);
            encode_frame(api, version, correlation_id, &resp)
        }),
        Some(charge) => Box::pin(async move {
            let (reply, busy) = Timed::new(work, busy).await;
            let (kind, rest) = match reply {
                Some(r) => (Some(r.kind), r.rest),
                None => (None, splice::Rest::default()),
            };
            let aside = match &kind {
                Some(ResponseKind::Fetch(f)) => rest.len_in(f),
                _ => 0,
            };
            let kind = charge
                .settle(api, version, throttled_until, kind, aside, busy)
                .await?;
            let reply = Reply { kind, rest };
            observe(&seen, api, &reply);
            encode_frame(api, version, correlation_id, &reply)
        }),
    })
}

/// Counts a response's error codes, and the bytes and records a Fetch sends per topic and
/// per partition.
fn observe(broker: &Broker, api: ApiKey, reply: &Reply) {
    let t = &broker.telemetry;
    t.requests.count_errors(api, &reply.kind);
    let ResponseKind::Fetch(f) = &reply.kind else {
        return;
    };
    for topic in &f.responses {
        let (mut bytes, mut records) = (0u64, 0u64);
        let known = if topic.topic.is_empty() {
            broker.registry.topic_by_id(&topic.topic_id)
        } else {
            broker.registry.topic(topic.topic.as_str())
        };
        for p in &topic.partitions {
            if p.records.is_some() {
                let pieces = reply.rest.pieces(topic, p);
                let n = pieces.iter().map(crate::read::Piece::len).sum::<usize>() as u64;
                bytes += n;
                // Batches never straddle two pieces: each is a run of whole batches.
                records += pieces
                    .iter()
                    .map(|piece| match piece {
                        crate::read::Piece::Bytes(b) => crate::telemetry::records_in(b),
                        crate::read::Piece::File(f) => f.records,
                    })
                    .sum::<u64>();
                let part = known.as_ref().and_then(|k| {
                    usize::try_from(p.partition_index)
                        .ok()
                        .and_then(|i| k.partitions.get(i))
                });
                if let Some(part) = part {
                    part.traffic.fetched(n);
                }
            }
        }
        if bytes == 0 {
            continue;
        }
        if let Some(known) = &known {
            t.topics.fetched(&known.name, bytes, records);
        }
    }
}

/// The API key, version and correlation id at the start of a frame; an error for a
/// short frame or an API this broker does not serve.
fn peek(frame: &Bytes) -> anyhow::Result<(ApiKey, i16, i32)> {
    if frame.len() < 8 {
        bail!(
            "frame of {} bytes is shorter than a request header",
            frame.len()
        );
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Some((api, _, _)) = supported(key) else {
        bail!("unsupported api key {key}");
    };
    Ok((api, version, correlation_id))
}

fn supports(api: ApiKey, version: i16) -> bool {
    supported(api as i16).is_some_and(|(_, min, max)| (min..=max).contains(&version))
}

/// Decodes a whole request frame (header and body) of a supported API and version.
pub fn decode_request(frame: Bytes) -> anyhow::Result<(RequestHeader, RequestKind)> {
    let (api, version, _) = peek(&frame)?;
    if !supports(api, version) {
        bail!("unsupported version {version} of {api:?}");
    }
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, api.request_header_version(version))?;
    let request = RequestKind::decode(api, &mut buf, version)?;
    Ok((header, request))
}

async fn handle(
    broker: &Arc<Broker>,
    session: Session,
    header: &RequestHeader,
    req: RequestKind,
    v: i16,
) -> Reply {
    let client_id = header.client_id.as_ref().map(|c| c.as_str()).unwrap_or("");
    if let Some(refused) = coordination::refuse(&broker.groups, &req, v) {
        return refused.into();
    }
    let mut rest = splice::Rest::default();
    let mut kind = route(broker, session, client_id, req, v, &mut rest).await;
    coordination::mark(&broker.groups, &mut kind);
    Reply { kind, rest }
}

async fn route(
    broker: &Arc<Broker>,
    session: Session,
    client_id: &str,
    req: RequestKind,
    v: i16,
    rest: &mut splice::Rest,
) -> ResponseKind {
    let principal = session.principal.clone();
    let access = access::Access {
        authz: &broker.authz,
        principal: &principal,
        host: session.peer.ip(),
    };
    let gh = groups::Handles {
        groups: &broker.groups,
        registry: &broker.registry,
        routing: &broker.routing,
        node_id: broker.settings.server.node_id,
        access,
    };
    let ch = configs::Handles {
        registry: &broker.registry,
        topics: &broker.topics,
        settings: &broker.settings,
        access,
    };
    let ah = admin::Handles {
        registry: &broker.registry,
        routing: &broker.routing,
        topics: &broker.topics,
        upkeep: &broker.upkeep,
        producer_ids: &broker.producer_ids,
        settings: &broker.settings,
        cluster_id: &broker.cluster_id,
        access,
    };
    if let Some(refused) = access::refuse_group_request(&access, &req) {
        return refused;
    }
    match req {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(r, v)),
        RequestKind::Metadata(r) => {
            let handles = metadata::Handles {
                registry: &broker.registry,
                routing: &broker.routing,
                topics: &broker.topics,
                cluster_id: &broker.cluster_id,
                auto_create: broker.settings.topics.auto_create_topics,
                access,
            };
            ResponseKind::Metadata(metadata::handle(handles, session, r, v).await)
        }
        RequestKind::Fetch(r) => {
            let handles = fetch::Handles {
                registry: &broker.registry,
                routing: &broker.routing,
                reader: &broker.reader,
                replicas: &broker.replicas,
                committed: &broker.wal.committed,
                max_wait_cap_ms: broker.settings.server.fetch_max_wait_cap_ms,
                rack: broker.settings.server.rack.as_deref(),
                max_bytes: fetch_max_bytes(broker, &principal, client_id),
                access,
                sessions: &broker.fetch_sessions,
                listener: session.listener,
                sends_files: session.sends_files,
            };
            let (resp, pieces) = fetch::handle(handles, r, v).await;
            *rest = pieces;
            ResponseKind::Fetch(resp)
        }
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(
            offsets::list_offsets(
                &broker.registry,
                &broker.routing,
                &broker.reader,
                access,
                r,
                v,
            )
            .await,
        ),
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
            offsets::offset_for_leader_epoch(&broker.registry, &broker.routing, access, r).await,
        ),
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create_topics(&ah, r, v).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete_topics(&ah, r, v).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(&ah, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(admin::delete_records(&ah, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(admin::init_producer_id(&ah, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(admin::describe_cluster(&ah, session, r))
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(admin::describe_log_dirs(&ah, r, v))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(&gh, session, r, v))
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join_group(&gh, session, client_id, r, v).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync_group(&gh, r, v).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(&gh, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave_group(&gh, r, v)),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(group_offsets::offset_commit(&gh, r, v).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(group_offsets::offset_fetch(&gh, r, v))
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(group_offsets::offset_delete(&gh, r).await)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => ResponseKind::ConsumerGroupHeartbeat(
            groups::consumer_group_heartbeat(&gh, session, client_id, r, v).await,
        ),
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(groups::consumer_group_describe(&gh, r, v))
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list_groups(&gh, r, v)),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe_groups(&gh, r, v))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::delete_groups(&gh, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(&ch, r, v))
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(&ch, r).await),
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            scram::describe(access, &broker.security.scram, r).await,
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            scram::alter(access, &broker.security.scram, r).await,
        ),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(access, r).await),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe(access, r)),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(access, r).await),
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(quotas::describe(access, &broker.quotas, r))
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(quotas::alter(access, &broker.quotas, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(&ch, r).await)
        }
        // Produce is started in `dispatch`; nothing else passes `supported`.
        _ => unreachable_response(),
    }
}

/// `fetch.max.bytes`, and for a client with a fetch quota no more than that quota allows
/// over the window (as Kafka bounds it).
fn fetch_max_bytes(broker: &Broker, principal: &Principal, client_id: &str) -> usize {
    let max = broker.settings.server.fetch_max_bytes;
    if !broker.quotas.enabled() {
        return max;
    }
    broker
        .quotas
        .fetch_bytes_bound(principal.name(), client_id)
        .map_or(max, |q| q.clamp(1, max))
}

fn unreachable_response() -> ResponseKind {
    ResponseKind::ApiVersions(api_versions::handle(Default::default(), 0))
}
