//! MutatingAdmissionPolicies: CEL mutations that bindings apply to writes. Stored and
//! validated as kube-apiserver does; applying them needs CEL object construction,
//! which vkube's CEL does not have (see [`crate::admission::cel`]).

use super::{
    CATEGORIES, default_match_resources, match_conditions_causes, match_resources_causes, one_of, param_kind_causes,
    param_kind_cell, variables_causes,
};
use crate::admission::cel;
use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::admissionregistration::v1::MutatingAdmissionPolicy;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The MutatingAdmissionPolicy kind.
pub struct MutatingAdmissionPolicyKind;

impl Kind for MutatingAdmissionPolicyKind {
    type Object = MutatingAdmissionPolicy;
    const CATEGORIES: &'static [&'static str] = CATEGORIES;
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] =
        &[col("Name", "string"), col("Mutations", "integer"), col("ParamKind", "string"), col("Age", "string")];

    fn default(p: &mut MutatingAdmissionPolicy) {
        if let Some(spec) = p.spec.as_mut() {
            spec.failure_policy.get_or_insert_with(|| "Fail".into());
            if let Some(m) = spec.match_constraints.as_mut() {
                default_match_resources(m);
            }
        }
    }

    fn validate(p: &MutatingAdmissionPolicy) -> Vec<Cause> {
        let spec = p.spec.clone().unwrap_or_default();
        let mut causes = Vec::new();
        one_of(&mut causes, "spec.failurePolicy", spec.failure_policy.as_deref(), &["Fail", "Ignore"]);
        causes.extend(param_kind_causes("spec.paramKind", spec.param_kind.as_ref()));
        causes.extend(match_resources_causes("spec.matchConstraints", spec.match_constraints.as_ref(), true));
        causes.extend(variables_causes("spec.variables", spec.variables.as_deref()));
        for (i, m) in spec.mutations.iter().flatten().enumerate() {
            let path = format!("spec.mutations[{i}]");
            let (field, expression) = match m.patch_type.as_str() {
                "ApplyConfiguration" => (
                    "applyConfiguration",
                    m.apply_configuration.as_ref().map(|a| a.expression.clone().unwrap_or_default()),
                ),
                "JSONPatch" => ("jsonPatch", m.json_patch.as_ref().map(|a| a.expression.clone().unwrap_or_default())),
                other => {
                    causes.push(Cause::not_supported(
                        format!("{path}.patchType"),
                        other,
                        &["ApplyConfiguration", "JSONPatch"],
                    ));
                    continue;
                }
            };
            match expression {
                None => {
                    let mut c = Cause::required(format!("{path}.{field}"));
                    c.message = format!("{}: must be specified when patchType is {}", c.message, m.patch_type);
                    causes.push(c);
                }
                Some(e) if e.is_empty() => causes.push(Cause::required(format!("{path}.{field}.expression"))),
                Some(e) => {
                    if let Err(err) = cel::compile(&e) {
                        causes.push(Cause::invalid(format!("{path}.{field}.expression"), &e, err));
                    }
                }
            }
        }
        if spec.mutations.as_ref().is_none_or(Vec::is_empty) {
            causes.push(Cause::required("spec.mutations"));
        }
        match spec.reinvocation_policy.as_deref() {
            None | Some("") => causes.push(Cause::required("spec.reinvocationPolicy")),
            Some(r) => one_of(&mut causes, "spec.reinvocationPolicy", Some(r), &["IfNeeded", "Never"]),
        }
        causes.extend(match_conditions_causes("spec.matchConditions", spec.match_conditions.as_deref()));
        causes
    }

    fn cells(p: &MutatingAdmissionPolicy) -> Vec<Value> {
        let spec = p.spec.as_ref();
        vec![
            json!(name_of(&p.metadata)),
            json!(spec.and_then(|s| s.mutations.as_ref()).map_or(0, Vec::len)),
            json!(param_kind_cell(spec.and_then(|s| s.param_kind.as_ref()))),
            json!(age_of(&p.metadata)),
        ]
    }
}
