//! Authorization as kube-apiserver does it with `--authorization-mode=RBAC`: every
//! authenticated request is described by its [`Attributes`] (kube's `RequestInfo`: verb,
//! namespace, group, resource, subresource, name, or a non-resource path) and allowed
//! only if the user is in `system:masters` or a role bound to it has a matching rule
//! ([`rbac`]). A refusal is kube-apiserver's 403 `Status`, word for word.
//!
//! The RBAC objects are read from the store into a [`rbac::Snapshot`] that follows every
//! change ([`Authorizer::follow`]; a write through this server refreshes it before the
//! answer, so a binding acts as soon as it is acknowledged). Aggregated cluster roles
//! (`admin`, `edit`, `view`, and any with an `aggregationRule`) are kept up to date
//! there too. [`bootstrap`] stores kube-apiserver's default policy on first start,
//! [`escalation`] keeps roles and bindings from granting more than their author holds,
//! [`impersonation`] serves `Impersonate-*` headers and [`reviews`] the
//! `authorization.k8s.io` reviews (`kubectl auth can-i`).

pub mod bootstrap;
pub mod escalation;
pub mod impersonation;
pub mod node;
pub mod rbac;
pub mod reviews;

use crate::registry::Registry;
use serde_json::Value;
use std::sync::{Arc, RwLock};
use vkube_core::admission::User;
use vkube_core::status::{ApiError, GroupResource};

/// The group whose members may do anything.
pub const MASTERS: &str = "system:masters";

/// What a request asks to do (kube's `authorizer.Attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Who asks.
    pub user: User,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, or a lowercase method for a non-resource path.
    pub verb: String,
    /// A resource request (else a non-resource path).
    pub resource_request: bool,
    /// Namespace ("" for cluster scope).
    pub namespace: String,
    /// API group ("" for core).
    pub api_group: String,
    /// API version.
    pub api_version: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Object name.
    pub name: String,
    /// The request path.
    pub path: String,
    /// A list's or watch's field selector, as sent (the Node authorizer lets a kubelet
    /// list only the pods with `spec.nodeName` of its own node).
    pub field_selector: String,
}

