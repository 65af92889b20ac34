//! PodTemplates: stored pod templates (the chunking conformance specs list hundreds),
//! their pod spec defaulted and validated as a workload's template is.

use crate::resources::core::podspec::{default_pod_spec, validate_pod_spec};
use crate::resources::kind::{Column, Kind, col, containers_images, name_of};
use k8s_openapi::api::core::v1::PodTemplate;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The PodTemplate kind.
pub struct PodTemplateKind;

impl Kind for PodTemplateKind {
    type Object = PodTemplate;
    const COLUMNS: &'static [Column] =
        &[col("Name", "string"), col("Containers", "string"), col("Images", "string"), col("Pod Labels", "string")];

    fn default(pt: &mut PodTemplate) {
        if let Some(spec) = pt.template.as_mut().and_then(|t| t.spec.as_mut()) {
            default_pod_spec(spec);
        }
    }

    fn validate(pt: &PodTemplate) -> Vec<Cause> {
        match pt.template.as_ref().and_then(|t| t.spec.as_ref()) {
            Some(spec) => validate_pod_spec(spec, "template.spec"),
            None => vec![],
        }
    }

    fn cells(pt: &PodTemplate) -> Vec<Value> {
        let template = pt.template.as_ref();
        let (containers, images) = containers_images(template.and_then(|t| t.spec.as_ref()));
        let labels = template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .map(|l| l.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| "<none>".into());
        vec![json!(name_of(&pt.metadata)), json!(containers), json!(images), json!(labels)]
    }
}
