//! Output of gets and lists: JSON (spliced from stored bytes on the hot path), YAML,
//! PartialObjectMetadata, and `meta.k8s.io/v1` Tables with kubectl's familiar columns
//! for every built-in kind (`-o wide` columns have priority 1).

use crate::api::Output;
use crate::registry::{ListPage, Registry, splice_resource_version};
use crate::resources::Resource;
use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};
use std::collections::HashMap;
use vkube_core::meta::{age_seconds, human_duration};

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}
fn n(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}
fn arr<'a>(v: &'a Value, ptr: &str) -> Vec<&'a Value> {
    v.pointer(ptr).and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
}
fn none_if_empty(x: String) -> String {
    if x.is_empty() { "<none>".into() } else { x }
}
fn age(v: &Value) -> String {
    let ts = s(v, "/metadata/creationTimestamp");
    if ts.is_empty() { "<unknown>".into() } else { human_duration(age_seconds(ts)) }
}

/// A column: (name, type, priority).
type Col = (&'static str, &'static str, i64);

fn columns(res: &Resource) -> Vec<Col> {
    let k = res.kind.as_str();
    match (res.group.as_str(), k) {
        ("", "Namespace") => vec![("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
        ("", "Node") => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        ("", "Pod") => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        ("", "Service") => vec![
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        ("", "Endpoints") => vec![("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)],
        ("", "ConfigMap") => vec![("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        ("", "Secret") => {
            vec![("Name", "string", 0), ("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)]
        }
        ("", "ServiceAccount") => vec![("Name", "string", 0), ("Secrets", "integer", 0), ("Age", "string", 0)],
        ("", "Event") | ("events.k8s.io", "Event") => vec![
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
            ("Source", "string", 1),
            ("First Seen", "string", 1),
            ("Count", "string", 1),
            ("Name", "string", 1),
        ],
        ("", "PersistentVolumeClaim") => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            ("Age", "string", 0),
            ("VolumeMode", "string", 1),
        ],
        ("", "PersistentVolume") => vec![
            ("Name", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("Reclaim Policy", "string", 0),
            ("Status", "string", 0),
            ("Claim", "string", 0),
            ("StorageClass", "string", 0),
            ("Reason", "string", 0),
            ("Age", "string", 0),
            ("VolumeMode", "string", 1),
        ],
        ("apps", "Deployment") => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("apps", "ReplicaSet") => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("apps", "StatefulSet") => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
        ],
        ("apps", "DaemonSet") => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("apps", "ControllerRevision") => {
            vec![("Name", "string", 0), ("Controller", "string", 0), ("Revision", "integer", 0), ("Age", "string", 0)]
        }
        ("batch", "Job") => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("batch", "CronJob") => vec![
            ("Name", "string", 0),
            ("Schedule", "string", 0),
            ("Timezone", "string", 0),
            ("Suspend", "boolean", 0),
            ("Active", "integer", 0),
            ("Last Schedule", "string", 0),
            ("Age", "string", 0),
        ],
        ("coordination.k8s.io", "Lease") => vec![("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            ("Name", "string", 0),
            ("AddressType", "string", 0),
            ("Ports", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        ("policy", "PodDisruptionBudget") => vec![
            ("Name", "string", 0),
            ("Min Available", "string", 0),
            ("Max Unavailable", "string", 0),
            ("Allowed Disruptions", "integer", 0),
            ("Age", "string", 0),
        ],
        ("storage.k8s.io", "StorageClass") => vec![
            ("Name", "string", 0),
            ("Provisioner", "string", 0),
            ("ReclaimPolicy", "string", 0),
            ("VolumeBindingMode", "string", 0),
            ("AllowVolumeExpansion", "string", 0),
            ("Age", "string", 0),
        ],
        ("scheduling.k8s.io", "PriorityClass") => vec![
            ("Name", "string", 0),
            ("Value", "integer", 0),
            ("Global-Default", "boolean", 0),
            ("Age", "string", 0),
            ("PreemptionPolicy", "string", 0),
        ],
        ("networking.k8s.io", "Ingress") => vec![
            ("Name", "string", 0),
            ("Class", "string", 0),
            ("Hosts", "string", 0),
            ("Address", "string", 0),
            ("Ports", "string", 0),
            ("Age", "string", 0),
        ],
        ("networking.k8s.io", "NetworkPolicy") => {
            vec![("Name", "string", 0), ("Pod-Selector", "string", 0), ("Age", "string", 0)]
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => vec![
            ("Name", "string", 0),
            ("Role", "string", 0),
            ("Age", "string", 0),
            ("Users", "string", 1),
            ("Groups", "string", 1),
            ("ServiceAccounts", "string", 1),
        ],
        ("rbac.authorization.k8s.io", _) | ("apiextensions.k8s.io", _) => {
            vec![("Name", "string", 0), ("Created At", "date", 0)]
        }
        _ => vec![("Name", "string", 0), ("Age", "string", 0)],
    }
}

fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else { return "<none>".into() };
    let mut parts: Vec<String> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
        .unwrap_or_default();
    for e in sel.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let vals: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let key = s(e, "/key");
        parts.push(match s(e, "/operator") {
            "In" => format!("{key} in ({})", vals.join(",")),
            "NotIn" => format!("{key} notin ({})", vals.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    none_if_empty(parts.join(","))
}

fn containers_images(tpl_spec: Option<&Value>) -> (String, String) {
    let cs: Vec<&Value> = tpl_spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    (
        cs.iter().map(|c| s(c, "/name")).collect::<Vec<_>>().join(","),
        cs.iter().map(|c| s(c, "/image")).collect::<Vec<_>>().join(","),
    )
}

/// kubectl's pod STATUS column.
pub fn pod_status(p: &Value) -> String {
    let mut reason = s(p, "/status/reason").to_string();
    if reason.is_empty() {
        reason = s(p, "/status/phase").to_string();
    }
    let total_init = arr(p, "/spec/initContainers").len();
    let mut initializing = false;
    for (i, c) in arr(p, "/status/initContainerStatuses").iter().enumerate() {
        if let Some(t) = c.pointer("/state/terminated") {
            if n(t, "/exitCode") == 0 {
                continue;
            }
            reason = if s(t, "/reason").is_empty() {
                format!("Init:ExitCode:{}", n(t, "/exitCode"))
            } else {
                format!("Init:{}", s(t, "/reason"))
            };
        } else if let Some(w) =
            c.pointer("/state/waiting").filter(|w| !s(w, "/reason").is_empty() && s(w, "/reason") != "PodInitializing")
        {
            reason = format!("Init:{}", s(w, "/reason"));
        } else {
            reason = format!("Init:{i}/{total_init}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in arr(p, "/status/containerStatuses").iter().rev() {
            if let Some(w) = c.pointer("/state/waiting").filter(|w| !s(w, "/reason").is_empty()) {
                reason = s(w, "/reason").to_string();
            } else if let Some(t) = c.pointer("/state/terminated") {
                reason = if !s(t, "/reason").is_empty() {
                    s(t, "/reason").to_string()
                } else if n(t, "/signal") != 0 {
                    format!("Signal:{}", n(t, "/signal"))
                } else {
                    format!("ExitCode:{}", n(t, "/exitCode"))
                };
            } else if c.pointer("/state/running").is_some() && c.get("ready").and_then(Value::as_bool) == Some(true) {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if p.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        reason = if s(p, "/status/reason") == "NodeLost" { "Unknown".into() } else { "Terminating".into() };
    }
    reason
}

fn node_status(node: &Value) -> String {
    let mut st = Vec::new();
    let ready = arr(node, "/status/conditions").into_iter().find(|c| s(c, "/type") == "Ready");
    st.push(match ready.map(|c| s(c, "/status")) {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    });
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        st.push("SchedulingDisabled");
    }
    st.join(",")
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = vkube_core::meta::labels(node)
        .into_iter()
        .filter_map(|(k, v)| {
            if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
                Some(r.to_string())
            } else if k == "kubernetes.io/role" {
                Some(v)
            } else {
                None
            }
        })
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    none_if_empty(roles.join(","))
}

fn ports_string(ports: &[&Value]) -> String {
    none_if_empty(
        ports
            .iter()
            .map(|p| {
                let np = n(p, "/nodePort");
                let proto = if s(p, "/protocol").is_empty() { "TCP" } else { s(p, "/protocol") };
                if np > 0 { format!("{}:{np}/{proto}", n(p, "/port")) } else { format!("{}/{proto}", n(p, "/port")) }
            })
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn cells(res: &Resource, o: &Value) -> Vec<Value> {
    let name = json!(vkube_core::meta::name(o));
    let k = res.kind.as_str();
    match (res.group.as_str(), k) {
        ("", "Namespace") => vec![name, json!(s(o, "/status/phase")), json!(age(o))],
        ("", "Node") => {
            let addr = |t: &str| {
                none_if_empty(
                    arr(o, "/status/addresses")
                        .iter()
                        .filter(|a| s(a, "/type") == t)
                        .map(|a| s(a, "/address"))
                        .collect::<Vec<_>>()
                        .join(","),
                )
            };
            vec![
                name,
                json!(node_status(o)),
                json!(node_roles(o)),
                json!(age(o)),
                json!(s(o, "/status/nodeInfo/kubeletVersion")),
                json!(addr("InternalIP")),
                json!(addr("ExternalIP")),
                json!(none_if_empty(s(o, "/status/nodeInfo/osImage").into())),
                json!(none_if_empty(s(o, "/status/nodeInfo/kernelVersion").into())),
                json!(none_if_empty(s(o, "/status/nodeInfo/containerRuntimeVersion").into())),
            ]
        }
        ("", "Pod") => {
            let statuses = arr(o, "/status/containerStatuses");
            let total = arr(o, "/spec/containers").len();
            let ready = statuses.iter().filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true)).count();
            let restarts: i64 = statuses.iter().map(|c| n(c, "/restartCount")).sum();
            let ip = s(o, "/status/podIP");
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts.to_string()),
                json!(age(o)),
                json!(none_if_empty(ip.into())),
                json!(none_if_empty(s(o, "/spec/nodeName").into())),
                json!(none_if_empty(s(o, "/status/nominatedNodeName").into())),
                json!("<none>"),
            ]
        }
        ("", "Service") => {
            let ty = s(o, "/spec/type");
            let mut ext: Vec<String> =
                arr(o, "/spec/externalIPs").iter().filter_map(|v| v.as_str().map(String::from)).collect();
            for ing in arr(o, "/status/loadBalancer/ingress") {
                ext.push(if s(ing, "/ip").is_empty() { s(ing, "/hostname").into() } else { s(ing, "/ip").into() });
            }
            let ext = match ty {
                "ExternalName" => s(o, "/spec/externalName").to_string(),
                "LoadBalancer" if ext.is_empty() => "<pending>".into(),
                _ => none_if_empty(ext.join(",")),
            };
            let sel = o
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                json!(ty),
                json!(none_if_empty(s(o, "/spec/clusterIP").into())),
                json!(ext),
                json!(ports_string(&arr(o, "/spec/ports"))),
                json!(age(o)),
                json!(none_if_empty(sel)),
            ]
        }
        ("", "Endpoints") => {
            let mut eps = Vec::new();
            for subset in arr(o, "/subsets") {
                let ports = arr(subset, "/ports");
                for a in arr(subset, "/addresses") {
                    if ports.is_empty() {
                        eps.push(s(a, "/ip").to_string());
                    }
                    for p in &ports {
                        eps.push(format!("{}:{}", s(a, "/ip"), n(p, "/port")));
                    }
                }
            }
            let shown = if eps.len() > 3 {
                format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
            } else {
                eps.join(",")
            };
            vec![name, json!(none_if_empty(shown)), json!(age(o))]
        }
        ("", "ConfigMap") => {
            let count = o.get("data").and_then(Value::as_object).map_or(0, |m| m.len())
                + o.get("binaryData").and_then(Value::as_object).map_or(0, |m| m.len());
            vec![name, json!(count), json!(age(o))]
        }
        ("", "Secret") => vec![
            name,
            json!(s(o, "/type")),
            json!(o.get("data").and_then(Value::as_object).map_or(0, |m| m.len())),
            json!(age(o)),
        ],
        ("", "ServiceAccount") => vec![name, json!(arr(o, "/secrets").len()), json!(age(o))],
        ("", "Event") | ("events.k8s.io", "Event") => {
            let core = res.group.is_empty();
            let last = if core { s(o, "/lastTimestamp") } else { s(o, "/deprecatedLastTimestamp") };
            let last = if last.is_empty() { s(o, "/eventTime") } else { last };
            let last = if last.is_empty() { s(o, "/metadata/creationTimestamp") } else { last };
            let first = if core { s(o, "/firstTimestamp") } else { s(o, "/deprecatedFirstTimestamp") };
            let obj = if core { o.get("involvedObject") } else { o.get("regarding") };
            let obj_s = obj.map(|r| format!("{}/{}", s(r, "/kind").to_lowercase(), s(r, "/name"))).unwrap_or_default();
            let msg = if core { s(o, "/message") } else { s(o, "/note") };
            let source = if core { s(o, "/source/component") } else { s(o, "/reportingController") };
            let count = if core { n(o, "/count") } else { n(o, "/deprecatedCount") };
            vec![
                json!(if last.is_empty() { "<unknown>".into() } else { human_duration(age_seconds(last)) }),
                json!(s(o, "/type")),
                json!(s(o, "/reason")),
                json!(obj_s),
                json!(msg),
                json!(source),
                json!(if first.is_empty() { "<unknown>".into() } else { human_duration(age_seconds(first)) }),
                json!(count.max(1).to_string()),
                name,
            ]
        }
        ("", "PersistentVolumeClaim") => {
            let modes = arr(o, "/spec/accessModes")
                .iter()
                .filter_map(|m| m.as_str())
                .map(short_mode)
                .collect::<Vec<_>>()
                .join(",");
            vec![
                name,
                json!(s(o, "/status/phase")),
                json!(s(o, "/spec/volumeName")),
                json!(s(o, "/status/capacity/storage")),
                json!(modes),
                json!(none_if_empty(s(o, "/spec/storageClassName").into())),
                json!(age(o)),
                json!(s(o, "/spec/volumeMode")),
            ]
        }
        ("", "PersistentVolume") => {
            let modes = arr(o, "/spec/accessModes")
                .iter()
                .filter_map(|m| m.as_str())
                .map(short_mode)
                .collect::<Vec<_>>()
                .join(",");
            let claim = o
                .pointer("/spec/claimRef")
                .map(|c| format!("{}/{}", s(c, "/namespace"), s(c, "/name")))
                .unwrap_or_default();
            vec![
                name,
                json!(s(o, "/spec/capacity/storage")),
                json!(modes),
                json!(s(o, "/spec/persistentVolumeReclaimPolicy")),
                json!(s(o, "/status/phase")),
                json!(claim),
                json!(s(o, "/spec/storageClassName")),
                json!(s(o, "/status/reason")),
                json!(age(o)),
                json!(s(o, "/spec/volumeMode")),
            ]
        }
        ("apps", "Deployment") => {
            let (c, i) = containers_images(o.pointer("/spec/template/spec"));
            vec![
                name,
                json!(format!("{}/{}", n(o, "/status/readyReplicas"), n(o, "/spec/replicas"))),
                json!(n(o, "/status/updatedReplicas")),
                json!(n(o, "/status/availableReplicas")),
                json!(age(o)),
                json!(c),
                json!(i),
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "ReplicaSet") => {
            let (c, i) = containers_images(o.pointer("/spec/template/spec"));
            vec![
                name,
                json!(n(o, "/spec/replicas")),
                json!(n(o, "/status/replicas")),
                json!(n(o, "/status/readyReplicas")),
                json!(age(o)),
                json!(c),
                json!(i),
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "StatefulSet") => {
            let (c, i) = containers_images(o.pointer("/spec/template/spec"));
            vec![
                name,
                json!(format!("{}/{}", n(o, "/status/readyReplicas"), n(o, "/spec/replicas"))),
                json!(age(o)),
                json!(c),
                json!(i),
            ]
        }
        ("apps", "DaemonSet") => {
            let (c, i) = containers_images(o.pointer("/spec/template/spec"));
            let ns = o
                .pointer("/spec/template/spec/nodeSelector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                json!(n(o, "/status/desiredNumberScheduled")),
                json!(n(o, "/status/currentNumberScheduled")),
                json!(n(o, "/status/numberReady")),
                json!(n(o, "/status/updatedNumberScheduled")),
                json!(n(o, "/status/numberAvailable")),
                json!(none_if_empty(ns)),
                json!(age(o)),
                json!(c),
                json!(i),
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "ControllerRevision") => {
            let owner = arr(o, "/metadata/ownerReferences")
                .into_iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                .map(|r| {
                    format!(
                        "{}.{}/{}",
                        s(r, "/kind").to_lowercase(),
                        s(r, "/apiVersion").split('/').next().unwrap_or_default(),
                        s(r, "/name")
                    )
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name, json!(owner), json!(n(o, "/revision")), json!(age(o))]
        }
        ("batch", "Job") => {
            let (c, i) = containers_images(o.pointer("/spec/template/spec"));
            let conds = arr(o, "/status/conditions");
            let has = |t: &str| conds.iter().any(|c| s(c, "/type") == t && s(c, "/status") == "True");
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if has("FailureTarget") {
                "FailureTarget"
            } else if o.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
                "Suspended"
            } else {
                "Running"
            };
            let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(c) => format!("{}/{c}", n(o, "/status/succeeded")),
                None => format!("{}/1 of {}", n(o, "/status/succeeded"), n(o, "/spec/parallelism")),
            };
            let start = s(o, "/status/startTime");
            let done = s(o, "/status/completionTime");
            let duration = if start.is_empty() {
                String::new()
            } else if done.is_empty() {
                human_duration(age_seconds(start))
            } else {
                human_duration(age_seconds(start) - age_seconds(done))
            };
            vec![
                name,
                json!(status),
                json!(completions),
                json!(duration),
                json!(age(o)),
                json!(c),
                json!(i),
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("batch", "CronJob") => {
            let last = s(o, "/status/lastScheduleTime");
            vec![
                name,
                json!(s(o, "/spec/schedule")),
                json!(none_if_empty(s(o, "/spec/timeZone").into())),
                json!(o.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false)),
                json!(arr(o, "/status/active").len()),
                json!(if last.is_empty() { "<none>".into() } else { human_duration(age_seconds(last)) }),
                json!(age(o)),
            ]
        }
        ("coordination.k8s.io", "Lease") => vec![name, json!(s(o, "/spec/holderIdentity")), json!(age(o))],
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports = arr(o, "/ports").iter().map(|p| n(p, "/port").to_string()).collect::<Vec<_>>().join(",");
            let eps: Vec<String> = arr(o, "/endpoints")
                .iter()
                .flat_map(|e| arr(e, "/addresses"))
                .filter_map(|a| a.as_str().map(String::from))
                .collect();
            let shown = if eps.len() > 3 {
                format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
            } else {
                eps.join(",")
            };
            vec![
                name,
                json!(s(o, "/addressType")),
                json!(if ports.is_empty() { "<unset>".into() } else { ports }),
                json!(if shown.is_empty() { "<unset>".into() } else { shown }),
                json!(age(o)),
            ]
        }
        ("policy", "PodDisruptionBudget") => {
            let iv = |p: &str| {
                o.pointer(p)
                    .map(|v| v.as_str().map(String::from).unwrap_or_else(|| v.to_string()))
                    .unwrap_or_else(|| "N/A".into())
            };
            vec![
                name,
                json!(iv("/spec/minAvailable")),
                json!(iv("/spec/maxUnavailable")),
                json!(n(o, "/status/disruptionsAllowed")),
                json!(age(o)),
            ]
        }
        ("storage.k8s.io", "StorageClass") => {
            let default = vkube_core::meta::labels(o);
            let _ = default;
            let is_default =
                o.pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class").and_then(Value::as_str)
                    == Some("true");
            let nm = if is_default {
                format!("{} (default)", vkube_core::meta::name(o))
            } else {
                vkube_core::meta::name(o).to_string()
            };
            vec![
                json!(nm),
                json!(s(o, "/provisioner")),
                json!(if s(o, "/reclaimPolicy").is_empty() { "Delete" } else { s(o, "/reclaimPolicy") }),
                json!(if s(o, "/volumeBindingMode").is_empty() { "Immediate" } else { s(o, "/volumeBindingMode") }),
                json!(o.get("allowVolumeExpansion").and_then(Value::as_bool).unwrap_or(false).to_string()),
                json!(age(o)),
            ]
        }
        ("scheduling.k8s.io", "PriorityClass") => vec![
            name,
            json!(n(o, "/value")),
            json!(o.get("globalDefault").and_then(Value::as_bool).unwrap_or(false)),
            json!(age(o)),
            json!(if s(o, "/preemptionPolicy").is_empty() {
                "PreemptLowerPriority"
            } else {
                s(o, "/preemptionPolicy")
            }),
        ],
        ("networking.k8s.io", "Ingress") => {
            let hosts: Vec<&str> =
                arr(o, "/spec/rules").iter().map(|r| s(r, "/host")).filter(|h| !h.is_empty()).collect();
            let addr: Vec<&str> = arr(o, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| if s(i, "/ip").is_empty() { s(i, "/hostname") } else { s(i, "/ip") })
                .collect();
            let ports = if arr(o, "/spec/tls").is_empty() { "80" } else { "80, 443" };
            vec![
                name,
                json!(none_if_empty(s(o, "/spec/ingressClassName").into())),
                json!(if hosts.is_empty() { "*".into() } else { hosts.join(",") }),
                json!(addr.join(",")),
                json!(ports),
                json!(age(o)),
            ]
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            vec![name, json!(selector_string(o.pointer("/spec/podSelector"))), json!(age(o))]
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            let subj = |kind: &str| {
                arr(o, "/subjects")
                    .iter()
                    .filter(|x| s(x, "/kind") == kind)
                    .map(|x| {
                        if kind == "ServiceAccount" {
                            format!("{}/{}", s(x, "/namespace"), s(x, "/name"))
                        } else {
                            s(x, "/name").to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name,
                json!(format!("{}/{}", s(o, "/roleRef/kind"), s(o, "/roleRef/name"))),
                json!(age(o)),
                json!(subj("User")),
                json!(subj("Group")),
                json!(subj("ServiceAccount")),
            ]
        }
        ("rbac.authorization.k8s.io", _) | ("apiextensions.k8s.io", _) => {
            vec![name, json!(s(o, "/metadata/creationTimestamp"))]
        }
        _ => vec![name, json!(age(o))],
    }
}

fn short_mode(m: &str) -> &str {
    match m {
        "ReadWriteOnce" => "RWO",
        "ReadOnlyMany" => "ROX",
        "ReadWriteMany" => "RWX",
        "ReadWriteOncePod" => "RWOP",
        other => other,
    }
}

/// The column definitions of a resource's Table (including CRD printer columns).
pub fn column_definitions(res: &Resource) -> Vec<Value> {
    let mut defs: Vec<Value> = columns(res)
        .into_iter()
        .map(|(name, ty, priority)| {
            let format = if name == "Name" { "name" } else { "" };
            json!({"name": name, "type": ty, "format": format, "description": name, "priority": priority})
        })
        .collect();
    if !res.printer_columns.is_empty() {
        defs.truncate(1);
        for c in &res.printer_columns {
            defs.push(json!({"name": c["name"], "type": c.get("type").cloned().unwrap_or(json!("string")), "format": c.get("format").cloned().unwrap_or(json!("")), "description": c.get("description").cloned().unwrap_or(json!("")), "priority": c.get("priority").cloned().unwrap_or(json!(0))}));
        }
        defs.push(json!({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0}));
    }
    defs
}

/// One Table row.
pub fn row(res: &Resource, obj: &Value, include: &str) -> Value {
    let mut cells = cells(res, obj);
    if !res.printer_columns.is_empty() {
        cells.truncate(1);
        for c in &res.printer_columns {
            let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or_default();
            let ptr = path.trim_start_matches('.').replace('.', "/");
            let v = obj.pointer(&format!("/{ptr}")).cloned().unwrap_or(Value::Null);
            cells.push(if c["type"] == "date" {
                json!(v.as_str().map(|t| human_duration(age_seconds(t))).unwrap_or_default())
            } else {
                v
            });
        }
        cells.push(json!(age(obj)));
    }
    let mut r = json!({"cells": cells});
    match include {
        "None" => {}
        "Object" => r["object"] = obj.clone(),
        _ => r["object"] = partial_metadata(obj),
    }
    r
}

/// PartialObjectMetadata of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or_default()})
}

fn respond(body: Vec<u8>, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn list_metadata(page: &ListPage) -> Value {
    let mut md = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        md["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        md["remainingItemCount"] = json!(r);
    }
    md
}

/// Encode a list page in the negotiated form.
pub fn list_response(res: &Resource, page: ListPage, output: Output, q: &HashMap<String, String>) -> Response<Body> {
    match output {
        Output::Json if res.conversion.is_none() => {
            let head = json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": list_metadata(&page)});
            let mut out = serde_json::to_vec(&head).unwrap_or_default();
            out.pop();
            out.extend_from_slice(b",\"items\":[");
            for (i, kv) in page.items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&splice_resource_version(&kv.value, kv.mod_revision));
            }
            out.extend_from_slice(b"]}");
            respond(out, "application/json")
        }
        Output::Metadata if res.conversion.is_none() => {
            let items: Vec<Value> = page
                .items
                .iter()
                .filter_map(|kv| Registry::decode_metadata(kv).ok())
                .map(|o| partial_metadata(&o))
                .collect();
            let body = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_metadata(&page), "items": items});
            respond(serde_json::to_vec(&body).unwrap_or_default(), "application/json")
        }
        _ => {
            let items: Vec<Value> = page.items.iter().filter_map(|kv| Registry::decode_as(res, kv).ok()).collect();
            let body = match output {
                Output::Table => {
                    let include = q.get("includeObject").map(String::as_str).unwrap_or("Metadata");
                    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_metadata(&page), "columnDefinitions": column_definitions(res), "rows": items.iter().map(|o| row(res, o, include)).collect::<Vec<_>>()})
                }
                Output::Metadata => {
                    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_metadata(&page), "items": items.iter().map(partial_metadata).collect::<Vec<_>>()})
                }
                _ => {
                    json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": list_metadata(&page), "items": items})
                }
            };
            if output == Output::Yaml {
                respond(serde_saphyr::to_string(&body).unwrap_or_default().into_bytes(), "application/yaml")
            } else {
                respond(serde_json::to_vec(&body).unwrap_or_default(), "application/json")
            }
        }
    }
}

/// Encode one object in the negotiated form.
pub fn object_response(res: &Resource, obj: Value, output: Output, q: &HashMap<String, String>) -> Response<Body> {
    match output {
        Output::Json => respond(serde_json::to_vec(&obj).unwrap_or_default(), "application/json"),
        Output::Yaml => respond(serde_saphyr::to_string(&obj).unwrap_or_default().into_bytes(), "application/yaml"),
        Output::Metadata => {
            respond(serde_json::to_vec(&partial_metadata(&obj)).unwrap_or_default(), "application/json")
        }
        Output::Table => {
            let include = q.get("includeObject").map(String::as_str).unwrap_or("Metadata");
            let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or_default();
            let t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv}, "columnDefinitions": column_definitions(res), "rows": [row(res, &obj, include)]});
            respond(serde_json::to_vec(&t).unwrap_or_default(), "application/json")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_status_like_kubectl() {
        let p = json!({"status": {"phase": "Pending", "containerStatuses": [{"ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
        assert_eq!(pod_status(&p), "ContainerCreating");
        let p = json!({"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z"}, "status": {"phase": "Running"}});
        assert_eq!(pod_status(&p), "Terminating");
        let p = json!({"status": {"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}});
        assert_eq!(pod_status(&p), "Completed");
    }

    #[test]
    fn node_status_shows_cordon() {
        let n =
            json!({"spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(node_status(&n), "Ready,SchedulingDisabled");
        assert_eq!(
            node_roles(&json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}})),
            "control-plane"
        );
    }
}
