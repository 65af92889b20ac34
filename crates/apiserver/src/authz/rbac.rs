//! RBAC as kube-apiserver evaluates it: the rules of the roles bound to a user, matched
//! against a request's attributes (`k8s.io/component-helpers/auth/rbac/validation`), and
//! the coverage check that keeps a user from granting more than it holds.

use super::Attributes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One `PolicyRule`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Verbs, `*` for all.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// API groups, `*` for all, `""` for core.
    #[serde(default, rename = "apiGroups", skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Resources (`pods`, `pods/log`, `*/scale`, `*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Names; empty for any.
    #[serde(default, rename = "resourceNames", skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Non-resource paths (`/healthz`, `/api/*`).
    #[serde(default, rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

fn has_or_all(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

impl Rule {
    /// Whether this rule allows the request.
    pub fn allows(&self, a: &Attributes) -> bool {
        if !has_or_all(&self.verbs, &a.verb) {
            return false;
        }
        if !a.resource_request {
            return self.non_resource_urls.iter().any(|u| {
                u == "*" || *u == a.path || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*')))
            });
        }
        if !has_or_all(&self.api_groups, &a.api_group) {
            return false;
        }
        let combined =
            if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
        let resource = self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!a.subresource.is_empty()
                    && r.len() == a.subresource.len() + 2
                    && r.starts_with("*/")
                    && r.ends_with(a.subresource.as_str()))
        });
        resource && (self.resource_names.is_empty() || self.resource_names.contains(&a.name))
    }

    /// The rule written as kube-apiserver's escalation message does:
    /// `{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}`.
    pub fn compact(&self) -> String {
        let q = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" ");
        let mut parts = Vec::new();
        if !self.api_groups.is_empty() {
            parts.push(format!("APIGroups:[{}]", q(&self.api_groups)));
        }
        if !self.resources.is_empty() {
            parts.push(format!("Resources:[{}]", q(&self.resources)));
        }
        if !self.resource_names.is_empty() {
            parts.push(format!("ResourceNames:[{}]", q(&self.resource_names)));
        }
        if !self.non_resource_urls.is_empty() {
            parts.push(format!("NonResourceURLs:[{}]", q(&self.non_resource_urls)));
        }
        parts.push(format!("Verbs:[{}]", q(&self.verbs)));
        format!("{{{}}}", parts.join(", "))
    }

    /// Whether `self` grants everything `other` does (both broken down to one verb, one
    /// group, one resource and one name at a time: `validation.Covers`).
    fn covers_simple(&self, s: &Rule) -> bool {
        let verb = s.verbs.first().map(String::as_str).unwrap_or_default();
        if !has_or_all(&self.verbs, verb) {
            return false;
        }
        if let Some(url) = s.non_resource_urls.first() {
            return self
                .non_resource_urls
                .iter()
                .any(|u| u == "*" || u == url || (u.ends_with('*') && url.starts_with(u.trim_end_matches('*'))));
        }
        let group = s.api_groups.first().map(String::as_str).unwrap_or_default();
        if !has_or_all(&self.api_groups, group) {
            return false;
        }
        let resource = s.resources.first().map(String::as_str).unwrap_or_default();
        let resource_ok = self.resources.iter().any(|r| {
            r == "*"
                || r == resource
                || (r.starts_with("*/") && resource.split_once('/').is_some_and(|(_, sub)| r[2..] == *sub))
        });
        if !resource_ok {
            return false;
        }
        match s.resource_names.first() {
            None => self.resource_names.is_empty(),
            Some(n) => self.resource_names.is_empty() || self.resource_names.contains(n),
        }
    }

    /// The rule broken into single-verb, single-group, single-resource, single-name rules.
    fn breakdown(&self) -> Vec<Rule> {
        let one = |v: &String| vec![v.clone()];
        let mut out = Vec::new();
        for verb in &self.verbs {
            for url in &self.non_resource_urls {
                out.push(Rule { verbs: one(verb), non_resource_urls: one(url), ..Default::default() });
            }
            for group in &self.api_groups {
                for resource in &self.resources {
                    if self.resource_names.is_empty() {
                        out.push(Rule {
                            verbs: one(verb),
                            api_groups: one(group),
                            resources: one(resource),
                            ..Default::default()
                        });
                    }
                    for name in &self.resource_names {
                        out.push(Rule {
                            verbs: one(verb),
                            api_groups: one(group),
                            resources: one(resource),
                            resource_names: one(name),
                            ..Default::default()
                        });
                    }
                }
            }
        }
        out
    }
}