impl Attributes {
    /// Describe a request as kube-apiserver's `RequestInfoFactory` does.
    pub fn of_request(user: User, method: &http::Method, uri: &http::Uri) -> Self {
        let path = uri.path().to_string();
        let mut a = Attributes { user, path: path.clone(), verb: method.as_str().to_lowercase(), ..Default::default() };
        let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        if parts.len() < 3 || !(parts[0] == "api" || parts[0] == "apis") {
            return a;
        }
        let mut rest = &parts[1..];
        if parts[0] == "apis" {
            if rest.len() < 3 {
                return a;
            }
            a.api_group = rest[0].to_string();
            rest = &rest[1..];
        }
        a.resource_request = true;
        a.api_version = rest[0].to_string();
        rest = &rest[1..];
        if rest.first() == Some(&"watch") || rest.first() == Some(&"proxy") {
            a.verb = rest[0].to_string();
            rest = &rest[1..];
        } else {
            a.verb = match *method {
                http::Method::POST => "create",
                http::Method::GET | http::Method::HEAD => "get",
                http::Method::PUT => "update",
                http::Method::PATCH => "patch",
                http::Method::DELETE => "delete",
                _ => "",
            }
            .to_string();
        }
        if rest.first() == Some(&"namespaces")
            && let Some(ns) = rest.get(1)
        {
            a.namespace = (*ns).to_string();
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        if let Some(r) = rest.first() {
            a.resource = (*r).to_string();
        }
        if let Some(n) = rest.get(1) {
            a.name = (*n).to_string();
        }
        if rest.len() >= 3 && a.verb != "proxy" {
            a.subresource = rest[2].to_string();
        }
        if a.name.is_empty() && a.verb == "get" {
            let q = crate::endpoints::negotiate::query_map(uri);
            let watch = q.get("watch").is_some_and(|v| v == "1" || v == "true");
            a.verb = if watch { "watch" } else { "list" }.to_string();
            if let Some(fs) = q.get("fieldSelector") {
                if let Some(name) = exact_name(fs) {
                    a.name = name;
                }
                a.field_selector = fs.clone();
            }
        }
        if a.name.is_empty() && a.verb == "delete" {
            a.verb = "deletecollection".into();
        }
        a
    }

    /// A streaming subresource (`pods/exec`, `pods/attach`, `pods/portforward`) opened
    /// with GET (WebSocket clients do) needs `create` as well, as kube-apiserver 1.35+
    /// has it (AuthorizePodWebsocketUpgradeCreatePermission): the same request as a
    /// create, to check in addition.
    pub fn streaming_create(&self) -> Option<Self> {
        (self.is_streaming() && self.verb == "get").then(|| Attributes { verb: "create".into(), ..self.clone() })
    }

    /// Whether this names a streaming subresource of a pod (exec, attach, portforward).
    pub fn is_streaming(&self) -> bool {
        self.resource_request
            && self.api_group.is_empty()
            && self.resource == "pods"
            && matches!(self.subresource.as_str(), "exec" | "attach" | "portforward")
    }

    /// The same request by someone else.
    pub fn as_user(&self, user: User) -> Self {
        Attributes { user, ..self.clone() }
    }

    /// kube-apiserver's `forbiddenMessage`.
    pub fn forbidden_message(&self) -> String {
        let user = &self.user.name;
        if !self.resource_request {
            return format!("User {user:?} cannot {} path {:?}", self.verb, self.path);
        }
        let resource = if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        if self.namespace.is_empty() {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                self.verb, self.api_group
            )
        } else {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                self.verb, self.api_group, self.namespace
            )
        }
    }

    /// The 403 kube-apiserver answers for a refused request, with the authorizer's reason.
    pub fn forbidden(&self, reason: &str) -> ApiError {
        let mut msg = self.forbidden_message();
        if !reason.is_empty() {
            msg = format!("{msg}: {reason}");
        }
        if !self.resource_request {
            let mut e = ApiError::new(403, "Forbidden", format!("forbidden: {msg}"));
            e.details = Some(serde_json::json!({}));
            return e;
        }
        ApiError::forbidden(GroupResource { group: &self.api_group, resource: &self.resource }, &self.name, msg)
    }
}

/// `metadata.name=NAME` (or `==`) as the only requirement of a field selector.
fn exact_name(selector: &str) -> Option<String> {
    let (k, v) = selector.split_once("==").or_else(|| selector.split_once('='))?;
    (k.trim() == "metadata.name" && !v.contains(',') && !v.is_empty() && !v.contains('/') && !v.starts_with('='))
        .then(|| v.to_string())
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed.
    pub allowed: bool,
    /// Why (when refused: RBAC's lookup errors, as kube-apiserver words them).
    pub reason: String,
}

/// The authorizer chain: `system:masters`, then the Node authorizer for kubelets, then
/// RBAC.
pub struct Authorizer {
    registry: Arc<Registry>,
    nodes: node::NodeAuthorizer,
    snapshot: RwLock<Arc<rbac::Snapshot>>,
    rebuild: tokio::sync::Mutex<()>,
}

/// The plurals of the four RBAC kinds.
pub(crate) const KINDS: [&str; 4] = ["clusterroles", "roles", "clusterrolebindings", "rolebindings"];
pub(crate) const GROUP: &str = "rbac.authorization.k8s.io";

impl Authorizer {
    /// An authorizer over the registry's RBAC objects (call [`Authorizer::refresh`] or
    /// [`Authorizer::follow`] to load them).
    pub fn new(registry: Arc<Registry>) -> Self {
        Authorizer {
            registry,
            nodes: node::NodeAuthorizer::new(bootstrap::node_rules()),
            snapshot: RwLock::new(Arc::default()),
            rebuild: tokio::sync::Mutex::new(()),
        }
    }

