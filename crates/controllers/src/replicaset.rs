//! ReplicaSet: keep `spec.replicas` pods matching the template, and report status.

use crate::util::{Error, controlled_by, controller_ref, is_active, is_ready, pp, selector_string};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const MANAGER: &str = "replicaset-controller";

struct Ctx {
    client: kube::Client,
}

/// Run the ReplicaSet controller.
pub async fn run(client: kube::Client) {
    let rs: Api<ReplicaSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    Controller::new(rs, watcher::Config::default())
        .with_config(crate::util::controller_config())
        .owns(pods, watcher::Config::default())
        .run(reconcile, |_, _, _| Action::requeue(Duration::from_millis(500)), Arc::new(Ctx { client }))
        .for_each(|_| async {})
        .await;
}

/// The pods a workload controls, found by selector and controller reference.
pub async fn owned_pods(client: &kube::Client, ns: &str, selector: &str, uid: &str) -> Result<Vec<Pod>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods.list(&ListParams::default().labels(selector)).await?;
    Ok(list.items.into_iter().filter(|p| controlled_by(&p.metadata, uid)).collect())
}

/// A pod for a template owned by a controller.
pub fn pod_from_template(
    template: &Value,
    generate_name: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Result<Pod, Error> {
    let mut md = template.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(m) = md.as_object_mut() {
        m.remove("name");
        m.remove("namespace");
        m.insert("generateName".into(), json!(generate_name));
        m.insert("ownerReferences".into(), json!([owner]));
    }
    Ok(serde_json::from_value(json!({"metadata": md, "spec": template.get("spec").cloned().unwrap_or_default()}))?)
}

/// Which pods to delete first when scaling down: unscheduled, pending, not ready, newest.
pub fn deletion_rank(p: &Pod) -> (u8, u8, u8, std::cmp::Reverse<String>) {
    let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let running = crate::util::phase(p) == "Running";
    let ready = is_ready(p);
    let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    (u8::from(scheduled), u8::from(running), u8::from(ready), std::cmp::Reverse(created))
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if rs.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let spec = &rs.spec;
    let selector = selector_string(Some(&spec.selector));
    let desired = spec.replicas.unwrap_or(1).max(0) as usize;
    let all = owned_pods(&ctx.client, &ns, &selector, &uid).await?;
    let mut active: Vec<Pod> = all.iter().filter(|p| is_active(p)).cloned().collect();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if active.len() < desired {
        let template = serde_json::to_value(&spec.template)?;
        let owner = controller_ref("apps/v1", "ReplicaSet", &name, &uid);
        let pod = pod_from_template(&template, &format!("{name}-"), &owner)?;
        let post = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
        let creates = (0..desired - active.len()).map(|_| pods.create(&post, &pod));
        for r in futures::future::join_all(creates).await {
            match r {
                Ok(p) => active.push(p),
                Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => {
                    return Ok(Action::requeue(Duration::from_secs(2)));
                }
                Err(e) => return Err(e.into()),
            }
        }
    } else if active.len() > desired {
        active.sort_by_key(deletion_rank);
        let extra: Vec<Pod> = active.drain(..active.len() - desired).collect();
        let dp = DeleteParams::default();
        let deletes = extra.iter().map(|p| pods.delete(p.metadata.name.as_deref().unwrap_or_default(), &dp));
        for r in futures::future::join_all(deletes).await {
            if let Err(kube::Error::Api(e)) = &r
                && e.code == 404
            {
                continue;
            }
            r?;
        }
    }
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let labels =
        spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| labels.iter().all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v)))
        .count();
    let status = json!({"status": {
        "replicas": active.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "fullyLabeledReplicas": fully_labeled,
        "observedGeneration": rs.metadata.generation.unwrap_or(0),
    }});
    let current = serde_json::to_value(&rs.status)?;
    let changed = ["replicas", "readyReplicas", "availableReplicas", "fullyLabeledReplicas", "observedGeneration"]
        .iter()
        .any(|k| current.get(k).and_then(Value::as_i64).unwrap_or(0) != status["status"][k].as_i64().unwrap_or(0));
    if changed {
        let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        match api.patch_status(&name, &pp(MANAGER), &Patch::Merge(status)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}
