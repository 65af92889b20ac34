//! PersistentVolumeClaims: Pending on create, Filesystem by default.

use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind, age_of, col, default_to, name_of, none_if_empty, short_mode, wide};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimStatus};
use serde_json::{Value, json};

/// The PersistentVolumeClaim kind.
pub struct PersistentVolumeClaimKind;

impl Kind for PersistentVolumeClaimKind {
    type Object = PersistentVolumeClaim;
    const SHORT_NAMES: &'static [&'static str] = &["pvc"];
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Status", "string"),
        col("Volume", "string"),
        col("Capacity", "string"),
        col("Access Modes", "string"),
        col("StorageClass", "string"),
        col("Age", "string"),
        wide("VolumeMode", "string"),
    ];

    fn prepare_for_create(pvc: &mut PersistentVolumeClaim) {
        pvc.status = Some(PersistentVolumeClaimStatus { phase: Some("Pending".into()), ..Default::default() });
    }

    fn default(pvc: &mut PersistentVolumeClaim) {
        default_to(&mut pvc.spec.get_or_insert_with(Default::default).volume_mode, || "Filesystem".into());
    }

    fn cells(pvc: &PersistentVolumeClaim) -> Vec<Value> {
        let spec = pvc.spec.clone().unwrap_or_default();
        let status = pvc.status.clone().unwrap_or_default();
        let modes: Vec<&str> = spec.access_modes.iter().flatten().map(|m| short_mode(m)).collect();
        let capacity = status.capacity.as_ref().and_then(|c| c.get("storage")).map(|q| q.0.clone()).unwrap_or_default();
        vec![
            json!(name_of(&pvc.metadata)),
            json!(status.phase.unwrap_or_default()),
            json!(spec.volume_name.unwrap_or_default()),
            json!(capacity),
            json!(modes.join(",")),
            json!(none_if_empty(spec.storage_class_name.unwrap_or_default())),
            json!(age_of(&pvc.metadata)),
            json!(spec.volume_mode.unwrap_or_default()),
        ]
    }
}
