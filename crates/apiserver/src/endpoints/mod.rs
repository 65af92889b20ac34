//! The HTTP front: authentication, routing of Kubernetes paths, and dispatch to the
//! verbs — [`read`] (get, list, watch), [`write`] (create, update, delete,
//! deletecollection), [`patch`] (every patch type, server-side apply in [`apply`]) and
//! [`subresources`] — with [`negotiate`] for media types, parameters and errors,
//! [`table`] for printing, [`protobuf`] for protobuf bodies, and the documents
//! ([`discovery`], [`openapi`], [`openapi_v2`]).
//!
//! Start with [`handle`]: every request goes through it; [`Route`] is what a path
//! names; errors of any kind leave as a `Status` through [`error_response`].

pub mod apply;
pub mod discovery;
pub mod metrics;
pub mod negotiate;
pub mod openapi;
pub mod openapi_v2;
pub mod patch;
pub mod protobuf;
pub mod read;
pub mod streams;
pub mod subresources;
pub mod table;
pub mod watch;
pub mod write;

pub use negotiate::{Output, add_warnings, error_response, negotiate, parse_body, write_options};
use negotiate::{encode, query_map};

use crate::authn::{Authenticator, User};
use crate::registry::Registry;
use crate::resources::{Resource, Subresource};
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use vkube_core::status::ApiError;

/// The largest request body accepted (as kube-apiserver: 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Shared state of the API handlers.
pub struct ApiState {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Bearer token authentication.
    pub authenticator: std::sync::RwLock<Authenticator>,
    /// The admission chain.
    pub admission: crate::admission::AdmissionChain,
    /// Where pod logs come from.
    pub logs: std::sync::RwLock<Option<Arc<dyn crate::admission::LogSource>>>,
    /// Where `metrics.k8s.io` usage comes from (None: the group is not served).
    pub metrics: std::sync::RwLock<Option<Arc<dyn crate::endpoints::metrics::MetricsSource>>>,
    /// Where `pods/exec`, `pods/attach` and `pods/portforward` streams go.
    pub streams: std::sync::RwLock<Option<Arc<dyn crate::endpoints::streams::StreamSource>>>,
    /// Signs and checks service-account tokens (None: the token subresource is not served).
    pub tokens: Option<crate::authn::tokens::TokenIssuer>,
    /// Decides what each user may do (RBAC).
    pub authz: Arc<crate::authz::Authorizer>,
}

impl ApiState {
    /// State over a registry.
    pub fn new(registry: Arc<Registry>, authenticator: Authenticator) -> Self {
        let authz = Arc::new(crate::authz::Authorizer::new(registry.clone()));
        let admission = crate::admission::AdmissionChain::builtin(registry.clone(), authz.clone());
        admission.add(Arc::new(crate::authz::escalation::EscalationCheck { authz: authz.clone() }));
        ApiState {
            admission,
            registry,
            authenticator: std::sync::RwLock::new(authenticator),
            logs: Default::default(),
            streams: Default::default(),
            metrics: Default::default(),
            tokens: None,
            authz,
        }
    }

    /// Serve service-account tokens signed by `issuer`.
    pub fn with_tokens(mut self, issuer: crate::authn::tokens::TokenIssuer) -> Self {
        self.tokens = Some(issuer);
        self
    }

    /// Add an admission plugin after the built-in ones.
    pub fn add_admission(&self, hook: Arc<dyn crate::admission::Admission>) {
        self.admission.add(hook);
    }
}

/// Run the admission chain over a write; the (possibly mutated) object and warnings.
///
/// # Errors
/// The first plugin's refusal.
pub async fn admit(
    ctx: &RequestContext,
    route: &Route,
    operation: crate::admission::Operation,
    dry_run: bool,
    obj: Value,
    old: Option<&Value>,
) -> Result<(Value, Vec<String>), ApiError> {
    let res = &route.resource;
    let req = crate::admission::AdmissionRequest {
        operation,
        target: crate::admission::Target {
            group: &res.group,
            version: &res.version,
            kind: &res.kind,
            resource: &res.plural,
            subresource: route.sub.map(Subresource::name),
        },
        namespace: &route.namespace,
        name: route.name.as_deref().unwrap_or_default(),
        user: &ctx.user,
        old,
        dry_run,
    };
    ctx.state.admission.run(&req, obj).await
}

