//! Nodes from the host. With `sync.fromHost.nodes.enabled`, every selected host node
//! appears in the virtual cluster with the host's labels, spec and status; without it,
//! only nodes that run a synced pod appear, as lightweight virtual nodes.
//!
//! Default mode: the host wins (a virtual edit of labels, taints or `unschedulable` is
//! overwritten on the next reconcile).

use crate::{Error, SyncContext};
use futures::FutureExt;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::collections::BTreeMap;
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

/// The node fields a virtual-cluster user may edit: labels, taints, `unschedulable`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EditableFields {
    /// Labels (without the syncer's own).
    pub labels: BTreeMap<String, String>,
    /// Taints by `key:effect`.
    pub taints: BTreeMap<String, Value>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
}

/// The user's overrides in the virtual cluster (virtual scheduler mode).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Overrides {
    /// Labels set (or changed) in the virtual cluster.
    pub labels: BTreeMap<String, String>,
    /// Labels removed in the virtual cluster.
    #[serde(default)]
    pub removed_labels: Vec<String>,
    /// Taints added in the virtual cluster, by `key:effect`.
    pub taints: BTreeMap<String, Value>,
    /// Taints removed in the virtual cluster.
    #[serde(default)]
    pub removed_taints: Vec<String>,
    /// `unschedulable` set in the virtual cluster.
    pub unschedulable: Option<bool>,
}

/// Annotation: the editable fields the syncer last applied to a virtual node.
pub const LAST_APPLIED: &str = "vkube.dev/last-applied-node";
/// Annotation: the user's overrides of a virtual node (virtual scheduler mode).
pub const OVERRIDES: &str = "vkube.dev/node-overrides";

impl EditableFields {
    /// Read them from a node object.
    pub fn of(node: &Value) -> Self {
        let labels = node
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !k.starts_with("vkube.dev/"))
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let taints = node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|t| (taint_key(t), strip_time(t))).collect())
            .unwrap_or_default();
        let unschedulable = node.pointer("/spec/unschedulable").and_then(Value::as_bool).unwrap_or(false);
        EditableFields { labels, taints, unschedulable }
    }

    /// What differs from `other`, in words (for events and warnings).
    pub fn describe_diff(&self, other: &EditableFields) -> Vec<String> {
        let mut out = Vec::new();
        if self.unschedulable != other.unschedulable {
            out.push(format!("spec.unschedulable ({} -> {})", other.unschedulable, self.unschedulable));
        }
        let mut keys: Vec<&String> = self.labels.keys().chain(other.labels.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            if self.labels.get(k) != other.labels.get(k) {
                out.push(format!("label {k}"));
            }
        }
        let mut tk: Vec<&String> = self.taints.keys().chain(other.taints.keys()).collect();
        tk.sort();
        tk.dedup();
        for k in tk {
            if self.taints.get(k) != other.taints.get(k) {
                out.push(format!("taint {k}"));
            }
        }
        out
    }
}

fn taint_key(t: &Value) -> String {
    format!(
        "{}:{}",
        t.get("key").and_then(Value::as_str).unwrap_or_default(),
        t.get("effect").and_then(Value::as_str).unwrap_or_default()
    )
}

fn strip_time(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("timeAdded");
    }
    t
}

/// Record what the user changed since the syncer's last apply into the overrides.
pub fn update_overrides(virtual_now: &EditableFields, last: &EditableFields, mut o: Overrides) -> Overrides {
    for (k, v) in &virtual_now.labels {
        if last.labels.get(k) != Some(v) {
            o.labels.insert(k.clone(), v.clone());
            o.removed_labels.retain(|x| x != k);
        }
    }
    for k in last.labels.keys() {
        if !virtual_now.labels.contains_key(k) {
            // Removing an override returns the label to the host's value; removing a
            // host label hides it.
            if o.labels.remove(k).is_none() && !o.removed_labels.contains(k) {
                o.removed_labels.push(k.clone());
            }
        }
    }
    for (k, t) in &virtual_now.taints {
        if last.taints.get(k) != Some(t) {
            o.taints.insert(k.clone(), t.clone());
            o.removed_taints.retain(|x| x != k);
        }
    }
    for k in last.taints.keys() {
        if !virtual_now.taints.contains_key(k) && o.taints.remove(k).is_none() && !o.removed_taints.contains(k) {
            o.removed_taints.push(k.clone());
        }
    }
    if virtual_now.unschedulable != last.unschedulable {
        o.unschedulable = Some(virtual_now.unschedulable);
    }
    o
}

