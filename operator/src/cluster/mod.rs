//! The StratusCluster controller: applies the objects of [`crate::build`], observes the
//! StatefulSet, its pods and the brokers (admin API), lets [`plan::decide`] choose, acts,
//! and reports status conditions and Events.

pub mod plan;
pub mod secret;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::admin::{Admin, Target};
use crate::build::{self, Names, ADMIN_PORT};
use crate::context::{apply, Context};
use crate::crd::{set_condition, set_failed, StratusCluster, StratusClusterStatus};
use plan::{decide, Observed, Phase, PodState, Step};

/// Annotation on a StratusCluster that points the operator at an admin API other than
/// the client Service's (`http://127.0.0.1:9645` through a port-forward; tests).
pub const ADMIN_ENDPOINT_ANNOTATION: &str = "stratus.io/admin-endpoint";

/// Reconcile errors (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The admin API failed an action.
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// The admin credentials could not be made.
    #[error("making the admin certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// Runs the controller until the process ends.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let client = ctx.client.clone();
    let (clusters, sets, pods) = match &namespace {
        Some(ns) => (
            Api::<StratusCluster>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
            Api::<Pod>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let managed =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=stratus-operator");
    let broker_pods = watcher::Config::default()
        .labels("app.kubernetes.io/component=broker,app.kubernetes.io/name=stratus");
    Controller::new(clusters, watcher::Config::default())
        .owns(sets, managed)
        .watches(pods, broker_pods, |pod: Pod| {
            let cluster = pod.labels().get("app.kubernetes.io/instance").cloned();
            let ns = pod.namespace();
            cluster.map(|c| {
                let r = ObjectRef::<StratusCluster>::new(&c);
                match ns {
                    Some(ns) => r.within(&ns),
                    None => r,
                }
            })
        })
        .shutdown_on_signal()
        .run(reconcile, crate::context::error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "reconcile");
            }
        })
        .await;
}

/// One reconcile of one cluster.
pub async fn reconcile(c: Arc<StratusCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let names = Names::of(&c);
    let key = crate::context::object_key(c.as_ref());
    let result = reconcile_inner(&c, &ctx, &names).await;
    ctx.metrics
        .reconcile_time
        .get(&["StratusCluster"])
        .observe_duration(started.elapsed());
    if result.is_ok() {
        ctx.succeeded(&key);
        ctx.metrics.reconciles.get(&["StratusCluster", "ok"]).inc();
    }
    result
}

