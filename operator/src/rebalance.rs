//! The StratusRebalance controller: computes a proposal from the admin API (what a
//! rebalance would move), waits for approval (the `stratus.io/rebalance=approve`
//! annotation, or `spec.autoApprove`), then rebalances. `stratus.io/rebalance=refresh`
//! computes a new proposal. Moves change ownership only: they take seconds.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::cluster::{admin_of, Error};
use crate::context::{patch_status, Context};
use crate::crd::{
    set_condition, Proposal, StratusCluster, StratusRebalance, StratusRebalanceStatus,
    REBALANCE_ANNOTATION,
};

/// Runs the controller until the process ends.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let api: Api<StratusRebalance> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    Controller::new(api, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, crate::context::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// What to do with a rebalance in `state` given its annotation and auto-approval.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Compute a (new) proposal.
    Propose,
    /// Run it.
    Execute,
    /// Nothing until something changes.
    Wait,
}

/// Decides.
pub fn next(state: Option<&str>, annotation: Option<&str>, auto_approve: bool) -> Next {
    match (state, annotation) {
        (_, Some("refresh")) | (None, _) | (Some("NotReady"), _) => Next::Propose,
        (Some("ProposalReady"), Some("approve")) => Next::Execute,
        (Some("ProposalReady"), _) if auto_approve => Next::Execute,
        // An operator restarted during the moves finishes them (a rebalance is idempotent).
        (Some("Rebalancing"), _) => Next::Execute,
        _ => Next::Wait,
    }
}

async fn reconcile(r: Arc<StratusRebalance>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = r.namespace().unwrap_or_else(|| "default".into());
    let key = crate::context::object_key(r.as_ref());
    let generation = r.metadata.generation;
    let mut status = r.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    let clusters: Api<StratusCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(cluster) = clusters.get_opt(&r.spec.cluster).await? else {
        let msg = format!("no StratusCluster '{}' in this namespace", r.spec.cluster);
        status.state = Some("NotReady".into());
        set_condition(
            &mut status.conditions,
            "Ready",
            false,
            "ClusterNotFound",
            &msg,
            generation,
        );
        write(&r, &ctx, &status).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    let annotation = r.annotations().get(REBALANCE_ANNOTATION).cloned();
    let step = next(
        status.state.as_deref(),
        annotation.as_deref(),
        r.spec.auto_approve.unwrap_or(false),
    );
    if step == Next::Wait {
        return Ok(Action::await_change());
    }
    let admin = admin_of(&ctx, &cluster).await?;
    match step {
        Next::Propose => {
            let (partitions, shards, load) = admin.propose().await?;
            status.proposal = Some(Proposal {
                partition_moves: partitions as i32,
                shard_moves: shards as i32,
                before: load.iter().map(|(n, b, _)| format!("{n}={b}")).collect(),
                after: load.iter().map(|(n, _, a)| format!("{n}={a}")).collect(),
            });
            status.state = Some("ProposalReady".into());
            let msg = format!(
                "{partitions} partitions and {shards} coordinator shards would move; approve with \
                 kubectl annotate stratusrebalance {} {REBALANCE_ANNOTATION}=approve",
                r.name_any()
            );
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                "ProposalReady",
                &msg,
                generation,
            );
            ctx.event(r.as_ref(), false, "ProposalReady", msg).await;
        }
        Next::Execute => {
            status.state = Some("Rebalancing".into());
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                "Rebalancing",
                "",
                generation,
            );
            write(&r, &ctx, &status).await?;
            // The approval is recorded (Rebalancing) before it is used up, so that an
            // operator restarted in between still runs it.
            clear_annotation(&r, &ctx, annotation.is_some()).await?;
            let (partitions, shards) = admin.rebalance().await?;
            status.state = Some("Ready".into());
            let msg = format!("moved {partitions} partitions and {shards} coordinator shards");
            set_condition(
                &mut status.conditions,
                "Ready",
                true,
                "Rebalanced",
                &msg,
                generation,
            );
            ctx.event(r.as_ref(), false, "Rebalanced", msg).await;
        }
        Next::Wait => {}
    }
    write(&r, &ctx, &status).await?;
    if step == Next::Propose {
        clear_annotation(&r, &ctx, annotation.is_some()).await?;
    }
    ctx.succeeded(&key);
    ctx.metrics
        .reconciles
        .get(&["StratusRebalance", "ok"])
        .inc();
    Ok(Action::await_change())
}

/// Acted on: the annotation goes, so that it is not acted on twice.
async fn clear_annotation(r: &StratusRebalance, ctx: &Context, present: bool) -> Result<(), Error> {
    if !present {
        return Ok(());
    }
    let api: Api<StratusRebalance> =
        Api::namespaced(ctx.client.clone(), &r.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"annotations": {REBALANCE_ANNOTATION: null}}});
    api.patch(
        &r.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn write(
    r: &StratusRebalance,
    ctx: &Context,
    status: &StratusRebalanceStatus,
) -> Result<(), Error> {
    if r.status.as_ref() != Some(status) {
        patch_status(&ctx.client, r, status).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_wait_for_approval_and_run_once() {
        assert_eq!(next(None, None, false), Next::Propose);
        assert_eq!(next(Some("ProposalReady"), None, false), Next::Wait);
        assert_eq!(
            next(Some("ProposalReady"), Some("approve"), false),
            Next::Execute
        );
        assert_eq!(next(Some("ProposalReady"), None, true), Next::Execute);
        assert_eq!(next(Some("Rebalancing"), None, false), Next::Execute);
        assert_eq!(next(Some("Ready"), None, true), Next::Wait);
        assert_eq!(next(Some("Ready"), Some("approve"), false), Next::Wait);
        assert_eq!(next(Some("Ready"), Some("refresh"), false), Next::Propose);
        assert_eq!(next(Some("NotReady"), None, false), Next::Propose);
    }
}