/// The validating admission stage of a write (policies and validating webhooks), for
/// the registry to run on the object as it will be stored.
pub fn validation_stage(
    ctx: &RequestContext,
    route: &Route,
    operation: crate::admission::Operation,
    dry_run: bool,
) -> Option<crate::registry::Validation> {
    Some(crate::registry::Validation(Arc::new(crate::admission::DynamicStage {
        dynamic: ctx.state.admission.dynamic.clone(),
        facts: facts(ctx, route, operation, dry_run),
    })))
}

/// The facts of a request, as dynamic admission sees them.
pub fn facts(
    ctx: &RequestContext,
    route: &Route,
    operation: crate::admission::Operation,
    dry_run: bool,
) -> crate::admission::dynamic::Facts {
    let res = &route.resource;
    crate::admission::dynamic::Facts {
        operation,
        group: res.group.clone(),
        version: res.version.clone(),
        kind: res.kind.clone(),
        resource: res.plural.clone(),
        subresource: route.sub.map(Subresource::name).unwrap_or_default().to_string(),
        namespace: route.namespace.clone(),
        name: route.name.clone().unwrap_or_default(),
        namespaced: res.namespaced,
        user: ctx.user.clone(),
        dry_run,
    }
}

/// What a resource path names.
#[derive(Clone)]
pub struct Route {
    /// The resource.
    pub resource: Arc<Resource>,
    /// The namespace ("" for all or cluster-scoped).
    pub namespace: String,
    /// The object name (None for a collection).
    pub name: Option<String>,
    /// The subresource.
    pub sub: Option<Subresource>,
    /// A `/watch/` path (legacy).
    pub legacy_watch: bool,
}

/// Handle one request.
pub async fn handle(
    state: Arc<ApiState>,
    cert_user: Option<User>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let user = match cert_user {
        Some(u) => Some(u),
        None => authenticate_bearer(&state, &parts.headers).await,
    };
    let Some(mut user) = user else {
        return error_response(&ApiError::unauthorized());
    };
    if !user.groups.iter().any(|g| g == "system:authenticated") {
        user.groups.push("system:authenticated".into());
    }
    // Authorized before anything else is read: a refused request learns nothing, not
    // even whether what it names exists.
    let attributes = crate::authz::Attributes::of_request(user.clone(), &parts.method, &parts.uri);
    let user = match crate::authz::impersonation::resolve(&state.authz, user, &attributes, &parts.headers) {
        Ok(u) => u,
        Err(e) => return error_response(&e),
    };
    let attributes = attributes.as_user(user.clone());
    let checked = state.authz.check(&attributes).and_then(|()| match attributes.streaming_create() {
        Some(create) => state.authz.check(&create),
        None => Ok(()),
    });
    if let Err(e) = checked {
        tracing::debug!(target: "vkube_apiserver::access", "{} {} 403 user={}", parts.method, parts.uri, user.name);
        return error_response(&e);
    }
    if attributes.is_streaming() {
        // The connection is upgraded and handed on: there is no body to read.
        return crate::endpoints::streams::serve(&state, &mut parts).await;
    }
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => {
            let mut response = error_response(&e);
            if e.code == 413 && parts.version <= http::Version::HTTP_11 {
                // The rest of the body was drained (up to a bound): the client reads this
                // answer, and the connection closes cleanly after it.
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return response;
        }
    };
    let ctx = RequestContext {
        state: state.clone(),
        user,
        method: parts.method.clone(),
        headers: parts.headers,
        uri: parts.uri,
    };
    let started = std::time::Instant::now();
    let response = match route_and_serve(&ctx, body).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    // A role or binding acts as soon as its write is acknowledged.
    if attributes.resource_request
        && attributes.api_group == "rbac.authorization.k8s.io"
        && ctx.method != Method::GET
        && response.status().is_success()
    {
        state.authz.refresh().await;
    }
    // kube-apiserver's httplog (at -v=3): one line per request, for `VKUBE_LOG=vkube_apiserver::access=debug`.
    tracing::debug!(
        target: "vkube_apiserver::access",
        "{} {} {} user={} {:?}",
        ctx.method,
        ctx.uri,
        response.status().as_u16(),
        ctx.user.name,
        started.elapsed()
    );
    response
}