    /// The RBAC objects as last loaded.
    pub fn snapshot(&self) -> Arc<rbac::Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }

    /// Decide a request.
    pub fn authorize(&self, a: &Attributes) -> Decision {
        if a.user.groups.iter().any(|g| g == MASTERS) {
            return Decision { allowed: true, reason: String::new() };
        }
        let node = self.nodes.decide(a);
        if let Some(d) = node.as_ref().filter(|d| d.allowed) {
            return d.clone();
        }
        let snapshot = self.snapshot();
        let mut by = String::new();
        let (allowed, errors) = snapshot.visit(&a.user, &a.namespace, |rules, source| {
            let hit = rules.iter().any(|r| r.allows(a));
            if hit {
                by = format!("RBAC: allowed by {source}");
            }
            hit
        });
        let reason = if allowed {
            by
        } else {
            // kube's union authorizer: every authorizer's reason, in order.
            let rbac = if errors.is_empty() { String::new() } else { format!("RBAC: {}", aggregate(&errors)) };
            let reasons: Vec<String> =
                node.map(|d| d.reason).into_iter().chain([rbac]).filter(|r| !r.is_empty()).collect();
            reasons.join(", ")
        };
        Decision { allowed, reason }
    }

    /// Allow the request or answer kube-apiserver's 403.
    ///
    /// # Errors
    /// The 403.
    pub fn check(&self, a: &Attributes) -> Result<(), ApiError> {
        let d = self.authorize(a);
        if d.allowed { Ok(()) } else { Err(a.forbidden(&d.reason)) }
    }

    /// Reload the RBAC objects from the store, and bring the aggregated cluster roles up
    /// to date (a changed aggregated role is written back, which brings another reload).
    pub async fn refresh(&self) {
        let _one_at_a_time = self.rebuild.lock().await;
        let catalog = self.registry.catalog().clone();
        let mut lists: Vec<Vec<Value>> = Vec::new();
        for plural in KINDS {
            let Some(res) = catalog.find(GROUP, "v1", plural) else {
                tracing::warn!(plural, "RBAC kind not served; authorization sees none");
                lists.push(Vec::new());
                continue;
            };
            match self.registry.store().list(&res.prefix(), Default::default()).await {
                Ok(list) => lists.push(list.items.iter().filter_map(|kv| Registry::decode(kv).ok()).collect()),
                Err(e) => {
                    // Keep the last snapshot rather than refuse everyone on a store hiccup.
                    tracing::warn!(error = %e, plural, "RBAC objects could not be listed; keeping the last ones");
                    return;
                }
            }
        }
        let mut cluster_roles = lists[0].clone();
        let mut changed = Vec::new();
        for role in &cluster_roles {
            if let Some(rules) = rbac::Snapshot::aggregated_rules(role, &lists[0]) {
                let current: Vec<rbac::Rule> =
                    role.get("rules").and_then(|r| serde_json::from_value(r.clone()).ok()).unwrap_or_default();
                if current != rules {
                    changed.push((
                        role.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string(),
                        rules,
                    ));
                }
            }
        }
        for (name, rules) in &changed {
            if let Some(r) =
                cluster_roles.iter_mut().find(|r| r.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
            {
                r["rules"] = serde_json::to_value(rules).unwrap_or_default();
            }
        }
        let snapshot = rbac::Snapshot::build(&cluster_roles, &lists[1], &lists[2], &lists[3]);
        match self.snapshot.write() {
            Ok(mut s) => *s = Arc::new(snapshot),
            Err(e) => *e.into_inner() = Arc::new(snapshot),
        }
        drop(_one_at_a_time);
        for (name, rules) in changed {
            self.write_aggregated(&name, rules).await;
        }
    }

    async fn write_aggregated(&self, name: &str, rules: Vec<rbac::Rule>) {
        let Some(res) = self.registry.catalog().find(GROUP, "v1", "clusterroles") else { return };
        let opts = crate::registry::WriteOptions {
            field_manager: Some("clusterrole-aggregation-controller".into()),
            ..Default::default()
        };
        let rules = serde_json::to_value(&rules).unwrap_or_default();
        let result = self
            .registry
            .update_with(&res, "", name, None, &opts, |old| {
                let mut next = old.clone();
                next["rules"] = rules.clone();
                if let Some(md) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                    md.remove("resourceVersion");
                }
                Ok(next)
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(role = name, error = %e.message, "aggregated cluster role not updated");
        }
    }

    /// Follow every change to the RBAC objects (through any replica on the store).
    pub async fn follow(self: Arc<Self>) {
        let Some(res) = self.registry.catalog().find(GROUP, "v1", "roles") else { return };
        // All four kinds live under one group prefix.
        let prefix = res.prefix();
        let group_prefix =
            prefix.trim_end_matches('/').rsplit_once('/').map(|(p, _)| format!("{p}/")).unwrap_or(prefix);
        let rbac = self.registry.follow_prefix(&group_prefix, "RBAC objects", || self.refresh());
        tokio::join!(rbac, self.nodes.follow(&self.registry));
    }
}

