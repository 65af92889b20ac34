//! ClusterRoles.

use super::{ROLE_COLUMNS, role_cells};
use crate::resources::kind::{Column, Kind};
use k8s_openapi::api::rbac::v1::ClusterRole;
use serde_json::Value;

/// The ClusterRole kind.
pub struct ClusterRoleKind;

impl Kind for ClusterRoleKind {
    type Object = ClusterRole;
    const COLUMNS: &'static [Column] = ROLE_COLUMNS;
    const NAME_IS_PATH_SEGMENT: bool = true;

    fn cells(r: &ClusterRole) -> Vec<Value> {
        role_cells(&r.metadata)
    }
}