/// How much of a body over [`MAX_BODY`] is read and thrown away before answering 413,
/// and for how long: a client that sends its whole body before reading the answer (most
/// do) then gets the answer instead of a connection reset mid-upload.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Read a request body of at most [`MAX_BODY`] bytes.
///
/// # Errors
/// 413 for a larger body (after draining it, see [`DRAIN_LIMIT`]), 400 when the body
/// cannot be read.
async fn read_body(mut body: hyper::body::Incoming) -> Result<Bytes, ApiError> {
    let declared = hyper::body::Body::size_hint(&body).exact().and_then(|n| usize::try_from(n).ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(ApiError::too_large());
    }
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    let drain = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            total += data.len();
            if total > MAX_BODY {
                buf.clear();
                if total > DRAIN_LIMIT {
                    break;
                }
                continue;
            }
            buf.extend_from_slice(&data);
        }
        Ok::<(), ApiError>(())
    };
    match tokio::time::timeout(DRAIN_TIME, drain).await {
        Ok(result) => result?,
        Err(_) if total > MAX_BODY => return Err(ApiError::too_large()),
        Err(_) => return Err(ApiError::new(408, "Timeout", "timed out reading the request body")),
    }
    if total > MAX_BODY {
        return Err(ApiError::too_large());
    }
    Ok(buf.freeze())
}

async fn authenticate_bearer(state: &ApiState, headers: &HeaderMap) -> Option<User> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer "))?.trim();
    if let Some(u) = state.authenticator.read().ok()?.authenticate_token(token) {
        return Some(u);
    }
    crate::authn::tokens::authenticate(&state.registry, state.tokens.as_ref()?, token).await
}

/// One request in flight.
pub struct RequestContext {
    /// Shared state.
    pub state: Arc<ApiState>,
    /// The authenticated user.
    pub user: User,
    /// The method.
    pub method: Method,
    /// The headers.
    pub headers: HeaderMap,
    /// The URI.
    pub uri: http::Uri,
}

impl RequestContext {
    fn query(&self) -> HashMap<String, String> {
        query_map(&self.uri)
    }
    pub(crate) fn registry(&self) -> &Registry {
        &self.state.registry
    }
}

