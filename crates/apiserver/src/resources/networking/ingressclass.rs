//! IngressClasses.

use crate::resources::Kind;
use k8s_openapi::api::networking::v1::IngressClass;

/// The IngressClass kind.
pub struct IngressClassKind;

impl Kind for IngressClassKind {
    type Object = IngressClass;
}
