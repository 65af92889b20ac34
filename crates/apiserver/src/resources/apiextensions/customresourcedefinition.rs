//! CustomResourceDefinitions (what a CRD's acceptance does is in [`crate::crd`]).

use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind};
use crate::resources::rbac::{ROLE_COLUMNS, role_cells};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// The CustomResourceDefinition kind.
pub struct CustomResourceDefinitionKind;

impl Kind for CustomResourceDefinitionKind {
    type Object = CustomResourceDefinition;
    const SHORT_NAMES: &'static [&'static str] = &["crd", "crds"];
    const CATEGORIES: &'static [&'static str] = &["api-extensions"];
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = ROLE_COLUMNS;

    fn cells(crd: &CustomResourceDefinition) -> Vec<Value> {
        role_cells(&crd.metadata)
    }
}
