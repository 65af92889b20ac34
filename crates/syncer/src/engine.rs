//! The engine every virtual → host kind runs on. A [`ResourceSyncer`] says what its kind
//! is, which objects are synced and what the host copy of one is (a pure, typed
//! `translate`); the engine does the rest, the same way for every kind:
//!
//! - watches the virtual objects, and the host objects of this virtual cluster mapped
//!   back to their origin by their annotations (so a host change or deletion is seen);
//! - dispatches three ways: only the virtual object exists or both do → apply the host
//!   copy (server-side apply), then let the kind copy back what flows back (status, the
//!   host's cluster IP); only the host copy exists → [`crate::cleanup`] removes it;
//! - never writes a host object that is not the virtual object's own copy
//!   ([`crate::SyncContext::may_write`]);
//! - logs every failure and retries it with backoff (`vkube_controllers::runtime`).

use crate::{Error, SyncContext};
use async_trait::async_trait;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use vkube_controllers::runtime::RunLogged;

/// One synced kind: virtual objects copied to the host namespace.
#[async_trait]
pub trait ResourceSyncer: Send + Sync + 'static {
    /// The kind, on both sides.
    type Object: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static;

    /// The syncer's name in logs.
    const NAME: &'static str;

    /// Whether the object is copied at all (default: every one not being deleted).
    ///
    /// # Errors
    /// API errors deciding it.
    async fn wanted(&self, _ctx: &SyncContext, _obj: &Self::Object) -> Result<bool, Error> {
        Ok(true)
    }

    /// The host copy of a virtual object (pure: names, marks and the fields that
    /// change between the two sides).
    fn translate(&self, ctx: &SyncContext, obj: &Self::Object) -> Self::Object;

    /// After the host copy is applied (`host` as the host answered): copy back what
    /// flows back.
    ///
    /// # Errors
    /// API errors.
    async fn after_apply(&self, _ctx: &SyncContext, _obj: &Self::Object, _host: &Self::Object) -> Result<(), Error> {
        Ok(())
    }

    /// How long until the object is looked at again without a change.
    fn resync(&self) -> Duration {
        Duration::from_secs(60)
    }
}

fn kind_of<K: kube::Resource<DynamicType = ()>>() -> String {
    K::kind(&()).to_string()
}

/// Apply the host copy of `obj` (if it is synced), as `syncer` says.
///
/// # Errors
/// API errors; a host object of someone else's under the name is not an error (it is
/// reported on the virtual object and retried later).
pub async fn apply<S: ResourceSyncer>(syncer: &S, ctx: &SyncContext, obj: &S::Object) -> Result<Action, Error> {
    use k8s_openapi::Metadata as _;
    if obj.metadata().deletion_timestamp.is_some() || !syncer.wanted(ctx, obj).await? {
        return Ok(Action::await_change());
    }
    apply_forced(syncer, ctx, obj).await
}

/// [`apply`] without asking [`ResourceSyncer::wanted`] (the caller knows it is).
///
/// # Errors
/// API errors.
pub async fn apply_forced<S: ResourceSyncer>(syncer: &S, ctx: &SyncContext, obj: &S::Object) -> Result<Action, Error> {
    use k8s_openapi::Metadata as _;
    let meta = obj.metadata();
    let kind = kind_of::<S::Object>();
    let host = syncer.translate(ctx, obj);
    let host_name = host.metadata().name.clone().unwrap_or_default();
    let (ns, name) = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
    if !ctx.may_write::<S::Object>(&kind, &host_name, &ns, &name).await? {
        let regarding = serde_json::to_value(obj)?;
        ctx.report_name_taken(&kind, &regarding, &host_name).await;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let api: Api<S::Object> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
    let applied = api.patch(&host_name, &PatchParams::apply(crate::MANAGER).force(), &Patch::Apply(&host)).await?;
    syncer.after_apply(ctx, obj, &applied).await?;
    Ok(Action::requeue(syncer.resync()))
}

/// The controller of a virtual kind, woken by changes of its host copies too.
pub fn controller<K>(ctx: &SyncContext) -> Controller<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let virtual_api: Api<K> = Api::all(ctx.virtual_client.clone());
    Controller::new(virtual_api, watcher::Config::default()).with_config(config())
}

/// Wake the virtual origin when a host copy changes.
pub fn with_host_copies<K>(controller: Controller<K>, ctx: &SyncContext) -> Controller<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let host_api: Api<K> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
    let mapper = ctx.mapper.clone();
    controller.watches(host_api, watcher::Config::default().labels(&ctx.mapper.selector()), move |h: K| {
        mapper.virtual_of(h.meta()).map(|(ns, name)| ObjectRef::new(&name).within(&ns))
    })
}

/// The controller settings of every syncer: a bounded number of reconciles at once.
pub fn config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(crate::RECONCILE_CONCURRENCY)
}

/// Run `syncer` until aborted.
pub async fn run<S: ResourceSyncer>(ctx: Arc<SyncContext>, syncer: S) {
    let controller = with_host_copies(controller::<S::Object>(&ctx), &ctx);
    let syncer = Arc::new(syncer);
    controller
        .run_logged(
            S::NAME,
            move |obj: Arc<S::Object>, ctx: Arc<SyncContext>| {
                let syncer = syncer.clone();
                async move { apply(syncer.as_ref(), &ctx, &obj).await }
            },
            ctx,
        )
        .await;
}

/// Copy a host copy's status back to the virtual object when it differs.
///
/// # Errors
/// API errors.
pub async fn status_back<K, S>(
    ctx: &SyncContext,
    obj: &K,
    virtual_status: &Option<S>,
    host_status: &Option<S>,
) -> Result<(), Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize + PartialEq,
{
    if host_status.is_none() || host_status == virtual_status {
        return Ok(());
    }
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.virtual_client.clone(), &ns);
    let pp = PatchParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() };
    api.patch_status(&name, &pp, &Patch::Merge(serde_json::json!({"status": host_status}))).await?;
    Ok(())
}
