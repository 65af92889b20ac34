//! ResourceQuota accounting, shared by the quota controller (which writes
//! `status.used`) and quota admission (which refuses what would exceed `spec.hard`):
//! what one object uses of each quota resource name, kube-apiserver's evaluators in
//! short — object counts (`pods`, `services`, `count/deployments.apps`, …), pod compute
//! (`requests.cpu`, `limits.memory`, extended resources), service ports and PVC storage,
//! and the pod scopes (`BestEffort`, `NotBestEffort`, `Terminating`, `NotTerminating`).

use crate::quantity::parse_milli;
use serde_json::Value;
use std::collections::BTreeMap;

/// Usage in thousandths of a unit, by quota resource name.
pub type Usage = BTreeMap<String, i128>;

/// The legacy names counting a core kind (`pods` counts pods, like `count/pods`).
fn legacy_count(plural: &str) -> Option<&'static str> {
    Some(match plural {
        "pods" => "pods",
        "services" => "services",
        "configmaps" => "configmaps",
        "secrets" => "secrets",
        "replicationcontrollers" => "replicationcontrollers",
        "resourcequotas" => "resourcequotas",
        "persistentvolumeclaims" => "persistentvolumeclaims",
        _ => return None,
    })
}

/// The `count/` name of a resource: `count/pods`, `count/deployments.apps`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() { format!("count/{plural}") } else { format!("count/{plural}.{group}") }
}

/// Whether a pod no longer counts: finished, as kube's evaluator has it.
pub fn pod_is_terminal(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

fn pod_is_best_effort(pod: &Value) -> bool {
    let all = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array).cloned().unwrap_or_default())
        .collect::<Vec<_>>();
    all.iter().all(|c| {
        let empty =
            |k: &str| c.pointer(&format!("/resources/{k}")).and_then(Value::as_object).is_none_or(|m| m.is_empty());
        empty("requests") && empty("limits")
    })
}

fn pod_is_terminating(pod: &Value) -> bool {
    pod.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_i64).is_some_and(|d| d >= 0)
}

/// Whether a pod falls in every one of a quota's scopes (an unknown scope matches
/// nothing, as a quota the API would not have admitted).
pub fn pod_matches_scopes(pod: &Value, scopes: &[String]) -> bool {
    scopes.iter().all(|s| match s.as_str() {
        "BestEffort" => pod_is_best_effort(pod),
        "NotBestEffort" => !pod_is_best_effort(pod),
        "Terminating" => pod_is_terminating(pod),
        "NotTerminating" => !pod_is_terminating(pod),
        _ => false,
    })
}

/// A quota's scopes: `spec.scopes` and the `Exists` terms of `spec.scopeSelector`.
pub fn scopes_of(quota: &Value) -> Vec<String> {
    let mut scopes: Vec<String> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    for e in quota.pointer("/spec/scopeSelector/matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        if let Some(s) = e.get("scopeName").and_then(Value::as_str) {
            scopes.push(s.to_string());
        }
    }
    scopes
}

fn add(u: &mut Usage, name: &str, v: i128) {
    *u.entry(name.to_string()).or_default() += v;
}

/// Pod compute: the larger of the app containers' sum and any one init container, per
/// resource, for requests and limits.
fn pod_compute(pod: &Value, u: &mut Usage) {
    for kind in ["requests", "limits"] {
        let mut sum: BTreeMap<String, i128> = BTreeMap::new();
        for c in pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
            for (r, q) in c.pointer(&format!("/resources/{kind}")).and_then(Value::as_object).into_iter().flatten() {
                *sum.entry(r.clone()).or_default() += q.as_str().and_then(parse_milli).unwrap_or(0);
            }
        }
        for c in pod.pointer("/spec/initContainers").and_then(Value::as_array).into_iter().flatten() {
            for (r, q) in c.pointer(&format!("/resources/{kind}")).and_then(Value::as_object).into_iter().flatten() {
                let v = q.as_str().and_then(parse_milli).unwrap_or(0);
                let e = sum.entry(r.clone()).or_default();
                *e = (*e).max(v);
            }
        }
        for (r, v) in sum {
            add(u, &format!("{kind}.{r}"), v);
            // The bare names (cpu, memory, ephemeral-storage) are requests.
            if kind == "requests" && matches!(r.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                add(u, &r, v);
            }
        }
    }
}

