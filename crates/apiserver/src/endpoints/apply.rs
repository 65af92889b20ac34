//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Every write records which fields its manager set, in the `FieldsV1` format
//! (`{"f:spec":{"f:replicas":{}}}`, list items by merge key `k:{"name":"c"}`, set
//! members `v:"x"`). Apply merges the applied configuration into the live object,
//! reports fields another manager owns with a different value as conflicts (409, in
//! kube-apiserver's words) unless forced, and removes fields the manager applied before
//! and no longer applies when nobody else owns them.

use crate::endpoints::patch::merges_as_set;
use crate::endpoints::{RequestContext, Route, admit};
use crate::registry::WriteOptions;
use crate::resources::Strategy;
use crate::resources::{Resource, Subresource};
use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use vkube_core::status::ApiError;

/// A field path: FieldsV1 path elements (`f:spec`, `k:{"name":"c"}`, `v:"x"`).
pub type FieldPath = Vec<String>;

const SYSTEM_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "namespace",
    "name",
];

/// The leaf fields (and list-item markers) set in an object.
pub fn field_set(keys: &dyn Strategy, obj: &Value, include_status: bool) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    if let Value::Object(m) = obj {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" || (k == "status" && !include_status) {
                continue;
            }
            if k == "metadata" {
                if let Value::Object(md) = v {
                    for (mk, mv) in md {
                        if SYSTEM_METADATA.contains(&mk.as_str()) {
                            continue;
                        }
                        walk(
                            keys,
                            mv,
                            &mut vec!["metadata".into(), mk.clone()],
                            &mut vec!["f:metadata".into(), format!("f:{mk}")],
                            &mut out,
                        );
                    }
                }
                continue;
            }
            walk(keys, v, &mut vec![k.clone()], &mut vec![format!("f:{k}")], &mut out);
        }
    }
    out
}

fn walk(
    keys_of: &dyn Strategy,
    v: &Value,
    keys: &mut Vec<String>,
    path: &mut FieldPath,
    out: &mut BTreeSet<FieldPath>,
) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            if path.len() > 1 || path.first().is_some_and(|p| p != "f:metadata" && p != "f:spec") {
                let mut dot = path.clone();
                dot.push(".".into());
                out.insert(dot);
            }
            for (k, child) in m {
                keys.push(k.clone());
                path.push(format!("f:{k}"));
                walk(keys_of, child, keys, path, out);
                path.pop();
                keys.pop();
            }
        }
        Value::Array(items) => {
            let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            if let Some(mk) = keys_of.merge_key(&key_refs) {
                for item in items {
                    let id = item.get(mk).cloned().unwrap_or(Value::Null);
                    path.push(format!("k:{}", json!({mk: id})));
                    let mut dot = path.clone();
                    dot.push(".".into());
                    out.insert(dot);
                    if let Value::Object(m) = item {
                        for (k, child) in m {
                            keys.push(k.clone());
                            path.push(format!("f:{k}"));
                            walk(keys_of, child, keys, path, out);
                            path.pop();
                            keys.pop();
                        }
                    }
                    path.pop();
                }
            } else if merges_as_set(&key_refs) {
                for item in items {
                    path.push(format!("v:{item}"));
                    out.insert(path.clone());
                    path.pop();
                }
            } else {
                out.insert(path.clone());
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// Render a field set as FieldsV1 JSON.
pub fn to_fields_v1(set: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for p in set {
        let mut cur = &mut root;
        for el in p {
            let next = cur.entry(el.clone()).or_insert_with(|| json!({}));
            let Value::Object(m) = next else { break };
            cur = m;
        }
    }
    Value::Object(root)
}

/// Parse FieldsV1 JSON back into a field set.
pub fn from_fields_v1(v: &Value) -> BTreeSet<FieldPath> {
    fn rec(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    rec(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    rec(v, &mut Vec::new(), &mut out);
    out
}

/// The value at a field path, if present.
fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for el in path {
        if el == "." {
            return Some(cur);
        }
        if let Some(f) = el.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = el.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur = cur.as_array()?.iter().find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))?;
        } else if let Some(v) = el.strip_prefix("v:") {
            let want: Value = serde_json::from_str(v).ok()?;
            return cur.as_array()?.iter().find(|x| **x == want);
        } else {
            return None;
        }
    }
    Some(cur)
}

fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else { return };
    if last == "." {
        return remove_at(obj, parent_path);
    }
    let mut cur = obj;
    for el in parent_path {
        let next = if let Some(f) = el.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = el.strip_prefix("k:") {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else { return };
            cur.as_array_mut()
                .and_then(|a| a.iter_mut().find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv))))
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Ok(key), Some(a)) = (serde_json::from_str::<Map<String, Value>>(k), cur.as_array_mut()) {
            a.retain(|item| !key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)));
        }
    } else if let Some(v) = last.strip_prefix("v:")
        && let (Ok(want), Some(a)) = (serde_json::from_str::<Value>(v), cur.as_array_mut())
    {
        a.retain(|x| *x != want);
    }
}

/// A path as kube-apiserver prints it in conflicts: `.spec.containers[name="c"].image`.
pub fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for el in path {
        if el == "." {
            continue;
        }
        if let Some(f) = el.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(kk, kv)| format!("{kk}={kv}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            s.push_str(&format!("[{v}]"));
        }
    }
    s
}

struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: Option<String>,
    time: String,
    fields: BTreeSet<FieldPath>,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e.get("manager").and_then(Value::as_str).unwrap_or_default().into(),
                    operation: e.get("operation").and_then(Value::as_str).unwrap_or("Update").into(),
                    api_version: e.get("apiVersion").and_then(Value::as_str).unwrap_or_default().into(),
                    subresource: e.get("subresource").and_then(Value::as_str).map(String::from),
                    time: e.get("time").and_then(Value::as_str).unwrap_or_default().into(),
                    fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn store_entries(obj: &mut Value, list: Vec<Entry>) {
    let rendered: Vec<Value> = list
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version, "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)});
            if let Some(s) = e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    let md = vkube_core::meta::metadata_mut(obj);
    if rendered.is_empty() {
        md.remove("managedFields");
    } else {
        md.insert("managedFields".into(), Value::Array(rendered));
    }
}

fn changed_fields(keys: &dyn Strategy, obj: &Value, old: Option<&Value>, status: bool) -> BTreeSet<FieldPath> {
    let now = field_set(keys, obj, status);
    let Some(old) = old else { return now };
    now.into_iter().filter(|p| value_at(obj, p) != value_at(old, p)).collect()
}

/// Record an Update-operation write by `manager` in `obj`'s managedFields: it now owns
/// the fields it changed, which other managers lose.
pub fn record_update(
    keys: &dyn Strategy,
    obj: &mut Value,
    old: Option<&Value>,
    manager: Option<&str>,
    operation: &str,
    api_version: &str,
    subresource: Option<&str>,
) {
    let Some(manager) = manager else { return };
    // Managed fields come from the stored object, never from the client.
    let mut list = old.map(entries).unwrap_or_default();
    if old.is_none() {
        list = entries(obj);
    }
    let status = subresource == Some("status");
    let mut changed = changed_fields(keys, obj, old, status);
    if status {
        changed.retain(|p| p.first().is_some_and(|f| f == "f:status"));
    }
    if changed.is_empty() && old.is_some() {
        store_entries(obj, list);
        return;
    }
    for e in list.iter_mut() {
        if !(e.manager == manager && e.operation == operation && e.subresource.as_deref() == subresource) {
            e.fields.retain(|p| !changed.contains(p));
        }
    }
    // Drop fields no longer present at all.
    let present = field_set(keys, obj, true);
    for e in list.iter_mut() {
        e.fields.retain(|p| present.contains(p));
    }
    match list
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == operation && e.subresource.as_deref() == subresource)
    {
        Some(e) => {
            e.fields.extend(changed);
            e.time = vkube_core::meta::now_rfc3339();
            e.api_version = api_version.into();
        }
        None => list.push(Entry {
            manager: manager.into(),
            operation: operation.into(),
            api_version: api_version.into(),
            subresource: subresource.map(String::from),
            time: vkube_core::meta::now_rfc3339(),
            fields: changed,
        }),
    }
    store_entries(obj, list);
}

