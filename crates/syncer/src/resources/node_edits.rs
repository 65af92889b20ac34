//! The node-edit modes at the API server (DESIGN.md): what happens when a user updates
//! or patches a virtual node's labels, taints or `spec.unschedulable`.
//!
//! - default (host wins): accepted, with a `Warning` kubectl prints: the change will be
//!   reverted, and the two keys that change that;
//! - virtual scheduler: accepted silently (the syncer keeps it as an override);
//! - sync back: written through to the host node before the API answers; a host refusal
//!   is the answer, and nothing is applied.
//!
//! An admission plugin the binary adds to the virtual API server's chain, next to the
//! node syncer whose behaviour it explains. Writes by the syncer itself (user
//! `vkube-syncer`) pass untouched. A dry run gets the
//! same answer and changes nothing: in sync-back mode the host is asked for a dry run.

use super::nodes::EditableFields;
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use vkube_core::ApiError;
use vkube_core::admission::{Admission, AdmissionOutcome, AdmissionRequest, Operation};

/// The identity the syncer uses against the virtual API server.
pub const SYNCER_USER: &str = "vkube-syncer";

/// The admission hook for virtual node edits.
pub struct NodeEdits {
    /// `controlPlane.advanced.virtualScheduler.enabled`.
    pub virtual_scheduler: bool,
    /// `sync.fromHost.nodes.syncBackChanges`.
    pub sync_back: bool,
    /// The host cluster.
    pub host: kube::Client,
}

/// The warning for a node edit that will be reverted.
pub fn revert_warning(node: &str, changes: &[String]) -> String {
    format!(
        "node {node}: {} will be reverted because node specs are synced from the host cluster; set controlPlane.advanced.virtualScheduler.enabled: true to keep such changes in the virtual cluster, or sync.fromHost.nodes.syncBackChanges: true to apply them to the host node",
        changes.join(", ")
    )
}

#[async_trait]
impl Admission for NodeEdits {
    async fn admit(&self, req: &AdmissionRequest<'_>, object: Value) -> Result<AdmissionOutcome, ApiError> {
        let pass = |object| Ok(AdmissionOutcome { object, warnings: vec![] });
        if !req.is_core("Node") || req.operation != Operation::Update || req.user.name == SYNCER_USER {
            return pass(object);
        }
        let Some(old) = req.old else { return pass(object) };
        let before = EditableFields::of(old);
        let after = EditableFields::of(&object);
        let changes = after.describe_diff(&before);
        if changes.is_empty() {
            return pass(object);
        }
        if self.sync_back {
            let nodes: Api<Node> = Api::all(self.host.clone());
            let host = nodes.get(req.name).await.map_err(host_error)?;
            let host_v = serde_json::to_value(&host).map_err(|e| ApiError::internal(e.to_string()))?;
            let host_fields = EditableFields::of(&host_v);
            // Apply the user's change (not the whole virtual node) to the host node.
            let mut labels = serde_json::Map::new();
            for (k, v) in &after.labels {
                if before.labels.get(k) != Some(v) {
                    labels.insert(k.clone(), json!(v));
                }
            }
            for k in before.labels.keys() {
                if !after.labels.contains_key(k) {
                    labels.insert(k.clone(), Value::Null);
                }
            }
            let mut taints = host_fields.taints.clone();
            for k in before.taints.keys() {
                if !after.taints.contains_key(k) {
                    taints.remove(k);
                }
            }
            for (k, t) in &after.taints {
                if before.taints.get(k) != Some(t) {
                    taints.insert(k.clone(), t.clone());
                }
            }
            let mut patch = json!({"metadata": {"labels": labels}, "spec": {"taints": taints.values().cloned().collect::<Vec<_>>()}});
            if after.unschedulable != before.unschedulable {
                patch["spec"]["unschedulable"] = json!(after.unschedulable);
            }
            // A dry run asks the host for a dry run of the same change: the answer (and a
            // refusal) is the real one, and the host node is left as it is.
            let pp = PatchParams {
                field_manager: Some("vkube-sync-back".into()),
                dry_run: req.dry_run,
                ..Default::default()
            };
            nodes.patch(req.name, &pp, &Patch::Merge(patch)).await.map_err(host_error)?;
            return pass(object);
        }
        if self.virtual_scheduler {
            return pass(object);
        }
        Ok(AdmissionOutcome { object, warnings: vec![revert_warning(req.name, &changes)] })
    }
}

fn host_error(e: kube::Error) -> ApiError {
    match e {
        kube::Error::Api(s) => {
            ApiError::new(s.code, &s.reason, format!("the host cluster refused the change to its node: {}", s.message))
        }
        other => {
            ApiError::unavailable(format!("the host cluster could not be reached to apply the node change: {other}"))
        }
    }
}
