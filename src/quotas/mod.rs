//! Client quotas, as Kafka enforces them: bytes produced and fetched per second, and the
//! share of request-handling time, per user and client id (with defaults), set with
//! AlterClientQuotas and kept in the metadata store (`quotas/…`) so every broker applies
//! the same table. As in Kafka, each broker measures and enforces them on its own.
//!
//! A request over its quota is still answered, with `throttle_time_ms` set; the
//! connection then reads nothing more from the client until that time has passed (Kafka
//! mutes the channel), and clients too old to throttle themselves (KIP-219) get the
//! response only after it. A throttled Fetch is answered with no data, so the bytes it
//! would have carried are not counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use stratus_meta::repo::{self, QuotaRecord};
use stratus_meta::{keys, MetaError, MetaStore, Op};
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub mod entity;
mod rate;
pub mod response;

pub use entity::{Entity, QuotaType, Table};
use rate::Rate;

/// The quotas of a broker: the table every broker shares, and this broker's measure of
/// each client's usage.
pub struct Quotas {
    meta: Arc<dyn MetaStore>,
    table: RwLock<Arc<Table>>,
    /// Whether the table has any quota (read on every request).
    any: AtomicBool,
    /// Usage per (type, user tag, client-id tag).
    rates: Mutex<HashMap<(QuotaType, String, String), Rate>>,
    samples: usize,
    window_ms: i64,
    epoch: Instant,
    /// Throttle time given, per quota and entity.
    throttled: stratus_metrics::Family<stratus_metrics::Counter>,
}

impl Quotas {
    /// Over `meta`, measuring over `samples` windows of `window_ms`
    /// (`quota.window.num`, `quota.window.size.seconds`); empty until refreshed.
    pub fn new(meta: Arc<dyn MetaStore>, samples: usize, window_ms: u64) -> Self {
        Quotas {
            meta,
            table: RwLock::new(Arc::new(Table::new())),
            any: AtomicBool::new(false),
            rates: Mutex::new(HashMap::new()),
            samples: samples.max(2),
            window_ms: window_ms.max(1) as i64,
            epoch: Instant::now(),
            throttled: stratus_metrics::Family::new(
                "stratus_quota_throttle_time_ms_total",
                "Throttle time given to clients over a quota, by quota and by the entity it is set on (user and client_id as the quota names them; empty: not part of it).",
                &["quota", "user", "client_id"],
                stratus_metrics::Counter::default,
            ),
        }
    }

    /// The table, as last read.
    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether any quota is set: when none is, requests are not measured at all.
    pub fn enabled(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    /// Records `value` of `ty` for a client; returns how long (ms) it must be throttled.
    pub fn record(&self, ty: QuotaType, user: &str, client_id: &str, value: f64) -> u64 {
        let table = self.table();
        let Some(applied) = entity::resolve(&table, ty, user, client_id) else {
            return 0;
        };
        let now = self.now_ms();
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let key = (ty, applied.user, applied.client_id);
        if !rates.contains_key(&key) {
            rates.insert(key.clone(), Rate::new(self.samples, self.window_ms));
        }
        let Some(rate) = rates.get_mut(&key) else {
            return 0;
        };
        rate.record(value, now);
        let observed = rate.measure(now);
        let throttle = rate::throttle_ms(observed, applied.bound, rate.window_size_ms(now));
        drop(rates);
        let (_, user, client_id) = &key;
        if throttle > 0 {
            self.throttled
                .get(&[ty.key(), user, client_id])
                .add(throttle);
            tracing::debug!(
                ?ty,
                user,
                client_id,
                observed,
                bound = applied.bound,
                throttle,
                "over quota"
            );
        }
        match ty {
            // Kafka bounds the request-time throttle by one window.
            QuotaType::Request => throttle.min(self.window_ms as u64),
            QuotaType::Produce | QuotaType::Fetch => throttle,
        }
    }

    /// Takes back a value recorded for a client (the bytes of a Fetch answered empty).
    pub fn unrecord(&self, ty: QuotaType, user: &str, client_id: &str, value: f64) {
        let table = self.table();
        let Some(applied) = entity::resolve(&table, ty, user, client_id) else {
            return;
        };
        let now = self.now_ms();
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rate) = rates.get_mut(&(ty, applied.user, applied.client_id)) {
            rate.record(-value, now);
        }
    }

