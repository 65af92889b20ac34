//! Helpers shared by the controllers: owner references, pod state, template hashes,
//! selectors as query strings, events.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

/// The error type of reconcilers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// An object could not be (de)serialized.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Something else.
    #[error("{0}")]
    Other(String),
}

/// A controller reference to `owner`.
pub fn controller_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `meta` names `uid` as its controller.
pub fn controlled_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, uid: &str) -> bool {
    meta.owner_references.as_ref().is_some_and(|refs| refs.iter().any(|r| r.controller == Some(true) && r.uid == uid))
}

/// A label selector as a query string (`a=b,c in (d)`).
pub fn selector_string(sel: Option<&LabelSelector>) -> String {
    let Some(sel) = sel else { return String::new() };
    let mut parts: Vec<String> = sel.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// Pod phase.
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

/// Whether a pod has finished.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether a pod counts as active for a controller (not finished, not deleting).
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// Whether a pod is Ready.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// FNV-1a of a JSON value, rendered with Kubernetes' safe alphabet (no vowels).
pub fn template_hash(v: &Value) -> String {
    let text = v.to_string();
    let mut h: u32 = 0x811c9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x01000193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = u64::from(h);
    let mut out = String::new();
    while n > 0 || out.is_empty() {
        out.push(ALPHABET[(n % ALPHABET.len() as u64) as usize] as char);
        n /= ALPHABET.len() as u64;
    }
    out
}

/// An int-or-percent value resolved against `total` (percentages rounded up or down).
pub fn int_or_percent(v: Option<&Value>, total: i32, round_up: bool, default: i32) -> i32 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(default as i64) as i32,
        Some(Value::String(s)) if s.ends_with('%') => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let x = f64::from(total) * pct / 100.0;
            if round_up { x.ceil() as i32 } else { x.floor() as i32 }
        }
        Some(Value::String(s)) => s.parse().unwrap_or(default),
        _ => default,
    }
}

/// Record a core/v1 event about an object.
pub async fn event(client: &kube::Client, component: &str, regarding: &Value, ty: &str, reason: &str, message: &str) {
    let ns = regarding.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_string();
    let name = regarding.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let now = vkube_core::meta::now_rfc3339();
    let ev = json!({
        "metadata": {"generateName": format!("{name}."), "namespace": ns},
        "involvedObject": {
            "apiVersion": regarding.get("apiVersion"), "kind": regarding.get("kind"), "name": name, "namespace": ns,
            "uid": regarding.pointer("/metadata/uid"), "resourceVersion": regarding.pointer("/metadata/resourceVersion"),
        },
        "reason": reason, "message": message, "type": ty,
        "source": {"component": component}, "reportingComponent": component, "reportingInstance": component,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    if let Ok(e) = serde_json::from_value(ev) {
        let _ = events.create(&PostParams::default(), &e).await;
    }
}

/// The controller settings every workload controller uses: triggers that arrive within
/// a short window are folded into one reconcile, so a burst of pod events (a rollout of
/// a thousand pods) costs a few lists, not one per event.
pub fn controller_config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default()
        .debounce(std::time::Duration::from_millis(100))
        .concurrency(RECONCILE_CONCURRENCY)
}

/// How many objects one controller reconciles at once. Unbounded, a burst of 1,000
/// changes would open as many client connections (kube-rs speaks HTTP/1.1), each with
/// its TLS state and buffers on both ends.
pub const RECONCILE_CONCURRENCY: u16 = 32;

/// How many writes one reconcile has in flight at once (creating or deleting many pods).
pub const WRITE_CONCURRENCY: usize = 32;

/// Field manager used by every controller write.
pub fn pp(manager: &str) -> kube::api::PatchParams {
    kube::api::PatchParams { field_manager: Some(manager.into()), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_percent_rounds_like_kubernetes() {
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, true, 0), 1);
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, false, 0), 0);
        assert_eq!(int_or_percent(Some(&json!(2)), 3, false, 0), 2);
        assert_eq!(int_or_percent(None, 3, false, 1), 1);
    }

    #[test]
    fn hashes_are_stable_and_safe() {
        let a = template_hash(&json!({"a": 1}));
        assert_eq!(a, template_hash(&json!({"a": 1})));
        assert_ne!(a, template_hash(&json!({"a": 2})));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}
