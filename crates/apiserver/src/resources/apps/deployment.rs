//! Deployments: kube-apiserver's defaults (one replica, RollingUpdate 25%/25%, history
//! of 10, 600 s progress deadline), workload validation, kubectl's columns.

use super::workload;
use crate::resources::Subresource;
use crate::resources::core::podspec::default_pod_spec;
use crate::resources::kind::{
    Column, Kind, age_of, col, containers_images, default_to, name_of, selector_string, wide,
};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The Deployment kind.
pub struct DeploymentKind;

impl Kind for DeploymentKind {
    type Object = Deployment;
    const SHORT_NAMES: &'static [&'static str] = &["deploy"];
    const IN_ALL: bool = true;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status, Subresource::Scale];
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Ready", "string"),
        col("Up-to-date", "string"),
        col("Available", "string"),
        col("Age", "string"),
        wide("Containers", "string"),
        wide("Images", "string"),
        wide("Selector", "string"),
    ];

    fn prepare_for_create(d: &mut Deployment) {
        d.status = None;
    }

    fn default(d: &mut Deployment) {
        let spec = &mut d.spec;
        default_to(&mut spec.replicas, || 1);
        let strategy = spec.strategy.get_or_insert_with(DeploymentStrategy::default);
        default_to(&mut strategy.type_, || "RollingUpdate".into());
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let rolling = strategy.rolling_update.get_or_insert_with(RollingUpdateDeployment::default);
            default_to(&mut rolling.max_unavailable, || IntOrString::String("25%".into()));
            default_to(&mut rolling.max_surge, || IntOrString::String("25%".into()));
        }
        default_to(&mut spec.revision_history_limit, || 10);
        default_to(&mut spec.progress_deadline_seconds, || 600);
        if let Some(pod) = spec.template.spec.as_mut() {
            default_pod_spec(pod);
        }
    }

    fn validate(d: &Deployment) -> Vec<Cause> {
        let spec = Some(&d.spec);
        workload::validate(spec.map(|s| &s.selector), spec.map(|s| &s.template), spec.and_then(|s| s.replicas))
    }

    fn validate_update(d: &Deployment, old: &Deployment) -> Vec<Cause> {
        workload::validate_update(Self::validate(d), &d.spec.selector, &old.spec.selector)
    }

    fn cells(d: &Deployment) -> Vec<Value> {
        let spec = d.spec.clone();
        let status = d.status.clone().unwrap_or_default();
        let (c, i) = containers_images(spec.template.spec.as_ref());
        vec![
            json!(name_of(&d.metadata)),
            json!(format!("{}/{}", status.ready_replicas.unwrap_or(0), spec.replicas.unwrap_or(0))),
            json!(status.updated_replicas.unwrap_or(0)),
            json!(status.available_replicas.unwrap_or(0)),
            json!(age_of(&d.metadata)),
            json!(c),
            json!(i),
            json!(selector_string(Some(&spec.selector))),
        ]
    }
}
