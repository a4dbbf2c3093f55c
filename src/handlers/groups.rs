//! Group APIs: FindCoordinator, the classic protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), KIP-848 (ConsumerGroupHeartbeat, ConsumerGroupDescribe) and group
//! administration (ListGroups, DescribeGroups, DeleteGroups). Committed offsets are in
//! `group_offsets`.

use std::time::Duration;
use stratus_auth::acl::{op, resource};

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as Code;

use super::Session;
use crate::cluster::routing::Routing;
use crate::group::classic::Join;
use crate::group::Coordinator;
use crate::registry::Registry;

pub(super) fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// What the group APIs use: the group coordinator, the topics (for offsets and KIP-848
/// assignments) and the routing (where each group's coordinator is).
pub struct Handles<'a> {
    /// The group coordinator.
    pub groups: &'a Coordinator,
    /// Topics.
    pub registry: &'a Registry,
    /// Live brokers and shard owners.
    pub routing: &'a Routing,
    /// This broker.
    pub node_id: i32,
    /// What the client may do (on groups, and DESCRIBE on the cluster for ListGroups).
    pub access: super::access::Access<'a>,
}

/// The live coordinator of a group shard.
fn coordinator_of(h: &Handles<'_>, shard: u32) -> Option<i32> {
    if h.groups.owns_shard(shard) {
        return Some(h.node_id);
    }
    h.routing.shard_owner(shard).filter(|n| *n != h.node_id)
}

fn code(r: Result<(), Code>) -> i16 {
    r.err().map(|c| c.code()).unwrap_or(0)
}

/// FindCoordinator: the broker that owns the group's coordinator shard (transactional
/// ids are answered with this broker, whose transaction requests then refuse them).
pub fn find_coordinator(
    h: &Handles<'_>,
    session: Session,
    req: FindCoordinatorRequest,
    v: i16,
) -> FindCoordinatorResponse {
    let bad_type = !(0..=1).contains(&req.key_type);
    let live = h.routing.live_brokers(session.listener);
    let locate = |key: &str| -> Result<(i32, String, i32), Code> {
        if bad_type {
            return Err(Code::InvalidRequest);
        }
        if req.key_type == 0 && !h.access.group(op::DESCRIBE, key) {
            return Err(Code::GroupAuthorizationFailed);
        }
        if req.key_type == 1 && !h.access.transactional_id(op::DESCRIBE, key) {
            return Err(Code::TransactionalIdAuthorizationFailed);
        }
        let node = if req.key_type == 0 {
            coordinator_of(h, crate::group::shard_of(key)).ok_or(Code::CoordinatorNotAvailable)?
        } else {
            h.node_id
        };
        live.iter()
            .find(|b| b.node == node)
            .map(|b| (b.node, b.host.clone(), b.port as i32))
            .ok_or(Code::CoordinatorNotAvailable)
    };
    if v >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let e = CoordinatorEntry::default().with_key(k.clone());
                match locate(k.as_str()) {
                    Ok((node, host, port)) => e
                        .with_node_id(BrokerId(node))
                        .with_host(text(host))
                        .with_port(port),
                    Err(code) => e
                        .with_error_code(code.code())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match locate(req.key.as_str()) {
        Ok((node, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node))
            .with_host(text(host))
            .with_port(port),
        Err(code) => FindCoordinatorResponse::default()
            .with_error_code(code.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    }
}

/// JoinGroup.
pub async fn join_group(
    h: &Handles<'_>,
    session: Session,
    client_id: &str,
    req: JoinGroupRequest,
    v: i16,
) -> JoinGroupResponse {
    let session_timeout = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
    let rebalance_timeout = if v >= 1 {
        Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64)
    } else {
        session_timeout
    };
    let j = Join {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client_id.to_string(),
        client_host: format!("/{}", session.peer.ip()),
        session_timeout,
        rebalance_timeout,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: v >= 4,
        supports_skip_assignment: v >= 9,
    };
    let r = h.groups.join(req.group_id.0.as_str(), j).await;
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error.map(|c| c.code()).unwrap_or(0))
        .with_generation_id(r.generation)
        .with_protocol_name(Some(text(r.protocol.clone().unwrap_or_default())))
        .with_leader(text(r.leader.clone()))
        .with_member_id(text(r.member_id.clone()))
        .with_members(
            r.members
                .iter()
                .map(|(id, inst, meta)| {
                    let mut m = JoinGroupResponseMember::default()
                        .with_member_id(text(id.clone()))
                        .with_metadata(meta.clone());
                    if v >= 5 {
                        m.group_instance_id = inst.clone().map(text);
                    }
                    m
                })
                .collect(),
        );
    if v >= 7 {
        resp.protocol_type = r.protocol_type.map(text);
    }
    if v >= 9 {
        resp.skip_assignment = r.skip_assignment;
    }
    if v < 7 && r.error.is_some() {
        resp.protocol_name = Some(text(""));
    }
    resp
}

