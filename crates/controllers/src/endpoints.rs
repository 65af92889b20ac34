//! Endpoints and EndpointSlices from Services and their pods: ready pods are addresses,
//! others `notReadyAddresses` / `ready: false`; target ports resolved by number or by
//! container port name.

use crate::runtime::RunLogged;
use crate::util::{Error, is_ready};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const MANAGER: &str = "endpoint-controller";

struct Ctx {
    /// The endpoint controller's client (reads, Endpoints).
    client: kube::Client,
    /// The endpointslice controller's client.
    slices: kube::Client,
}

/// Run the endpoints and endpointslice controllers, each writing as its own client.
pub async fn run(client: kube::Client, slices: kube::Client) {
    let services: Api<Service> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let controller =
        Controller::new(services, watcher::Config::default()).with_config(crate::util::controller_config());
    let store = controller.store();
    controller
        .watches(pods, watcher::Config::default(), move |pod: Pod| {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            store
                .state()
                .iter()
                .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
                .filter(|s| {
                    s.spec
                        .as_ref()
                        .and_then(|sp| sp.selector.as_ref())
                        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
                })
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        })
        .run_logged("endpoints", reconcile, Arc::new(Ctx { client, slices }))
        .await;
}

fn resolve_port(target: Option<&Value>, pod: &Pod, fallback: i32) -> Option<i32> {
    match target {
        Some(Value::Number(n)) => n.as_i64().map(|n| n as i32),
        Some(Value::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
        _ => Some(fallback),
    }
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let Some(spec) = svc.spec.as_ref() else { return Ok(Action::await_change()) };
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else { return Ok(Action::await_change()) };
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let sel: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut matching: Vec<Pod> = pods
        .list(&ListParams::default().labels(&sel.join(",")))
        .await?
        .items
        .into_iter()
        .filter(|p| {
            p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some_and(|ip| !ip.is_empty())
                && !crate::util::is_terminal(p)
        })
        .collect();
    matching.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let svc_ports: Vec<Value> = spec.ports.iter().flatten().filter_map(|p| serde_json::to_value(p).ok()).collect();
    // Endpoints: one subset with every port (pods resolving named ports alike).
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    let mut slice_endpoints = Vec::new();
    for p in &matching {
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        let target_ref = json!({"kind": "Pod", "namespace": ns, "name": p.metadata.name, "uid": p.metadata.uid});
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        let addr = json!({"ip": ip, "nodeName": node, "targetRef": target_ref});
        let is_r = is_ready(p) && p.metadata.deletion_timestamp.is_none();
        if is_r {
            ready.push(addr)
        } else {
            not_ready.push(addr)
        }
        slice_endpoints.push(json!({"addresses": [ip], "conditions": {"ready": is_r, "serving": is_ready(p), "terminating": p.metadata.deletion_timestamp.is_some()}, "nodeName": node, "targetRef": target_ref}));
    }
    let first = matching.first();
    let ports: Vec<Value> = svc_ports
        .iter()
        .map(|sp| {
            let port = sp.get("port").and_then(Value::as_i64).unwrap_or(0) as i32;
            let target = first.and_then(|p| resolve_port(sp.get("targetPort"), p, port)).unwrap_or(port);
            let mut e = json!({"port": target, "protocol": sp.get("protocol").cloned().unwrap_or(json!("TCP"))});
            if let Some(n) = sp.get("name").filter(|n| n.as_str().is_some_and(|s| !s.is_empty())) {
                e["name"] = n.clone();
            }
            e
        })
        .collect();
    let mut subset = json!({"ports": ports});
    if !ready.is_empty() {
        subset["addresses"] = json!(ready);
    }
    if !not_ready.is_empty() {
        subset["notReadyAddresses"] = json!(not_ready);
    }
    let subsets = if matching.is_empty() { json!([]) } else { json!([subset]) };
    let labels = svc.metadata.labels.clone().unwrap_or_default();
    let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns, "labels": labels}, "subsets": subsets});
    let eps: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    eps.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(ep)).await?;
    let owner = json!({"apiVersion": "v1", "kind": "Service", "name": name, "uid": svc.metadata.uid, "controller": true, "blockOwnerDeletion": true});
    let mut slice_labels = labels.clone();
    slice_labels.insert("kubernetes.io/service-name".into(), name.clone());
    slice_labels.insert("endpointslice.kubernetes.io/managed-by".into(), "endpointslice-controller.k8s.io".into());
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-{}", crate::util::template_hash(&json!(name))), "namespace": ns, "labels": slice_labels, "ownerReferences": [owner]},
        "addressType": "IPv4",
        "endpoints": slice_endpoints,
        "ports": ports,
    });
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.slices.clone(), &ns);
    let slice_name = slice["metadata"]["name"].as_str().unwrap_or_default().to_string();
    slices.patch(&slice_name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(slice)).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}
