//! Pod state as every controller, the scheduler, the syncer and the simulated nodes read
//! it — one definition of "finished", "active" and "ready".

use k8s_openapi::api::core::v1::Pod;

/// The pod's phase (`Pending` when it has none yet).
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

/// Whether a phase is final (`Succeeded` or `Failed`).
pub fn phase_is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Whether the pod has finished.
pub fn is_terminal(pod: &Pod) -> bool {
    phase_is_terminal(Some(phase(pod)))
}

/// Whether the pod counts as active for a controller (not finished, not deleting).
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// Whether the pod is Ready.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        let pod = |v: serde_json::Value| -> Pod { serde_json::from_value(v).expect("pod") };
        assert!(is_terminal(&pod(serde_json::json!({"status": {"phase": "Failed"}}))));
        assert_eq!(phase(&pod(serde_json::json!({}))), "Pending");
        assert!(is_active(&pod(serde_json::json!({"status": {"phase": "Running"}}))));
        assert!(!is_active(&pod(serde_json::json!({"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z"}}))));
        assert!(is_ready(&pod(serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}))));
    }
}
