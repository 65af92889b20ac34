//! `authorization.k8s.io/v1`: SelfSubjectAccessReview, SubjectAccessReview,
//! LocalSubjectAccessReview and SelfSubjectRulesReview — what `kubectl auth can-i`
//! (with `--list`, `-n`, `--as`) asks. Create-only; nothing is stored.

use super::{Attributes, Authorizer, MASTERS};
use serde_json::{Value, json};
use vkube_core::admission::User;
use vkube_core::status::{ApiError, Cause};

/// The review kinds, as (plural, kind, namespaced).
pub const KINDS: [(&str, &str, bool); 4] = [
    ("localsubjectaccessreviews", "LocalSubjectAccessReview", true),
    ("selfsubjectaccessreviews", "SelfSubjectAccessReview", false),
    ("selfsubjectrulesreviews", "SelfSubjectRulesReview", false),
    ("subjectaccessreviews", "SubjectAccessReview", false),
];

fn invalid(cause: Cause) -> ApiError {
    let mut e = ApiError::invalid("authorization.k8s.io", "", "", vec![cause]);
    if let Some(d) = e.details.as_mut().and_then(Value::as_object_mut) {
        d.remove("name");
        d.remove("kind");
    }
    e
}

fn s(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The attributes a review's spec asks about.
fn attributes_of(spec: &Value, user: User) -> Result<Attributes, ApiError> {
    let resource = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    match (resource, non_resource) {
        (Some(r), None) => Ok(Attributes {
            user,
            verb: s(r, "verb"),
            resource_request: true,
            namespace: s(r, "namespace"),
            api_group: s(r, "group"),
            api_version: s(r, "version"),
            resource: s(r, "resource"),
            subresource: s(r, "subresource"),
            name: s(r, "name"),
            path: String::new(),
            field_selector: r.pointer("/fieldSelector/rawSelector").and_then(Value::as_str).unwrap_or_default().into(),
        }),
        (None, Some(n)) => Ok(Attributes { user, verb: s(n, "verb"), path: s(n, "path"), ..Default::default() }),
        (Some(_), Some(_)) => Err(invalid(Cause::invalid_raw(
            "spec.resourceAttributes",
            "{...}",
            "cannot be specified in combination with nonResourceAttributes",
        ))),
        (None, None) => Err(invalid(Cause::invalid_raw(
            "spec.resourceAttributes",
            "null",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ))),
    }
}

fn status_of(authz: &Authorizer, a: &Attributes) -> Value {
    let d = authz.authorize(a);
    let mut status = json!({"allowed": d.allowed});
    if !d.reason.is_empty() {
        status["reason"] = json!(d.reason);
    }
    status
}

fn answer(mut review: Value, kind: &str, status: Value) -> Value {
    review["kind"] = json!(kind);
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    if !review.get("metadata").is_some_and(Value::is_object) {
        review["metadata"] = json!({});
    }
    review["status"] = status;
    review
}

/// The user a (Local)SubjectAccessReview names.
fn subject_of(spec: &Value) -> Result<User, ApiError> {
    let name = s(spec, "user");
    let groups: Vec<String> =
        spec.get("groups").and_then(|g| serde_json::from_value(g.clone()).ok()).unwrap_or_default();
    if name.is_empty() && groups.is_empty() {
        return Err(invalid(Cause::invalid("spec.user", "", "at least one of user or group must be specified")));
    }
    let extra = spec.get("extra").and_then(|e| serde_json::from_value(e.clone()).ok()).unwrap_or_default();
    Ok(User { name, groups, extra })
}

/// Answer a review of `kind` posted by `user` (in `namespace` for the local one).
///
/// # Errors
/// 400 for a body that is not JSON, 422 for a spec kube-apiserver refuses.
pub fn review(authz: &Authorizer, user: &User, plural: &str, namespace: &str, body: &Value) -> Result<Value, ApiError> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let kind = KINDS.iter().find(|(p, _, _)| *p == plural).map(|(_, k, _)| *k).ok_or_else(ApiError::path_not_found)?;
    match plural {
        "selfsubjectaccessreviews" => {
            let a = attributes_of(&spec, user.clone())?;
            Ok(answer(body.clone(), kind, status_of(authz, &a)))
        }
        "subjectaccessreviews" => {
            let a = attributes_of(&spec, subject_of(&spec)?)?;
            Ok(answer(body.clone(), kind, status_of(authz, &a)))
        }
        "localsubjectaccessreviews" => {
            let a = attributes_of(&spec, subject_of(&spec)?)?;
            let field =
                if a.resource_request { "spec.resourceAttributes.namespace" } else { "spec.nonResourceAttributes" };
            if !a.resource_request || a.namespace != namespace {
                let shown = if a.resource_request { a.namespace.clone() } else { String::new() };
                return Err(invalid(Cause::invalid(field, &shown, "must match metadata.namespace")));
            }
            let mut body = body.clone();
            body["metadata"]["namespace"] = json!(namespace);
            Ok(answer(body, kind, status_of(authz, &a)))
        }
        _ => {
            let ns = s(&spec, "namespace");
            let mut status = rules_review(authz, user, &ns);
            if user.groups.iter().any(|g| g == MASTERS) {
                status = json!({
                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    "incomplete": false,
                });
            }
            Ok(answer(body.clone(), kind, status))
        }
    }
}

/// What `kubectl auth can-i --list` shows: every rule that applies, split into resource
/// and non-resource rules.
fn rules_review(authz: &Authorizer, user: &User, namespace: &str) -> Value {
    let (rules, errors) = authz.snapshot().rules_for(user, namespace);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for r in rules {
        if !r.non_resource_urls.is_empty() {
            non_resource_rules.push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
        }
        if !r.resources.is_empty() {
            let mut e = json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                e["resourceNames"] = json!(r.resource_names);
            }
            resource_rules.push(e);
        }
    }
    let mut status =
        json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false});
    if !errors.is_empty() {
        status["evaluationError"] = json!(super::aggregate(&errors));
    }
    status
}
