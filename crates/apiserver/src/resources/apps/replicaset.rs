//! ReplicaSets: one replica by default, workload validation, kubectl's columns.

use super::workload;
use crate::resources::Subresource;
use crate::resources::core::podspec::default_pod_spec;
use crate::resources::kind::{
    Column, Kind, age_of, col, containers_images, default_to, name_of, selector_string, wide,
};
use k8s_openapi::api::apps::v1::ReplicaSet;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The ReplicaSet kind.
pub struct ReplicaSetKind;

impl Kind for ReplicaSetKind {
    type Object = ReplicaSet;
    const SHORT_NAMES: &'static [&'static str] = &["rs"];
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

    fn prepare_for_create(rs: &mut ReplicaSet) {
        rs.status = None;
    }

    fn default(rs: &mut ReplicaSet) {
        let spec = &mut rs.spec;
        default_to(&mut spec.replicas, || 1);
        if let Some(pod) = spec.template.as_mut().and_then(|t| t.spec.as_mut()) {
            default_pod_spec(pod);
        }
    }

    fn validate(rs: &ReplicaSet) -> Vec<Cause> {
        let spec = Some(&rs.spec);
        workload::validate(
            spec.map(|s| &s.selector),
            spec.and_then(|s| s.template.as_ref()),
            spec.and_then(|s| s.replicas),
        )
    }

    fn validate_update(rs: &ReplicaSet, old: &ReplicaSet) -> Vec<Cause> {
        workload::validate_update(Self::validate(rs), &rs.spec.selector, &old.spec.selector)
    }

    fn cells(rs: &ReplicaSet) -> Vec<Value> {
        let spec = rs.spec.clone();
        let status = rs.status.clone().unwrap_or_default();
        let (c, i) = containers_images(spec.template.as_ref().and_then(|t| t.spec.as_ref()));
        vec![
            json!(name_of(&rs.metadata)),
            json!(spec.replicas.unwrap_or(0)),
            json!(status.replicas),
            json!(status.ready_replicas.unwrap_or(0)),
            json!(age_of(&rs.metadata)),
            json!(c),
            json!(i),
            json!(selector_string(Some(&spec.selector))),
        ]
    }
}
