//! DescribeClientQuotas and AlterClientQuotas (KIP-546), as Kafka answers them:
//! `kafka-configs --alter --add-config 'producer_byte_rate=1048576' --entity-type clients
//! --entity-name app` (or `--entity-type users`, `--entity-default`) sets a quota; every
//! broker applies it within a second.

use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as Code;
use stratus_auth::acl::op;

use super::access::Access;
use crate::error::Error;
use crate::quotas::entity::{self, Entity, Filter, QuotaName};
use crate::quotas::Quotas;

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// DescribeClientQuotas: the entities the filter matches, with their quotas.
pub fn describe(
    access: Access<'_>,
    quotas: &Quotas,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    if !access.cluster(op::DESCRIBE_CONFIGS) {
        return DescribeClientQuotasResponse::default()
            .with_error_code(Code::ClusterAuthorizationFailed.code())
            .with_error_message(Some(text("Cluster authorization failed.")));
    }
    let components: Vec<(&str, i8, Option<&str>)> = req
        .components
        .iter()
        .map(|c| {
            (
                c.entity_type.as_str(),
                c.match_type,
                c._match.as_ref().map(|m| m.as_str()),
            )
        })
        .collect();
    let filter = match Filter::parse(&components, req.strict) {
        Ok(f) => f,
        Err(msg) => {
            return DescribeClientQuotasResponse::default()
                .with_error_code(Code::InvalidRequest.code())
                .with_error_message(Some(text(msg)))
        }
    };
    let entries = quotas
        .table()
        .iter()
        .filter(|(e, _)| filter.matches(e))
        .map(|(e, values)| {
            EntryData::default()
                .with_entity(entity_data(e))
                .with_values(
                    values
                        .iter()
                        .map(|(k, v)| {
                            ValueData::default()
                                .with_key(text(k.clone()))
                                .with_value(*v)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

fn entity_data(e: &Entity) -> Vec<EntityData> {
    let part = |ty: &str, p: &Option<QuotaName>| {
        p.as_ref().map(|n| {
            EntityData::default()
                .with_entity_type(text(ty))
                .with_entity_name(match n {
                    QuotaName::Default => None,
                    QuotaName::Name(s) => Some(text(s.clone())),
                })
        })
    };
    [part("user", &e.user), part("client-id", &e.client_id)]
        .into_iter()
        .flatten()
        .collect()
}

/// AlterClientQuotas: sets or removes quotas of each entity; an entity whose change is
/// invalid gets an error and the others are applied.
pub async fn alter(
    access: Access<'_>,
    quotas: &Quotas,
    req: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    use kafka_protocol::messages::alter_client_quotas_response::{
        EntityData as OutEntity, EntryData as OutEntry,
    };
    let allowed = access.cluster(op::ALTER_CONFIGS);
    let mut results = Vec::new();
    let mut changes = Vec::new();
    for e in &req.entries {
        let echo: Vec<OutEntity> = e
            .entity
            .iter()
            .map(|c| {
                OutEntity::default()
                    .with_entity_type(c.entity_type.clone())
                    .with_entity_name(c.entity_name.clone())
            })
            .collect();
        let checked = if allowed {
            check(e).map_err(|m| (Code::InvalidRequest, m))
        } else {
            Err((
                Code::ClusterAuthorizationFailed,
                "Cluster authorization failed.".to_string(),
            ))
        };
        let mut out = OutEntry::default().with_entity(echo);
        match checked {
            Ok(change) => {
                changes.push((results.len(), change));
            }
            Err((code, msg)) => {
                out.error_code = code.code();
                out.error_message = Some(text(msg));
            }
        }
        results.push(out);
    }
    if !req.validate_only && !changes.is_empty() {
        let batch: Vec<_> = changes.iter().map(|(_, c)| c.clone()).collect();
        if let Err(e) = quotas.alter(&batch).await.map_err(Error::from) {
            for (i, _) in &changes {
                results[*i].error_code = e.code();
                results[*i].error_message = Some(text(e.to_string()));
            }
        }
    }
    AlterClientQuotasResponse::default().with_entries(results)
}

type Change = (Entity, entity::Ops);

fn check(e: &alter_client_quotas_request::EntryData) -> Result<Change, String> {
    let components: Vec<(&str, Option<&str>)> = e
        .entity
        .iter()
        .map(|c| {
            (
                c.entity_type.as_str(),
                c.entity_name.as_ref().map(|n| n.as_str()),
            )
        })
        .collect();
    let entity = entity::parse_entity(&components)?;
    let mut ops = Vec::new();
    for op in &e.ops {
        let key = op.key.as_str();
        if op.remove {
            ops.push((key.to_string(), None));
        } else {
            entity::check_value(key, op.value)?;
            ops.push((key.to_string(), Some(op.value)));
        }
    }
    Ok((entity, ops))
}
