//! `metrics.k8s.io/v1beta1` (what metrics-server serves, what `kubectl top` reads):
//! `NodeMetrics` and `PodMetrics`, computed on each read from the stored nodes and pods
//! and the usage a [`MetricsSource`] reports for them (simulated nodes, a host cluster).
//! Served, and in discovery, only once a source is set ([`crate::resources::Catalog::serve_metrics`]).

use crate::endpoints::RequestContext;
use crate::endpoints::negotiate::{Output, encode, query_map};
use crate::registry::{ListParams, Registry};
use async_trait::async_trait;
use axum::body::Body;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};
use vkube_core::selector::LabelSelector;
use vkube_core::status::{ApiError, GroupResource};

/// The group and version served.
pub const GROUP: &str = "metrics.k8s.io";
/// See [`GROUP`].
pub const VERSION: &str = "v1beta1";

/// The window a usage figure covers, as metrics-server reports it.
const WINDOW: &str = "10s";

/// Where resource usage comes from.
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Each pod's containers' usage (`[{"name", "usage": {"cpu", "memory"}}]`), None for a
    /// pod with none (not running), in the order given.
    ///
    /// # Errors
    /// 503 when the usage cannot be read.
    async fn pods(&self, pods: &[Value]) -> Result<Vec<Option<Value>>, ApiError>;

    /// Each node's usage (`{"cpu", "memory"}`), None for a node with none, in order.
    ///
    /// # Errors
    /// 503 when the usage cannot be read.
    async fn nodes(&self, nodes: &[Value]) -> Result<Vec<Option<Value>>, ApiError>;
}

/// metrics-server's ClusterRole `system:aggregated-metrics-reader`: `view`, `edit` and
/// `admin` aggregate it, so whoever may read pods may read their metrics.
fn reader_role() -> Value {
    let to = |role: &str| (format!("rbac.authorization.k8s.io/aggregate-to-{role}"), json!("true"));
    let labels: serde_json::Map<String, Value> = ["view", "edit", "admin"].into_iter().map(to).collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "system:aggregated-metrics-reader", "labels": labels},
        "rules": [{"apiGroups": [GROUP], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}],
    })
}

/// Serve `metrics.k8s.io` from `source`: in discovery, on its paths, and readable by
/// the `view`, `edit` and `admin` roles.
///
/// # Errors
/// The registry's error storing the reader role (other than "already exists").
pub async fn enable(
    state: &crate::endpoints::ApiState,
    source: std::sync::Arc<dyn MetricsSource>,
) -> Result<(), ApiError> {
    if let Ok(mut m) = state.metrics.write() {
        *m = Some(source);
    }
    let catalog = state.registry.catalog().clone();
    catalog.serve_metrics(true);
    let res = catalog
        .find(crate::authz::GROUP, "v1", "clusterroles")
        .ok_or_else(|| ApiError::internal("cluster roles are not served"))?;
    let opts = crate::registry::WriteOptions { field_manager: Some("vkube".into()), ..Default::default() };
    match state.registry.create(&res, "", reader_role(), &opts).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The resources, as discovery lists them.
pub fn resources() -> Value {
    json!([
        {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
    ])
}

/// metrics-server's NotFound: `podmetrics.metrics.k8s.io "NS/NAME" not found`.
fn not_found(resource: &str, namespace: &str, name: &str) -> ApiError {
    if resource == "pods" {
        ApiError::not_found(GroupResource { group: GROUP, resource: "podmetrics" }, &format!("{namespace}/{name}"))
    } else {
        ApiError::not_found(GroupResource { group: GROUP, resource: "nodemetrics" }, name)
    }
}

/// `GET /apis/metrics.k8s.io/v1beta1/...` (the segments after the version).
///
/// # Errors
/// 404 for a path or an object with no metrics, 405 for other verbs, 503 when the
/// source fails.
pub async fn serve(ctx: &RequestContext, rest: &[&str]) -> Result<Response<Body>, ApiError> {
    if ctx.method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let source = ctx.state.metrics.read().ok().and_then(|m| m.clone()).ok_or_else(ApiError::path_not_found)?;
    let q = query_map(&ctx.uri);
    let selector = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("unable to parse labelSelector: {e}")))?;
    let (resource, namespace, name) = match rest {
        ["nodes"] => ("nodes", "", None),
        ["nodes", name] => ("nodes", "", Some(*name)),
        ["pods"] => ("pods", "", None),
        ["namespaces", ns, "pods"] => ("pods", *ns, None),
        ["namespaces", ns, "pods", name] => ("pods", *ns, Some(*name)),
        _ => return Err(ApiError::path_not_found()),
    };
    let registry = ctx.registry();
    let catalog = registry.catalog().clone();
    let res = catalog.find("", "v1", resource).ok_or_else(ApiError::path_not_found)?;
    let objects: Vec<Value> = match name {
        Some(n) => match registry.get(&res, namespace, n).await {
            Ok(o) => vec![o],
            Err(e) if e.code == 404 => return Err(not_found(resource, namespace, n)),
            Err(e) => return Err(e),
        },
        None => {
            let params = ListParams { label_selector: selector, ..Default::default() };
            let page = registry.list(&res, namespace, &params).await?;
            page.items.iter().filter_map(|kv| Registry::decode(kv).ok()).collect()
        }
    };
    let usage = if resource == "pods" { source.pods(&objects).await? } else { source.nodes(&objects).await? };
    let timestamp = vkube_core::meta::now_rfc3339();
    let items: Vec<Value> = objects
        .iter()
        .zip(usage)
        .filter_map(|(o, u)| {
            let u = u?;
            let mut metadata = json!({"name": o["metadata"]["name"], "creationTimestamp": timestamp});
            if resource == "pods" {
                metadata["namespace"] = o["metadata"]["namespace"].clone();
            }
            if let Some(labels) = o["metadata"].get("labels") {
                metadata["labels"] = labels.clone();
            }
            let mut m = json!({"metadata": metadata, "timestamp": timestamp, "window": WINDOW});
            if resource == "pods" {
                m["containers"] = u;
            } else {
                m["usage"] = u;
            }
            Some(m)
        })
        .collect();
    let kind = if resource == "pods" { "PodMetrics" } else { "NodeMetrics" };
    let out = match name {
        Some(n) => {
            let mut one = items.into_iter().next().ok_or_else(|| not_found(resource, namespace, n))?;
            one["kind"] = json!(kind);
            one["apiVersion"] = json!(format!("{GROUP}/{VERSION}"));
            one
        }
        None => {
            json!({"kind": format!("{kind}List"), "apiVersion": format!("{GROUP}/{VERSION}"), "metadata": {}, "items": items})
        }
    };
    Ok(encode(StatusCode::OK, &out, Output::Json, &[]))
}
