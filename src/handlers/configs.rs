//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and a read-only
//! view of the broker's settings).

use std::collections::BTreeMap;
use stratus_auth::acl::op;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as Code;

use crate::config::Kind;
use crate::config::Settings;
use crate::error::AdminError;
use crate::registry::Registry;
use crate::topic_config::{self, Source};
use crate::topics::TopicAdmin;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn config_type(kind: Kind) -> i8 {
    match kind {
        Kind::Bool => 1,
        Kind::Text | Kind::Choice(_) | Kind::Listeners(_) | Kind::Url(..) | Kind::Address => 2,
        Kind::Password => 9,
        Kind::Int(..) => 3,
        Kind::Long(..) => 5,
        Kind::Ratio => 6,
    }
}

/// What the config APIs use: the topics, their lifecycle (to change overrides) and the
/// broker's settings (described as the broker resource, and the topics' defaults).
pub struct Handles<'a> {
    /// Topics.
    pub registry: &'a Registry,
    /// Writes topic overrides.
    pub topics: &'a TopicAdmin,
    /// The broker's settings.
    pub settings: &'a Settings,
    /// What the client may do (DESCRIBE_CONFIGS / ALTER_CONFIGS on topics and the cluster).
    pub access: super::access::Access<'a>,
}

/// DescribeConfigs.
pub fn describe(h: &Handles<'_>, req: DescribeConfigsRequest, v: i16) -> DescribeConfigsResponse {
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let keys: Option<Vec<String>> = res
            .configuration_keys
            .as_ref()
            .map(|k| k.iter().map(|s| s.to_string()).collect());
        let wanted = |n: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == n));
        let mut out = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let allowed = match res.resource_type {
            TOPIC => h
                .access
                .topic(op::DESCRIBE_CONFIGS, res.resource_name.as_str()),
            BROKER | BROKER_LOGGER => h.access.cluster(op::DESCRIBE_CONFIGS),
            _ => true,
        };
        if !allowed {
            let code = if res.resource_type == TOPIC {
                Code::TopicAuthorizationFailed
            } else {
                Code::ClusterAuthorizationFailed
            };
            out.error_code = code.code();
            out.error_message = Some(text("Authorization failed."));
            resp.results.push(out);
            continue;
        }
        match res.resource_type {
            TOPIC => match h.registry.topic(res.resource_name.as_str()) {
                None => {
                    out.error_code = Code::UnknownTopicOrPartition.code();
                    out.error_message = Some(text(format!(
                        "Topic {} does not exist",
                        res.resource_name.as_str()
                    )));
                }
                Some(t) => {
                    for d in topic_config::TOPIC_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.name))
                    {
                        let Some((value, source)) =
                            topic_config::resolve(d.name, &t.configs, h.settings)
                        else {
                            continue;
                        };
                        let mut c = DescribeConfigsResourceResult::default()
                            .with_name(text(d.name))
                            .with_value(Some(text(value)))
                            .with_config_source(source as i8);
                        if req.include_synonyms {
                            c.synonyms = synonyms(h, d, &t.configs);
                        }
                        if v >= 3 {
                            c.config_type = config_type(d.kind);
                        }
                        out.configs.push(c);
                    }
                }
            },
            BROKER
                if res.resource_name.is_empty()
                    || res.resource_name.as_str() == h.settings.server.node_id.to_string() =>
            {
                for d in crate::config::SETTINGS.iter().filter(|d| wanted(d.name)) {
                    let value = h.settings.get(d.name).unwrap_or(d.default).to_string();
                    let source = if h.settings.explicit.contains(d.name) {
                        Source::StaticBroker
                    } else {
                        Source::Default
                    };
                    // Secrets are reported as sensitive, with no value, as Kafka does.
                    let value = (!d.kind.sensitive()).then(|| text(value));
                    let mut c = DescribeConfigsResourceResult::default()
                        .with_name(text(d.name))
                        .with_value(value)
                        .with_is_sensitive(d.kind.sensitive())
                        .with_read_only(true)
                        .with_config_source(source as i8);
                    if v >= 3 {
                        c.config_type = config_type(d.kind);
                    }
                    out.configs.push(c);
                }
            }
            BROKER_LOGGER => {}
            _ => {
                out.error_code = Code::InvalidRequest.code();
                out.error_message = Some(text("Unsupported resource"));
            }
        }
        resp.results.push(out);
    }
    resp
}

fn synonyms(
    h: &Handles<'_>,
    d: &topic_config::TopicConfigDef,
    overrides: &BTreeMap<String, String>,
) -> Vec<DescribeConfigsSynonym> {
    let mut out = Vec::new();
    if let Some(v) = overrides.get(d.name) {
        out.push(synonym(d.name, v, Source::Topic));
    }
    if let Some(k) = d.broker_key {
        if h.settings.explicit.contains(k) {
            if let Some(v) = h.settings.get(k) {
                out.push(synonym(k, v, Source::StaticBroker));
            }
        }
        let default = crate::config::SETTINGS
            .iter()
            .find(|s| s.name == k)
            .map(|s| s.default)
            .unwrap_or(d.default);
        out.push(synonym(k, default, Source::Default));
    } else {
        out.push(synonym(d.name, d.default, Source::Default));
    }
    out
}

