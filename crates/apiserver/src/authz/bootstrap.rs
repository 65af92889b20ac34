//! kube-apiserver's default RBAC policy, stored on first start: the cluster roles
//! (`cluster-admin`, `admin`, `edit`, `view` and their aggregation labels,
//! `system:discovery`, `system:basic-user`, `system:public-info-viewer`, the controller,
//! scheduler and node roles, ...), the roles in `kube-system` and `kube-public`, and
//! their bindings — the same names, rules, labels and
//! `rbac.authorization.kubernetes.io/autoupdate` annotations as kube-apiserver 1.36
//! (`bootstrap-policy.json` is what a fresh kube-apiserver v1.36.2 serves, read back
//! from it).

use crate::registry::{Registry, WriteOptions};
use serde_json::Value;
use vkube_core::status::ApiError;

const POLICY: &str = include_str!("bootstrap-policy.json");
/// What vkube's own components need beyond kube's roles for the same work (its
/// controllers write status by patch where kube's update, and read through their own
/// watches where kube-controller-manager shares its informers; the syncer's role in a
/// virtual cluster), as `vkube:controller:NAME` and `vkube:syncer` cluster roles bound
/// to the same identities.
const VKUBE_POLICY: &str = include_str!("vkube-policy.json");

/// The default policy objects, by plural.
///
/// # Errors
/// A 500 if the embedded policy does not parse (a build defect).
pub fn policy() -> Result<Vec<(&'static str, Value)>, ApiError> {
    let mut out = Vec::new();
    for text in [POLICY, VKUBE_POLICY] {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| ApiError::internal(format!("bootstrap policy: {e}")))?;
        for plural in super::KINDS {
            for item in doc.get(plural).and_then(Value::as_array).into_iter().flatten() {
                out.push((plural, item.clone()));
            }
        }
    }
    Ok(out)
}

/// The rules of kube's `system:node` cluster role (`NodeRules()`), which the Node
/// authorizer applies to what it does not subdivide.
pub fn node_rules() -> Vec<super::rbac::Rule> {
    let roles = policy().unwrap_or_else(|e| {
        tracing::error!(error = %e.message, "the bootstrap policy does not parse; kubelets get nothing");
        Vec::new()
    });
    roles
        .into_iter()
        .find(|(plural, r)| {
            *plural == "clusterroles" && r.pointer("/metadata/name").and_then(Value::as_str) == Some("system:node")
        })
        .and_then(|(_, r)| serde_json::from_value(r.get("rules").cloned().unwrap_or_default()).ok())
        .unwrap_or_default()
}

/// Store every default policy object that is not there yet (one an administrator
/// changed or removed on purpose stays as it is unless it is missing).
///
/// # Errors
/// The registry's error for a write other than "already exists".
pub async fn ensure(reg: &Registry) -> Result<(), ApiError> {
    let catalog = reg.catalog().clone();
    let opts = WriteOptions { field_manager: Some("kube-apiserver".into()), ..Default::default() };
    // One list per kind tells what is there (a restart writes nothing).
    let mut present = std::collections::HashSet::new();
    for plural in super::KINDS {
        let Some(res) = catalog.find(super::GROUP, "v1", plural) else { continue };
        let list = reg
            .store()
            .list(&res.prefix(), Default::default())
            .await
            .map_err(|e| Registry::store_error(&res, "", e))?;
        present.extend(list.items.into_iter().map(|kv| kv.key));
    }
    for (plural, obj) in policy()? {
        let Some(res) = catalog.find(super::GROUP, "v1", plural) else { continue };
        let namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        if present.contains(&res.key(&namespace, &name)) {
            continue;
        }
        match reg.create(&res, &namespace, obj, &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_policy_has_kube_apiservers_roles_and_bindings() {
        let policy = super::policy().expect("parses");
        let names: Vec<String> =
            policy.iter().map(|(p, o)| format!("{p}/{}", o["metadata"]["name"].as_str().unwrap_or_default())).collect();
        for want in [
            "clusterroles/cluster-admin",
            "clusterroles/admin",
            "clusterroles/edit",
            "clusterroles/view",
            "clusterroles/system:discovery",
            "clusterroles/system:basic-user",
            "clusterroles/system:public-info-viewer",
            "clusterroles/system:kube-scheduler",
            "clusterroles/system:controller:replicaset-controller",
            "clusterrolebindings/cluster-admin",
            "clusterrolebindings/system:discovery",
            "rolebindings/system::leader-locking-kube-scheduler",
        ] {
            assert!(names.contains(&want.to_string()), "{want} missing");
        }
        let (_, admin) = policy
            .iter()
            .find(|(p, o)| *p == "clusterroles" && o["metadata"]["name"] == "cluster-admin")
            .expect("cluster-admin");
        assert_eq!(admin["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"], "true");
    }
}
