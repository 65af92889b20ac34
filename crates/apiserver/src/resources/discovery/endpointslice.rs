//! EndpointSlices, with kubectl's columns.

use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

/// The EndpointSlice kind.
pub struct EndpointSliceKind;

impl Kind for EndpointSliceKind {
    type Object = EndpointSlice;
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("AddressType", "string"),
        col("Ports", "string"),
        col("Endpoints", "string"),
        col("Age", "string"),
    ];

    fn cells(s: &EndpointSlice) -> Vec<Value> {
        let ports: Vec<String> = s.ports.iter().flatten().map(|p| p.port.unwrap_or(0).to_string()).collect();
        let eps: Vec<&String> = s.endpoints.iter().flatten().flat_map(|e| e.addresses.iter()).collect();
        let shown = if eps.len() > 3 {
            format!("{} + {} more...", eps[..3].iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","), eps.len() - 3)
        } else {
            eps.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
        };
        let unset = |x: String| if x.is_empty() { "<unset>".to_string() } else { x };
        vec![
            json!(name_of(&s.metadata)),
            json!(s.address_type),
            json!(unset(ports.join(","))),
            json!(unset(shown)),
            json!(age_of(&s.metadata)),
        ]
    }
}
