//! Cluster-wide classes from the host (`sync.fromHost.{storageClasses, ingressClasses,
//! runtimeClasses, priorityClasses}.enabled`): every host object of the kind appears in
//! the virtual cluster under its own name, so what is made in the virtual cluster names
//! classes the host has (a claim's storage class, an ingress's class, a pod's runtime or
//! priority class).
//!
//! The virtual copies carry [`FROM_HOST`]; only those are updated or deleted (a class
//! a user made in the virtual cluster — or a built-in one like `system-node-critical` —
//! is never touched). Host changes flow in; a host class that goes away takes its
//! virtual copy with it. Classes are few, so every change on either side re-syncs the
//! whole set of that kind.

use crate::{Error, SyncContext};
use futures::StreamExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Label on a virtual class copied from the host (value: the virtual cluster).
pub const FROM_HOST: &str = "vkube.dev/from-host";

/// One kind of class copied from the host: its identity and the fields copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassKind {
    /// API group.
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural.
    pub plural: &'static str,
    /// The top-level fields of the object copied (beside metadata).
    pub fields: &'static [&'static str],
}

/// The class kinds of `sync.fromHost`, by vcluster.yaml key (storage classes have
/// their own `auto` rule, [`vkube_config::VClusterConfig::sync_storage_classes`]).
pub fn by_key(key: &str) -> Option<ClassKind> {
    match key {
        "storageClasses" => Some(STORAGE_CLASSES),
        "ingressClasses" => Some(INGRESS_CLASSES),
        "runtimeClasses" => Some(RUNTIME_CLASSES),
        "priorityClasses" => Some(PRIORITY_CLASSES),
        _ => None,
    }
}

/// `sync.fromHost.storageClasses`.
pub const STORAGE_CLASSES: ClassKind = ClassKind {
    group: "storage.k8s.io",
    version: "v1",
    kind: "StorageClass",
    plural: "storageclasses",
    fields: &[
        "provisioner",
        "parameters",
        "reclaimPolicy",
        "volumeBindingMode",
        "allowVolumeExpansion",
        "mountOptions",
        "allowedTopologies",
    ],
};
/// `sync.fromHost.ingressClasses`.
pub const INGRESS_CLASSES: ClassKind = ClassKind {
    group: "networking.k8s.io",
    version: "v1",
    kind: "IngressClass",
    plural: "ingressclasses",
    fields: &["spec"],
};
/// `sync.fromHost.runtimeClasses`.
pub const RUNTIME_CLASSES: ClassKind = ClassKind {
    group: "node.k8s.io",
    version: "v1",
    kind: "RuntimeClass",
    plural: "runtimeclasses",
    fields: &["handler", "overhead", "scheduling"],
};
/// `sync.fromHost.priorityClasses`.
pub const PRIORITY_CLASSES: ClassKind = ClassKind {
    group: "scheduling.k8s.io",
    version: "v1",
    kind: "PriorityClass",
    plural: "priorityclasses",
    fields: &["value", "globalDefault", "description", "preemptionPolicy"],
};

impl ClassKind {
    fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.into(),
            version: self.version.into(),
            api_version: format!("{}/{}", self.group, self.version),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }

    /// The virtual copy of a host object of this kind.
    pub fn translate(&self, host: &Value, cluster: &str) -> Value {
        let mut meta = json!({"name": host.pointer("/metadata/name").cloned().unwrap_or(Value::Null)});
        let mut labels = host.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
        labels.insert(FROM_HOST.into(), json!(cluster));
        meta["labels"] = Value::Object(labels);
        if let Some(a) = host.pointer("/metadata/annotations").and_then(Value::as_object) {
            let mut a = a.clone();
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
            meta["annotations"] = Value::Object(a);
        }
        let mut out =
            json!({"apiVersion": format!("{}/{}", self.group, self.version), "kind": self.kind, "metadata": meta});
        for f in self.fields {
            if let Some(v) = host.get(*f).filter(|v| !v.is_null()) {
                out[*f] = v.clone();
            }
        }
        out
    }
}

/// The virtual copy of a host storage class.
pub fn translate(host: &Value, cluster: &str) -> Value {
    STORAGE_CLASSES.translate(host, cluster)
}

