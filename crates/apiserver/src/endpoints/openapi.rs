//! OpenAPI documents generated from the schemas of the served types: `/openapi/v3` (an
//! index of group-versions) and `/openapi/v3/{api/v1|apis/G/V}` (OpenAPI 3.0 with
//! `x-kubernetes-group-version-kind` on each kind and on each operation, and the
//! `fieldValidation` parameter kubectl looks for before it relies on server-side
//! validation), plus `/openapi/v2` in JSON and protobuf ([`crate::openapi_v2`]).
//!
//! Built-in schemas come from k8s-openapi (schemars); custom resources use their CRD's
//! `openAPIV3Schema`.

use crate::endpoints::RequestContext;
use crate::resources::{Catalog, Resource};
use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use sha2::Digest;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use vkube_core::status::ApiError;

fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

fn group_versions(catalog: &Catalog) -> BTreeMap<String, Vec<Arc<Resource>>> {
    let mut out: BTreeMap<String, Vec<Arc<Resource>>> = BTreeMap::new();
    for r in catalog.all().iter() {
        out.entry(gv_key(&r.group, &r.version)).or_default().push(r.clone());
    }
    out
}

type Cache = Mutex<BTreeMap<String, (String, Arc<Vec<u8>>)>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// What the documents are built from: every served resource's group, version, names,
/// scope and whole schema. A CRD whose version is renamed, or whose schema changes
/// without changing length, gets a new signature and so a rebuilt document.
fn signature(resources: &[Arc<Resource>]) -> String {
    let mut d = sha2::Sha256::new();
    for r in resources {
        d.update(format!("{}/{}/{}/{}/{}\0", r.group, r.version, r.plural, r.kind, r.namespaced));
        if let Some(s) = &r.schema {
            d.update(s.to_string());
        }
        d.update("\0");
    }
    d.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn gvk(r: &Resource) -> Value {
    json!([{"group": r.group, "version": r.version, "kind": r.kind}])
}

fn custom_schema_name(r: &Resource) -> String {
    let rev: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", rev.join("."), r.version, r.kind)
}

fn operation(r: &Resource, action: &str, schema_ref: &Value, extra_params: &[&str]) -> Value {
    let mut params: Vec<Value> = extra_params
        .iter()
        .map(|p| json!({"name": p, "in": "query", "description": p, "schema": {"type": "string"}, "uniqueItems": true}))
        .collect();
    if action == "patch" {
        params.push(json!({"name": "force", "in": "query", "schema": {"type": "boolean"}, "uniqueItems": true}));
    }
    let content = json!({"application/json": {"schema": schema_ref}, "application/yaml": {"schema": schema_ref}});
    let mut op = json!({
        "operationId": format!("{action}{}", r.kind),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": content}, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    });
    if matches!(action, "put" | "post" | "patch") {
        let body_types = if action == "patch" {
            json!({"application/apply-patch+yaml": {"schema": {"type": "object"}}, "application/json-patch+json": {"schema": {"type": "object"}}, "application/merge-patch+json": {"schema": {"type": "object"}}, "application/strategic-merge-patch+json": {"schema": {"type": "object"}}})
        } else {
            json!({"application/json": {"schema": schema_ref}, "application/yaml": {"schema": schema_ref}})
        };
        op["requestBody"] = json!({"content": body_types, "required": true});
    }
    op
}

fn build_v3(resources: &[Arc<Resource>]) -> Value {
    let settings = schemars::generate::SchemaSettings::openapi3();
    let mut generator = settings.into_generator();
    let mut roots: Vec<(Arc<Resource>, String)> = Vec::new();
    let mut custom: Map<String, Value> = Map::new();
    for r in resources {
        if let Some(f) = r.openapi {
            let s = f(&mut generator);
            let reference = s.as_value().get("$ref").and_then(Value::as_str).unwrap_or_default().to_string();
            roots.push((r.clone(), reference));
        } else {
            let name = custom_schema_name(r);
            let mut schema = r
                .schema
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
            if let Some(m) = schema.as_object_mut() {
                let props = m.entry("properties").or_insert_with(|| json!({}));
                if let Some(p) = props.as_object_mut() {
                    p.entry("apiVersion").or_insert(json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
                    p.entry("kind").or_insert(json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
                    p.insert("metadata".into(), json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}], "description": "Standard object's metadata."}));
                }
            }
            custom.insert(name.clone(), schema);
            roots.push((r.clone(), format!("#/components/schemas/{name}")));
        }
    }
    if !custom.is_empty() {
        generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
    }
    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    annotate_patch_strategies(&mut schemas);
    schemas.extend(custom);
    let mut paths = Map::new();
    for (r, reference) in &roots {
        let name = reference.rsplit('/').next().unwrap_or_default().to_string();
        if let Some(Value::Object(def)) = schemas.get_mut(&name) {
            def.insert("x-kubernetes-group-version-kind".into(), gvk(r));
        }
        let schema_ref = json!({"$ref": reference});
        let base =
            if r.group.is_empty() { format!("/api/{}", r.version) } else { format!("/apis/{}/{}", r.group, r.version) };
        let coll = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let write_params = ["dryRun", "fieldManager", "fieldValidation"];
        paths.insert(coll.clone(), json!({"get": operation(r, "list", &schema_ref, &["labelSelector", "fieldSelector", "limit", "continue", "watch"]), "post": operation(r, "post", &schema_ref, &write_params)}));
        paths.insert(
            format!("{coll}/{{name}}"),
            json!({
                "get": operation(r, "get", &schema_ref, &[]),
                "put": operation(r, "put", &schema_ref, &write_params),
                "patch": operation(r, "patch", &schema_ref, &write_params),
                "delete": operation(r, "delete", &schema_ref, &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The strategic-merge-patch merge key of a list property of a definition, as
/// Kubernetes' `patchMergeKey` tags have them (k8s-openapi's schemas lack them).
fn patch_merge_key(definition: &str, property: &str) -> Option<&'static str> {
    let ty = definition.rsplit('.').next().unwrap_or_default();
    match (ty, property) {
        (
            "PodSpec",
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "volumes"
            | "imagePullSecrets"
            | "resourceClaims"
            | "schedulingGates",
        ) => Some("name"),
        ("PodSpec", "hostAliases") => Some("ip"),
        ("PodSpec", "topologySpreadConstraints") => Some("topologyKey"),
        ("Container" | "EphemeralContainer", "env") => Some("name"),
        ("Container" | "EphemeralContainer", "ports") => Some("containerPort"),
        ("Container" | "EphemeralContainer", "volumeMounts") => Some("mountPath"),
        ("Container" | "EphemeralContainer", "volumeDevices") => Some("devicePath"),
        ("ServiceSpec", "ports") => Some("port"),
        ("ServiceAccount", "secrets") => Some("name"),
        ("NodeStatus", "addresses") => Some("type"),
        ("ObjectMeta", "ownerReferences") => Some("uid"),
        (t, "conditions") if t.ends_with("Status") && t != "JobStatus" => Some("type"),
        _ => None,
    }
}

fn annotate_patch_strategies(schemas: &mut Map<String, Value>) {
    for (name, def) in schemas.iter_mut() {
        let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) else { continue };
        for (prop, schema) in props.iter_mut() {
            let Some(obj) = schema.as_object_mut() else { continue };
            if let Some(key) = patch_merge_key(name, prop) {
                obj.insert("x-kubernetes-patch-merge-key".into(), json!(key));
                obj.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
                obj.insert("x-kubernetes-list-type".into(), json!("map"));
                obj.insert("x-kubernetes-list-map-keys".into(), json!([key]));
            } else if name.ends_with(".ObjectMeta") && prop == "finalizers" {
                obj.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
                obj.insert("x-kubernetes-list-type".into(), json!("set"));
            }
        }
    }
}

fn doc_for(key: &str, resources: &[Arc<Resource>]) -> (String, Arc<Vec<u8>>) {
    let sig = signature(resources);
    if let Ok(c) = cache().lock()
        && let Some((s, bytes)) = c.get(key)
        && *s == sig
    {
        return (hash(bytes), bytes.clone());
    }
    let bytes = Arc::new(serde_json::to_vec(&build_v3(resources)).unwrap_or_default());
    if let Ok(mut c) = cache().lock() {
        c.insert(key.to_string(), (sig, bytes.clone()));
    }
    (hash(&bytes), bytes)
}

fn hash(bytes: &[u8]) -> String {
    let d = sha2::Sha256::digest(bytes);
    d.iter().take(32).map(|b| format!("{b:02X}")).collect()
}

/// `/openapi/v3`.
pub fn v3_index(catalog: &Catalog) -> Value {
    let mut paths = Map::new();
    for (key, rs) in group_versions(catalog) {
        let (h, _) = doc_for(&key, &rs);
        paths.insert(key.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={h}")}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/{key}`.
///
/// # Errors
/// 404 for an unknown group-version.
pub fn serve_v3(ctx: &RequestContext, catalog: &Catalog, key: &str) -> Result<Response<Body>, ApiError> {
    let _ = ctx;
    let gvs = group_versions(catalog);
    let rs = gvs.get(key).ok_or_else(ApiError::path_not_found)?;
    let (_, bytes) = doc_for(key, rs);
    let mut r = Response::new(Body::from(bytes.as_ref().clone()));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
    Ok(r)
}

/// The v2 document in JSON and in protobuf, built once per set of served kinds.
struct V2 {
    signature: String,
    json: Arc<Vec<u8>>,
    protobuf: Arc<Vec<u8>>,
}

fn v2_cache() -> &'static Mutex<Option<V2>> {
    static CACHE: OnceLock<Mutex<Option<V2>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The Swagger 2.0 document: every group-version's schemas as definitions and its
/// operations as paths (see [`crate::openapi_v2`]).
fn build_v2(catalog: &Catalog) -> Value {
    let mut definitions = Map::new();
    let mut paths = Map::new();
    for (_, rs) in group_versions(catalog) {
        let doc = build_v3(&rs);
        for (k, v) in doc.pointer("/components/schemas").and_then(Value::as_object).into_iter().flatten() {
            definitions.insert(k.clone(), crate::endpoints::openapi_v2::schema_to_v2(v));
        }
        // kube-apiserver's v2 for a custom resource that keeps unknown fields at its
        // root (or has no schema): a bare object, without even apiVersion, kind and
        // metadata, since kubectl's v2 validation would refuse any other field.
        for r in rs.iter().filter(|r| r.openapi.is_none()) {
            let preserves = r
                .schema
                .as_ref()
                .is_none_or(|s| s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)));
            if preserves {
                definitions.insert(
                    custom_schema_name(r),
                    json!({"type": "object", "x-kubernetes-group-version-kind": gvk(r)}),
                );
            }
        }
        for (path, item) in doc.get("paths").and_then(Value::as_object).into_iter().flatten() {
            let mut v2 = Map::new();
            for (method, op) in item.as_object().into_iter().flatten() {
                v2.insert(method.clone(), crate::endpoints::openapi_v2::operation_to_v2(op));
            }
            paths.insert(path.clone(), Value::Object(v2));
        }
    }
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.37.0"}, "paths": paths, "definitions": definitions})
}

/// The protobuf form's media type, as kube-apiserver names it in its answer.
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `GET /openapi/v2`: protobuf when the client asks for it (client-go asks
/// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` first), else JSON.
///
/// # Errors
/// 405 for other methods, 406 when neither form is acceptable.
pub fn serve_v2(ctx: &RequestContext, catalog: &Catalog) -> Result<Response<Body>, ApiError> {
    if ctx.method != http::Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let accept = ctx.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*");
    let media: Vec<&str> = accept.split(',').map(|p| p.split(';').next().unwrap_or_default().trim()).collect();
    let protobuf = media.iter().position(|m| m.starts_with("application/com.github.proto-openapi.spec.v2"));
    let json_at = media.iter().position(|m| matches!(*m, "application/json" | "application/*" | "*/*" | ""));
    let wants_protobuf = match (protobuf, json_at) {
        (Some(p), Some(j)) => p < j,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => {
            return Err(ApiError::not_acceptable(format!(
                "only the following media types are accepted: application/json, {V2_PROTOBUF} (got {accept})"
            )));
        }
    };
    let signature = signature(&catalog.all());
    let (json_bytes, proto_bytes) = {
        let mut cached = v2_cache().lock().map_err(|_| ApiError::internal("openapi cache poisoned"))?;
        match cached.as_ref().filter(|c| c.signature == signature) {
            Some(c) => (c.json.clone(), c.protobuf.clone()),
            None => {
                let doc = build_v2(catalog);
                let entry = V2 {
                    signature,
                    json: Arc::new(serde_json::to_vec(&doc).unwrap_or_default()),
                    protobuf: Arc::new(crate::endpoints::openapi_v2::document_proto(&doc)),
                };
                let out = (entry.json.clone(), entry.protobuf.clone());
                *cached = Some(entry);
                out
            }
        }
    };
    let (bytes, content_type) =
        if wants_protobuf { (proto_bytes, V2_PROTOBUF) } else { (json_bytes, "application/json") };
    let mut r = Response::new(Body::from(bytes.as_ref().clone()));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(r)
}
