//! LimitRanges (stored; defaults and checks are admission's).

use crate::resources::Kind;
use k8s_openapi::api::core::v1::LimitRange;

/// The LimitRange kind.
pub struct LimitRangeKind;

impl Kind for LimitRangeKind {
    type Object = LimitRange;
    const SHORT_NAMES: &'static [&'static str] = &["limits"];
}
