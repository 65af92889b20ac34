//! PATCH: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch
//! (kubectl's default, with merge keys and `$patch` directives for built-in types), and
//! server-side apply (delegated to [`crate::apply`]).

use crate::endpoints::{RequestContext, Route, admit};
use crate::registry::{FieldValidation, WriteOptions};
use crate::resources::{Strategy, Subresource};
use axum::body::Body;
use bytes::Bytes;
use http::{Response, StatusCode, header};
use serde_json::{Map, Value};
use std::collections::HashMap;
use vkube_core::status::ApiError;

/// Whether a list of scalars merges as a set (union) under strategic merge patch.
pub fn merges_as_set(path: &[&str]) -> bool {
    matches!(path, ["metadata", "finalizers"])
}

/// Apply a strategic merge patch.
///
/// # Errors
/// 400 for a malformed directive.
pub fn strategic_merge(keys: &dyn Strategy, original: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut out = original.clone();
    smp_into(keys, &mut out, patch, &mut Vec::new())?;
    Ok(out)
}

fn smp_into(keys: &dyn Strategy, target: &mut Value, patch: &Value, path: &mut Vec<String>) -> Result<(), ApiError> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut m = p.clone();
            m.remove("$patch");
            *target = Value::Object(m);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) if other != "merge" => return Err(ApiError::bad_request(format!("unknown patch type: {other}"))),
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let retain: Option<Vec<String>> = p
        .get("$retainKeys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect());
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove: Vec<Value> = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = target.get_mut(field) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        let Some(t) = target.as_object_mut() else { continue };
        if v.is_null() {
            t.remove(k);
            continue;
        }
        path.push(k.clone());
        let path_refs: Vec<&str> = path.iter().map(String::as_str).collect();
        match v {
            Value::Object(_) => {
                let entry = t.entry(k.clone()).or_insert(Value::Null);
                smp_into(keys, entry, v, path)?;
                if entry.is_null() {
                    t.remove(k);
                }
            }
            Value::Array(items) => {
                let key = keys.merge_key(&path_refs);
                let replace = items.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
                if replace {
                    let kept: Vec<Value> = items.iter().filter(|i| i.get("$patch").is_none()).cloned().collect();
                    t.insert(k.clone(), Value::Array(kept));
                } else if let Some(mk) = key {
                    let existing = t.entry(k.clone()).or_insert_with(|| Value::Array(vec![]));
                    if !existing.is_array() {
                        *existing = Value::Array(vec![]);
                    }
                    if let Value::Array(list) = existing {
                        let key_of = |x: &Value| x.get(mk).cloned();
                        let server_order: Vec<Value> = list.iter().filter_map(key_of).collect();
                        let patch_order: Vec<Value> = match p.get(&format!("$setElementOrder/{k}")) {
                            Some(Value::Array(order)) => order.iter().filter_map(key_of).collect(),
                            _ => items
                                .iter()
                                .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                                .filter_map(key_of)
                                .collect(),
                        };
                        for item in items {
                            let id = item.get(mk);
                            let pos = id.and_then(|id| list.iter().position(|x| x.get(mk) == Some(id)));
                            let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                            match (pos, delete) {
                                (Some(i), true) => {
                                    list.remove(i);
                                }
                                (None, true) => {}
                                (Some(i), false) => smp_into(keys, &mut list[i], item, path)?,
                                (None, false) => {
                                    let mut fresh = Value::Null;
                                    smp_into(keys, &mut fresh, item, path)?;
                                    list.push(fresh);
                                }
                            }
                        }
                        let merged = std::mem::take(list);
                        *list = element_order(merged, &patch_order, &server_order, mk);
                    }
                } else if merges_as_set(&path_refs) {
                    let existing = t.entry(k.clone()).or_insert_with(|| Value::Array(vec![]));
                    if let Value::Array(list) = existing {
                        for item in items {
                            if !list.contains(item) {
                                list.push(item.clone());
                            }
                        }
                    }
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
        path.pop();
    }
    if let (Some(keys), Some(t)) = (retain, target.as_object_mut()) {
        t.retain(|k, _| keys.contains(k));
    }
    Ok(())
}

/// kube's `normalizeElementOrder` for a list merged by key: the items the patch names
/// (in the patch's order, or its `$setElementOrder`) interleaved with those only the
/// stored list has (in their stored order), each stored item kept before the patch items
/// that come after it in the stored list.
fn element_order(merged: Vec<Value>, patch_order: &[Value], server_order: &[Value], mk: &str) -> Vec<Value> {
    let index = |order: &[Value], item: &Value| item.get(mk).and_then(|k| order.iter().position(|o| o == k));
    let (mut in_patch, server_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|item| index(patch_order, item).is_some());
    in_patch.sort_by_key(|item| index(patch_order, item));
    let (mut left, mut right) = (server_only.into_iter().peekable(), in_patch.into_iter().peekable());
    let mut out = Vec::new();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => match (index(server_order, l), index(server_order, r)) {
                (Some(li), Some(ri)) => li < ri,
                _ => false,
            },
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Which patch a Content-Type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 6902.
    Json,
    /// RFC 7386.
    Merge,
    /// Strategic merge patch.
    Strategic,
    /// Server-side apply.
    Apply,
}

/// The patch type of a request.
///
/// # Errors
/// 415 for anything else.
pub fn patch_type(ct: &str) -> Result<PatchType, ApiError> {
    match ct.split(';').next().unwrap_or_default().trim() {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the server does not support the patch type {other}: supported types are application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
            ),
        )),
    }
}