/// What one object of `group`/`plural` uses, for a quota with `scopes`.
pub fn usage(group: &str, plural: &str, obj: &Value, scopes: &[String]) -> Usage {
    let mut u = Usage::new();
    let is_pod = group.is_empty() && plural == "pods";
    // A scoped quota counts only the pods in its scopes.
    let in_scope = scopes.is_empty() || (is_pod && pod_matches_scopes(obj, scopes));
    if !in_scope {
        return u;
    }
    if is_pod && pod_is_terminal(obj) {
        return u;
    }
    add(&mut u, &count_name(group, plural), 1000);
    if group.is_empty()
        && let Some(n) = legacy_count(plural)
    {
        add(&mut u, n, 1000);
    }
    if is_pod {
        pod_compute(obj, &mut u);
    }
    if group.is_empty() && plural == "services" {
        let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
        let ports = obj.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len) as i128;
        if ty == "LoadBalancer" {
            add(&mut u, "services.loadbalancers", 1000);
        }
        if ty == "NodePort"
            || (ty == "LoadBalancer" && obj.pointer("/spec/allocateLoadBalancerNodePorts") != Some(&Value::Bool(false)))
        {
            add(&mut u, "services.nodeports", ports * 1000);
        }
    }
    if group.is_empty() && plural == "persistentvolumeclaims" {
        let storage =
            obj.pointer("/spec/resources/requests/storage").and_then(Value::as_str).and_then(parse_milli).unwrap_or(0);
        add(&mut u, "requests.storage", storage);
        if let Some(class) = obj.pointer("/spec/storageClassName").and_then(Value::as_str) {
            add(&mut u, &format!("{class}.storageclass.storage.k8s.io/requests.storage"), storage);
            add(&mut u, &format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"), 1000);
        }
    }
    u
}

/// Whether a quota resource name is one objects of `group`/`plural` can use.
pub fn tracks(name: &str, group: &str, plural: &str) -> bool {
    if name == count_name(group, plural) {
        return true;
    }
    if !group.is_empty() {
        return false;
    }
    match plural {
        "pods" => {
            name == "pods"
                || name.starts_with("requests.")
                || name.starts_with("limits.")
                || matches!(name, "cpu" | "memory" | "ephemeral-storage")
        }
        "services" => matches!(name, "services" | "services.loadbalancers" | "services.nodeports"),
        "persistentvolumeclaims" => {
            name == "persistentvolumeclaims"
                || name == "requests.storage"
                || name.contains(".storageclass.storage.k8s.io/")
        }
        other => legacy_count(other) == Some(name),
    }
}

/// A milli-value as a quantity string (`500m`, `2`).
pub fn format_milli(v: i128) -> String {
    if v % 1000 == 0 { (v / 1000).to_string() } else { format!("{v}m") }
}

/// A resource list (`spec.hard`, `status.used`) as usage; malformed quantities skipped.
pub fn usage_of(list: Option<&Value>) -> Usage {
    list.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str().and_then(parse_milli)?)))
        .collect()
}

/// The quota resource names a `spec.hard` gives, with their limits.
pub fn hard_of(quota: &Value) -> Usage {
    usage_of(quota.pointer("/spec/hard"))
}

/// What a quota's `status.used` says is used.
pub fn used_of(quota: &Value) -> Usage {
    usage_of(quota.pointer("/status/used"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_uses_its_count_and_compute_and_scopes_filter_it() {
        let pod = json!({"spec": {"containers": [
            {"resources": {"requests": {"cpu": "500m", "memory": "252Mi", "example.com/dongle": "2"}, "limits": {"example.com/dongle": "2"}}},
            {"resources": {"requests": {"cpu": "250m"}}},
        ]}});
        let u = usage("", "pods", &pod, &[]);
        assert_eq!(u["pods"], 1000);
        assert_eq!(u["count/pods"], 1000);
        assert_eq!(u["requests.cpu"], 750);
        assert_eq!(u["cpu"], 750);
        assert_eq!(u["memory"], 252 * 1024 * 1024 * 1000);
        assert_eq!(u["requests.example.com/dongle"], 2000);
        assert!(usage("", "pods", &pod, &["BestEffort".into()]).is_empty());
        assert_eq!(usage("", "pods", &pod, &["NotBestEffort".into()])["pods"], 1000);
        let done = json!({"spec": {"containers": [{}]}, "status": {"phase": "Succeeded"}});
        assert!(usage("", "pods", &done, &[]).is_empty());
    }

    #[test]
    fn services_count_node_ports_and_load_balancers() {
        let np = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        let lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        assert_eq!(usage("", "services", &np, &[])["services.nodeports"], 1000);
        let u = usage("", "services", &lb, &[]);
        assert_eq!((u["services"], u["services.loadbalancers"], u["services.nodeports"]), (1000, 1000, 1000));
        assert!(tracks("count/replicasets.apps", "apps", "replicasets"));
        assert!(!tracks("pods", "apps", "replicasets"));
        assert_eq!(format_milli(1500), "1500m");
        assert_eq!(format_milli(2000), "2");
    }
}
