//! Roles.

use super::{ROLE_COLUMNS, role_cells};
use crate::resources::kind::{Column, Kind};
use k8s_openapi::api::rbac::v1::Role;
use serde_json::Value;

/// The Role kind.
pub struct RoleKind;

impl Kind for RoleKind {
    type Object = Role;
    const COLUMNS: &'static [Column] = ROLE_COLUMNS;
    const NAME_IS_PATH_SEGMENT: bool = true;

    fn cells(r: &Role) -> Vec<Value> {
        role_cells(&r.metadata)
    }
}
