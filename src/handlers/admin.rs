//! Topic administration, DeleteRecords, producer ids and cluster descriptions.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as Code;

use crate::cluster::routing::Routing;
use crate::config::Settings;
use crate::error::AdminError;
use crate::partition::Location;
use crate::producer_ids::ProducerIds;
use crate::registry::Registry;
use crate::topic_config;
use crate::topics::TopicAdmin;
use crate::upkeep::Upkeep;
use stratus_auth::acl::op;

use super::access::Access;

/// What the admin APIs use: the topics and their lifecycle, the routing (live brokers, the
/// controller, waiting for a take-over), upkeep (DeleteRecords moves the log start and
/// deletes segments), producer ids and the settings.
pub struct Handles<'a> {
    /// Topics.
    pub registry: &'a Registry,
    /// Live brokers, the controller, ownership.
    pub routing: &'a Routing,
    /// Creates, deletes and grows topics.
    pub topics: &'a TopicAdmin,
    /// DeleteRecords.
    pub upkeep: &'a Upkeep,
    /// InitProducerId.
    pub producer_ids: &'a ProducerIds,
    /// The broker's settings (topic defaults; the object store named as the log dir).
    pub settings: &'a Settings,
    /// The cluster id (DescribeCluster).
    pub cluster_id: &'a str,
    /// What the client may do.
    pub access: Access<'a>,
}

fn denied(what: &str) -> AdminError {
    AdminError::new(
        Code::TopicAuthorizationFailed,
        format!("Authorization failed: {what}"),
    )
}

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// CreateTopics.
pub async fn create_topics(
    h: &Handles<'_>,
    req: CreateTopicsRequest,
    v: i16,
) -> CreateTopicsResponse {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut resp = CreateTopicsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatableTopicResult::default().with_name(t.name.clone());
        let result = if !h.access.create_topic(&name) {
            Err(denied("CREATE on the cluster or the topic is needed"))
        } else if counts.get(&name).copied().unwrap_or(0) > 1 {
            Err(AdminError::new(
                Code::InvalidRequest,
                format!("Create topic request contains duplicate topic {name}"),
            ))
        } else {
            let configs: BTreeMap<String, String> = t
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect();
            let (partitions, rf) = if t.assignments.is_empty() {
                (t.num_partitions, t.replication_factor)
            } else if t.num_partitions != -1 || t.replication_factor != -1 {
                (0, 0)
            } else {
                let rf = t.assignments[0].broker_ids.len() as i16;
                (t.assignments.len() as i32, rf.max(1))
            };
            if partitions == 0 {
                Err(AdminError::new(
                    Code::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set.",
                ))
            } else {
                h.topics
                    .create_topic(&name, partitions, rf, configs, req.validate_only)
                    .await
            }
        };
        match result {
            Ok(topic) => {
                if v >= 5 {
                    r.num_partitions = topic.partitions.len() as i32;
                    r.replication_factor = topic.replication_factor;
                    r.configs = Some(
                        topic_config::TOPIC_CONFIGS
                            .iter()
                            .filter_map(|d| {
                                let (value, source) =
                                    topic_config::resolve(d.name, &topic.configs, h.settings)?;
                                Some(
                                    CreatableTopicConfigs::default()
                                        .with_name(text(d.name))
                                        .with_value(Some(text(value)))
                                        .with_config_source(source as i8),
                                )
                            })
                            .collect(),
                    );
                }
                if v >= 7 {
                    r.topic_id = topic.id;
                }
            }
            Err(AdminError { code, message: msg }) => {
                r.error_code = code.code();
                r.error_message = Some(text(msg));
            }
        }
        resp.topics.push(r);
    }
    resp
}

/// DeleteTopics (by name, or by id from v6).
pub async fn delete_topics(
    h: &Handles<'_>,
    req: DeleteTopicsRequest,
    v: i16,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, uuid::Uuid)> = if v >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let mut resp = DeleteTopicsResponse::default();
    for (name, id) in targets {
        // A name the client may not delete is refused before it is looked up: whether it
        // exists is not disclosed.
        if let Some(n) = &name {
            if !h.access.cluster(op::DELETE) && !h.access.topic(op::DELETE, n) {
                let mut r = DeletableTopicResult::default()
                    .with_name(Some(TopicName(text(n.clone()))))
                    .with_error_code(Code::TopicAuthorizationFailed.code());
                if v >= 6 {
                    r.topic_id = id;
                }
                resp.responses.push(r);
                continue;
            }
        }
        let topic = match &name {
            Some(n) => h.registry.topic(n),
            None => h.registry.topic_by_id(&id),
        };
        let mut r =
            DeletableTopicResult::default().with_name(name.clone().map(|n| TopicName(text(n))));
        if v >= 6 {
            r.topic_id = id;
        }
        match topic {
            None => {
                let code = if name.is_none() {
                    Code::UnknownTopicId
                } else {
                    Code::UnknownTopicOrPartition
                };
                r.error_code = code.code();
            }
            Some(t) if !h.access.cluster(op::DELETE) && !h.access.topic(op::DELETE, &t.name) => {
                r.error_code = Code::TopicAuthorizationFailed.code();
            }
            Some(t) => {
                if v >= 6 {
                    r.topic_id = t.id;
                    r.name = Some(TopicName(text(t.name.to_string())));
                }
                if let Err(AdminError { code, message: msg }) = h.topics.delete_topic(&t).await {
                    r.error_code = code.code();
                    if v >= 5 {
                        r.error_message = Some(text(msg));
                    }
                }
            }
        }
        resp.responses.push(r);
    }
    resp
}

