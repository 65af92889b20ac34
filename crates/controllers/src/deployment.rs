//! Deployment: one ReplicaSet per pod template (named `{deployment}-{hash}`), rolled
//! with `RollingUpdate` (maxSurge / maxUnavailable) or `Recreate`, revisions in the
//! `deployment.kubernetes.io/revision` annotation (so `kubectl rollout history|undo`
//! work), old ReplicaSets beyond `revisionHistoryLimit` removed, and the status
//! `kubectl rollout status` reads.

use crate::runtime::RunLogged;
use crate::util::{Error, controlled_by, controller_ref, int_or_percent, label_selector, pp, template_hash};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, DeleteParams, ListParams, Patch, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const MANAGER: &str = "deployment-controller";
const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH: &str = "pod-template-hash";

struct Ctx {
    client: kube::Client,
}

/// Run the Deployment controller.
pub async fn run(client: kube::Client) {
    let deployments: Api<Deployment> = Api::all(client.clone());
    let rs: Api<ReplicaSet> = Api::all(client.clone());
    Controller::new(deployments, watcher::Config::default())
        .with_config(crate::util::controller_config())
        .owns(rs, watcher::Config::default())
        .run_logged("deployment", reconcile, Arc::new(Ctx { client }))
        .await;
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// The template without the hash label, for comparing a ReplicaSet with a Deployment.
fn bare_template(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(l) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        l.remove(HASH);
    }
    t
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(0)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

async fn scale(api: &Api<ReplicaSet>, rs: &ReplicaSet, to: i32, annotations: Value) -> Result<(), Error> {
    if replicas(rs) == to && annotations.as_object().is_none_or(|a| a.is_empty()) {
        return Ok(());
    }
    let name = rs.metadata.name.clone().unwrap_or_default();
    let mut patch = json!({"spec": {"replicas": to}});
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        patch["metadata"] = json!({"annotations": annotations});
    }
    api.patch(&name, &pp(MANAGER), &Patch::Merge(patch)).await?;
    Ok(())
}

