//! ConfigMaps and Secrets: the ones pods use (or all, with `all: true`) are copied to
//! the host under their translated names and kept up to date.

use crate::{Error, SyncContext};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Which configmaps and secrets a pod spec refers to.
pub fn references(pod: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let spec = pod.get("spec").cloned().unwrap_or_default();
    let s = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(String::from);
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in spec.get(list).and_then(Value::as_array).into_iter().flatten() {
            for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                cms.extend(s(e, "/valueFrom/configMapKeyRef/name"));
                secrets.extend(s(e, "/valueFrom/secretKeyRef/name"));
            }
            for f in c.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
                cms.extend(s(f, "/configMapRef/name"));
                secrets.extend(s(f, "/secretRef/name"));
            }
        }
    }
    for v in spec.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        cms.extend(s(v, "/configMap/name"));
        secrets.extend(s(v, "/secret/secretName"));
        for src in v.pointer("/projected/sources").and_then(Value::as_array).into_iter().flatten() {
            cms.extend(s(src, "/configMap/name"));
            secrets.extend(s(src, "/secret/name"));
        }
    }
    for p in spec.get("imagePullSecrets").and_then(Value::as_array).into_iter().flatten() {
        secrets.extend(s(p, "/name"));
    }
    (cms, secrets)
}

/// The host copy of a configmap or secret.
pub fn translate(kind: &str, virtual_obj: &Value, ctx: &SyncContext) -> Value {
    let mut out = json!({"apiVersion": "v1", "kind": kind, "metadata": ctx.host_metadata(kind, virtual_obj)});
    for f in ["data", "binaryData", "stringData", "type", "immutable"] {
        if let Some(v) = virtual_obj.get(f) {
            out[f] = v.clone();
        }
    }
    out
}

async fn apply_host(ctx: &SyncContext, kind: &str, virtual_obj: &Value) -> Result<(), Error> {
    let host = translate(kind, virtual_obj, ctx);
    let name = host["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let pp = PatchParams::apply(crate::MANAGER).force();
    let rv = virtual_obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    let key = format!("{kind}/{name}");
    let virtual_ns = virtual_obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    let virtual_name = virtual_obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let free = match kind {
        "Secret" => ctx.may_write::<Secret>(kind, &name, virtual_ns, virtual_name).await?,
        _ => ctx.may_write::<ConfigMap>(kind, &name, virtual_ns, virtual_name).await?,
    };
    if !free {
        ctx.report_name_taken(kind, virtual_obj, &name).await;
        return Ok(());
    }
    match kind {
        "Secret" => {
            let api: Api<Secret> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
            api.patch(&name, &pp, &Patch::Apply(host)).await?;
        }
        _ => {
            let api: Api<ConfigMap> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
            api.patch(&name, &pp, &Patch::Apply(host)).await?;
        }
    }
    if let Ok(mut applied) = ctx.applied.lock() {
        applied.insert(key, rv);
    }
    Ok(())
}

/// Whether this version of a virtual object was written to the host lately.
fn applied_lately(ctx: &SyncContext, kind: &str, virtual_obj: &Value) -> bool {
    let name = virtual_obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let ns = virtual_obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    let rv = virtual_obj.pointer("/metadata/resourceVersion").and_then(Value::as_str);
    let key = format!("{kind}/{}", crate::names::HostNames::host_name_for(ctx, kind, ns, name));
    ctx.applied.lock().ok().is_some_and(|a| rv.is_some() && a.get(&key).map(String::as_str) == rv)
}

/// Sync, now, the configmaps and secrets a pod needs (before its host copy exists).
///
/// # Errors
/// API errors other than a missing object (the pod then waits on the host, as it would).
pub async fn ensure_referenced(ctx: &SyncContext, pod: &Pod) -> Result<(), Error> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let (cms, secrets) = references(&serde_json::to_value(pod)?);
    if ctx.config.syncs("configMaps") {
        let api: Api<ConfigMap> = Api::namespaced(ctx.virtual_client.clone(), &ns);
        for name in cms {
            if let Some(cm) = api.get_opt(&name).await? {
                let cm = serde_json::to_value(&cm)?;
                if !applied_lately(ctx, "ConfigMap", &cm) {
                    apply_host(ctx, "ConfigMap", &cm).await?;
                }
            }
        }
    }
    if ctx.config.syncs("secrets") {
        let api: Api<Secret> = Api::namespaced(ctx.virtual_client.clone(), &ns);
        for name in secrets {
            if let Some(s) = api.get_opt(&name).await? {
                let s = serde_json::to_value(&s)?;
                if !applied_lately(ctx, "Secret", &s) {
                    apply_host(ctx, "Secret", &s).await?;
                }
            }
        }
    }
    Ok(())
}

/// Whether a virtual configmap/secret is used by a pod in its namespace.
pub async fn is_used(ctx: &SyncContext, kind: &str, ns: &str, name: &str) -> Result<bool, Error> {
    let uses = |p: &Pod| {
        let (cms, secrets) = pod_references(p);
        if kind == "Secret" { secrets.contains(name) } else { cms.contains(name) }
    };
    // The pod syncer's cache, once it has listed: no list of every pod per question
    // (the cleanup sweep asks for every synced configmap and secret each pass).
    if let Some(cache) = ctx.virtual_pods.get()
        && futures::FutureExt::now_or_never(cache.wait_until_ready()).is_some()
    {
        return Ok(cache.state().iter().any(|p| {
            let refs = if kind == "Secret" { &p.secrets } else { &p.config_maps };
            p.metadata.namespace.as_deref() == Some(ns) && refs.iter().any(|r| r == name)
        }));
    }
    let pods: Api<Pod> = Api::namespaced(ctx.virtual_client.clone(), ns);
    Ok(pods.list(&ListParams::default()).await?.items.iter().any(uses))
}

