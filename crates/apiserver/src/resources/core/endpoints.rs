//! Endpoints (deprecated in favour of EndpointSlices, still served and synced).

use crate::resources::kind::{Column, Kind, age_of, col, name_of, none_if_empty};
use k8s_openapi::api::core::v1::Endpoints;
use serde_json::{Value, json};

/// The Endpoints kind.
pub struct EndpointsKind;

impl Kind for EndpointsKind {
    type Object = Endpoints;
    const SHORT_NAMES: &'static [&'static str] = &["ep"];
    const COLUMNS: &'static [Column] = &[col("Name", "string"), col("Endpoints", "string"), col("Age", "string")];

    fn singular() -> String {
        "endpoints".into()
    }

    fn cells(ep: &Endpoints) -> Vec<Value> {
        let mut eps = Vec::new();
        for subset in ep.subsets.iter().flatten() {
            let ports = subset.ports.clone().unwrap_or_default();
            for a in subset.addresses.iter().flatten() {
                if ports.is_empty() {
                    eps.push(a.ip.clone());
                }
                for p in &ports {
                    eps.push(format!("{}:{}", a.ip, p.port));
                }
            }
        }
        let shown =
            if eps.len() > 3 { format!("{} + {} more...", eps[..3].join(","), eps.len() - 3) } else { eps.join(",") };
        vec![json!(name_of(&ep.metadata)), json!(none_if_empty(shown)), json!(age_of(&ep.metadata))]
    }
}
