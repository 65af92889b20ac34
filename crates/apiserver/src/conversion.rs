//! Resources served in one form and stored in another. `events.k8s.io/v1` Events are
//! stored as core/v1 Events (as in kube-apiserver), so an event recorded through either
//! API is seen through both — `kubectl describe` reads core/v1, kube-rs's recorder
//! writes events.k8s.io/v1. `autoscaling/v1` HorizontalPodAutoscalers are stored as
//! `autoscaling/v2` ones (their CPU target as a Resource metric).

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

fn hpa_v1_to_v2(obj: Value) -> Value {
    let Value::Object(mut v1) = obj else { return obj };
    let mut spec = v1.remove("spec").unwrap_or_else(|| json!({}));
    let cpu = spec.as_object_mut().and_then(|s| s.remove("targetCPUUtilizationPercentage")).unwrap_or(json!(80));
    spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}]);
    let mut out = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "spec": spec});
    if let Some(md) = v1.remove("metadata") {
        out["metadata"] = md;
    }
    if let Some(Value::Object(mut status)) = v1.remove("status") {
        if let Some(pct) = status.remove("currentCPUUtilizationPercentage") {
            status.insert(
                "currentMetrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": pct}}}]),
            );
        }
        out["status"] = Value::Object(status);
    }
    out
}

fn hpa_v2_to_v1(obj: Value) -> Value {
    let Value::Object(mut v2) = obj else { return obj };
    let mut out = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler"});
    if let Some(md) = v2.remove("metadata") {
        out["metadata"] = md;
    }
    let spec = v2.remove("spec").unwrap_or_else(|| json!({}));
    let cpu_target = spec["metrics"].as_array().into_iter().flatten().find_map(|m| {
        (m.pointer("/resource/name") == Some(&json!("cpu")))
            .then(|| m.pointer("/resource/target/averageUtilization").cloned())?
    });
    let mut v1_spec = json!({"scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": spec["maxReplicas"]});
    if let Some(min) = spec.get("minReplicas") {
        v1_spec["minReplicas"] = min.clone();
    }
    if let Some(t) = cpu_target {
        v1_spec["targetCPUUtilizationPercentage"] = t;
    }
    out["spec"] = v1_spec;
    if let Some(status) = v2.remove("status") {
        let mut v1_status = json!({
            "currentReplicas": status.get("currentReplicas").cloned().unwrap_or(json!(0)),
            "desiredReplicas": status.get("desiredReplicas").cloned().unwrap_or(json!(0)),
        });
        for k in ["observedGeneration", "lastScaleTime"] {
            if let Some(v) = status.get(k) {
                v1_status[k] = v.clone();
            }
        }
        let current = status["currentMetrics"].as_array().into_iter().flatten().find_map(|m| {
            (m.pointer("/resource/name") == Some(&json!("cpu")))
                .then(|| m.pointer("/resource/current/averageUtilization").cloned())?
        });
        if let Some(pct) = current {
            v1_status["currentCPUUtilizationPercentage"] = pct;
        }
        out["status"] = v1_status;
    }
    out
}

/// The conversion of autoscaling/v1 HorizontalPodAutoscalers (stored as autoscaling/v2).
pub const HPA_V1: Conversion = Conversion { to_storage: hpa_v1_to_v2, from_storage: hpa_v2_to_v1 };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoscalers_round_trip_through_v2() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 50}});
        let v2 = (HPA_V1.to_storage)(v1.clone());
        assert_eq!(v2.pointer("/spec/metrics/0/resource/target/averageUtilization"), Some(&json!(50)));
        assert_eq!((HPA_V1.from_storage)(v2)["spec"], v1["spec"]);
    }

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
