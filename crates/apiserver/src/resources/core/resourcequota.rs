//! ResourceQuotas (stored; enforcement is admission's and the quota controller's).

use crate::resources::Kind;
use crate::resources::Subresource;
use k8s_openapi::api::core::v1::ResourceQuota;

/// The ResourceQuota kind.
pub struct ResourceQuotaKind;

impl Kind for ResourceQuotaKind {
    type Object = ResourceQuota;
    const SHORT_NAMES: &'static [&'static str] = &["quota"];
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
}
