//! Quota entities as Kafka defines them: a user, a client id, or both, each named or the
//! default; which entity's quota applies to a client, and which clients share it.

use std::collections::BTreeMap;

pub use stratus_meta::repo::QuotaName;

/// What a quota bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaType {
    /// Bytes produced per second (`producer_byte_rate`).
    Produce,
    /// Bytes fetched per second (`consumer_byte_rate`).
    Fetch,
    /// Percent of one request thread's time (`request_percentage`).
    Request,
}

impl QuotaType {
    /// Every type.
    pub const ALL: [QuotaType; 3] = [QuotaType::Produce, QuotaType::Fetch, QuotaType::Request];

    /// Its quota key.
    pub fn key(self) -> &'static str {
        match self {
            QuotaType::Produce => "producer_byte_rate",
            QuotaType::Fetch => "consumer_byte_rate",
            QuotaType::Request => "request_percentage",
        }
    }
}

/// A quota entity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entity {
    /// The user part, if any.
    pub user: Option<QuotaName>,
    /// The client-id part, if any.
    pub client_id: Option<QuotaName>,
}

/// Changes to an entity's quotas: key to a new value, or `None` to remove it.
pub type Ops = Vec<(String, Option<f64>)>;

/// Quota key to value, per entity.
pub type Table = BTreeMap<Entity, BTreeMap<String, f64>>;

/// The quota of one type that applies to a client: its bound, and the tags of the usage
/// it is measured on (clients with the same tags share one rate, as in Kafka: every client
/// of a user with a user-level quota shares it).
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// User tag ("" when the quota is not per user).
    pub user: String,
    /// Client-id tag ("" when the quota is not per client id).
    pub client_id: String,
    /// The bound.
    pub bound: f64,
}

/// The quota of `ty` for `user` (the principal's name) and `client_id`: the first entity,
/// in Kafka's order of precedence, that sets it.
pub fn resolve(table: &Table, ty: QuotaType, user: &str, client_id: &str) -> Option<Applied> {
    use QuotaName::{Default, Name};
    let u = || Some(Name(user.to_string()));
    let c = || Some(Name(client_id.to_string()));
    // (entity, whether usage is per user, whether per client id)
    let order = [
        (u(), c(), true, true),
        (u(), Some(Default), true, true),
        (u(), None, true, false),
        (Some(Default), c(), true, true),
        (Some(Default), Some(Default), true, true),
        (Some(Default), None, true, false),
        (None, c(), false, true),
        (None, Some(Default), false, true),
    ];
    order
        .into_iter()
        .find_map(|(user_part, client_part, by_user, by_client)| {
            let entity = Entity {
                user: user_part,
                client_id: client_part,
            };
            let bound = *table.get(&entity)?.get(ty.key())?;
            Some(Applied {
                user: if by_user {
                    user.to_string()
                } else {
                    String::new()
                },
                client_id: if by_client {
                    client_id.to_string()
                } else {
                    String::new()
                },
                bound,
            })
        })
}

/// An entity from AlterClientQuotas' components (type, name; no name is the default).
pub fn parse_entity(components: &[(&str, Option<&str>)]) -> Result<Entity, String> {
    if components.is_empty() {
        return Err("Invalid empty client quota entity".into());
    }
    let mut entity = Entity {
        user: None,
        client_id: None,
    };
    for (ty, name) in components {
        if name.is_some_and(str::is_empty) {
            return Err(format!("Empty {ty} not supported"));
        }
        let part = match *ty {
            "user" => &mut entity.user,
            "client-id" => &mut entity.client_id,
            "ip" => {
                return Err(
                    "ip quotas (connection_creation_rate) are not supported by Stratus; limit \
                     connections per address with max.connections.per.ip"
                        .into(),
                )
            }
            other => return Err(format!("Unhandled client quota entity type: {other}")),
        };
        if part.is_some() {
            return Err(format!(
                "Invalid client quota entity, duplicate entity entry {ty}"
            ));
        }
        *part = Some(match name {
            Some(n) => QuotaName::Name(n.to_string()),
            None => QuotaName::Default,
        });
    }
    Ok(entity)
}

