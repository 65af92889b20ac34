//! PodDisruptionBudgets (their status is the disruption controller's; evictions honour
//! them, see [`crate::subresources`]).

use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

/// The PodDisruptionBudget kind.
pub struct PodDisruptionBudgetKind;

impl Kind for PodDisruptionBudgetKind {
    type Object = PodDisruptionBudget;
    const SHORT_NAMES: &'static [&'static str] = &["pdb"];
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Min Available", "string"),
        col("Max Unavailable", "string"),
        col("Allowed Disruptions", "integer"),
        col("Age", "string"),
    ];

    fn cells(p: &PodDisruptionBudget) -> Vec<Value> {
        let spec = p.spec.clone().unwrap_or_default();
        let shown = |v: Option<IntOrString>| match v {
            Some(IntOrString::Int(n)) => n.to_string(),
            Some(IntOrString::String(s)) => s,
            None => "N/A".into(),
        };
        vec![
            json!(name_of(&p.metadata)),
            json!(shown(spec.min_available)),
            json!(shown(spec.max_unavailable)),
            json!(p.status.as_ref().and_then(|s| s.disruptions_allowed).unwrap_or(0)),
            json!(age_of(&p.metadata)),
        ]
    }
}
