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
const REVIEWS: [&str; 2] = ["authentication.k8s.io", "authorization.k8s.io"];

fn review_resources(group: &str) -> Value {
    if group == "authorization.k8s.io" {
        return Value::Array(
            crate::authz::reviews::KINDS
                .iter()
                .map(|(plural, kind, namespaced)| {
                    json!({"name": plural, "singularName": plural.trim_end_matches('s'), "namespaced": namespaced, "kind": kind, "verbs": ["create"]})
                })
                .collect(),
        );
    }
    json!([
        {"name": "selfsubjectreviews", "singularName": "selfsubjectreview", "namespaced": false, "kind": "SelfSubjectReview", "verbs": ["create"]},
        {"name": "tokenreviews", "singularName": "tokenreview", "namespaced": false, "kind": "TokenReview", "verbs": ["create"]},
    ])
}

fn groups(catalog: &Catalog) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in REVIEWS {
        groups.insert(g.into(), vec!["v1".into()]);
    }
    if catalog.serves_metrics() {
        groups.insert(crate::endpoints::metrics::GROUP.into(), vec![crate::endpoints::metrics::VERSION.into()]);
    }
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
        Subresource::Exec => ("PodExecOptions", None, None, &["create", "get"]),
        Subresource::Attach => ("PodAttachOptions", None, None, &["create", "get"]),
        Subresource::PortForward => ("PodPortForwardOptions", None, None, &["create", "get"]),
        Subresource::EphemeralContainers => ("Pod", None, None, &["get", "patch", "update"]),
        Subresource::Approval => (&r.kind, None, None, &["get", "patch", "update"]),
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
    if REVIEWS.contains(&group) && version == "v1" {
        return Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{group}/v1"), "resources": review_resources(group)}),
        );
    }
    if group == crate::endpoints::metrics::GROUP
        && version == crate::endpoints::metrics::VERSION
        && catalog.serves_metrics()
    {
        return Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{group}/{version}"), "resources": crate::endpoints::metrics::resources()}),
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

/// The content type of aggregated discovery (`apidiscovery.k8s.io/v2`) a request asks
/// for in JSON, if it asks for it at all: client-go and kubectl ≥ 1.26 fetch `/api` and
/// `/apis` whole this way, with the legacy documents as their fallback.
pub fn aggregated_accept(accept: &str) -> Option<&'static str> {
    accept.split(',').map(str::trim).find_map(|part| {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or_default();
        let params: Vec<&str> = params.collect();
        let has = |p: &str| params.contains(&p);
        if media != "application/json" || !has("g=apidiscovery.k8s.io") || !has("as=APIGroupDiscoveryList") {
            return None;
        }
        if has("v=v2") {
            Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
        } else if has("v=v2beta1") {
            Some("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList")
        } else {
            None
        }
    })
}

/// One group version in aggregated form, from its legacy resource list.
fn aggregated_version(catalog: &Catalog, group: &str, version: &str) -> Option<Value> {
    let list = resource_list(catalog, group, version)?;
    let entries = list["resources"].as_array().cloned().unwrap_or_default();
    let mut resources: Vec<Value> = Vec::new();
    for e in entries.iter().filter(|e| !e["name"].as_str().unwrap_or_default().contains('/')) {
        let name = e["name"].as_str().unwrap_or_default();
        let mut r = json!({
            "resource": name,
            "responseKind": {"group": group, "version": version, "kind": e["kind"]},
            "scope": if e["namespaced"] == true { "Namespaced" } else { "Cluster" },
            "singularResource": e["singularName"],
            "verbs": e["verbs"],
        });
        for k in ["shortNames", "categories"] {
            if let Some(v) = e.get(k) {
                r[k] = v.clone();
            }
        }
        let subs: Vec<Value> = entries
            .iter()
            .filter_map(|s| {
                let (parent, sub) = s["name"].as_str()?.split_once('/')?;
                (parent == name).then(|| {
                    json!({
                        "subresource": sub,
                        "responseKind": {
                            "group": s.get("group").cloned().unwrap_or_else(|| json!(group)),
                            "version": s.get("version").cloned().unwrap_or_else(|| json!(version)),
                            "kind": s["kind"],
                        },
                        "verbs": s["verbs"],
                    })
                })
            })
            .collect();
        if !subs.is_empty() {
            r["subresources"] = json!(subs);
        }
        resources.push(r);
    }
    Some(json!({"version": version, "resources": resources, "freshness": "Current"}))
}

/// `/api` (`core`) or `/apis` as an `APIGroupDiscoveryList`.
pub fn aggregated(catalog: &Catalog, core: bool, content_type: &str) -> Value {
    let api_version =
        if content_type.contains("v=v2beta1") { "apidiscovery.k8s.io/v2beta1" } else { "apidiscovery.k8s.io/v2" };
    let groups: Vec<(String, Vec<String>)> =
        if core { vec![(String::new(), vec!["v1".into()])] } else { groups(catalog).into_iter().collect() };
    let items: Vec<Value> = groups
        .iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs.iter().filter_map(|v| aggregated_version(catalog, g, v)).collect();
            let metadata = if g.is_empty() {
                json!({"creationTimestamp": null})
            } else {
                json!({"name": g, "creationTimestamp": null})
            };
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_is_chosen_from_the_accept_header() {
        let kubectl = "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            aggregated_accept(kubectl),
            Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
        );
        assert_eq!(aggregated_accept("application/json, */*"), None);
        assert_eq!(
            aggregated_accept(
                "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            ),
            None
        );
    }

    #[test]
    fn aggregated_discovery_lists_every_group_with_resources_and_subresources() {
        let catalog = Catalog::builtin(crate::resources::BuiltinConfig { service_cidr: ([10, 96, 0, 0].into(), 12) });
        let core = aggregated(&catalog, true, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
        let v1 = &core["items"][0]["versions"][0];
        let pods = v1["resources"].as_array().and_then(|rs| rs.iter().find(|r| r["resource"] == "pods")).cloned();
        let pods = pods.expect("pods listed");
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["responseKind"]["kind"], "Pod");
        let subs: Vec<&str> =
            pods["subresources"].as_array().into_iter().flatten().filter_map(|s| s["subresource"].as_str()).collect();
        assert!(subs.contains(&"status") && subs.contains(&"eviction"), "{subs:?}");
        let apis = aggregated(&catalog, false, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
        let names: Vec<&str> =
            apis["items"].as_array().into_iter().flatten().filter_map(|g| g["metadata"]["name"].as_str()).collect();
        assert!(names.contains(&"apps") && names.contains(&"apiextensions.k8s.io"), "{names:?}");
    }
}
