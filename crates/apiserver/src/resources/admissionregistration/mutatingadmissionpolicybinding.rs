//! MutatingAdmissionPolicyBindings: a mutating policy applied to which resources.

use super::{CATEGORIES, default_match_resources, match_resources_causes, param_ref_causes, param_ref_cell};
use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::admissionregistration::v1::MutatingAdmissionPolicyBinding;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The MutatingAdmissionPolicyBinding kind.
pub struct MutatingAdmissionPolicyBindingKind;

impl Kind for MutatingAdmissionPolicyBindingKind {
    type Object = MutatingAdmissionPolicyBinding;
    const CATEGORIES: &'static [&'static str] = CATEGORIES;
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] =
        &[col("Name", "string"), col("PolicyName", "string"), col("ParamRef", "string"), col("Age", "string")];

    fn default(b: &mut MutatingAdmissionPolicyBinding) {
        if let Some(m) = b.spec.as_mut().and_then(|s| s.match_resources.as_mut()) {
            default_match_resources(m);
        }
    }

    fn validate(b: &MutatingAdmissionPolicyBinding) -> Vec<Cause> {
        let spec = b.spec.clone().unwrap_or_default();
        let mut causes = Vec::new();
        if spec.policy_name.as_deref().unwrap_or_default().is_empty() {
            causes.push(Cause::required("spec.policyName"));
        }
        causes.extend(match_resources_causes("spec.matchResources", spec.match_resources.as_ref(), false));
        causes.extend(param_ref_causes("spec.paramRef", spec.param_ref.as_ref()));
        causes
    }

    fn cells(b: &MutatingAdmissionPolicyBinding) -> Vec<Value> {
        let spec = b.spec.as_ref();
        vec![
            json!(name_of(&b.metadata)),
            json!(spec.and_then(|s| s.policy_name.clone()).unwrap_or_default()),
            json!(param_ref_cell(spec.and_then(|s| s.param_ref.as_ref()))),
            json!(age_of(&b.metadata)),
        ]
    }
}
