//! Pods: created Pending with their QoS class, defaulted as kube-apiserver does (service
//! account, priority, the not-ready/unreachable tolerations), a spec that changes only
//! where kube-apiserver lets it, deleted at once while unscheduled or finished, and
//! kubectl's columns.
//!
//! Also here: the ServiceAccount admission of pods lives in [`crate::tokens`]; binding,
//! eviction and logs in [`crate::subresources`].

use super::podspec::{default_pod_spec, qos_class, validate_pod_spec};
use crate::resources::Subresource;
use crate::resources::kind::{
    Column, FieldLabel, Kind, age_of, col, default_to, flag, label, name_of, none_if_empty, wide,
};
use k8s_openapi::api::core::v1::{Pod, PodStatus, Toleration};
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The Pod kind.
pub struct PodKind;

fn validate_spec(pod: &Pod) -> Vec<Cause> {
    match &pod.spec {
        Some(spec) => validate_pod_spec(spec, "spec"),
        None => vec![Cause::required("spec.containers")],
    }
}

/// kube-apiserver's `ValidatePodEphemeralContainersUpdate`: existing ephemeral
/// containers stay as they are; new ones are named uniquely, have an image, and none of
/// what an ephemeral container may not have.
fn ephemeral_update_causes(pod: &Pod, old: &Pod) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let new = spec.ephemeral_containers.clone().unwrap_or_default();
    let before = old.spec.as_ref().and_then(|s| s.ephemeral_containers.clone()).unwrap_or_default();
    for e in &before {
        match new.iter().find(|n| n.name == e.name) {
            None => causes.push(Cause::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {:?} may not be removed", e.name),
            )),
            Some(n) if n != e => causes.push(Cause::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {:?} may not be changed", e.name),
            )),
            Some(_) => {}
        }
    }
    let mut names: Vec<&str> =
        spec.containers.iter().chain(spec.init_containers.iter().flatten()).map(|c| c.name.as_str()).collect();
    for (i, e) in new.iter().enumerate() {
        let at = |f: &str| format!("spec.ephemeralContainers[{i}].{f}");
        if e.name.is_empty() {
            causes.push(Cause::required(at("name")));
        } else if names.contains(&e.name.as_str()) {
            causes.push(Cause::duplicate(at("name"), &e.name));
        }
        names.push(&e.name);
        if e.image.as_deref().unwrap_or_default().is_empty() {
            causes.push(Cause::required(at("image")));
        }
        for (field, set) in [
            ("ports", e.ports.as_ref().is_some_and(|p| !p.is_empty())),
            ("livenessProbe", e.liveness_probe.is_some()),
            ("readinessProbe", e.readiness_probe.is_some()),
            ("startupProbe", e.startup_probe.is_some()),
            ("lifecycle", e.lifecycle.is_some()),
        ] {
            if set {
                causes.push(Cause::forbidden(at(field), "cannot be set for an Ephemeral Container"));
            }
        }
        if let Some(target) = e.target_container_name.as_deref().filter(|t| !t.is_empty())
            && !spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| c.name == target)
        {
            causes.push(Cause {
                reason: "FieldValueNotFound".into(),
                message: format!("Not found: {target:?}"),
                field: at("targetContainerName"),
            });
        }
    }
    causes
}

