//! RoleBindings.

use super::{BINDING_COLUMNS, binding_cells};
use crate::resources::kind::{Column, Kind};
use k8s_openapi::api::rbac::v1::RoleBinding;
use serde_json::Value;

/// The RoleBinding kind.
pub struct RoleBindingKind;

impl Kind for RoleBindingKind {
    type Object = RoleBinding;
    const COLUMNS: &'static [Column] = BINDING_COLUMNS;
    const NAME_IS_PATH_SEGMENT: bool = true;

    fn cells(b: &RoleBinding) -> Vec<Value> {
        binding_cells(&b.metadata, &b.role_ref, b.subjects.as_ref())
    }
}
