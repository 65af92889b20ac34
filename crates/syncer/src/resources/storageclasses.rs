//! Storage classes from the host (`sync.fromHost.storageClasses.enabled`): every host
//! StorageClass appears in the virtual cluster under its own name, so claims made in
//! the virtual cluster name classes the host can provision.
//!
//! The virtual copies carry [`FROM_HOST`]; only those are updated or deleted (a class
//! a user made in the virtual cluster is never touched). Host changes flow in; a host
//! class that goes away takes its virtual copy with it. Classes are few, so every change
//! on either side re-syncs the whole set.

use crate::{Error, SyncContext};
use futures::StreamExt;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Label on a virtual StorageClass copied from the host (value: the virtual cluster).
pub const FROM_HOST: &str = "vkube.dev/from-host";

/// The virtual copy of a host storage class.
pub fn translate(host: &Value, cluster: &str) -> Value {
    let mut meta = json!({"name": host.pointer("/metadata/name").cloned().unwrap_or(Value::Null)});
    let mut labels = host.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
    labels.insert(FROM_HOST.into(), json!(cluster));
    meta["labels"] = Value::Object(labels);
    if let Some(a) = host.pointer("/metadata/annotations").and_then(Value::as_object) {
        let mut a = a.clone();
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
        meta["annotations"] = Value::Object(a);
    }
    let mut out = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": meta});
    for f in [
        "provisioner",
        "parameters",
        "reclaimPolicy",
        "volumeBindingMode",
        "allowVolumeExpansion",
        "mountOptions",
        "allowedTopologies",
    ] {
        if let Some(v) = host.get(f).filter(|v| !v.is_null()) {
            out[f] = v.clone();
        }
    }
    out
}

/// Make the virtual classes match the host's, once.
///
/// # Errors
/// API errors on either side.
pub async fn sync_all(ctx: &SyncContext) -> Result<(), Error> {
    let host_api: Api<StorageClass> = Api::all(ctx.host_client.clone());
    let virtual_api: Api<StorageClass> = Api::all(ctx.virtual_client.clone());
    let host = host_api.list(&ListParams::default()).await?.items;
    let mine = virtual_api.list(&ListParams::default().labels(&format!("{FROM_HOST}={}", ctx.mapper.cluster))).await?;
    let pp = PatchParams::apply(crate::MANAGER).force();
    let mut names = std::collections::BTreeSet::new();
    for sc in &host {
        if sc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = sc.metadata.name.clone().unwrap_or_default();
        let existing = virtual_api.get_opt(&name).await?;
        // A class of the same name made in the virtual cluster by a user stays theirs.
        if existing
            .as_ref()
            .is_some_and(|e| e.metadata.labels.as_ref().and_then(|l| l.get(FROM_HOST)) != Some(&ctx.mapper.cluster))
        {
            continue;
        }
        names.insert(name.clone());
        let wanted = translate(&serde_json::to_value(sc)?, &ctx.mapper.cluster);
        if let Some(e) = &existing {
            let current = translate(&serde_json::to_value(e)?, &ctx.mapper.cluster);
            if current == wanted {
                continue;
            }
        }
        match virtual_api.patch(&name, &pp, &Patch::Apply(wanted)).await {
            Ok(_) => {}
            // Immutable fields (provisioner, parameters) changed on the host: replace.
            Err(kube::Error::Api(e)) if e.code == 422 => {
                virtual_api.delete(&name, &DeleteParams::default()).await?;
                let wanted = translate(&serde_json::to_value(sc)?, &ctx.mapper.cluster);
                virtual_api.patch(&name, &pp, &Patch::Apply(wanted)).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for sc in mine.items {
        let name = sc.metadata.name.clone().unwrap_or_default();
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

/// Run until aborted: re-sync on every change on either side (and every minute).
pub async fn run(ctx: Arc<SyncContext>) {
    let host_api: Api<StorageClass> = Api::all(ctx.host_client.clone());
    let virtual_api: Api<StorageClass> = Api::all(ctx.virtual_client.clone());
    let host = watcher(host_api, watcher::Config::default()).default_backoff().map(|_| ()).boxed();
    let virt = watcher(virtual_api, watcher::Config::default().labels(&format!("{FROM_HOST}={}", ctx.mapper.cluster)))
        .default_backoff()
        .map(|_| ())
        .boxed();
    let tick = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(Duration::from_secs(60))).map(|_| ());
    let mut triggers = futures::stream::select(futures::stream::select(host, virt), tick);
    while triggers.next().await.is_some() {
        // Fold a burst of events into one pass.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(20), triggers.next()).await {}
        if let Err(e) = sync_all(&ctx).await {
            tracing::warn!("storage class sync: {e} (retried)");
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
}
