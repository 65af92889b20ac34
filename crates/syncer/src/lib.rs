//! vkube-syncer: places a virtual cluster's workloads on a host cluster.
//!
//! Start with [`Syncer::run`]. One syncer per resource ([`pods`], [`services`],
//! [`config`] for configmaps and secrets, [`simple`] for the kinds copied as they are,
//! [`nodes`], [`events`], [`storageclasses`]), each a three-way
//! dispatch — only virtual exists → create on the host; both exist → update (and copy
//! status back); only host exists → [`cleanup`] deletes it — with names mapped by
//! [`names::NameMapper`]. Both sides are plain API clients: the host can be any cluster.
//!
//! # Guarantees
//! The syncer never modifies or deletes a host object without this virtual cluster's
//! marks; two virtual clusters in one host namespace never touch each other's objects;
//! reconciles are idempotent, so a restart (or kill -9) neither duplicates nor loses.

pub mod cleanup;
pub mod config;
pub mod events;
pub mod host_index;
pub mod names;
pub mod nodes;
pub mod pods;
pub mod services;
pub mod simple;
pub mod storageclasses;
mod util;

use std::sync::Arc;
use std::time::Duration;

/// Field manager of every syncer write.
pub const MANAGER: &str = "vkube-syncer";

/// How many objects one syncer reconciles at once: unbounded, a burst of 1,000 pods
/// would open as many connections to each API server (kube-rs speaks HTTP/1.1).
pub const RECONCILE_CONCURRENCY: u16 = 32;

/// Errors of a reconcile (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed, on either side.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// An object could not be (de)serialized.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// What every syncer shares.
pub struct SyncContext {
    /// Client of the virtual cluster.
    pub virtual_client: kube::Client,
    /// Client of the host cluster.
    pub host_client: kube::Client,
    /// Name mapping.
    pub mapper: names::NameMapper,
    /// The vcluster.yaml settings.
    pub config: vkube_config::VClusterConfig,
    /// The host object that owns (as controller) every host pod of this virtual cluster,
    /// so host tools such as `kubectl drain` treat them as managed: (name, uid).
    pub owner: std::sync::OnceLock<(String, String)>,
    /// Host configmaps and secrets written lately: host name → the virtual
    /// resourceVersion written, so the pods sharing one (e.g. `kube-root-ca.crt`) do not
    /// each rewrite it.
    pub applied: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Where pods reach the virtual API server (`KUBERNETES_SERVICE_HOST`/`_PORT` in
    /// host pods), when its address is one they can reach.
    pub api_endpoint: Option<(String, u16)>,
    /// The pod syncer's cache of virtual pods (slim: [`pods::CachedPod`]), once it runs.
    pub virtual_pods: std::sync::OnceLock<kube::runtime::reflector::Store<pods::CachedPod>>,
    /// This virtual cluster's host objects, by kind.
    pub host_index: Arc<host_index::HostIndexes>,
}

impl SyncContext {
    /// A context; the owner object is made by [`Syncer::run`].
    pub fn new(
        virtual_client: kube::Client,
        host_client: kube::Client,
        mapper: names::NameMapper,
        config: vkube_config::VClusterConfig,
    ) -> Self {
        SyncContext {
            virtual_client,
            host_client,
            mapper,
            config,
            owner: std::sync::OnceLock::new(),
            applied: Default::default(),
            virtual_pods: std::sync::OnceLock::new(),
            api_endpoint: None,
            host_index: Default::default(),
        }
    }

    /// Host metadata for a virtual `kind` object: its host name (see
    /// [`names::HostNames::host_name_for`]) and the ownership marks.
    pub fn host_metadata(&self, kind: &str, virtual_obj: &serde_json::Value) -> serde_json::Value {
        use names::HostNames;
        let meta = |p: &str| virtual_obj.pointer(p).and_then(serde_json::Value::as_str).unwrap_or_default();
        let host_name = self.host_name_for(kind, meta("/metadata/namespace"), meta("/metadata/name"));
        self.mapper.host_metadata(kind, virtual_obj, &host_name)
    }

