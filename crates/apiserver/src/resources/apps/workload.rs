//! What every apps/v1 workload shares: a selector that must match its template, a pod
//! template that must restart Always, non-negative replicas, an immutable selector.

use crate::resources::core::podspec::validate_pod_spec;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use vkube_core::status::Cause;

/// Causes for a workload's selector, template and replicas.
pub fn validate(
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    replicas: Option<i32>,
) -> Vec<Cause> {
    let mut causes = selector_matches_template(selector, template);
    if let Some(r) = replicas.filter(|r| *r < 0) {
        causes.push(Cause::invalid("spec.replicas", &r.to_string(), "must be greater than or equal to 0"));
    }
    if let Some(spec) = template.and_then(|t| t.spec.as_ref()) {
        causes.extend(validate_pod_spec(spec, "spec.template.spec"));
        let rp = spec.restart_policy.as_deref().unwrap_or_default();
        if rp != "Always" && !rp.is_empty() {
            causes.push(Cause::not_supported("spec.template.spec.restartPolicy", rp, &["Always"]));
        }
    }
    causes
}

/// An update's causes: those of the new object (`causes`), and the selector, which may
/// not change.
pub fn validate_update(mut causes: Vec<Cause>, selector: &LabelSelector, old: &LabelSelector) -> Vec<Cause> {
    if selector != old {
        let shown = serde_json::to_string(selector).unwrap_or_default();
        causes.push(Cause::invalid("spec.selector", &shown, "field is immutable"));
    }
    causes
}

fn selector_matches_template(selector: Option<&LabelSelector>, template: Option<&PodTemplateSpec>) -> Vec<Cause> {
    let Some(selector) = selector else { return vec![Cause::required("spec.selector")] };
    let as_json = serde_json::to_value(selector).unwrap_or_default();
    match vkube_core::selector::LabelSelector::from_object(Some(&as_json)) {
        Ok(s) if s.requirements.is_empty() => {
            vec![Cause::invalid("spec.selector", &as_json.to_string(), "empty selector is invalid for deployment")]
        }
        Ok(s) => {
            let labels = template.and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
            if s.matches(&labels) {
                vec![]
            } else {
                let shown = serde_json::to_string(&labels).unwrap_or_default();
                vec![Cause::invalid(
                    "spec.template.metadata.labels",
                    &shown,
                    "`selector` does not match template `labels`",
                )]
            }
        }
        Err(e) => vec![Cause::invalid("spec.selector", &as_json.to_string(), e.0)],
    }
}
