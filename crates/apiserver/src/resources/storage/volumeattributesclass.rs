//! VolumeAttributesClasss (stored, as kube-apiserver; CSI drivers and their controllers read and write them).

use crate::resources::Kind;
use k8s_openapi::api::storage::v1::VolumeAttributesClass;

/// The VolumeAttributesClass kind.
pub struct VolumeAttributesClassKind;

impl Kind for VolumeAttributesClassKind {
    type Object = VolumeAttributesClass;
    const SHORT_NAMES: &'static [&'static str] = &["vac"];
}
