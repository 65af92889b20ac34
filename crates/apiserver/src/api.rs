//! The HTTP front: authentication, routing of Kubernetes paths, content negotiation,
//! and the verbs (get, list, watch, create, update, patch, delete, deletecollection)
//! plus the subresources, on top of the [`Registry`].
//!
//! Start with [`handle`]: every request goes through it; [`Route`] is what a path
//! names; errors of any kind leave as a `Status` through [`error_response`].

use crate::auth::{Authenticator, User};
use crate::registry::{DeleteOptions, FieldValidation, ListParams, Registry, WriteOptions};
use crate::resources::{Resource, Subresource};
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use vkube_core::selector::{FieldSelector, LabelSelector};
use vkube_core::status::ApiError;

/// The largest request body accepted (as kube-apiserver: 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Shared state of the API handlers.
pub struct ApiState {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Bearer token authentication.
    pub authenticator: std::sync::RwLock<Authenticator>,
    /// Admission hooks, in order.
    pub admission: std::sync::RwLock<Vec<Arc<dyn crate::admission::Admission>>>,
    /// Where pod logs come from.
    pub logs: std::sync::RwLock<Option<Arc<dyn crate::admission::LogSource>>>,
    /// Signs and checks service-account tokens (None: the token subresource is not served).
    pub tokens: Option<crate::tokens::TokenIssuer>,
}

impl ApiState {
    /// State over a registry.
    pub fn new(registry: Arc<Registry>, authenticator: Authenticator) -> Self {
        ApiState {
            registry,
            authenticator: std::sync::RwLock::new(authenticator),
            admission: Default::default(),
            logs: Default::default(),
            tokens: None,
        }
    }

    /// Serve service-account tokens signed by `issuer`.
    pub fn with_tokens(mut self, issuer: crate::tokens::TokenIssuer) -> Self {
        self.tokens = Some(issuer);
        self
    }

    /// Add an admission hook.
    pub fn add_admission(&self, hook: Arc<dyn crate::admission::Admission>) {
        if let Ok(mut a) = self.admission.write() {
            a.push(hook);
        }
    }

    fn admission(&self) -> Vec<Arc<dyn crate::admission::Admission>> {
        self.admission.read().map(|a| a.clone()).unwrap_or_default()
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

/// How the response is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// A meta.k8s.io/v1 Table.
    Table,
    /// PartialObjectMetadata(List).
    Metadata,
}

/// Negotiate the output form from `Accept`.
///
/// # Errors
/// 406 when nothing acceptable is offered.
pub fn negotiate(headers: &HeaderMap) -> Result<Output, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*");
    let mut any = false;
    for part in accept.split(',') {
        let part = part.trim();
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or_default();
        let opts: Vec<&str> = params.collect();
        let as_ = opts.iter().find_map(|o| o.strip_prefix("as="));
        match (media, as_) {
            ("application/json", Some("Table")) => return Ok(Output::Table),
            ("application/json", Some("PartialObjectMetadata" | "PartialObjectMetadataList")) => {
                return Ok(Output::Metadata);
            }
            ("application/json", Some(_)) => continue,
            ("application/json" | "application/*" | "*/*" | "", None) => return Ok(Output::Json),
            ("application/yaml", None) => return Ok(Output::Yaml),
            ("application/vnd.kubernetes.protobuf", _) => any = true,
            _ => {}
        }
    }
    if any || !accept.is_empty() {
        return Ok(Output::Json).and_then(|o| {
            if any {
                Ok(o)
            } else {
                Err(ApiError::not_acceptable(format!(
                    "only the following media types are accepted: application/json, application/yaml (got {accept})"
                )))
            }
        });
    }
    Ok(Output::Json)
}

fn query_map(uri: &http::Uri) -> HashMap<String, String> {
    uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// Render an error as kube-apiserver would.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let body = serde_json::to_vec(&e.to_status()).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if e.code == 401 {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"kubernetes-master\""));
    }
    r
}

fn json_bytes(status: StatusCode, body: Vec<u8>, warnings: &[String]) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    add_warnings(&mut r, warnings);
    r
}

/// Add `Warning: 299 - "..."` headers.
pub fn add_warnings(r: &mut Response<Body>, warnings: &[String]) {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        let text: String =
            escaped.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' }).collect();
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
}

fn encode(status: StatusCode, obj: &Value, output: Output, warnings: &[String]) -> Response<Body> {
    if output == Output::Yaml {
        let text = serde_saphyr::to_string(obj).unwrap_or_default();
        let mut r = Response::new(Body::from(text));
        *r.status_mut() = status;
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
        add_warnings(&mut r, warnings);
        return r;
    }
    json_bytes(status, serde_json::to_vec(obj).unwrap_or_default(), warnings)
}

