//! vCluster's `policies.resourceQuota` and `policies.limitRange`: a ResourceQuota and a
//! LimitRange named `vc-NAME` in the host namespace, which hold the host copies of the
//! virtual cluster's pods, services and claims together — a total for the whole
//! virtual cluster, as vCluster's chart deploys them. Each carries this cluster's marks;
//! an object of that name someone else made is never touched (the start fails, naming
//! it). Turned off, ours is removed.

use crate::names::NameMapper;
use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Debug;
use vkube_config::VClusterConfig;

/// The name of both host objects (vCluster's).
pub fn policy_name(cluster: &str) -> String {
    format!("vc-{cluster}")
}

fn metadata(
    mapper: &NameMapper,
    cluster: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> ObjectMeta {
    let mut all = labels.clone();
    all.extend(mapper.marks(""));
    all.remove(crate::names::VIRTUAL_NAMESPACE);
    ObjectMeta {
        name: Some(policy_name(cluster)),
        namespace: Some(mapper.host_namespace.clone()),
        labels: Some(all),
        annotations: (!annotations.is_empty()).then(|| annotations.clone()),
        ..Default::default()
    }
}

fn quantities(m: &BTreeMap<String, String>) -> Value {
    json!(m)
}

/// The host ResourceQuota `vc-NAME` the configuration asks for.
pub fn resource_quota(config: &VClusterConfig, mapper: &NameMapper, cluster: &str) -> Option<ResourceQuota> {
    let q = config.resource_quota.as_ref()?;
    let mut spec = json!({"hard": quantities(&q.hard)});
    if !q.scope_selector.is_empty() {
        spec["scopeSelector"] = json!({"matchExpressions": q.scope_selector});
    }
    if !q.scopes.is_empty() {
        spec["scopes"] = json!(q.scopes);
    }
    let spec = serde_json::from_value(spec)
        .inspect_err(|e| tracing::error!(error = %e, "policies.resourceQuota is not a ResourceQuota spec"))
        .ok()?;
    Some(ResourceQuota {
        metadata: metadata(mapper, cluster, &q.labels, &q.annotations),
        spec: Some(spec),
        status: None,
    })
}

/// The host LimitRange `vc-NAME` the configuration asks for: one `Container` limit.
pub fn limit_range(config: &VClusterConfig, mapper: &NameMapper, cluster: &str) -> Option<LimitRange> {
    let l = config.limit_range.as_ref()?;
    let mut limit = json!({"type": "Container"});
    for (key, m) in [
        ("default", &l.default),
        ("defaultRequest", &l.default_request),
        ("min", &l.min),
        ("max", &l.max),
        ("maxLimitRequestRatio", &l.max_limit_request_ratio),
    ] {
        if !m.is_empty() {
            limit[key] = quantities(m);
        }
    }
    let spec = serde_json::from_value(json!({"limits": [limit]}))
        .inspect_err(|e| tracing::error!(error = %e, "policies.limitRange is not a LimitRange spec"))
        .ok()?;
    Some(LimitRange { metadata: metadata(mapper, cluster, &l.labels, &l.annotations), spec: Some(spec) })
}

/// Make the host object what `want` says (or remove ours when `want` is `None`).
async fn ensure<K>(api: &Api<K>, mapper: &NameMapper, name: &str, want: Option<K>, what: &str) -> anyhow::Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let current = match api.get_opt(name).await {
        Ok(c) => c,
        // Credentials without the grant (policies never turned on): nothing of ours there.
        Err(kube::Error::Api(e)) if e.code == 403 && want.is_none() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if let Some(c) = &current
        && !mapper.owns(c.meta())
    {
        if want.is_some() {
            anyhow::bail!(
                "the host {what} {}/{name} exists and was not made by this virtual cluster; \
                 vkube does not touch it (remove it, or turn off policies in vcluster.yaml)",
                mapper.host_namespace
            );
        }
        return Ok(());
    }
    let pp = PostParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() };
    match (current, want) {
        (None, Some(w)) => {
            api.create(&pp, &w).await?;
            tracing::info!(namespace = %mapper.host_namespace, name, what, "created the host policy object");
        }
        (Some(c), Some(mut w)) => {
            w.meta_mut().resource_version = c.meta().resource_version.clone();
            api.replace(name, &pp, &w).await?;
        }
        (Some(_), None) => {
            api.delete(name, &DeleteParams::default()).await?;
            tracing::info!(namespace = %mapper.host_namespace, name, what, "removed the host policy object");
        }
        (None, None) => {}
    }
    Ok(())
}

/// Deploy (or remove) the host ResourceQuota and LimitRange of a virtual cluster.
///
/// # Errors
/// A host that refuses, or an object of that name this cluster did not make.
pub async fn ensure_host_policies(
    host: &kube::Client,
    mapper: &NameMapper,
    cluster: &str,
    config: &VClusterConfig,
) -> anyhow::Result<()> {
    let name = policy_name(cluster);
    let quotas: Api<ResourceQuota> = Api::namespaced(host.clone(), &mapper.host_namespace);
    ensure(&quotas, mapper, &name, resource_quota(config, mapper, cluster), "ResourceQuota").await?;
    let limits: Api<LimitRange> = Api::namespaced(host.clone(), &mapper.host_namespace);
    ensure(&limits, mapper, &name, limit_range(config, mapper, cluster), "LimitRange").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_objects_are_vclusters() {
        let text =
            "policies:\n  resourceQuota:\n    enabled: true\n    quota:\n      count/pods: 2\n    labels: {team: a}\n";
        let config = vkube_config::VClusterConfig::parse("v.yaml", text).expect("parses").config;
        let mapper = NameMapper::new("vc", "vkube-vc");
        let q = resource_quota(&config, &mapper, "vc").expect("quota");
        assert_eq!(q.metadata.name.as_deref(), Some("vc-vc"));
        let labels = q.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert!(mapper.owns(&q.metadata));
        let hard = q.spec.and_then(|s| s.hard).unwrap_or_default();
        assert_eq!(hard.get("count/pods").map(|v| v.0.as_str()), Some("2"));
        assert_eq!(hard.get("limits.memory").map(|v| v.0.as_str()), Some("40Gi"));
        let l = limit_range(&config, &mapper, "vc").expect("auto follows the quota");
        let limit = &l.spec.expect("spec").limits[0];
        assert_eq!(limit.type_, "Container");
        assert_eq!(limit.default.as_ref().and_then(|d| d.get("cpu")).map(|v| v.0.as_str()), Some("1"));
        assert!(limit.max.is_none());
    }
}
