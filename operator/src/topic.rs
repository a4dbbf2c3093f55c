//! The StratusTopic controller: keeps a Kafka topic as its resource says (created,
//! partitions added, configs put back when changed with Kafka tools), reports it in
//! status, and deletes the topic with its resource unless the cluster keeps topics.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::admin::AdminError;
use crate::cluster::{admin_of, Error};
use crate::context::{patch_status, Context};
use crate::crd::{
    set_condition, set_failed, StratusCluster, StratusTopic, StratusTopicStatus, TopicDeletion,
};

/// The finalizer that deletes the Kafka topic before its resource goes.
pub const FINALIZER: &str = "stratus.io/topic";

/// Runs the controller until the process ends.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let api: Api<StratusTopic> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    Controller::new(api, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, crate::context::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// One reconcile of one topic (public for the operator's tests).
pub async fn reconcile(
    t: Arc<StratusTopic>,
    ctx: Arc<Context>,
) -> Result<Action, kube::runtime::finalizer::Error<Error>> {
    let ns = t.namespace().unwrap_or_else(|| "default".into());
    let api: Api<StratusTopic> = Api::namespaced(ctx.client.clone(), &ns);
    let key = crate::context::object_key(t.as_ref());
    let result = finalizer(&api, FINALIZER, t, |event| async {
        match event {
            Finalizer::Apply(t) => apply(&t, &ctx).await,
            Finalizer::Cleanup(t) => cleanup(&t, &ctx).await,
        }
    })
    .await;
    if result.is_ok() {
        ctx.succeeded(&key);
        ctx.metrics.reconciles.get(&["StratusTopic", "ok"]).inc();
    }
    result
}

async fn cluster_of(t: &StratusTopic, ctx: &Context) -> Result<Option<StratusCluster>, Error> {
    let ns = t.namespace().unwrap_or_else(|| "default".into());
    let api: Api<StratusCluster> = Api::namespaced(ctx.client.clone(), &ns);
    Ok(api.get_opt(&t.spec.cluster).await?)
}

async fn apply(t: &StratusTopic, ctx: &Context) -> Result<Action, Error> {
    let generation = t.metadata.generation;
    let mut status = t.status.clone().unwrap_or_default();
    let name = t.topic_name();
    status.topic_name = Some(name.clone());
    let Some(cluster) = cluster_of(t, ctx).await? else {
        let msg = format!("no StratusCluster '{}' in this namespace", t.spec.cluster);
        set_condition(
            &mut status.conditions,
            "Ready",
            false,
            "ClusterNotFound",
            &msg,
            generation,
        );
        write_status(t, ctx, &status).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    let admin = admin_of(ctx, &cluster).await?;
    let synced_before = status.observed_generation == generation
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
    let state = admin
        .ensure_topic(
            &name,
            t.spec.partitions,
            t.spec.replication_factor.unwrap_or(0),
            &t.spec.config,
        )
        .await;
    status.observed_generation = generation;
    let state = match state {
        Ok(s) => s,
        Err(e) => return refused_or_retry(t, ctx, status, e).await,
    };
    if state.created {
        ctx.event(
            t,
            false,
            "Created",
            format!("created topic {name} with {} partitions", state.partitions),
        )
        .await;
    }
    if state.added_partitions > 0 {
        ctx.event(
            t,
            false,
            "PartitionsAdded",
            format!("{} partitions added", state.added_partitions),
        )
        .await;
    }
    // Changed while the spec stood still: someone used Kafka tools; it is put back.
    status.drift = if synced_before && !state.changed_configs.is_empty() {
        ctx.event(
            t,
            true,
            "DriftReverted",
            format!(
                "configs changed outside this resource were put back: {}",
                state.changed_configs.join(", ")
            ),
        )
        .await;
        state.changed_configs.clone()
    } else {
        Vec::new()
    };
    status.topic_id = Some(state.id);
    status.partitions = Some(state.partitions);
    set_condition(
        &mut status.conditions,
        "Ready",
        true,
        "Synced",
        "",
        generation,
    );
    set_condition(
        &mut status.conditions,
        "Degraded",
        false,
        "AsExpected",
        "",
        generation,
    );
    write_status(t, ctx, &status).await?;
    Ok(Action::requeue(ctx.settings.resync))
}

/// A request the broker refuses is reported and not retried until the spec changes (or
/// the next resync); anything else is retried with backoff.
async fn refused_or_retry(
    t: &StratusTopic,
    ctx: &Context,
    mut status: StratusTopicStatus,
    e: AdminError,
) -> Result<Action, Error> {
    let Some(msg) = e.refused().map(str::to_string) else {
        return Err(e.into());
    };
    let generation = t.metadata.generation;
    set_failed(&mut status.conditions, "Refused", &msg, generation);
    ctx.event(t, true, "Refused", msg).await;
    write_status(t, ctx, &status).await?;
    Ok(Action::requeue(ctx.settings.resync))
}

async fn cleanup(t: &StratusTopic, ctx: &Context) -> Result<Action, Error> {
    let name = t.topic_name();
    let Some(cluster) = cluster_of(t, ctx).await? else {
        return Ok(Action::await_change());
    };
    // A cluster with no brokers, or going away, has no topic to delete (its data stays in
    // the bucket either way).
    if cluster.spec.brokers == 0 || cluster.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if cluster.spec.topic_deletion.unwrap_or_default() == TopicDeletion::Keep {
        ctx.event(
            t,
            false,
            "Kept",
            format!("topic {name} kept: the cluster keeps topics"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let admin = admin_of(ctx, &cluster).await?;
    if admin.delete_topic(&name).await? {
        ctx.event(t, false, "Deleted", format!("deleted topic {name}"))
            .await;
    }
    Ok(Action::await_change())
}

async fn write_status(
    t: &StratusTopic,
    ctx: &Context,
    status: &StratusTopicStatus,
) -> Result<(), Error> {
    if t.status.as_ref() != Some(status) {
        patch_status(&ctx.client, t, status).await?;
    }
    Ok(())
}
