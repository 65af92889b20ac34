//! Small helpers.

use k8s_openapi::api::core::v1::Pod;

/// Whether a pod has finished.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}
