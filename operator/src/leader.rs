//! Leader election through a `coordination.k8s.io` Lease: one operator replica acts,
//! the others wait. The Lease is taken when it is free or its holder stopped renewing it;
//! every write carries the resourceVersion read, so two replicas never both win. A leader
//! that cannot renew in time exits: it restarts as a follower rather than risk two leaders.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::metrics::Metrics;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct Election {
    /// Namespace of the Lease (the operator's).
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica (its pod name).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub duration: Duration,
}

/// What to write to take or keep the Lease, or `None` when another holder's Lease is
/// still valid at `now`.
pub fn claim(
    current: Option<&LeaseSpec>,
    me: &str,
    ttl: Duration,
    now: Timestamp,
) -> Option<LeaseSpec> {
    let secs = ttl.as_secs().max(1) as i32;
    let Some(spec) = current else {
        return Some(LeaseSpec {
            holder_identity: Some(me.into()),
            lease_duration_seconds: Some(secs),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..Default::default()
        });
    };
    let mine = spec.holder_identity.as_deref() == Some(me);
    let held = spec
        .holder_identity
        .as_deref()
        .is_some_and(|h| !h.is_empty());
    let expires = spec.renew_time.as_ref().map(|t| {
        t.0 + SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(secs) as i64)
    });
    let expired = expires.is_none_or(|e| e < now);
    if !mine && held && !expired {
        return None;
    }
    let mut next = spec.clone();
    next.holder_identity = Some(me.into());
    next.lease_duration_seconds = Some(secs);
    next.renew_time = Some(MicroTime(now));
    if !mine {
        next.acquire_time = Some(MicroTime(now));
        next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    Some(next)
}

async fn try_once(api: &Api<Lease>, e: &Election) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&e.name).await?;
    let Some(spec) = claim(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &e.identity,
        e.duration,
        now,
    ) else {
        return Ok(false);
    };
    let result = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(e.name.clone()),
                    namespace: Some(e.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Some(mut lease) => {
            lease.spec = Some(spec);
            // Carries the resourceVersion read: a concurrent claim makes this a conflict.
            api.replace(&e.name, &PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

/// Waits until this replica holds the Lease, then keeps renewing it in the background;
/// exits the process if it cannot renew before the Lease would expire.
pub async fn lead(client: Client, e: Election, metrics: Arc<Metrics>) {
    let api: Api<Lease> = Api::namespaced(client, &e.namespace);
    let retry = (e.duration / 3).max(Duration::from_millis(500));
    loop {
        match try_once(&api, &e).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, lease = %e.name, "leader election"),
        }
        tokio::time::sleep(retry).await;
    }
    tracing::info!(identity = %e.identity, lease = %e.name, "leading");
    metrics.leader.set(1.0);
    tokio::spawn(async move {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(retry).await;
            match try_once(&api, &e).await {
                Ok(true) => last = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %e.name, "the leader Lease was taken: exiting");
                    std::process::exit(1);
                }
                Err(err) => tracing::warn!(error = %err, "renewing the leader Lease"),
            }
            if last.elapsed() > e.duration {
                tracing::error!(lease = %e.name, "could not renew the leader Lease in time: exiting");
                std::process::exit(1);
            }
        }
    });
}

/// Gives the Lease up (on a clean shutdown), so that a standby takes over at once rather
/// than after the Lease expires.
pub async fn release(client: Client, e: &Election) {
    let api: Api<Lease> = Api::namespaced(client, &e.namespace);
    let Ok(Some(mut lease)) = api.get_opt(&e.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(e.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    match api.replace(&e.name, &PostParams::default(), &lease).await {
        Ok(_) => tracing::info!(lease = %e.name, "released the leader Lease"),
        Err(err) => tracing::warn!(error = %err, "releasing the leader Lease"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_lease_of_another_holder_is_left_alone_until_it_expires() {
        let t0 = Timestamp::now();
        let ttl = Duration::from_secs(15);
        let first = claim(None, "a", ttl, t0).unwrap();
        assert_eq!(first.holder_identity.as_deref(), Some("a"));
        assert!(claim(Some(&first), "b", ttl, t0 + SignedDuration::from_secs(10)).is_none());
        let renewed = claim(Some(&first), "a", ttl, t0 + SignedDuration::from_secs(10)).unwrap();
        assert_eq!(renewed.lease_transitions, Some(0));
        assert_eq!(renewed.acquire_time, first.acquire_time);
        let taken = claim(Some(&first), "b", ttl, t0 + SignedDuration::from_secs(16)).unwrap();
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(1));
    }
}
