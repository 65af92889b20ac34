//! HorizontalPodAutoscalers (autoscaling/v2): kube-apiserver's defaults (one replica at
//! least, CPU at 80% when no metric is named), its validation, an empty status on
//! create, and kubectl's columns (`cpu: 200%/50%`). The HPA controller acts on them.

use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus, MetricSpec, MetricTarget, ResourceMetricSource,
};
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The HorizontalPodAutoscaler kind.
pub struct HorizontalPodAutoscalerKind;

/// A metric's target and current value as kubectl prints them (`200%/50%`).
fn target_cell(spec: &MetricSpec, current: Option<&Value>) -> String {
    let (name, target) = match (&spec.resource, &spec.container_resource, &spec.pods, &spec.external, &spec.object) {
        (Some(r), ..) => (r.name.clone(), &r.target),
        (_, Some(c), ..) => (c.name.clone(), &c.target),
        (_, _, Some(p), ..) => (p.metric.name.clone(), &p.target),
        (_, _, _, Some(e), _) => (e.metric.name.clone(), &e.target),
        (_, _, _, _, Some(o)) => (o.metric.name.clone(), &o.target),
        _ => return "<unknown>".into(),
    };
    let (want, have) = match target.type_.as_str() {
        "Utilization" => (
            target.average_utilization.map(|u| format!("{u}%")).unwrap_or_default(),
            current
                .and_then(|c| c.pointer("/current/averageUtilization"))
                .and_then(Value::as_i64)
                .map(|u| format!("{u}%")),
        ),
        "AverageValue" => (
            target.average_value.as_ref().map(|q| q.0.clone()).unwrap_or_default(),
            current.and_then(|c| c.pointer("/current/averageValue")).and_then(Value::as_str).map(String::from),
        ),
        _ => (
            target.value.as_ref().map(|q| q.0.clone()).unwrap_or_default(),
            current.and_then(|c| c.pointer("/current/value")).and_then(Value::as_str).map(String::from),
        ),
    };
    format!("{name}: {}/{want}", have.unwrap_or_else(|| "<unknown>".into()))
}

/// What both versions require: a named target, and `1 <= minReplicas <= maxReplicas`.
fn target_and_range_causes(kind: &str, name: &str, min: Option<i32>, max: i32) -> Vec<Cause> {
    let mut causes = Vec::new();
    if kind.is_empty() {
        causes.push(Cause::required("spec.scaleTargetRef.kind"));
    }
    if name.is_empty() {
        causes.push(Cause::required("spec.scaleTargetRef.name"));
    }
    let min = min.unwrap_or(1);
    if min < 1 {
        causes.push(Cause::invalid_raw("spec.minReplicas", &min.to_string(), "must be greater than or equal to 1"));
    }
    if max < min {
        causes.push(Cause::invalid_raw(
            "spec.maxReplicas",
            &max.to_string(),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    causes
}

impl Kind for HorizontalPodAutoscalerKind {
    type Object = HorizontalPodAutoscaler;
    const SHORT_NAMES: &'static [&'static str] = &["hpa"];
    const IN_ALL: bool = true;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Reference", "string"),
        col("Targets", "string"),
        col("MinPods", "string"),
        col("MaxPods", "integer"),
        col("Replicas", "integer"),
        col("Age", "string"),
    ];

    fn prepare_for_create(hpa: &mut HorizontalPodAutoscaler) {
        hpa.status = Some(HorizontalPodAutoscalerStatus::default());
    }

    fn default(hpa: &mut HorizontalPodAutoscaler) {
        let spec = &mut hpa.spec;
        spec.min_replicas.get_or_insert(1);
        if spec.metrics.as_ref().is_none_or(Vec::is_empty) {
            spec.metrics = Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(80),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]);
        }
    }

    fn validate(hpa: &HorizontalPodAutoscaler) -> Vec<Cause> {
        let spec = &hpa.spec;
        let mut causes = target_and_range_causes(
            &spec.scale_target_ref.kind,
            &spec.scale_target_ref.name,
            spec.min_replicas,
            spec.max_replicas,
        );
        for (i, m) in spec.metrics.iter().flatten().enumerate() {
            if let Some(r) = &m.resource
                && r.target.type_ == "Utilization"
                && r.target.average_utilization.is_some_and(|u| u < 1)
            {
                causes.push(Cause::invalid_raw(
                    format!("spec.metrics[{i}].resource.target.averageUtilization"),
                    &r.target.average_utilization.unwrap_or(0).to_string(),
                    "must be greater than 0",
                ));
            }
        }
        causes
    }

    fn cells(hpa: &HorizontalPodAutoscaler) -> Vec<Value> {
        let spec = hpa.spec.clone();
        let status = hpa.status.clone().unwrap_or_default();
        let current: Vec<Value> =
            status.current_metrics.iter().flatten().filter_map(|m| serde_json::to_value(m).ok()).collect();
        let targets: Vec<String> = spec
            .metrics
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, m)| {
                let key = m.resource.as_ref().map(|r| r.name.clone());
                let found =
                    current.iter().find(|c| c.pointer("/resource/name").and_then(Value::as_str) == key.as_deref());
                let inner = found.or(current.get(i)).and_then(|c| {
                    ["resource", "containerResource", "pods", "object", "external"].iter().find_map(|k| c.get(*k))
                });
                target_cell(m, inner)
            })
            .collect();
        vec![
            json!(name_of(&hpa.metadata)),
            json!(format!("{}/{}", spec.scale_target_ref.kind, spec.scale_target_ref.name)),
            json!(if targets.is_empty() { "<none>".to_string() } else { targets.join(", ") }),
            json!(spec.min_replicas.unwrap_or(1).to_string()),
            json!(spec.max_replicas),
            json!(status.current_replicas.unwrap_or(0)),
            json!(age_of(&hpa.metadata)),
        ]
    }
}

/// The autoscaling/v1 form, stored as autoscaling/v2 ([`crate::conversion::HPA_V1`]):
/// what `kubectl autoscale` writes.
pub struct HorizontalPodAutoscalerV1Kind;

impl Kind for HorizontalPodAutoscalerV1Kind {
    type Object = k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
    const SHORT_NAMES: &'static [&'static str] = &["hpa"];
    const IN_ALL: bool = true;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = HorizontalPodAutoscalerKind::COLUMNS;

    fn prepare_for_create(hpa: &mut Self::Object) {
        hpa.status = Some(Default::default());
    }

    fn default(hpa: &mut Self::Object) {
        hpa.spec.min_replicas.get_or_insert(1);
    }

    fn validate(hpa: &Self::Object) -> Vec<Cause> {
        let spec = &hpa.spec;
        target_and_range_causes(
            &spec.scale_target_ref.kind,
            &spec.scale_target_ref.name,
            spec.min_replicas,
            spec.max_replicas,
        )
    }

    fn cells(hpa: &Self::Object) -> Vec<Value> {
        let spec = hpa.spec.clone();
        let status = hpa.status.clone().unwrap_or_default();
        let current =
            status.current_cpu_utilization_percentage.map(|p| format!("{p}%")).unwrap_or_else(|| "<unknown>".into());
        let target = spec.target_cpu_utilization_percentage.unwrap_or(80);
        vec![
            json!(name_of(&hpa.metadata)),
            json!(format!("{}/{}", spec.scale_target_ref.kind, spec.scale_target_ref.name)),
            json!(format!("cpu: {current}/{target}%")),
            json!(spec.min_replicas.unwrap_or(1).to_string()),
            json!(spec.max_replicas),
            json!(status.current_replicas),
            json!(age_of(&hpa.metadata)),
        ]
    }
}
