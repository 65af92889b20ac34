//! RuntimeClasses (stored, as kube-apiserver; a container runtime reads them).

use crate::resources::Kind;
use k8s_openapi::api::node::v1::RuntimeClass;

/// The RuntimeClass kind.
pub struct RuntimeClassKind;

impl Kind for RuntimeClassKind {
    type Object = RuntimeClass;
}
