//! kube-apiserver's LimitRanger admission: a new pod's containers get the default
//! requests and limits of their namespace's LimitRanges (recorded in the
//! `kubernetes.io/limit-ranger` annotation), and a pod or claim outside a range's
//! min, max or limit-to-request ratio is refused (403, kube-apiserver's messages, all of
//! them in one).

use super::{Admission, AdmissionOutcome, AdmissionRequest, Operation};
use crate::registry::{ListParams, Registry};
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use vkube_core::quantity::parse_milli;
use vkube_core::status::{ApiError, GroupResource};

/// The LimitRanger admission plugin.
pub struct LimitRangerAdmission {
    /// Where the LimitRanges are read.
    pub registry: Arc<Registry>,
}

type Resources = BTreeMap<String, String>;

fn resources(v: Option<&Value>) -> Resources {
    v.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, q)| Some((k.clone(), q.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

fn milli(q: &str) -> i128 {
    parse_milli(q).unwrap_or(0)
}

/// kube's comparison values: milli-units while they fit, else units.
fn observed(q: Option<&String>) -> i128 {
    q.map_or(0, |q| milli(q))
}

fn min_constraint(kind: &str, res: &str, enforced: &str, req: &Resources, lim: &Resources, errs: &mut Vec<String>) {
    let e = milli(enforced);
    match req.get(res) {
        None => errs.push(format!("minimum {res} usage per {kind} is {enforced}.  No request is specified")),
        Some(r) if milli(r) < e => {
            errs.push(format!("minimum {res} usage per {kind} is {enforced}, but request is {r}"))
        }
        _ => {
            if let Some(l) = lim.get(res)
                && milli(l) < e
            {
                errs.push(format!("minimum {res} usage per {kind} is {enforced}, but limit is {l}"));
            }
        }
    }
}

fn max_constraint(kind: &str, res: &str, enforced: &str, req: &Resources, lim: &Resources, errs: &mut Vec<String>) {
    let e = milli(enforced);
    match lim.get(res) {
        None => errs.push(format!("maximum {res} usage per {kind} is {enforced}.  No limit is specified")),
        Some(l) if milli(l) > e => errs.push(format!("maximum {res} usage per {kind} is {enforced}, but limit is {l}")),
        _ => {
            if let Some(r) = req.get(res)
                && milli(r) > e
            {
                errs.push(format!("maximum {res} usage per {kind} is {enforced}, but request is {r}"));
            }
        }
    }
}

fn ratio_constraint(kind: &str, res: &str, enforced: &str, req: &Resources, lim: &Resources, errs: &mut Vec<String>) {
    let (r, l) = (observed(req.get(res)), observed(lim.get(res)));
    if r == 0 {
        errs.push(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
        return;
    }
    if l == 0 {
        errs.push(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
        return;
    }
    let ratio = l as f64 / r as f64;
    if ratio * 1000.0 > milli(enforced) as f64 {
        errs.push(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but provided ratio is {ratio:.6}"
        ));
    }
}

fn check(kind: &str, item: &Value, req: &Resources, lim: &Resources, errs: &mut Vec<String>) {
    for (res, q) in resources(item.get("min")) {
        min_constraint(kind, &res, &q, req, lim, errs);
    }
    for (res, q) in resources(item.get("max")) {
        max_constraint(kind, &res, &q, req, lim, errs);
    }
    for (res, q) in resources(item.get("maxLimitRequestRatio")) {
        ratio_constraint(kind, &res, &q, req, lim, errs);
    }
}

/// Sum (or, for init containers, the max of) quantities.
fn add(into: &mut BTreeMap<String, i128>, from: &Resources, max: bool) {
    for (k, q) in from {
        let v = milli(q);
        let slot = into.entry(k.clone()).or_insert(0);
        *slot = if max { (*slot).max(v) } else { *slot + v };
    }
}

/// A summed quantity as kube prints it: binary units for byte counts that are whole
/// Ki/Mi/Gi, else decimal (`1500m`, `2`).
fn format_quantity(milli: i128) -> String {
    if milli % 1000 == 0 {
        let units = milli / 1000;
        for (suffix, size) in [("Ti", 1i128 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
            if units >= size && units % size == 0 {
                return format!("{}{suffix}", units / size);
            }
        }
    }
    vkube_core::quantity::format_cpu_milli(milli)
}

fn as_quantities(m: &BTreeMap<String, i128>) -> Resources {
    m.iter().map(|(k, v)| (k.clone(), format_quantity(*v))).collect()
}

/// Apply a Container item's defaults to a container; the annotation lines it adds.
fn default_container(c: &mut Value, defaults: &Resources, default_requests: &Resources, prefix: &str) -> Vec<String> {
    let name = c.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(obj) = c.as_object_mut() else { return vec![] };
    let res = obj.entry("resources").or_insert_with(|| json!({}));
    let Some(res) = res.as_object_mut() else { return vec![] };
    // kube-apiserver's pod defaults: a limit without a request is also the request.
    let limits_now = resources(res.get("limits"));
    {
        let requests = res.entry("requests").or_insert_with(|| json!({}));
        if let Some(r) = requests.as_object_mut() {
            for (k, v) in &limits_now {
                r.entry(k.clone()).or_insert_with(|| json!(v));
            }
        }
    }
    let mut set = |field: &str, from: &Resources| -> Vec<String> {
        let entry = res.entry(field).or_insert_with(|| json!({}));
        let Some(m) = entry.as_object_mut() else { return vec![] };
        let mut added: Vec<String> = Vec::new();
        for (k, v) in from {
            if !m.contains_key(k) {
                m.insert(k.clone(), json!(v));
                added.push(k.clone());
            }
        }
        added
    };
    let set_limits = set("limits", defaults);
    let set_requests = set("requests", default_requests);
    for field in ["limits", "requests"] {
        if res.get(field).and_then(Value::as_object).is_some_and(Map::is_empty) {
            res.remove(field);
        }
    }
    let mut lines = Vec::new();
    if !set_requests.is_empty() {
        lines.push(format!("{} request for {prefix} {name}", set_requests.join(", ")));
    }
    if !set_limits.is_empty() {
        lines.push(format!("{} limit for {prefix} {name}", set_limits.join(", ")));
    }
    lines
}

#[async_trait]
impl Admission for LimitRangerAdmission {
    async fn admit(&self, req: &AdmissionRequest<'_>, mut object: Value) -> Result<AdmissionOutcome, ApiError> {
        let is_pod = req.is_core("Pod");
        let is_claim = req.is_core("PersistentVolumeClaim");
        if req.operation != Operation::Create || !(is_pod || is_claim) || req.namespace.is_empty() {
            return Ok(AdmissionOutcome::pass(object));
        }
        let Some(ranges) = self.registry.catalog().find("", "v1", "limitranges") else {
            return Ok(AdmissionOutcome::pass(object));
        };
        let page = self.registry.list(&ranges, req.namespace, &ListParams::default()).await?;
        let items: Vec<Value> = page
            .items
            .iter()
            .filter_map(|kv| Registry::decode_as(&ranges, kv).ok())
            .flat_map(|lr| lr.pointer("/spec/limits").and_then(Value::as_array).cloned().unwrap_or_default())
            .collect();
        if items.is_empty() {
            return Ok(AdmissionOutcome::pass(object));
        }
        let name = if req.name.is_empty() { vkube_core::meta::name(&object).to_string() } else { req.name.to_string() };
        let plural = if is_pod { "pods" } else { "persistentvolumeclaims" };
        let mut errs = Vec::new();
        if is_claim {
            let requests = resources(object.pointer("/spec/resources/requests"));
            let limits = resources(object.pointer("/spec/resources/limits"));
            for item in items.iter().filter(|i| i.get("type").and_then(Value::as_str) == Some("PersistentVolumeClaim"))
            {
                check("PersistentVolumeClaim", item, &requests, &limits, &mut errs);
            }
        } else {
            let mut annotations = Vec::new();
            for item in items.iter().filter(|i| i.get("type").and_then(Value::as_str) == Some("Container")) {
                let (defaults, default_requests) =
                    (resources(item.get("default")), resources(item.get("defaultRequest")));
                for (field, prefix) in [("containers", "container"), ("initContainers", "init container")] {
                    for c in object
                        .pointer_mut(&format!("/spec/{field}"))
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        annotations.extend(default_container(c, &defaults, &default_requests, prefix));
                    }
                }
            }
            if !annotations.is_empty() {
                vkube_core::meta::metadata_mut(&mut object)
                    .entry("annotations")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .map(|a| {
                        a.insert(
                            "kubernetes.io/limit-ranger".into(),
                            json!(format!("LimitRanger plugin set: {}", annotations.join("; "))),
                        )
                    });
            }
            let containers = |field: &str| -> Vec<(Resources, Resources)> {
                object
                    .pointer(&format!("/spec/{field}"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|c| (resources(c.pointer("/resources/requests")), resources(c.pointer("/resources/limits"))))
                    .collect()
            };
            let (main, init) = (containers("containers"), containers("initContainers"));
            for item in &items {
                match item.get("type").and_then(Value::as_str) {
                    Some("Container") => {
                        for (r, l) in main.iter().chain(init.iter()) {
                            check("Container", item, r, l, &mut errs);
                        }
                    }
                    Some("Pod") => {
                        let (mut r, mut l) = (BTreeMap::new(), BTreeMap::new());
                        for (cr, cl) in &main {
                            add(&mut r, cr, false);
                            add(&mut l, cl, false);
                        }
                        let (mut ir, mut il) = (BTreeMap::new(), BTreeMap::new());
                        for (cr, cl) in &init {
                            add(&mut ir, cr, true);
                            add(&mut il, cl, true);
                        }
                        for (k, v) in ir {
                            let slot = r.entry(k).or_insert(0);
                            *slot = (*slot).max(v);
                        }
                        for (k, v) in il {
                            let slot = l.entry(k).or_insert(0);
                            *slot = (*slot).max(v);
                        }
                        check("Pod", item, &as_quantities(&r), &as_quantities(&l), &mut errs);
                    }
                    _ => {}
                }
            }
        }
        if errs.is_empty() {
            return Ok(AdmissionOutcome::pass(object));
        }
        let message = if errs.len() == 1 { errs.remove(0) } else { format!("[{}]", errs.join(", ")) };
        Err(ApiError::forbidden(GroupResource { group: "", resource: plural }, &name, message))
    }
}
