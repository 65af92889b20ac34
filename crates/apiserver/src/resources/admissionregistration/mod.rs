//! The admissionregistration.k8s.io/v1 kinds: webhook configurations and admission
//! policies with their bindings, with kube-apiserver's defaults and validation (field
//! paths and messages as its `validation.go`; CEL expressions compiled on write). What
//! they do at admission is [`crate::admission::webhook`] and [`crate::admission::policy`].

pub mod mutatingadmissionpolicy;
pub mod mutatingadmissionpolicybinding;
pub mod mutatingwebhookconfiguration;
pub mod validatingadmissionpolicy;
pub mod validatingadmissionpolicybinding;
pub mod validatingwebhookconfiguration;

use crate::admission::cel;
use k8s_openapi::api::admissionregistration::v1 as ar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeSet;
use vkube_core::status::Cause;

/// The category kubectl groups these kinds in.
pub const CATEGORIES: &[&str] = &["api-extensions"];

const OPERATIONS: &[&str] = &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
const SCOPES: &[&str] = &["*", "Cluster", "Namespaced"];
const FAILURE_POLICIES: &[&str] = &["Fail", "Ignore"];
const MATCH_POLICIES: &[&str] = &["Equivalent", "Exact"];

/// Defaults of a rule (`scope: "*"`).
pub fn default_rule(rule: &mut ar::RuleWithOperations) {
    rule.scope.get_or_insert_with(|| "*".into());
}

/// Defaults of a policy's match resources.
pub fn default_match_resources(m: &mut ar::MatchResources) {
    m.match_policy.get_or_insert_with(|| "Equivalent".into());
    m.namespace_selector.get_or_insert_with(LabelSelector::default);
    m.object_selector.get_or_insert_with(LabelSelector::default);
    for r in m.resource_rules.iter_mut().flatten() {
        r.scope.get_or_insert_with(|| "*".into());
    }
    for r in m.exclude_resource_rules.iter_mut().flatten() {
        r.scope.get_or_insert_with(|| "*".into());
    }
}

/// Defaults of a webhook's client config (`service.port: 443`).
pub fn default_client_config(c: &mut ar::WebhookClientConfig) {
    if let Some(s) = c.service.as_mut() {
        s.port.get_or_insert(443);
    }
}

fn rule_causes(
    path: &str,
    operations: Option<&[String]>,
    groups: Option<&[String]>,
    versions: Option<&[String]>,
    resources: Option<&[String]>,
    scope: Option<&str>,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    let ops = operations.unwrap_or_default();
    if ops.is_empty() {
        causes.push(Cause::required(format!("{path}.operations")));
    }
    if ops.len() > 1 && ops.iter().any(|o| o == "*") {
        causes.push(Cause::invalid_raw(
            format!("{path}.operations"),
            &serde_json::to_string(ops).unwrap_or_default(),
            "if '*' is present, must not specify other operations",
        ));
    }
    for (i, o) in ops.iter().enumerate() {
        if !OPERATIONS.contains(&o.as_str()) {
            causes.push(Cause::not_supported(format!("{path}.operations[{i}]"), o, OPERATIONS));
        }
    }
    for (field, list) in [("apiGroups", groups), ("apiVersions", versions)] {
        let list = list.unwrap_or_default();
        if list.is_empty() {
            causes.push(Cause::required(format!("{path}.{field}")));
        }
        if list.len() > 1 && list.iter().any(|g| g == "*") {
            causes.push(Cause::invalid_raw(
                format!("{path}.{field}"),
                &serde_json::to_string(list).unwrap_or_default(),
                if field == "apiGroups" {
                    "if '*' is present, must not specify other API groups"
                } else {
                    "if '*' is present, must not specify other API versions"
                },
            ));
        }
        if field == "apiVersions" {
            for (i, v) in list.iter().enumerate() {
                if v.is_empty() {
                    causes.push(Cause::required(format!("{path}.apiVersions[{i}]")));
                }
            }
        }
    }
    let resources = resources.unwrap_or_default();
    if resources.is_empty() {
        causes.push(Cause::required(format!("{path}.resources")));
    }
    for (i, r) in resources.iter().enumerate() {
        if r.is_empty() {
            causes.push(Cause::required(format!("{path}.resources[{i}]")));
        }
    }
    if let Some(s) = scope
        && !SCOPES.contains(&s)
    {
        causes.push(Cause::not_supported(format!("{path}.scope"), s, SCOPES));
    }
    causes
}

