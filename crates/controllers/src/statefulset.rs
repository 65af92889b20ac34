//! StatefulSet: pods `{name}-{ordinal}` with stable hostnames and per-pod claims from
//! `volumeClaimTemplates`, created in order (each after the previous is Running and
//! Ready, with `OrderedReady`), removed from the highest ordinal, updated from the
//! highest ordinal down (respecting `partition`), with the status
//! `kubectl rollout status` reads.

use crate::runtime::RunLogged;
use crate::util::{Error, controlled_by, controller_ref, is_ready, pp, template_hash};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const MANAGER: &str = "statefulset-controller";
const HASH: &str = "controller-revision-hash";

struct Ctx {
    client: kube::Client,
}

/// Run the StatefulSet controller.
pub async fn run(client: kube::Client) {
    let sts: Api<StatefulSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    Controller::new(sts, watcher::Config::default())
        .with_config(crate::util::controller_config())
        .owns(pods, watcher::Config::default())
        .run_logged("statefulset", reconcile, Arc::new(Ctx { client }))
        .await;
}

fn ordinal(name: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(name)?.strip_prefix('-')?.parse().ok()
}

async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if sts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = sts.metadata.namespace.clone().unwrap_or_default();
    let name = sts.metadata.name.clone().unwrap_or_default();
    let uid = sts.metadata.uid.clone().unwrap_or_default();
    let spec = &sts.spec;
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let template = serde_json::to_value(&spec.template)?;
    let revision = format!("{name}-{}", template_hash(&template));
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let partition =
        spec.update_strategy.as_ref().and_then(|u| u.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0);
    let on_delete = spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()) == Some("OnDelete");
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = crate::util::label_selector(Some(&spec.selector))?;
    let mut pods: Vec<Pod> = pod_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| controlled_by(&p.metadata, &uid))
        .collect();
    pods.sort_by_key(|p| ordinal(&name, p.metadata.name.as_deref().unwrap_or_default()).unwrap_or(i32::MAX));
    let rev_of = |p: &Pod| p.metadata.labels.as_ref().and_then(|l| l.get(HASH)).cloned().unwrap_or_default();
    let healthy =
        |p: &Pod| crate::util::phase(p) == "Running" && is_ready(p) && p.metadata.deletion_timestamp.is_none();
    let owner = controller_ref("apps/v1", "StatefulSet", &name, &uid);
    let mut acted = false;
    // Create missing ordinals in order.
    for i in 0..replicas {
        let pod_name = format!("{name}-{i}");
        if let Some(p) = pods.iter().find(|p| p.metadata.name.as_deref() == Some(pod_name.as_str())) {
            if crate::util::is_terminal(p) {
                crate::runtime::gone_is_ok(pod_api.delete(&pod_name, &DeleteParams::default()).await)?;
                acted = true;
            }
            if !parallel && !healthy(p) {
                break;
            }
            continue;
        }
        // Claims first.
        let mut t = template.clone();
        for vct in spec.volume_claim_templates.iter().flatten() {
            let claim = vct.metadata.name.clone().unwrap_or_default();
            let pvc_name = format!("{claim}-{pod_name}");
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
            if pvcs.get_opt(&pvc_name).await?.is_none() {
                let mut pvc = serde_json::to_value(vct)?;
                pvc["metadata"] = json!({"name": pvc_name, "namespace": ns, "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({}))});
                match pvcs.create(&PostParams::default(), &serde_json::from_value(pvc)?).await {
                    Ok(_) => {}
                    // Made meanwhile (by another pass): it is there, which is what counts.
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let volumes = t["spec"].as_object_mut().map(|m| m.entry("volumes").or_insert_with(|| json!([])));
            if let Some(Value::Array(vs)) = volumes {
                vs.retain(|v| v["name"] != json!(claim));
                vs.push(json!({"name": claim, "persistentVolumeClaim": {"claimName": pvc_name}}));
            }
        }
        t["metadata"]["labels"][HASH] = json!(revision);
        t["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
        t["metadata"]["labels"]["apps.kubernetes.io/pod-index"] = json!(i.to_string());
        t["spec"]["hostname"] = json!(pod_name);
        if let Some(svc) = spec.service_name.as_ref().filter(|s| !s.is_empty()) {
            t["spec"]["subdomain"] = json!(svc);
        }
        let mut pod = crate::replicaset::pod_from_template(&t, "", &owner)?;
        pod.metadata.generate_name = None;
        pod.metadata.name = Some(pod_name.clone());
        match pod_api.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, &pod).await {
            Ok(_) => acted = true,
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        if !parallel {
            break;
        }
    }
    // Scale down from the highest ordinal.
    if !acted {
        let extra: Vec<&Pod> = pods
            .iter()
            .filter(|p| ordinal(&name, p.metadata.name.as_deref().unwrap_or_default()).is_none_or(|o| o >= replicas))
            .collect();
        if let Some(last) = extra.last() {
            if last.metadata.deletion_timestamp.is_none()
                && (parallel
                    || pods.iter().filter(|p| !extra.iter().any(|e| e.metadata.name == p.metadata.name)).all(&healthy))
            {
                let targets: Vec<&&Pod> = if parallel { extra.iter().collect() } else { vec![last] };
                for p in targets {
                    let _ =
                        pod_api.delete(p.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await;
                }
            }
            acted = true;
        }
    }
    // Rolling update from the highest ordinal down to the partition.
    if !acted
        && !on_delete
        && pods.iter().all(healthy)
        && pods.len() as i32 == replicas
        && let Some(p) = pods.iter().rev().find(|p| {
            rev_of(p) != revision
                && ordinal(&name, p.metadata.name.as_deref().unwrap_or_default()).is_some_and(|o| o >= partition)
        })
    {
        crate::runtime::gone_is_ok(
            pod_api.delete(p.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await,
        )?;
    }
    let live: Vec<&Pod> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let ready = live.iter().filter(|p| is_ready(p)).count();
    let updated = live.iter().filter(|p| rev_of(p) == revision).count();
    let current_revision = if updated as i32 == replicas {
        revision.clone()
    } else {
        sts.status.as_ref().and_then(|s| s.current_revision.clone()).unwrap_or_else(|| revision.clone())
    };
    let status = json!({"status": {
        "replicas": live.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": live.iter().filter(|p| rev_of(p) == current_revision).count(),
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": revision,
        "observedGeneration": sts.metadata.generation.unwrap_or(0),
        "collisionCount": 0,
    }});
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(&name, &pp(MANAGER), &Patch::Merge(status)).await?;
    Ok(Action::requeue(Duration::from_secs(if acted { 1 } else { 30 })))
}