/// The parts of `servant`'s rules that no rule of `owner` covers, compacted and sorted
/// as kube-apiserver's escalation message lists them.
pub fn uncovered(owner: &[Rule], servant: &[Rule]) -> Vec<Rule> {
    let gaps: Vec<Rule> =
        servant.iter().flat_map(Rule::breakdown).filter(|s| !owner.iter().any(|o| o.covers_simple(s))).collect();
    let mut missing = compact(gaps);
    missing.sort_by_key(Rule::compact);
    missing
}

/// Merge single resource rules that differ only in their verbs (kube's `CompactRules`).
fn compact(simple: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    for s in simple {
        let same = out.iter_mut().find(|o| {
            s.non_resource_urls.is_empty()
                && o.non_resource_urls.is_empty()
                && o.api_groups == s.api_groups
                && o.resources == s.resources
                && o.resource_names == s.resource_names
        });
        match same {
            Some(o) => o.verbs.extend(s.verbs),
            None => out.push(s),
        }
    }
    out
}

/// One subject of a binding.
#[derive(Debug, Clone, Deserialize)]
struct Subject {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

/// A binding's role.
#[derive(Debug, Clone, Deserialize)]
pub struct RoleRef {
    /// `Role` or `ClusterRole`.
    #[serde(default)]
    pub kind: String,
    /// The role's name.
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone)]
struct Binding {
    namespace: String,
    role_ref: RoleRef,
    /// Per subject, how kube-apiserver names the grant in an allowed review's reason:
    /// `ClusterRoleBinding "x" of ClusterRole "y" to Group "z"`.
    sources: Vec<String>,
}

fn describe_subject(s: &Subject) -> String {
    if s.kind == "ServiceAccount" && !s.namespace.is_empty() {
        format!("{} {:?}", s.kind, format!("{}/{}", s.name, s.namespace))
    } else {
        format!("{} {:?}", s.kind, s.name)
    }
}

/// Who a binding can name: the keys of the subject index.
fn subject_key(subject: &Subject, binding_namespace: &str) -> Option<String> {
    match subject.kind.as_str() {
        "User" => Some(format!("u:{}", subject.name)),
        "Group" => Some(format!("g:{}", subject.name)),
        "ServiceAccount" => {
            let ns = if subject.namespace.is_empty() { binding_namespace } else { subject.namespace.as_str() };
            (!ns.is_empty()).then(|| format!("u:system:serviceaccount:{ns}:{}", subject.name))
        }
        _ => None,
    }
}

/// The RBAC objects at one moment, indexed for lookups by subject.
#[derive(Default)]
pub struct Snapshot {
    cluster_roles: HashMap<String, Arc<Vec<Rule>>>,
    roles: HashMap<(String, String), Arc<Vec<Rule>>>,
    /// Cluster role bindings, in name order.
    cluster_bindings: Vec<Binding>,
    /// Subject key → (index into `cluster_bindings`, position of the subject).
    cluster_index: HashMap<String, Vec<(usize, usize)>>,
    /// Role bindings, in (namespace, name) order.
    bindings: Vec<Binding>,
    /// (namespace, subject key) → (index into `bindings`, position of the subject).
    index: HashMap<(String, String), Vec<(usize, usize)>>,
}

fn rules_of(obj: &Value) -> Vec<Rule> {
    obj.get("rules").and_then(|r| serde_json::from_value(r.clone()).ok()).unwrap_or_default()
}

fn name_ns(obj: &Value) -> (String, String) {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    (s("/metadata/namespace"), s("/metadata/name"))
}

impl Snapshot {
    /// Build from the stored objects of the four kinds.
    pub fn build(cluster_roles: &[Value], roles: &[Value], cluster_bindings: &[Value], bindings: &[Value]) -> Self {
        let mut s = Snapshot::default();
        for r in cluster_roles {
            s.cluster_roles.insert(name_ns(r).1, Arc::new(rules_of(r)));
        }
        for r in roles {
            s.roles.insert(name_ns(r), Arc::new(rules_of(r)));
        }
        fn sorted(list: &[Value]) -> Vec<&Value> {
            let mut v: Vec<&Value> = list.iter().collect();
            v.sort_by_key(|o| name_ns(o));
            v
        }
        for b in sorted(cluster_bindings) {
            let Some(mut binding) = binding_of(b) else { continue };
            let i = s.cluster_bindings.len();
            let name = name_ns(b).1;
            for (pos, subject) in subjects_of(b).iter().enumerate() {
                binding.sources.push(format!(
                    "ClusterRoleBinding {name:?} of {} {:?} to {}",
                    binding.role_ref.kind,
                    binding.role_ref.name,
                    describe_subject(subject)
                ));
                if let Some(k) = subject_key(subject, "") {
                    s.cluster_index.entry(k).or_default().push((i, pos));
                }
            }
            s.cluster_bindings.push(binding);
        }
        for b in sorted(bindings) {
            let Some(mut binding) = binding_of(b) else { continue };
            let i = s.bindings.len();
            let (ns, name) = name_ns(b);
            for (pos, subject) in subjects_of(b).iter().enumerate() {
                binding.sources.push(format!(
                    "RoleBinding {:?} of {} {:?} to {}",
                    format!("{name}/{ns}"),
                    binding.role_ref.kind,
                    binding.role_ref.name,
                    describe_subject(subject)
                ));
                if let Some(k) = subject_key(subject, &binding.namespace) {
                    s.index.entry((binding.namespace.clone(), k)).or_default().push((i, pos));
                }
            }
            s.bindings.push(binding);
        }
        s
    }