/// Checks one quota value as Kafka does: a known key, above zero, whole for byte rates.
pub fn check_value(key: &str, value: f64) -> Result<(), String> {
    let integral = match key {
        "producer_byte_rate" | "consumer_byte_rate" => true,
        "request_percentage" => false,
        "controller_mutation_rate" => {
            return Err("controller_mutation_rate is not enforced by Stratus".into())
        }
        _ => return Err(format!("Invalid configuration key {key}")),
    };
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("Quota {key} must be greater than 0"));
    }
    if integral && (value % 1.0).abs() > 1e-6 {
        return Err(format!("{key} cannot be a fractional value."));
    }
    if integral && value > i64::MAX as f64 {
        return Err(format!("Proposed value for {key} is too large for a LONG."));
    }
    Ok(())
}

/// A DescribeClientQuotas filter.
#[derive(Debug, Default)]
pub struct Filter {
    /// Entity types that must have exactly this name (`None`: the default).
    exact: Vec<(String, Option<String>)>,
    /// Entity types that must be present, with any name.
    specified: Vec<String>,
    strict: bool,
}

impl Filter {
    /// From the request's components (type, match type, match) and `strict`, with Kafka's
    /// checks.
    pub fn parse(components: &[(&str, i8, Option<&str>)], strict: bool) -> Result<Filter, String> {
        let mut f = Filter {
            strict,
            ..Filter::default()
        };
        for (ty, match_type, name) in components {
            if ty.is_empty() {
                return Err("Invalid empty entity type.".into());
            }
            if f.exact.iter().any(|(t, _)| t == ty) || f.specified.iter().any(|t| t == ty) {
                return Err(format!(
                    "Entity type {ty} cannot appear more than once in the filter."
                ));
            }
            if !["user", "client-id", "ip"].contains(ty) {
                return Err(format!("Unsupported entity type {ty}"));
            }
            match (match_type, name) {
                (0, Some(n)) => f.exact.push((ty.to_string(), Some(n.to_string()))),
                (0, None) => {
                    return Err(
                        "Request specified MATCH_TYPE_EXACT, but set match string to null.".into(),
                    )
                }
                (1, None) => f.exact.push((ty.to_string(), None)),
                (2, None) => f.specified.push(ty.to_string()),
                (1 | 2, Some(_)) => {
                    return Err(format!(
                    "Request specified match type {match_type}, but also specified a match string."
                ))
                }
                _ => return Err(format!("Unknown match type {match_type}")),
            }
        }
        let has =
            |t: &str| f.exact.iter().any(|(x, _)| x == t) || f.specified.iter().any(|x| x == t);
        if has("ip") && (has("user") || has("client-id")) {
            return Err(
                "Invalid entity filter component combination. IP filter component \
                        should not be used with user or clientId filter component."
                    .into(),
            );
        }
        Ok(f)
    }

