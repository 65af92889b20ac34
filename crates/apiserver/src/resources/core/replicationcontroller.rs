//! ReplicationControllers: ReplicaSets' predecessor with a map selector, defaulted from
//! the template's labels, validated and printed as kube-apiserver and kubectl do.

use super::podspec::default_pod_spec;
use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind, age_of, col, containers_images, default_to, name_of, none_if_empty, wide};
use k8s_openapi::api::core::v1::{ReplicationController, ReplicationControllerStatus};
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The ReplicationController kind.
pub struct ReplicationControllerKind;

impl Kind for ReplicationControllerKind {
    type Object = ReplicationController;
    const SHORT_NAMES: &'static [&'static str] = &["rc"];
    const IN_ALL: bool = true;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status, Subresource::Scale];
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Desired", "integer"),
        col("Current", "integer"),
        col("Ready", "integer"),
        col("Age", "string"),
        wide("Containers", "string"),
        wide("Images", "string"),
        wide("Selector", "string"),
    ];

    fn prepare_for_create(rc: &mut ReplicationController) {
        rc.status = Some(ReplicationControllerStatus { replicas: 0, ..Default::default() });
    }

    fn default(rc: &mut ReplicationController) {
        let spec = rc.spec.get_or_insert_with(Default::default);
        let labels = spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
        if spec.selector.as_ref().is_none_or(|s| s.is_empty())
            && let Some(l) = &labels
        {
            spec.selector = Some(l.clone());
        }
        if rc.metadata.labels.as_ref().is_none_or(|l| l.is_empty())
            && let Some(l) = labels
        {
            rc.metadata.labels = Some(l);
        }
        let spec = rc.spec.get_or_insert_with(Default::default);
        default_to(&mut spec.replicas, || 1);
        if let Some(pod) = spec.template.as_mut().and_then(|t| t.spec.as_mut()) {
            default_pod_spec(pod);
        }
    }

    fn validate(rc: &ReplicationController) -> Vec<Cause> {
        let spec = rc.spec.clone().unwrap_or_default();
        let mut causes = Vec::new();
        let selector = spec.selector.clone().unwrap_or_default();
        if selector.is_empty() {
            causes.push(Cause::required("spec.selector"));
        }
        if let Some(r) = spec.replicas.filter(|r| *r < 0) {
            causes.push(Cause::invalid_raw("spec.replicas", &r.to_string(), "must be greater than or equal to 0"));
        }
        match &spec.template {
            None => causes.push(Cause::required("spec.template")),
            Some(t) => {
                let labels = t.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
                if !selector.is_empty() && !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                    causes.push(Cause::invalid_raw(
                        "spec.template.metadata.labels",
                        &serde_json::to_string(&labels).unwrap_or_default(),
                        "`selector` does not match template `labels`",
                    ));
                }
                if let Some(pod) = &t.spec {
                    causes.extend(super::podspec::validate_pod_spec(pod, "spec.template.spec"));
                    let rp = pod.restart_policy.as_deref().unwrap_or_default();
                    if rp != "Always" && !rp.is_empty() {
                        causes.push(Cause::not_supported("spec.template.spec.restartPolicy", rp, &["Always"]));
                    }
                }
            }
        }
        causes
    }

    fn cells(rc: &ReplicationController) -> Vec<Value> {
        let spec = rc.spec.clone().unwrap_or_default();
        let status = rc.status.clone().unwrap_or_default();
        let (c, i) = containers_images(spec.template.as_ref().and_then(|t| t.spec.as_ref()));
        let selector: Vec<String> = spec.selector.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
        vec![
            json!(name_of(&rc.metadata)),
            json!(spec.replicas.unwrap_or(0)),
            json!(status.replicas),
            json!(status.ready_replicas.unwrap_or(0)),
            json!(age_of(&rc.metadata)),
            json!(c),
            json!(i),
            json!(none_if_empty(selector.join(","))),
        ]
    }
}
