//! Dynamic admission: what the admissionregistration.k8s.io objects configure — mutating
//! and validating webhooks (AdmissionReview v1 over HTTPS) and ValidatingAdmissionPolicies
//! with their bindings (CEL) — as kube-apiserver's MutatingAdmissionWebhook,
//! ValidatingAdmissionPolicy and ValidatingAdmissionWebhook plugins.
//!
//! The configurations are compiled into a [`Snapshot`] kept current by following the
//! store ([`Dynamic::follow`]), so a request only matches and calls. Mutating webhooks run
//! in the admission chain (before defaulting and validation of the object, whose result
//! they may change); policies and validating webhooks run on the object as it will be
//! stored ([`Dynamic::validate`], called by the registry after the kind's own
//! validation), with `dryRun` passed on. MutatingAdmissionPolicies apply before the
//! mutating webhooks, as in kube-apiserver: an `ApplyConfiguration` is merged into the
//! object (maps merge, lists and scalars replace — a JSON merge, where kube-apiserver
//! merges lists with merge keys by key), a `JSONPatch` is applied as one.

use super::cel::{self, Activation, Expr};
use super::webhook_client::{self, Endpoint};
use super::{Admission, AdmissionOutcome, AdmissionRequest, Operation};
use crate::registry::Registry;
use async_trait::async_trait;
use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1 as ar;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use vkube_core::admission::User;
use vkube_core::selector::LabelSelector;
use vkube_core::status::{ApiError, GroupResource};

const GROUP: &str = "admissionregistration.k8s.io";

/// One request, owned: what policies and webhooks are matched against and told.
#[derive(Debug, Clone)]
pub struct Facts {
    /// What is done.
    pub operation: Operation,
    /// API group of the resource.
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource ("" for the object itself).
    pub subresource: String,
    /// Namespace ("" when cluster-scoped).
    pub namespace: String,
    /// Name (may be "" before one is generated).
    pub name: String,
    /// Whether the resource is namespaced.
    pub namespaced: bool,
    /// By whom.
    pub user: User,
    /// `dryRun=All`.
    pub dry_run: bool,
}

impl Facts {
    /// The facts of a request the admission chain sees.
    pub fn of(req: &AdmissionRequest<'_>) -> Self {
        Facts {
            operation: req.operation,
            group: req.target.group.into(),
            version: req.target.version.into(),
            kind: req.target.kind.into(),
            resource: req.target.resource.into(),
            subresource: req.target.subresource.unwrap_or_default().into(),
            namespace: req.namespace.into(),
            name: req.name.into(),
            namespaced: !req.namespace.is_empty() || (req.target.group.is_empty() && req.target.kind == "Namespace"),
            user: req.user.clone(),
            dry_run: req.dry_run,
        }
    }
    /// Whether the request is to an admission configuration itself, which no webhook or
    /// policy sees (as in kube-apiserver: a broken webhook cannot lock itself in).
    pub fn exempt(&self) -> bool {
        self.group == GROUP
    }
    fn operation_name(&self) -> &'static str {
        match self.operation {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
    fn group_resource(&self) -> GroupResource<'_> {
        GroupResource { group: &self.group, resource: &self.resource }
    }
}

/// A rule of a webhook or policy.
#[derive(Debug, Clone, Default)]
struct Rule {
    operations: Vec<String>,
    groups: Vec<String>,
    versions: Vec<String>,
    resources: Vec<String>,
    scope: String,
}

impl Rule {
    fn of(r: &ar::RuleWithOperations) -> Self {
        Rule {
            operations: r.operations.clone().unwrap_or_default(),
            groups: r.api_groups.clone().unwrap_or_default(),
            versions: r.api_versions.clone().unwrap_or_default(),
            resources: r.resources.clone().unwrap_or_default(),
            scope: r.scope.clone().unwrap_or_else(|| "*".into()),
        }
    }
    fn of_named(r: &ar::NamedRuleWithOperations) -> (Self, Vec<String>) {
        (
            Rule {
                operations: r.operations.clone().unwrap_or_default(),
                groups: r.api_groups.clone().unwrap_or_default(),
                versions: r.api_versions.clone().unwrap_or_default(),
                resources: r.resources.clone().unwrap_or_default(),
                scope: r.scope.clone().unwrap_or_else(|| "*".into()),
            },
            r.resource_names.clone().unwrap_or_default(),
        )
    }

    /// Whether the rule covers the request; `exact`: the version must be named (else
    /// any version of the same group and resource will do, as `matchPolicy:
    /// Equivalent` does for the versions vkube serves).
    fn matches(&self, f: &Facts, exact: bool) -> bool {
        let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        if !any(&self.operations, f.operation_name()) || !any(&self.groups, &f.group) {
            return false;
        }
        if exact && !any(&self.versions, &f.version) {
            return false;
        }
        let resource_ok = self.resources.iter().any(|r| {
            let (res, sub) = r.split_once('/').unwrap_or((r.as_str(), ""));
            let res_ok = res == "*" || res == f.resource;
            let sub_ok = if f.subresource.is_empty() { sub.is_empty() } else { sub == "*" || sub == f.subresource };
            (r == "*" && f.subresource.is_empty()) || (r != "*" && res_ok && sub_ok) || r == "*/*"
        });
        let scope_ok = match self.scope.as_str() {
            "Cluster" => !f.namespaced || f.kind == "Namespace",
            "Namespaced" => f.namespaced && f.kind != "Namespace",
            _ => true,
        };
        resource_ok && scope_ok
    }
}

/// Which requests a webhook or policy (binding) selects.
#[derive(Debug, Clone, Default)]
struct Selection {
    rules: Vec<(Rule, Vec<String>)>,
    excluded: Vec<(Rule, Vec<String>)>,
    exact: bool,
    namespace_selector: Option<LabelSelector>,
    object_selector: Option<LabelSelector>,
}

