//! Resources served in one form and stored in another. `events.k8s.io/v1` Events are
//! stored as core/v1 Events (as in kube-apiserver), so an event recorded through either
//! API is seen through both — `kubectl describe` reads core/v1, kube-rs's recorder
//! writes events.k8s.io/v1.

use serde_json::{Map, Value, json};

/// How a served form maps to the stored form.
#[derive(Clone, Copy)]
pub struct Conversion {
    /// Served form → stored form.
    pub to_storage: fn(Value) -> Value,
    /// Stored form → served form.
    pub from_storage: fn(Value) -> Value,
}

const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("related", "related"),
    ("message", "note"),
    ("reason", "reason"),
    ("type", "type"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("source", "deprecatedSource"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("action", "action"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
];

fn rename(obj: Value, api_version: &str, pairs: impl Iterator<Item = (&'static str, &'static str)>) -> Value {
    let Value::Object(mut src) = obj else { return obj };
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    if let Some(md) = src.remove("metadata") {
        out.insert("metadata".into(), md);
    }
    for (from, to) in pairs {
        if let Some(v) = src.remove(from) {
            out.insert(to.into(), v);
        }
    }
    Value::Object(out)
}

fn events_v1_to_core(obj: Value) -> Value {
    let mut core = rename(obj, "v1", EVENT_FIELDS.iter().map(|(c, e)| (*e, *c)));
    // Core events name their source; fill it from the reporting controller.
    if core.get("source").is_none()
        && let Some(rc) = core.get("reportingComponent").cloned()
    {
        core["source"] = json!({"component": rc});
    }
    core
}

fn core_to_events_v1(obj: Value) -> Value {
    rename(obj, "events.k8s.io/v1", EVENT_FIELDS.iter().copied())
}

/// The conversion of events.k8s.io/v1 Events.
pub const EVENTS_V1: Conversion = Conversion { to_storage: events_v1_to_core, from_storage: core_to_events_v1 };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "regarding": {"kind": "Pod", "name": "p"}, "note": "hi", "reason": "Started", "type": "Normal", "reportingController": "me", "eventTime": "2026-01-01T00:00:00.000000Z"});
        let core = (EVENTS_V1.to_storage)(e.clone());
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["source"]["component"], "me");
        let back = (EVENTS_V1.from_storage)(core);
        assert_eq!(back["regarding"], e["regarding"]);
        assert_eq!(back["note"], "hi");
        assert_eq!(back["apiVersion"], "events.k8s.io/v1");
    }
}
