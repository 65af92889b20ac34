//! `pods/exec`, `pods/attach` and `pods/portforward`: kube-apiserver checks the pod
//! (it exists, it is on a node, the container is one of its own) and hands the upgraded
//! connection to where the pod runs — a kubelet, a host cluster, a simulated node. The
//! connection is passed on whole (WebSocket `v5.channel.k8s.io` / `v4.channel.k8s.io`,
//! SPDY/3.1 as older clients speak it), as kube-apiserver's upgrade-aware proxy does.

use crate::endpoints::negotiate::error_response;
use crate::endpoints::{ApiState, parse_route};
use crate::resources::Subresource;
use async_trait::async_trait;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Response, header};
use serde_json::Value;
use std::sync::Arc;
use vkube_core::status::ApiError;

/// A checked streaming request, with the client's connection to take over.
pub struct StreamRequest {
    /// The pod, as stored.
    pub pod: Value,
    /// `exec`, `attach` or `portforward`.
    pub subresource: Subresource,
    /// The container (exec and attach).
    pub container: Option<String>,
    /// GET (WebSocket) or POST (SPDY).
    pub method: http::Method,
    /// The request's raw query (`command=…&stdin=true&…`, `ports=…`).
    pub query: String,
    /// The request's headers (`Upgrade`, `Sec-WebSocket-*`, `X-Stream-Protocol-Version`).
    pub headers: HeaderMap,
    /// The client's connection once the answer is `101 Switching Protocols`.
    pub upgrade: hyper::upgrade::OnUpgrade,
}

/// Where streams of pods go (a host cluster, simulated nodes running local processes).
#[async_trait]
pub trait StreamSource: Send + Sync {
    /// Answer the request: `101` (and then serve the upgraded connection), or an error.
    ///
    /// # Errors
    /// An `ApiError` to return to the client.
    async fn stream(&self, request: StreamRequest) -> Result<Response<Bytes>, ApiError>;
}

/// Serve a streaming subresource request (already authorized).
pub async fn serve(state: &Arc<ApiState>, parts: &mut http::request::Parts) -> Response<Body> {
    match checked(state, parts).await {
        Ok(r) => r.map(Body::from),
        Err(e) => error_response(&e),
    }
}

/// Every container name of a pod, in kube-apiserver's order (init, regular, ephemeral).
fn containers_of(pod: &Value) -> Vec<String> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array).into_iter().flatten())
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect()
}

/// The container a log or stream request means: the one asked for if the pod has it,
/// else the pod's only container (kube-apiserver's `streamLocation`/`LogLocation`).
///
/// # Errors
/// 400 with kube-apiserver's text for an unknown container or an ambiguous request.
pub(crate) fn container_of(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let all = containers_of(pod);
    let regular: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if all.iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}"))),
        None if regular.len() == 1 => Ok(regular[0].to_string()),
        None if regular.is_empty() => {
            Err(ApiError::bad_request(format!("a container name must be specified for pod {name}")))
        }
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            all.join(" ")
        ))),
    }
}

/// kube-apiserver's `streamLocation` checks, then the stream source.
async fn checked(state: &Arc<ApiState>, parts: &mut http::request::Parts) -> Result<Response<Bytes>, ApiError> {
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let catalog = state.registry.catalog().clone();
    let route = parse_route(&catalog, &segments)?;
    let (Some(name), Some(sub)) = (route.name.as_deref(), route.sub) else {
        return Err(ApiError::path_not_found());
    };
    if !matches!(parts.method, http::Method::GET | http::Method::POST) {
        return Err(ApiError::method_not_allowed());
    }
    let pod = state.registry.get(&route.resource, &route.namespace, name).await?;
    let query = parts.uri.query().unwrap_or_default().to_string();
    let container = if sub == Subresource::PortForward {
        None
    } else {
        let asked =
            form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "container").map(|(_, v)| v.into_owned());
        Some(container_of(&pod, name, asked.as_deref())?)
    };
    if pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    if !parts.headers.contains_key(header::UPGRADE) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let Some(upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        // HTTP/2 has no Upgrade: kubectl speaks HTTP/1.1 for streams.
        return Err(ApiError::bad_request("Upgrade request required (the connection cannot be upgraded)"));
    };
    let source = state.streams.read().ok().and_then(|s| s.clone());
    let Some(source) = source else {
        let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
        return Err(ApiError::bad_request(format!(
            "pod {name} is on node {node}, which serves no {} streams here",
            sub.name()
        )));
    };
    source
        .stream(StreamRequest {
            pod,
            subresource: sub,
            container,
            method: parts.method.clone(),
            query,
            headers: parts.headers.clone(),
            upgrade,
        })
        .await
}
