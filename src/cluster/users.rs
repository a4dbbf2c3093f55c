//! Users through the admin API, declaratively (the operator's StratusUser): SCRAM
//! credentials from passwords, and exactly the given ACLs of `User:<name>`. Passwords are
//! never logged, echoed or kept: only the salted keys are stored, as AlterUserScramCredentials
//! stores them.

use std::collections::BTreeSet;

use stratus_auth::acl::{op, pattern, permission, resource, Binding, Filter};
use stratus_auth::scram::{Credential, Mechanism};
use tonic::Status;

use crate::auth::scram_store::Change;
use crate::broker::Broker;
use stratus_proto::{AclEntry, DeleteUserResponse, EnsureUserRequest, EnsureUserResponse};

/// Kafka's bounds on SCRAM iterations.
const ITERATIONS: std::ops::RangeInclusive<u32> = 4096..=16384;
const DEFAULT_ITERATIONS: u32 = 8192;

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("the metadata store: {e}"))
}

fn operation(name: &str) -> Option<i8> {
    Some(
        match name.to_ascii_lowercase().replace(['_', '-'], "").as_str() {
            "all" => op::ALL,
            "read" => op::READ,
            "write" => op::WRITE,
            "create" => op::CREATE,
            "delete" => op::DELETE,
            "alter" => op::ALTER,
            "describe" => op::DESCRIBE,
            "clusteraction" => op::CLUSTER_ACTION,
            "describeconfigs" => op::DESCRIBE_CONFIGS,
            "alterconfigs" => op::ALTER_CONFIGS,
            "idempotentwrite" => op::IDEMPOTENT_WRITE,
            _ => return None,
        },
    )
}

/// The binding an entry stands for, or why it is wrong.
fn binding(principal: &str, e: &AclEntry) -> Result<Binding, String> {
    let resource_type = match e.resource_type.as_str() {
        "topic" => resource::TOPIC,
        "group" => resource::GROUP,
        "cluster" => resource::CLUSTER,
        "transactionalId" => resource::TRANSACTIONAL_ID,
        other => return Err(format!("unknown resource type '{other}'")),
    };
    let name = if resource_type == resource::CLUSTER && e.resource_name.is_empty() {
        resource::CLUSTER_NAME.to_string()
    } else {
        e.resource_name.clone()
    };
    let b = Binding {
        resource_type,
        name,
        pattern_type: match e.pattern.as_str() {
            "" | "literal" => pattern::LITERAL,
            "prefixed" => pattern::PREFIXED,
            other => return Err(format!("unknown pattern '{other}'")),
        },
        principal: principal.to_string(),
        host: if e.host.is_empty() {
            "*".into()
        } else {
            e.host.clone()
        },
        operation: operation(&e.operation)
            .ok_or_else(|| format!("unknown operation '{}'", e.operation))?,
        permission: match e.permission.as_str() {
            "" | "allow" => permission::ALLOW,
            "deny" => permission::DENY,
            other => return Err(format!("unknown permission '{other}'")),
        },
    };
    match b.invalid() {
        Some(why) => Err(format!("{} {}: {why}", e.resource_type, e.resource_name)),
        None => Ok(b),
    }
}

/// A filter matching exactly `b`.
fn exactly(b: &Binding) -> Filter {
    Filter {
        resource_type: b.resource_type,
        name: Some(b.name.clone()),
        pattern_type: b.pattern_type,
        principal: Some(b.principal.clone()),
        host: Some(b.host.clone()),
        operation: b.operation,
        permission: b.permission,
    }
}

fn check_name(name: &str) -> Result<String, Status> {
    if name.is_empty() || name.contains(['\n', '\r']) || name.len() > 255 {
        return Err(Status::invalid_argument(
            "a user name is 1 to 255 characters, one line",
        ));
    }
    Ok(format!("User:{name}"))
}

