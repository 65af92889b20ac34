//! DaemonSet: one pod on every eligible node (node selector, taints it tolerates), placed
//! by the scheduler through node affinity on `metadata.name`, rolled one node at a time
//! (`maxUnavailable`), with the status `kubectl rollout status` reads.

use crate::util::{Error, controller_ref, int_or_percent, is_ready, label_selector, pp, template_hash};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::api::{Api, DeleteParams, Patch, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const MANAGER: &str = "daemonset-controller";
const HASH: &str = "controller-revision-hash";

struct Ctx {
    client: kube::Client,
}

/// Run the DaemonSet controller.
pub async fn run(client: kube::Client) {
    let ds: Api<DaemonSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let controller = Controller::new(ds, watcher::Config::default()).with_config(crate::util::controller_config());
    let store = controller.store();
    let controller = controller.owns(pods, watcher::Config::default()).watches(
        nodes,
        watcher::Config::default(),
        move |_n: Node| store.state().iter().map(|d| ObjectRef::from_obj(d.as_ref())).collect::<Vec<_>>(),
    );
    crate::runtime::run("daemonset", controller, reconcile, Arc::new(Ctx { client })).await;
}

/// The tolerations every daemon pod gets (as kube's DaemonSet controller adds them).
fn daemon_tolerations() -> Vec<Value> {
    vec![
        json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}),
    ]
}

fn tolerates(tolerations: &[Toleration], t: &Taint) -> bool {
    tolerations.iter().any(|tol| {
        tol.effect.as_deref().is_none_or(|e| e.is_empty() || e == t.effect)
            && (tol.key.as_deref().is_none_or(|k| k.is_empty()) || tol.key.as_deref() == Some(t.key.as_str()))
            && (tol.operator.as_deref() == Some("Exists")
                || tol.value.as_deref().unwrap_or_default() == t.value.as_deref().unwrap_or_default())
    })
}

fn eligible(
    node: &Node,
    node_selector: &std::collections::BTreeMap<String, String>,
    tolerations: &[Toleration],
) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !node_selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        return false;
    }
    node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_none_or(|ts| {
        ts.iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute").all(|t| tolerates(tolerations, t))
    })
}

fn pod_node(p: &Pod) -> Option<String> {
    if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
        return Some(n);
    }
    let v = serde_json::to_value(p).ok()?;
    v.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0").and_then(Value::as_str).map(String::from)
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let spec = &ds.spec;
    let template = serde_json::to_value(&spec.template)?;
    let hash = template_hash(&template);
    let mut tolerations: Vec<Value> =
        template.pointer("/spec/tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    for t in daemon_tolerations() {
        if !tolerations.iter().any(|x| x.get("key") == t.get("key") && x.get("effect") == t.get("effect")) {
            tolerations.push(t);
        }
    }
    let typed_tolerations: Vec<Toleration> = serde_json::from_value(json!(tolerations))?;
    let node_selector = spec.template.spec.as_ref().and_then(|s| s.node_selector.clone()).unwrap_or_default();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let all_nodes = nodes.list(&Default::default()).await?.items;
    let wanted: Vec<String> = all_nodes
        .iter()
        .filter(|n| eligible(n, &node_selector, &typed_tolerations))
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let pods = crate::replicaset::owned_pods(&ctx.client, &ns, &label_selector(Some(&spec.selector))?, &uid).await?;
    let active: Vec<&Pod> = pods.iter().filter(|p| crate::util::is_active(p)).collect();
    let mut by_node: HashMap<String, Vec<&Pod>> = HashMap::new();
    for p in &active {
        if let Some(n) = pod_node(p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = controller_ref("apps/v1", "DaemonSet", &name, &uid);
    let desired = wanted.len() as i32;
    // Create missing daemon pods.
    for node in &wanted {
        if by_node.contains_key(node) {
            continue;
        }
        let mut t = template.clone();
        t["metadata"]["labels"][HASH] = json!(hash);
        t["spec"]["tolerations"] = json!(tolerations);
        t["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}});
        let pod = crate::replicaset::pod_from_template(&t, &format!("{name}-"), &owner)?;
        pod_api.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, &pod).await?;
    }
    // Remove pods from nodes that are no longer eligible, and duplicates.
    for (node, ps) in &by_node {
        let extra = if wanted.contains(node) { ps.iter().skip(1).collect::<Vec<_>>() } else { ps.iter().collect() };
        for p in extra {
            crate::runtime::gone_is_ok(
                pod_api.delete(p.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await,
            )?;
        }
    }
    // Rolling update: replace old-template pods, at most maxUnavailable at a time.
    let ru = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .map(serde_json::to_value)
        .transpose()?
        .unwrap_or_default();
    let on_delete = spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("OnDelete");
    let max_unavailable = int_or_percent(ru.get("maxUnavailable"), desired, true, 1).max(1);
    let label = |p: &Pod| p.metadata.labels.as_ref().and_then(|l| l.get(HASH)).cloned().unwrap_or_default();
    let unavailable = active.iter().filter(|p| !is_ready(p)).count() as i32;
    if !on_delete {
        let mut budget = max_unavailable - unavailable;
        for p in active.iter().filter(|p| label(p) != hash && is_ready(p)) {
            if budget <= 0 {
                break;
            }
            crate::runtime::gone_is_ok(
                pod_api.delete(p.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await,
            )?;
            budget -= 1;
        }
    }
    let scheduled = active.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()).count();
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let updated = active.iter().filter(|p| label(p) == hash).count();
    let status = json!({"status": {
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": scheduled,
        "numberReady": ready,
        "numberAvailable": ready,
        "numberUnavailable": (desired - ready as i32).max(0),
        "updatedNumberScheduled": updated,
        "numberMisscheduled": 0,
        "observedGeneration": ds.metadata.generation.unwrap_or(0),
    }});
    let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(&name, &pp(MANAGER), &Patch::Merge(status)).await?;
    Ok(Action::requeue(Duration::from_secs(30)))
}
