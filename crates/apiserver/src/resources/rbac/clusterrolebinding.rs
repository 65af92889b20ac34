//! ClusterRoleBindings.

use super::{BINDING_COLUMNS, binding_cells};
use crate::resources::kind::{Column, Kind};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use serde_json::Value;

/// The ClusterRoleBinding kind.
pub struct ClusterRoleBindingKind;

impl Kind for ClusterRoleBindingKind {
    type Object = ClusterRoleBinding;
    const COLUMNS: &'static [Column] = BINDING_COLUMNS;
    const NAME_IS_PATH_SEGMENT: bool = true;

    fn cells(b: &ClusterRoleBinding) -> Vec<Value> {
        binding_cells(&b.metadata, &b.role_ref, b.subjects.as_ref())
    }
}
