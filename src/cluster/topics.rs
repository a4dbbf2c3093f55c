//! Topics through the admin API, declaratively (the operator's StratusTopic): make a topic
//! what a request says, or delete it. The same checks as Kafka's CreateTopics,
//! CreatePartitions and AlterConfigs apply (`crate::topics`).

use std::collections::BTreeMap;

use kafka_protocol::ResponseError as Code;
use tonic::Status;

use crate::broker::Broker;
use crate::error::AdminError;
use stratus_proto::{DeleteTopicResponse, EnsureTopicRequest, EnsureTopicResponse};

/// The gRPC status of a refused topic request; the message is Kafka's.
fn refused(e: AdminError) -> Status {
    let code = match e.code {
        Code::UnknownTopicOrPartition => tonic::Code::NotFound,
        Code::TopicAlreadyExists => tonic::Code::AlreadyExists,
        Code::InvalidConfig
        | Code::InvalidTopicException
        | Code::InvalidPartitions
        | Code::InvalidReplicationFactor
        | Code::InvalidRequest => tonic::Code::InvalidArgument,
        c if c.is_retriable() => tonic::Code::Unavailable,
        _ => tonic::Code::FailedPrecondition,
    };
    Status::new(code, e.message)
}

/// Creates the topic, adds partitions, or puts its config overrides back to the request's.
pub async fn ensure(broker: &Broker, r: EnsureTopicRequest) -> Result<EnsureTopicResponse, Status> {
    let configs: BTreeMap<String, String> = r.configs.into_iter().collect();
    let rf = match r.replication_factor {
        0 => -1,
        n => i16::try_from(n)
            .map_err(|_| Status::invalid_argument("replication_factor is out of range"))?,
    };
    let Some(topic) = broker.registry.topic(&r.name) else {
        let made = broker
            .topics
            .create_topic(&r.name, r.partitions, rf, configs, false)
            .await;
        return match made {
            Ok(t) => Ok(EnsureTopicResponse {
                topic_id: t.id_text.to_string(),
                partitions: t.partitions.len() as i32,
                created: true,
                changed_configs: Vec::new(),
                added_partitions: 0,
            }),
            // Made by another broker this broker has not heard of yet: ask again.
            Err(e) if e.code == Code::TopicAlreadyExists => Err(Status::unavailable(format!(
                "topic '{}' is being created; try again",
                r.name
            ))),
            Err(e) => Err(refused(e)),
        };
    };
    let current = topic.partitions.len() as i32;
    if r.partitions < current {
        return Err(Status::failed_precondition(format!(
            "topic '{}' has {current} partitions; partitions can be added, never removed",
            r.name
        )));
    }
    for (k, v) in &configs {
        crate::topic_config::validate(k, v)
            .map_err(|m| refused(AdminError::new(Code::InvalidConfig, m)))?;
    }
    let mut changed: Vec<String> = topic
        .configs
        .iter()
        .filter(|(k, v)| configs.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    changed.extend(
        configs
            .keys()
            .filter(|k| !topic.configs.contains_key(*k))
            .cloned(),
    );
    changed.sort();
    if !changed.is_empty() {
        broker
            .topics
            .set_topic_configs(&topic, configs)
            .await
            .map_err(refused)?;
    }
    if r.partitions > current {
        let latest = broker.registry.topic(&r.name).unwrap_or(topic.clone());
        broker
            .topics
            .create_partitions(&latest, r.partitions, false)
            .await
            .map_err(refused)?;
    }
    Ok(EnsureTopicResponse {
        topic_id: topic.id_text.to_string(),
        partitions: r.partitions.max(current),
        created: false,
        changed_configs: changed,
        added_partitions: (r.partitions - current).max(0),
    })
}

/// Deletes the topic.
pub async fn delete(broker: &Broker, name: &str) -> Result<DeleteTopicResponse, Status> {
    let topic = broker
        .registry
        .topic(name)
        .ok_or_else(|| Status::not_found(format!("no topic '{name}'")))?;
    broker.topics.delete_topic(&topic).await.map_err(refused)?;
    Ok(DeleteTopicResponse {})
}
