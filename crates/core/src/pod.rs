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

/// kube's `IsPodAvailable`: how long until `pod` counts as available — ready for
/// `min_ready_seconds` since its Ready condition last turned true. `None` when it is not
/// ready; zero when it is available now.
pub fn available_in(
    pod: &Pod,
    min_ready_seconds: i32,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<std::time::Duration> {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"))?;
    if min_ready_seconds <= 0 {
        return Some(std::time::Duration::ZERO);
    }
    let Some(since) = ready.last_transition_time.as_ref() else { return Some(std::time::Duration::ZERO) };
    let due = since.0.as_millisecond() + i64::from(min_ready_seconds) * 1000;
    Some(std::time::Duration::from_millis(u64::try_from(due - now.as_millisecond()).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_available_min_ready_seconds_after_it_became_ready() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-04T10:00:00Z"}]}}))
        .expect("pod");
        let now: k8s_openapi::jiff::Timestamp = "2026-12-04T10:00:04Z".parse().expect("time");
        assert_eq!(available_in(&pod, 0, now), Some(std::time::Duration::ZERO));
        assert_eq!(available_in(&pod, 10, now), Some(std::time::Duration::from_secs(6)));
        assert_eq!(available_in(&pod, 3, now), Some(std::time::Duration::ZERO));
        assert_eq!(available_in(&Pod::default(), 0, now), None);
    }

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
