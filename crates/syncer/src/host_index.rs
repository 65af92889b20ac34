//! What this virtual cluster has on the host: for every synced kind, its host objects
//! (name → virtual origin), kept current by metadata-only watches, so the syncers never
//! list host objects to find out.
//!
//! Start with [`HostIndexes::follow_all`] (run once, it never returns) and
//! [`HostIndexes::wait_ready`] (every syncer waits for it before its first write).
//!
//! # Guarantees
//! - Only objects carrying this cluster's marks are indexed; the origin is read from the
//!   origin annotations, never from the name.
//! - Once ready, [`HostIndexes::existing_name`] tells which host name an object was
//!   synced under before (an older vkube's name), so no object synced before an upgrade
//!   is copied a second time or orphaned.
//!
//! # Caveats
//! A kind whose host watch cannot start (the host refuses it) keeps the syncers waiting;
//! the watch's errors are logged.

use crate::names::NameMapper;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

/// The virtual origin of one host object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The virtual namespace.
    pub namespace: String,
    /// The virtual name.
    pub name: String,
    /// The virtual object's uid when the copy was made.
    pub uid: String,
}

/// One kind's host objects.
#[derive(Default)]
struct KindIndex {
    /// host name → origin.
    objects: HashMap<String, Origin>,
    synced: bool,
}

/// The kinds the syncer copies to the host.
pub const KINDS: [&str; 8] =
    ["Pod", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim", "Ingress", "ServiceAccount", "Endpoints"];

/// Every synced kind's host objects.
pub struct HostIndexes {
    kinds: HashMap<&'static str, Mutex<KindIndex>>,
    ready: tokio::sync::watch::Sender<bool>,
}

impl Default for HostIndexes {
    fn default() -> Self {
        HostIndexes::new(&KINDS)
    }
}

/// The kinds a virtual cluster with `config` copies to the host (configmaps always: the
/// owner of its host pods is one).
pub fn kinds_for(config: &vkube_config::VClusterConfig) -> Vec<&'static str> {
    let mut kinds = vec!["ConfigMap"];
    for (key, kind) in [
        ("pods", "Pod"),
        ("services", "Service"),
        ("secrets", "Secret"),
        ("persistentVolumeClaims", "PersistentVolumeClaim"),
        ("ingresses", "Ingress"),
        ("serviceAccounts", "ServiceAccount"),
        ("endpoints", "Endpoints"),
    ] {
        if config.syncs(key) {
            kinds.push(kind);
        }
    }
    kinds
}