fn selector(s: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>) -> Option<LabelSelector> {
    let s = s?;
    let v = serde_json::to_value(s).ok()?;
    match LabelSelector::from_object(Some(&v)) {
        Ok(sel) => Some(sel),
        Err(e) => {
            tracing::warn!(error = ?e, "an admission selector does not parse; it selects nothing");
            Some(
                LabelSelector::from_object(Some(
                    &json!({"matchExpressions": [{"key": "-", "operator": "In", "values": []}]}),
                ))
                .unwrap_or_default(),
            )
        }
    }
}

impl Selection {
    fn of_match_resources(m: &ar::MatchResources) -> Self {
        Selection {
            rules: m.resource_rules.iter().flatten().map(Rule::of_named).collect(),
            excluded: m.exclude_resource_rules.iter().flatten().map(Rule::of_named).collect(),
            exact: m.match_policy.as_deref() == Some("Exact"),
            namespace_selector: selector(m.namespace_selector.as_ref()),
            object_selector: selector(m.object_selector.as_ref()),
        }
    }

    fn rules_match(&self, f: &Facts, name: &str) -> bool {
        let hit = |(r, names): &(Rule, Vec<String>)| {
            r.matches(f, self.exact) && (names.is_empty() || names.iter().any(|n| n == name))
        };
        (self.rules.is_empty() || self.rules.iter().any(hit)) && !self.excluded.iter().any(hit)
    }

    async fn selects(
        &self,
        f: &Facts,
        ns_labels: &mut NamespaceLabels<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> bool {
        if let Some(sel) = &self.object_selector {
            let labels = |o: Option<&Value>| o.map(vkube_core::meta::labels);
            let hit = [labels(object), labels(old)].into_iter().flatten().any(|l| sel.matches(&l));
            let none = object.is_none() && old.is_none();
            if !(hit || (none && sel.matches(&BTreeMap::new()))) {
                return false;
            }
        }
        if let Some(sel) = &self.namespace_selector {
            if f.group.is_empty() && f.kind == "Namespace" {
                let own = object.or(old).map(vkube_core::meta::labels).unwrap_or_default();
                return sel.matches(&own);
            }
            if f.namespace.is_empty() {
                return true;
            }
            return sel.matches(ns_labels.get().await);
        }
        true
    }
}

/// The labels of the request's namespace, read once per request.
struct NamespaceLabels<'a> {
    registry: &'a Registry,
    namespace: &'a str,
    labels: Option<BTreeMap<String, String>>,
}

impl NamespaceLabels<'_> {
    async fn get(&mut self) -> &BTreeMap<String, String> {
        if self.labels.is_none() {
            let mut labels = BTreeMap::new();
            if let Some(res) = self.registry.catalog().find("", "v1", "namespaces") {
                match self.registry.get(&res, "", self.namespace).await {
                    Ok(ns) => labels = vkube_core::meta::labels(&ns),
                    Err(e) if e.code == 404 => {
                        // kube-apiserver defaults the name label of a namespace that does not exist yet.
                    }
                    Err(e) => {
                        tracing::warn!(namespace = self.namespace, error = %e.message, "namespace labels not read for admission")
                    }
                }
            }
            labels.insert("kubernetes.io/metadata.name".into(), self.namespace.to_string());
            self.labels = Some(labels);
        }
        self.labels.get_or_insert_with(BTreeMap::new)
    }
}

/// A compiled webhook.
struct Hook {
    name: String,
    selection: Selection,
    fail_closed: bool,
    conditions: Vec<(String, Expr)>,
    client: ar::WebhookClientConfig,
    timeout: Duration,
    reinvoke: bool,
    review_version: String,
}

/// A compiled validation of a policy.
struct Validation {
    expression: Expr,
    message: Option<String>,
    message_expression: Option<Expr>,
    reason: String,
}

/// A compiled ValidatingAdmissionPolicy.
struct Policy {
    name: String,
    selection: Selection,
    fail_closed: bool,
    conditions: Vec<(String, Expr)>,
    variables: Vec<(String, Expr)>,
    validations: Vec<Validation>,
    param_kind: Option<(String, String)>,
    /// For a MutatingAdmissionPolicy: each mutation (`true`: ApplyConfiguration, else
    /// JSONPatch) and its expression.
    mutations: Vec<(bool, Expr)>,
}

/// A policy's binding.
struct Binding {
    name: String,
    policy: String,
    selection: Option<Selection>,
    actions: Vec<String>,
    param_ref: Option<ar::ParamRef>,
}

/// Every configuration, compiled.
#[derive(Default)]
pub struct Snapshot {
    mutating: Vec<Arc<Hook>>,
    validating: Vec<Arc<Hook>>,
    policies: BTreeMap<String, Arc<Policy>>,
    bindings: Vec<Arc<Binding>>,
    mutating_policies: BTreeMap<String, Arc<Policy>>,
    mutating_bindings: Vec<Arc<Binding>>,
}

fn conditions(list: Option<&[ar::MatchCondition]>) -> Vec<(String, Expr)> {
    list.unwrap_or_default()
        .iter()
        .filter_map(|c| match cel::compile(&c.expression) {
            Ok(e) => Some((c.name.clone(), e)),
            Err(err) => {
                tracing::warn!(condition = c.name, error = err, "a stored match condition does not compile; skipped");
                None
            }
        })
        .collect()
}

/// A stored policy's expression, compiled; one that no longer compiles is logged and left out.
fn compile_stored(policy: &str, what: &str, source: &str) -> Option<Expr> {
    match cel::compile(source) {
        Ok(x) => Some(x),
        Err(err) => {
            tracing::warn!(policy, what, error = err, "a stored policy expression does not compile");
            None
        }
    }
}

