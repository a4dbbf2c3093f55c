//! Registration: a broker is a member while its registration key lives under its lease.
//! A lost lease (the store was away longer than the session timeout, or the broker was
//! paused) means the controller has moved everything away; the broker registers again and
//! gets work back with new epochs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use stratus_meta::repo::{self, Registration};
use stratus_meta::{keys, LeaseId, MetaError, MetaStore, Op};

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

    async fn put(&self, r: &Registration, lease: LeaseId) -> Result<(), MetaError> {
        self.meta
            .txn(
                vec![],
                vec![Op::Put(
                    keys::registration_key(r.node),
                    repo::encode(r),
                    Some(lease),
                )],
            )
            .await
            .map(|_| ())
    }

    /// Grants a lease and writes the registration under it.
    pub async fn register(&self) -> Result<LeaseId, MetaError> {
        let lease = self.meta.grant_lease(self.ttl).await?;
        self.put(&self.registration(), lease).await?;
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease);
        info!(node = self.registration().node, lease, "registered");
        Ok(lease)
    }

    /// Marks the registration as leaving (SIGTERM): the controller moves everything away.
    pub async fn leave(&self) -> Result<(), MetaError> {
        let r = {
            let mut r = self.registration.lock().unwrap_or_else(|p| p.into_inner());
            r.leaving = true;
            r.clone()
        };
        let Some(lease) = self.lease() else {
            return Ok(());
        };
        self.put(&r, lease).await
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
                    if let Err(e) = self.register().await {
                        warn!(error = %e, "registration failed; retrying");
                    }
                }
                Err(e) => warn!(error = %e, "lease keep-alive failed; retrying"),
            }
        }
    }
}
