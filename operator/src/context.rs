//! What every reconciler shares: the API client, the event recorder, metrics, and the
//! operator's settings; plus server-side apply with the operator's field manager.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::metrics::Metrics;

/// The field manager of every object the operator applies.
pub const MANAGER: &str = "stratus-operator";

/// The operator's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Broker image for clusters that name none.
    pub image: String,
    /// Seconds between checks of a cluster with nothing in progress.
    pub resync: Duration,
}

/// Shared by reconciles.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Events.
    pub recorder: Recorder,
    /// Settings.
    pub settings: Settings,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Makes admin API clients (gRPC; a fake in unit tests).
    pub connect: Arc<crate::admin::Connect>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context reporting events as `stratus-operator` from `instance` (the pod name).
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        instance: String,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(instance),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            connect: Arc::new(crate::admin::connect_grpc),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records an Event on `obj` (failures to record are logged, never fatal).
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not record an event");
        }
    }

    /// The delay before retrying `key` after its `n`th failure in a row: 1 s doubling to 5
    /// minutes.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300))
    }

    /// Forgets `key`'s failures after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// `Kind/namespace/name`: the key of an object's failure count.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Every controller's error policy: log, count, retry with [`Context::backoff`].
pub fn error_policy<K, E>(
    obj: Arc<K>,
    e: &E,
    ctx: Arc<Context>,
) -> kube::runtime::controller::Action
where
    K: Resource<DynamicType = ()>,
    E: std::fmt::Display,
{
    let key = object_key(obj.as_ref());
    let delay = ctx.backoff(&key);
    tracing::warn!(object = %key, error = %e, retry_in = ?delay, "reconcile failed");
    ctx.metrics.reconciles.get(&[&K::kind(&()), "error"]).inc();
    kube::runtime::controller::Action::requeue(delay)
}

/// Writes `status` to `obj`'s status subresource (a merge patch).
pub async fn patch_status<K>(
    client: &Client,
    obj: &K,
    status: &impl Serialize,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Applies `obj` (server-side apply, forced: the operator owns these fields).
pub async fn apply<K>(client: &Client, obj: &K) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let ns = obj.namespace().unwrap_or_else(|| "default".into());
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let mut value = serde_json::to_value(obj).map_err(kube::Error::SerdeError)?;
    // Server-side apply needs the type in the body.
    value["apiVersion"] = K::api_version(&()).into();
    value["kind"] = K::kind(&()).into();
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(value),
    )
    .await
}
