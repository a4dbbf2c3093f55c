//! Registration: a broker is a member while its registration key lives under its lease.
//! A lost lease (the store was away longer than the session timeout, or the broker was
//! paused) means the controller has moved everything away; the broker registers again and
//! gets work back with new epochs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use stratus_meta::repo::{self, Registration};
use stratus_meta::{keys, Compare, LeaseId, MetaError, MetaStore, Op};

/// This broker's membership.
pub struct Membership {
    meta: Arc<dyn MetaStore>,
    registration: Mutex<Registration>,
    ttl: Duration,
    lease: Mutex<Option<LeaseId>>,
}

impl Membership {
    /// A membership not yet registered.
    pub fn new(meta: Arc<dyn MetaStore>, registration: Registration, ttl: Duration) -> Self {
        Membership {
            meta,
            registration: Mutex::new(registration),
            ttl,
            lease: Mutex::new(None),
        }
    }

    /// The current lease, if registered.
    pub fn lease(&self) -> Option<LeaseId> {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn registration(&self) -> Registration {
        self.registration
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes `r` under `lease` if the key holds what `expected` says (`None`: anything);
    /// whether it did.
    async fn put(
        &self,
        r: &Registration,
        lease: LeaseId,
        expected: Option<Compare>,
    ) -> Result<bool, MetaError> {
        self.meta
            .txn(
                expected.into_iter().collect(),
                vec![Op::Put(
                    keys::registration_key(r.node),
                    repo::encode(r),
                    Some(lease),
                )],
            )
            .await
    }

    /// Grants a lease and writes the registration under it, over whatever the key holds:
    /// a process starting is the newest incarnation of its node id (the one before it may
    /// have been killed, its lease not yet expired).
    pub async fn register(&self) -> Result<LeaseId, MetaError> {
        let lease = self.meta.grant_lease(self.ttl).await?;
        self.put(&self.registration(), lease, None).await?;
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease);
        let r = self.registration();
        info!(
            node = r.node,
            incarnation = r.incarnation,
            lease,
            "registered"
        );
        Ok(lease)
    }

    /// Registers again after the lease was lost, unless another incarnation of this node id
    /// registered meanwhile (this process was paused, or is shutting down, while a new one
    /// started): it must not take the registration back from the newer process.
    async fn register_again(&self) -> Result<(), MetaError> {
        let r = self.registration();
        let key = keys::registration_key(r.node);
        let current = self.meta.get(&key).await?;
        if let Some(v) = &current {
            let theirs = repo::decode::<Registration>(&key, v).map(|c| c.incarnation);
            if theirs.as_ref().ok() != Some(&r.incarnation) {
                warn!(
                    node = r.node,
                    incarnation = ?theirs.ok(),
                    "another process registered this node id; this one stays unregistered and owns nothing"
                );
                return Ok(());
            }
        }
        let lease = self.meta.grant_lease(self.ttl).await?;
        let expected = Compare::Revision(key, current.map(|v| v.mod_revision));
        if self.put(&r, lease, Some(expected)).await? {
            *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease);
            info!(node = r.node, lease, "registered again");
        } else {
            let _ = self.meta.revoke_lease(lease).await;
        }
        Ok(())
    }

    /// Marks the registration as leaving (SIGTERM): the controller moves everything away.
    /// Only this process's own registration: a new process of the same node id that
    /// registered while this one shuts down keeps its own. `false` if it was not ours.
    pub async fn leave(&self) -> Result<bool, MetaError> {
        let (mine, r) = {
            let mut r = self.registration.lock().unwrap_or_else(|p| p.into_inner());
            let mine = repo::encode(&*r);
            r.leaving = true;
            (mine, r.clone())
        };
        let Some(lease) = self.lease() else {
            return Ok(false);
        };
        let key = keys::registration_key(r.node);
        let leaving = repo::encode(&r);
        // Ours as registered, or already marked (a second leave).
        for expected in [mine, leaving] {
            let ours = Compare::Value(key.clone(), Some(expected));
            if self.put(&r, lease, Some(ours)).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Deregisters: revokes the lease, deleting the registration (and the controller key,
    /// if this broker held it).
    pub async fn deregister(&self) {
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(lease) = lease {
            if let Err(e) = self.meta.revoke_lease(lease).await {
                warn!(error = %e, "lease not revoked; it expires by itself");
            }
        }
    }

    /// Keeps the lease alive until `cancel`; registers again if it was lost.
    pub async fn keep_alive(self: Arc<Self>, cancel: CancellationToken) {
        let period = (self.ttl / 3).max(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            let result = match self.lease() {
                Some(l) => self.meta.keep_alive(l).await,
                None => Err(MetaError::LeaseNotFound(0)),
            };
            match result {
                Ok(()) => {}
                Err(MetaError::LeaseNotFound(_)) => {
                    warn!("lease lost: the controller has moved this broker's work away; registering again");
                    if let Err(e) = self.register_again().await {
                        warn!(error = %e, "registration failed; retrying");
                    }
                }
                Err(e) => warn!(error = %e, "lease keep-alive failed; retrying"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_meta::embedded::EmbeddedStore;

    fn process(meta: &Arc<dyn MetaStore>, incarnation: u64) -> Membership {
        let r = Registration {
            node: 1,
            incarnation,
            listeners: vec![],
            rack: None,
            admin: None,
            leaving: false,
        };
        Membership::new(meta.clone(), r, Duration::from_secs(10))
    }

    async fn registered(meta: &Arc<dyn MetaStore>) -> Option<Registration> {
        let key = keys::registration_key(1);
        let v = meta.get(&key).await.unwrap()?;
        Some(repo::decode(&key, &v).unwrap())
    }

    #[tokio::test]
    async fn a_process_shutting_down_leaves_the_registration_of_the_one_that_replaced_it() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetaStore> =
            Arc::new(EmbeddedStore::open(&dir.path().join("m.redb")).unwrap());
        let old = process(&meta, 1);
        old.register().await.unwrap();
        // A restart: the new process registers before the old one has finished stopping.
        let new = process(&meta, 2);
        new.register().await.unwrap();
        assert!(!old.leave().await.unwrap(), "not its registration any more");
        old.deregister().await;
        // Nor does a paused old process take it back when it finds its lease gone.
        old.register_again().await.unwrap();
        let r = registered(&meta)
            .await
            .expect("the new process stays registered");
        assert_eq!((r.incarnation, r.leaving), (2, false));

        // The new process's own shutdown marks its registration, twice over if asked.
        assert!(new.leave().await.unwrap());
        assert!(new.leave().await.unwrap());
        let r = registered(&meta).await.unwrap();
        assert_eq!((r.incarnation, r.leaving), (2, true));
        new.deregister().await;
        assert!(registered(&meta).await.is_none());
        // A process whose lease was lost with its key registers again.
        let again = process(&meta, 3);
        again.register_again().await.unwrap();
        assert_eq!(registered(&meta).await.unwrap().incarnation, 3);
        assert!(again.lease().is_some());
    }
}