async fn reconcile_inner(
    c: &StratusCluster,
    ctx: &Context,
    names: &Names,
) -> Result<Action, Error> {
    let client = &ctx.client;
    let generation = c.metadata.generation;
    let mut status = c.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.selector = Some(names.selector_string());
    status.bootstrap = Some(build::bootstrap(c));

    let props = match build::broker_properties(c) {
        Ok(p) => p,
        Err(msg) => {
            set_failed(&mut status.conditions, "InvalidSpec", &msg, generation);
            ctx.event(c, true, "InvalidSpec", msg).await;
            write_status(c, ctx, &status).await?;
            return Ok(Action::await_change());
        }
    };
    let hash = build::config_hash(&props);
    status.config_hash = Some(hash.clone());

    apply(client, &build::service_account(c)).await?;
    apply(client, &build::config_map(c, &props)).await?;
    apply(client, &build::headless_service(c)).await?;
    apply(client, &build::client_service(c)).await?;
    apply(client, &build::pod_disruption_budget(c)).await?;
    sync_autoscaler(c, ctx, names).await?;
    let admin_secret = ensure_admin_secret(c, ctx, names).await?;

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &names.namespace);
    let set = sets.get_opt(&names.brokers()).await?;
    let pods = observe_pods(ctx, names).await?;
    let target = admin_target(c, names, &admin_secret);
    let admin = (ctx.connect)(&target)?;
    let view = match tokio::time::timeout(Duration::from_secs(10), admin.status()).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::info!(cluster = %names.cluster, error = %e, "admin API");
            None
        }
        Err(_) => None,
    };
    let observed = Observed {
        desired: c.spec.brokers,
        replicas: set.as_ref().and_then(|s| s.spec.replicas),
        update_revision: set
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.update_revision.clone()),
        pods: pods.clone(),
        view,
        auto_rebalance: c.spec.auto_rebalance.unwrap_or(true),
        restarting: status
            .restarting
            .as_ref()
            .map(|r| (r.broker, r.incarnation as u64)),
    };
    let decision = decide(&observed);
    let replicas = decision
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Replicas(n) => Some(*n),
            _ => None,
        })
        .or(observed.replicas)
        .unwrap_or(c.spec.brokers);
    // Always applied: a new revision of the pod template shows up in update_revision,
    // and the roll below picks it up.
    apply(
        client,
        &build::stateful_set(c, &ctx.settings.image, replicas, &hash),
    )
    .await?;

    status.brokers = pods.iter().filter(|p| !p.terminating).count() as i32;
    status.ready_brokers = pods.iter().filter(|p| p.ready && !p.terminating).count() as i32;
    status.draining = decision.draining.clone();
    status.restarting = decision
        .restarting
        .map(|(broker, incarnation)| crate::crd::Restarting {
            broker,
            incarnation: incarnation as i64,
        });
    let ready = decision.phase == Phase::Ready;
    set_condition(
        &mut status.conditions,
        "Ready",
        ready,
        decision.phase.reason(),
        &decision.message,
        generation,
    );
    set_condition(
        &mut status.conditions,
        "Reconciling",
        !ready,
        decision.phase.reason(),
        &decision.message,
        generation,
    );
    let degraded = decision.phase == Phase::AdminUnreachable;
    set_condition(
        &mut status.conditions,
        "Degraded",
        degraded,
        if degraded {
            "AdminUnreachable"
        } else {
            "AsExpected"
        },
        if degraded {
            decision.message.as_str()
        } else {
            ""
        },
        generation,
    );
    // Status first: it records what the steps start (the broker a roll restarts), so that
    // an operator restarted right after them knows.
    write_status(c, ctx, &status).await?;
    for step in &decision.steps {
        act(c, ctx, names, &admin, step, observed.replicas).await?;
    }
    for phase in [
        "Creating",
        "Starting",
        "ScalingUp",
        "Draining",
        "ScalingDown",
        "Rolling",
        "Balancing",
        "AdminUnreachable",
        "Ready",
    ] {
        let v = if phase == decision.phase.reason() {
            1.0
        } else {
            0.0
        };
        ctx.metrics
            .phase
            .get(&[&names.namespace, &names.cluster, phase])
            .set(v);
    }
    Ok(if ready {
        Action::requeue(ctx.settings.resync)
    } else {
        Action::requeue(Duration::from_secs(3))
    })
}

async fn act(
    c: &StratusCluster,
    ctx: &Context,
    names: &Names,
    admin: &Arc<dyn Admin>,
    step: &Step,
    current: Option<i32>,
) -> Result<(), Error> {
    let count = |action: &str| ctx.metrics.actions.get(&["StratusCluster", action]).inc();
    match step {
        Step::Replicas(n) => {
            count("scale");
            let (reason, note) = match current {
                None => (
                    "Created",
                    format!("created the brokers' StatefulSet with {n} brokers"),
                ),
                Some(old) if *n > old => ("ScaledUp", format!("brokers {old} → {n}")),
                Some(old) => (
                    "ScaledDown",
                    format!("brokers {old} → {n}: the removed brokers owned nothing"),
                ),
            };
            ctx.event(c, false, reason, note).await;
        }
        Step::Drain(id) => {
            count("drain");
            admin.drain(*id).await?;
            ctx.event(
                c,
                false,
                "Draining",
                format!("draining broker {id} before its pod goes"),
            )
            .await;
        }
        Step::Undrain(id) => {
            count("undrain");
            admin.undrain(*id).await?;
            ctx.event(
                c,
                false,
                "Undrained",
                format!("broker {id} takes partitions again"),
            )
            .await;
        }
        Step::Rebalance => {
            count("rebalance");
            let (p, s) = admin.rebalance().await?;
            if p + s > 0 {
                ctx.event(
                    c,
                    false,
                    "Rebalanced",
                    format!("moved {p} partitions and {s} coordinator shards"),
                )
                .await;
            }
        }
        Step::Restart(ordinal) => {
            count("restart");
            // Recorded before the pod goes, so that a restart is never unexplained.
            ctx.event(
                c,
                false,
                "Restarting",
                format!("restarting broker {ordinal} onto the new revision"),
            )
            .await;
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
            pods.delete(&names.pod(*ordinal), &DeleteParams::default())
                .await?;
        }
    }
    Ok(())
}

