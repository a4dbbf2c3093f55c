//! Metadata: brokers, topics and partitions, with auto-creation by config.
//!
//! Every live broker is listed; each partition's leader is its owner and its leader epoch
//! the owner's epoch. Durability comes from the object store, not from replicas, so the
//! owner is the only replica and in-sync replica, whatever replication factor the topic
//! was created with. During a move the leader named is never -1: the broker taking the
//! partition over names itself (requests sent there wait for the take-over), and the one
//! that gave it up names itself until its view of the cluster moves on. Only a partition
//! with no live owner at all (its owner died and it is not yet reassigned) answers
//! LEADER_NOT_AVAILABLE, which clients retry.

use std::collections::BTreeMap;
use stratus_auth::acl::{op, resource};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as Code;
use uuid::Uuid;

use super::Session;
use crate::cluster::routing::Routing;
use crate::error::AdminError;
use crate::registry::{Registry, Topic};
use crate::topics::TopicAdmin;

/// What Metadata uses.
pub struct Handles<'a> {
    /// Topics.
    pub registry: &'a Registry,
    /// Leaders, live brokers, the controller.
    pub routing: &'a Routing,
    /// Auto-creation of topics.
    pub topics: &'a TopicAdmin,
    /// The cluster id.
    pub cluster_id: &'a str,
    /// `auto.create.topics.enable`.
    pub auto_create: bool,
    /// What the client may do: topics it may not DESCRIBE are not disclosed; creating
    /// one needs CREATE on the cluster or the topic.
    pub access: super::access::Access<'a>,
}

/// Handles Metadata.
pub async fn handle(
    h: Handles<'_>,
    session: Session,
    req: MetadataRequest,
    v: i16,
) -> MetadataResponse {
    let node = h.routing.controller();
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers(h.routing, session.listener, v))
        .with_controller_id(BrokerId(if v >= 1 { node } else { -1 }));
    if v >= 2 {
        resp.cluster_id = Some(StrBytes::from_string(h.cluster_id.to_string()));
    }
    let allow_auto = v < 4 || req.allow_auto_topic_creation;
    if (8..=10).contains(&v) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = h
            .access
            .authorized_operations(resource::CLUSTER, resource::CLUSTER_NAME);
    }
    let with_ops = v >= 8 && req.include_topic_authorized_operations;
    let resp = handle_topics(&h, resp, req.topics, allow_auto, v).await;
    if with_ops {
        return with_topic_operations(&h, resp);
    }
    resp
}

/// Each described topic's authorized operations.
fn with_topic_operations(h: &Handles<'_>, mut resp: MetadataResponse) -> MetadataResponse {
    for t in &mut resp.topics {
        if t.error_code == 0 {
            if let Some(name) = &t.name {
                t.topic_authorized_operations = h
                    .access
                    .authorized_operations(resource::TOPIC, name.0.as_str());
            }
        }
    }
    resp
}

async fn handle_topics(
    h: &Handles<'_>,
    mut resp: MetadataResponse,
    topics: Option<Vec<MetadataRequestTopic>>,
    allow_auto: bool,
    v: i16,
) -> MetadataResponse {
    let requested = match topics {
        None => None,
        Some(t) if v == 0 && t.is_empty() => None,
        Some(t) => Some(t),
    };
    let Some(requested) = requested else {
        resp.topics = h
            .registry
            .topics()
            .iter()
            .filter(|t| h.access.topic(op::DESCRIBE, &t.name))
            .map(|t| topic_entry(h, t, v))
            .collect();
        return resp;
    };
    for t in requested {
        let entry = match (&t.name, t.topic_id) {
            (Some(name), _) => by_name(h, name.0.as_str(), allow_auto, v).await,
            (None, id) if !id.is_nil() => match h.registry.topic_by_id(&id) {
                Some(topic) if !h.access.topic(op::DESCRIBE, &topic.name) => {
                    error_entry(None, id, Code::TopicAuthorizationFailed)
                }
                Some(topic) => topic_entry(h, &topic, v),
                None => error_entry(None, id, Code::UnknownTopicId),
            },
            (None, _) => error_entry(None, Uuid::nil(), Code::InvalidRequest),
        };
        resp.topics.push(entry);
    }
    resp
}

async fn by_name(h: &Handles<'_>, name: &str, allow_auto: bool, v: i16) -> MetadataResponseTopic {
    // Whether a topic the client may not describe exists is not disclosed.
    if !h.access.topic(op::DESCRIBE, name) {
        return error_entry(Some(name), Uuid::nil(), Code::TopicAuthorizationFailed);
    }
    if let Some(t) = h.registry.topic(name) {
        return topic_entry(h, &t, v);
    }
    if let Err(AdminError { code, .. }) = crate::topics::validate_topic_name(name) {
        return error_entry(Some(name), Uuid::nil(), code);
    }
    if !(allow_auto && h.auto_create) {
        return error_entry(Some(name), Uuid::nil(), Code::UnknownTopicOrPartition);
    }
    if !h.access.create_topic(name) {
        return error_entry(Some(name), Uuid::nil(), Code::TopicAuthorizationFailed);
    }
    match h
        .topics
        .create_topic(name, -1, -1, BTreeMap::new(), false)
        .await
    {
        Ok(t) => topic_entry(h, &t, v),
        // Created concurrently by another request (maybe on another broker).
        Err(AdminError {
            code: Code::TopicAlreadyExists,
            ..
        }) => {
            let _ = h.topics.sync_topics().await;
            match h.registry.topic(name) {
                Some(t) => topic_entry(h, &t, v),
                None => error_entry(Some(name), Uuid::nil(), Code::LeaderNotAvailable),
            }
        }
        Err(_) => error_entry(Some(name), Uuid::nil(), Code::LeaderNotAvailable),
    }
}

/// Every live broker as Metadata lists it: its address on the listener the client used.
pub fn brokers(routing: &Routing, listener: usize, v: i16) -> Vec<MetadataResponseBroker> {
    routing
        .live_brokers(listener)
        .into_iter()
        .map(|l| {
            let mut b = MetadataResponseBroker::default()
                .with_node_id(BrokerId(l.node))
                .with_host(StrBytes::from_string(l.host))
                .with_port(l.port as i32);
            if v >= 1 {
                b.rack = l.rack.map(StrBytes::from_string);
            }
            b
        })
        .collect()
}

fn error_entry(name: Option<&str>, id: Uuid, code: Code) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n.to_string()))))
        .with_topic_id(id)
}

fn topic_entry(h: &Handles<'_>, t: &Topic, v: i16) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|p| {
            let mut e = MetadataResponsePartition::default().with_partition_index(p.index);
            match h.routing.owner_of(p) {
                Some((node, epoch)) => {
                    e.leader_id = BrokerId(node);
                    e.replica_nodes = vec![BrokerId(node)];
                    e.isr_nodes = vec![BrokerId(node)];
                    if v >= 7 {
                        e.leader_epoch = epoch;
                    }
                }
                None => {
                    e.error_code = Code::LeaderNotAvailable.code();
                    e.leader_id = BrokerId(-1);
                    if v >= 7 {
                        e.leader_epoch = -1;
                    }
                }
            }
            e
        })
        .collect();
    let mut entry = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.to_string()))))
        .with_partitions(partitions);
    if v >= 10 {
        entry.topic_id = t.id;
    }
    entry
}
