//! LimitRanges, with kube-apiserver's defaults of a Container item (a default limit
//! from `max`, a default request from the default limit, else from `min`); what they
//! do to pods and claims is [`crate::admission::limitranger`].

use crate::resources::Kind;
use k8s_openapi::api::core::v1::LimitRange;

/// The LimitRange kind.
pub struct LimitRangeKind;

impl Kind for LimitRangeKind {
    type Object = LimitRange;
    const SHORT_NAMES: &'static [&'static str] = &["limits"];

    fn default(lr: &mut LimitRange) {
        for item in lr.spec.iter_mut().flat_map(|s| s.limits.iter_mut()) {
            if item.type_ != "Container" {
                continue;
            }
            let default = item.default.get_or_insert_with(Default::default);
            for (k, v) in item.max.iter().flatten() {
                default.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let request = item.default_request.get_or_insert_with(Default::default);
            for (k, v) in item.default.iter().flatten() {
                request.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for (k, v) in item.min.iter().flatten() {
                request.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}
