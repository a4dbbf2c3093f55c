//! Committed offsets of groups: OffsetCommit, OffsetFetch and OffsetDelete.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError as Code;
use stratus_auth::acl::op;

use super::groups::{text, Handles};
use crate::group::offsets::{Change, Committed};

/// A partition and its commit error.
type PartitionResult = (i32, Option<Code>);
/// Partition, committed offset, leader epoch, metadata, error code.
type FetchedOffset = (i32, i64, i32, String, i16);

/// OffsetCommit.
pub async fn offset_commit(
    h: &Handles<'_>,
    req: OffsetCommitRequest,
    v: i16,
) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let instance = if v >= 7 {
        req.group_instance_id.as_ref().map(|s| s.to_string())
    } else {
        None
    };
    let allowed = if h.access.group(op::READ, &group) {
        h.groups.check_commit(
            &group,
            req.generation_id_or_member_epoch,
            req.member_id.as_str(),
            instance.as_deref(),
        )
    } else {
        Err(Code::GroupAuthorizationFailed)
    };
    let now = stratus_log::clock::now_ms();
    let max_meta = h.groups.max_metadata();
    let mut changes: Vec<Change> = Vec::new();
    let mut results: Vec<(TopicName, Vec<PartitionResult>)> = Vec::new();
    for t in &req.topics {
        let topic = h.registry.topic(t.name.0.as_str());
        let topic_allowed = h.access.topic(op::READ, t.name.0.as_str());
        let mut parts = Vec::new();
        for p in &t.partitions {
            let meta = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let err = if let Err(c) = allowed {
                Some(c)
            } else if !topic_allowed {
                Some(Code::TopicAuthorizationFailed)
            } else if topic.as_ref().is_none_or(|tp| {
                p.partition_index < 0 || p.partition_index as usize >= tp.partitions.len()
            }) {
                Some(Code::UnknownTopicOrPartition)
            } else if meta.len() > max_meta {
                Some(Code::OffsetMetadataTooLarge)
            } else {
                changes.push((
                    group.clone(),
                    t.name.0.to_string(),
                    p.partition_index,
                    Some(Committed {
                        offset: p.committed_offset,
                        leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                        metadata: meta,
                        commit_ms: now,
                    }),
                ));
                None
            };
            parts.push((p.partition_index, err));
        }
        results.push((t.name.clone(), parts));
    }
    let stored = h.groups.commit(changes).await;
    let mut resp = OffsetCommitResponse::default();
    for (name, parts) in results {
        let partitions = parts
            .into_iter()
            .map(|(i, err)| {
                let c = err.or_else(|| stored.as_ref().err().map(|e| e.kafka()));
                OffsetCommitResponsePartition::default()
                    .with_partition_index(i)
                    .with_error_code(c.map(|c| c.code()).unwrap_or(0))
            })
            .collect();
        resp.topics.push(
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions),
        );
    }
    resp
}

fn fetched(h: &Handles<'_>, group: &str, topic: &str, partition: i32) -> (i64, i32, String) {
    match h.groups.offsets.get(group, topic, partition) {
        Some(c) => (c.offset, c.leader_epoch, c.metadata),
        None => (-1, -1, String::new()),
    }
}

/// The committed offsets of one group: the topics asked for (those the client may not
/// DESCRIBE answered TOPIC_AUTHORIZATION_FAILED), or every one the client may describe
/// (`None`).
fn group_offsets(
    h: &Handles<'_>,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<FetchedOffset>)> {
    let topics = topics.unwrap_or_else(|| {
        h.groups
            .offsets
            .group(group)
            .into_iter()
            .filter(|(t, _)| h.access.topic(op::DESCRIBE, t))
            .map(|(t, ps)| (t, ps.into_keys().collect()))
            .collect()
    });
    topics
        .into_iter()
        .map(|(t, ps)| {
            let allowed = h.access.topic(op::DESCRIBE, &t);
            let parts = ps
                .into_iter()
                .map(|p| {
                    if !allowed {
                        return (
                            p,
                            -1,
                            -1,
                            String::new(),
                            Code::TopicAuthorizationFailed.code(),
                        );
                    }
                    let (o, e, m) = fetched(h, group, &t, p);
                    (p, o, e, m, 0)
                })
                .collect();
            (t, parts)
        })
        .collect()
}

/// OffsetFetch (one group before v8, several after).
pub fn offset_fetch(h: &Handles<'_>, req: OffsetFetchRequest, v: i16) -> OffsetFetchResponse {
    if v >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let topics = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                if !h.access.group(op::DESCRIBE, g.group_id.0.as_str()) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(Code::GroupAuthorizationFailed.code());
                }
                let offsets = group_offsets(h, g.group_id.0.as_str(), topics);
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(
                        offsets
                            .into_iter()
                            .map(|(t, ps)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(text(t)))
                                    .with_partitions(
                                        ps.into_iter()
                                            .map(|(p, o, e, m, err)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(Some(text(m)))
                                                    .with_error_code(err)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    if !h.access.group(op::DESCRIBE, req.group_id.0.as_str()) {
        let code = Code::GroupAuthorizationFailed.code();
        if v >= 2 {
            return OffsetFetchResponse::default().with_error_code(code);
        }
        // Before v2 the response has no top-level error: each partition carries it.
        return OffsetFetchResponse::default().with_topics(
            req.topics
                .iter()
                .flatten()
                .map(|t| {
                    OffsetFetchResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(*p)
                                        .with_committed_offset(-1)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    }
    let offsets = group_offsets(h, req.group_id.0.as_str(), topics);
    OffsetFetchResponse::default().with_topics(
        offsets
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(text(t)))
                    .with_partitions(
                        ps.into_iter()
                            .map(|(p, o, e, m, err)| {
                                let mut r = OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(o)
                                    .with_metadata(Some(text(m)))
                                    .with_error_code(err);
                                if v >= 5 {
                                    r.committed_leader_epoch = e;
                                }
                                r
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// OffsetDelete: not for topics an active group consumes.
pub async fn offset_delete(h: &Handles<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = req.group_id.0.to_string();
    if !h.access.group(op::DELETE, &group) {
        return OffsetDeleteResponse::default()
            .with_error_code(Code::GroupAuthorizationFailed.code());
    }
    if h.groups.describe(&group).is_none() {
        return OffsetDeleteResponse::default().with_error_code(Code::GroupIdNotFound.code());
    }
    let active = h.groups.is_active(&group);
    let mut changes = Vec::new();
    let mut resp = OffsetDeleteResponse::default();
    for t in &req.topics {
        let mut out = OffsetDeleteResponseTopic::default().with_name(t.name.clone());
        let topic_allowed = h.access.topic(op::READ, t.name.0.as_str());
        for p in &t.partitions {
            let err = if !topic_allowed {
                Some(Code::TopicAuthorizationFailed)
            } else if active {
                Some(Code::GroupSubscribedToTopic)
            } else {
                changes.push((group.clone(), t.name.0.to_string(), p.partition_index, None));
                None
            };
            out.partitions.push(
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(err.map(|c| c.code()).unwrap_or(0)),
            );
        }
        resp.topics.push(out);
    }
    if let Err(e) = h.groups.commit(changes).await {
        return OffsetDeleteResponse::default().with_error_code(e.code());
    }
    resp
}
