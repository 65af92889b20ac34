//! EndpointSlice mirroring, as kube-controller-manager's
//! `endpointslice-mirroring-controller`: the Endpoints of a Service without a selector
//! (written by hand or by another controller) are mirrored into EndpointSlices, so
//! clients that read only slices see them. One slice per address type and set of ports;
//! each carries the Endpoints' labels, `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io`,
//! and is owned by the Endpoints (deleting them deletes it). Endpoints labelled
//! `endpointslice.kubernetes.io/skip-mirror: "true"`, or whose Service is gone or has a
//! selector, are not mirrored (their slices go).

use crate::util::Error;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The value of `endpointslice.kubernetes.io/managed-by` on mirrored slices.
pub const MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const SERVICE_NAME: &str = "kubernetes.io/service-name";
const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// kube mirrors at most this many addresses of an Endpoints object.
const MAX_ENDPOINTS: usize = 1000;
const MANAGER: &str = "endpointslicemirroring-controller";

struct Ctx {
    client: kube::Client,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
}

/// Run the controller.
pub async fn run(client: kube::Client) {
    let endpoints: Api<Endpoints> = Api::all(client.clone());
    let (services, service_writer) = reflector::store::<Service>();
    let service_changes = reflector::reflector(
        service_writer,
        watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff(),
    )
    .touched_objects();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let mirrored = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let slice_changes = reflector::reflector(
        slice_writer,
        watcher(Api::<EndpointSlice>::all(client.clone()), mirrored).default_backoff(),
    )
    .touched_objects();
    let ctx = Arc::new(Ctx { client, services: services.clone(), slices: slices.clone() });
    let controller = Controller::new(endpoints, watcher::Config::default())
        .with_config(crate::util::controller_config())
        // A Service that appears, goes or gains a selector changes what is mirrored.
        .watches_stream(service_changes, |svc: Service| {
            let ns = svc.metadata.namespace.clone().unwrap_or_default();
            svc.metadata.name.clone().map(|name| ObjectRef::<Endpoints>::new(&name).within(&ns))
        })
        // A mirrored slice changed or removed by someone else is put back.
        .owns_stream(slice_changes);
    crate::runtime::run(
        "endpointslice-mirroring",
        controller,
        move |ep: Arc<Endpoints>, ctx: Arc<Ctx>| async move {
            // Empty caches before their first lists would look like "no service".
            if ctx.services.wait_until_ready().await.is_err() || ctx.slices.wait_until_ready().await.is_err() {
                return Ok(Action::requeue(std::time::Duration::from_millis(500)));
            }
            reconcile(ep, ctx).await
        },
        ctx,
    )
    .await;
}

/// The slices one Endpoints object mirrors into, by name.
pub fn mirror(ep: &Endpoints) -> BTreeMap<String, Value> {
    let ns = ep.metadata.namespace.clone().unwrap_or_default();
    let name = ep.metadata.name.clone().unwrap_or_default();
    let mut labels = ep.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let mut annotations = ep.metadata.annotations.clone().unwrap_or_default();
    annotations.remove("endpoints.kubernetes.io/last-change-trigger-time");
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    let owner = json!({"apiVersion": "v1", "kind": "Endpoints", "name": name, "uid": ep.metadata.uid,
        "controller": true, "blockOwnerDeletion": true});
    // (address type, ports) → endpoints.
    let mut groups: BTreeMap<(String, String), (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    let mut count = 0;
    for subset in ep.subsets.iter().flatten() {
        let mut ports: Vec<Value> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| {
                let mut port = json!({"port": p.port, "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into())});
                if let Some(n) = p.name.as_ref().filter(|n| !n.is_empty()) {
                    port["name"] = json!(n);
                }
                if let Some(a) = &p.app_protocol {
                    port["appProtocol"] = json!(a);
                }
                port
            })
            .collect();
        ports.sort_by_key(|p| p.to_string());
        let addresses = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset.not_ready_addresses.iter().flatten().map(|a| (a, false));
        for (a, ready) in addresses.chain(not_ready) {
            if count >= MAX_ENDPOINTS {
                break;
            }
            let Ok(ip) = a.ip.parse::<std::net::IpAddr>() else { continue };
            count += 1;
            let kind = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            let mut endpoint = json!({"addresses": [a.ip], "conditions": {"ready": ready}});
            if let Some(h) = &a.hostname {
                endpoint["hostname"] = json!(h);
            }
            if let Some(n) = &a.node_name {
                endpoint["nodeName"] = json!(n);
            }
            if let Some(t) = &a.target_ref {
                endpoint["targetRef"] = serde_json::to_value(t).unwrap_or(Value::Null);
            }
            let entry = groups.entry((kind.to_string(), Value::Array(ports.clone()).to_string())).or_default();
            entry.0 = ports.clone();
            entry.1.push(endpoint);
        }
    }
    groups
        .into_iter()
        .map(|((kind, port_key), (ports, endpoints))| {
            let slice_name = format!("{name}-{}", crate::util::template_hash(&json!([kind.to_lowercase(), port_key])));
            let slice = json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": slice_name, "namespace": ns, "labels": labels, "annotations": annotations,
                    "ownerReferences": [owner]},
                "addressType": kind,
                "endpoints": endpoints,
                "ports": ports,
            });
            (slice_name, slice)
        })
        .collect()
}

