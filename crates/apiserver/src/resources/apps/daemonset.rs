//! DaemonSets: RollingUpdate (1 unavailable, no surge) by default, workload validation,
//! kubectl's columns.

use super::workload;
use crate::resources::Subresource;
use crate::resources::core::podspec::default_pod_spec;
use crate::resources::kind::{
    Column, Kind, age_of, col, containers_images, default_to, name_of, none_if_empty, selector_string, wide,
};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The DaemonSet kind.
pub struct DaemonSetKind;

impl Kind for DaemonSetKind {
    type Object = DaemonSet;
    const SHORT_NAMES: &'static [&'static str] = &["ds"];
    const IN_ALL: bool = true;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Desired", "integer"),
        col("Current", "integer"),
        col("Ready", "integer"),
        col("Up-to-date", "integer"),
        col("Available", "integer"),
        col("Node Selector", "string"),
        col("Age", "string"),
        wide("Containers", "string"),
        wide("Images", "string"),
        wide("Selector", "string"),
    ];

    fn prepare_for_create(ds: &mut DaemonSet) {
        ds.status = None;
    }

    fn default(ds: &mut DaemonSet) {
        let spec = &mut ds.spec;
        let update = spec.update_strategy.get_or_insert_with(DaemonSetUpdateStrategy::default);
        default_to(&mut update.type_, || "RollingUpdate".into());
        if update.type_.as_deref() == Some("RollingUpdate") {
            let rolling = update.rolling_update.get_or_insert_with(RollingUpdateDaemonSet::default);
            default_to(&mut rolling.max_unavailable, || IntOrString::Int(1));
            default_to(&mut rolling.max_surge, || IntOrString::Int(0));
        }
        default_to(&mut spec.revision_history_limit, || 10);
        if let Some(pod) = spec.template.spec.as_mut() {
            default_pod_spec(pod);
        }
    }

    fn validate(ds: &DaemonSet) -> Vec<Cause> {
        let spec = Some(&ds.spec);
        workload::validate(spec.map(|s| &s.selector), spec.map(|s| &s.template), None)
    }

    fn validate_update(ds: &DaemonSet, old: &DaemonSet) -> Vec<Cause> {
        workload::validate_update(Self::validate(ds), &ds.spec.selector, &old.spec.selector)
    }

    fn cells(ds: &DaemonSet) -> Vec<Value> {
        let spec = ds.spec.clone();
        let status = ds.status.clone().unwrap_or_default();
        let (c, i) = containers_images(spec.template.spec.as_ref());
        let node_selector: Vec<String> = spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.as_ref())
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        vec![
            json!(name_of(&ds.metadata)),
            json!(status.desired_number_scheduled),
            json!(status.current_number_scheduled),
            json!(status.number_ready),
            json!(status.updated_number_scheduled.unwrap_or(0)),
            json!(status.number_available.unwrap_or(0)),
            json!(none_if_empty(node_selector.join(","))),
            json!(age_of(&ds.metadata)),
            json!(c),
            json!(i),
            json!(selector_string(Some(&spec.selector))),
        ]
    }
}