/// CreatePartitions.
pub async fn create_partitions(
    h: &Handles<'_>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let result = match h.registry.topic(t.name.0.as_str()) {
            _ if !h.access.topic(op::ALTER, t.name.0.as_str()) => {
                Err(denied("ALTER on the topic is needed"))
            }
            None => Err(AdminError::new(
                Code::UnknownTopicOrPartition,
                format!("The topic '{}' does not exist.", t.name.0),
            )),
            Some(topic) => {
                h.topics
                    .create_partitions(&topic, t.count, req.validate_only)
                    .await
            }
        };
        if let Err(AdminError { code, message: msg }) = result {
            r.error_code = code.code();
            r.error_message = Some(text(msg));
        }
        resp.results.push(r);
    }
    resp
}

/// DeleteRecords.
pub async fn delete_records(h: &Handles<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
    let deadline = super::lookup::ownership_deadline();
    for t in req.topics {
        let topic = h.registry.topic(t.name.0.as_str());
        let mut out = DeleteRecordsTopicResult::default().with_name(t.name.clone());
        for dp in t.partitions {
            let mut r = DeleteRecordsPartitionResult::default()
                .with_partition_index(dp.partition_index)
                .with_low_watermark(-1);
            let p = topic
                .as_ref()
                .and_then(|tp| tp.partitions.get(usize::try_from(dp.partition_index).ok()?));
            match p {
                _ if !h.access.topic(op::DELETE, t.name.0.as_str()) => {
                    r.error_code = Code::TopicAuthorizationFailed.code()
                }
                None => r.error_code = Code::UnknownTopicOrPartition.code(),
                Some(p) => {
                    h.routing.await_ownership(p, deadline).await;
                    match crate::upkeep::delete_records(h.upkeep, p, dp.offset).await {
                        Ok(low) => r.low_watermark = low,
                        Err(e) => r.error_code = e.code(),
                    }
                }
            }
            out.partitions.push(r);
        }
        resp.topics.push(out);
    }
    resp
}

/// InitProducerId for idempotent producers (transactions are not served yet).
pub async fn init_producer_id(
    h: &Handles<'_>,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(id) = req.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
        if !h.access.transactional_id(op::WRITE, id.0.as_str()) {
            return resp.with_error_code(Code::TransactionalIdAuthorizationFailed.code());
        }
        return resp.with_error_code(Code::UnsupportedVersion.code());
    }
    if !h.access.idempotent_write() {
        return resp.with_error_code(Code::ClusterAuthorizationFailed.code());
    }
    // KIP-360: a known producer may bump its epoch instead of taking a new id.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return resp
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match h.producer_ids.allocate().await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => resp.with_error_code(e.code()),
    }
}

/// DescribeCluster.
pub fn describe_cluster(
    h: &Handles<'_>,
    session: super::Session,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let controller = h.routing.controller();
    let mut resp = DescribeClusterResponse::default();
    if req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = h.access.authorized_operations(
            stratus_auth::acl::resource::CLUSTER,
            stratus_auth::acl::resource::CLUSTER_NAME,
        );
    }
    resp.with_cluster_id(text(h.cluster_id.to_string()))
        .with_controller_id(BrokerId(controller))
        .with_brokers(
            h.routing
                .live_brokers(session.listener)
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node))
                        .with_host(text(b.host))
                        .with_port(b.port as i32)
                        .with_rack(b.rack.map(text))
                })
                .collect(),
        )
}

/// DescribeLogDirs: one log dir, the object store, with each partition's stored bytes.
pub fn describe_log_dirs(
    h: &Handles<'_>,
    req: DescribeLogDirsRequest,
    v: i16,
) -> DescribeLogDirsResponse {
    let wanted: Option<HashMap<String, Vec<i32>>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    if !h.access.cluster(op::DESCRIBE) {
        return DescribeLogDirsResponse::default()
            .with_error_code(Code::ClusterAuthorizationFailed.code());
    }
    let mut result =
        DescribeLogDirsResult::default().with_log_dir(text(h.settings.storage.object_store_url()));
    for topic in h.registry.topics() {
        let filter = match &wanted {
            Some(w) => match w.get(topic.name.as_ref()) {
                Some(ps) => Some(ps),
                None => continue,
            },
            None => None,
        };
        let mut out =
            DescribeLogDirsTopic::default().with_name(TopicName(text(topic.name.to_string())));
        for p in &topic.partitions {
            if filter.is_some_and(|f| !f.contains(&p.index)) {
                continue;
            }
            let size: u64 = {
                let s = p.state();
                let sealed: u64 = s.segments().iter().map(|g| g.data_len).sum();
                let tail: u64 = s
                    .tail()
                    .iter()
                    .map(|c| match &c.location {
                        Location::Pending(b) => b.len() as u64,
                        Location::Wal { len, .. } => *len,
                    })
                    .sum();
                sealed + tail
            };
            out.partitions.push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(p.index)
                    .with_partition_size(size as i64),
            );
        }
        result.topics.push(out);
    }
    let _ = v;
    DescribeLogDirsResponse::default().with_results(vec![result])
}