fn rules_causes(path: &str, rules: Option<&[ar::RuleWithOperations]>) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, r) in rules.unwrap_or_default().iter().enumerate() {
        causes.extend(rule_causes(
            &format!("{path}[{i}]"),
            r.operations.as_deref(),
            r.api_groups.as_deref(),
            r.api_versions.as_deref(),
            r.resources.as_deref(),
            r.scope.as_deref(),
        ));
    }
    causes
}

fn one_of(causes: &mut Vec<Cause>, path: &str, value: Option<&str>, supported: &[&str]) {
    if let Some(v) = value
        && !supported.contains(&v)
    {
        causes.push(Cause::not_supported(path, v, supported));
    }
}

fn selector_causes(path: &str, sel: Option<&LabelSelector>) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, e) in sel.and_then(|s| s.match_expressions.as_ref()).into_iter().flatten().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => causes.push(
                Cause::required(format!("{p}.values"))
                    .with_detail("must be specified when `operator` is 'In' or 'NotIn'"),
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => causes.push(Cause::forbidden(
                format!("{p}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => causes.push(Cause::invalid(format!("{p}.operator"), op, "not a valid selector operator")),
        }
    }
    causes
}

/// A webhook's name: a qualified domain with at least three segments.
fn webhook_name_causes(path: &str, name: &str) -> Vec<Cause> {
    if name.is_empty() {
        return vec![Cause::required(path)];
    }
    if name.split('.').count() < 3 {
        return vec![Cause::invalid(path, name, "should be a domain with at least three segments separated by dots")];
    }
    if !vkube_core::meta::is_dns1123_subdomain(name) {
        return vec![Cause::invalid(path, name, vkube_core::meta::DNS1123_SUBDOMAIN_MSG)];
    }
    vec![]
}

fn client_config_causes(path: &str, c: &ar::WebhookClientConfig) -> Vec<Cause> {
    let mut causes = Vec::new();
    match (&c.url, &c.service) {
        (Some(_), Some(_)) | (None, None) => {
            causes.push(Cause::required(path).with_detail("exactly one of url or service is required"));
        }
        (Some(url), None) => causes.extend(url_causes(&format!("{path}.url"), url)),
        (None, Some(s)) => {
            let p = format!("{path}.service");
            if s.name.is_empty() {
                causes.push(Cause::required(format!("{p}.name")).with_detail("service name is required"));
            }
            if s.namespace.is_empty() {
                causes.push(Cause::required(format!("{p}.namespace")).with_detail("service namespace is required"));
            }
            if let Some(path_) = s.path.as_deref()
                && !path_.is_empty()
                && !path_.starts_with('/')
            {
                causes.push(Cause::invalid(format!("{p}.path"), path_, "must start with a '/'"));
            }
            if let Some(port) = s.port
                && !(1..=65535).contains(&port)
            {
                causes.push(Cause::invalid_raw(
                    format!("{p}.port"),
                    &port.to_string(),
                    "port is not valid: must be between 1 and 65535, inclusive",
                ));
            }
        }
    }
    causes
}

fn url_causes(path: &str, url: &str) -> Vec<Cause> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![Cause::invalid(path, url, "host must be specified")];
    };
    let mut causes = Vec::new();
    if scheme != "https" {
        causes.push(Cause::invalid(
            path,
            scheme,
            "'https' is the only allowed URL scheme; desired format: https://host[/path]",
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        causes.push(Cause::invalid(path, url, "host must be specified"));
    }
    if host.contains('@') {
        causes.push(Cause::invalid(path, url, "user information is not permitted in the URL"));
    }
    if rest.contains('#') {
        causes.push(Cause::invalid(path, url, "fragments are not permitted in the URL"));
    }
    if rest.contains('?') {
        causes.push(Cause::invalid(path, url, "query parameters are not permitted in the URL"));
    }
    causes
}

fn match_conditions_causes(path: &str, conditions: Option<&[ar::MatchCondition]>) -> Vec<Cause> {
    let conditions = conditions.unwrap_or_default();
    let mut causes = Vec::new();
    if conditions.len() > 64 {
        causes.push(Cause::invalid_raw(path, &conditions.len().to_string(), "must have at most 64 items"));
    }
    let mut names = BTreeSet::new();
    let mut name_causes = Vec::new();
    for (i, c) in conditions.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if c.expression.is_empty() {
            causes.push(Cause::required(format!("{p}.expression")));
        } else if let Err(e) = cel::compile_bool(&c.expression) {
            causes.push(Cause::invalid(format!("{p}.expression"), &c.expression, e));
        }
        if c.name.is_empty() {
            name_causes.push(Cause::required(format!("{p}.name")));
        } else if !is_qualified_name(&c.name) {
            name_causes.push(Cause::invalid(format!("{p}.name"), &c.name, QUALIFIED_NAME_MSG));
        } else if !names.insert(c.name.clone()) {
            name_causes.push(Cause::duplicate(format!("{p}.name"), &c.name));
        }
    }
    causes.extend(name_causes);
    causes
}

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_qualified_name(name: &str) -> bool {
    let name = match name.split_once('/') {
        Some((prefix, n)) if vkube_core::meta::is_dns1123_subdomain(prefix) => n,
        Some(_) => return false,
        None => name,
    };
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// What the two webhook kinds share, checked.
#[allow(clippy::too_many_arguments)]
fn webhook_causes(
    path: &str,
    name: &str,
    rules: Option<&[ar::RuleWithOperations]>,
    failure_policy: Option<&str>,
    match_policy: Option<&str>,
    side_effects: Option<&str>,
    timeout: Option<i32>,
    namespace_selector: Option<&LabelSelector>,
    object_selector: Option<&LabelSelector>,
    client_config: &ar::WebhookClientConfig,
    match_conditions: Option<&[ar::MatchCondition]>,
) -> Vec<Cause> {
    let mut causes = webhook_name_causes(&format!("{path}.name"), name);
    causes.extend(rules_causes(&format!("{path}.rules"), rules));
    one_of(&mut causes, &format!("{path}.failurePolicy"), failure_policy, FAILURE_POLICIES);
    one_of(&mut causes, &format!("{path}.matchPolicy"), match_policy, MATCH_POLICIES);
    match side_effects {
        None | Some("") => causes
            .push(Cause::required(format!("{path}.sideEffects")).with_detail("must specify one of None, NoneOnDryRun")),
        Some(s) => one_of(&mut causes, &format!("{path}.sideEffects"), Some(s), &["None", "NoneOnDryRun"]),
    }
    if let Some(t) = timeout
        && !(1..=30).contains(&t)
    {
        causes.push(Cause::invalid_raw(
            format!("{path}.timeoutSeconds"),
            &t.to_string(),
            "the timeout value must be between 1 and 30 seconds",
        ));
    }
    causes.extend(selector_causes(&format!("{path}.namespaceSelector"), namespace_selector));
    causes.extend(selector_causes(&format!("{path}.objectSelector"), object_selector));
    causes.extend(client_config_causes(&format!("{path}.clientConfig"), client_config));
    causes.extend(match_conditions_causes(&format!("{path}.matchConditions"), match_conditions));
    causes
}

fn review_versions_causes(path: &str, versions: &[String]) -> Vec<Cause> {
    if versions.is_empty() {
        return vec![Cause::required(path).with_detail("must specify one of v1, v1beta1")];
    }
    if !versions.iter().any(|v| v == "v1" || v == "v1beta1") {
        return vec![Cause::invalid_raw(
            path,
            &serde_json::to_string(versions).unwrap_or_default(),
            "must include at least one of v1, v1beta1",
        )];
    }
    vec![]
}

/// Check a list of webhooks given as (path, its causes, its name, its review versions).
fn webhooks_causes(hooks: Vec<(String, Vec<Cause>, String, Vec<String>)>) -> Vec<Cause> {
    let mut names = BTreeSet::new();
    let mut causes = Vec::new();
    for (path, own, name, versions) in hooks {
        causes.extend(own);
        causes.extend(review_versions_causes(&format!("{path}.admissionReviewVersions"), &versions));
        if !name.is_empty() && !names.insert(name.clone()) {
            causes.push(Cause::duplicate(format!("{path}.name"), &name));
        }
    }
    causes
}

fn match_resources_causes(path: &str, m: Option<&ar::MatchResources>, rules_required: bool) -> Vec<Cause> {
    let Some(m) = m else {
        return if rules_required { vec![Cause::required(path)] } else { vec![] };
    };
    let mut causes = Vec::new();
    let rules = m.resource_rules.as_deref().unwrap_or_default();
    if rules_required && rules.is_empty() {
        causes.push(Cause::required(format!("{path}.resourceRules")));
    }
    for (field, list) in
        [("resourceRules", rules), ("excludeResourceRules", m.exclude_resource_rules.as_deref().unwrap_or_default())]
    {
        for (i, r) in list.iter().enumerate() {
            causes.extend(rule_causes(
                &format!("{path}.{field}[{i}]"),
                r.operations.as_deref(),
                r.api_groups.as_deref(),
                r.api_versions.as_deref(),
                r.resources.as_deref(),
                r.scope.as_deref(),
            ));
        }
    }
    one_of(&mut causes, &format!("{path}.matchPolicy"), m.match_policy.as_deref(), MATCH_POLICIES);
    causes.extend(selector_causes(&format!("{path}.namespaceSelector"), m.namespace_selector.as_ref()));
    causes.extend(selector_causes(&format!("{path}.objectSelector"), m.object_selector.as_ref()));
    causes
}

fn param_kind_causes(path: &str, p: Option<&ar::ParamKind>) -> Vec<Cause> {
    let Some(p) = p else { return vec![] };
    let mut causes = Vec::new();
    if p.api_version.as_deref().unwrap_or_default().is_empty() {
        causes.push(Cause::required(format!("{path}.apiVersion")));
    }
    if p.kind.as_deref().unwrap_or_default().is_empty() {
        causes.push(Cause::required(format!("{path}.kind")));
    }
    causes
}

fn is_cel_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn variables_causes(path: &str, vars: Option<&[ar::Variable]>) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, v) in vars.unwrap_or_default().iter().enumerate() {
        let p = format!("{path}[{i}]");
        if v.name.is_empty() {
            causes.push(Cause::required(format!("{p}.name")));
        } else if !is_cel_identifier(&v.name) {
            causes.push(Cause::invalid(format!("{p}.name"), &v.name, "must be a valid CEL identifier"));
        }
        if v.expression.is_empty() {
            causes.push(Cause::required(format!("{p}.expression")));
        } else if let Err(e) = cel::compile(&v.expression) {
            causes.push(Cause::invalid(format!("{p}.expression"), &v.expression, e));
        }
    }
    causes
}

