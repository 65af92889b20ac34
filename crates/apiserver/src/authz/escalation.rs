//! RBAC's escalation prevention: a Role or ClusterRole may be created or changed only by
//! someone who holds every permission it grants (or may `escalate`), and a binding only
//! by someone who holds the bound role's permissions (or may `bind` it) — kube-apiserver's
//! policy-based RBAC storage, with its refusal text.

use super::rbac::{self, Rule};
use super::{Attributes, Authorizer, GROUP, MASTERS};
use crate::admission::{Admission, AdmissionOutcome, AdmissionRequest, Operation};
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use vkube_core::admission::User;
use vkube_core::status::{ApiError, GroupResource};

/// The admission step that refuses escalating RBAC writes.
pub struct EscalationCheck {
    /// The authorizer (for `escalate` and `bind`, and the requester's rules).
    pub authz: Arc<Authorizer>,
}

fn asks(user: &User, verb: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: verb.into(),
        resource_request: true,
        namespace: namespace.into(),
        api_group: GROUP.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        name: name.into(),
        ..Default::default()
    }
}

fn rules_of(obj: &Value) -> Vec<Rule> {
    obj.get("rules").and_then(|r| serde_json::from_value(r.clone()).ok()).unwrap_or_default()
}

/// `ConfirmNoEscalation`: the refusal, if `user` does not hold all of `rules` in
/// `namespace` ("" for cluster-wide).
fn confirm_no_escalation(authz: &Authorizer, user: &User, namespace: &str, rules: &[Rule]) -> Result<(), String> {
    let (owned, errors) = authz.snapshot().rules_for(user, namespace);
    let missing = rbac::uncovered(&owned, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let groups = user.groups.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(" ");
    let list = missing.iter().map(Rule::compact).collect::<Vec<_>>().join("\n");
    let mut msg = format!(
        "user {:?} (groups=[{groups}]) is attempting to grant RBAC permissions not currently held:\n{list}",
        user.name
    );
    if !errors.is_empty() {
        // kube-apiserver's registry-backed resolver names either kind of missing role this way.
        let errors: Vec<String> = errors
            .iter()
            .map(|e| {
                e.replacen("clusterrole.rbac.authorization.k8s.io", "roles.rbac.authorization.k8s.io", 1).replacen(
                    "role.rbac.authorization.k8s.io",
                    "roles.rbac.authorization.k8s.io",
                    1,
                )
            })
            .collect();
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(msg)
}

#[async_trait]
impl Admission for EscalationCheck {
    async fn admit(&self, req: &AdmissionRequest<'_>, object: Value) -> Result<AdmissionOutcome, ApiError> {
        let pass = |object| Ok(AdmissionOutcome { object, warnings: vec![] });
        let t = req.target;
        if t.group != GROUP || t.subresource.is_some() || req.operation == Operation::Delete {
            return pass(object);
        }
        let user = req.user;
        if user.groups.iter().any(|g| g == MASTERS) {
            return pass(object);
        }
        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(req.name).to_string();
        let gr = GroupResource { group: GROUP, resource: t.resource };
        match t.resource {
            "roles" | "clusterroles" => {
                let unchanged = req.old.is_some_and(|old| {
                    rules_of(old) == rules_of(&object) && old.get("aggregationRule") == object.get("aggregationRule")
                });
                if unchanged || self.authz.authorize(&asks(user, "escalate", t.resource, req.namespace, &name)).allowed
                {
                    return pass(object);
                }
                confirm_no_escalation(&self.authz, user, req.namespace, &rules_of(&object))
                    .map_err(|m| ApiError::forbidden(gr, &name, m))?;
                let aggregates = object.get("aggregationRule").is_some_and(|a| !a.is_null());
                if t.resource == "clusterroles" && aggregates {
                    let everything = [
                        Rule {
                            verbs: vec!["*".into()],
                            api_groups: vec!["*".into()],
                            resources: vec!["*".into()],
                            ..Default::default()
                        },
                        Rule { verbs: vec!["*".into()], non_resource_urls: vec!["*".into()], ..Default::default() },
                    ];
                    if confirm_no_escalation(&self.authz, user, "", &everything).is_err() {
                        return Err(ApiError::forbidden(
                            gr,
                            &name,
                            "must have cluster-admin privileges to use the aggregationRule",
                        ));
                    }
                }
                pass(object)
            }
            "rolebindings" | "clusterrolebindings" => {
                let role_ref: rbac::RoleRef = object
                    .get("roleRef")
                    .and_then(|r| serde_json::from_value(r.clone()).ok())
                    .unwrap_or(rbac::RoleRef { kind: String::new(), name: String::new() });
                let role_resource = if role_ref.kind == "Role" { "roles" } else { "clusterroles" };
                if self.authz.authorize(&asks(user, "bind", role_resource, req.namespace, &role_ref.name)).allowed {
                    return pass(object);
                }
                let rules = self.authz.snapshot().role_ref_rules(&role_ref, req.namespace).map_err(|_| {
                    ApiError::not_found(GroupResource { group: GROUP, resource: role_resource }, &role_ref.name)
                })?;
                confirm_no_escalation(&self.authz, user, req.namespace, &rules)
                    .map_err(|m| ApiError::forbidden(gr, &name, m))?;
                pass(object)
            }
            _ => pass(object),
        }
    }
}