/// Handle one request.
pub async fn handle(
    state: Arc<ApiState>,
    cert_user: Option<User>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let user = match cert_user {
        Some(u) => Some(u),
        None => authenticate_bearer(&state, &parts.headers).await,
    };
    let Some(user) = user else {
        return error_response(&ApiError::unauthorized());
    };
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
    crate::tokens::authenticate(&state.registry, state.tokens.as_ref()?, token).await
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
    fn registry(&self) -> &Registry {
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
        ["version"] => return get_only(crate::discovery::version()),
        ["healthz" | "livez" | "readyz", ..] => {
            let mut r = Response::new(Body::from("ok"));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            return Ok(r);
        }
        ["api"] => {
            let host = ctx.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_string();
            return get_only(crate::discovery::core_versions(&host));
        }
        ["apis"] => return get_only(crate::discovery::group_list(&catalog)),
        ["api", "v1"] => {
            return get_only(crate::discovery::resource_list(&catalog, "", "v1").ok_or_else(ApiError::path_not_found)?);
        }
        ["apis", g] => return get_only(crate::discovery::group(&catalog, g).ok_or_else(ApiError::path_not_found)?),
        ["apis", g, v] => {
            return get_only(crate::discovery::resource_list(&catalog, g, v).ok_or_else(ApiError::path_not_found)?);
        }
        ["apis", "authentication.k8s.io", "v1", review @ ("selfsubjectreviews" | "tokenreviews")] => {
            if ctx.method != Method::POST {
                return Err(ApiError::method_not_allowed());
            }
            let out = if *review == "selfsubjectreviews" {
                crate::tokens::self_subject_review(&ctx.user)
            } else {
                crate::tokens::token_review(ctx, ctx.state.tokens.as_ref(), &body).await?
            };
            return Ok(encode(StatusCode::CREATED, &out, Output::Json, &[]));
        }
        ["openapi", "v2"] => return crate::openapi::serve_v2(ctx, &catalog),
        ["openapi", "v3"] => return get_only(crate::openapi::v3_index(&catalog)),
        ["openapi", "v3", rest @ ..] => return crate::openapi::serve_v3(ctx, &catalog, &rest.join("/")),
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

pub fn write_options(ctx: &RequestContext, q: &HashMap<String, String>) -> Result<WriteOptions, ApiError> {
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!("Invalid dryRun value: \"{other}\": supported values: \"All\"")));
        }
    };
    let field_validation = match q.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            )));
        }
    };
    let field_manager = q.get("fieldManager").cloned().or_else(|| {
        ctx.headers
            .get(header::USER_AGENT)
            .and_then(|u| u.to_str().ok())
            .map(|u| u.split('/').next().unwrap_or(u).to_string())
    });
    Ok(WriteOptions { dry_run, field_validation, field_manager })
}

/// Parse a request body (JSON or YAML) into an object.
///
/// # Errors
/// 400 with the parser's message, 415 for unknown media types.
pub fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or_default().trim();
    match media {
        "application/json" | "" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let text =
                std::str::from_utf8(body).map_err(|e| ApiError::bad_request(format!("yaml: invalid UTF-8: {e}")))?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| ApiError::bad_request(format!("yaml: {e}")))
        }
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(body),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn list_params(q: &HashMap<String, String>, res: &Resource) -> Result<ListParams, ApiError> {
    let label_selector =
        LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or_default()).map_err(|e| {
            ApiError::bad_request(format!(
                "unable to parse requirement: {}",
                e.0.trim_start_matches("unable to parse requirement: ")
            ))
        })?;
    let field_selector = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.0))?;
    Registry::check_field_selector(res, &field_selector)?;
    let limit = match q.get("limit").map(String::as_str) {
        None | Some("") => 0,
        Some(l) => l.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?.max(0) as usize,
    };
    let rvm = q.get("resourceVersionMatch").filter(|s| !s.is_empty()).cloned();
    if let Some(m) = &rvm {
        if m != "Exact" && m != "NotOlderThan" {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                vec![vkube_core::status::Cause::not_supported(
                    "resourceVersionMatch",
                    m,
                    &["Exact", "NotOlderThan", ""],
                )],
            ));
        }
        if q.get("resourceVersion").is_none_or(|s| s.is_empty()) {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                vec![vkube_core::status::Cause::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )],
            ));
        }
    }
    Ok(ListParams {
        label_selector,
        field_selector,
        limit,
        continue_token: q.get("continue").filter(|s| !s.is_empty()).cloned(),
        resource_version: q.get("resourceVersion").cloned(),
        resource_version_match: rvm,
    })
}