    /// Record, on the virtual object, that its host name is taken by someone else's
    /// object (which is left alone).
    pub async fn report_name_taken(&self, kind: &str, virtual_obj: &serde_json::Value, host_name: &str) {
        tracing::warn!("host {kind} {host_name} is not this virtual cluster's copy of it; leaving it alone");
        let mut regarding = virtual_obj.clone();
        regarding["kind"] = serde_json::json!(kind);
        events::virtual_event(
            self,
            &regarding,
            "Warning",
            "HostNameTaken",
            &format!(
                "Host {kind} {}/{host_name} exists and is not this object's copy; it is left alone and this object is not synced",
                self.mapper.host_namespace
            ),
        )
        .await;
    }

    /// Whether the syncer may write host object `host_name` as the copy of the virtual
    /// `kind` object `namespace/name`: it is absent, or it is that object's copy. A host
    /// object of anyone else (another virtual cluster, another virtual object, a user)
    /// is never written.
    ///
    /// # Errors
    /// API errors reading the host.
    pub async fn may_write<K>(&self, kind: &str, host_name: &str, namespace: &str, name: &str) -> Result<bool, Error>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        if let Some(origin) = self.host_index.origin(kind, host_name) {
            return Ok(origin.namespace == namespace && origin.name == name);
        }
        let api: kube::Api<K> = kube::Api::namespaced(self.host_client.clone(), &self.mapper.host_namespace);
        Ok(match api.get_metadata_opt(host_name).await? {
            None => true,
            Some(found) => self.mapper.is_copy_of(&found.metadata, kind, namespace, name),
        })
    }
}

impl names::HostNames for SyncContext {
    /// The one the object was synced under already, if that is an older vkube's name for
    /// it, else [`names::NameMapper::host_name`].
    fn host_name_for(&self, kind: &str, namespace: &str, name: &str) -> String {
        if let Some(existing) = self.host_index.existing_name(&self.mapper, kind, namespace, name) {
            return existing;
        }
        // A service's endpoints are named as its host service is.
        if kind == "Endpoints" {
            return self.host_name_for("Service", namespace, name);
        }
        self.mapper.host_name(name, namespace)
    }
}

/// Make sure the host owner object exists; returns (name, uid).
///
/// # Errors
/// API errors.
pub async fn ensure_owner(ctx: &SyncContext) -> Result<(String, String), Error> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};
    let name = format!("vkube-owner-{}", ctx.mapper.cluster);
    let api: Api<ConfigMap> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
    let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {names::MANAGED_BY: ctx.mapper.cluster}}, "data": {"purpose": "owns the host pods of this vkube virtual cluster"}});
    let applied = api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(cm)).await?;
    Ok((name, applied.metadata.uid.unwrap_or_default()))
}

/// The syncer.
pub struct Syncer;

impl Syncer {
    /// Run every enabled syncer until aborted.
    pub async fn run(ctx: Arc<SyncContext>) {
        loop {
            match ensure_owner(&ctx).await {
                Ok(owner) => {
                    let _ = ctx.owner.set(owner);
                    break;
                }
                Err(e) => {
                    tracing::warn!("host cluster not ready for the syncer yet: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        let mut set = tokio::task::JoinSet::new();
        // No syncer writes before the host index knows what is there already (names
        // given by an older vkube, objects of others).
        set.spawn(ctx.host_index.clone().follow_all(ctx.host_client.clone(), ctx.mapper.clone()));
        ctx.host_index.wait_ready().await;
        if ctx.config.syncs("pods") {
            set.spawn(pods::run(ctx.clone()));
        }
        if ctx.config.syncs("services") {
            set.spawn(services::run(ctx.clone()));
        }
        set.spawn(config::run(ctx.clone()));
        set.spawn(simple::run(ctx.clone()));
        set.spawn(nodes::run(ctx.clone()));
        if ctx.config.sync_events {
            set.spawn(events::run(ctx.clone()));
        }
        if ctx.config.sync_storage_classes {
            set.spawn(storageclasses::run(ctx.clone()));
        }
        set.spawn(cleanup::run(ctx.clone(), Duration::from_secs(2)));
        while set.join_next().await.is_some() {}
    }
}
