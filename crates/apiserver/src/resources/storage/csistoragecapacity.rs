//! CSIStorageCapacitys (stored, as kube-apiserver; CSI drivers and their controllers read and write them).

use crate::resources::Kind;
use k8s_openapi::api::storage::v1::CSIStorageCapacity;

/// The CSIStorageCapacity kind.
pub struct CSIStorageCapacityKind;

impl Kind for CSIStorageCapacityKind {
    type Object = CSIStorageCapacity;
}
