//! ValidatingAdmissionPolicyBindings: a policy applied, to which resources, with what action.

use super::{CATEGORIES, default_match_resources, match_resources_causes, param_ref_causes, param_ref_cell};
use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The ValidatingAdmissionPolicyBinding kind.
pub struct ValidatingAdmissionPolicyBindingKind;

impl Kind for ValidatingAdmissionPolicyBindingKind {
    type Object = ValidatingAdmissionPolicyBinding;
    const CATEGORIES: &'static [&'static str] = CATEGORIES;
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] =
        &[col("Name", "string"), col("PolicyName", "string"), col("ParamRef", "string"), col("Age", "string")];

    fn default(b: &mut ValidatingAdmissionPolicyBinding) {
        if let Some(m) = b.spec.match_resources.as_mut() {
            default_match_resources(m);
        }
    }

    fn validate(b: &ValidatingAdmissionPolicyBinding) -> Vec<Cause> {
        let spec = b.spec.clone();
        let mut causes = Vec::new();
        if spec.policy_name.is_empty() {
            causes.push(Cause::required("spec.policyName"));
        }
        causes.extend(match_resources_causes("spec.matchResources", spec.match_resources.as_ref(), false));
        causes.extend(param_ref_causes("spec.paramRef", spec.param_ref.as_ref()));
        let actions = spec.validation_actions;
        if actions.is_empty() {
            let mut c = Cause::required("spec.validationActions");
            c.message = format!("{}: at least one validation action is required", c.message);
            causes.push(c);
        }
        let mut seen = Vec::new();
        for (i, a) in actions.iter().enumerate() {
            if !["Audit", "Deny", "Warn"].contains(&a.as_str()) {
                causes.push(Cause::not_supported(
                    format!("spec.validationActions[{i}]"),
                    a,
                    &["Audit", "Deny", "Warn"],
                ));
            } else if seen.contains(a) {
                causes.push(Cause::duplicate(format!("spec.validationActions[{i}]"), a));
            }
            seen.push(a.clone());
        }
        if seen.iter().any(|a| a == "Deny") && seen.iter().any(|a| a == "Warn") {
            causes.push(Cause::invalid_raw(
                "spec.validationActions",
                &serde_json::to_string(&actions).unwrap_or_default(),
                "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
            ));
        }
        causes
    }

    fn cells(b: &ValidatingAdmissionPolicyBinding) -> Vec<Value> {
        let spec = Some(&b.spec);
        vec![
            json!(name_of(&b.metadata)),
            json!(b.spec.policy_name),
            json!(param_ref_cell(spec.and_then(|s| s.param_ref.as_ref()))),
            json!(age_of(&b.metadata)),
        ]
    }
}
