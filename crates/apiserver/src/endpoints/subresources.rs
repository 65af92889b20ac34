//! Subresources with their own shapes: `scale` (autoscaling/v1 Scale), `binding`,
//! `eviction` (honouring PodDisruptionBudgets) and `log`.

use crate::endpoints::{RequestContext, Route, parse_body};
use crate::registry::{DeleteOptions, Registry, WriteOptions};
use crate::resources::{Resource, Subresource};
use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};
use std::collections::HashMap;
use vkube_core::selector::LabelSelector;
use vkube_core::status::{ApiError, Cause, success_status};

fn respond(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The Scale view of a scalable object.
pub fn scale_of(res: &Resource, obj: &Value) -> Value {
    // A ReplicationController's selector is a plain map of labels.
    let rc_selector = (res.group.is_empty() && res.kind == "ReplicationController")
        .then(|| json!({"matchLabels": obj.pointer("/spec/selector").cloned().unwrap_or_default()}));
    let selector = LabelSelector::from_object(rc_selector.as_ref().or(obj.pointer("/spec/selector"))).ok().map(|s| {
        s.requirements
            .iter()
            .map(|r| match r.operator {
                vkube_core::selector::Operator::In if r.values.len() == 1 => format!("{}={}", r.key, r.values[0]),
                _ => r.key.clone(),
            })
            .collect::<Vec<_>>()
            .join(",")
    });
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj.pointer("/metadata/name"),
            "namespace": obj.pointer("/metadata/namespace"),
            "uid": obj.pointer("/metadata/uid"),
            "resourceVersion": obj.pointer("/metadata/resourceVersion"),
            "creationTimestamp": obj.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector.unwrap_or_default()},
    })
    .as_object()
    .map(|m| {
        let _ = res;
        Value::Object(m.clone())
    })
    .unwrap_or_default()
}

/// Update `spec.replicas` through the Scale view; `change` maps the current Scale to the
/// desired one.
///
/// # Errors
/// 404, 409 on a stale resourceVersion, 422 for negative replicas.
pub async fn update_scale<F>(
    ctx: &RequestContext,
    route: &Route,
    name: &str,
    opts: &WriteOptions,
    change: F,
) -> Result<Response<Body>, ApiError>
where
    F: Fn(&Value) -> Result<Value, ApiError> + Send + Sync,
{
    let res = route.resource.clone();
    let reg = &ctx.state.registry;
    let out = reg
        .update_with(&res, &route.namespace, name, None, opts, |cur| {
            let scale = change(&scale_of(&res, cur))?;
            let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    name,
                    vec![vkube_core::status::Cause::invalid(
                        "spec.replicas",
                        &replicas.to_string(),
                        "must be greater than or equal to 0",
                    )],
                ));
            }
            let mut next = cur.clone();
            next["spec"]["replicas"] = json!(replicas);
            match scale.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                Some(rv) => next["metadata"]["resourceVersion"] = json!(rv),
                None => {
                    if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("resourceVersion");
                    }
                }
            }
            Ok(next)
        })
        .await?;
    Ok(respond(StatusCode::OK, &scale_of(&res, &out.object)))
}

/// `POST pods/NAME/binding`: set `spec.nodeName` once.
///
/// # Errors
/// 409 if already bound, 404.
pub async fn bind(
    ctx: &RequestContext,
    route: &Route,
    name: &str,
    body: &[u8],
    dry_run: bool,
) -> Result<Response<Body>, ApiError> {
    let binding = parse_body(&ctx.headers, body)?;
    let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or_default().to_string();
    if node.is_empty() {
        return Err(ApiError::invalid("", "Binding", name, vec![vkube_core::status::Cause::required("target.name")]));
    }
    let res = route.resource.clone();
    let reg = &ctx.state.registry;
    let opts = WriteOptions { field_manager: Some("vkube-scheduler".into()), dry_run, ..Default::default() };
    reg.update_with(&res, &route.namespace, name, Some(Subresource::Binding), &opts, |cur| {
        let current = cur.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
        if !current.is_empty() {
            return Err(ApiError::conflict(
                res.group_resource(),
                name,
                &format!("pod {name} is already assigned to node \"{current}\""),
            ));
        }
        if cur.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
            return Err(ApiError::conflict(
                res.group_resource(),
                name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        let mut next = cur.clone();
        next["spec"]["nodeName"] = json!(node);
        let now = vkube_core::meta::now_rfc3339();
        let conds = next["status"].as_object_mut().map(|s| s.entry("conditions").or_insert_with(|| json!([])));
        if let Some(Value::Array(cs)) = conds {
            cs.retain(|c| c["type"] != "PodScheduled");
            cs.push(
                json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}),
            );
        }
        if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        Ok(next)
    })
    .await?;
    Ok(respond(StatusCode::CREATED, &success_status(json!({"name": name, "kind": "pods"}))))
}

/// `POST pods/NAME/eviction`: delete the pod unless a PodDisruptionBudget forbids it.
///
/// # Errors
/// 429 when a budget allows no disruption, 404.
pub async fn evict(
    ctx: &RequestContext,
    route: &Route,
    name: &str,
    body: &[u8],
    dry_run: bool,
) -> Result<Response<Body>, ApiError> {
    let eviction = if body.is_empty() { json!({}) } else { parse_body(&ctx.headers, body)? };
    let dry_run = dry_run
        || eviction
            .pointer("/deleteOptions/dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"));
    let reg = &ctx.state.registry;
    let res = route.resource.clone();
    let pod = reg.get(&res, &route.namespace, name).await?;
    crate::admission::noderestriction::check_eviction(&ctx.user, &pod, name)?;
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default();
    let terminal = phase == "Succeeded" || phase == "Failed" || phase == "Pending";
    if !terminal && pod.pointer("/metadata/deletionTimestamp").is_none() {
        check_budgets(reg, &route.namespace, &pod, dry_run).await?;
    }
    let opts = DeleteOptions {
        grace_period_seconds: eviction.pointer("/deleteOptions/gracePeriodSeconds").and_then(Value::as_i64),
        dry_run,
        ..Default::default()
    };
    reg.delete(&res, &route.namespace, name, &opts).await?;
    Ok(respond(StatusCode::CREATED, &success_status(json!({"name": name, "kind": "pods"}))))
}