fn variables(policy: &str, list: Option<&[ar::Variable]>) -> Vec<(String, Expr)> {
    list.unwrap_or_default()
        .iter()
        .filter_map(|v| compile_stored(policy, "variable", &v.expression).map(|e| (v.name.clone(), e)))
        .collect()
}

fn review_version(versions: &[String]) -> String {
    if versions.iter().any(|v| v == "v1") { "v1".into() } else { "v1beta1".into() }
}

impl Snapshot {
    fn build(lists: &[Vec<Value>]) -> Self {
        let empty = Vec::new();
        let list = |i: usize| lists.get(i).unwrap_or(&empty);
        let (mutating, validating, policies, bindings) = (list(0), list(1), list(2), list(3));
        let (mutating_policies, mutating_bindings) = (list(4), list(5));
        fn sorted<
            T: serde::de::DeserializeOwned
                + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
        >(
            items: &[Value],
        ) -> Vec<T> {
            let mut out: Vec<T> = items.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect();
            out.sort_by(|a, b| a.metadata().name.cmp(&b.metadata().name));
            out
        }
        let mut snap = Snapshot::default();
        for c in sorted::<ar::MutatingWebhookConfiguration>(mutating) {
            for h in c.webhooks.unwrap_or_default() {
                snap.mutating.push(Arc::new(Hook {
                    selection: Selection {
                        rules: h.rules.iter().flatten().map(|r| (Rule::of(r), vec![])).collect(),
                        excluded: vec![],
                        exact: h.match_policy.as_deref() == Some("Exact"),
                        namespace_selector: selector(h.namespace_selector.as_ref()),
                        object_selector: selector(h.object_selector.as_ref()),
                    },
                    fail_closed: h.failure_policy.as_deref() != Some("Ignore"),
                    conditions: conditions(h.match_conditions.as_deref()),
                    timeout: Duration::from_secs(h.timeout_seconds.unwrap_or(10).clamp(1, 30) as u64),
                    reinvoke: h.reinvocation_policy.as_deref() == Some("IfNeeded"),
                    review_version: review_version(&h.admission_review_versions),
                    client: h.client_config,
                    name: h.name,
                }));
            }
        }
        for c in sorted::<ar::ValidatingWebhookConfiguration>(validating) {
            for h in c.webhooks.unwrap_or_default() {
                snap.validating.push(Arc::new(Hook {
                    selection: Selection {
                        rules: h.rules.iter().flatten().map(|r| (Rule::of(r), vec![])).collect(),
                        excluded: vec![],
                        exact: h.match_policy.as_deref() == Some("Exact"),
                        namespace_selector: selector(h.namespace_selector.as_ref()),
                        object_selector: selector(h.object_selector.as_ref()),
                    },
                    fail_closed: h.failure_policy.as_deref() != Some("Ignore"),
                    conditions: conditions(h.match_conditions.as_deref()),
                    timeout: Duration::from_secs(h.timeout_seconds.unwrap_or(10).clamp(1, 30) as u64),
                    reinvoke: false,
                    review_version: review_version(&h.admission_review_versions),
                    client: h.client_config,
                    name: h.name,
                }));
            }
        }
        for p in sorted::<ar::ValidatingAdmissionPolicy>(policies) {
            let name = p.metadata.name.clone().unwrap_or_default();
            let spec = p.spec.unwrap_or_default();
            let compile = |what: &str, e: &str| compile_stored(&name, what, e);
            let policy = Policy {
                selection: spec.match_constraints.as_ref().map(Selection::of_match_resources).unwrap_or_default(),
                fail_closed: spec.failure_policy.as_deref() != Some("Ignore"),
                conditions: conditions(spec.match_conditions.as_deref()),
                variables: variables(&name, spec.variables.as_deref()),
                validations: spec
                    .validations
                    .iter()
                    .flatten()
                    .filter_map(|v| {
                        Some(Validation {
                            expression: compile("validation", &v.expression)?,
                            message: v.message.clone().filter(|m| !m.is_empty()),
                            message_expression: v
                                .message_expression
                                .as_deref()
                                .filter(|m| !m.is_empty())
                                .and_then(|m| compile("messageExpression", m)),
                            reason: v.reason.clone().unwrap_or_else(|| "Invalid".into()),
                        })
                    })
                    .collect(),
                param_kind: spec.param_kind.map(|k| (k.api_version.unwrap_or_default(), k.kind.unwrap_or_default())),
                mutations: vec![],
                name: name.clone(),
            };
            snap.policies.insert(name, Arc::new(policy));
        }
        for p in sorted::<ar::MutatingAdmissionPolicy>(mutating_policies) {
            let name = p.metadata.name.clone().unwrap_or_default();
            let spec = p.spec.unwrap_or_default();
            let compile = |what: &str, e: &str| compile_stored(&name, what, e);
            let policy = Policy {
                selection: spec.match_constraints.as_ref().map(Selection::of_match_resources).unwrap_or_default(),
                fail_closed: spec.failure_policy.as_deref() != Some("Ignore"),
                conditions: conditions(spec.match_conditions.as_deref()),
                variables: variables(&name, spec.variables.as_deref()),
                validations: vec![],
                param_kind: spec.param_kind.map(|k| (k.api_version.unwrap_or_default(), k.kind.unwrap_or_default())),
                mutations: spec
                    .mutations
                    .iter()
                    .flatten()
                    .filter_map(|m| {
                        let apply = m.patch_type == "ApplyConfiguration";
                        let expression = if apply {
                            m.apply_configuration.as_ref().and_then(|a| a.expression.clone())
                        } else {
                            m.json_patch.as_ref().and_then(|a| a.expression.clone())
                        }?;
                        compile("mutation", &expression).map(|e| (apply, e))
                    })
                    .collect(),
                name: name.clone(),
            };
            snap.mutating_policies.insert(name, Arc::new(policy));
        }
        for b in sorted::<ar::MutatingAdmissionPolicyBinding>(mutating_bindings) {
            let spec = b.spec.unwrap_or_default();
            snap.mutating_bindings.push(Arc::new(Binding {
                name: b.metadata.name.clone().unwrap_or_default(),
                policy: spec.policy_name.clone().unwrap_or_default(),
                selection: spec.match_resources.as_ref().map(Selection::of_match_resources),
                actions: vec![],
                param_ref: spec.param_ref.clone(),
            }));
        }
        for b in sorted::<ar::ValidatingAdmissionPolicyBinding>(bindings) {
            snap.bindings.push(Arc::new(Binding {
                name: b.metadata.name.clone().unwrap_or_default(),
                policy: b.spec.policy_name.clone(),
                selection: b.spec.match_resources.as_ref().map(Selection::of_match_resources),
                actions: b.spec.validation_actions.clone(),
                param_ref: b.spec.param_ref.clone(),
            }));
        }
        snap
    }

