//! Discovery documents: `/api`, `/api/v1`, `/apis`, `/apis/{group}` and
//! `/apis/{group}/{version}`, built from the catalog.

use crate::resources::{Catalog, Resource, Subresource};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "emulationMajor": "1",
        "emulationMinor": "37",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "36",
        "gitVersion": concat!("v1.37.0-vkube.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "vkube",
        "gitTreeState": "clean",
        "buildDate": "2026-11-29T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// `/api`.
pub fn core_versions(server: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]})
}

fn group_entry(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// Groups served outside the catalog: create-only review APIs that store nothing.
const REVIEWS: &str = "authentication.k8s.io";

fn review_resources() -> Value {
    json!([
        {"name": "selfsubjectreviews", "singularName": "selfsubjectreview", "namespaced": false, "kind": "SelfSubjectReview", "verbs": ["create"]},
        {"name": "tokenreviews", "singularName": "tokenreview", "namespaced": false, "kind": "TokenReview", "verbs": ["create"]},
    ])
}

fn groups(catalog: &Catalog) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    groups.insert(REVIEWS.into(), vec!["v1".into()]);
    for r in catalog.all().iter().filter(|r| !r.group.is_empty()) {
        let vs = groups.entry(r.group.clone()).or_default();
        if !vs.contains(&r.version) {
            vs.push(r.version.clone());
        }
    }
    groups
}

/// `/apis`.
pub fn group_list(catalog: &Catalog) -> Value {
    let gs: Vec<Value> = groups(catalog).iter().map(|(g, vs)| group_entry(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
}

/// `/apis/{group}`.
pub fn group(catalog: &Catalog, name: &str) -> Option<Value> {
    groups(catalog).get(name).map(|vs| {
        let mut g = group_entry(name, vs);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

fn sub_entry(r: &Resource, sub: Subresource) -> Value {
    let (kind, group, version, verbs): (&str, Option<&str>, Option<&str>, &[&str]) = match sub {
        Subresource::Status => (&r.kind, None, None, &["get", "patch", "update"]),
        Subresource::Scale => ("Scale", Some("autoscaling"), Some("v1"), &["get", "patch", "update"]),
        Subresource::Binding => ("Binding", None, None, &["create"]),
        Subresource::Eviction => ("Eviction", Some("policy"), Some("v1"), &["create"]),
        Subresource::Log => ("Pod", None, None, &["get"]),
        Subresource::Finalize => ("Namespace", None, None, &["update"]),
        Subresource::Token => ("TokenRequest", Some("authentication.k8s.io"), Some("v1"), &["create"]),
    };
    let mut e = json!({"name": format!("{}/{}", r.plural, sub.name()), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs});
    if let Some(g) = group {
        e["group"] = json!(g);
    }
    if let Some(v) = version {
        e["version"] = json!(v);
    }
    e
}

/// `/api/v1` or `/apis/{group}/{version}`.
pub fn resource_list(catalog: &Catalog, group: &str, version: &str) -> Option<Value> {
    if group == REVIEWS && version == "v1" {
        return Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "authentication.k8s.io/v1", "resources": review_resources()}),
        );
    }
    let all = catalog.all();
    let rs: Vec<&std::sync::Arc<Resource>> = all.iter().filter(|r| r.group == group && r.version == version).collect();
    if rs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in rs {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        resources.push(e);
        for s in &r.subresources {
            resources.push(sub_entry(r, *s));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}