/// Whether the stored slice already is what `want` says.
fn same_slice(current: &EndpointSlice, want: &Value) -> bool {
    let Ok(want) = serde_json::from_value::<EndpointSlice>(want.clone()) else { return false };
    let labels_held = want
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| current.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
    current.address_type == want.address_type
        && current.endpoints == want.endpoints
        && current.ports == want.ports
        && current.metadata.owner_references == want.metadata.owner_references
        && labels_held
}

async fn reconcile(ep: Arc<Endpoints>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = ep.metadata.namespace.clone().unwrap_or_default();
    let name = ep.metadata.name.clone().unwrap_or_default();
    let service = ctx.services.get(&ObjectRef::new(&name).within(&ns));
    let selectorless = service
        .as_ref()
        .is_some_and(|s| s.spec.as_ref().and_then(|sp| sp.selector.as_ref()).is_none_or(|sel| sel.is_empty()));
    let skipped = ep.metadata.labels.as_ref().and_then(|l| l.get(SKIP_MIRROR)).is_some_and(|v| v == "true");
    let wanted = if selectorless && !skipped && ep.metadata.deletion_timestamp.is_none() {
        mirror(&ep)
    } else {
        BTreeMap::new()
    };
    let mine: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .state()
        .into_iter()
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(ns.as_str())
                && s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME)) == Some(&name)
        })
        .collect();
    if wanted.is_empty() && mine.is_empty() {
        return Ok(Action::await_change());
    }
    let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PatchParams::apply(MANAGER).force();
    for (slice_name, slice) in &wanted {
        // Unchanged: no write (a write would come back as a change of an owned slice).
        let current = mine.iter().find(|s| s.metadata.name.as_deref() == Some(slice_name.as_str()));
        if current.is_some_and(|c| same_slice(c, slice)) {
            continue;
        }
        slices.patch(slice_name, &pp, &Patch::Apply(slice)).await?;
    }
    for s in mine {
        let slice_name = s.metadata.name.clone().unwrap_or_default();
        if !wanted.contains_key(&slice_name) {
            crate::runtime::gone_is_ok(slices.delete(&slice_name, &DeleteParams::default()).await)?;
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_become_slices_by_address_type_and_ports() {
        let ep: Endpoints = serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "a", "uid": "u",
            "labels": {"team": "x"}},
            "subsets": [
                {"ports": [{"port": 80}], "addresses": [{"ip": "10.1.2.3", "nodeName": "n1"}],
                 "notReadyAddresses": [{"ip": "10.1.2.4"}]},
                {"ports": [{"port": 80}], "addresses": [{"ip": "fd00::1"}]},
                {"ports": [{"name": "b", "port": 81}], "addresses": [{"ip": "10.9.9.9"}]}]}))
        .expect("endpoints");
        let slices = mirror(&ep);
        assert_eq!(slices.len(), 3, "{slices:?}");
        let v4 = slices
            .values()
            .find(|s| s["addressType"] == "IPv4" && s["ports"][0]["port"] == 80)
            .expect("an IPv4 slice for port 80");
        assert_eq!(v4["endpoints"].as_array().map(Vec::len), Some(2));
        assert_eq!(v4["endpoints"][0]["addresses"][0], "10.1.2.3");
        assert_eq!(v4["endpoints"][0]["conditions"]["ready"], true);
        assert_eq!(v4["endpoints"][1]["conditions"]["ready"], false);
        assert_eq!(v4["metadata"]["labels"][SERVICE_NAME], "db");
        assert_eq!(v4["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(v4["metadata"]["labels"]["team"], "x");
        assert_eq!(v4["metadata"]["ownerReferences"][0]["kind"], "Endpoints");
        assert_eq!(v4["ports"][0]["protocol"], "TCP");
        assert!(slices.values().any(|s| s["addressType"] == "IPv6"));
        // The same Endpoints give the same names (an update rewrites, never adds).
        assert_eq!(mirror(&ep).keys().collect::<Vec<_>>(), slices.keys().collect::<Vec<_>>());
    }
}