impl HostIndexes {
    /// Indexes of these kinds (of [`KINDS`]) only: a kind the virtual cluster does not
    /// sync is not watched (least-privilege host credentials may not list it).
    pub fn new(kinds: &[&'static str]) -> Self {
        HostIndexes {
            kinds: kinds.iter().filter(|k| KINDS.contains(k)).map(|k| (*k, Mutex::new(KindIndex::default()))).collect(),
            ready: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Follow the indexed kinds' host objects; never returns.
    pub async fn follow_all(self: Arc<Self>, host: kube::Client, mapper: NameMapper) {
        let mut set = tokio::task::JoinSet::new();
        let wants = |kind: &str| self.kinds.contains_key(kind);
        if wants("Pod") {
            set.spawn(self.clone().follow::<Pod>(host.clone(), mapper.clone()));
        }
        if wants("Service") {
            set.spawn(self.clone().follow::<Service>(host.clone(), mapper.clone()));
        }
        if wants("ConfigMap") {
            set.spawn(self.clone().follow::<ConfigMap>(host.clone(), mapper.clone()));
        }
        if wants("Secret") {
            set.spawn(self.clone().follow::<Secret>(host.clone(), mapper.clone()));
        }
        if wants("PersistentVolumeClaim") {
            set.spawn(self.clone().follow::<PersistentVolumeClaim>(host.clone(), mapper.clone()));
        }
        if wants("Ingress") {
            set.spawn(self.clone().follow::<Ingress>(host.clone(), mapper.clone()));
        }
        if wants("ServiceAccount") {
            set.spawn(self.clone().follow::<ServiceAccount>(host.clone(), mapper.clone()));
        }
        if wants("Endpoints") {
            set.spawn(self.clone().follow::<Endpoints>(host, mapper));
        }
        while set.join_next().await.is_some() {}
    }

    /// Wait until every kind has been listed once.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives as long as `self`, so this only ends when ready.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Whether every kind has been listed once.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// The origin of host object `host_name` of `kind`, if it is this cluster's.
    pub fn origin(&self, kind: &str, host_name: &str) -> Option<Origin> {
        self.kinds.get(kind)?.lock().ok()?.objects.get(host_name).cloned()
    }

    /// Every indexed host object of `kind` (once that kind is listed), as (name, origin).
    pub fn snapshot(&self, kind: &str) -> Option<Vec<(String, Origin)>> {
        let index = self.kinds.get(kind)?.lock().ok()?;
        index.synced.then(|| index.objects.iter().map(|(n, o)| (n.clone(), o.clone())).collect())
    }

    /// The host name the virtual object was synced under before, when that is its legacy
    /// name (see [`NameMapper::legacy_host_name`]) and the object there is its copy.
    pub fn existing_name(&self, mapper: &NameMapper, kind: &str, namespace: &str, name: &str) -> Option<String> {
        let legacy = mapper.legacy_host_name(name, namespace)?;
        let origin = self.origin(kind, &legacy)?;
        (origin.namespace == namespace && origin.name == name).then_some(legacy)
    }

    async fn follow<K>(self: Arc<Self>, host: kube::Client, mapper: NameMapper)
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + 'static,
    {
        let kind = K::kind(&()).to_string();
        let Some(index) = self.kinds.get(kind.as_str()) else { return };
        let api: Api<PartialObjectMeta<K>> = Api::namespaced(host, &mapper.host_namespace);
        let mut stream = watcher(api, watcher::Config::default().labels(&mapper.selector())).default_backoff().boxed();
        let mut listed: Vec<String> = Vec::new();
        while let Some(ev) = stream.next().await {
            let became_synced = {
                let Ok(mut index) = index.lock() else { return };
                let upsert = |index: &mut KindIndex, o: PartialObjectMeta<K>| -> Option<String> {
                    let meta = o.metadata;
                    let host_name = meta.name.clone()?;
                    let Some((namespace, name)) = mapper.virtual_of(&meta) else {
                        index.objects.remove(&host_name);
                        return None;
                    };
                    let uid = meta
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(crate::names::OBJECT_UID))
                        .cloned()
                        .unwrap_or_default();
                    index.objects.insert(host_name.clone(), Origin { namespace, name, uid });
                    Some(host_name)
                };
                match ev {
                    Ok(watcher::Event::Init) => {
                        listed.clear();
                        false
                    }
                    Ok(watcher::Event::InitApply(o)) => {
                        listed.extend(upsert(&mut index, o));
                        false
                    }
                    Ok(watcher::Event::InitDone) => {
                        let keep: HashSet<String> = std::mem::take(&mut listed).into_iter().collect();
                        index.objects.retain(|k, _| keep.contains(k));
                        let first = !index.synced;
                        index.synced = true;
                        first
                    }
                    Ok(watcher::Event::Apply(o)) => {
                        upsert(&mut index, o);
                        false
                    }
                    Ok(watcher::Event::Delete(o)) => {
                        if let Some(n) = &o.metadata.name {
                            index.objects.remove(n);
                        }
                        false
                    }
                    Err(e) => {
                        tracing::warn!("watching host {kind}s of this virtual cluster: {e}");
                        false
                    }
                }
            };
            if became_synced {
                let all = self.kinds.values().all(|k| k.lock().is_ok_and(|k| k.synced));
                if all {
                    self.ready.send_replace(true);
                }
            }
        }
    }
}