async fn check_budgets(reg: &Registry, namespace: &str, pod: &Value, dry_run: bool) -> Result<(), ApiError> {
    let Some(pdb_res) = reg.catalog().find("policy", "v1", "poddisruptionbudgets") else { return Ok(()) };
    let page = reg.list(&pdb_res, namespace, &Default::default()).await?;
    let labels = vkube_core::meta::labels(pod);
    for kv in &page.items {
        let pdb = Registry::decode(kv)?;
        let Ok(sel) = LabelSelector::from_object(pdb.pointer("/spec/selector")) else { continue };
        if sel.requirements.is_empty() || !sel.matches(&labels) {
            continue;
        }
        let pdb_name = vkube_core::meta::name(&pdb).to_string();
        let generation = pdb.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        let observed = pdb.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(-1);
        if observed < generation {
            return Err(too_many(format!(
                "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {pdb_name} is still being processed by the server."
            )));
        }
        let allowed = pdb.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0);
        if allowed <= 0 {
            let needed = pdb.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0);
            let current = pdb.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0);
            let mut e = too_many(format!(
                "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {pdb_name} needs {needed} healthy pods and has {current} currently"
            ));
            e.details = Some(
                json!({"causes": [{"reason": "DisruptionBudget", "message": format!("The disruption budget {pdb_name} needs {needed} healthy pods and has {current} currently")}]}),
            );
            return Err(e);
        }
        // Take one disruption from the budget (kube-apiserver does the same), unless this
        // is a dry run.
        if dry_run {
            continue;
        }
        let mut next = pdb.clone();
        next["status"]["disruptionsAllowed"] = json!(allowed - 1);
        let _ =
            reg.store().update(&kv.key, serde_json::to_vec(&next).unwrap_or_default().into(), kv.mod_revision).await;
    }
    Ok(())
}

fn too_many(message: String) -> ApiError {
    ApiError::new(429, "TooManyRequests", message)
}

/// `GET pods/NAME/log`: the options checked as kube-apiserver checks `PodLogOptions`,
/// then the log from where the pod runs.
///
/// # Errors
/// 400 for an unknown container or an unparsable option, 422 for invalid options.
pub async fn logs(
    ctx: &RequestContext,
    route: &Route,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let options = log_options(name, q)?;
    let pod = ctx.state.registry.get(&route.resource, &route.namespace, name).await?;
    let container = crate::endpoints::streams::container_of(&pod, name, q.get("container").map(String::as_str))?;
    if pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().is_empty() {
        // kube-apiserver has no kubelet to ask: an empty answer.
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        return Ok(r);
    }
    let source = ctx.state.logs.read().ok().and_then(|l| l.clone());
    let Some(source) = source else {
        return Err(ApiError::bad_request(format!("no node serves logs for pod \"{name}\"")));
    };
    let query = ctx.uri.query().unwrap_or_default();
    source.logs(crate::admission::LogRequest { pod: &pod, container: &container, options: &options, query }).await
}

/// kube-apiserver's parsing and validation of `PodLogOptions`.
fn log_options(name: &str, q: &HashMap<String, String>) -> Result<crate::admission::LogOptions, ApiError> {
    let flag = |k: &str| q.get(k).is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"));
    let int = |k: &str| -> Result<Option<i64>, ApiError> {
        q.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax")))
            })
            .transpose()
    };
    let since_time = q
        .get("sinceTime")
        .map(|v| {
            v.parse::<jiff::Timestamp>().map_err(|_| {
                ApiError::bad_request(format!(
                    "parsing time {v:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {v:?} as \"2006\""
                ))
            })
        })
        .transpose()?;
    let options = crate::admission::LogOptions {
        follow: flag("follow"),
        previous: flag("previous"),
        since_seconds: int("sinceSeconds")?,
        since_time,
        timestamps: flag("timestamps"),
        tail_lines: int("tailLines")?,
        limit_bytes: int("limitBytes")?,
    };
    let mut causes = Vec::new();
    if let Some(t) = options.tail_lines.filter(|t| *t < 0) {
        causes.push(Cause::invalid_raw("tailLines", &t.to_string(), "must be greater than or equal to 0"));
    }
    if let Some(b) = options.limit_bytes.filter(|b| *b < 1) {
        causes.push(Cause::invalid_raw("limitBytes", &b.to_string(), "must be greater than 0"));
    }
    if options.since_seconds.is_some() && options.since_time.is_some() {
        causes.push(Cause::forbidden("[]", "at most one of `sinceTime` or `sinceSeconds` may be specified"));
    } else if let Some(s) = options.since_seconds.filter(|s| *s < 1) {
        causes.push(Cause::invalid_raw("sinceSeconds", &s.to_string(), "must be greater than 0"));
    }
    if causes.is_empty() { Ok(options) } else { Err(ApiError::invalid("", "PodLogOptions", name, causes)) }
}