/// [`references`] of a typed pod, without converting it to JSON first.
pub fn pod_references(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let Some(spec) = pod.spec.as_ref() else { return (cms, secrets) };
    let mut env = |env: Option<&Vec<k8s_openapi::api::core::v1::EnvVar>>,
                   env_from: Option<&Vec<k8s_openapi::api::core::v1::EnvFromSource>>| {
        for e in env.into_iter().flatten() {
            let from = e.value_from.as_ref();
            cms.extend(from.and_then(|f| f.config_map_key_ref.as_ref()).map(|r| r.name.clone()));
            secrets.extend(from.and_then(|f| f.secret_key_ref.as_ref()).map(|r| r.name.clone()));
        }
        for f in env_from.into_iter().flatten() {
            cms.extend(f.config_map_ref.as_ref().map(|r| r.name.clone()));
            secrets.extend(f.secret_ref.as_ref().map(|r| r.name.clone()));
        }
    };
    for c in &spec.containers {
        env(c.env.as_ref(), c.env_from.as_ref());
    }
    for c in spec.init_containers.iter().flatten() {
        env(c.env.as_ref(), c.env_from.as_ref());
    }
    for c in spec.ephemeral_containers.iter().flatten() {
        env(c.env.as_ref(), c.env_from.as_ref());
    }
    for v in spec.volumes.iter().flatten() {
        cms.extend(v.config_map.as_ref().map(|c| c.name.clone()));
        secrets.extend(v.secret.as_ref().and_then(|s| s.secret_name.clone()));
        for src in v.projected.as_ref().and_then(|p| p.sources.as_ref()).into_iter().flatten() {
            cms.extend(src.config_map.as_ref().map(|c| c.name.clone()));
            secrets.extend(src.secret.as_ref().map(|s| s.name.clone()));
        }
    }
    for p in spec.image_pull_secrets.iter().flatten() {
        secrets.insert(p.name.clone());
    }
    (cms, secrets)
}

async fn reconcile_obj(kind: &'static str, obj: Value, ctx: Arc<SyncContext>) -> Result<Action, Error> {
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    if obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return Ok(Action::await_change());
    }
    if kind == "Secret" && obj.get("type").and_then(Value::as_str) == Some("kubernetes.io/service-account-token") {
        return Ok(Action::await_change());
    }
    let all = if kind == "Secret" { ctx.config.all_secrets } else { ctx.config.all_config_maps };
    if all || is_used(&ctx, kind, &ns, &name).await? {
        apply_host(&ctx, kind, &obj).await?;
    }
    Ok(Action::requeue(Duration::from_secs(120)))
}

/// Run the configmap and secret syncers.
pub async fn run(ctx: Arc<SyncContext>) {
    let mut set = tokio::task::JoinSet::new();
    if ctx.config.syncs("configMaps") {
        let c = ctx.clone();
        set.spawn(async move {
            let api: Api<ConfigMap> = Api::all(c.virtual_client.clone());
            Controller::new(api, watcher::Config::default())
                .with_config(kube::runtime::controller::Config::default().concurrency(crate::RECONCILE_CONCURRENCY))
                .run(
                    |o, ctx| async move { reconcile_obj("ConfigMap", serde_json::to_value(&*o)?, ctx).await },
                    |_, _, _| Action::requeue(Duration::from_secs(1)),
                    c,
                )
                .for_each(|_| async {})
                .await;
        });
    }
    if ctx.config.syncs("secrets") {
        let c = ctx.clone();
        set.spawn(async move {
            let api: Api<Secret> = Api::all(c.virtual_client.clone());
            Controller::new(api, watcher::Config::default())
                .with_config(kube::runtime::controller::Config::default().concurrency(crate::RECONCILE_CONCURRENCY))
                .run(
                    |o, ctx| async move { reconcile_obj("Secret", serde_json::to_value(&*o)?, ctx).await },
                    |_, _, _| Action::requeue(Duration::from_secs(1)),
                    c,
                )
                .for_each(|_| async {})
                .await;
        });
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_reference() {
        let pod = json!({"spec": {"containers": [{"env": [{"valueFrom": {"configMapKeyRef": {"name": "a"}}}], "envFrom": [{"secretRef": {"name": "s1"}}]}], "volumes": [{"configMap": {"name": "b"}}, {"projected": {"sources": [{"secret": {"name": "s2"}}]}}], "imagePullSecrets": [{"name": "pull"}]}});
        let (cms, secrets) = references(&pod);
        assert_eq!(cms.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(secrets.iter().collect::<Vec<_>>(), ["pull", "s1", "s2"]);
        // The typed walk finds the same (containers need a name to be a valid Pod).
        let mut typed = pod.clone();
        typed["spec"]["containers"][0]["name"] = json!("c");
        typed["spec"]["initContainers"] =
            json!([{"name": "i", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}}]}]);
        typed["spec"]["volumes"][0]["name"] = json!("v1");
        typed["spec"]["volumes"][1]["name"] = json!("v2");
        let typed: Pod = serde_json::from_value(typed).expect("pod");
        let (tcms, tsecrets) = pod_references(&typed);
        assert_eq!(tcms, cms);
        assert_eq!(tsecrets.into_iter().collect::<Vec<_>>(), ["pull", "s1", "s2", "s3"]);
    }
}
