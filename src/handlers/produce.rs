//! Produce: validate, append in order, answer once the data is durable.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as Code;

use super::{lookup, KindFuture};
use crate::cluster::routing::Routing;
use crate::error::Error;
use crate::registry::{Registry, Topic};
use crate::wal::Pending;
use crate::wal::Wal;
use stratus_log::batch;
use stratus_log::clock::Clock;

/// A partition's index, what happened to its batches, and its log start offset.
/// (index, outcome, log start offset, the new leader and its epoch for a refused one).
type PartitionOutcome = (i32, Outcome, i64, Option<(i32, i32)>);

enum Outcome {
    Failed(Code),
    Pending { pending: Pending, append_time: i64 },
}

/// What Produce uses: the topics, the routing (to wait for a take-over), the WAL and the
/// clock.
pub struct Handles<'a> {
    /// Topics and their settings.
    pub registry: &'a Registry,
    /// Leaders.
    pub routing: &'a Routing,
    /// Where batches go.
    pub wal: &'a Wal,
    /// Append times.
    pub clock: &'a dyn Clock,
    /// Bytes and records in, per topic.
    pub metrics: &'a crate::telemetry::TopicMetrics,
    /// What the client may do (WRITE on each topic).
    pub access: super::access::Access<'a>,
    /// The listener the client connected to (the addresses of new leaders are on it).
    pub listener: usize,
}

/// Appends every partition's batches now and returns the future of the response (none
/// for acks=0).
pub async fn start(h: Handles<'_>, req: ProduceRequest, v: i16) -> KindFuture {
    let acks = req.acks;
    let deadline = lookup::ownership_deadline();
    let mut results: Vec<(TopicProduceResponse, Vec<PartitionOutcome>)> = Vec::new();
    for t in req.topic_data {
        let topic = lookup::topic(h.registry, v >= 13, &t.topic_id, t.name.0.as_str());
        let mut head = TopicProduceResponse::default();
        if v >= 13 {
            head.topic_id = t.topic_id;
        } else {
            head.name = t.name.clone();
        }
        let unknown = lookup::unknown_topic(v >= 13);
        let allowed = h.access.topic_as_named(
            stratus_auth::acl::op::WRITE,
            t.name.0.as_str(),
            topic.as_ref().map(|tp| tp.name.as_ref()),
            v >= 13,
        );
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for pd in t.partition_data {
            if !allowed {
                parts.push((
                    pd.index,
                    Outcome::Failed(Code::TopicAuthorizationFailed),
                    -1,
                    None,
                ));
                continue;
            }
            if !matches!(acks, -1..=1) {
                parts.push((
                    pd.index,
                    Outcome::Failed(Code::InvalidRequiredAcks),
                    -1,
                    None,
                ));
                continue;
            }
            let Some(topic) = topic.as_ref() else {
                parts.push((pd.index, Outcome::Failed(unknown), -1, None));
                continue;
            };
            let Some(partition) = lookup::partition(Some(topic), pd.index) else {
                parts.push((
                    pd.index,
                    Outcome::Failed(Code::UnknownTopicOrPartition),
                    -1,
                    None,
                ));
                continue;
            };
            let mut outcome = append(&h, topic, partition, pd.records.clone()).await;
            if matches!(outcome, Outcome::Failed(Code::NotLeaderOrFollower)) {
                // Assigned here but maybe not taken over yet: wait for it, then once more.
                h.routing.await_ownership(partition, deadline).await;
                outcome = append(&h, topic, partition, pd.records).await;
            }
            let log_start = partition.state().log_start();
            // KIP-951: a client sent to the wrong broker learns the owner from the answer
            // and retries there without a Metadata round trip.
            let leader = matches!(outcome, Outcome::Failed(Code::NotLeaderOrFollower))
                .then(|| h.routing.new_leader(partition))
                .flatten()
                .filter(|_| v >= 10);
            parts.push((pd.index, outcome, log_start, leader));
        }
        results.push((head, parts));
    }
    if acks == 0 {
        return Box::pin(async { None });
    }
    let leaders: std::collections::BTreeSet<i32> = results
        .iter()
        .flat_map(|(_, parts)| parts.iter().filter_map(|p| p.3.map(|l| l.0)))
        .collect();
    let node_endpoints: Vec<NodeEndpoint> = h
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
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    Box::pin(async move {
        let mut resp = ProduceResponse::default().with_node_endpoints(node_endpoints);
        for (mut head, parts) in results {
            for (index, outcome, log_start, leader) in parts {
                let mut r = PartitionProduceResponse::default().with_index(index);
                if let Some((id, epoch)) = leader {
                    r.current_leader = LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(id))
                        .with_leader_epoch(epoch);
                }
                match outcome {
                    Outcome::Failed(code) => {
                        r.error_code = code.code();
                        r.base_offset = -1;
                    }
                    Outcome::Pending {
                        pending,
                        append_time,
                    } => {
                        match tokio::time::timeout(timeout, pending.acked()).await {
                            Ok(Ok(base_offset)) => r.base_offset = base_offset,
                            Ok(Err(e)) => {
                                r.error_code = e.code();
                                r.base_offset = -1;
                            }
                            Err(_) => {
                                r.error_code = Code::RequestTimedOut.code();
                                r.base_offset = -1;
                            }
                        }
                        r.log_append_time_ms = append_time;
                    }
                }
                if v >= 5 {
                    r.log_start_offset = log_start;
                }
                head.partition_responses.push(r);
            }
            resp.responses.push(head);
        }
        Some(ResponseKind::Produce(resp))
    })
}

async fn append(
    h: &Handles<'_>,
    topic: &Topic,
    partition: &Arc<crate::partition::Partition>,
    records: Option<bytes::Bytes>,
) -> Outcome {
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return Outcome::Failed(Code::InvalidRecord);
    };
    let batches = match batch::validate(&records) {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(topic = %topic.name, error = %e, "refused produce");
            return Outcome::Failed(Error::from(e).kafka());
        }
    };
    let max = h.registry.config_i64(topic, "max.message.bytes");
    if batches.iter().any(|b| b.bytes.len() as i64 > max) {
        return Outcome::Failed(Code::MessageTooLarge);
    }
    if batches
        .iter()
        .any(|b| b.is_transactional() || b.is_control())
    {
        // Transactions are not served yet; InitProducerId refuses transactional ids.
        return Outcome::Failed(Code::InvalidTxnState);
    }
    let now = h.clock.now_ms();
    let append_time = h.registry.log_append_time(topic).then_some(now);
    match h.wal.append(partition, &batches, append_time, now).await {
        Ok(pending) => {
            let bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
            let records: i64 = batches.iter().map(|b| i64::from(b.record_count)).sum();
            h.metrics
                .produced(&topic.name, bytes as u64, records.max(0) as u64);
            partition.traffic.produced(bytes as u64);
            Outcome::Pending {
                pending,
                append_time: append_time.unwrap_or(-1),
            }
        }
        Err(e) => Outcome::Failed(e.kafka()),
    }
}
