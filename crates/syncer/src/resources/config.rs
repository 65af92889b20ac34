//! ConfigMaps and Secrets: the ones pods use (or all, with `all: true`) are copied to
//! the host under their host names and kept up to date. A pod's own are synced before
//! its host copy is made ([`ensure_referenced`]), so it never starts without them.

use crate::engine::{self, ResourceSyncer};
use crate::names::Naming;
use crate::{Error, SyncContext};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// The configmap syncer.
pub struct ConfigMapSyncer;
/// The secret syncer.
pub struct SecretSyncer;

/// The host copy of a configmap.
pub fn translate_config_map(naming: Naming<'_>, cm: &ConfigMap) -> ConfigMap {
    ConfigMap {
        metadata: naming.host_metadata("ConfigMap", &cm.metadata),
        data: cm.data.clone(),
        binary_data: cm.binary_data.clone(),
        immutable: cm.immutable,
    }
}

/// The host copy of a secret.
pub fn translate_secret(naming: Naming<'_>, secret: &Secret) -> Secret {
    Secret {
        metadata: naming.host_metadata("Secret", &secret.metadata),
        data: secret.data.clone(),
        string_data: secret.string_data.clone(),
        type_: secret.type_.clone(),
        immutable: secret.immutable,
    }
}

/// Which configmaps and secrets a pod refers to (env, envFrom, volumes, projected
/// sources, image pull secrets).
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

/// Whether a virtual configmap/secret is used by a pod in its namespace.
///
/// # Errors
/// API errors listing pods (only before the pod syncer's cache is ready).
pub async fn is_used(ctx: &SyncContext, kind: &str, ns: &str, name: &str) -> Result<bool, Error> {
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
    Ok(pods.list(&ListParams::default()).await?.items.iter().any(|p| {
        let (cms, secrets) = pod_references(p);
        if kind == "Secret" { secrets.contains(name) } else { cms.contains(name) }
    }))
}

