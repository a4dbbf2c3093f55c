//! The StratusUser controller: SCRAM credentials from a Secret's password and exactly the
//! ACLs the resource lists, for `User:<name>`; removed with the resource.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::admin::{AclSpec, Scram};
use crate::cluster::{admin_of, Error};
use crate::context::{patch_status, Context};
use crate::crd::{set_condition, StratusCluster, StratusUser, StratusUserStatus};

/// The finalizer that removes the user's credentials and ACLs before its resource goes.
pub const FINALIZER: &str = "stratus.io/user";

type FinalizerError = kube::runtime::finalizer::Error<Error>;

/// Runs the controller until the process ends. A change of a password Secret reconciles
/// the users that name it at once.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let (api, secrets): (Api<StratusUser>, Api<PartialObjectMeta<Secret>>) = match &namespace {
        Some(ns) => (
            Api::namespaced(ctx.client.clone(), ns),
            Api::namespaced(ctx.client.clone(), ns),
        ),
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    let controller = Controller::new(api, watcher::Config::default());
    let users = controller.store();
    // Metadata only (PartialObjectMeta): a change bumps the Secret's resourceVersion; its
    // data is not needed here and is not streamed for every Secret of the cluster.
    controller
        .watches(secrets, watcher::Config::default(), move |secret| {
            let (name, ns) = (secret.name_any(), secret.namespace());
            users
                .state()
                .into_iter()
                .filter(|u| {
                    u.namespace() == ns
                        && u.spec
                            .scram
                            .as_ref()
                            .is_some_and(|s| s.password_secret.name == name)
                })
                .map(|u| ObjectRef::from_obj(u.as_ref()))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, crate::context::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// One reconcile of one user (public for the operator's tests).
pub async fn reconcile(u: Arc<StratusUser>, ctx: Arc<Context>) -> Result<Action, FinalizerError> {
    let ns = u.namespace().unwrap_or_else(|| "default".into());
    let api: Api<StratusUser> = Api::namespaced(ctx.client.clone(), &ns);
    let key = crate::context::object_key(u.as_ref());
    let result = finalizer(&api, FINALIZER, u, |event| async {
        match event {
            Finalizer::Apply(u) => apply(&u, &ctx).await,
            Finalizer::Cleanup(u) => cleanup(&u, &ctx).await,
        }
    })
    .await;
    if result.is_ok() {
        ctx.succeeded(&key);
        ctx.metrics.reconciles.get(&["StratusUser", "ok"]).inc();
    }
    result
}

async fn cluster_of(u: &StratusUser, ctx: &Context) -> Result<Option<StratusCluster>, Error> {
    let api: Api<StratusCluster> =
        Api::namespaced(ctx.client.clone(), &u.namespace().unwrap_or_default());
    Ok(api.get_opt(&u.spec.cluster).await?)
}

async fn not_ready(
    u: &StratusUser,
    ctx: &Context,
    mut status: StratusUserStatus,
    reason: &str,
    msg: String,
) -> Result<Action, Error> {
    let generation = u.metadata.generation;
    set_condition(
        &mut status.conditions,
        "Ready",
        false,
        reason,
        &msg,
        generation,
    );
    ctx.event(u, true, reason, msg).await;
    if u.status.as_ref() != Some(&status) {
        patch_status(&ctx.client, u, &status).await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

async fn apply(u: &StratusUser, ctx: &Context) -> Result<Action, Error> {
    let generation = u.metadata.generation;
    let name = u.username();
    let mut status = u.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.principal = Some(format!("User:{name}"));
    let Some(cluster) = cluster_of(u, ctx).await? else {
        let msg = format!("no StratusCluster '{}' in this namespace", u.spec.cluster);
        return not_ready(u, ctx, status, "ClusterNotFound", msg).await;
    };
    let mut scram = None;
    if let Some(s) = &u.spec.scram {
        let secrets: Api<Secret> =
            Api::namespaced(ctx.client.clone(), &u.namespace().unwrap_or_default());
        let key = s
            .password_secret
            .key
            .clone()
            .unwrap_or_else(|| "password".into());
        let secret = secrets.get_opt(&s.password_secret.name).await?;
        let password = secret
            .as_ref()
            .and_then(|sec| sec.data.as_ref())
            .and_then(|d| d.get(&key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok());
        let Some(password) = password.filter(|p| !p.is_empty()) else {
            let msg = format!("Secret '{}' has no key '{key}'", s.password_secret.name);
            return not_ready(u, ctx, status, "SecretNotFound", msg).await;
        };
        status.secret_version = secret.and_then(|s| s.metadata.resource_version);
        scram = Some(Scram {
            mechanism: s.mechanism.clone(),
            password,
            iterations: s.iterations.unwrap_or(0).max(0) as u32,
        });
    }
    let acls: Vec<AclSpec> = u
        .spec
        .acls
        .iter()
        .flat_map(|a| {
            a.operations.iter().map(|op| AclSpec {
                resource_type: a.resource_type.clone(),
                resource_name: a.resource_name.clone(),
                pattern: a.pattern.clone().unwrap_or_default(),
                operation: op.clone(),
                permission: a.permission.clone().unwrap_or_default(),
                host: a.host.clone().unwrap_or_default(),
            })
        })
        .collect();
    let admin = admin_of(ctx, &cluster).await?;
    let done = match admin.ensure_user(&name, scram, &acls).await {
        Ok(d) => d,
        Err(e) => match e.refused().map(str::to_string) {
            Some(msg) => return not_ready(u, ctx, status, "Refused", msg).await,
            None => return Err(e.into()),
        },
    };
    if !done.scram_changed.is_empty() {
        let note = format!("SCRAM credentials set: {}", done.scram_changed.join(", "));
        ctx.event(u, false, "CredentialsSet", note).await;
    }
    if done.acls_added + done.acls_removed > 0 {
        let note = format!(
            "{} ACLs added, {} removed",
            done.acls_added, done.acls_removed
        );
        ctx.event(u, false, "AclsChanged", note).await;
    }
    status.acls = done.acls as i32;
    set_condition(
        &mut status.conditions,
        "Ready",
        true,
        "Synced",
        "",
        generation,
    );
    if u.status.as_ref() != Some(&status) {
        patch_status(&ctx.client, u, &status).await?;
    }
    Ok(Action::requeue(ctx.settings.resync))
}

async fn cleanup(u: &StratusUser, ctx: &Context) -> Result<Action, Error> {
    let Some(cluster) = cluster_of(u, ctx).await? else {
        return Ok(Action::await_change());
    };
    if cluster.spec.brokers == 0 || cluster.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let admin = admin_of(ctx, &cluster).await?;
    admin.delete_user(&u.username()).await?;
    ctx.event(
        u,
        false,
        "Deleted",
        format!("removed User:{}", u.username()),
    )
    .await;
    Ok(Action::await_change())
}
