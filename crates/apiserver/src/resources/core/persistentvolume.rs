//! PersistentVolumes: Pending on create, Retain and Filesystem by default.

use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind, age_of, col, default_to, name_of, short_mode, wide};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeStatus};
use serde_json::{Value, json};

/// The PersistentVolume kind.
pub struct PersistentVolumeKind;

impl Kind for PersistentVolumeKind {
    type Object = PersistentVolume;
    const SHORT_NAMES: &'static [&'static str] = &["pv"];
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Capacity", "string"),
        col("Access Modes", "string"),
        col("Reclaim Policy", "string"),
        col("Status", "string"),
        col("Claim", "string"),
        col("StorageClass", "string"),
        col("Reason", "string"),
        col("Age", "string"),
        wide("VolumeMode", "string"),
    ];

    fn prepare_for_create(pv: &mut PersistentVolume) {
        pv.status = Some(PersistentVolumeStatus { phase: Some("Pending".into()), ..Default::default() });
    }

    fn default(pv: &mut PersistentVolume) {
        let spec = pv.spec.get_or_insert_with(Default::default);
        default_to(&mut spec.persistent_volume_reclaim_policy, || "Retain".into());
        default_to(&mut spec.volume_mode, || "Filesystem".into());
    }

    fn cells(pv: &PersistentVolume) -> Vec<Value> {
        let spec = pv.spec.clone().unwrap_or_default();
        let status = pv.status.clone().unwrap_or_default();
        let modes: Vec<&str> = spec.access_modes.iter().flatten().map(|m| short_mode(m)).collect();
        let claim = spec
            .claim_ref
            .as_ref()
            .map(|c| format!("{}/{}", c.namespace.clone().unwrap_or_default(), c.name.clone().unwrap_or_default()))
            .unwrap_or_default();
        let capacity = spec.capacity.as_ref().and_then(|c| c.get("storage")).map(|q| q.0.clone()).unwrap_or_default();
        vec![
            json!(name_of(&pv.metadata)),
            json!(capacity),
            json!(modes.join(",")),
            json!(spec.persistent_volume_reclaim_policy.unwrap_or_default()),
            json!(status.phase.unwrap_or_default()),
            json!(claim),
            json!(spec.storage_class_name.unwrap_or_default()),
            json!(status.reason.unwrap_or_default()),
            json!(age_of(&pv.metadata)),
            json!(spec.volume_mode.unwrap_or_default()),
        ]
    }
}
