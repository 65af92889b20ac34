//! Nodes: allocatable defaults to capacity; `spec.unschedulable` is a field label whose
//! zero value is `false`; kubectl's STATUS (`Ready,SchedulingDisabled`) and ROLES.

use crate::resources::Subresource;
use crate::resources::kind::{
    Column, FieldLabel, Kind, age_of, col, common_merge_key, flag, name_of, none_if_empty, wide,
};
use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};

/// The Node kind.
pub struct NodeKind;

impl Kind for NodeKind {
    type Object = Node;
    const SHORT_NAMES: &'static [&'static str] = &["no"];
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const FIELD_LABELS: &'static [FieldLabel] = &[flag("spec.unschedulable")];
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Status", "string"),
        col("Roles", "string"),
        col("Age", "string"),
        col("Version", "string"),
        wide("Internal-IP", "string"),
        wide("External-IP", "string"),
        wide("OS-Image", "string"),
        wide("Kernel-Version", "string"),
        wide("Container-Runtime", "string"),
    ];

    fn default(node: &mut Node) {
        // As kube-apiserver: allocatable defaults to capacity.
        if let Some(status) = node.status.as_mut()
            && status.allocatable.is_none()
        {
            status.allocatable = status.capacity.clone();
        }
    }

    fn cells(node: &Node) -> Vec<Value> {
        let status = node.status.clone().unwrap_or_default();
        let info = status.node_info.clone().unwrap_or_default();
        let addr = |t: &str| {
            none_if_empty(
                status
                    .addresses
                    .iter()
                    .flatten()
                    .filter(|a| a.type_ == t)
                    .map(|a| a.address.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            )
        };
        vec![
            json!(name_of(&node.metadata)),
            json!(node_status(node)),
            json!(node_roles(node)),
            json!(age_of(&node.metadata)),
            json!(info.kubelet_version),
            json!(addr("InternalIP")),
            json!(addr("ExternalIP")),
            json!(none_if_empty(info.os_image)),
            json!(none_if_empty(info.kernel_version)),
            json!(none_if_empty(info.container_runtime_version)),
        ]
    }

    fn merge_key(path: &[&str]) -> Option<&'static str> {
        match path.last() {
            Some(&"addresses") => Some("type"),
            _ => common_merge_key(path),
        }
    }
}

/// kubectl's node STATUS.
pub fn node_status(node: &Node) -> String {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let mut st = vec![match ready {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }];
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        st.push("SchedulingDisabled");
    }
    st.join(",")
}

/// kubectl's node ROLES.
pub fn node_roles(node: &Node) -> String {
    let mut roles: Vec<String> = node
        .metadata
        .labels
        .iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(r) => Some(r.to_string()),
            None if k == "kubernetes.io/role" => Some(v.clone()),
            None => None,
        })
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    none_if_empty(roles.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shows_cordon_and_roles() {
        let n: Node = serde_json::from_value(json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}, "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})).expect("node");
        assert_eq!(node_status(&n), "Ready,SchedulingDisabled");
        assert_eq!(node_roles(&n), "control-plane");
        let mut n: Node = serde_json::from_value(json!({"status": {"capacity": {"cpu": "2"}}})).expect("node");
        NodeKind::default(&mut n);
        assert_eq!(
            n.status.and_then(|s| s.allocatable).and_then(|a| a.get("cpu").cloned()).map(|q| q.0),
            Some("2".into())
        );
    }
}