/// SyncGroup.
pub async fn sync_group(h: &Handles<'_>, req: SyncGroupRequest, v: i16) -> SyncGroupResponse {
    if v >= 5 {
        // The protocol names, when given, must match the group's.
        let view = h.groups.describe(req.group_id.0.as_str());
        if let Some(view) = view {
            let pt_bad = req.protocol_type.as_ref().is_some_and(|p| {
                !view.protocol_type.is_empty() && p.as_str() != view.protocol_type
            });
            if pt_bad {
                return SyncGroupResponse::default()
                    .with_error_code(Code::InconsistentGroupProtocol.code());
            }
        }
    }
    let assignments = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let r = h
        .groups
        .sync(
            req.group_id.0.as_str(),
            req.member_id.as_str(),
            instance.as_deref(),
            req.generation_id,
            assignments,
        )
        .await;
    let mut resp = SyncGroupResponse::default()
        .with_error_code(r.error.map(|c| c.code()).unwrap_or(0))
        .with_assignment(r.assignment);
    if v >= 5 {
        resp.protocol_type = r.protocol_type.map(text);
        resp.protocol_name = r.protocol.map(text);
    }
    resp
}

/// Heartbeat.
pub fn heartbeat(h: &Handles<'_>, req: HeartbeatRequest) -> HeartbeatResponse {
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let r = h.groups.heartbeat(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        instance.as_deref(),
        req.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code(r))
}

/// LeaveGroup (one member before v3, a batch after).
pub fn leave_group(h: &Handles<'_>, req: LeaveGroupRequest, v: i16) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if v >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    match h.groups.leave(req.group_id.0.as_str(), &members) {
        Err(c) => LeaveGroupResponse::default().with_error_code(c.code()),
        Ok(results) if v < 3 => LeaveGroupResponse::default().with_error_code(code(results[0])),
        Ok(results) => LeaveGroupResponse::default().with_members(
            members
                .iter()
                .zip(results)
                .map(|((m, i), r)| {
                    MemberResponse::default()
                        .with_member_id(text(m.clone()))
                        .with_group_instance_id(i.clone().map(text))
                        .with_error_code(code(r))
                })
                .collect(),
        ),
    }
}