    /// Whether `entity` matches.
    pub fn matches(&self, entity: &Entity) -> bool {
        let part = |t: &str| match t {
            "user" => entity.user.as_ref(),
            "client-id" => entity.client_id.as_ref(),
            _ => None,
        };
        let size = entity.user.is_some() as usize + entity.client_id.is_some() as usize;
        if self.strict && size != self.exact.len() + self.specified.len() {
            return false;
        }
        self.exact.iter().all(|(t, want)| match (part(t), want) {
            (Some(QuotaName::Name(n)), Some(w)) => n == w,
            (Some(QuotaName::Default), None) => true,
            _ => false,
        }) && self.specified.iter().all(|t| part(t).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use QuotaName::{Default, Name};

    fn table(entries: &[(Option<QuotaName>, Option<QuotaName>, f64)]) -> Table {
        entries
            .iter()
            .map(|(u, c, v)| {
                (
                    Entity {
                        user: u.clone(),
                        client_id: c.clone(),
                    },
                    BTreeMap::from([("producer_byte_rate".to_string(), *v)]),
                )
            })
            .collect()
    }

    fn n(s: &str) -> Option<QuotaName> {
        Some(Name(s.into()))
    }

    #[test]
    fn the_most_specific_entity_wins() {
        let t = table(&[
            (None, Some(Default), 1.0),
            (None, n("app"), 2.0),
            (Some(Default), None, 3.0),
            (Some(Default), Some(Default), 4.0),
            (Some(Default), n("app"), 5.0),
            (n("alice"), None, 6.0),
            (n("alice"), Some(Default), 7.0),
            (n("alice"), n("app"), 8.0),
        ]);
        let q = |u, c| resolve(&t, QuotaType::Produce, u, c).map(|a| a.bound);
        assert_eq!(q("alice", "app"), Some(8.0));
        assert_eq!(q("alice", "other"), Some(7.0));
        assert_eq!(q("bob", "app"), Some(5.0));
        assert_eq!(q("bob", "other"), Some(4.0));
        assert_eq!(resolve(&t, QuotaType::Fetch, "alice", "app"), None);
    }

    #[test]
    fn clients_of_a_user_quota_share_its_usage() {
        let t = table(&[(n("alice"), None, 6.0), (None, Some(Default), 1.0)]);
        let a = resolve(&t, QuotaType::Produce, "alice", "app").unwrap();
        assert_eq!((a.user.as_str(), a.client_id.as_str()), ("alice", ""));
        // A client-id default: each client id is measured on its own.
        let b = resolve(&t, QuotaType::Produce, "bob", "app").unwrap();
        assert_eq!(
            (b.user.as_str(), b.client_id.as_str(), b.bound),
            ("", "app", 1.0)
        );
    }

    #[test]
    fn entities_and_values_are_checked_as_kafka_does() {
        assert!(parse_entity(&[]).is_err());
        assert!(parse_entity(&[("user", Some(""))]).is_err());
        assert!(parse_entity(&[("user", None), ("user", Some("a"))]).is_err());
        assert!(parse_entity(&[("ip", Some("10.0.0.1"))]).is_err());
        assert_eq!(
            parse_entity(&[("client-id", Some("app")), ("user", None)]).unwrap(),
            Entity {
                user: Some(Default),
                client_id: n("app")
            }
        );
        assert!(check_value("producer_byte_rate", 1024.0).is_ok());
        assert!(check_value("producer_byte_rate", 1.5).is_err());
        assert!(check_value("consumer_byte_rate", 0.0).is_err());
        assert!(check_value("request_percentage", 12.5).is_ok());
        assert!(check_value("bogus", 1.0).is_err());
    }

    #[test]
    fn describe_filters_match_as_kafka_does() {
        let alice_app = Entity {
            user: n("alice"),
            client_id: n("app"),
        };
        let default_user = Entity {
            user: Some(Default),
            client_id: None,
        };
        let f = Filter::parse(&[("user", 0, Some("alice"))], false).unwrap();
        assert!(f.matches(&alice_app));
        assert!(!f.matches(&default_user));
        let strict = Filter::parse(&[("user", 0, Some("alice"))], true).unwrap();
        assert!(!strict.matches(&alice_app));
        let default = Filter::parse(&[("user", 1, None)], false).unwrap();
        assert!(default.matches(&default_user));
        let any = Filter::parse(&[("user", 2, None)], false).unwrap();
        assert!(any.matches(&default_user) && any.matches(&alice_app));
        assert!(Filter::parse(&[("user", 0, None)], false).is_err());
        assert!(Filter::parse(&[("ip", 2, None), ("user", 2, None)], false).is_err());
        assert!(Filter::parse(&[], false).unwrap().matches(&default_user));
    }
}