    /// Whether nothing is configured (the common case: no work per request).
    fn is_empty(&self) -> bool {
        self.mutating.is_empty()
            && self.validating.is_empty()
            && self.bindings.is_empty()
            && self.mutating_bindings.is_empty()
    }
}

/// Reaches a webhook's `service` (a virtual cluster passes a way through its host).
#[async_trait]
pub trait ServiceEndpoint: Send + Sync {
    /// The endpoint of `service` for a call with `timeout`.
    ///
    /// # Errors
    /// Why the service cannot be reached.
    async fn endpoint(&self, service: &ar::ServiceReference, timeout: Duration) -> Result<Endpoint, String>;
}

/// The plugin: mutating webhooks in the chain, policies and validating webhooks in
/// [`Dynamic::validate`].
pub struct Dynamic {
    registry: Arc<Registry>,
    snapshot: RwLock<Arc<Snapshot>>,
    services: RwLock<Option<Arc<dyn ServiceEndpoint>>>,
    rebuild: tokio::sync::Mutex<()>,
}

/// A denial or failure to return, or warnings to add.
type Verdict = Result<Vec<String>, ApiError>;

impl Dynamic {
    /// Over a registry, with nothing configured until [`Dynamic::refresh`].
    pub fn new(registry: Arc<Registry>) -> Self {
        Dynamic {
            registry,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            services: RwLock::new(None),
            rebuild: Default::default(),
        }
    }

    /// Reach webhook services this way (default: the service's endpoints, else its cluster IP).
    pub fn set_service_endpoint(&self, s: Arc<dyn ServiceEndpoint>) {
        match self.services.write() {
            Ok(mut g) => *g = Some(s),
            Err(e) => *e.into_inner() = Some(s),
        }
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }

    /// Reload every configuration from the store.
    pub async fn refresh(&self) {
        let _one = self.rebuild.lock().await;
        let catalog = self.registry.catalog().clone();
        let mut lists = Vec::new();
        for plural in [
            "mutatingwebhookconfigurations",
            "validatingwebhookconfigurations",
            "validatingadmissionpolicies",
            "validatingadmissionpolicybindings",
            "mutatingadmissionpolicies",
            "mutatingadmissionpolicybindings",
        ] {
            let Some(res) = catalog.find(GROUP, "v1", plural) else {
                lists.push(Vec::new());
                continue;
            };
            match self.registry.store().list(&res.prefix(), Default::default()).await {
                Ok(list) => {
                    lists.push(list.items.iter().filter_map(|kv| Registry::decode(kv).ok()).collect::<Vec<Value>>())
                }
                Err(e) => {
                    tracing::warn!(error = %e, plural, "admission configurations could not be listed; keeping the last ones");
                    return;
                }
            }
        }
        let snap = Snapshot::build(&lists);
        match self.snapshot.write() {
            Ok(mut s) => *s = Arc::new(snap),
            Err(e) => *e.into_inner() = Arc::new(snap),
        }
    }

    /// Follow every change to the configurations (through any replica on the store).
    pub async fn follow(self: Arc<Self>) {
        let Some(res) = self.registry.catalog().find(GROUP, "v1", "validatingwebhookconfigurations") else { return };
        let prefix = res.prefix();
        let group_prefix =
            prefix.trim_end_matches('/').rsplit_once('/').map(|(p, _)| format!("{p}/")).unwrap_or(prefix);
        self.registry.follow_prefix(&group_prefix, "admission configurations", || self.refresh()).await;
    }

    /// The `request` of an AdmissionReview (and of CEL's `request`).
    fn review_request(f: &Facts, uid: &str, name: &str, object: Option<&Value>, old: Option<&Value>) -> Value {
        let kind = json!({"group": f.group, "version": f.version, "kind": f.kind});
        let resource = json!({"group": f.group, "version": f.version, "resource": f.resource});
        let options_kind = match f.operation {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
        };
        let mut r = json!({
            "uid": uid,
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "name": name,
            "operation": f.operation_name(),
            "userInfo": {"username": f.user.name, "groups": f.user.groups, "extra": f.user.extra},
            "object": object.cloned().unwrap_or(Value::Null),
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": f.dry_run,
            "options": {"kind": options_kind, "apiVersion": "meta.k8s.io/v1"},
        });
        if !f.namespace.is_empty() {
            r["namespace"] = json!(f.namespace);
        }
        if !f.subresource.is_empty() {
            r["subResource"] = json!(f.subresource);
            r["requestSubResource"] = json!(f.subresource);
        }
        r
    }

