//! Events from the host about synced pods, translated back to virtual names.

use crate::SyncContext;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::sync::Arc;

/// Record an event on a virtual object.
pub async fn virtual_event(ctx: &SyncContext, regarding: &Value, ty: &str, reason: &str, message: &str) {
    let object_ns = regarding.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
    // Events about cluster-scoped objects (nodes) live in `default`.
    let ns = if object_ns.is_empty() { "default".to_string() } else { object_ns.clone() };
    let name = regarding.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let now = vkube_core::meta::now_rfc3339();
    let ev = json!({
        "metadata": {"generateName": format!("{name}."), "namespace": ns},
        "involvedObject": {"apiVersion": regarding.get("apiVersion").cloned().unwrap_or(json!("v1")), "kind": regarding.get("kind").cloned().unwrap_or(json!("Pod")), "name": name, "namespace": object_ns, "uid": regarding.pointer("/metadata/uid")},
        "reason": reason, "message": message, "type": ty,
        "source": {"component": "vkube-syncer"}, "reportingComponent": "vkube-syncer",
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let api: Api<Event> = Api::namespaced(ctx.virtual_client.clone(), &ns);
    if let Ok(e) = serde_json::from_value(ev) {
        let _ = api.create(&PostParams::default(), &e).await;
    }
}

/// Run the event syncer.
pub async fn run(ctx: Arc<SyncContext>) {
    let host_events: Api<Event> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
    let started = k8s_openapi::jiff::Timestamp::now();
    let mut stream = watcher(host_events, watcher::Config::default().fields("involvedObject.kind=Pod"))
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut seen = std::collections::HashSet::new();
    while let Some(ev) = stream.next().await {
        let Ok(ev) = ev else { continue };
        let uid = ev.metadata.uid.clone().unwrap_or_default();
        if !seen.insert(uid) {
            continue;
        }
        if ev.metadata.creation_timestamp.as_ref().is_some_and(|t| {
            t.0 < started.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(60)).unwrap_or(started)
        }) {
            continue;
        }
        let host_pod_name = ev.involved_object.name.clone().unwrap_or_default();
        let host_pods: Api<Pod> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
        let Ok(Some(hp)) = host_pods.get_opt(&host_pod_name).await else { continue };
        let Some((ns, name)) = ctx.mapper.virtual_of(&hp.metadata) else { continue };
        let virtual_pods: Api<Pod> = Api::namespaced(ctx.virtual_client.clone(), &ns);
        let Ok(Some(vp)) = virtual_pods.get_opt(&name).await else { continue };
        let message = ev
            .message
            .clone()
            .unwrap_or_default()
            .replace(&format!("{}/{host_pod_name}", ctx.mapper.host_namespace), &format!("{ns}/{name}"))
            .replace(&host_pod_name, &name);
        let Ok(v) = serde_json::to_value(&vp) else { continue };
        virtual_event(
            &ctx,
            &v,
            ev.type_.as_deref().unwrap_or("Normal"),
            ev.reason.as_deref().unwrap_or_default(),
            &message,
        )
        .await;
    }
}