fn param_ref_causes(path: &str, p: Option<&ar::ParamRef>) -> Vec<Cause> {
    let Some(p) = p else { return vec![] };
    let mut causes = Vec::new();
    match (p.name.as_deref().filter(|n| !n.is_empty()), p.selector.as_ref()) {
        (None, None) => causes.push(Cause::required(path).with_detail("one of name or selector must be specified")),
        (Some(_), Some(_)) => causes.push(Cause::forbidden(path, "name and selector are mutually exclusive")),
        _ => {}
    }
    match p.parameter_not_found_action.as_deref() {
        None | Some("") => causes.push(Cause::required(format!("{path}.parameterNotFoundAction"))),
        Some(a) => one_of(&mut causes, &format!("{path}.parameterNotFoundAction"), Some(a), &["Allow", "Deny"]),
    }
    causes
}

trait WithDetail {
    fn with_detail(self, detail: &str) -> Self;
}

impl WithDetail for Cause {
    /// `Required value: DETAIL`, as kube's `field.Required(path, detail)`.
    fn with_detail(mut self, detail: &str) -> Self {
        self.message = format!("{}: {detail}", self.message);
        self
    }
}

/// The PARAMKIND column: `apiVersion/kind`, or `<unset>`.
fn param_kind_cell(p: Option<&ar::ParamKind>) -> String {
    match p {
        Some(p) => {
            format!("{}/{}", p.api_version.as_deref().unwrap_or_default(), p.kind.as_deref().unwrap_or_default())
        }
        None => "<unset>".into(),
    }
}

/// The PARAMREF column: `namespace/name`, `*/name`, or `<unset>`.
fn param_ref_cell(p: Option<&ar::ParamRef>) -> String {
    match p {
        Some(p) => match (&p.namespace, &p.name) {
            (Some(ns), Some(n)) if !ns.is_empty() => format!("{ns}/{n}"),
            (_, Some(n)) => format!("*/{n}"),
            _ => format!("*/{}", super::kind::selector_string(p.selector.as_ref())),
        },
        None => "<unset>".into(),
    }
}