/// Whether this version of a virtual object was written to the host lately (the pods
/// sharing one — `kube-root-ca.crt` — do not each rewrite it).
fn applied_lately(
    ctx: &SyncContext,
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> bool {
    let key = applied_key(ctx, kind, meta);
    let rv = meta.resource_version.as_deref();
    ctx.applied.lock().ok().is_some_and(|a| rv.is_some() && a.get(&key).map(String::as_str) == rv)
}

fn applied_key(
    ctx: &SyncContext,
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> String {
    let name = ctx.naming().host_name(
        kind,
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    );
    format!("{kind}/{name}")
}

fn record_applied(ctx: &SyncContext, kind: &str, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    let key = applied_key(ctx, kind, meta);
    if let (Ok(mut applied), Some(rv)) = (ctx.applied.lock(), meta.resource_version.clone()) {
        applied.insert(key, rv);
    }
}

#[async_trait]
impl ResourceSyncer for ConfigMapSyncer {
    type Object = ConfigMap;
    const NAME: &'static str = "configmap-syncer";

    async fn wanted(&self, ctx: &SyncContext, cm: &ConfigMap) -> Result<bool, Error> {
        let (ns, name) =
            (cm.metadata.namespace.as_deref().unwrap_or_default(), cm.metadata.name.as_deref().unwrap_or_default());
        Ok(ctx.config.all_config_maps || is_used(ctx, "ConfigMap", ns, name).await?)
    }

    fn translate(&self, ctx: &SyncContext, cm: &ConfigMap) -> ConfigMap {
        translate_config_map(ctx.naming(), cm)
    }

    async fn after_apply(&self, ctx: &SyncContext, cm: &ConfigMap, _host: &ConfigMap) -> Result<(), Error> {
        record_applied(ctx, "ConfigMap", &cm.metadata);
        Ok(())
    }

    fn resync(&self) -> Duration {
        Duration::from_secs(120)
    }
}

#[async_trait]
impl ResourceSyncer for SecretSyncer {
    type Object = Secret;
    const NAME: &'static str = "secret-syncer";

    /// Service-account token secrets are the virtual cluster's credentials: never copied.
    async fn wanted(&self, ctx: &SyncContext, secret: &Secret) -> Result<bool, Error> {
        if secret.type_.as_deref() == Some("kubernetes.io/service-account-token") {
            return Ok(false);
        }
        let (ns, name) = (
            secret.metadata.namespace.as_deref().unwrap_or_default(),
            secret.metadata.name.as_deref().unwrap_or_default(),
        );
        Ok(ctx.config.all_secrets || is_used(ctx, "Secret", ns, name).await?)
    }

    fn translate(&self, ctx: &SyncContext, secret: &Secret) -> Secret {
        translate_secret(ctx.naming(), secret)
    }

    async fn after_apply(&self, ctx: &SyncContext, secret: &Secret, _host: &Secret) -> Result<(), Error> {
        record_applied(ctx, "Secret", &secret.metadata);
        Ok(())
    }

    fn resync(&self) -> Duration {
        Duration::from_secs(120)
    }
}

/// Sync, now, the configmaps and secrets a pod needs (before its host copy exists).
///
/// # Errors
/// API errors other than a missing object (the pod then waits on the host, as it would).
pub async fn ensure_referenced(ctx: &SyncContext, pod: &Pod) -> Result<(), Error> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let (cms, secrets) = pod_references(pod);
    if ctx.config.syncs("configMaps") {
        let api: Api<ConfigMap> = Api::namespaced(ctx.virtual_client.clone(), &ns);
        for name in cms {
            if let Some(cm) = api.get_opt(&name).await?
                && !applied_lately(ctx, "ConfigMap", &cm.metadata)
            {
                engine::apply_forced(&ConfigMapSyncer, ctx, &cm).await?;
            }
        }
    }
    if ctx.config.syncs("secrets") {
        let api: Api<Secret> = Api::namespaced(ctx.virtual_client.clone(), &ns);
        for name in secrets {
            if let Some(s) = api.get_opt(&name).await?
                && !applied_lately(ctx, "Secret", &s.metadata)
                && s.type_.as_deref() != Some("kubernetes.io/service-account-token")
            {
                engine::apply_forced(&SecretSyncer, ctx, &s).await?;
            }
        }
    }
    Ok(())
}

/// Run the configmap and secret syncers that are enabled.
pub async fn run(ctx: Arc<SyncContext>) {
    let mut set = tokio::task::JoinSet::new();
    if ctx.config.syncs("configMaps") {
        set.spawn(engine::run(ctx.clone(), ConfigMapSyncer));
    }
    if ctx.config.syncs("secrets") {
        set.spawn(engine::run(ctx.clone(), SecretSyncer));
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_every_reference() {
        let pod: Pod = serde_json::from_value(json!({"spec": {
            "containers": [{"name": "c", "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "a", "key": "k"}}}], "envFrom": [{"secretRef": {"name": "s1"}}]}],
            "initContainers": [{"name": "i", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}}]}],
            "volumes": [{"name": "v1", "configMap": {"name": "b"}}, {"name": "v2", "projected": {"sources": [{"secret": {"name": "s2"}}]}}],
            "imagePullSecrets": [{"name": "pull"}]}}))
        .expect("pod");
        let (cms, secrets) = pod_references(&pod);
        assert_eq!(cms.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(secrets.iter().collect::<Vec<_>>(), ["pull", "s1", "s2", "s3"]);
    }

    #[test]
    fn copies_keep_data_and_name_their_origin() {
        let mapper = crate::names::NameMapper::new("vc", "h");
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "cfg", "namespace": "ns", "uid": "u"}, "data": {"k": "v"}}),
        )
        .expect("cm");
        let host = translate_config_map(mapper.naming(), &cm);
        assert_eq!(host.metadata.name.as_deref(), Some("cfg-x-ns-x-vc"));
        assert_eq!(host.data, cm.data);
        assert!(mapper.is_copy_of(&host.metadata, "ConfigMap", "ns", "cfg"));
    }
}
