//! `policies.podSecurityStandard` in a virtual cluster: every namespace enforces the
//! level, as vCluster's pod-security controller labels them — new and changed ones by
//! admission, those already there once at start.

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::sync::Arc;

/// Label every namespace of the virtual cluster with `level`, now and from now on.
///
/// # Errors
/// The API server refusing to list or label the namespaces.
pub async fn enforce_everywhere(server: &vkube_apiserver::RunningServer, level: &str) -> anyhow::Result<()> {
    server.state.add_admission(Arc::new(vkube_apiserver::admission::podsecurity::NamespaceStandard {
        level: level.to_string(),
    }));
    let client = crate::host::client_as(server, "vkube-pod-security", &[vkube_apiserver::authz::MASTERS]).await?;
    let namespaces: Api<Namespace> = Api::all(client);
    let pp = PatchParams { field_manager: Some("vkube-pod-security".into()), ..Default::default() };
    for ns in namespaces.list(&ListParams::default()).await.context("listing the virtual namespaces")? {
        let Some(name) = ns.metadata.name else { continue };
        // An empty patch is an update: admission gives it the labels.
        namespaces
            .patch(&name, &pp, &Patch::Merge(serde_json::json!({})))
            .await
            .with_context(|| format!("enforcing pod security standard {level:?} on namespace {name:?}"))?;
    }
    Ok(())
}
