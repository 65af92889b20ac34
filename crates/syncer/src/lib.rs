//! vkube-syncer: places a virtual cluster's workloads on a host cluster.
//!
//! Start with [`Syncer::run`]. One module per synced kind under [`resources`]: the
//! virtual → host kinds implement [`engine::ResourceSyncer`] (a typed, pure `translate`
//! and what flows back) and run on the [`engine`] — a three-way dispatch: only virtual
//! exists or both do → apply the host copy and copy status back; only host exists →
//! [`cleanup`] deletes it — with names mapped by [`names`] and what is on the host
//! known from [`host_index`]; pods run their own reconcile on the same wiring; nodes,
//! events and storage classes flow from the host. Both sides are plain API clients: the
//! host can be any cluster. Every failure is logged and retried with backoff
//! (`vkube_controllers::runtime`).
//!
//! # Guarantees
//! The syncer never modifies or deletes a host object without this virtual cluster's
//! marks; two virtual clusters in one host namespace never touch each other's objects;
//! reconciles are idempotent, so a restart (or kill -9) neither duplicates nor loses.

pub mod cleanup;
pub mod engine;
pub mod host_index;
pub mod names;
pub mod policies;
pub mod rbac;
pub mod resources;

pub use resources::{config, events, nodes, pods, services, storageclasses};

use std::sync::Arc;
use std::time::Duration;

/// Field manager of every syncer write.
pub const MANAGER: &str = "vkube-syncer";

/// How many objects one syncer reconciles at once: unbounded, a burst of 1,000 pods
/// would open as many connections to each API server (kube-rs speaks HTTP/1.1).
pub const RECONCILE_CONCURRENCY: u16 = 32;

/// Errors of a reconcile (logged and retried with backoff): the controllers' type.
pub use vkube_controllers::util::Error;

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
    /// Records the syncer's events in the virtual cluster.
    pub recorder: kube::runtime::events::Recorder,
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
            recorder: vkube_controllers::util::recorder(&virtual_client, MANAGER),
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

    /// How translations name things on the host: the mapper, and host names that know
    /// which objects were synced under an older name.
    pub fn naming(&self) -> names::Naming<'_> {
        names::Naming { mapper: &self.mapper, names: self }
    }

    /// Host metadata for a virtual `kind` object (see [`names::Naming::host_metadata`]).
    pub fn host_metadata(
        &self,
        kind: &str,
        virtual_meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        self.naming().host_metadata(kind, virtual_meta)
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
                    // Set once: this loop runs once per context.
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
        if ctx.config.syncs("persistentVolumeClaims") {
            set.spawn(resources::claims::run(ctx.clone()));
        }
        if ctx.config.syncs("ingresses") {
            set.spawn(resources::ingresses::run(ctx.clone()));
        }
        if ctx.config.syncs("serviceAccounts") {
            set.spawn(resources::serviceaccounts::run(ctx.clone()));
        }
        if ctx.config.syncs("endpoints") {
            set.spawn(resources::endpoints::run(ctx.clone()));
        }
        set.spawn(nodes::run(ctx.clone()));
        if ctx.config.sync_events {
            set.spawn(events::run(ctx.clone()));
        }
        if ctx.config.sync_storage_classes {
            set.spawn(storageclasses::run(ctx.clone(), storageclasses::STORAGE_CLASSES, String::new()));
        }
        for (key, selector) in &ctx.config.from_host_classes {
            let Some(kind) = storageclasses::by_key(key) else { continue };
            match storageclasses::selector_of(selector) {
                Ok(selector) => {
                    set.spawn(storageclasses::run(ctx.clone(), kind, selector));
                }
                Err(e) => {
                    tracing::error!(key, "sync.fromHost.{key}.selector is not a label selector ({e}); not synced")
                }
            }
        }
        set.spawn(cleanup::run(ctx.clone(), Duration::from_secs(2)));
        while set.join_next().await.is_some() {}
    }
}
