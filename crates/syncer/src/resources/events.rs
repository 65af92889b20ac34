//! Events from the host about synced pods, translated back to virtual names.

use crate::SyncContext;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use std::sync::Arc;

/// Record an event on a virtual object (`regarding`: its apiVersion, kind and metadata),
/// through the syncer's event recorder.
pub async fn virtual_event(ctx: &SyncContext, regarding: &Value, ty: &str, reason: &str, message: &str) {
    let text = |ptr: &str| regarding.pointer(ptr).and_then(Value::as_str).map(String::from);
    let reference = ObjectReference {
        api_version: text("/apiVersion").or(Some("v1".into())),
        kind: text("/kind").or(Some("Pod".into())),
        name: text("/metadata/name"),
        namespace: text("/metadata/namespace").filter(|n| !n.is_empty()),
        uid: text("/metadata/uid"),
        ..Default::default()
    };
    vkube_controllers::util::record(&ctx.recorder, &reference, ty == "Warning", reason, "Syncing", message).await;
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
