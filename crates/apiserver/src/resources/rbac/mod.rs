//! The rbac.authorization.k8s.io/v1 kinds.

pub mod clusterrole;
pub mod clusterrolebinding;
pub mod role;
pub mod rolebinding;

use crate::resources::kind::{Column, age_of, col, name_of, wide};
use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

/// Roles' columns: NAME, CREATED AT.
pub const ROLE_COLUMNS: &[Column] = &[col("Name", "string"), col("Created At", "date")];

/// Bindings' columns.
pub const BINDING_COLUMNS: &[Column] = &[
    col("Name", "string"),
    col("Role", "string"),
    col("Age", "string"),
    wide("Users", "string"),
    wide("Groups", "string"),
    wide("ServiceAccounts", "string"),
];

/// A role's cells.
pub fn role_cells(meta: &ObjectMeta) -> Vec<Value> {
    let created = meta.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    vec![json!(name_of(meta)), json!(created)]
}

/// A binding's cells.
pub fn binding_cells(meta: &ObjectMeta, role: &RoleRef, subjects: Option<&Vec<Subject>>) -> Vec<Value> {
    let of = |kind: &str| {
        subjects
            .into_iter()
            .flatten()
            .filter(|s| s.kind == kind)
            .map(|s| match kind {
                "ServiceAccount" => format!("{}/{}", s.namespace.clone().unwrap_or_default(), s.name),
                _ => s.name.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        json!(name_of(meta)),
        json!(format!("{}/{}", role.kind, role.name)),
        json!(age_of(meta)),
        json!(of("User")),
        json!(of("Group")),
        json!(of("ServiceAccount")),
    ]
}