    /// The rules of a cluster role, if it exists.
    pub fn cluster_role(&self, name: &str) -> Option<Arc<Vec<Rule>>> {
        self.cluster_roles.get(name).cloned()
    }

    /// The rules of a role, if it exists.
    pub fn role(&self, namespace: &str, name: &str) -> Option<Arc<Vec<Rule>>> {
        self.roles.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    /// The rules a role reference names, or kube's lookup error.
    pub fn role_ref_rules(&self, role_ref: &RoleRef, namespace: &str) -> Result<Arc<Vec<Rule>>, String> {
        match role_ref.kind.as_str() {
            "ClusterRole" => self
                .cluster_role(&role_ref.name)
                .ok_or_else(|| format!("clusterrole.rbac.authorization.k8s.io \"{}\" not found", role_ref.name)),
            "Role" => self
                .role(namespace, &role_ref.name)
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io \"{}\" not found", role_ref.name)),
            other => Err(format!("unsupported role reference kind: {other:?}")),
        }
    }

    /// Visit the rule sets that apply to `user` in `namespace` (cluster role bindings
    /// first, then the namespace's role bindings), each with the grant's description,
    /// until `visit` returns true. The lookup errors met on the way (bindings to roles
    /// that do not exist).
    pub fn visit(
        &self,
        user: &vkube_core::admission::User,
        namespace: &str,
        mut visit: impl FnMut(&[Rule], &str) -> bool,
    ) -> (bool, Vec<String>) {
        let mut keys = vec![format!("u:{}", user.name)];
        keys.extend(user.groups.iter().map(|g| format!("g:{g}")));
        let first_subjects = |mut hits: Vec<(usize, usize)>| {
            hits.sort_unstable();
            hits.dedup_by_key(|(b, _)| *b);
            hits
        };
        let mut errors = Vec::new();
        let hits = first_subjects(keys.iter().filter_map(|k| self.cluster_index.get(k)).flatten().copied().collect());
        for (i, pos) in hits {
            let b = &self.cluster_bindings[i];
            match self.role_ref_rules(&b.role_ref, "") {
                Ok(rules) if visit(&rules, &b.sources[pos]) => return (true, errors),
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
        if namespace.is_empty() {
            return (false, errors);
        }
        let hits = first_subjects(
            keys.into_iter().filter_map(|k| self.index.get(&(namespace.to_string(), k))).flatten().copied().collect(),
        );
        for (i, pos) in hits {
            let b = &self.bindings[i];
            match self.role_ref_rules(&b.role_ref, &b.namespace) {
                Ok(rules) if visit(&rules, &b.sources[pos]) => return (true, errors),
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
        (false, errors)
    }

    /// Every rule that applies to `user` in `namespace`, and the lookup errors.
    pub fn rules_for(&self, user: &vkube_core::admission::User, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        let mut all = Vec::new();
        let (_, errors) = self.visit(user, namespace, |rules, _| {
            all.extend(rules.iter().cloned());
            false
        });
        (all, errors)
    }

    /// The rules an aggregated cluster role should have: the rules of every other
    /// cluster role its selectors match, in name order, without repeats. None for a role
    /// without an aggregation rule.
    pub fn aggregated_rules(role: &Value, all: &[Value]) -> Option<Vec<Rule>> {
        let selectors = role.pointer("/aggregationRule/clusterRoleSelectors")?.as_array()?;
        let me = name_ns(role).1;
        let selectors: Vec<vkube_core::selector::LabelSelector> =
            selectors.iter().filter_map(|s| vkube_core::selector::LabelSelector::from_object(Some(s)).ok()).collect();
        let mut others: Vec<&Value> = all.iter().filter(|o| name_ns(o).1 != me).collect();
        others.sort_by_key(|o| name_ns(o).1);
        let mut rules: Vec<Rule> = Vec::new();
        for o in others {
            let labels: BTreeMap<String, String> =
                o.pointer("/metadata/labels").and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default();
            if selectors.iter().any(|s| s.matches(&labels)) {
                for r in rules_of(o) {
                    if !rules.contains(&r) {
                        rules.push(r);
                    }
                }
            }
        }
        Some(rules)
    }
}

fn binding_of(b: &Value) -> Option<Binding> {
    let role_ref: RoleRef = serde_json::from_value(b.get("roleRef")?.clone()).ok()?;
    Some(Binding { namespace: name_ns(b).0, role_ref, sources: Vec::new() })
}

fn subjects_of(b: &Value) -> Vec<Subject> {
    b.get("subjects").and_then(|s| serde_json::from_value(s.clone()).ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn rule(v: Value) -> Rule {
        serde_json::from_value(v).expect("rule")
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_names_and_paths() {
        let pods = rule(json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]}));
        assert!(pods.allows(&attrs("get", "", "pods", "", "p")));
        assert!(pods.allows(&attrs("get", "", "pods", "log", "p")));
        assert!(!pods.allows(&attrs("get", "", "pods", "exec", "p")), "a subresource is its own resource");
        assert!(!pods.allows(&attrs("delete", "", "pods", "", "p")));
        assert!(!pods.allows(&attrs("get", "apps", "pods", "", "p")));
        let scale = rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/scale"]}));
        assert!(scale.allows(&attrs("update", "apps", "deployments", "scale", "d")));
        assert!(!scale.allows(&attrs("update", "apps", "deployments", "", "d")));
        let named =
            rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]}));
        assert!(named.allows(&attrs("get", "", "configmaps", "", "a")));
        assert!(!named.allows(&attrs("get", "", "configmaps", "", "b")));
        assert!(!named.allows(&attrs("get", "", "configmaps", "", "")), "a list names nothing");
        let paths = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/api/*"]}));
        let path = |p: &str| Attributes { verb: "get".into(), path: p.into(), ..Default::default() };
        assert!(paths.allows(&path("/healthz")));
        assert!(paths.allows(&path("/api/v1")));
        assert!(!paths.allows(&path("/apis")));
        assert!(!paths.allows(&attrs("get", "", "healthz", "", "")), "path rules grant no resources");
    }

    #[test]
    fn coverage_names_exactly_what_is_not_held() {
        let owner = vec![
            rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]})),
            rule(json!({"verbs": ["*"], "apiGroups": ["apps"], "resources": ["*/scale"]})),
        ];
        let servant = vec![
            rule(json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["secrets"]})),
            rule(json!({"verbs": ["update"], "apiGroups": ["apps"], "resources": ["deployments/scale"]})),
        ];
        let gaps = uncovered(&owner, &servant);
        let text: Vec<String> = gaps.iter().map(Rule::compact).collect();
        assert_eq!(text, [r#"{APIGroups:[""], Resources:["secrets"], Verbs:["list"]}"#]);
        let named =
            vec![rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"]}))];
        assert!(uncovered(&owner, &named).is_empty(), "a named grant is covered by an unnamed one");
        assert_eq!(uncovered(&named, &owner[..1]).len(), 1, "but not the other way round");
    }

    #[test]
    fn bindings_apply_to_users_groups_and_service_accounts() {
        let cr = json!({"metadata": {"name": "reader"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
        let rb = json!({"metadata": {"name": "b", "namespace": "dev"}, "roleRef": {"kind": "ClusterRole", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "bot"}, {"kind": "Group", "name": "team"}]});
        let ghost = json!({"metadata": {"name": "g"}, "roleRef": {"kind": "ClusterRole", "name": "ghost"},
            "subjects": [{"kind": "User", "name": "alice"}]});
        let s = Snapshot::build(&[cr], &[], &[ghost], &[rb]);
        let user = |n: &str, g: &[&str]| vkube_core::admission::User {
            name: n.into(),
            groups: g.iter().map(|x| x.to_string()).collect(),
            ..Default::default()
        };
        let get = attrs("get", "", "pods", "", "p");
        let allowed = |u: &vkube_core::admission::User, ns: &str| {
            s.visit(u, ns, |rules, _| rules.iter().any(|r| r.allows(&get))).0
        };
        assert!(allowed(&user("system:serviceaccount:dev:bot", &[]), "dev"));
        assert!(!allowed(&user("system:serviceaccount:other:bot", &[]), "dev"));
        assert!(!allowed(&user("system:serviceaccount:dev:bot", &[]), "prod"));
        assert!(allowed(&user("carol", &["team"]), "dev"));
        let mut source = String::new();
        assert!(
            s.visit(&user("carol", &["team"]), "dev", |rules, from| {
                source = from.to_string();
                rules.iter().any(|r| r.allows(&get))
            })
            .0
        );
        assert_eq!(source, r#"RoleBinding "b/dev" of ClusterRole "reader" to Group "team""#);
        let (ok, errors) = s.visit(&user("alice", &[]), "dev", |rules, _| rules.iter().any(|r| r.allows(&get)));
        assert!(!ok);
        assert_eq!(errors, [r#"clusterrole.rbac.authorization.k8s.io "ghost" not found"#]);
    }
}