async fn observe_pods(ctx: &Context, names: &Names) -> Result<Vec<PodState>, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let selector = names.selector_string();
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    let prefix = format!("{}-", names.brokers());
    let mut out: Vec<PodState> = list
        .items
        .iter()
        .filter_map(|p| {
            let ordinal = p.name_any().strip_prefix(&prefix)?.parse().ok()?;
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            Some(PodState {
                ordinal,
                revision: p.labels().get("controller-revision-hash").cloned(),
                ready,
                terminating: p.metadata.deletion_timestamp.is_some(),
            })
        })
        .collect();
    out.sort_by_key(|p| p.ordinal);
    Ok(out)
}

async fn ensure_admin_secret(
    c: &StratusCluster,
    ctx: &Context,
    names: &Names,
) -> Result<Secret, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    if let Some(s) = api.get_opt(&names.admin_secret()).await? {
        if secret::complete(&s) {
            return Ok(s);
        }
    }
    let s = secret::admin_secret(c)?;
    let made = apply(&ctx.client, &s).await?;
    ctx.event(
        c,
        false,
        "AdminCredentials",
        "made the admin API's CA, certificate and token".into(),
    )
    .await;
    Ok(made)
}

/// Applies the HPA the cluster asks for, or deletes the one it no longer asks for.
async fn sync_autoscaler(c: &StratusCluster, ctx: &Context, names: &Names) -> Result<(), Error> {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    match build::autoscaler(c) {
        Some(h) => {
            apply(&ctx.client, &h).await?;
        }
        None => {
            let api: Api<HorizontalPodAutoscaler> =
                Api::namespaced(ctx.client.clone(), &names.namespace);
            let ours = api.get_opt(&names.cluster).await?.is_some_and(|h| {
                h.metadata
                    .owner_references
                    .unwrap_or_default()
                    .iter()
                    .any(|o| Some(&o.uid) == c.metadata.uid.as_ref())
            });
            if ours {
                api.delete(&names.cluster, &DeleteParams::default()).await?;
            }
        }
    }
    Ok(())
}

/// A client of `c`'s admin API, with the credentials of its admin Secret.
pub async fn admin_of(ctx: &Context, c: &StratusCluster) -> Result<Arc<dyn Admin>, Error> {
    let names = Names::of(c);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let s = api
        .get_opt(&names.admin_secret())
        .await?
        .unwrap_or_default();
    Ok((ctx.connect)(&admin_target(c, &names, &s))?)
}

fn admin_target(c: &StratusCluster, names: &Names, s: &Secret) -> Target {
    let data = s.data.clone().unwrap_or_default();
    let text = |k: &str| data.get(k).map(|v| v.0.clone());
    let token = text("token").and_then(|t| String::from_utf8(t).ok());
    if let Some(url) = c.annotations().get(ADMIN_ENDPOINT_ANNOTATION) {
        let https = url.starts_with("https://");
        return Target {
            url: url.clone(),
            ca_pem: if https { text("ca.crt") } else { None },
            server_name: https.then(|| names.admin_host()),
            token: if https { token } else { None },
        };
    }
    Target {
        url: format!("https://{}:{ADMIN_PORT}", names.admin_host()),
        ca_pem: text("ca.crt"),
        server_name: Some(names.admin_host()),
        token,
    }
}

async fn write_status(
    c: &StratusCluster,
    ctx: &Context,
    status: &StratusClusterStatus,
) -> Result<(), Error> {
    if c.status.as_ref() != Some(status) {
        crate::context::patch_status(&ctx.client, c, status).await?;
    }
    Ok(())
}
