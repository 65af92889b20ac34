//! Objects every cluster has after its first start: the namespaces `default`,
//! `kube-system`, `kube-public`, `kube-node-lease`, the `kubernetes` service, and the
//! PriorityClasses `system-node-critical` and `system-cluster-critical`.

use crate::registry::{Registry, WriteOptions};
use serde_json::json;
use vkube_core::status::ApiError;

/// Create the default objects that are missing.
///
/// # Errors
/// Storage errors other than "already exists".
pub async fn ensure_defaults(reg: &Registry) -> Result<(), ApiError> {
    let catalog = reg.catalog().clone();
    let ns = catalog.find("", "v1", "namespaces").ok_or_else(|| ApiError::internal("namespaces not served"))?;
    let opts = WriteOptions { field_manager: Some("vkube-apiserver".into()), ..Default::default() };
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        match reg.create(&ns, "", json!({"metadata": {"name": name}}), &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    // The `default` service accounts of the built-in namespaces, so pods can be created
    // there before (or without) a controller manager.
    let sas =
        catalog.find("", "v1", "serviceaccounts").ok_or_else(|| ApiError::internal("serviceaccounts not served"))?;
    for ns in ["default", "kube-system", "kube-public"] {
        match reg.create(&sas, ns, json!({"metadata": {"name": "default"}}), &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let svc = catalog.find("", "v1", "services").ok_or_else(|| ApiError::internal("services not served"))?;
    let ip = reg.first_service_ip().to_string();
    let kubernetes = json!({
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}
    });
    match reg.create(&svc, "default", kubernetes, &opts).await {
        Ok(_) => {}
        Err(e) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    // kube-apiserver's two system priority classes.
    if let Some(pc) = catalog.find("scheduling.k8s.io", "v1", "priorityclasses") {
        for (name, value, description) in [
            (
                "system-node-critical",
                2_000_001_000,
                "Used for system critical pods that must not be moved from their current node.",
            ),
            (
                "system-cluster-critical",
                2_000_000_000,
                "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
            ),
        ] {
            let class = json!({"metadata": {"name": name}, "value": value, "description": description, "preemptionPolicy": "PreemptLowerPriority"});
            match reg.create(&pc, "", class, &opts).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    // Services stored without claims (by a vkube older than the claims) keep their
    // addresses: claim them before anything else is allocated.
    let claimed = crate::resources::core::service_addresses::claim_unclaimed(reg.store().as_ref(), &svc).await?;
    if claimed > 0 {
        tracing::info!("claimed {claimed} service addresses stored without a claim");
    }
    Ok(())
}