/// Make the virtual objects of `kind` match the host's, once.
///
/// # Errors
/// API errors on either side.
pub async fn sync_all(ctx: &SyncContext, kind: &ClassKind, selector: &str) -> Result<(), Error> {
    let ar = kind.api_resource();
    let host_api: Api<DynamicObject> = Api::all_with(ctx.host_client.clone(), &ar);
    let virtual_api: Api<DynamicObject> = Api::all_with(ctx.virtual_client.clone(), &ar);
    let host = host_api.list(&ListParams::default().labels(selector)).await?.items;
    let mine = virtual_api.list(&ListParams::default().labels(&format!("{FROM_HOST}={}", ctx.mapper.cluster))).await?;
    let pp = PatchParams::apply(crate::MANAGER).force();
    let mut names = std::collections::BTreeSet::new();
    for class in &host {
        if class.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = class.metadata.name.clone().unwrap_or_default();
        let existing = virtual_api.get_opt(&name).await?;
        // One of the same name made in the virtual cluster (by a user, or built in)
        // stays as it is.
        if existing
            .as_ref()
            .is_some_and(|e| e.metadata.labels.as_ref().and_then(|l| l.get(FROM_HOST)) != Some(&ctx.mapper.cluster))
        {
            continue;
        }
        names.insert(name.clone());
        let wanted = kind.translate(&serde_json::to_value(class)?, &ctx.mapper.cluster);
        if let Some(e) = &existing
            && kind.translate(&serde_json::to_value(e)?, &ctx.mapper.cluster) == wanted
        {
            continue;
        }
        match virtual_api.patch(&name, &pp, &Patch::Apply(&wanted)).await {
            Ok(_) => {}
            // Immutable fields (a provisioner, a priority value) changed on the host:
            // replace.
            Err(kube::Error::Api(e)) if e.code == 422 => {
                virtual_api.delete(&name, &DeleteParams::default()).await?;
                virtual_api.patch(&name, &pp, &Patch::Apply(&wanted)).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for class in mine.items {
        let name = class.metadata.name.clone().unwrap_or_default();
        if !names.contains(&name) {
            match virtual_api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// The label selector of vcluster.yaml's `selector` for a class kind ("" for all).
///
/// # Errors
/// A selector that is not a label selector (an unknown operator).
pub fn selector_of(selector: &Value) -> Result<String, String> {
    if selector.is_null() {
        return Ok(String::new());
    }
    let ls: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
        serde_json::from_value(selector.clone()).map_err(|e| e.to_string())?;
    kube::core::Selector::try_from(ls).map(|s| s.to_string()).map_err(|e| e.to_string())
}

/// Run until aborted: re-sync `kind` (the host objects `selector` picks) on every
/// change on either side (and every minute).
pub async fn run(ctx: Arc<SyncContext>, kind: ClassKind, selector: String) {
    let ar = kind.api_resource();
    let host_api: Api<DynamicObject> = Api::all_with(ctx.host_client.clone(), &ar);
    let virtual_api: Api<DynamicObject> = Api::all_with(ctx.virtual_client.clone(), &ar);
    let host = watcher(host_api, watcher::Config::default().labels(&selector)).default_backoff().map(|_| ()).boxed();
    let virt = watcher(virtual_api, watcher::Config::default().labels(&format!("{FROM_HOST}={}", ctx.mapper.cluster)))
        .default_backoff()
        .map(|_| ())
        .boxed();
    let tick = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(Duration::from_secs(60))).map(|_| ());
    let mut triggers = futures::stream::select(futures::stream::select(host, virt), tick);
    while triggers.next().await.is_some() {
        // Fold a burst of events into one pass.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(20), triggers.next()).await {}
        if let Err(e) = sync_all(&ctx, &kind, &selector).await {
            tracing::warn!(kind = kind.kind, "class sync from the host: {e} (retried)");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_the_class_and_mark_their_origin() {
        let host = json!({"metadata": {"name": "fast", "uid": "u", "resourceVersion": "5", "labels": {"tier": "ssd"},
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "csi.example.com", "parameters": {"type": "ssd"}, "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"});
        let v = translate(&host, "vc");
        assert_eq!(v["metadata"]["name"], "fast");
        assert!(v["metadata"].get("uid").is_none() && v["metadata"].get("resourceVersion").is_none());
        assert_eq!(v["metadata"]["labels"][FROM_HOST], "vc");
        assert_eq!(v["metadata"]["labels"]["tier"], "ssd");
        assert_eq!(v["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"], "true");
        assert_eq!(v["provisioner"], "csi.example.com");
        assert_eq!(v["volumeBindingMode"], "WaitForFirstConsumer");
    }

    #[test]
    fn each_kind_copies_its_own_fields() {
        let pc = json!({"metadata": {"name": "high"}, "value": 1000, "globalDefault": false,
            "preemptionPolicy": "Never", "description": "d"});
        let v = PRIORITY_CLASSES.translate(&pc, "vc");
        assert_eq!(
            (v["apiVersion"].as_str(), v["kind"].as_str()),
            (Some("scheduling.k8s.io/v1"), Some("PriorityClass"))
        );
        assert_eq!(v["value"], 1000);
        assert_eq!(v["preemptionPolicy"], "Never");
        let rc = json!({"metadata": {"name": "gvisor"}, "handler": "runsc", "overhead": {"podFixed": {"cpu": "100m"}}});
        let v = RUNTIME_CLASSES.translate(&rc, "vc");
        assert_eq!(v["handler"], "runsc");
        assert_eq!(v["overhead"]["podFixed"]["cpu"], "100m");
        let ic = json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}});
        assert_eq!(INGRESS_CLASSES.translate(&ic, "vc")["spec"]["controller"], "k8s.io/ingress-nginx");
    }
}
