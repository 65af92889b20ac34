//! StatefulSets: kube-apiserver's defaults (OrderedReady, RollingUpdate with partition
//! 0, Retain claims), workload validation, kubectl's columns.

use super::workload;
use crate::resources::Subresource;
use crate::resources::core::podspec::default_pod_spec;
use crate::resources::kind::{Column, Kind, age_of, col, containers_images, default_to, name_of, wide};
use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetUpdateStrategy,
};
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The StatefulSet kind.
pub struct StatefulSetKind;

impl Kind for StatefulSetKind {
    type Object = StatefulSet;
    const SHORT_NAMES: &'static [&'static str] = &["sts"];
    const IN_ALL: bool = true;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status, Subresource::Scale];
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Ready", "string"),
        col("Age", "string"),
        wide("Containers", "string"),
        wide("Images", "string"),
    ];

    fn prepare_for_create(s: &mut StatefulSet) {
        s.status = None;
    }

    fn default(s: &mut StatefulSet) {
        let spec = &mut s.spec;
        default_to(&mut spec.replicas, || 1);
        default_to(&mut spec.pod_management_policy, || "OrderedReady".into());
        let update = spec.update_strategy.get_or_insert_with(StatefulSetUpdateStrategy::default);
        default_to(&mut update.type_, || "RollingUpdate".into());
        if update.type_.as_deref() == Some("RollingUpdate") {
            let rolling = update.rolling_update.get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
            default_to(&mut rolling.partition, || 0);
        }
        default_to(&mut spec.revision_history_limit, || 10);
        default_to(&mut spec.persistent_volume_claim_retention_policy, || {
            StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".into()),
                when_scaled: Some("Retain".into()),
            }
        });
        if let Some(pod) = spec.template.spec.as_mut() {
            default_pod_spec(pod);
        }
    }

    fn validate(s: &StatefulSet) -> Vec<Cause> {
        let spec = Some(&s.spec);
        workload::validate(spec.map(|s| &s.selector), spec.map(|s| &s.template), spec.and_then(|s| s.replicas))
    }

    fn validate_update(s: &StatefulSet, old: &StatefulSet) -> Vec<Cause> {
        workload::validate_update(Self::validate(s), &s.spec.selector, &old.spec.selector)
    }

    fn cells(s: &StatefulSet) -> Vec<Value> {
        let spec = s.spec.clone();
        let ready = s.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        let (c, i) = containers_images(spec.template.spec.as_ref());
        vec![
            json!(name_of(&s.metadata)),
            json!(format!("{ready}/{}", spec.replicas.unwrap_or(0))),
            json!(age_of(&s.metadata)),
            json!(c),
            json!(i),
        ]
    }
}
