//! The kubelet API of a simulated node (what kube-apiserver calls for `kubectl logs`):
//! HTTPS on the node's own loopback address, the port in the Node's
//! `status.daemonEndpoints.kubeletEndpoint`.
//!
//! As a kubelet does (`--anonymous-auth=false --authorization-mode=Webhook`), it takes
//! only client certificates of the cluster's CA (kube-apiserver's
//! `--kubelet-client-certificate`) and asks the cluster, with the node's own identity,
//! whether that user may use the node's subresource (a SubjectAccessReview of
//! `nodes/proxy` for container logs).

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};

/// What this server answers with: whole, or streamed (a followed log).
type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;

fn whole(bytes: Bytes) -> Body {
    Full::new(bytes).boxed_unsync()
}
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The client a request came with (from its certificate).
#[derive(Debug, Clone)]
struct Caller {
    name: String,
    groups: Vec<String>,
}

fn caller_of(der: &[u8]) -> Option<Caller> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(String::from)).collect();
    Some(Caller { name, groups })
}

/// One node's kubelet server.
pub(crate) struct NodeServer {
    pub(crate) node: String,
    pub(crate) client: kube::Client,
    /// exec and port-forward as local processes and ports, when opted into.
    pub(crate) exec: Option<crate::streams::LocalExec>,
}

/// Bind `ip:0` and serve the node's kubelet API; the bound address.
pub(crate) async fn serve(
    ip: std::net::IpAddr,
    tls: Arc<rustls::ServerConfig>,
    node: Arc<NodeServer>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(tls);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("node {}: kubelet API: accept: {e}", node.node);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let node = node.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await;
                let tls = match handshake {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return tracing::debug!("node {}: kubelet API: TLS handshake: {e}", node.node),
                    Err(_) => return tracing::debug!("node {}: kubelet API: TLS handshake timed out", node.node),
                };
                let caller =
                    tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| caller_of(c.as_ref()));
                let service = hyper::service::service_fn(move |req| {
                    let node = node.clone();
                    let caller = caller.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&node, caller, req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                // exec and port-forward upgrade the connection (SPDY, WebSocket).
                if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await {
                    tracing::debug!("kubelet API connection: {e}");
                }
            });
        }
    });
    Ok((addr, task))
}

fn text(code: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(whole(Bytes::from(body.into())));
    *resp.status_mut() = code;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// The node subresource a kubelet path is authorized as (kubelet's `server/auth.go`).
fn subresource_of(path: &str) -> &'static str {
    for (prefix, sub) in [("/stats", "stats"), ("/metrics", "metrics"), ("/logs/", "log"), ("/spec/", "spec")] {
        if path == prefix.trim_end_matches('/') || path.starts_with(prefix) {
            return sub;
        }
    }
    "proxy"
}

fn verb_of(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    }
}