async fn route_and_serve(ctx: &RequestContext, body: Bytes) -> Result<Response<Body>, ApiError> {
    let path = ctx.uri.path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let catalog = ctx.registry().catalog().clone();
    let get_only = |v: Value| -> Result<Response<Body>, ApiError> {
        if ctx.method != Method::GET {
            return Err(ApiError::method_not_allowed());
        }
        Ok(encode(StatusCode::OK, &v, Output::Json, &[]))
    };
    match segments.as_slice() {
        [] => {
            return get_only(
                json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/openapi/v2", "/openapi/v3", "/version"]}),
            );
        }
        ["version"] => return get_only(crate::endpoints::discovery::version()),
        ["healthz" | "livez" | "readyz", ..] => {
            let mut r = Response::new(Body::from("ok"));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            return Ok(r);
        }
        ["api"] | ["apis"]
            if let Some(content_type) = ctx
                .headers
                .get(header::ACCEPT)
                .and_then(|a| a.to_str().ok())
                .and_then(crate::endpoints::discovery::aggregated_accept) =>
        {
            if ctx.method != Method::GET {
                return Err(ApiError::method_not_allowed());
            }
            let doc = crate::endpoints::discovery::aggregated(&catalog, segments == ["api"], content_type);
            let mut r = encode(StatusCode::OK, &doc, Output::Json, &[]);
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            return Ok(r);
        }
        ["api"] => {
            let host = ctx.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_string();
            return get_only(crate::endpoints::discovery::core_versions(&host));
        }
        ["apis"] => return get_only(crate::endpoints::discovery::group_list(&catalog)),
        ["api", "v1"] => {
            return get_only(
                crate::endpoints::discovery::resource_list(&catalog, "", "v1").ok_or_else(ApiError::path_not_found)?,
            );
        }
        ["apis", g] => {
            return get_only(crate::endpoints::discovery::group(&catalog, g).ok_or_else(ApiError::path_not_found)?);
        }
        ["apis", g, v] => {
            return get_only(
                crate::endpoints::discovery::resource_list(&catalog, g, v).ok_or_else(ApiError::path_not_found)?,
            );
        }
        ["apis", "authentication.k8s.io", "v1", review @ ("selfsubjectreviews" | "tokenreviews")] => {
            if ctx.method != Method::POST {
                return Err(ApiError::method_not_allowed());
            }
            let out = if *review == "selfsubjectreviews" {
                crate::authn::tokens::self_subject_review(&ctx.user)
            } else {
                crate::authn::tokens::token_review(ctx, ctx.state.tokens.as_ref(), &body).await?
            };
            return Ok(encode(StatusCode::CREATED, &out, Output::Json, &[]));
        }
        ["apis", "authorization.k8s.io", "v1", review]
        | ["apis", "authorization.k8s.io", "v1", "namespaces", _, review]
            if crate::authz::reviews::KINDS
                .iter()
                .any(|(p, _, namespaced)| p == review && *namespaced == (segments.len() == 6)) =>
        {
            if ctx.method != Method::POST {
                return Err(ApiError::method_not_allowed());
            }
            // A review is no object with metadata: it has no Table form.
            let accept = ctx.headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or_default();
            if !accept.is_empty()
                && accept.split(',').all(|part| part.contains("as=Table") || part.contains("as=PartialObjectMetadata"))
            {
                return Err(ApiError::not_acceptable(
                    "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
                ));
            }
            let namespace = if segments.len() == 6 { segments[4] } else { "" };
            let review_body = parse_body(&ctx.headers, &body)?;
            let out = crate::authz::reviews::review(&ctx.state.authz, &ctx.user, review, namespace, &review_body)?;
            return Ok(encode(StatusCode::CREATED, &out, Output::Json, &[]));
        }
        ["apis", crate::endpoints::metrics::GROUP, crate::endpoints::metrics::VERSION, rest @ ..]
            if !rest.is_empty() =>
        {
            return crate::endpoints::metrics::serve(ctx, rest).await;
        }
        ["openapi", "v2"] => return crate::endpoints::openapi::serve_v2(ctx, &catalog),
        ["openapi", "v3"] => return get_only(crate::endpoints::openapi::v3_index(&catalog)),
        ["openapi", "v3", rest @ ..] => return crate::endpoints::openapi::serve_v3(ctx, &catalog, &rest.join("/")),
        _ => {}
    }
    let route = parse_route(&catalog, &segments)?;
    serve_resource(ctx, route, body).await
}