    /// The most bytes one Fetch may carry for a client without being throttled for it
    /// alone, as Kafka bounds it: the quota over all but one window.
    pub fn fetch_bytes_bound(&self, user: &str, client_id: &str) -> Option<usize> {
        let applied = entity::resolve(&self.table(), QuotaType::Fetch, user, client_id)?;
        let windows = (self.samples - 1) as f64 * self.window_ms as f64 / 1000.0;
        Some((applied.bound * windows).min(i32::MAX as f64) as usize)
    }

    /// Forgets the usage of clients idle for the whole window: their rate is zero, so
    /// nothing is lost, and the map stays as small as the set of active clients.
    fn forget_idle(&self) {
        let now = self.now_ms();
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        rates.retain(|_, r| !r.idle(now));
    }

    /// Re-reads the table from the store.
    pub async fn refresh(&self) -> Result<(), MetaError> {
        let mut table = Table::new();
        for (k, v) in self.meta.range(keys::QUOTAS).await? {
            let r: QuotaRecord = repo::decode(&k, &v)?;
            let entity = Entity {
                user: r.user,
                client_id: r.client_id,
            };
            if !r.values.is_empty() {
                table.insert(entity, r.values);
            }
        }
        self.any.store(!table.is_empty(), Ordering::Relaxed);
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        Ok(())
    }

    /// Follows the store's table until `cancel` (a change made on any broker applies here
    /// within a second), and forgets idle clients.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let mut events = self.meta.watch(keys::QUOTAS);
            if let Err(e) = self.refresh().await {
                warn!(error = %e, "client quotas not read; retrying");
            }
            self.forget_idle();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = stratus_meta::next_event(&mut events, Duration::from_secs(5)) => {}
            }
        }
    }

    /// Applies AlterClientQuotas changes (key to a new value, or `None` to remove it) to
    /// the entities, in one transaction per batch of entities.
    pub async fn alter(&self, changes: &[(Entity, entity::Ops)]) -> Result<(), MetaError> {
        let mut ops = Vec::new();
        for (entity, ops_of_entity) in changes {
            let key = key_of(entity);
            let mut values = repo::load::<QuotaRecord>(self.meta.as_ref(), &key)
                .await?
                .map(|(r, _)| r.values)
                .unwrap_or_default();
            for (k, v) in ops_of_entity {
                match v {
                    Some(v) => values.insert(k.clone(), *v),
                    None => values.remove(k),
                };
            }
            ops.push(if values.is_empty() {
                Op::Delete(key)
            } else {
                let record = QuotaRecord {
                    user: entity.user.clone(),
                    client_id: entity.client_id.clone(),
                    values,
                };
                Op::Put(key, repo::encode(&record), None)
            });
        }
        for chunk in ops.chunks(stratus_meta::MAX_TXN_OPS) {
            self.meta.txn(vec![], chunk.to_vec()).await?;
        }
        self.refresh().await
    }
}

fn key_of(e: &Entity) -> String {
    fn part(p: &Option<entity::QuotaName>) -> Option<Option<&str>> {
        p.as_ref().map(|n| match n {
            entity::QuotaName::Default => None,
            entity::QuotaName::Name(s) => Some(s.as_str()),
        })
    }
    keys::quota_key(part(&e.user), part(&e.client_id))
}

/// A connection's throttle: until when it reads nothing more from its client.
#[derive(Debug, Default)]
pub struct Throttle {
    until: Mutex<Option<Instant>>,
}

impl Throttle {
    /// Mutes the connection for `ms` from now (a longer mute already set stays).
    pub fn mute(&self, ms: u64) {
        let until = Instant::now() + Duration::from_millis(ms);
        let mut u = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if u.is_none_or(|x| x < until) {
            *u = Some(until);
        }
    }

    /// Until when the connection is muted, if it is.
    pub fn muted_until(&self) -> Option<Instant> {
        let u = *self.until.lock().unwrap_or_else(|p| p.into_inner());
        u.filter(|t| *t > Instant::now())
    }
}

impl stratus_metrics::Collect for Quotas {
    fn collect(&self, out: &mut Vec<stratus_metrics::FamilySnapshot>) {
        self.throttled.collect(out);
    }
}
