//! ServiceAccounts (their tokens are the `token` subresource, [`crate::tokens`]).

use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::{Value, json};

/// The ServiceAccount kind.
pub struct ServiceAccountKind;

impl Kind for ServiceAccountKind {
    type Object = ServiceAccount;
    const SHORT_NAMES: &'static [&'static str] = &["sa"];
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Token];
    const COLUMNS: &'static [Column] = &[col("Name", "string"), col("Secrets", "integer"), col("Age", "string")];

    fn cells(sa: &ServiceAccount) -> Vec<Value> {
        vec![json!(name_of(&sa.metadata)), json!(sa.secrets.as_ref().map_or(0, Vec::len)), json!(age_of(&sa.metadata))]
    }
}