/// `utilerrors.NewAggregate(errs).Error()`: one message alone, several in brackets.
fn aggregate(errors: &[String]) -> String {
    let mut seen: Vec<&String> = Vec::new();
    for e in errors {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    if seen.len() == 1 {
        seen[0].clone()
    } else {
        format!("[{}]", seen.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: &str, uri: &str) -> Attributes {
        let m: http::Method = method.parse().expect("method");
        let u: http::Uri = uri.parse().expect("uri");
        Attributes::of_request(User::default(), &m, &u)
    }

    #[test]
    fn requests_are_described_as_kube_apiserver_does() {
        let a = info("GET", "/api/v1/namespaces/kube-system/secrets");
        assert_eq!((a.verb.as_str(), a.namespace.as_str(), a.resource.as_str()), ("list", "kube-system", "secrets"));
        let a = info("GET", "/api/v1/namespaces/dev/pods/p/log");
        assert_eq!((a.verb.as_str(), a.name.as_str(), a.subresource.as_str()), ("get", "p", "log"));
        let a = info("GET", "/apis/apps/v1/deployments?watch=true");
        assert_eq!((a.verb.as_str(), a.api_group.as_str(), a.namespace.as_str()), ("watch", "apps", ""));
        let a = info("GET", "/api/v1/watch/namespaces/dev/pods");
        assert_eq!((a.verb.as_str(), a.namespace.as_str(), a.resource.as_str()), ("watch", "dev", "pods"));
        let a = info("GET", "/api/v1/namespaces/dev/configmaps?fieldSelector=metadata.name%3Dx");
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("list", "x"));
        let a = info("DELETE", "/api/v1/namespaces/dev/pods");
        assert_eq!(a.verb, "deletecollection");
        let a = info("GET", "/api/v1/namespaces/dev");
        assert_eq!((a.resource.as_str(), a.name.as_str(), a.namespace.as_str()), ("namespaces", "dev", "dev"));
        let a = info("PUT", "/api/v1/namespaces/dev/finalize");
        assert_eq!((a.resource.as_str(), a.name.as_str(), a.subresource.as_str()), ("namespaces", "dev", "finalize"));
        for p in ["/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/healthz", "/openapi/v2"] {
            let a = info("GET", p);
            assert!(!a.resource_request, "{p}");
            assert_eq!(a.verb, "get");
        }
        let a = info("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews");
        assert_eq!((a.verb.as_str(), a.resource.as_str()), ("create", "selfsubjectaccessreviews"));
    }

    #[test]
    fn refusals_read_as_kube_apiserver_writes_them() {
        let mut a = info("GET", "/api/v1/namespaces/kube-system/secrets");
        a.user.name = "system:serviceaccount:default:nobody".into();
        let e = a.forbidden("");
        assert_eq!(
            e.message,
            "secrets is forbidden: User \"system:serviceaccount:default:nobody\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
        );
        assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
        let mut a = info("GET", "/metrics");
        a.user.name = "alice".into();
        assert_eq!(a.forbidden("").message, "forbidden: User \"alice\" cannot get path \"/metrics\"");
        let mut a = info("GET", "/apis/apps/v1/namespaces/x/deployments/d/scale");
        a.user.name = "alice".into();
        assert_eq!(
            a.forbidden("RBAC: clusterrole.rbac.authorization.k8s.io \"ghost\" not found").message,
            "deployments.apps \"d\" is forbidden: User \"alice\" cannot get resource \"deployments/scale\" in API group \"apps\" in the namespace \"x\": RBAC: clusterrole.rbac.authorization.k8s.io \"ghost\" not found"
        );
    }
}
