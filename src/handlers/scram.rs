//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554), as Kafka answers
//! them: `kafka-configs --alter --add-config 'SCRAM-SHA-512=[password=…]' --entity-type
//! users --entity-name alice` sends the salted password; the store keeps the derived keys.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as Code;
use stratus_auth::scram::{Credential, Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};

use super::access::Access;
use crate::auth::scram_store::{Change, ScramStore};
use crate::error::Error;
use stratus_auth::acl::op;

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// DescribeUserScramCredentials: every user with a credential (no users given), or those
/// asked for.
pub async fn describe(
    access: Access<'_>,
    store: &ScramStore,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !access.cluster(op::DESCRIBE) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(Code::ClusterAuthorizationFailed.code())
            .with_error_message(Some(text("Cluster authorization failed.")));
    }
    let users = match store.users().await {
        Ok(u) => u,
        Err(e) => {
            let e = Error::from(e);
            return DescribeUserScramCredentialsResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(text(e.to_string())));
        }
    };
    // user → asked for twice
    let mut asked: BTreeMap<String, bool> = BTreeMap::new();
    match req.users.filter(|u| !u.is_empty()) {
        None => asked.extend(users.keys().map(|u| (u.clone(), false))),
        Some(list) => {
            for u in list {
                let twice = asked.contains_key(u.name.as_str());
                asked.insert(u.name.to_string(), twice);
            }
        }
    }
    let mut resp = DescribeUserScramCredentialsResponse::default();
    for (user, twice) in asked {
        let mut r = DescribeUserScramCredentialsResult::default().with_user(text(user.clone()));
        if twice {
            r.error_code = Code::DuplicateResource.code();
            r.error_message = Some(text(format!(
                "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
            )));
        } else if let Some(mechs) = users.get(&user) {
            r.credential_infos = mechs
                .iter()
                .map(|(m, i)| {
                    CredentialInfo::default()
                        .with_mechanism(m.kafka_type())
                        .with_iterations(*i as i32)
                })
                .collect();
        } else {
            r.error_code = Code::ResourceNotFound.code();
            r.error_message = Some(text(format!(
                "Attempt to describe a user credential that does not exist: {user}"
            )));
        }
        resp.results.push(r);
    }
    resp
}

/// AlterUserScramCredentials: one change per user per request (a second one fails that
/// user with DUPLICATE_RESOURCE); every valid change is applied in one transaction.
pub async fn alter(
    access: Access<'_>,
    store: &ScramStore,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    if !access.cluster(op::ALTER) {
        let mut users: Vec<String> = req
            .deletions
            .iter()
            .map(|d| d.name.to_string())
            .chain(req.upsertions.iter().map(|u| u.name.to_string()))
            .collect();
        users.sort();
        users.dedup();
        return AlterUserScramCredentialsResponse::default().with_results(
            users
                .into_iter()
                .map(|u| {
                    AlterUserScramCredentialsResult::default()
                        .with_user(text(u))
                        .with_error_code(Code::ClusterAuthorizationFailed.code())
                        .with_error_message(Some(text("Cluster authorization failed.")))
                })
                .collect(),
        );
    }
    let mut changes: HashMap<String, Change> = HashMap::new();
    let mut errors: BTreeMap<String, (Code, String)> = BTreeMap::new();
    let existing = store.users().await;
    let twice = |user: &str| {
        (
            Code::DuplicateResource,
            format!("A user credential cannot be altered twice in the same request: {user}"),
        )
    };
    for d in req.deletions {
        let user = d.name.to_string();
        if errors.contains_key(&user) {
            continue;
        }
        if changes.remove(&user).is_some() {
            errors.insert(user.clone(), twice(&user));
            continue;
        }
        let check = validate(&user, d.mechanism).and_then(|m| {
            let exists = match &existing {
                Ok(u) => u
                    .get(&user)
                    .is_some_and(|ms| ms.iter().any(|(x, _)| *x == m)),
                Err(_) => true, // the store error is reported when applying
            };
            if exists {
                Ok(m)
            } else {
                Err((
                    Code::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist".into(),
                ))
            }
        });
        match check {
            Ok(m) => {
                changes.insert(user.clone(), Change::Delete(user, m));
            }
            Err(e) => {
                errors.insert(user, e);
            }
        }
    }
    for u in req.upsertions {
        let user = u.name.to_string();
        if errors.contains_key(&user) {
            continue;
        }
        if changes.remove(&user).is_some() {
            errors.insert(user.clone(), twice(&user));
            continue;
        }
        let check = validate(&user, u.mechanism).and_then(|m| {
            let iterations = u32::try_from(u.iterations).unwrap_or(0);
            if iterations < MIN_ITERATIONS {
                Err((Code::UnacceptableCredential, "Too few iterations".into()))
            } else if iterations > MAX_ITERATIONS {
                Err((Code::UnacceptableCredential, "Too many iterations".into()))
            } else if u.salted_password.len() != m.hash_len() || u.salt.is_empty() {
                Err((
                    Code::UnacceptableCredential,
                    "The salt or salted password is malformed".into(),
                ))
            } else {
                Ok(Credential::from_salted(
                    m,
                    u.salt.to_vec(),
                    &u.salted_password,
                    iterations,
                ))
            }
        });
        match check {
            Ok(c) => {
                changes.insert(user.clone(), Change::Upsert(user, c));
            }
            Err(e) => {
                errors.insert(user, e);
            }
        }
    }
    let mut resp = AlterUserScramCredentialsResponse::default();
    let changes: Vec<Change> = changes.into_values().collect();
    let applied = if changes.is_empty() {
        Ok(())
    } else {
        store.apply(&changes).await.map_err(Error::from)
    };
    for c in &changes {
        let user = match c {
            Change::Upsert(u, _) | Change::Delete(u, _) => u,
        };
        let mut r = AlterUserScramCredentialsResult::default().with_user(text(user.clone()));
        if let Err(e) = &applied {
            r.error_code = e.code();
            r.error_message = Some(text(e.to_string()));
        }
        resp.results.push(r);
    }
    for (user, (code, msg)) in errors {
        resp.results.push(
            AlterUserScramCredentialsResult::default()
                .with_user(text(user))
                .with_error_code(code.code())
                .with_error_message(Some(text(msg))),
        );
    }
    resp
}

fn validate(user: &str, mechanism: i8) -> Result<Mechanism, (Code, String)> {
    if user.is_empty() {
        return Err((
            Code::UnacceptableCredential,
            "Username must not be empty".into(),
        ));
    }
    Mechanism::from_kafka_type(mechanism).ok_or_else(|| {
        (
            Code::UnsupportedSaslMechanism,
            "Unknown SCRAM mechanism".into(),
        )
    })
}
