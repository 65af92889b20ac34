//! Leases (leader election, node heartbeats).

use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};

/// The Lease kind.
pub struct LeaseKind;

impl Kind for LeaseKind {
    type Object = Lease;
    const COLUMNS: &'static [Column] = &[col("Name", "string"), col("Holder", "string"), col("Age", "string")];

    fn cells(l: &Lease) -> Vec<Value> {
        let holder = l.spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default();
        vec![json!(name_of(&l.metadata)), json!(holder), json!(age_of(&l.metadata))]
    }
}
