//! ValidatingAdmissionPolicies: CEL validations that bindings apply to writes.

use super::{
    CATEGORIES, default_match_resources, match_conditions_causes, match_resources_causes, one_of, param_kind_causes,
    param_kind_cell, variables_causes,
};
use crate::admission::cel;
use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The ValidatingAdmissionPolicy kind.
pub struct ValidatingAdmissionPolicyKind;

const REASONS: &[&str] = &["Forbidden", "Invalid", "RequestEntityTooLarge"];

impl Kind for ValidatingAdmissionPolicyKind {
    type Object = ValidatingAdmissionPolicy;
    const CATEGORIES: &'static [&'static str] = CATEGORIES;
    const TRACKS_GENERATION: bool = true;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const COLUMNS: &'static [Column] =
        &[col("Name", "string"), col("Validations", "integer"), col("ParamKind", "string"), col("Age", "string")];

    fn default(p: &mut ValidatingAdmissionPolicy) {
        if let Some(spec) = p.spec.as_mut() {
            spec.failure_policy.get_or_insert_with(|| "Fail".into());
            if let Some(m) = spec.match_constraints.as_mut() {
                default_match_resources(m);
            }
        }
    }

    fn validate(p: &ValidatingAdmissionPolicy) -> Vec<Cause> {
        let spec = p.spec.clone().unwrap_or_default();
        let mut causes = Vec::new();
        one_of(&mut causes, "spec.failurePolicy", spec.failure_policy.as_deref(), &["Fail", "Ignore"]);
        causes.extend(param_kind_causes("spec.paramKind", spec.param_kind.as_ref()));
        causes.extend(match_resources_causes("spec.matchConstraints", spec.match_constraints.as_ref(), true));
        causes.extend(variables_causes("spec.variables", spec.variables.as_deref()));
        let validations = spec.validations.as_deref().unwrap_or_default();
        let audits = spec.audit_annotations.as_deref().unwrap_or_default();
        if validations.is_empty() && audits.is_empty() {
            for f in ["spec.validations", "spec.auditAnnotations"] {
                let mut c = Cause::required(f);
                c.message = format!("{}: validations or auditAnnotations must contain at least one item", c.message);
                causes.push(c);
            }
        }
        for (i, v) in validations.iter().enumerate() {
            let path = format!("spec.validations[{i}]");
            if v.expression.is_empty() {
                let mut c = Cause::required(format!("{path}.expression"));
                c.message = format!("{}: expression is not specified", c.message);
                causes.push(c);
            } else if let Err(e) = cel::compile_bool(&v.expression) {
                causes.push(Cause::invalid(format!("{path}.expression"), &v.expression, e));
            }
            if let Some(m) = v.message.as_deref()
                && m.contains('\n')
            {
                causes.push(Cause::invalid_raw(
                    format!("{path}.message"),
                    &serde_json::to_string(m).unwrap_or_default(),
                    "must not contain line breaks",
                ));
            }
            one_of(&mut causes, &format!("{path}.reason"), v.reason.as_deref(), REASONS);
            if let Some(m) = v.message_expression.as_deref().filter(|m| !m.is_empty())
                && let Err(e) = cel::compile(m)
            {
                causes.push(Cause::invalid(format!("{path}.messageExpression"), m, e));
            }
        }
        for (i, a) in audits.iter().enumerate() {
            let path = format!("spec.auditAnnotations[{i}]");
            if a.key.is_empty() {
                causes.push(Cause::required(format!("{path}.key")));
            }
            if a.value_expression.is_empty() {
                causes.push(Cause::required(format!("{path}.valueExpression")));
            } else if let Err(e) = cel::compile(&a.value_expression) {
                causes.push(Cause::invalid(format!("{path}.valueExpression"), &a.value_expression, e));
            }
        }
        causes.extend(match_conditions_causes("spec.matchConditions", spec.match_conditions.as_deref()));
        causes
    }

    fn cells(p: &ValidatingAdmissionPolicy) -> Vec<Value> {
        let spec = p.spec.as_ref();
        vec![
            json!(name_of(&p.metadata)),
            json!(spec.and_then(|s| s.validations.as_ref()).map_or(0, Vec::len)),
            json!(param_kind_cell(spec.and_then(|s| s.param_kind.as_ref()))),
            json!(age_of(&p.metadata)),
        ]
    }
}
