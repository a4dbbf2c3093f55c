//! ListOffsets and OffsetForLeaderEpoch.

use super::access::Access;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};
use kafka_protocol::ResponseError as Code;
use stratus_auth::acl::op;

use super::lookup;
use crate::cluster::routing::Routing;
use crate::partition::Partition;
use crate::read;
use crate::read::Reader;
use crate::registry::Registry;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// Handles ListOffsets.
pub async fn list_offsets(
    registry: &Registry,
    routing: &Routing,
    reader: &Reader,
    access: Access<'_>,
    req: ListOffsetsRequest,
    v: i16,
) -> ListOffsetsResponse {
    let mut resp = ListOffsetsResponse::default();
    let deadline = lookup::ownership_deadline();
    for t in req.topics {
        let topic = registry.topic(t.name.0.as_str());
        let mut out = ListOffsetsTopicResponse::default().with_name(t.name.clone());
        for lp in t.partitions {
            let mut r = ListOffsetsPartitionResponse::default()
                .with_partition_index(lp.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let client_epoch = if v >= 4 { lp.current_leader_epoch } else { -1 };
            let result = match lookup::partition(topic.as_ref(), lp.partition_index) {
                _ if !access.topic(op::DESCRIBE, t.name.0.as_str()) => {
                    Err(Code::TopicAuthorizationFailed)
                }
                None => Err(Code::UnknownTopicOrPartition),
                Some(p) => {
                    routing.await_ownership(p, deadline).await;
                    match lookup::owned_epoch(p, client_epoch) {
                        Err(c) => Err(c),
                        Ok(_) => find_offset(reader, p, lp.timestamp).await,
                    }
                }
            };
            match result {
                Ok((offset, ts, epoch)) => {
                    r.offset = offset;
                    r.timestamp = ts;
                    if v >= 4 {
                        r.leader_epoch = epoch;
                    }
                }
                Err(c) => r.error_code = c.code(),
            }
            out.partitions.push(r);
        }
        resp.topics.push(out);
    }
    resp
}

async fn find_offset(reader: &Reader, p: &Partition, ts: i64) -> Result<(i64, i64, i32), Code> {
    let w = read::watermarks(p);
    let epoch_of = |o: i64| p.state().epoch_of(o);
    match ts {
        LATEST => Ok((w.high_watermark, -1, p.state().leader_epoch())),
        EARLIEST | EARLIEST_LOCAL => Ok((w.log_start, -1, epoch_of(w.log_start))),
        LATEST_TIERED => Ok((-1, -1, -1)),
        MAX_TIMESTAMP => match read::max_timestamp(reader, p).await {
            Ok(Some((o, t))) => Ok((o, t, epoch_of(o))),
            Ok(None) => Ok((-1, -1, -1)),
            Err(e) => Err(e.kafka()),
        },
        t if t >= 0 => match read::offset_for_timestamp(reader, p, t).await {
            Ok(Some((o, found))) => Ok((o, found, epoch_of(o))),
            Ok(None) => Ok((-1, -1, -1)),
            Err(e) => Err(e.kafka()),
        },
        _ => Err(Code::InvalidRequest),
    }
}

/// Handles OffsetForLeaderEpoch.
pub async fn offset_for_leader_epoch(
    registry: &Registry,
    routing: &Routing,
    access: Access<'_>,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut resp = OffsetForLeaderEpochResponse::default();
    let deadline = lookup::ownership_deadline();
    for t in req.topics {
        let topic = registry.topic(t.topic.0.as_str());
        let mut out = OffsetForLeaderTopicResult::default().with_topic(t.topic.clone());
        for lp in t.partitions {
            let mut r = EpochEndOffset::default()
                .with_partition(lp.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            match lookup::partition(topic.as_ref(), lp.partition) {
                _ if !access.topic(op::DESCRIBE, t.topic.0.as_str()) => {
                    r.error_code = Code::TopicAuthorizationFailed.code()
                }
                None => r.error_code = Code::UnknownTopicOrPartition.code(),
                Some(p) => {
                    routing.await_ownership(p, deadline).await;
                    match lookup::owned_epoch(p, lp.current_leader_epoch) {
                        Err(c) => r.error_code = c.code(),
                        Ok(_) => {
                            let (epoch, end) = p.state().epoch_end(lp.leader_epoch);
                            r.leader_epoch = epoch;
                            r.end_offset = end;
                        }
                    }
                }
            }
            out.partitions.push(r);
        }
        resp.topics.push(out);
    }
    resp
}