/// maxSurge and maxUnavailable resolved against `desired` (both zero means one
/// unavailable, as in Kubernetes).
fn rolling_limits(spec: &k8s_openapi::api::apps::v1::DeploymentSpec, desired: i32) -> Result<(i32, i32), Error> {
    let ru = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .map(serde_json::to_value)
        .transpose()?
        .unwrap_or_default();
    let max_surge = int_or_percent(ru.get("maxSurge"), desired, true, 1);
    let max_unavailable = int_or_percent(ru.get("maxUnavailable"), desired, false, 0);
    Ok((max_surge, if max_surge == 0 && max_unavailable == 0 { 1 } else { max_unavailable }))
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let name = d.metadata.name.clone().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let spec = &d.spec;
    let desired = spec.replicas.unwrap_or(1).max(0);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = label_selector(Some(&spec.selector))?;
    let matching = rs_api.list(&ListParams::default().labels(&selector)).await?.items;
    // As kube-controller-manager: ReplicaSets that match and have no controller are
    // adopted (their revisions count for the next one).
    let mut adopted = false;
    for r in matching.iter().filter(|r| {
        r.metadata.deletion_timestamp.is_none()
            && !r.metadata.owner_references.iter().flatten().any(|o| o.controller == Some(true))
    }) {
        let mut refs = r.metadata.owner_references.clone().unwrap_or_default();
        refs.push(controller_ref("apps/v1", "Deployment", &name, &uid));
        let patch = json!({"metadata": {"ownerReferences": refs, "uid": r.metadata.uid}});
        match rs_api.patch(r.metadata.name.as_deref().unwrap_or_default(), &pp(MANAGER), &Patch::Merge(patch)).await {
            Ok(_) => adopted = true,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if adopted {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let mut owned: Vec<ReplicaSet> = matching.into_iter().filter(|r| controlled_by(&r.metadata, &uid)).collect();
    let template = serde_json::to_value(&spec.template)?;
    let hash = template_hash(&template);
    let max_rev = owned.iter().map(revision).max().unwrap_or(0);
    let new_idx = owned
        .iter()
        .position(|r| serde_json::to_value(&r.spec.template).map(|t| bare_template(&t) == template).unwrap_or(false));
    let paused = spec.paused.unwrap_or(false);
    let mut new_rs = match new_idx {
        Some(i) => owned.remove(i),
        None if paused => return Ok(Action::await_change()),
        None => {
            let mut t = template.clone();
            t["metadata"]["labels"][HASH] = json!(hash);
            let mut sel = serde_json::to_value(&spec.selector)?;
            sel["matchLabels"][HASH] = json!(hash);
            let mut labels = t["metadata"]["labels"].clone();
            if labels.is_null() {
                labels = json!({});
            }
            let rs = json!({
                "metadata": {
                    "name": format!("{name}-{hash}"),
                    "namespace": ns,
                    "labels": labels,
                    "annotations": {REVISION: (max_rev + 1).to_string(), "deployment.kubernetes.io/desired-replicas": desired.to_string()},
                    "ownerReferences": [controller_ref("apps/v1", "Deployment", &name, &uid)],
                },
                "spec": {"replicas": 0, "selector": sel, "template": t, "minReadySeconds": spec.min_ready_seconds.unwrap_or(0)},
            });
            match rs_api
                .create(
                    &PostParams { field_manager: Some(MANAGER.into()), ..Default::default() },
                    &serde_json::from_value(rs)?,
                )
                .await
            {
                Ok(r) => r,
                Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Action::requeue(Duration::from_millis(200))),
                Err(e) => return Err(e.into()),
            }
        }
    };
    // A re-used old template (rollback) becomes the newest revision.
    if revision(&new_rs) < max_rev
        && !owned.is_empty()
        && revision(&new_rs) <= owned.iter().map(revision).max().unwrap_or(0)
    {
        let rev = max_rev + 1;
        new_rs = rs_api
            .patch(
                new_rs.metadata.name.as_deref().unwrap_or_default(),
                &pp(MANAGER),
                &Patch::Merge(json!({"metadata": {"annotations": {REVISION: rev.to_string()}}})),
            )
            .await?;
    }
    let old: Vec<ReplicaSet> = owned;
    if !paused {
        let strategy = spec.strategy.as_ref().and_then(|s| s.type_.clone()).unwrap_or_else(|| "RollingUpdate".into());
        if strategy == "Recreate" {
            let old_running: i32 =
                old.iter().map(|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0) + replicas(r)).sum();
            for r in &old {
                scale(&rs_api, r, 0, json!({})).await?;
            }
            if old_running == 0 {
                scale(&rs_api, &new_rs, desired, json!({})).await?;
            }
        } else {
            let (max_surge, max_unavailable) = rolling_limits(spec, desired)?;
            let total: i32 = replicas(&new_rs) + old.iter().map(replicas).sum::<i32>();
            // Scale up the new ReplicaSet within the surge.
            let room = desired + max_surge - total;
            let new_target = if old.iter().all(|r| replicas(r) == 0) {
                desired
            } else {
                (replicas(&new_rs) + room.max(0)).min(desired)
            };
            if new_target != replicas(&new_rs) {
                scale(
                    &rs_api,
                    &new_rs,
                    new_target.max(0),
                    json!({"deployment.kubernetes.io/desired-replicas": desired.to_string()}),
                )
                .await?;
            }
            // Scale down old ReplicaSets while keeping enough available.
            let total_available: i32 = available(&new_rs) + old.iter().map(available).sum::<i32>();
            let min_available = desired - max_unavailable;
            let mut can_remove = (total_available - min_available).max(0);
            // Old replicas that are not available can go at once.
            let mut old_sorted = old.clone();
            old_sorted.sort_by_key(revision);
            for r in &old_sorted {
                let unavailable_old = (replicas(r) - available(r)).max(0);
                let remove = (unavailable_old + can_remove).min(replicas(r));
                if remove > 0 {
                    scale(&rs_api, r, replicas(r) - remove, json!({})).await?;
                    can_remove -= (remove - unavailable_old).max(0);
                }
            }
            // Scale the new one down if the deployment shrank.
            if replicas(&new_rs) > desired && old.iter().all(|r| replicas(r) == 0) {
                scale(&rs_api, &new_rs, desired, json!({})).await?;
            }
        }
        // History: keep revisionHistoryLimit old ReplicaSets with no replicas.
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let mut idle: Vec<&ReplicaSet> = old
            .iter()
            .filter(|r| replicas(r) == 0 && r.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0)
            .collect();
        idle.sort_by_key(|r| revision(r));
        if idle.len() > limit {
            for r in &idle[..idle.len() - limit] {
                let _ =
                    rs_api.delete(r.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::background()).await;
            }
        }
    }
    // Status.
    let new_rs = rs_api.get(new_rs.metadata.name.as_deref().unwrap_or_default()).await?;
    let old: Vec<ReplicaSet> = rs_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|r| controlled_by(&r.metadata, &uid) && r.metadata.uid != new_rs.metadata.uid)
        .collect();
    let st = |r: &ReplicaSet, f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>| {
        r.status.as_ref().and_then(f).unwrap_or(0)
    };
    let all: Vec<&ReplicaSet> = std::iter::once(&new_rs).chain(old.iter()).collect();
    let total_replicas: i32 = all.iter().map(|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0)).sum();
    let updated = new_rs.status.as_ref().map(|s| s.replicas).unwrap_or(0);
    let ready: i32 = all.iter().map(|r| st(r, |s| s.ready_replicas)).sum();
    let avail: i32 = all.iter().map(|r| st(r, |s| s.available_replicas)).sum();
    let (_, max_unavailable) = rolling_limits(spec, desired)?;
    let now = vkube_core::meta::now_rfc3339();
    let complete = updated == desired
        && total_replicas == desired
        && avail == desired
        && new_rs.status.as_ref().and_then(|s| s.observed_generation) == new_rs.metadata.generation;
    let existing: Vec<Value> = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    let keep_time = |ty: &str, status: &str| {
        existing
            .iter()
            .find(|c| c["type"] == ty && c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now))
    };
    let available_ok = avail >= desired - max_unavailable;
    let rs_name = new_rs.metadata.name.clone().unwrap_or_default();
    let previous = d.status.clone().unwrap_or_default();
    // Progress as kube's DeploymentProgressing: more updated, ready or available
    // replicas than the last status, or fewer old ones.
    let progressed = updated > previous.updated_replicas.unwrap_or(0)
        || ready > previous.ready_replicas.unwrap_or(0)
        || avail > previous.available_replicas.unwrap_or(0)
        || total_replicas - updated < previous.replicas.unwrap_or(0) - previous.updated_replicas.unwrap_or(0);
    let progressing = existing.iter().find(|c| c["type"] == "Progressing").cloned();
    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    let timed_out = |c: &Value| {
        let since = c["lastUpdateTime"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
        since.is_some_and(|t| jiff::Timestamp::now().as_second() - t.as_second() > i64::from(deadline))
    };
    let progress = |status: &str, reason: &str, message: String, update: Value| json!({"type": "Progressing", "status": status, "reason": reason, "message": message, "lastUpdateTime": update, "lastTransitionTime": keep_time("Progressing", status)});
    let progress_condition = match &progressing {
        _ if complete => {
            let same = progressing.as_ref().is_some_and(|c| c["reason"] == "NewReplicaSetAvailable");
            let update =
                progressing.as_ref().filter(|_| same).map(|c| c["lastUpdateTime"].clone()).unwrap_or(json!(now));
            progress(
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                update,
            )
        }
        Some(c) if !progressed && c["reason"] == "ProgressDeadlineExceeded" => c.clone(),
        Some(c)
            if !progressed
                && c["reason"] == "ReplicaSetUpdated"
                && c["message"].as_str().is_some_and(|m| m.contains(&rs_name)) =>
        {
            if timed_out(c) {
                progress(
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    json!(now),
                )
            } else {
                c.clone()
            }
        }
        _ => progress("True", "ReplicaSetUpdated", format!("ReplicaSet \"{rs_name}\" is progressing."), json!(now)),
    };
    let a_status = if available_ok { "True" } else { "False" };
    let conditions = json!([
        {"type": "Available", "status": a_status, "reason": if available_ok { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }, "message": if available_ok { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." }, "lastUpdateTime": now, "lastTransitionTime": keep_time("Available", a_status)},
        progress_condition,
    ]);
    let status = json!({
        "observedGeneration": d.metadata.generation.unwrap_or(0),
        "replicas": total_replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": avail,
        "unavailableReplicas": (desired - avail).max(0),
        "conditions": conditions,
    });
    let current = serde_json::to_value(&d.status)?;
    let same = [
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    ]
    .iter()
    .all(|k| current.get(k).and_then(Value::as_i64).unwrap_or(0) == status[k].as_i64().unwrap_or(0))
        && current.pointer("/conditions/1/reason") == status.pointer("/conditions/1/reason")
        && current.pointer("/conditions/1/status") == status.pointer("/conditions/1/status")
        && current.pointer("/conditions/1/lastUpdateTime") == status.pointer("/conditions/1/lastUpdateTime")
        && current.pointer("/conditions/0/status") == status.pointer("/conditions/0/status");
    let d_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let rev = revision(&new_rs).to_string();
    if d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)) != Some(&rev) {
        d_api.patch(&name, &pp(MANAGER), &Patch::Merge(json!({"metadata": {"annotations": {REVISION: rev}}}))).await?;
    }
    if !same {
        d_api.patch_status(&name, &pp(MANAGER), &Patch::Merge(json!({"status": status}))).await?;
    }
    Ok(if complete { Action::requeue(Duration::from_secs(60)) } else { Action::requeue(Duration::from_secs(2)) })
}