/// ListGroups, with state (v4) and type (v5) filters.
pub fn list_groups(h: &Handles<'_>, req: ListGroupsRequest, v: i16) -> ListGroupsResponse {
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = req
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    // DESCRIBE on the cluster lists every group; otherwise those the client may describe.
    let all = h.access.cluster(op::DESCRIBE);
    let groups = h
        .groups
        .list()
        .into_iter()
        .filter(|(id, _, _, _)| all || h.access.group(op::DESCRIBE, id))
        .filter(|(_, _, state, _)| {
            states.is_empty() || states.contains(&state.to_ascii_lowercase())
        })
        .filter(|(_, _, _, kind)| types.is_empty() || types.iter().any(|t| t == kind))
        .map(|(id, pt, state, kind)| {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(text(id)))
                .with_protocol_type(text(pt));
            if v >= 4 {
                g.group_state = text(state);
            }
            if v >= 5 {
                g.group_type = text(kind);
            }
            g
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

/// DescribeGroups.
pub fn describe_groups(
    h: &Handles<'_>,
    req: DescribeGroupsRequest,
    v: i16,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .iter()
        .map(|id| {
            let mut d = DescribedGroup::default().with_group_id(id.clone());
            if !h.access.group(op::DESCRIBE, id.0.as_str()) {
                return d.with_error_code(Code::GroupAuthorizationFailed.code());
            }
            if v >= 3 && req.include_authorized_operations {
                d.authorized_operations = h
                    .access
                    .authorized_operations(resource::GROUP, id.0.as_str());
            }
            match h.groups.describe(id.0.as_str()) {
                None if v >= 6 => d
                    .with_error_code(Code::GroupIdNotFound.code())
                    .with_group_state(text("Dead"))
                    .with_error_message(Some(text(format!("Group {} not found.", id.0.as_str())))),
                None => d.with_group_state(text("Dead")),
                Some(g) => d
                    .with_group_state(text(g.state))
                    .with_protocol_type(text(g.protocol_type))
                    .with_protocol_data(text(g.protocol))
                    .with_members(
                        g.members
                            .into_iter()
                            .map(|(mid, inst, client, host, meta, assign)| {
                                let mut m = DescribedGroupMember::default()
                                    .with_member_id(text(mid))
                                    .with_client_id(text(client))
                                    .with_client_host(text(host))
                                    .with_member_metadata(meta)
                                    .with_member_assignment(assign);
                                if v >= 4 {
                                    m.group_instance_id = inst.map(text);
                                }
                                m
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// DeleteGroups.
pub async fn delete_groups(h: &Handles<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for g in &req.groups_names {
        if !h.access.group(op::DELETE, g.0.as_str()) {
            results.push(
                kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default()
                    .with_group_id(g.clone())
                    .with_error_code(Code::GroupAuthorizationFailed.code()),
            );
            continue;
        }
        let r = h.groups.delete(g.0.as_str()).await;
        results.push(
            kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default()
                .with_group_id(g.clone())
                .with_error_code(code(r)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

fn topic_snapshot(h: &Handles<'_>) -> Vec<crate::group::consumer::TopicInfo> {
    h.registry
        .topics()
        .iter()
        .map(|t| (t.name.to_string(), t.id, t.partitions.len() as i32))
        .collect()
}

/// ConsumerGroupHeartbeat (KIP-848).
pub async fn consumer_group_heartbeat(
    h: &Handles<'_>,
    session: Session,
    client_id: &str,
    req: ConsumerGroupHeartbeatRequest,
    v: i16,
) -> ConsumerGroupHeartbeatResponse {
    use kafka_protocol::messages::consumer_group_heartbeat_response::{
        Assignment, TopicPartitions,
    };
    let mut member_id = req.member_id.to_string();
    if member_id.is_empty() {
        if v >= 1 || req.member_epoch != 0 {
            return ConsumerGroupHeartbeatResponse::default()
                .with_error_code(Code::InvalidRequest.code())
                .with_error_message(Some(text("MemberId can't be empty.")));
        }
        member_id = uuid::Uuid::new_v4().to_string();
    }
    if let Some(r) = req
        .subscribed_topic_regex
        .as_ref()
        .filter(|r| !r.is_empty())
    {
        // As Kafka: a subscription that can never be evaluated is refused, not kept as one
        // that matches nothing.
        if let Err(e) = regex::Regex::new(&format!("^(?:{})$", r.as_str())) {
            return ConsumerGroupHeartbeatResponse::default()
                .with_error_code(Code::InvalidRegularExpression.code())
                .with_error_message(Some(text(format!(
                    "SubscribedTopicRegex `{}` is not a valid regular expression: {e}.",
                    r.as_str()
                ))))
                .with_member_id(Some(text(member_id)))
                .with_member_epoch(-1);
        }
    }
    let hb = crate::group::consumer::Heartbeat {
        member_id,
        epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        topics: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.0.to_string()).collect()),
        regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned: req.topic_partitions.as_ref().map(|tps| {
            tps.iter()
                .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic_id, *p)))
                .collect()
        }),
        client_id: client_id.to_string(),
        client_host: format!("/{}", session.peer.ip()),
    };
    let topics = topic_snapshot(h);
    let a = h
        .groups
        .consumer_heartbeat(req.group_id.0.as_str(), hb, &topics)
        .await;
    let mut resp = ConsumerGroupHeartbeatResponse::default()
        .with_error_code(a.error.map(|c| c.code()).unwrap_or(0))
        .with_member_id(Some(text(a.member_id)))
        .with_member_epoch(a.epoch)
        .with_heartbeat_interval_ms(h.groups.consumer_heartbeat_interval().as_millis() as i32);
    if let Some(set) = a.assignment {
        let mut by_topic: std::collections::BTreeMap<uuid::Uuid, Vec<i32>> = Default::default();
        for (t, p) in set {
            by_topic.entry(t).or_default().push(p);
        }
        resp.assignment = Some(
            Assignment::default().with_topic_partitions(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        TopicPartitions::default()
                            .with_topic_id(t)
                            .with_partitions(ps)
                    })
                    .collect(),
            ),
        );
    }
    resp
}

/// ConsumerGroupDescribe (KIP-848).
pub fn consumer_group_describe(
    h: &Handles<'_>,
    req: ConsumerGroupDescribeRequest,
    v: i16,
) -> ConsumerGroupDescribeResponse {
    use kafka_protocol::messages::consumer_group_describe_response::{
        Assignment, DescribedGroup as Described, Member, TopicPartitions,
    };
    let assignment = |set: &std::collections::BTreeSet<(uuid::Uuid, i32)>| {
        let mut by_topic: std::collections::BTreeMap<uuid::Uuid, Vec<i32>> = Default::default();
        for (t, p) in set {
            by_topic.entry(*t).or_default().push(*p);
        }
        Assignment::default().with_topic_partitions(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    let name = h
                        .registry
                        .topic_by_id(&t)
                        .map(|x| x.name.to_string())
                        .unwrap_or_default();
                    TopicPartitions::default()
                        .with_topic_id(t)
                        .with_topic_name(TopicName(text(name)))
                        .with_partitions(ps)
                })
                .collect(),
        )
    };
    let groups = req
        .group_ids
        .iter()
        .map(|id| {
            let mut d = Described::default().with_group_id(id.clone());
            if !h.access.group(op::DESCRIBE, id.0.as_str()) {
                return d.with_error_code(Code::GroupAuthorizationFailed.code());
            }
            if req.include_authorized_operations {
                d.authorized_operations = h
                    .access
                    .authorized_operations(resource::GROUP, id.0.as_str());
            }
            let Some(g) = h.groups.consumer_group(id.0.as_str()) else {
                return d
                    .with_error_code(Code::GroupIdNotFound.code())
                    .with_error_message(Some(text(format!("Group {} not found.", id.0.as_str()))));
            };
            d.with_group_state(text(g.state()))
                .with_group_epoch(g.epoch)
                .with_assignment_epoch(g.assignment_epoch)
                .with_assignor_name(text(g.assignor.clone()))
                .with_members(
                    g.members
                        .values()
                        .map(|m| {
                            let mut out = Member::default()
                                .with_member_id(text(m.id.clone()))
                                .with_instance_id(m.instance_id.clone().map(text))
                                .with_rack_id(m.rack_id.clone().map(text))
                                .with_member_epoch(m.epoch)
                                .with_client_id(text(m.client_id.clone()))
                                .with_client_host(text(m.client_host.clone()))
                                .with_subscribed_topic_names(
                                    m.topics
                                        .iter()
                                        .map(|t| TopicName(text(t.clone())))
                                        .collect(),
                                )
                                .with_subscribed_topic_regex(m.regex.clone().map(text))
                                .with_assignment(assignment(&m.assigned))
                                .with_target_assignment(assignment(
                                    &g.target.get(&m.id).cloned().unwrap_or_default(),
                                ));
                            if v >= 1 {
                                out.member_type = 1;
                            }
                            out
                        })
                        .collect(),
                )
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