    /// Whether a webhook or policy's match conditions let the request through; an error
    /// is a failure of the condition named.
    fn conditions_pass(conds: &[(String, Expr)], act: &Activation) -> Result<bool, String> {
        for (name, expr) in conds {
            match act.eval_bool(expr) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => return Err(format!("matchCondition '{name}': {e}")),
            }
        }
        Ok(true)
    }

    async fn endpoint_of(&self, hook: &Hook) -> Result<Endpoint, String> {
        if let Some(url) = &hook.client.url {
            return webhook_client::endpoint_of_url(url, hook.timeout);
        }
        let Some(svc) = &hook.client.service else { return Err("webhook has no url or service".into()) };
        let custom = match self.services.read() {
            Ok(g) => g.clone(),
            Err(e) => e.into_inner().clone(),
        };
        if let Some(custom) = custom {
            return custom.endpoint(svc, hook.timeout).await;
        }
        self.local_service_endpoint(svc, hook.timeout).await
    }

    /// A service of this API server's cluster: a ready endpoint address with the
    /// service port's target, else the cluster IP; the certificate must name
    /// `NAME.NAMESPACE.svc`.
    async fn local_service_endpoint(&self, svc: &ar::ServiceReference, timeout: Duration) -> Result<Endpoint, String> {
        let port = svc.port.unwrap_or(443);
        let server_name = format!("{}.{}.svc", svc.name, svc.namespace);
        let path = svc.path.clone().unwrap_or_else(|| "/".into());
        let not_found = || format!("service \"{}/{}\" not found", svc.namespace, svc.name);
        let catalog = self.registry.catalog();
        let services = catalog.find("", "v1", "services").ok_or_else(not_found)?;
        let service = self.registry.get(&services, &svc.namespace, &svc.name).await.map_err(|_| not_found())?;
        let ports = service.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
        let sp = ports
            .iter()
            .find(|p| p.get("port").and_then(Value::as_i64) == Some(i64::from(port)))
            .ok_or_else(|| format!("service \"{}/{}\" has no port {port}", svc.namespace, svc.name))?;
        if let Some(eps) = catalog.find("", "v1", "endpoints")
            && let Ok(ep) = self.registry.get(&eps, &svc.namespace, &svc.name).await
        {
            let port_name = sp.get("name").and_then(Value::as_str).unwrap_or_default();
            for subset in ep.get("subsets").and_then(Value::as_array).into_iter().flatten() {
                let target = subset
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|p| p.get("name").and_then(Value::as_str).unwrap_or_default() == port_name);
                let ip = subset.pointer("/addresses/0/ip").and_then(Value::as_str);
                if let (Some(t), Some(ip)) = (target, ip) {
                    let p = t.get("port").and_then(Value::as_u64).unwrap_or(443) as u16;
                    let mut e = webhook_client::endpoint(ip, p, &server_name, &path, timeout);
                    e.display = format!("https://{server_name}:{port}{}", e.path);
                    return Ok(e);
                }
            }
        }
        match service.pointer("/spec/clusterIP").and_then(Value::as_str).filter(|ip| !ip.is_empty() && *ip != "None") {
            Some(ip) => {
                let mut e = webhook_client::endpoint(ip, port as u16, &server_name, &path, timeout);
                e.display = format!("https://{server_name}:{port}{}", e.path);
                Ok(e)
            }
            None => Err(format!("no endpoints available for service \"{}\"", svc.name)),
        }
    }

    /// Send a review; the response's `response` object.
    async fn call(&self, hook: &Hook, request: &Value) -> Result<Value, String> {
        let endpoint = self.endpoint_of(hook).await?;
        let review = json!({"apiVersion": format!("admission.k8s.io/{}", hook.review_version), "kind": "AdmissionReview", "request": request});
        let body = serde_json::to_vec(&review).map_err(|e| e.to_string())?;
        let bytes =
            webhook_client::post(&endpoint, hook.client.ca_bundle.as_ref().map(|b| b.0.as_slice()), body, hook.timeout)
                .await?;
        let answer: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("received invalid webhook response: {e}"))?;
        let response = answer.get("response").cloned().ok_or("webhook response was absent")?;
        let uid = request.get("uid").and_then(Value::as_str).unwrap_or_default();
        match response.get("uid").and_then(Value::as_str) {
            Some(u) if u == uid => Ok(response),
            Some(u) => Err(format!("expected response.uid=\"{uid}\", got \"{u}\"")),
            None => Err(format!("expected response.uid=\"{uid}\", got \"\"")),
        }
    }

    /// A webhook's refusal, as kube-apiserver's `ToStatusErr`.
    fn denied(hook: &str, response: &Value) -> ApiError {
        let status = response.get("status").cloned().unwrap_or_default();
        let code = status.get("code").and_then(Value::as_u64).filter(|c| *c >= 400).unwrap_or(400) as u16;
        let reason = status.get("reason").and_then(Value::as_str).unwrap_or_default();
        let message = status.get("message").and_then(Value::as_str).unwrap_or_default();
        let denied_by = format!("admission webhook \"{hook}\" denied the request");
        let message = if !message.is_empty() {
            format!("{denied_by}: {message}")
        } else if !reason.is_empty() {
            format!("{denied_by}: {reason}")
        } else {
            format!("{denied_by} without explanation")
        };
        ApiError::new(code, reason, message)
    }

    fn call_failed(hook: &str, why: &str) -> ApiError {
        ApiError::internal(format!("failed calling webhook \"{hook}\": failed to call webhook: {why}"))
    }

    fn activation(request: &Value, object: Option<&Value>, old: Option<&Value>) -> Activation {
        let mut act = Activation::default();
        act.bind("object", object.unwrap_or(&Value::Null));
        act.bind("oldObject", old.unwrap_or(&Value::Null));
        act.bind("request", request);
        act
    }

    /// Run the validating webhooks and policies over the object as it will be stored.
    ///
    /// # Errors
    /// The first refusal, or a failure of a webhook or policy that fails closed.
    pub async fn validate(&self, f: &Facts, object: Option<&Value>, old: Option<&Value>) -> Verdict {
        let snap = self.snapshot();
        if (snap.validating.is_empty() && snap.bindings.is_empty()) || f.exempt() {
            return Ok(vec![]);
        }
        let name = object.or(old).map(vkube_core::meta::name).filter(|n| !n.is_empty()).unwrap_or(&f.name).to_string();
        let uid = uuid::Uuid::new_v4().to_string();
        let request = Self::review_request(f, &uid, &name, object, old);
        let mut ns = NamespaceLabels { registry: &self.registry, namespace: &f.namespace, labels: None };
        let mut warnings = self.run_policies(&snap, f, &name, &request, object, old, &mut ns).await?;
        let act = Self::activation(&request, object, old);
        let mut calls = Vec::new();
        for hook in &snap.validating {
            if !hook.selection.rules_match(f, &name) || !hook.selection.selects(f, &mut ns, object, old).await {
                continue;
            }
            match Self::conditions_pass(&hook.conditions, &act) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) if hook.fail_closed => return Err(Self::call_failed(&hook.name, &e)),
                Err(e) => {
                    tracing::warn!(
                        webhook = hook.name,
                        error = e,
                        "match condition failed; webhook ignored (failurePolicy Ignore)"
                    );
                    continue;
                }
            }
            let hook = hook.clone();
            let request = request.clone();
            calls.push(async move {
                let r = self.call(&hook, &request).await;
                (hook, r)
            });
        }
        for (hook, result) in futures::future::join_all(calls).await {
            match result {
                Ok(response) => {
                    warnings.extend(response_warnings(&response));
                    if response.get("allowed").and_then(Value::as_bool) != Some(true) {
                        return Err(Self::denied(&hook.name, &response));
                    }
                }
                Err(e) if hook.fail_closed => return Err(Self::call_failed(&hook.name, &e)),
                Err(e) => {
                    tracing::warn!(webhook = hook.name, error = e, "webhook failed; ignored (failurePolicy Ignore)")
                }
            }
        }
        Ok(warnings)
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_policies(
        &self,
        snap: &Snapshot,
        f: &Facts,
        name: &str,
        request: &Value,
        object: Option<&Value>,
        old: Option<&Value>,
        ns: &mut NamespaceLabels<'_>,
    ) -> Verdict {
        let mut warnings = Vec::new();
        for binding in &snap.bindings {
            let Some(policy) = snap.policies.get(&binding.policy) else { continue };
            if !policy.selection.rules_match(f, name) || !policy.selection.selects(f, ns, object, old).await {
                continue;
            }
            if let Some(sel) = &binding.selection
                && (!sel.rules_match(f, name) || !sel.selects(f, ns, object, old).await)
            {
                continue;
            }
            let namespace_object = if f.namespace.is_empty() {
                Value::Null
            } else {
                match self.registry.catalog().find("", "v1", "namespaces") {
                    Some(res) => self.registry.get(&res, "", &f.namespace).await.unwrap_or(Value::Null),
                    None => Value::Null,
                }
            };
            let params = match self.params_of(policy, binding, &f.namespace).await {
                Ok(p) => p,
                Err(message) => {
                    let failure = Failure { message, reason: "Invalid".into() };
                    warnings.extend(Self::act(policy, binding, f, name, failure)?);
                    continue;
                }
            };
            for param in params {
                let mut act = Self::activation(request, object, old);
                act.bind("namespaceObject", &namespace_object);
                act.bind("params", &param);
                match self.evaluate(policy, &mut act) {
                    Ok(None) => {}
                    Ok(Some(failure)) => warnings.extend(Self::act(policy, binding, f, name, failure)?),
                    Err(e) if policy.fail_closed => warnings.extend(Self::act(
                        policy,
                        binding,
                        f,
                        name,
                        Failure { message: e, reason: "Invalid".into() },
                    )?),
                    Err(e) => {
                        tracing::warn!(policy = policy.name, error = e, "policy failed; ignored (failurePolicy Ignore)")
                    }
                }
            }
        }
        Ok(warnings)
    }

    /// The params a binding gives its policy (`[null]` without paramKind).
    async fn params_of(&self, policy: &Policy, binding: &Binding, namespace: &str) -> Result<Vec<Value>, String> {
        let Some((api_version, kind)) = &policy.param_kind else { return Ok(vec![Value::Null]) };
        let Some(pref) = &binding.param_ref else {
            return Err(format!("failed to configure binding: paramRef is required when paramKind {kind} is set"));
        };
        let (group, _version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let Some(res) = self.registry.catalog().find_kind(group, kind) else {
            return Err(format!("failed to configure binding: paramKind kind `{kind}` not known"));
        };
        let ns = if res.namespaced {
            pref.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| namespace.to_string())
        } else {
            String::new()
        };
        let found: Vec<Value> = if let Some(n) = pref.name.as_deref().filter(|n| !n.is_empty()) {
            self.registry.get(&res, &ns, n).await.map(|v| vec![v]).unwrap_or_default()
        } else {
            let sel = selector(pref.selector.as_ref()).unwrap_or_default();
            match self.registry.list(&res, &ns, &Default::default()).await {
                Ok(page) => page
                    .items
                    .iter()
                    .filter_map(|kv| Registry::decode_as(&res, kv).ok())
                    .filter(|o| sel.matches_object(o))
                    .collect(),
                Err(e) => return Err(e.message),
            }
        };
        if found.is_empty() {
            return match pref.parameter_not_found_action.as_deref() {
                Some("Allow") => Ok(vec![]),
                _ => Err("no params found for policy binding with `Deny` parameterNotFoundAction".into()),
            };
        }
        Ok(found)
    }

    /// Evaluate a policy: the first failed validation, if any.
    fn evaluate(&self, policy: &Policy, act: &mut Activation) -> Result<Option<Failure>, String> {
        if !Self::conditions_pass(&policy.conditions, act)? {
            return Ok(None);
        }
        Self::bind_variables(policy, act)?;
        for v in &policy.validations {
            match act.eval_bool(&v.expression) {
                Ok(true) => {}
                Ok(false) => {
                    let message = match &v.message_expression {
                        Some(m) => match act.eval(m) {
                            Ok(::cel::Value::String(s)) if !s.trim().is_empty() && !s.contains('\n') => {
                                Some(s.to_string())
                            }
                            _ => None,
                        },
                        None => None,
                    }
                    .or_else(|| v.message.clone())
                    .unwrap_or_else(|| format!("failed expression: {}", v.expression.source));
                    return Ok(Some(Failure { message, reason: v.reason.clone() }));
                }
                Err(e) => return Err(format!("expression '{}' resulted in error: {e}", v.expression.source)),
            }
        }
        Ok(None)
    }

    /// Evaluate a policy's variables in order (each sees those before it) and bind them.
    fn bind_variables(policy: &Policy, act: &mut Activation) -> Result<(), String> {
        let mut vars = serde_json::Map::new();
        for (name, expr) in &policy.variables {
            let mut scoped = Activation::default();
            scoped.bind_all(act);
            scoped.bind("variables", &Value::Object(vars.clone()));
            let v = scoped.eval(expr).map_err(|e| format!("variable '{name}': {e}"))?;
            vars.insert(name.clone(), cel::to_json(&v));
        }
        act.bind("variables", &Value::Object(vars));
        Ok(())
    }

    /// Apply the mutating admission policies to an object.
    async fn mutate_by_policies(
        &self,
        snap: &Snapshot,
        f: &Facts,
        name: &str,
        object: &mut Value,
        old: Option<&Value>,
        ns: &mut NamespaceLabels<'_>,
    ) -> Result<(), ApiError> {
        for binding in &snap.mutating_bindings {
            let Some(policy) = snap.mutating_policies.get(&binding.policy) else { continue };
            if !policy.selection.rules_match(f, name) || !policy.selection.selects(f, ns, Some(object), old).await {
                continue;
            }
            if let Some(sel) = &binding.selection
                && (!sel.rules_match(f, name) || !sel.selects(f, ns, Some(object), old).await)
            {
                continue;
            }
            let refuse = |message: String| -> ApiError {
                let text = format!(
                    "MutatingAdmissionPolicy '{}' with binding '{}' denied request: {message}",
                    policy.name, binding.name
                );
                let forbidden = ApiError::forbidden(f.group_resource(), name, text);
                ApiError::new(422, "Invalid", forbidden.message)
            };
            let params = match self.params_of(policy, binding, &f.namespace).await {
                Ok(p) => p,
                Err(e) if policy.fail_closed => return Err(refuse(e)),
                Err(_) => continue,
            };
            let namespace_object = if f.namespace.is_empty() {
                Value::Null
            } else {
                match self.registry.catalog().find("", "v1", "namespaces") {
                    Some(res) => self.registry.get(&res, "", &f.namespace).await.unwrap_or(Value::Null),
                    None => Value::Null,
                }
            };
            for param in params {
                let uid = uuid::Uuid::new_v4().to_string();
                let request = Self::review_request(f, &uid, name, Some(object), old);
                let mut act = Self::activation(&request, Some(object), old);
                act.bind("namespaceObject", &namespace_object);
                act.bind("params", &param);
                let result = (|| -> Result<Option<Value>, String> {
                    if !Self::conditions_pass(&policy.conditions, &act)? {
                        return Ok(None);
                    }
                    Self::bind_variables(policy, &mut act)?;
                    let mut next = object.clone();
                    for (apply, expr) in &policy.mutations {
                        // Each mutation sees the object as the ones before it left it.
                        act.bind("object", &next);
                        let built = act.eval_object(expr)?;
                        if *apply {
                            json_patch::merge(&mut next, &built);
                        } else {
                            let ops: json_patch::Patch =
                                serde_json::from_value(built).map_err(|e| format!("invalid JSONPatch: {e}"))?;
                            json_patch::patch(&mut next, &ops).map_err(|e| format!("JSON Patch: {e}"))?;
                        }
                    }
                    Ok(Some(next))
                })();
                match result {
                    Ok(Some(next)) => *object = next,
                    Ok(None) => {}
                    Err(e) if policy.fail_closed => return Err(refuse(e)),
                    Err(e) => tracing::warn!(
                        policy = policy.name,
                        error = e,
                        "mutating policy failed; ignored (failurePolicy Ignore)"
                    ),
                }
            }
        }
        Ok(())
    }

    /// What a binding's actions make of a failure: a refusal (Deny), warnings (Warn).
    fn act(policy: &Policy, binding: &Binding, f: &Facts, name: &str, failure: Failure) -> Verdict {
        let mut warnings = Vec::new();
        for action in &binding.actions {
            match action.as_str() {
                "Deny" => {
                    let text = format!(
                        "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: {}",
                        policy.name, binding.name, failure.message
                    );
                    let code = match failure.reason.as_str() {
                        "Forbidden" => 403,
                        "Unauthorized" => 401,
                        "RequestEntityTooLarge" => 413,
                        _ => 422,
                    };
                    let forbidden = ApiError::forbidden(f.group_resource(), name, text.clone());
                    let mut err = ApiError::new(code, &failure.reason, forbidden.message.clone());
                    let mut details = json!({"name": name, "kind": f.resource, "causes": [{"message": text}]});
                    if !f.group.is_empty() {
                        details["group"] = json!(f.group);
                    }
                    err.details = Some(details);
                    return Err(err);
                }
                "Warn" => warnings.push(format!(
                    "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {}",
                    policy.name, binding.name, failure.message
                )),
                _ => {}
            }
        }
        Ok(warnings)
    }
}