/// The host's fields with the user's overrides on top.
pub fn merge(host: &EditableFields, o: &Overrides) -> EditableFields {
    let mut labels = host.labels.clone();
    for k in &o.removed_labels {
        labels.remove(k);
    }
    labels.extend(o.labels.clone());
    let mut taints = host.taints.clone();
    for k in &o.removed_taints {
        taints.remove(k);
    }
    taints.extend(o.taints.clone());
    EditableFields { labels, taints, unschedulable: o.unschedulable.unwrap_or(host.unschedulable) }
}

/// Allocatable minus what the given pods request (cpu, memory, pods).
pub fn allocatable_left(allocatable: &Value, pods: &[Pod]) -> Value {
    use vkube_core::quantity::{format_cpu_milli, parse_milli};
    let get = |k: &str| allocatable.get(k).and_then(Value::as_str).and_then(parse_milli).unwrap_or(0);
    let (mut cpu, mut mem) = (0i128, 0i128);
    for p in pods {
        for c in p.spec.as_ref().map(|s| s.containers.clone()).unwrap_or_default() {
            let req = |r: &str| {
                c.resources
                    .as_ref()
                    .and_then(|x| x.requests.as_ref())
                    .and_then(|m| m.get(r))
                    .and_then(|q| parse_milli(&q.0))
                    .unwrap_or(0)
            };
            cpu += req("cpu");
            mem += req("memory");
        }
    }
    let mut out = allocatable.clone();
    out["cpu"] = json!(format_cpu_milli((get("cpu") - cpu).max(0)));
    out["memory"] = json!(format!("{}", ((get("memory") - mem).max(0)) / 1000));
    out["pods"] = json!(format!("{}", (get("pods") / 1000 - pods.len() as i128).max(0)));
    out
}

