//! kube-apiserver's NodeRestriction: what RBAC's `system:node` rules let any kubelet
//! write, narrowed to its own node — its Node (and no `node-restriction.kubernetes.io/`
//! or other kube-reserved labels, no taint changes), its Lease and CSINode, status and
//! deletion of the pods bound to it, and only mirror pods as new pods. Messages as
//! kube-apiserver words them.

use super::{Admission, AdmissionOutcome, AdmissionRequest, Operation};
use crate::authz::node::node_identity;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeSet;
use vkube_core::status::{ApiError, GroupResource};

/// The plugin.
pub struct NodeRestriction;

const MIRROR: &str = "kubernetes.io/config.mirror";

fn node_name_of(obj: Option<&Value>) -> &str {
    obj.and_then(|o| o.pointer("/spec/nodeName")).and_then(Value::as_str).unwrap_or_default()
}

fn name_of<'a>(req: &'a AdmissionRequest<'_>, object: &'a Value) -> &'a str {
    object.pointer("/metadata/name").and_then(Value::as_str).filter(|n| !n.is_empty()).unwrap_or(req.name)
}

/// The namespace (prefix) of a label key.
fn label_namespace(key: &str) -> &str {
    key.split_once('/').map(|(ns, _)| ns).unwrap_or_default()
}

fn within(namespace: &str, domain: &str) -> bool {
    namespace == domain || namespace.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
}

/// Labels a kubelet may set on its Node although they are in a Kubernetes namespace.
fn is_kubelet_label(key: &str) -> bool {
    const KUBELET_LABELS: [&str; 11] = [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    ];
    let ns = label_namespace(key);
    KUBELET_LABELS.contains(&key) || within(ns, "kubelet.kubernetes.io") || within(ns, "node.kubernetes.io")
}

/// The labels among `changed` a kubelet may not set (kube's `getForbiddenLabels`):
/// never `node-restriction.kubernetes.io/`, and on update no other Kubernetes label
/// but the kubelet's own.
fn forbidden_labels(changed: BTreeSet<String>, create: bool) -> Vec<String> {
    changed
        .into_iter()
        .filter(|key| {
            let ns = label_namespace(key);
            let kubernetes = within(ns, "kubernetes.io") || within(ns, "k8s.io");
            within(ns, "node-restriction.kubernetes.io") || (!create && kubernetes && !is_kubelet_label(key))
        })
        .collect()
}

fn labels(obj: Option<&Value>) -> serde_json::Map<String, Value> {
    obj.and_then(|o| o.pointer("/metadata/labels")).and_then(Value::as_object).cloned().unwrap_or_default()
}

