//! NetworkPolicies (stored; enforcement is the network's).

use crate::resources::kind::{Column, Kind, age_of, col, name_of, selector_string};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

/// The NetworkPolicy kind.
pub struct NetworkPolicyKind;

impl Kind for NetworkPolicyKind {
    type Object = NetworkPolicy;
    const SHORT_NAMES: &'static [&'static str] = &["netpol"];
    const COLUMNS: &'static [Column] = &[col("Name", "string"), col("Pod-Selector", "string"), col("Age", "string")];

    fn cells(np: &NetworkPolicy) -> Vec<Value> {
        let selector = np.spec.as_ref().and_then(|s| s.pod_selector.as_ref());
        vec![json!(name_of(&np.metadata)), json!(selector_string(selector)), json!(age_of(&np.metadata))]
    }
}
