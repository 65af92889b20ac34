//! CSINodes (stored, as kube-apiserver; CSI drivers and their controllers read and write them).

use crate::resources::Kind;
use k8s_openapi::api::storage::v1::CSINode;

/// The CSINode kind.
pub struct CSINodeKind;

impl Kind for CSINodeKind {
    type Object = CSINode;
}
