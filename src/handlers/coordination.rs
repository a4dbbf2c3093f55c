//! NOT_COORDINATOR for group requests that reach a broker which does not coordinate the
//! group (its shard moved): the client looks the coordinator up again and retries.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatResponse, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse,
    OffsetCommitResponse, OffsetDeleteResponse, OffsetFetchResponse, RequestKind, ResponseKind,
    SyncGroupResponse,
};
use kafka_protocol::ResponseError as Code;

use crate::group::Coordinator;

/// The NOT_COORDINATOR answer to a single-group request for a group this broker does not
/// coordinate; `None` when the request may go on.
pub fn refuse(groups: &Coordinator, req: &RequestKind, v: i16) -> Option<ResponseKind> {
    let nc = Code::NotCoordinator.code();
    let owns = |g: &str| groups.owns(g);
    Some(match req {
        RequestKind::JoinGroup(r) if !owns(r.group_id.as_str()) => ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(nc)
                .with_generation_id(-1),
        ),
        RequestKind::SyncGroup(r) if !owns(r.group_id.as_str()) => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(nc))
        }
        RequestKind::Heartbeat(r) if !owns(r.group_id.as_str()) => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(nc))
        }
        RequestKind::LeaveGroup(r) if !owns(r.group_id.as_str()) => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(nc))
        }
        RequestKind::OffsetDelete(r) if !owns(r.group_id.as_str()) => {
            ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_error_code(nc))
        }
        RequestKind::ConsumerGroupHeartbeat(r) if !owns(r.group_id.as_str()) => {
            ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default().with_error_code(nc),
            )
        }
        RequestKind::OffsetCommit(r) if !owns(r.group_id.as_str()) => {
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(nc)
                                })
                                .collect(),
                        )
                })
                .collect();
            ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics))
        }
        RequestKind::OffsetFetch(r) if v < 8 && !owns(r.group_id.as_str()) => {
            ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_error_code(nc))
        }
        _ => return None,
    })
}

/// Marks the groups of a multi-group answer that this broker does not coordinate.
pub fn mark(groups: &Coordinator, resp: &mut ResponseKind) {
    let nc = Code::NotCoordinator.code();
    let owns = |g: &str| groups.owns(g);
    match resp {
        ResponseKind::OffsetFetch(r) => {
            for g in r.groups.iter_mut().filter(|g| !owns(g.group_id.as_str())) {
                g.error_code = nc;
                g.topics.clear();
            }
        }
        ResponseKind::DescribeGroups(r) => {
            for g in r.groups.iter_mut().filter(|g| !owns(g.group_id.as_str())) {
                g.error_code = nc;
                g.members.clear();
                g.group_state = Default::default();
            }
        }
        ResponseKind::DeleteGroups(r) => {
            for g in r.results.iter_mut().filter(|g| !owns(g.group_id.as_str())) {
                g.error_code = nc;
            }
        }
        ResponseKind::ConsumerGroupDescribe(r) => {
            for g in r.groups.iter_mut().filter(|g| !owns(g.group_id.as_str())) {
                g.error_code = nc;
                g.members.clear();
            }
        }
        _ => {}
    }
}