/// Labels added, removed or changed between `old` and `new`.
fn changed_labels(old: Option<&Value>, new: &Value) -> BTreeSet<String> {
    let (before, after) = (labels(old), labels(Some(new)));
    let mut changed: BTreeSet<String> =
        after.iter().filter(|(k, v)| before.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect();
    changed.extend(before.keys().filter(|k| !after.contains_key(*k)).cloned());
    changed
}

#[async_trait]
impl Admission for NodeRestriction {
    async fn admit(&self, req: &AdmissionRequest<'_>, object: Value) -> Result<AdmissionOutcome, ApiError> {
        let Some(node) = node_identity(req.user) else { return Ok(AdmissionOutcome::pass(object)) };
        let t = req.target;
        let name = name_of(req, &object).to_string();
        let refuse = |group: &str, resource: &str, message: String| {
            Err(ApiError::forbidden(GroupResource { group, resource }, &name, message))
        };
        if node.is_empty() {
            return refuse(t.group, t.resource, format!("could not determine node from user {:?}", req.user.name));
        }
        match (t.group, t.resource, t.subresource, req.operation) {
            ("", "pods", None, Operation::Create) => {
                let mirror = object.pointer("/metadata/annotations").and_then(|a| a.get(MIRROR)).is_some();
                if !mirror {
                    let message =
                        format!("pod does not have {MIRROR:?} annotation, node {node:?} can only create mirror pods");
                    return refuse("", "pods", message);
                }
                if node_name_of(Some(&object)) != node {
                    return refuse(
                        "",
                        "pods",
                        format!("node {node:?} can only create pods with spec.nodeName set to itself"),
                    );
                }
            }
            ("", "pods", Some("status"), Operation::Update) if node_name_of(req.old) != node => {
                let message =
                    format!("node {node:?} can only update pod status for pods with spec.nodeName set to itself");
                return refuse("", "pods", message);
            }
            ("", "pods", None, Operation::Delete) if node_name_of(req.old) != node => {
                return refuse(
                    "",
                    "pods",
                    format!("node {node:?} can only delete pods with spec.nodeName set to itself"),
                );
            }
            ("", "nodes", _, Operation::Create | Operation::Update) => {
                if name != node {
                    return refuse("", "nodes", format!("node {node:?} is not allowed to modify node {name:?}"));
                }
                let create = req.operation == Operation::Create;
                let forbidden = forbidden_labels(changed_labels(req.old, &object), create);
                if !forbidden.is_empty() {
                    let message = if create {
                        format!("node {node:?} is not allowed to set the following labels: {}", forbidden.join(", "))
                    } else {
                        format!("is not allowed to modify labels: {}", forbidden.join(", "))
                    };
                    return refuse("", "nodes", message);
                }
                let taints = |o: Option<&Value>| o.and_then(|o| o.pointer("/spec/taints")).cloned().unwrap_or_default();
                if !create && taints(req.old) != taints(Some(&object)) {
                    return refuse("", "nodes", format!("node {node:?} is not allowed to modify taints"));
                }
            }
            ("", "nodes", None, Operation::Delete) if name != node => {
                return refuse("", "nodes", format!("node {node:?} is not allowed to delete node {name:?}"));
            }
            ("coordination.k8s.io", "leases", None, Operation::Create | Operation::Update)
                if req.namespace == "kube-node-lease" && name != node =>
            {
                let message = "can only access node lease with the same name as the requesting node".into();
                return refuse("coordination.k8s.io", "leases", message);
            }
            ("storage.k8s.io", "csinodes", None, Operation::Create | Operation::Update) if name != node => {
                let message = "can only access CSINode with the same name as the requesting node".into();
                return refuse("storage.k8s.io", "csinodes", message);
            }
            _ => {}
        }
        Ok(AdmissionOutcome::pass(object))
    }
}

/// NodeRestriction on `pods/NAME/eviction` by a kubelet: only pods bound to it.
///
/// # Errors
/// kube-apiserver's 403.
pub fn check_eviction(user: &vkube_core::admission::User, pod: &Value, name: &str) -> Result<(), ApiError> {
    match node_identity(user) {
        Some(node) if node_name_of(Some(pod)) != node => Err(ApiError::forbidden(
            GroupResource { group: "", resource: "pods" },
            name,
            format!("node {node} can only evict pods with spec.nodeName set to itself"),
        )),
        _ => Ok(()),
    }
}

/// NodeRestriction on a kubelet's TokenRequest for `serviceaccounts/NAME/token`: bound
/// to a pod (by name and uid) that runs on the kubelet's node, for an audience the
/// pod's projected token volumes ask for (kube's ServiceAccountNodeAudienceRestriction;
/// the audiences of CSI drivers' `tokenRequests` are not looked at).
///
/// # Errors
/// kube-apiserver's 403, 404 or 409.
pub async fn check_token(
    registry: &crate::registry::Registry,
    user: &vkube_core::admission::User,
    namespace: &str,
    name: &str,
    spec: &Value,
) -> Result<(), ApiError> {
    let Some(node) = node_identity(user) else { return Ok(()) };
    let sa = GroupResource { group: "", resource: "serviceaccounts" };
    let refuse = |message: String| Err(ApiError::forbidden(sa, name, message));
    let bound = spec.get("boundObjectRef").filter(|b| b.get("kind").and_then(Value::as_str) == Some("Pod"));
    let Some(bound) = bound else { return refuse("node requested token not bound to a pod".into()) };
    let uid = bound.get("uid").and_then(Value::as_str).unwrap_or_default();
    if uid.is_empty() {
        return refuse("node requested token with a pod binding without a uid".into());
    }
    let pod_name = bound.get("name").and_then(Value::as_str).unwrap_or_default();
    let res = registry.catalog().find("", "v1", "pods").ok_or_else(ApiError::path_not_found)?;
    let pod = registry.get(&res, namespace, pod_name).await?;
    if pod.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
        return refuse(format!(
            "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
        ));
    }
    if node_name_of(Some(&pod)) != node {
        return refuse("node requested token bound to a pod scheduled on a different node".into());
    }
    // The audiences as written: a volume without one and a request without any both
    // mean "" (the API server's), as kube compares them.
    let projected: Vec<&str> = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.pointer("/projected/sources").and_then(Value::as_array))
        .flatten()
        .filter_map(|s| s.get("serviceAccountToken"))
        .map(|t| t.get("audience").and_then(Value::as_str).unwrap_or_default())
        .collect();
    let mut asked: Vec<&str> =
        spec.get("audiences").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    if asked.is_empty() {
        asked.push("");
    }
    if let Some(audience) = asked.into_iter().find(|a| !projected.contains(a)) {
        return refuse(format!(
            "audience {audience:?} not found in pod spec volume, {} is not authorized to request tokens for this audience",
            user.name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelets_may_set_only_their_own_label_namespaces() {
        let set = |keys: &[&str]| keys.iter().map(|k| (*k).to_string()).collect::<BTreeSet<_>>();
        let keys = set(&[
            "node-restriction.kubernetes.io/x",
            "node-role.kubernetes.io/master",
            "kubernetes.io/hostname",
            "node.kubernetes.io/instance-type",
            "team.kubelet.kubernetes.io/a",
            "example.com/anything",
            "foo",
            "sub.k8s.io/b",
        ]);
        assert_eq!(
            forbidden_labels(keys.clone(), false),
            vec!["node-restriction.kubernetes.io/x", "node-role.kubernetes.io/master", "sub.k8s.io/b"]
        );
        assert_eq!(forbidden_labels(keys, true), vec!["node-restriction.kubernetes.io/x"]);
    }
}
