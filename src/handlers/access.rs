//! What the client of a request may do: the authorizer's decision for the connection's
//! principal and address, one call per resource. Every handler that touches a topic, a
//! group, a transactional id or the cluster asks here before anything else (so that a
//! resource the client may not describe is not even looked up), and answers Kafka's
//! *_AUTHORIZATION_FAILED code when refused.

use std::net::IpAddr;

use stratus_auth::acl::{op, resource};

use crate::auth::acls::Authorizer;
use crate::auth::Principal;

/// One request's access.
#[derive(Clone, Copy)]
pub struct Access<'a> {
    /// The broker's authorizer.
    pub authz: &'a Authorizer,
    /// Who sent the request.
    pub principal: &'a Principal,
    /// From where.
    pub host: IpAddr,
}

impl Access<'_> {
    /// `operation` on the topic `name`.
    pub fn topic(&self, operation: i8, name: &str) -> bool {
        self.authz
            .allowed(self.principal, self.host, operation, resource::TOPIC, name)
    }

    /// `operation` on a topic a request names: by `found` (its name, when the topic
    /// exists) or else by the name requested; a topic asked for by an unknown id is let
    /// through, to be answered UNKNOWN_TOPIC_ID (ids disclose nothing).
    pub fn topic_as_named(
        &self,
        operation: i8,
        requested: &str,
        found: Option<&str>,
        by_id: bool,
    ) -> bool {
        match (found, by_id) {
            (Some(name), _) => self.topic(operation, name),
            (None, true) => true,
            (None, false) => self.topic(operation, requested),
        }
    }

    /// `operation` on the group `id`.
    pub fn group(&self, operation: i8, id: &str) -> bool {
        self.authz
            .allowed(self.principal, self.host, operation, resource::GROUP, id)
    }

    /// `operation` on the transactional id `id`.
    pub fn transactional_id(&self, operation: i8, id: &str) -> bool {
        self.authz.allowed(
            self.principal,
            self.host,
            operation,
            resource::TRANSACTIONAL_ID,
            id,
        )
    }

    /// `operation` on the cluster.
    pub fn cluster(&self, operation: i8) -> bool {
        self.authz.allowed(
            self.principal,
            self.host,
            operation,
            resource::CLUSTER,
            resource::CLUSTER_NAME,
        )
    }

    /// An idempotent producer: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic
    /// (KIP-679).
    pub fn idempotent_write(&self) -> bool {
        self.cluster(op::IDEMPOTENT_WRITE)
            || self
                .authz
                .allowed_any(self.principal, self.host, op::WRITE, resource::TOPIC)
    }

    /// Kafka's `authorized_operations` bitfield of a resource: bit `op` set for each
    /// operation of the type (as Kafka lists them) the client may do on it.
    pub fn authorized_operations(&self, resource_type: i8, name: &str) -> i32 {
        stratus_auth::acl::supported_operations(resource_type)
            .iter()
            .filter(|o| {
                self.authz
                    .allowed(self.principal, self.host, **o, resource_type, name)
            })
            .fold(0, |bits, o| bits | (1 << o))
    }

    /// Topic creation: CREATE on the cluster, or on the topic.
    pub fn create_topic(&self, name: &str) -> bool {
        self.cluster(op::CREATE) || self.topic(op::CREATE, name)
    }
}

/// The answer to a group request the client may not make (READ on the group, for joining,
/// syncing, heartbeats, leaving and KIP-848 heartbeats): GROUP_AUTHORIZATION_FAILED, as
/// Kafka answers, before the coordinator is asked anything; and TOPIC_AUTHORIZATION_FAILED
/// for a KIP-848 heartbeat that subscribes to a topic the member may not describe.
pub fn refuse_group_request(
    a: &Access<'_>,
    req: &kafka_protocol::messages::RequestKind,
) -> Option<kafka_protocol::messages::ResponseKind> {
    use kafka_protocol::messages::*;
    use kafka_protocol::ResponseError as Code;
    let code = Code::GroupAuthorizationFailed.code();
    let read = |g: &str| a.group(op::READ, g);
    Some(match req {
        RequestKind::JoinGroup(r) if !read(r.group_id.0.as_str()) => {
            ResponseKind::JoinGroup(JoinGroupResponse::default().with_error_code(code))
        }
        RequestKind::SyncGroup(r) if !read(r.group_id.0.as_str()) => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code))
        }
        RequestKind::Heartbeat(r) if !read(r.group_id.0.as_str()) => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
        }
        RequestKind::LeaveGroup(r) if !read(r.group_id.0.as_str()) => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
        }
        // As Kafka: a member may subscribe only to topics it may describe.
        RequestKind::ConsumerGroupHeartbeat(r)
            if read(r.group_id.0.as_str())
                && r.subscribed_topic_names
                    .as_ref()
                    .is_some_and(|ts| ts.iter().any(|t| !a.topic(op::DESCRIBE, t.0.as_str()))) =>
        {
            ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(Code::TopicAuthorizationFailed.code())
                    .with_error_message(Some(kafka_protocol::protocol::StrBytes::from_static_str(
                        "The group does not have describe access to some of its subscribed topics.",
                    ))),
            )
        }
        RequestKind::ConsumerGroupHeartbeat(r) if !read(r.group_id.0.as_str()) => {
            ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(code)
                    .with_error_message(Some(kafka_protocol::protocol::StrBytes::from_static_str(
                        "Group authorization failed.",
                    ))),
            )
        }
        _ => return None,
    })
}