/// Parse a resource path.
///
/// # Errors
/// 404 if it names nothing served.
pub fn parse_route(catalog: &crate::resources::Catalog, segments: &[&str]) -> Result<Route, ApiError> {
    let (group, version, rest) = match segments {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let (legacy_watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let find = |plural: &str| catalog.find(group, version, plural).ok_or_else(ApiError::path_not_found);
    let sub_of = |r: &Resource, s: &str| -> Result<Subresource, ApiError> {
        r.subresources.iter().copied().find(|x| x.name() == s).ok_or_else(ApiError::path_not_found)
    };
    let mk = |resource: Arc<Resource>, namespace: &str, name: Option<&str>, sub: Option<Subresource>| Route {
        resource,
        namespace: namespace.to_string(),
        name: name.map(String::from),
        sub,
        legacy_watch,
    };
    let route = match rest {
        ["namespaces", ns, plural]
            if group.is_empty()
                && version == "v1"
                && (*plural == "status" || *plural == "finalize")
                && catalog.find("", "v1", plural).is_none() =>
        {
            let r = find("namespaces")?;
            let s = sub_of(&r, plural)?;
            mk(r, "", Some(ns), Some(s))
        }
        ["namespaces", ns, plural] => {
            let r = find(plural)?;
            if !r.namespaced {
                return Err(ApiError::path_not_found());
            }
            mk(r, ns, None, None)
        }
        ["namespaces", ns, plural, name] => {
            let r = find(plural)?;
            if !r.namespaced {
                return Err(ApiError::path_not_found());
            }
            mk(r, ns, Some(name), None)
        }
        ["namespaces", ns, plural, name, sub] => {
            let r = find(plural)?;
            let s = sub_of(&r, sub)?;
            mk(r, ns, Some(name), Some(s))
        }
        [plural] => mk(find(plural)?, "", None, None),
        [plural, name] => {
            let r = find(plural)?;
            if r.namespaced && *plural != "namespaces" {
                return Err(ApiError::path_not_found());
            }
            mk(r, "", Some(name), None)
        }
        [plural, name, sub] => {
            let r = find(plural)?;
            if r.namespaced {
                return Err(ApiError::path_not_found());
            }
            let s = sub_of(&r, sub)?;
            mk(r, "", Some(name), Some(s))
        }
        _ => return Err(ApiError::path_not_found()),
    };
    Ok(route)
}

/// Dispatch a resource request to its verb.
async fn serve_resource(ctx: &RequestContext, route: Route, body: Bytes) -> Result<Response<Body>, ApiError> {
    let q = ctx.query();
    let is_watch = route.legacy_watch || q.get("watch").is_some_and(|w| w == "1" || w == "true");
    match (&ctx.method, route.name.as_deref(), route.sub) {
        (&Method::GET, name, None) if is_watch => read::watch(ctx, &route, name, &q).await,
        (&Method::GET, None, None) => read::list(ctx, &route, &q).await,
        (&Method::GET, Some(name), None) => read::get(ctx, &route, name, &q).await,
        (
            &Method::GET,
            Some(name),
            Some(Subresource::Status | Subresource::EphemeralContainers | Subresource::Approval),
        ) => read::get_status(ctx, &route, name).await,
        (&Method::GET, Some(name), Some(Subresource::Scale)) => {
            let obj = ctx.registry().get(&route.resource, &route.namespace, name).await?;
            Ok(encode(StatusCode::OK, &subresources::scale_of(&route.resource, &obj), Output::Json, &[]))
        }
        (&Method::GET, Some(name), Some(Subresource::Log)) => subresources::logs(ctx, &route, name, &q).await,
        (&Method::POST, None, None) => write::create(ctx, &route, &q, &body).await,
        (&Method::POST, Some(name), Some(Subresource::Binding)) => {
            let opts = write_options(ctx, &q)?;
            subresources::bind(ctx, &route, name, &body, opts.dry_run).await
        }
        (&Method::POST, Some(name), Some(Subresource::Token)) => {
            let issuer = ctx.state.tokens.as_ref().ok_or_else(ApiError::method_not_allowed)?;
            let out = crate::authn::tokens::request(ctx, issuer, &route.namespace, name, &body).await?;
            Ok(encode(StatusCode::CREATED, &out, Output::Json, &[]))
        }
        (&Method::POST, Some(name), Some(Subresource::Eviction)) => {
            let opts = write_options(ctx, &q)?;
            subresources::evict(ctx, &route, name, &body, opts.dry_run).await
        }
        (
            &Method::PUT,
            Some(name),
            sub @ (None
            | Some(Subresource::Status)
            | Some(Subresource::Finalize)
            | Some(Subresource::EphemeralContainers)
            | Some(Subresource::Approval)),
        ) => write::update(ctx, &route, name, sub, &q, &body).await,
        (&Method::PUT, Some(name), Some(Subresource::Scale)) => {
            let opts = write_options(ctx, &q)?;
            let scale = parse_body(&ctx.headers, &body)?;
            subresources::update_scale(ctx, &route, name, &opts, move |_| Ok(scale.clone())).await
        }
        (
            &Method::PATCH,
            Some(name),
            sub @ (None
            | Some(Subresource::Status)
            | Some(Subresource::Scale)
            | Some(Subresource::EphemeralContainers)
            | Some(Subresource::Approval)),
        ) => patch::serve(ctx, &route, name, sub, &q, body).await,
        (&Method::DELETE, Some(name), None) => write::delete(ctx, &route, name, &q, &body).await,
        (&Method::DELETE, None, None) if !route.resource.delete_collection => Err(ApiError::method_not_allowed()),
        (&Method::DELETE, None, None) => write::delete_collection(ctx, &route, &q, &body).await,
        _ => Err(ApiError::method_not_allowed()),
    }
}