impl Kind for PodKind {
    type Object = Pod;
    const SHORT_NAMES: &'static [&'static str] = &["po"];
    const IN_ALL: bool = true;
    const TRACKS_GENERATION: bool = true;
    const SUBRESOURCES: &'static [Subresource] = &[
        Subresource::Status,
        Subresource::Binding,
        Subresource::Eviction,
        Subresource::Log,
        Subresource::Exec,
        Subresource::Attach,
        Subresource::PortForward,
        Subresource::EphemeralContainers,
    ];
    const FIELD_LABELS: &'static [FieldLabel] = &[
        label("spec.nodeName"),
        label("spec.restartPolicy"),
        label("spec.schedulerName"),
        label("spec.serviceAccountName"),
        flag("spec.hostNetwork"),
        label("status.phase"),
        label("status.podIP"),
        // Accepted by kube-apiserver's field label conversion, never in its field set.
        label("status.podIPs"),
        label("status.nominatedNodeName"),
    ];
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Ready", "string"),
        col("Status", "string"),
        col("Restarts", "string"),
        col("Age", "string"),
        wide("IP", "string"),
        wide("Node", "string"),
        wide("Nominated Node", "string"),
        wide("Readiness Gates", "string"),
    ];

    fn prepare_for_create(pod: &mut Pod) {
        let qos = pod.spec.as_ref().map(qos_class).unwrap_or("BestEffort");
        pod.status =
            Some(PodStatus { phase: Some("Pending".into()), qos_class: Some(qos.into()), ..Default::default() });
    }

    fn default(pod: &mut Pod) {
        let Some(spec) = pod.spec.as_mut() else { return };
        default_pod_spec(spec);
        default_to(&mut spec.service_account_name, || "default".into());
        if spec.service_account.is_none() {
            spec.service_account = spec.service_account_name.clone();
        }
        default_to(&mut spec.priority, || 0);
        default_to(&mut spec.preemption_policy, || "PreemptLowerPriority".into());
        let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
        for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
            if !tolerations.iter().any(|t| t.key.as_deref() == Some(key)) {
                tolerations.push(Toleration {
                    key: Some(key.into()),
                    operator: Some("Exists".into()),
                    effect: Some("NoExecute".into()),
                    toleration_seconds: Some(300),
                    value: None,
                });
            }
        }
    }

    fn validate(pod: &Pod) -> Vec<Cause> {
        let mut causes = validate_spec(pod);
        if pod.spec.as_ref().is_some_and(|s| s.ephemeral_containers.as_ref().is_some_and(|e| !e.is_empty())) {
            causes.push(Cause::forbidden("spec.ephemeralContainers", "cannot be set on create"));
        }
        causes
    }

    fn validate_ephemeral_update(pod: &Pod, old: &Pod) -> Vec<Cause> {
        ephemeral_update_causes(pod, old)
    }

    fn validate_update(pod: &Pod, old: &Pod) -> Vec<Cause> {
        let mut causes = validate_spec(pod);
        // Only images, activeDeadlineSeconds, tolerations and terminationGracePeriodSeconds
        // change in a pod spec; nodeName is set once (binding).
        let mutable_cleared = |pod: &Pod| {
            let mut spec = pod.spec.clone().unwrap_or_default();
            for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
                c.image = None;
            }
            spec.active_deadline_seconds = None;
            spec.tolerations = None;
            spec.termination_grace_period_seconds = None;
            spec.node_name = None;
            spec
        };
        let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        if !node(old).is_empty() && node(old) != node(pod) {
            causes.push(Cause::immutable("spec.nodeName"));
        }
        if mutable_cleared(pod) != mutable_cleared(old) {
            causes.push(Cause::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
        causes
    }

    fn grace_period(pod: &Pod, requested: Option<i64>) -> Option<i64> {
        // Unscheduled and finished pods go at once, as in kube-apiserver.
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default();
        if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
            return Some(0);
        }
        Some(
            requested
                .unwrap_or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30)),
        )
    }

    fn field_value(obj: &Value, label: &FieldLabel) -> String {
        match label.path {
            "status.podIPs" => String::new(),
            // kube-apiserver reads the first of `status.podIPs`.
            "status.podIP" => {
                obj.pointer("/status/podIPs/0/ip").and_then(Value::as_str).unwrap_or_default().to_string()
            }
            path => vkube_core::selector::field_value(obj, path).unwrap_or_else(|| label.zero.to_string()),
        }
    }

    fn cells(pod: &Pod) -> Vec<Value> {
        let status = pod.status.as_ref();
        let statuses = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
        let total = pod.spec.as_ref().map_or(0, |s| s.containers.len());
        let ready = statuses.iter().filter(|c| c.ready).count();
        let restarts: i64 = statuses.iter().map(|c| i64::from(c.restart_count)).sum();
        let text = |v: Option<&String>| none_if_empty(v.cloned().unwrap_or_default());
        vec![
            json!(name_of(&pod.metadata)),
            json!(format!("{ready}/{total}")),
            json!(pod_status(pod)),
            json!(restarts.to_string()),
            json!(age_of(&pod.metadata)),
            json!(text(status.and_then(|s| s.pod_ip.as_ref()))),
            json!(text(pod.spec.as_ref().and_then(|s| s.node_name.as_ref()))),
            json!(text(status.and_then(|s| s.nominated_node_name.as_ref()))),
            json!("<none>"),
        ]
    }
}

/// kubectl's pod STATUS column.
pub fn pod_status(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let mut reason = status.reason.clone().filter(|r| !r.is_empty()).or(status.phase.clone()).unwrap_or_default();
    let total_init = pod.spec.as_ref().and_then(|s| s.init_containers.as_ref()).map_or(0, Vec::len);
    let mut initializing = false;
    for (i, c) in status.init_container_statuses.iter().flatten().enumerate() {
        let state = c.state.clone().unwrap_or_default();
        if let Some(t) = state.terminated {
            if t.exit_code == 0 {
                continue;
            }
            reason = match t.reason.filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None => format!("Init:ExitCode:{}", t.exit_code),
            };
        } else if let Some(r) = state.waiting.and_then(|w| w.reason).filter(|r| !r.is_empty() && r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{total_init}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in status.container_statuses.iter().flatten().rev() {
            let state = c.state.clone().unwrap_or_default();
            if let Some(r) = state.waiting.and_then(|w| w.reason).filter(|r| !r.is_empty()) {
                reason = r;
            } else if let Some(t) = state.terminated {
                reason = match (t.reason.filter(|r| !r.is_empty()), t.signal.filter(|s| *s != 0)) {
                    (Some(r), _) => r,
                    (None, Some(signal)) => format!("Signal:{signal}"),
                    (None, None) => format!("ExitCode:{}", t.exit_code),
                };
            } else if state.running.is_some() && c.ready {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if pod.metadata.deletion_timestamp.is_some() {
        reason = if status.reason.as_deref() == Some("NodeLost") { "Unknown".into() } else { "Terminating".into() };
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn defaults_and_qos() {
        let mut p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}));
        PodKind::prepare_for_create(&mut p);
        PodKind::default(&mut p);
        let spec = p.spec.clone().expect("spec");
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(p.status.as_ref().and_then(|s| s.qos_class.as_deref()), Some("BestEffort"));
        assert_eq!(spec.tolerations.map(|t| t.len()), Some(2));
        assert!(PodKind::validate(&p).is_empty());
        assert_eq!(PodKind::validate(&pod(json!({"spec": {"containers": []}})))[0].field, "spec.containers");
    }

    #[test]
    fn status_like_kubectl() {
        let p = pod(
            json!({"status": {"phase": "Pending", "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}}),
        );
        assert_eq!(pod_status(&p), "ContainerCreating");
        let p = pod(json!({"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z"}, "status": {"phase": "Running"}}));
        assert_eq!(pod_status(&p), "Terminating");
        let p = pod(
            json!({"status": {"phase": "Succeeded", "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}}),
        );
        assert_eq!(pod_status(&p), "Completed");
    }
}