fn synonym(name: &str, value: &str, source: Source) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(text(name))
        .with_value(Some(text(value)))
        .with_source(source as i8)
}

fn unsupported_resource(kind: i8) -> AdminError {
    if kind == BROKER || kind == BROKER_LOGGER {
        AdminError::new(
            Code::InvalidRequest,
            "Dynamic broker configs are not supported: set them in the broker's configuration",
        )
    } else {
        AdminError::new(Code::InvalidRequest, "Unsupported resource type")
    }
}

/// AlterConfigs: replaces a topic's overrides with exactly the given set.
pub async fn alter(h: &Handles<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let result = async {
            if res.resource_type != TOPIC {
                if !h.access.cluster(op::ALTER_CONFIGS) {
                    return Err(AdminError::new(
                        Code::ClusterAuthorizationFailed,
                        "Authorization failed.",
                    ));
                }
                return Err(unsupported_resource(res.resource_type));
            }
            if !h
                .access
                .topic(op::ALTER_CONFIGS, res.resource_name.as_str())
            {
                return Err(AdminError::new(
                    Code::TopicAuthorizationFailed,
                    "Authorization failed.",
                ));
            }
            let topic = h
                .registry
                .topic(res.resource_name.as_str())
                .ok_or_else(|| AdminError::new(Code::UnknownTopicOrPartition, "Unknown topic"))?;
            let mut configs = BTreeMap::new();
            for c in &res.configs {
                if let Some(v) = &c.value {
                    topic_config::validate(c.name.as_str(), v.as_str())
                        .map_err(|m| AdminError::new(Code::InvalidConfig, m))?;
                    configs.insert(c.name.to_string(), v.to_string());
                }
            }
            if req.validate_only {
                return Ok(());
            }
            h.topics.set_topic_configs(&topic, configs).await
        }
        .await;
        let mut r = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        if let Err(AdminError { code, message: msg }) = result {
            r.error_code = code.code();
            r.error_message = Some(text(msg));
        }
        resp.responses.push(r);
    }
    resp
}

/// IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on a topic's overrides.
pub async fn incremental_alter(
    h: &Handles<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let result = async {
            if res.resource_type != TOPIC {
                if !h.access.cluster(op::ALTER_CONFIGS) {
                    return Err(AdminError::new(
                        Code::ClusterAuthorizationFailed,
                        "Authorization failed.",
                    ));
                }
                return Err(unsupported_resource(res.resource_type));
            }
            if !h
                .access
                .topic(op::ALTER_CONFIGS, res.resource_name.as_str())
            {
                return Err(AdminError::new(
                    Code::TopicAuthorizationFailed,
                    "Authorization failed.",
                ));
            }
            let topic = h
                .registry
                .topic(res.resource_name.as_str())
                .ok_or_else(|| AdminError::new(Code::UnknownTopicOrPartition, "Unknown topic"))?;
            let mut configs = topic.configs.clone();
            for c in &res.configs {
                let name = c.name.to_string();
                if topic_config::def(&name).is_none() {
                    return Err(AdminError::new(
                        Code::InvalidConfig,
                        format!("Unknown topic config name: {name}"),
                    ));
                }
                let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                match c.config_operation {
                    0 => {
                        configs.insert(name, value);
                    }
                    1 => {
                        configs.remove(&name);
                    }
                    2 | 3 => {
                        let current = topic_config::resolve(&name, &configs, h.settings)
                            .map(|(v, _)| v)
                            .unwrap_or_default();
                        let mut items: Vec<String> = current
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect();
                        for item in value.split(',').filter(|s| !s.is_empty()) {
                            if c.config_operation == 2 && !items.iter().any(|i| i == item) {
                                items.push(item.to_string());
                            } else if c.config_operation == 3 {
                                items.retain(|i| i != item);
                            }
                        }
                        configs.insert(name, items.join(","));
                    }
                    op => {
                        return Err(AdminError::new(
                            Code::InvalidRequest,
                            format!("Unknown config operation {op}"),
                        ))
                    }
                }
            }
            for (k, v) in &configs {
                topic_config::validate(k, v)
                    .map_err(|m| AdminError::new(Code::InvalidConfig, m))?;
            }
            if req.validate_only {
                return Ok(());
            }
            h.topics.set_topic_configs(&topic, configs).await
        }
        .await;
        let mut r = IncrementalResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        if let Err(AdminError { code, message: msg }) = result {
            r.error_code = code.code();
            r.error_message = Some(text(msg));
        }
        resp.responses.push(r);
    }
    resp
}
