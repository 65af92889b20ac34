//! PriorityClasses, with kubectl's columns.

use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::{Value, json};

/// The PriorityClass kind.
pub struct PriorityClassKind;

impl Kind for PriorityClassKind {
    type Object = PriorityClass;
    const SHORT_NAMES: &'static [&'static str] = &["pc"];
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Value", "integer"),
        col("Global-Default", "boolean"),
        col("Age", "string"),
        col("PreemptionPolicy", "string"),
    ];

    fn cells(pc: &PriorityClass) -> Vec<Value> {
        vec![
            json!(name_of(&pc.metadata)),
            json!(pc.value),
            json!(pc.global_default.unwrap_or(false)),
            json!(age_of(&pc.metadata)),
            json!(
                pc.preemption_policy.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "PreemptLowerPriority".into())
            ),
        ]
    }
}