/// Apply a non-apply patch to an object.
///
/// # Errors
/// 400/422 for malformed patches or failing JSON-patch tests.
pub fn apply_patch(pt: PatchType, keys: &dyn Strategy, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    match pt {
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("json: cannot unmarshal patch: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &p).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
            Ok(doc)
        }
        PatchType::Merge => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut doc = current.clone();
            json_patch::merge(&mut doc, &p);
            Ok(doc)
        }
        PatchType::Strategic => {
            if !keys.supports_strategic_merge() {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "strategic merge patch is not supported for custom resources: use application/merge-patch+json",
                ));
            }
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            if !p.is_object() {
                return Err(ApiError::bad_request("strategic merge patch must be a JSON object"));
            }
            strategic_merge(keys, current, &p)
        }
        PatchType::Apply => Err(ApiError::internal("apply patches go through server-side apply")),
    }
}

/// Serve a PATCH.
///
/// # Errors
/// See [`apply_patch`] and the registry.
pub async fn serve(
    ctx: &RequestContext,
    route: &Route,
    name: &str,
    sub: Option<Subresource>,
    q: &HashMap<String, String>,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let ct = ctx.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let pt = patch_type(&ct)?;
    let reg = &ctx.state.registry;
    let res = route.resource.clone();
    let mut opts: WriteOptions = crate::endpoints::write_options(ctx, q)?;
    let mentions_rv = body.windows(15).any(|w| w == b"resourceVersion");
    if pt == PatchType::Apply {
        let manager = q.get("fieldManager").cloned().ok_or_else(|| {
            ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                vec![vkube_core::status::Cause::required("fieldManager")],
            )
            .with_message_override(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
                    .into(),
            )
        })?;
        let force = q.get("force").is_some_and(|f| f == "true");
        let (applied, repeats) = crate::endpoints::negotiate::parse_yaml_with_repeats(&body)?;
        // Repeated keys, as kube-apiserver's strict YAML decoding reports them.
        if !repeats.is_empty() && opts.field_validation == FieldValidation::Strict {
            return Err(ApiError::bad_request(format!(
                "error strict decoding YAML: error converting YAML to JSON: yaml: unmarshal errors:\n  {}",
                repeats.join("\n  ")
            )));
        }
        let mut response =
            crate::endpoints::apply::serve(ctx, route, name, sub, &opts, applied, &manager, force).await?;
        if opts.field_validation == FieldValidation::Warn {
            crate::endpoints::add_warnings(&mut response, &repeats);
        }
        return Ok(response);
    }
    if sub == Some(Subresource::Scale) {
        let body = body.clone();
        // A Scale has no lists: the parent kind's rules decide only whether strategic
        // merge patch applies (not for custom resources).
        let keys = res.strategy.clone();
        return crate::endpoints::subresources::update_scale(ctx, route, name, &opts, move |scale| {
            apply_patch(pt, keys.as_ref(), scale, &body).map(|mut s| {
                if !mentions_rv && let Some(m) = s.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                s
            })
        })
        .await;
    }
    if opts.field_validation == FieldValidation::Strict && pt == PatchType::Json {
        opts.field_validation = FieldValidation::Strict;
    }
    let current = reg.get(&res, &route.namespace, name).await?;
    let patched_preview = apply_patch(pt, res.strategy.as_ref(), &current, &body)?;
    let (admitted, mut warnings) =
        admit(ctx, route, crate::admission::Operation::Update, opts.dry_run, patched_preview, Some(&current)).await?;
    opts.validation = crate::endpoints::validation_stage(ctx, route, crate::admission::Operation::Update, opts.dry_run);
    let mut first = Some(admitted);
    let out = reg
        .update_with(&res, &route.namespace, name, sub, &opts, |cur| {
            let mut next = match first.take() {
                Some(v) if v.pointer("/metadata/resourceVersion") == cur.pointer("/metadata/resourceVersion") => v,
                _ => apply_patch(pt, res.strategy.as_ref(), cur, &body)?,
            };
            if !mentions_rv && let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            Ok(next)
        })
        .await?;
    warnings.extend(out.warnings);
    let object = crate::namespaces::maybe_finish_namespace(reg, &res, out.object, opts.dry_run).await?;
    let body = serde_json::to_vec(&object).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    crate::endpoints::add_warnings(&mut r, &warnings);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Typed;
    use crate::resources::core::pod::PodKind;
    use crate::resources::core::service::ServiceKind;
    use serde_json::json;

    #[test]
    fn smp_merges_containers_by_name() {
        let orig = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"}]}});
        let out = strategic_merge(&Typed::<PodKind>::default(), &orig, &patch).expect("merges");
        assert_eq!(out["spec"]["containers"].as_array().map(Vec::len), Some(3));
        assert_eq!(out["spec"]["containers"][1]["image"], "z");
    }

    /// The orders kube-apiserver 1.36 gives (read back from it): patch items first where
    /// the stored list does not place them, stored-only items in their stored order.
    #[test]
    fn smp_orders_merged_lists_as_kube_does() {
        let names = |v: &Value| -> Vec<String> {
            v["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .map(String::from)
                .collect()
        };
        let pod = Typed::<PodKind>::default();
        let orig =
            json!({"spec": {"containers": [{"name": "httpd", "image": "httpd"}, {"name": "side", "image": "side"}]}});
        let patch = json!({"spec": {"containers": [{"name": "test-rs", "image": "pause"}, {"name": "side", "image": "side2"}]}});
        let out = strategic_merge(&pod, &orig, &patch).expect("merges");
        assert_eq!(names(&out), ["test-rs", "httpd", "side"]);
        assert_eq!(out["spec"]["containers"][2]["image"], "side2");
        let ordered = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "x"}]}});
        assert_eq!(names(&strategic_merge(&pod, &out, &ordered).expect("merges")), ["a", "test-rs", "httpd", "side"]);
        let orig = json!({"spec": {"containers": [{"name": "a"}, {"name": "c"}, {"name": "httpd"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b"}, {"name": "d"}, {"name": "c", "$patch": "delete"}]}});
        assert_eq!(names(&strategic_merge(&pod, &orig, &patch).expect("merges")), ["b", "d", "a", "httpd"]);
    }

    #[test]
    fn smp_directives() {
        let orig = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "tolerations": [{"key": "k"}]}});
        let patch = json!({"metadata": {"labels": {"a": null}, "finalizers": ["y"]}, "spec": {"containers": [{"name": "a", "$patch": "delete"}], "tolerations": [{"key": "j"}]}});
        let out = strategic_merge(&Typed::<PodKind>::default(), &orig, &patch).expect("merges");
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "j"}]), "lists without a merge key are replaced");
        let replace = strategic_merge(
            &Typed::<PodKind>::default(),
            &orig,
            &json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
        )
        .expect("merges");
        assert_eq!(replace["metadata"]["labels"], json!({"c": "3"}));
    }

    #[test]
    fn service_ports_merge_by_port_and_container_ports_by_container_port() {
        assert_eq!(Typed::<ServiceKind>::default().merge_key(&["spec", "ports"]), Some("port"));
        assert_eq!(Typed::<PodKind>::default().merge_key(&["spec", "containers", "ports"]), Some("containerPort"));
        assert_eq!(Typed::<PodKind>::default().merge_key(&["ports"]), None);
    }
}
