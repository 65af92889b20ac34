//! Helpers shared by the controllers (and the scheduler and syncer): owner references,
//! template hashes, selectors as query strings, events (kube-runtime's recorder), and
//! the reconcile error type. Pod state is [`vkube_core::pod`].

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::Value;

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

/// A label selector as a query string (`a=b,c in (d)`), through kube-core's `Selector`
/// (an unknown operator is an error, not a selector that matches something else).
/// None selects everything.
///
/// # Errors
/// A selector kube-core cannot express.
pub fn label_selector(sel: Option<&LabelSelector>) -> Result<String, Error> {
    match sel {
        None => Ok(String::new()),
        Some(sel) => kube::core::Selector::try_from(sel.clone())
            .map(|s| s.to_string())
            .map_err(|e| Error::Other(format!("label selector: {e}"))),
    }
}

pub use vkube_core::pod::{is_active, is_ready, is_terminal, phase};

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

/// kube-runtime's event recorder for `component` (repeated events fold into a series).
pub fn recorder(client: &kube::Client, component: &str) -> Recorder {
    Recorder::new(client.clone(), Reporter { controller: component.into(), instance: None })
}

/// Record an event about `regarding`: `Warning` when `warning`, else `Normal`. A failure
/// is logged; an event is never worth failing a reconcile for.
pub async fn record(
    recorder: &Recorder,
    regarding: &ObjectReference,
    warning: bool,
    reason: &str,
    action: &str,
    note: impl Into<String>,
) {
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(note.into()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, regarding).await {
        tracing::warn!("recording event {reason} about {:?}/{:?}: {e}", regarding.namespace, regarding.name);
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

/// A client from a kubeconfig's text (the identities the components act as).
///
/// # Errors
/// A kubeconfig that does not parse or names no usable cluster.
pub async fn client_from_kubeconfig(text: &str) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::from_yaml(text)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

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
