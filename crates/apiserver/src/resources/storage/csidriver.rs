//! CSIDrivers (stored, as kube-apiserver; CSI drivers and their controllers read and write them).

use crate::resources::Kind;
use k8s_openapi::api::storage::v1::CSIDriver;

/// The CSIDriver kind.
pub struct CSIDriverKind;

impl Kind for CSIDriverKind {
    type Object = CSIDriver;
}