/// A failed validation: its message and reason.
struct Failure {
    message: String,
    reason: String,
}

fn response_warnings(response: &Value) -> Vec<String> {
    response
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

#[async_trait]
impl Admission for Dynamic {
    /// The mutating webhooks, in the order of their configurations' names; one more
    /// round for `reinvocationPolicy: IfNeeded` webhooks when a later one changed the
    /// object.
    async fn admit(&self, req: &AdmissionRequest<'_>, object: Value) -> Result<AdmissionOutcome, ApiError> {
        let snap = self.snapshot();
        if snap.is_empty()
            || (snap.mutating.is_empty() && snap.mutating_bindings.is_empty())
            || req.operation == Operation::Delete
        {
            return Ok(AdmissionOutcome::pass(object));
        }
        let f = Facts::of(req);
        if f.exempt() {
            return Ok(AdmissionOutcome::pass(object));
        }
        let name = if f.name.is_empty() { vkube_core::meta::name(&object).to_string() } else { f.name.clone() };
        let mut ns = NamespaceLabels { registry: &self.registry, namespace: &f.namespace, labels: None };
        let mut object = object;
        self.mutate_by_policies(&snap, &f, &name, &mut object, req.old, &mut ns).await?;
        let mut warnings = Vec::new();
        let mut changed_after: Vec<usize> = Vec::new();
        for round in 0..2 {
            let mut changed_in_round = false;
            for (i, hook) in snap.mutating.iter().enumerate() {
                if round == 1 && !(hook.reinvoke && changed_after.contains(&i)) {
                    continue;
                }
                if !hook.selection.rules_match(&f, &name)
                    || !hook.selection.selects(&f, &mut ns, Some(&object), req.old).await
                {
                    continue;
                }
                let uid = uuid::Uuid::new_v4().to_string();
                let request = Self::review_request(&f, &uid, &name, Some(&object), req.old);
                match Self::conditions_pass(&hook.conditions, &Self::activation(&request, Some(&object), req.old)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) if hook.fail_closed => return Err(Self::call_failed(&hook.name, &e)),
                    Err(_) => continue,
                }
                let response = match self.call(hook, &request).await {
                    Ok(r) => r,
                    Err(e) if hook.fail_closed => return Err(Self::call_failed(&hook.name, &e)),
                    Err(e) => {
                        tracing::warn!(
                            webhook = hook.name,
                            error = e,
                            "webhook failed; ignored (failurePolicy Ignore)"
                        );
                        continue;
                    }
                };
                warnings.extend(response_warnings(&response));
                if response.get("allowed").and_then(Value::as_bool) != Some(true) {
                    return Err(Self::denied(&hook.name, &response));
                }
                if let Some(patch) = response.get("patch").and_then(Value::as_str) {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(patch)
                        .map_err(|e| Self::call_failed(&hook.name, &format!("patch is not base64: {e}")))?;
                    let ops: json_patch::Patch = serde_json::from_slice(&bytes)
                        .map_err(|e| Self::call_failed(&hook.name, &format!("patch is not a JSON patch: {e}")))?;
                    let before = object.clone();
                    json_patch::patch(&mut object, &ops).map_err(|e| {
                        ApiError::internal(format!("JSON patch from webhook \"{}\" failed: {e}", hook.name))
                    })?;
                    if object != before {
                        changed_in_round = true;
                        // Every IfNeeded webhook that ran before this change may see it again.
                        changed_after.extend(0..i);
                    }
                }
            }
            if !changed_in_round || changed_after.is_empty() {
                break;
            }
        }
        Ok(AdmissionOutcome { object, warnings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(op: Operation, group: &str, resource: &str, sub: &str, ns: &str) -> Facts {
        Facts {
            operation: op,
            group: group.into(),
            version: "v1".into(),
            kind: "X".into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: "n".into(),
            namespaced: !ns.is_empty(),
            user: User::default(),
            dry_run: false,
        }
    }

    #[test]
    fn rules_match_as_kube_apiservers() {
        let r = |ops: &[&str], res: &[&str], scope: &str| Rule {
            operations: ops.iter().map(|s| s.to_string()).collect(),
            groups: vec!["".into()],
            versions: vec!["v1".into()],
            resources: res.iter().map(|s| s.to_string()).collect(),
            scope: scope.into(),
        };
        let create_pod = facts(Operation::Create, "", "pods", "", "default");
        assert!(r(&["CREATE"], &["pods"], "*").matches(&create_pod, true));
        assert!(r(&["*"], &["*"], "Namespaced").matches(&create_pod, true));
        assert!(!r(&["UPDATE"], &["pods"], "*").matches(&create_pod, true));
        assert!(!r(&["CREATE"], &["pods"], "Cluster").matches(&create_pod, true));
        let status = facts(Operation::Update, "", "pods", "status", "default");
        assert!(!r(&["*"], &["pods"], "*").matches(&status, true));
        assert!(!r(&["*"], &["*"], "*").matches(&status, true));
        assert!(r(&["*"], &["pods/status"], "*").matches(&status, true));
        assert!(r(&["*"], &["pods/*"], "*").matches(&status, true));
        assert!(r(&["*"], &["*/*"], "*").matches(&status, true));
        let apps = facts(Operation::Create, "apps", "deployments", "", "d");
        assert!(!r(&["*"], &["deployments"], "*").matches(&apps, true));
    }

    #[test]
    fn a_webhook_refusal_reads_as_kube_apiservers() {
        let e =
            Dynamic::denied("deny.example.com", &json!({"allowed": false, "status": {"message": "no", "code": 403}}));
        assert_eq!(
            (e.code, e.message.as_str()),
            (403, "admission webhook \"deny.example.com\" denied the request: no")
        );
        let e = Dynamic::denied("deny.example.com", &json!({"allowed": false}));
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "admission webhook \"deny.example.com\" denied the request without explanation")
        );
    }
}
