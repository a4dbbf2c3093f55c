//! Authorization: the ACL bindings in the metadata store (`acls/<id>`), kept in memory and
//! re-read when any broker changes them (a watch, and a full read every few seconds), and
//! the decision for a request (`authorizer.class.name` switches it on; `super.users`,
//! `allow.everyone.if.no.acl.found`).

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use stratus_auth::acl::{Binding, Filter, Policy, Requester};
use stratus_meta::repo::{self, AclRecord};
use stratus_meta::{keys, MetaError, MetaStore, Op};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Principal;

/// The authorizer of a broker.
pub struct Authorizer {
    enabled: bool,
    policy: Policy,
    meta: Arc<dyn MetaStore>,
    bindings: RwLock<Arc<Vec<Binding>>>,
}

impl Authorizer {
    /// From the settings, over `meta`; it holds no binding until [`Authorizer::refresh`].
    pub fn new(settings: &crate::config::SecurityConfig, meta: Arc<dyn MetaStore>) -> Self {
        Authorizer {
            enabled: !settings.authorizer_class_name.trim().is_empty(),
            policy: Policy::new(
                &settings.super_users,
                settings.allow_everyone_if_no_acl_found,
            ),
            meta,
            bindings: RwLock::new(Arc::new(Vec::new())),
        }
    }

    /// Whether requests are checked at all (`authorizer.class.name` is set).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Every binding, as last read.
    pub fn bindings(&self) -> Arc<Vec<Binding>> {
        self.bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether `principal` at `host` may do `operation` on the resource.
    pub fn allowed(
        &self,
        principal: &Principal,
        host: IpAddr,
        operation: i8,
        resource_type: i8,
        name: &str,
    ) -> bool {
        self.decide(principal, host, |policy, bindings, who| {
            policy.authorize(bindings, who, operation, resource_type, name)
        })
    }

    /// Whether `principal` may do `operation` on some resource of `resource_type`.
    pub fn allowed_any(
        &self,
        principal: &Principal,
        host: IpAddr,
        operation: i8,
        resource_type: i8,
    ) -> bool {
        self.decide(principal, host, |policy, bindings, who| {
            policy.authorize_any(bindings, who, operation, resource_type)
        })
    }

    /// Everything is allowed with authorization off; otherwise `decision` says.
    fn decide(
        &self,
        principal: &Principal,
        host: IpAddr,
        decision: impl FnOnce(&Policy, &[Binding], &Requester<'_>) -> bool,
    ) -> bool {
        if !self.enabled {
            return true;
        }
        let (p, h) = (principal.to_string(), host.to_string());
        let who = Requester {
            principal: &p,
            host: &h,
        };
        decision(&self.policy, &self.bindings(), &who)
    }

    /// Re-reads every binding from the store.
    pub async fn refresh(&self) -> Result<(), MetaError> {
        let mut out = Vec::new();
        for (k, v) in self.meta.range(keys::ACLS).await? {
            out.push(from_record(repo::decode(&k, &v)?));
        }
        out.sort();
        *self.bindings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(out);
        Ok(())
    }

    /// Follows the store's bindings until `cancel`: a change made on any broker is applied
    /// here within a second.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let mut events = self.meta.watch(keys::ACLS);
            if let Err(e) = self.refresh().await {
                warn!(error = %e, "ACLs not read; retrying");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = stratus_meta::next_event(&mut events, Duration::from_secs(5)) => {}
            }
        }
    }

    /// Stores bindings (one that exists already stays as it is).
    pub async fn create(&self, bindings: &[Binding]) -> Result<(), MetaError> {
        let ops: Vec<Op> = bindings
            .iter()
            .map(|b| Op::Put(keys::acl_key(&b.id()), repo::encode(&to_record(b)), None))
            .collect();
        for chunk in ops.chunks(stratus_meta::MAX_TXN_OPS) {
            self.meta.txn(vec![], chunk.to_vec()).await?;
        }
        self.refresh().await
    }

    /// Deletes the bindings each filter matches (read from the store first); returns them,
    /// per filter.
    pub async fn delete(&self, filters: &[Filter]) -> Result<Vec<Vec<Binding>>, MetaError> {
        self.refresh().await?;
        let all = self.bindings();
        let matched: Vec<Vec<Binding>> = filters
            .iter()
            .map(|f| all.iter().filter(|b| f.matches(b)).cloned().collect())
            .collect();
        let mut ids: Vec<String> = matched.iter().flatten().map(Binding::id).collect();
        ids.sort();
        ids.dedup();
        let ops: Vec<Op> = ids.iter().map(|id| Op::Delete(keys::acl_key(id))).collect();
        for chunk in ops.chunks(stratus_meta::MAX_TXN_OPS) {
            self.meta.txn(vec![], chunk.to_vec()).await?;
        }
        self.refresh().await?;
        Ok(matched)
    }
}

/// A binding as the store keeps it.
fn to_record(b: &Binding) -> AclRecord {
    AclRecord {
        resource_type: b.resource_type,
        name: b.name.clone(),
        pattern_type: b.pattern_type,
        principal: b.principal.clone(),
        host: b.host.clone(),
        operation: b.operation,
        permission: b.permission,
    }
}

/// A stored binding.
fn from_record(r: AclRecord) -> Binding {
    Binding {
        resource_type: r.resource_type,
        name: r.name,
        pattern_type: r.pattern_type,
        principal: r.principal,
        host: r.host,
        operation: r.operation,
        permission: r.permission,
    }
}