/// Merge an applied configuration into a live object (lists by merge key, sets as
/// unions, everything else replaced).
fn merge_applied(keys_of: &dyn Strategy, live: &mut Value, applied: &Value, keys: &mut Vec<String>) {
    match (live.as_object_mut(), applied) {
        (Some(l), Value::Object(a)) => {
            for (k, v) in a {
                keys.push(k.clone());
                match l.get_mut(k) {
                    Some(existing) => merge_applied(keys_of, existing, v, keys),
                    None => {
                        l.insert(k.clone(), v.clone());
                    }
                }
                keys.pop();
            }
        }
        _ => {
            let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            if let (Some(mk), Value::Array(items), Some(list)) =
                (keys_of.merge_key(&key_refs), applied, live.as_array_mut())
            {
                for item in items {
                    match list.iter_mut().find(|x| x.get(mk) == item.get(mk)) {
                        Some(existing) => merge_applied(keys_of, existing, item, keys),
                        None => list.push(item.clone()),
                    }
                }
            } else if let (true, Value::Array(items), Some(list)) =
                (merges_as_set(&key_refs), applied, live.as_array_mut())
            {
                for item in items {
                    if !list.contains(item) {
                        list.push(item.clone());
                    }
                }
            } else {
                *live = applied.clone();
            }
        }
    }
}

/// Compute the result of applying `applied` as `manager` over `live` (None: create).
///
/// # Errors
/// 409 with the conflicting fields, unless `force`.
/// An apply configuration may hold only fields the type declares, whatever
/// `fieldValidation` says: kube-apiserver fails to build the typed patch otherwise, and
/// answers 500 naming each field (`.spec.x: field not declared in schema`).
fn reject_undeclared_fields(res: &Resource, namespace: &str, name: &str, applied: &Value) -> Result<(), ApiError> {
    let Ok(pruned) = res.strategy.prune(applied) else { return Ok(()) };
    let mut unknown = Vec::new();
    crate::registry::diff_unknown(applied, &pruned, "", &mut unknown);
    if unknown.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = unknown.iter().map(|f| format!(".{f}: field not declared in schema")).collect();
    let errors = if lines.len() == 1 { lines[0].clone() } else { format!("errors:\n  {}", lines.join("\n  ")) };
    let gv = if res.group.is_empty() { format!("/{}", res.version) } else { res.api_version() };
    Err(ApiError::new(
        500,
        "",
        format!("failed to create typed patch object ({namespace}/{name}; {gv}, Kind={}): {errors}", res.kind),
    ))
}

