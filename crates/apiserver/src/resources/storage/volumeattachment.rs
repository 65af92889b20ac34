//! VolumeAttachments (stored, as kube-apiserver; CSI drivers and their controllers read and write them).

use crate::resources::{Kind, Subresource};
use k8s_openapi::api::storage::v1::VolumeAttachment;

/// The VolumeAttachment kind.
pub struct VolumeAttachmentKind;

impl Kind for VolumeAttachmentKind {
    type Object = VolumeAttachment;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
}