async fn serve_resource(ctx: &RequestContext, route: Route, body: Bytes) -> Result<Response<Body>, ApiError> {
    let q = ctx.query();
    let res = route.resource.clone();
    let reg = ctx.registry();
    let is_watch = route.legacy_watch || q.get("watch").is_some_and(|w| w == "1" || w == "true");
    match (&ctx.method, &route.name, route.sub) {
        (&Method::GET, None, None) if is_watch => crate::watch::serve(ctx, &route, list_params(&q, &res)?, &q).await,
        (&Method::GET, Some(name), None) if is_watch => {
            let mut p = list_params(&q, &res)?;
            p.field_selector.requirements.push(vkube_core::selector::FieldRequirement {
                field: "metadata.name".into(),
                negated: false,
                value: name.clone(),
            });
            crate::watch::serve(ctx, &route, p, &q).await
        }
        (&Method::GET, None, None) => {
            let output = negotiate(&ctx.headers)?;
            let p = list_params(&q, &res)?;
            let page = reg.list(&res, &route.namespace, &p).await?;
            Ok(crate::table::list_response(&res, page, output, &q))
        }
        (&Method::GET, Some(name), None) => {
            let output = negotiate(&ctx.headers)?;
            let obj = reg.get(&res, &route.namespace, name).await?;
            Ok(crate::table::object_response(&res, obj, output, &q))
        }
        (&Method::GET, Some(name), Some(Subresource::Status)) => {
            let output = negotiate(&ctx.headers)?;
            Ok(encode(
                StatusCode::OK,
                &reg.get(&res, &route.namespace, name).await?,
                if output == Output::Yaml { Output::Yaml } else { Output::Json },
                &[],
            ))
        }
        (&Method::GET, Some(name), Some(Subresource::Scale)) => {
            let obj = reg.get(&res, &route.namespace, name).await?;
            Ok(encode(StatusCode::OK, &crate::subresources::scale_of(&res, &obj), Output::Json, &[]))
        }
        (&Method::GET, Some(name), Some(Subresource::Log)) => crate::subresources::logs(ctx, &route, name, &q).await,
        (&Method::POST, None, None) => {
            let opts = write_options(ctx, &q)?;
            let obj = parse_body(&ctx.headers, &body)?;
            let obj = admit(ctx, &route, crate::admission::Operation::Create, opts.dry_run, obj, None).await?;
            let out = reg.create(&res, &route.namespace, obj.0, &opts).await?;
            let mut warnings = obj.1;
            warnings.extend(out.warnings);
            if res.group == "apiextensions.k8s.io" && !opts.dry_run {
                crate::crd::on_change(reg).await;
            }
            Ok(encode(StatusCode::CREATED, &out.object, Output::Json, &warnings))
        }
        (&Method::POST, Some(name), Some(Subresource::Binding)) => {
            let opts = write_options(ctx, &q)?;
            crate::subresources::bind(ctx, &route, name, &body, opts.dry_run).await
        }
        (&Method::POST, Some(name), Some(Subresource::Token)) => {
            let issuer = ctx.state.tokens.as_ref().ok_or_else(ApiError::method_not_allowed)?;
            let out = crate::tokens::request(ctx, issuer, &route.namespace, name, &body).await?;
            Ok(encode(StatusCode::CREATED, &out, Output::Json, &[]))
        }
        (&Method::POST, Some(name), Some(Subresource::Eviction)) => {
            let opts = write_options(ctx, &q)?;
            crate::subresources::evict(ctx, &route, name, &body, opts.dry_run).await
        }
        (&Method::PUT, Some(name), sub @ (None | Some(Subresource::Status) | Some(Subresource::Finalize))) => {
            let opts = write_options(ctx, &q)?;
            let obj = parse_body(&ctx.headers, &body)?;
            let storage_sub = if sub == Some(Subresource::Finalize) { None } else { sub };
            let old = reg.get(&res, &route.namespace, name).await.ok();
            let (obj, mut warnings) =
                admit(ctx, &route, crate::admission::Operation::Update, opts.dry_run, obj, old.as_ref()).await?;
            let finalize = sub == Some(Subresource::Finalize);
            let out = reg
                .update_with(&res, &route.namespace, name, storage_sub, &opts, |current| {
                    if finalize {
                        let mut next = current.clone();
                        next["spec"]["finalizers"] = obj.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
                        if let Some(rv) = obj.pointer("/metadata/resourceVersion") {
                            next["metadata"]["resourceVersion"] = rv.clone();
                        }
                        return Ok(next);
                    }
                    Ok(obj.clone())
                })
                .await?;
            warnings.extend(out.warnings);
            let object = crate::namespaces::maybe_finish_namespace(reg, &res, out.object, opts.dry_run).await?;
            if res.group == "apiextensions.k8s.io" && !opts.dry_run {
                crate::crd::on_change(reg).await;
            }
            Ok(encode(StatusCode::OK, &object, Output::Json, &warnings))
        }
        (&Method::PUT, Some(name), Some(Subresource::Scale)) => {
            let opts = write_options(ctx, &q)?;
            let scale = parse_body(&ctx.headers, &body)?;
            crate::subresources::update_scale(ctx, &route, name, &opts, move |_| Ok(scale.clone())).await
        }
        (&Method::PATCH, Some(name), sub @ (None | Some(Subresource::Status) | Some(Subresource::Scale))) => {
            crate::patch::serve(ctx, &route, name, sub, &q, body).await
        }
        (&Method::DELETE, Some(name), None) => {
            let opts = delete_options(&q, &ctx.headers, &body)?;
            let current = reg.get(&res, &route.namespace, name).await?;
            let (_, warnings) =
                admit(ctx, &route, crate::admission::Operation::Delete, opts.dry_run, current.clone(), Some(&current))
                    .await?;
            let (obj, gone) = reg.delete(&res, &route.namespace, name, &opts).await?;
            if res.group == "apiextensions.k8s.io" && gone && !opts.dry_run {
                crate::crd::on_change(reg).await;
            }
            // Deleted or only marked (finalizers, grace period): either way 200 with the object.
            let _ = gone;
            Ok(encode(StatusCode::OK, &obj, Output::Json, &warnings))
        }
        (&Method::DELETE, None, None) => {
            let opts = delete_options(&q, &ctx.headers, &body)?;
            let p = list_params(&q, &res)?;
            let page = reg.list(&res, &route.namespace, &ListParams { limit: 0, continue_token: None, ..p }).await?;
            let mut items = Vec::new();
            for kv in &page.items {
                let obj = Registry::decode_as(&res, kv)?;
                let ns = vkube_core::meta::namespace(&obj).to_string();
                let name = vkube_core::meta::name(&obj).to_string();
                let item = Route { namespace: ns.clone(), name: Some(name.clone()), ..route.clone() };
                admit(ctx, &item, crate::admission::Operation::Delete, opts.dry_run, obj.clone(), Some(&obj)).await?;
                match reg.delete(&res, &ns, &name, &opts).await {
                    Ok((o, _)) => items.push(o),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let list = json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": {}, "items": items});
            Ok(encode(StatusCode::OK, &list, Output::Json, &[]))
        }
        (&Method::POST | &Method::PUT | &Method::PATCH | &Method::DELETE | &Method::GET, _, _) => {
            Err(ApiError::method_not_allowed())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Run admission hooks over a write; returns the (possibly mutated) object and warnings.
///
/// # Errors
/// The first hook's refusal.
pub async fn admit(
    ctx: &RequestContext,
    route: &Route,
    operation: crate::admission::Operation,
    dry_run: bool,
    obj: Value,
    old: Option<&Value>,
) -> Result<(Value, Vec<String>), ApiError> {
    let hooks = ctx.state.admission();
    let mut obj = obj;
    let mut warnings = Vec::new();
    if operation == crate::admission::Operation::Create
        && route.sub.is_none()
        && route.resource.group.is_empty()
        && route.resource.kind == "Pod"
    {
        crate::tokens::admit_pod(&ctx.state.registry, &route.namespace, &mut obj).await?;
    }
    for h in hooks {
        let req = crate::admission::AdmissionRequest {
            operation,
            resource: &route.resource,
            namespace: &route.namespace,
            name: route.name.as_deref().unwrap_or_default(),
            subresource: route.sub,
            user: &ctx.user,
            old,
            dry_run,
        };
        let out = h.admit(&req, obj).await?;
        obj = out.object;
        warnings.extend(out.warnings);
    }
    Ok((obj, warnings))
}

fn delete_options(q: &HashMap<String, String>, headers: &HeaderMap, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions::default();
    if !body.is_empty() {
        let v = parse_body(headers, body)?;
        opts.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.propagation_policy = v.get("propagationPolicy").and_then(Value::as_str).map(String::from);
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) && opts.propagation_policy.is_none() {
            opts.propagation_policy = Some("Orphan".into());
        }
        opts.precondition_uid = v.pointer("/preconditions/uid").and_then(Value::as_str).map(String::from);
        opts.precondition_resource_version =
            v.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(String::from);
        opts.dry_run = v.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|x| x == "All"));
    }
    if let Some(g) = q.get("gracePeriodSeconds") {
        opts.grace_period_seconds =
            Some(g.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds: {g}")))?);
    }
    if let Some(p) = q.get("propagationPolicy") {
        opts.propagation_policy = Some(p.clone());
    }
    if let Some(p) = &opts.propagation_policy
        && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
    {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "DeleteOptions",
            "",
            vec![vkube_core::status::Cause::not_supported(
                "propagationPolicy",
                p,
                &["Foreground", "Background", "Orphan", "nil"],
            )],
        ));
    }
    if q.get("dryRun").is_some_and(|d| d == "All") {
        opts.dry_run = true;
    }
    Ok(opts)
}
