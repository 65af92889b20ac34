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

/// The annotation that lets kube-apiserver keep a default policy object up to date.
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// What kube-apiserver's start-up reconciliation makes of a stored default policy
/// object: the default's labels, annotations and rules (or, for a binding, subjects)
/// added to what is there — nothing an administrator added is taken away —, unless the
/// object says `autoupdate: "false"`. `None` when nothing is to change.
fn reconciled(plural: &str, stored: &Value, default: &Value) -> Option<Value> {
    let meta = |o: &Value, field: &str| o.pointer(&format!("/metadata/{field}")).and_then(Value::as_object).cloned();
    if meta(stored, "annotations").and_then(|a| a.get(AUTOUPDATE).cloned()) == Some(Value::String("false".into())) {
        return None;
    }
    let mut next = stored.clone();
    let mut changed = false;
    for field in ["labels", "annotations"] {
        let mut have = meta(stored, field).unwrap_or_default();
        for (k, v) in meta(default, field).unwrap_or_default() {
            if !have.contains_key(&k) {
                have.insert(k, v);
                changed = true;
            }
        }
        if !have.is_empty() {
            next["metadata"][field] = Value::Object(have);
        }
    }
    let list = |o: &Value, field: &str| o.get(field).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut union = |field: &str, same: &dyn Fn(&Value, &Value) -> bool| {
        let mut have = list(stored, field);
        for want in list(default, field) {
            if !have.iter().any(|h| same(h, &want)) {
                have.push(want);
                changed = true;
            }
        }
        next[field] = Value::Array(have);
    };
    if plural.ends_with("bindings") {
        union("subjects", &|a, b| a == b);
    } else if default.get("aggregationRule").is_some() {
        // Rules of an aggregated role are the aggregation controller's; its selectors
        // are the default's and any more.
        let selectors =
            |o: &Value| o.pointer("/aggregationRule/clusterRoleSelectors").and_then(Value::as_array).cloned();
        let mut have = selectors(stored).unwrap_or_default();
        for want in selectors(default).unwrap_or_default() {
            if !have.contains(&want) {
                have.push(want);
                changed = true;
            }
        }
        next["aggregationRule"] = serde_json::json!({"clusterRoleSelectors": have});
    } else {
        let parse = |v: &Value| serde_json::from_value::<super::rbac::Rule>(v.clone()).ok();
        union("rules", &|a, b| parse(a).is_some() && parse(a) == parse(b));
    }
    changed.then_some(next)
}

/// Store every default policy object that is not there yet, and bring those that are
/// up to date with this version's defaults as kube-apiserver does on every start (see
/// [`reconciled`]).
///
/// # Errors
/// The registry's error for a write other than "already exists".
pub async fn ensure(reg: &Registry) -> Result<(), ApiError> {
    let catalog = reg.catalog().clone();
    let opts = WriteOptions { field_manager: Some("kube-apiserver".into()), ..Default::default() };
    // One list per kind tells what is there (a restart with nothing new writes nothing).
    let mut present = std::collections::HashMap::new();
    for plural in super::KINDS {
        let Some(res) = catalog.find(super::GROUP, "v1", plural) else { continue };
        let list = reg
            .store()
            .list(&res.prefix(), Default::default())
            .await
            .map_err(|e| Registry::store_error(&res, "", e))?;
        for kv in &list.items {
            present.insert(kv.key.clone(), Registry::decode(kv)?);
        }
    }
    for (plural, obj) in policy()? {
        let Some(res) = catalog.find(super::GROUP, "v1", plural) else { continue };
        let namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(stored) = present.get(&res.key(&namespace, &name)) else {
            match reg.create(&res, &namespace, obj, &opts).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
            continue;
        };
        if reconciled(plural, stored, &obj).is_none() {
            continue;
        }
        let result = reg
            .update_with(&res, &namespace, &name, None, &opts, |current| {
                let mut next = reconciled(plural, current, &obj).unwrap_or_else(|| current.clone());
                if let Some(md) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                    md.remove("resourceVersion");
                }
                Ok(next)
            })
            .await;
        match result {
            Ok(_) => tracing::info!(plural, name, "default RBAC object brought up to date"),
            // Another replica did it first, or it went: the next start looks again.
            Err(e) if e.code == 409 || e.code == 404 => {}
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

    #[test]
    fn reconciling_adds_what_is_missing_and_keeps_what_was_added() {
        use serde_json::json;
        let default = json!({"metadata": {"name": "r", "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                      {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]});
        let stored = json!({"metadata": {"name": "r", "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                      {"apiGroups": ["x"], "resources": ["y"], "verbs": ["*"]}]});
        let next = super::reconciled("clusterroles", &stored, &default).expect("a rule is missing");
        let rules = next["rules"].as_array().expect("rules");
        assert_eq!(rules.len(), 3, "{rules:?}");
        assert!(super::reconciled("clusterroles", &next, &default).is_none(), "a second start changes nothing");
        let mut frozen = stored.clone();
        frozen["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] = json!("false");
        assert!(super::reconciled("clusterroles", &frozen, &default).is_none());
        let binding = json!({"metadata": {"name": "b"}, "subjects": [{"kind": "Group", "name": "a"}]});
        let want = json!({"metadata": {"name": "b"}, "subjects": [{"kind": "Group", "name": "a"}, {"kind": "Group", "name": "b"}]});
        let next = super::reconciled("clusterrolebindings", &binding, &want).expect("a subject is missing");
        assert_eq!(next["subjects"].as_array().map(Vec::len), Some(2));
    }
}