pub fn apply(
    keys: &dyn Strategy,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    subresource: Option<&str>,
) -> Result<Value, ApiError> {
    let status = subresource == Some("status");
    let mut applied_fields = field_set(keys, applied, status);
    if status {
        applied_fields.retain(|p| p.first().is_some_and(|f| f == "f:status"));
    }
    let Some(live) = live else {
        let mut obj = applied.clone();
        store_entries(&mut obj, vec![]);
        let list = vec![Entry {
            manager: manager.into(),
            operation: "Apply".into(),
            api_version: api_version.into(),
            subresource: None,
            time: vkube_core::meta::now_rfc3339(),
            fields: applied_fields,
        }];
        store_entries(&mut obj, list);
        return Ok(obj);
    };
    let mut list = entries(live);
    // Conflicts: fields others own whose value would change.
    let mut conflicts: Vec<(String, String, String)> = Vec::new();
    for e in &list {
        if e.manager == manager && e.operation == "Apply" {
            continue;
        }
        for p in e.fields.intersection(&applied_fields) {
            if p.last().is_some_and(|l| l == ".") {
                continue;
            }
            if value_at(live, p) != value_at(applied, p) {
                conflicts.push((e.manager.clone(), e.api_version.clone(), display_path(p)));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let n = conflicts.len();
        let lines: Vec<String> =
            conflicts.iter().map(|(m, v, p)| format!("conflict with \"{m}\" using {v}: {p}")).collect();
        let message = if n == 1 {
            format!("Apply failed with 1 conflict: {}", lines[0])
        } else {
            format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
        };
        let mut e = ApiError::new(409, "Conflict", message);
        e.details = Some(
            json!({"causes": conflicts.iter().map(|(m, v, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\" using {v}"), "field": p})).collect::<Vec<_>>()}),
        );
        return Err(e);
    }
    // Fields this manager applied before and applies no longer: remove if unowned.
    let previous: BTreeSet<FieldPath> = list
        .iter()
        .filter(|e| e.manager == manager && e.operation == "Apply")
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let others: BTreeSet<FieldPath> = list
        .iter()
        .filter(|e| !(e.manager == manager && e.operation == "Apply"))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut obj = live.clone();
    let mut applied_body = applied.clone();
    if let Some(md) = applied_body.get_mut("metadata").and_then(Value::as_object_mut) {
        md.remove("managedFields");
        md.remove("resourceVersion");
    }
    for p in previous.difference(&applied_fields) {
        if !others.contains(p) && p.last().is_none_or(|l| l != ".") {
            remove_at(&mut obj, p);
        }
    }
    for p in previous.difference(&applied_fields) {
        if p.last().is_some_and(|l| l == ".") && !others.iter().any(|o| o.starts_with(&p[..p.len() - 1])) {
            remove_at(&mut obj, p);
        }
    }
    merge_applied(keys, &mut obj, &applied_body, &mut Vec::new());
    if force {
        for e in list.iter_mut() {
            if !(e.manager == manager && e.operation == "Apply") {
                e.fields.retain(|p| !applied_fields.contains(p));
            }
        }
    } else {
        // Shared ownership where values agree.
    }
    list.retain(|e| !(e.manager == manager && e.operation == "Apply"));
    list.push(Entry {
        manager: manager.into(),
        operation: "Apply".into(),
        api_version: api_version.into(),
        subresource: subresource.map(String::from),
        time: vkube_core::meta::now_rfc3339(),
        fields: applied_fields,
    });
    store_entries(&mut obj, list);
    Ok(obj)
}

/// Serve an apply patch.
///
/// # Errors
/// 409 conflicts, and those of create/update.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    ctx: &RequestContext,
    route: &Route,
    name: &str,
    sub: Option<Subresource>,
    opts: &WriteOptions,
    mut applied: Value,
    manager: &str,
    force: bool,
) -> Result<Response<Body>, ApiError> {
    let reg = &ctx.state.registry;
    let res = route.resource.clone();
    if !applied.is_object() {
        return Err(ApiError::bad_request("apply configuration must be an object"));
    }
    let api_version = res.api_version();
    if applied.get("apiVersion").and_then(Value::as_str).is_none_or(|v| v.is_empty())
        || applied.get("kind").and_then(Value::as_str).is_none_or(|k| k.is_empty())
    {
        return Err(ApiError::bad_request("apiVersion and kind must be set in an apply configuration"));
    }
    if vkube_core::meta::name(&applied) != name && !vkube_core::meta::name(&applied).is_empty() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            vkube_core::meta::name(&applied)
        )));
    }
    vkube_core::meta::metadata_mut(&mut applied).insert("name".into(), json!(name));
    reject_undeclared_fields(&res, &route.namespace, name, &applied)?;
    let sub_name = sub.map(Subresource::name);
    let opts_apply = WriteOptions { field_manager: None, ..opts.clone() };
    match reg.get(&res, &route.namespace, name).await {
        Err(e) if e.code == 404 && sub.is_none() => {
            let obj = apply(res.strategy.as_ref(), None, &applied, manager, force, &api_version, None)?;
            let (obj, mut warnings) =
                admit(ctx, route, crate::admission::Operation::Create, opts.dry_run, obj, None).await?;
            let opts_apply = WriteOptions {
                validation: crate::endpoints::validation_stage(
                    ctx,
                    route,
                    crate::admission::Operation::Create,
                    opts.dry_run,
                ),
                ..opts_apply
            };
            let out = reg.create(&res, &route.namespace, obj, &opts_apply).await?;
            warnings.extend(out.warnings);
            if res.group == "apiextensions.k8s.io" && !opts.dry_run {
                crate::crd::on_change(reg).await;
            }
            Ok(respond(StatusCode::CREATED, &out.object, &warnings))
        }
        Err(e) => Err(e),
        Ok(current) => {
            let preview =
                apply(res.strategy.as_ref(), Some(&current), &applied, manager, force, &api_version, sub_name)?;
            let (_, mut warnings) =
                admit(ctx, route, crate::admission::Operation::Update, opts.dry_run, preview, Some(&current)).await?;
            let opts_apply = WriteOptions {
                validation: crate::endpoints::validation_stage(
                    ctx,
                    route,
                    crate::admission::Operation::Update,
                    opts.dry_run,
                ),
                ..opts_apply
            };
            let out = reg
                .update_with(&res, &route.namespace, name, sub, &opts_apply, |cur| {
                    let mut next =
                        apply(res.strategy.as_ref(), Some(cur), &applied, manager, force, &api_version, sub_name)?;
                    if applied.pointer("/metadata/resourceVersion").is_none()
                        && let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        m.remove("resourceVersion");
                    }
                    Ok(next)
                })
                .await?;
            warnings.extend(out.warnings);
            if res.group == "apiextensions.k8s.io" && !opts.dry_run {
                crate::crd::on_change(reg).await;
            }
            Ok(respond(StatusCode::OK, &out.object, &warnings))
        }
    }
}