async fn apply_virtual_node(ctx: &SyncContext, host_event: &Node) -> Result<(), Error> {
    let virtual_nodes: Api<Node> = Api::all(ctx.virtual_client.clone());
    let name = host_event.metadata.name.clone().unwrap_or_default();
    // Read the virtual node first and the host node after it: a user's write-through
    // that lands in between makes our replace below conflict (it carries the virtual
    // node's resourceVersion) instead of putting an older host state back.
    let current = virtual_nodes.get_opt(&name).await?;
    let host_api: Api<Node> = Api::all(ctx.host_client.clone());
    let Some(fresh) = host_api.get_opt(&name).await? else { return Ok(()) };
    let host = &fresh;
    let mut want = translate(&serde_json::to_value(host)?, ctx.config.sync_nodes, ctx.config.clear_image_status);
    if ctx.config.virtual_scheduler {
        // The virtual scheduler must not overcommit: what host pods outside this virtual
        // cluster use on the node is not available to it.
        let host_pods: Api<Pod> = Api::all(ctx.host_client.clone());
        let others: Vec<Pod> = host_pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
            .await?
            .items
            .into_iter()
            .filter(|p| !ctx.mapper.owns(&p.metadata) && !vkube_core::pod::is_terminal(p))
            .collect();
        if let Some(alloc) = want.pointer("/status/allocatable").cloned() {
            want["status"]["allocatable"] = allocatable_left(&alloc, &others);
        }
    }
    let host_fields = EditableFields::of(&want);
    let keep_virtual = ctx.config.virtual_scheduler;
    let post = PostParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() };
    let (desired, overrides, user_changed) = match &current {
        None => (host_fields.clone(), Overrides::default(), Vec::new()),
        Some(cur) => {
            let cur_v = serde_json::to_value(cur)?;
            let ann = |k: &str| {
                cur_v
                    .pointer(&format!("/metadata/annotations/{}", k.replace('/', "~1")))
                    .and_then(Value::as_str)
                    .map(String::from)
            };
            let last: EditableFields =
                ann(LAST_APPLIED).and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_else(|| host_fields.clone());
            let now = EditableFields::of(&cur_v);
            let changed = now.describe_diff(&last);
            if keep_virtual {
                let prior: Overrides = ann(OVERRIDES).and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
                let o = update_overrides(&now, &last, prior);
                (merge(&host_fields, &o), o, changed)
            } else {
                (host_fields.clone(), Overrides::default(), changed)
            }
        }
    };
    let mut node = want.clone();
    let mut labels: serde_json::Map<String, Value> =
        desired.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    labels.insert(VIRTUAL_NODE.into(), json!("true"));
    node["metadata"]["labels"] = Value::Object(labels);
    node["metadata"]["annotations"] = json!({
        LAST_APPLIED: serde_json::to_string(&desired)?,
        OVERRIDES: serde_json::to_string(&overrides)?,
    });
    let taints: Vec<Value> = desired.taints.values().cloned().collect();
    if taints.is_empty() {
        if let Some(m) = node["spec"].as_object_mut() {
            m.remove("taints");
        }
    } else {
        node["spec"]["taints"] = json!(taints);
    }
    if desired.unschedulable {
        node["spec"]["unschedulable"] = json!(true);
    } else if let Some(m) = node["spec"].as_object_mut() {
        m.remove("unschedulable");
    }
    match current {
        None => match virtual_nodes.create(&post, &serde_json::from_value(node.clone())?).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        },
        Some(cur) => {
            let cur_v = serde_json::to_value(&cur)?;
            let now = EditableFields::of(&cur_v);
            let same_ann = cur_v.pointer("/metadata/annotations/vkube.dev~1last-applied-node")
                == node.pointer("/metadata/annotations/vkube.dev~1last-applied-node")
                && cur_v.pointer("/metadata/annotations/vkube.dev~1node-overrides")
                    == node.pointer("/metadata/annotations/vkube.dev~1node-overrides");
            let same_spec = cur_v.get("spec").map(normalize) == node.get("spec").map(normalize);
            if now != desired
                || !same_ann
                || !same_spec
                || cur_v.pointer("/metadata/labels") != node.pointer("/metadata/labels")
            {
                let mut next = cur.clone();
                next.metadata.labels = serde_json::from_value(node["metadata"]["labels"].clone())?;
                let mut annotations = next.metadata.annotations.clone().unwrap_or_default();
                annotations.insert(LAST_APPLIED.into(), serde_json::to_string(&desired)?);
                annotations.insert(OVERRIDES.into(), serde_json::to_string(&overrides)?);
                next.metadata.annotations = Some(annotations);
                next.spec = serde_json::from_value(node["spec"].clone()).ok();
                virtual_nodes.replace(&name, &post, &next).await?;
                if !keep_virtual && !user_changed.is_empty() {
                    let message = format!(
                        "Reverted {} on node {name}: node specs are synced from the host cluster. Set controlPlane.advanced.virtualScheduler.enabled: true to keep such changes in the virtual cluster, or sync.fromHost.nodes.syncBackChanges: true to apply them to the host node.",
                        user_changed.join(", ")
                    );
                    let regarding = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": cur.metadata.uid}});
                    crate::events::virtual_event(ctx, &regarding, "Warning", "NodeChangeReverted", &message).await;
                }
            }
        }
    }
    virtual_nodes
        .patch_status(
            &name,
            &PatchParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() },
            &Patch::Merge(json!({"status": want["status"]})),
        )
        .await?;
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
    let mut events =
        watcher(host_nodes.clone(), watcher::Config::default()).default_backoff().applied_objects().boxed();
    let virtual_nodes: Api<Node> = Api::all(ctx.virtual_client.clone());
    let mut virtual_events = watcher(virtual_nodes, watcher::Config::default().labels(&format!("{VIRTUAL_NODE}=true")))
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            ev = virtual_events.next() => {
                // A virtual edit: revert it (host wins) or record it as an override, at once.
                let Some(Ok(v)) = ev else { continue };
                let name = v.metadata.name.clone().unwrap_or_default();
                if let Ok(Some(host)) = host_nodes.get_opt(&name).await
                    && let Err(e) = apply_virtual_node(&ctx, &host).await {
                        tracing::warn!("node sync {name}: {e} (retried on the next change or sweep)");
                    }
            }
            ev = events.next() => {
                let Some(Ok(node)) = ev else { continue };
                let name = node.metadata.name.clone().unwrap_or_default();
                let wanted = if ctx.config.sync_nodes { selected(&ctx, &node) } else { virtual_exists(&ctx, &name).await };
                if wanted
                    && let Err(e) = apply_virtual_node(&ctx, &node).await {
                        tracing::warn!("node sync {name}: {e} (retried on the next change or sweep)");
                    }
            }
            _ = tick.tick() => {
                if let Err(e) = sweep(&ctx).await {
                    tracing::warn!("node sweep: {e} (retried in 5 s)");
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
    // The nodes virtual pods run on: from the pod syncer's cache once it is filled.
    let node_of = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
    let used: std::collections::HashSet<String> =
        match ctx.virtual_pods.get().filter(|s| s.wait_until_ready().now_or_never().is_some()) {
            Some(store) => store.state().iter().filter_map(|p| p.node_name.clone()).collect(),
            None => {
                let pods: Api<Pod> = Api::all(ctx.virtual_client.clone());
                pods.list(&ListParams::default()).await?.items.iter().filter_map(node_of).collect()
            }
        };
    for v in virtual_nodes.list(&ListParams::default().labels(&format!("{VIRTUAL_NODE}=true"))).await?.items {
        let name = v.metadata.name.clone().unwrap_or_default();
        let host = hosts.iter().find(|h| h.metadata.name.as_deref() == Some(name.as_str()));
        let keep = match host {
            None => false,
            Some(h) if ctx.config.sync_nodes => selected(ctx, h),
            Some(_) => used.contains(&name),
        };
        if !keep {
            vkube_controllers::runtime::gone_is_ok(virtual_nodes.delete(&name, &DeleteParams::default()).await)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(labels: &[(&str, &str)], taints: &[&str], unschedulable: bool) -> EditableFields {
        EditableFields {
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            taints: taints
                .iter()
                .map(|t| (format!("{t}:NoSchedule"), json!({"key": t, "effect": "NoSchedule"})))
                .collect(),
            unschedulable,
        }
    }

    #[test]
    fn three_way_merge_keeps_overrides_and_takes_host_changes() {
        let host0 = fields(&[("zone", "a")], &[], false);
        // The user cordons and labels the virtual node.
        let virtual_now = fields(&[("zone", "a"), ("team", "x")], &[], true);
        let o = update_overrides(&virtual_now, &host0, Overrides::default());
        let applied = merge(&host0, &o);
        assert_eq!(applied, virtual_now);
        // The host gains a label: it flows in, the overrides stay.
        let host1 = fields(&[("zone", "a"), ("gpu", "yes")], &[], false);
        let o = update_overrides(&applied, &applied, o);
        let next = merge(&host1, &o);
        assert_eq!(next, fields(&[("zone", "a"), ("gpu", "yes"), ("team", "x")], &[], true));
        // The user removes the override label and uncordons: back to the host's values.
        let edited = fields(&[("zone", "a"), ("gpu", "yes")], &[], false);
        let o = update_overrides(&edited, &next, o);
        assert_eq!(merge(&host1, &o), host1);
        // A taint added in the virtual cluster stays when the host adds its own.
        let with_taint = fields(&[("zone", "a"), ("gpu", "yes")], &["dedicated"], false);
        let o = update_overrides(&with_taint, &host1, o);
        let host2 = fields(&[("zone", "a"), ("gpu", "yes")], &["maintenance"], false);
        assert_eq!(merge(&host2, &o).taints.len(), 2);
    }

    #[test]
    fn allocatable_excludes_other_pods() {
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]}})).expect("pod");
        let left = allocatable_left(&json!({"cpu": "4", "memory": "16Gi", "pods": "110"}), &[pod]);
        assert_eq!(left["cpu"], "3500m");
        assert_eq!(left["memory"], format!("{}", 15u64 * 1024 * 1024 * 1024));
        assert_eq!(left["pods"], "109");
    }

    #[test]
    fn diff_is_described() {
        let a = fields(&[("a", "1")], &[], true);
        let b = fields(&[], &[], false);
        assert_eq!(a.describe_diff(&b), vec!["spec.unschedulable (false -> true)".to_string(), "label a".to_string()]);
    }
}