async fn authorize(node: &NodeServer, caller: &Caller, verb: &str, subresource: &str) -> Result<bool, String> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(caller.name.clone()),
            groups: Some(caller.groups.clone()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                resource: Some("nodes".into()),
                subresource: Some(subresource.into()),
                name: Some(node.node.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(node.client.clone());
    let answer = api.create(&PostParams::default(), &review).await.map_err(|e| e.to_string())?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn handle(node: &NodeServer, caller: Option<Caller>, mut req: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let Some(caller) = caller else { return text(StatusCode::UNAUTHORIZED, "Unauthorized") };
    let verb = verb_of(req.method());
    let subresource = subresource_of(&path);
    match authorize(node, &caller, verb, subresource).await {
        Ok(true) => {}
        Ok(false) => {
            return text(
                StatusCode::FORBIDDEN,
                format!("Forbidden (user={}, verb={verb}, resource=nodes, subresource={subresource})", caller.name),
            );
        }
        Err(e) => {
            tracing::warn!("node {}: authorizing {} for {}: {e}", node.node, path, caller.name);
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "Authorization error (user={}, verb={verb}, resource=nodes, subresource={subresource})",
                    caller.name
                ),
            );
        }
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["healthz"] => text(StatusCode::OK, "ok"),
        ["containerLogs", ns, pod, container] if req.method() == Method::GET => {
            let query: std::collections::HashMap<String, String> =
                form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
            let view = crate::LogView {
                tail_lines: query.get("tailLines").and_then(|t| t.parse::<i64>().ok()),
                timestamps: query.get("timestamps").is_some_and(|t| t == "true" || t == "1"),
                since: query.get("sinceTime").and_then(|t| t.parse().ok()).or_else(|| {
                    let secs = query.get("sinceSeconds").and_then(|s| s.parse::<i64>().ok())?;
                    k8s_openapi::jiff::Timestamp::now()
                        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(secs))
                        .ok()
                }),
                limit_bytes: query.get("limitBytes").and_then(|t| t.parse::<i64>().ok()),
            };
            let flag = |k: &str| query.get(k).is_some_and(|t| t == "true" || t == "1");
            if flag("previous") {
                // A simulated container never restarts: there is no previous one.
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
                );
            }
            container_logs(node, ns, pod, container, &view, flag("follow")).await
        }
        ["exec", ns, pod, container] | ["exec", ns, pod, _, container] if node.exec.is_some() => {
            let upgrade = hyper::upgrade::on(&mut req);
            match bound_pod(node, ns, pod).await {
                Ok(found) => streamed(node.exec.as_ref().map(|local| {
                    local.exec(&found, container, req.uri().query().unwrap_or_default(), req.headers(), upgrade)
                })),
                Err(r) => r,
            }
        }
        ["portForward", ns, pod] | ["portForward", ns, pod, _] if node.exec.is_some() => {
            let upgrade = hyper::upgrade::on(&mut req);
            match bound_pod(node, ns, pod).await {
                Ok(found) => {
                    streamed(node.exec.as_ref().map(|local| local.port_forward(&found, req.headers(), upgrade)))
                }
                Err(r) => r,
            }
        }
        ["exec" | "attach" | "portForward" | "run", ..] => text(
            StatusCode::BAD_REQUEST,
            format!(
                "node {} is a simulated node: it runs no containers, so there is nothing to {}; start vkube nodes with --exec-local DIR to run exec commands as local processes",
                node.node, parts[0]
            ),
        ),
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// An answer of [`crate::streams::LocalExec`] as this server sends it.
fn streamed(answer: Option<Response<Bytes>>) -> Response<Body> {
    match answer {
        Some(r) => r.map(whole),
        None => text(StatusCode::INTERNAL_SERVER_ERROR, "exec is not served on this node"),
    }
}

/// The pod, as JSON, if it is bound to this node.
async fn bound_pod(node: &NodeServer, ns: &str, pod: &str) -> Result<serde_json::Value, Response<Body>> {
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), ns);
    match pods.get_opt(pod).await {
        Ok(Some(p)) if p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.node.as_str()) => {
            serde_json::to_value(&p).map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
        Ok(_) => {
            Err(text(StatusCode::NOT_FOUND, format!("pod \"{pod}\" in namespace \"{ns}\" not found on this node")))
        }
        Err(e) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading pod {ns}/{pod}: {e}"))),
    }
}

async fn container_logs(
    node: &NodeServer,
    ns: &str,
    pod: &str,
    container: &str,
    view: &crate::LogView,
    follow: bool,
) -> Response<Body> {
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), ns);
    let found = match pods.get_opt(pod).await {
        Ok(Some(p)) if p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.node.as_str()) => p,
        Ok(_) => {
            return text(StatusCode::NOT_FOUND, format!("pod \"{pod}\" in namespace \"{ns}\" not found on this node"));
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading pod {ns}/{pod}: {e}")),
    };
    let known = found
        .spec
        .as_ref()
        .is_some_and(|s| s.containers.iter().chain(s.init_containers.iter().flatten()).any(|c| c.name == container));
    if !known {
        return text(StatusCode::NOT_FOUND, format!("container \"{container}\" in pod \"{pod}\" is not available"));
    }
    let v = match serde_json::to_value(&found) {
        Ok(v) => v,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if !follow {
        return text(StatusCode::OK, crate::simulated_logs(&v, container, view));
    }
    let (client, ns, name) = (node.client.clone(), ns.to_string(), pod.to_string());
    let fetch = move || {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let name = name.clone();
        async move { pods.get_opt(&name).await.ok().flatten().and_then(|p| serde_json::to_value(p).ok()) }
    };
    let stream = crate::follow_simulated_logs(&v, container, view, fetch);
    let body = StreamBody::new(stream.map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b))));
    let mut resp = Response::new(body.boxed_unsync());
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}