fn respond(status: StatusCode, obj: &Value, warnings: &[String]) -> Response<Body> {
    let mut r = Response::new(Body::from(serde_json::to_vec(obj).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    crate::endpoints::add_warnings(&mut r, warnings);
    r
}

/// Managers and the fields they own, for tests and debugging.
pub fn owners(obj: &Value) -> BTreeMap<String, Vec<String>> {
    entries(obj)
        .into_iter()
        .map(|e| (format!("{}/{}", e.manager, e.operation), e.fields.iter().map(|p| display_path(p)).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Typed;
    use crate::resources::apps::deployment::DeploymentKind;

    fn keys() -> Typed<DeploymentKind> {
        Typed::default()
    }

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"app": "d"}}, "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn fields_v1_round_trip() {
        let set = field_set(&keys(), &deploy(1, "x"), false);
        assert!(set.contains(&vec!["f:spec".to_string(), "f:replicas".to_string()]));
        assert!(set.iter().any(|p| p.iter().any(|e| e == "k:{\"name\":\"c\"}")));
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    #[test]
    fn apply_conflicts_with_another_manager_unless_forced() {
        let created = apply(&keys(), None, &deploy(1, "x"), "alice", false, "apps/v1", None).expect("create");
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(&keys(), &mut scaled, Some(&created), Some("kubectl-scale"), "Update", "apps/v1", None);
        let err =
            apply(&keys(), Some(&scaled), &deploy(1, "x"), "alice", false, "apps/v1", None).expect_err("conflict");
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"
        );
        let forced = apply(&keys(), Some(&scaled), &deploy(1, "y"), "alice", true, "apps/v1", None).expect("forced");
        assert_eq!(forced["spec"]["replicas"], 1);
        assert_eq!(forced["spec"]["template"]["spec"]["containers"][0]["image"], "y");
    }

    #[test]
    fn apply_removes_fields_no_longer_applied() {
        let created = apply(&keys(), None, &deploy(1, "x"), "alice", false, "apps/v1", None).expect("create");
        let mut next = deploy(1, "x");
        next["metadata"].as_object_mut().map(|m| m.remove("labels"));
        let out = apply(&keys(), Some(&created), &next, "alice", false, "apps/v1", None).expect("apply");
        assert!(out.pointer("/metadata/labels/app").is_none(), "{out}");
    }
}
