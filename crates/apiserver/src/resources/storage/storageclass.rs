//! StorageClasses, with kubectl's columns (the default class marked `(default)`).

use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};

/// The StorageClass kind.
pub struct StorageClassKind;

impl Kind for StorageClassKind {
    type Object = StorageClass;
    const SHORT_NAMES: &'static [&'static str] = &["sc"];
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Provisioner", "string"),
        col("ReclaimPolicy", "string"),
        col("VolumeBindingMode", "string"),
        col("AllowVolumeExpansion", "string"),
        col("Age", "string"),
    ];

    fn cells(sc: &StorageClass) -> Vec<Value> {
        let is_default = sc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("storageclass.kubernetes.io/is-default-class"))
            .is_some_and(|v| v == "true");
        let name = name_of(&sc.metadata);
        let name = if is_default { format!("{name} (default)") } else { name };
        vec![
            json!(name),
            json!(sc.provisioner),
            json!(sc.reclaim_policy.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "Delete".into())),
            json!(sc.volume_binding_mode.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| "Immediate".into())),
            json!(sc.allow_volume_expansion.unwrap_or(false).to_string()),
            json!(age_of(&sc.metadata)),
        ]
    }
}
