//! Nodes from the host. With `sync.fromHost.nodes.enabled`, every selected host node
//! appears in the virtual cluster with the host's labels, spec and status; without it,
//! only nodes that run a synced pod appear, as lightweight virtual nodes.
//!
//! Default mode: the host wins (a virtual edit of labels, taints or `unschedulable` is
//! overwritten on the next reconcile).

use crate::{Error, SyncContext};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Label on virtual nodes made by the syncer.
pub const VIRTUAL_NODE: &str = "vkube.dev/virtual-node";

fn selected(ctx: &SyncContext, node: &Node) -> bool {
    if ctx.config.node_selector_all || ctx.config.node_selector_labels.is_empty() {
        return true;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    ctx.config.node_selector_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The virtual node for a host node: full (labels, spec, status) or lightweight.
pub fn translate(host: &Value, full: bool, clear_images: bool) -> Value {
    let name = host.pointer("/metadata/name").cloned().unwrap_or_default();
    let mut labels = host.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
    labels.insert(VIRTUAL_NODE.into(), json!("true"));
    let mut status = host.get("status").cloned().unwrap_or_else(|| json!({}));
    if (clear_images || !full)
        && let Some(m) = status.as_object_mut()
    {
        m.remove("images");
    }
    let spec = if full {
        let mut s = host.get("spec").cloned().unwrap_or_else(|| json!({}));
        if let Some(m) = s.as_object_mut() {
            m.remove("providerID");
        }
        s
    } else {
        json!({})
    };
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": spec, "status": status})
}

/// Make sure a virtual node exists for a host node (before a pod is bound to it).
///
/// # Errors
/// API errors.
pub async fn ensure_virtual_node(ctx: &SyncContext, name: &str) -> Result<(), Error> {
    let virtual_nodes: Api<Node> = Api::all(ctx.virtual_client.clone());
    if virtual_nodes.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let host_nodes: Api<Node> = Api::all(ctx.host_client.clone());
    let Some(host) = host_nodes.get_opt(name).await? else { return Ok(()) };
    apply_virtual_node(ctx, &host).await
}

async fn apply_virtual_node(ctx: &SyncContext, host: &Node) -> Result<(), Error> {
    let virtual_nodes: Api<Node> = Api::all(ctx.virtual_client.clone());
    let name = host.metadata.name.clone().unwrap_or_default();
    let v = translate(&serde_json::to_value(host)?, ctx.config.sync_nodes, ctx.config.clear_image_status);
    let pp = PatchParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() };
    match virtual_nodes.get_opt(&name).await? {
        None => {
            let created = virtual_nodes
                .create(
                    &PostParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() },
                    &serde_json::from_value(v.clone())?,
                )
                .await;
            match created {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(current) => {
            // Host wins: labels and spec follow the host node.
            let cur = serde_json::to_value(&current)?;
            if cur.pointer("/metadata/labels") != v.pointer("/metadata/labels")
                || cur.get("spec").map(normalize) != v.get("spec").map(normalize)
            {
                let mut replace_labels = current.clone();
                replace_labels.metadata.labels = serde_json::from_value(v["metadata"]["labels"].clone())?;
                if let Ok(spec) = serde_json::from_value(v["spec"].clone()) {
                    replace_labels.spec = Some(spec);
                }
                virtual_nodes
                    .replace(
                        &name,
                        &PostParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() },
                        &replace_labels,
                    )
                    .await?;
            }
        }
    }
    virtual_nodes.patch_status(&name, &pp, &Patch::Merge(json!({"status": v["status"]}))).await?;
    Ok(())
}

fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !x.is_null() && *x != &json!([]))
                .map(|(k, x)| (k.clone(), normalize(x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Run the node syncer: mirror host nodes (all selected ones, or those running synced
/// pods) and remove virtual nodes that should no longer be there.
pub async fn run(ctx: Arc<SyncContext>) {
    let host_nodes: Api<Node> = Api::all(ctx.host_client.clone());
    let mut events = watcher(host_nodes, watcher::Config::default()).default_backoff().applied_objects().boxed();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            ev = events.next() => {
                let Some(Ok(node)) = ev else { continue };
                let name = node.metadata.name.clone().unwrap_or_default();
                let wanted = if ctx.config.sync_nodes { selected(&ctx, &node) } else { virtual_exists(&ctx, &name).await };
                if wanted
                    && let Err(e) = apply_virtual_node(&ctx, &node).await {
                        tracing::debug!("node sync {name}: {e}");
                    }
            }
            _ = tick.tick() => {
                if let Err(e) = sweep(&ctx).await {
                    tracing::debug!("node sweep: {e}");
                }
            }
        }
    }
}

async fn virtual_exists(ctx: &SyncContext, name: &str) -> bool {
    let api: Api<Node> = Api::all(ctx.virtual_client.clone());
    matches!(api.get_opt(name).await, Ok(Some(_)))
}

async fn sweep(ctx: &SyncContext) -> Result<(), Error> {
    let virtual_nodes: Api<Node> = Api::all(ctx.virtual_client.clone());
    let host_nodes: Api<Node> = Api::all(ctx.host_client.clone());
    let hosts = host_nodes.list(&ListParams::default()).await?.items;
    if ctx.config.sync_nodes {
        for h in hosts.iter().filter(|h| selected(ctx, h)) {
            let name = h.metadata.name.clone().unwrap_or_default();
            if !virtual_exists(ctx, &name).await {
                apply_virtual_node(ctx, h).await?;
            }
        }
    }
    let pods: Api<Pod> = Api::all(ctx.virtual_client.clone());
    let used: std::collections::HashSet<String> = pods
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    for v in virtual_nodes.list(&ListParams::default().labels(&format!("{VIRTUAL_NODE}=true"))).await?.items {
        let name = v.metadata.name.clone().unwrap_or_default();
        let host = hosts.iter().find(|h| h.metadata.name.as_deref() == Some(name.as_str()));
        let keep = match host {
            None => false,
            Some(h) if ctx.config.sync_nodes => selected(ctx, h),
            Some(_) => used.contains(&name),
        };
        if !keep {
            let _ = virtual_nodes.delete(&name, &DeleteParams::default()).await;
        }
    }
    Ok(())
}