/// Sets the user's credentials and ACLs.
pub async fn ensure(broker: &Broker, r: EnsureUserRequest) -> Result<EnsureUserResponse, Status> {
    let principal = check_name(&r.name)?;
    let wanted: Vec<Binding> = r
        .acls
        .iter()
        .map(|e| binding(&principal, e))
        .collect::<Result<_, _>>()
        .map_err(Status::invalid_argument)?;
    let store = &broker.security.scram;
    let mut changes = Vec::new();
    let mut scram_changed = Vec::new();
    if r.manage_scram {
        let mut named = BTreeSet::new();
        for s in &r.scram {
            let m = Mechanism::from_name(&s.mechanism).ok_or_else(|| {
                Status::invalid_argument(format!("unknown SCRAM mechanism '{}'", s.mechanism))
            })?;
            let iterations = if s.iterations == 0 {
                DEFAULT_ITERATIONS
            } else {
                s.iterations
            };
            if !ITERATIONS.contains(&iterations) {
                return Err(Status::invalid_argument(
                    "SCRAM iterations must be 4096 to 16384",
                ));
            }
            if s.password.is_empty() {
                return Err(Status::invalid_argument("the password is empty"));
            }
            named.insert(m.name());
            let current = store.get(&r.name, m).await.map_err(unavailable)?;
            let same = current.is_some_and(|c| {
                c.iterations == iterations
                    && Credential::from_salted(
                        m,
                        c.salt.clone(),
                        &m.salted_password(s.password.as_bytes(), &c.salt, iterations),
                        iterations,
                    )
                    .stored_key
                        == c.stored_key
            });
            if !same {
                let cred = Credential::from_password(m, &s.password, iterations)
                    .map_err(|e| Status::internal(e.to_string()))?;
                changes.push(Change::Upsert(r.name.clone(), cred));
                scram_changed.push(m.name().to_string());
            }
        }
        for m in Mechanism::ALL {
            if !named.contains(m.name())
                && store.get(&r.name, m).await.map_err(unavailable)?.is_some()
            {
                changes.push(Change::Delete(r.name.clone(), m));
                scram_changed.push(m.name().to_string());
            }
        }
        store.apply(&changes).await.map_err(unavailable)?;
    }
    broker.authz.refresh().await.map_err(unavailable)?;
    let have: Vec<Binding> = broker
        .authz
        .bindings()
        .iter()
        .filter(|b| b.principal == principal)
        .cloned()
        .collect();
    let id = |b: &Binding| b.id();
    let have_ids: BTreeSet<String> = have.iter().map(id).collect();
    let want_ids: BTreeSet<String> = wanted.iter().map(id).collect();
    let add: Vec<Binding> = wanted
        .iter()
        .filter(|b| !have_ids.contains(&b.id()))
        .cloned()
        .collect();
    let remove: Vec<Filter> = have
        .iter()
        .filter(|b| !want_ids.contains(&b.id()))
        .map(exactly)
        .collect();
    if !add.is_empty() {
        broker.authz.create(&add).await.map_err(unavailable)?;
    }
    if !remove.is_empty() {
        broker.authz.delete(&remove).await.map_err(unavailable)?;
    }
    Ok(EnsureUserResponse {
        acls: want_ids.len() as u32,
        acls_added: add.len() as u32,
        acls_removed: remove.len() as u32,
        scram_changed,
    })
}

/// Removes the user's credentials and ACLs.
pub async fn delete(broker: &Broker, name: &str) -> Result<DeleteUserResponse, Status> {
    let principal = check_name(name)?;
    let store = &broker.security.scram;
    let mut changes = Vec::new();
    for m in Mechanism::ALL {
        if store.get(name, m).await.map_err(unavailable)?.is_some() {
            changes.push(Change::Delete(name.to_string(), m));
        }
    }
    store.apply(&changes).await.map_err(unavailable)?;
    let filter = Filter {
        resource_type: resource::ANY,
        name: None,
        pattern_type: pattern::ANY,
        principal: Some(principal),
        host: None,
        operation: op::ANY,
        permission: permission::ANY,
    };
    broker.authz.delete(&[filter]).await.map_err(unavailable)?;
    Ok(DeleteUserResponse {})
}
