//! HorizontalPodAutoscaler, as kube-controller-manager's: every 15 s, each HPA reads its
//! target's `/scale`, the target's pods and their usage from `metrics.k8s.io`, and sets
//! the replicas its metrics ask for — resource metrics (CPU, memory) as a utilization of
//! the pods' requests or as an average value, within a 10% tolerance; stabilized over
//! `behavior`'s windows (scale-down 300 s by default, scale-up none) and limited by its
//! policies (by default up by 4 pods or 100% per period, whichever is more; down by
//! 100%); clamped to `minReplicas`..`maxReplicas`. Status, conditions and events are the
//! ones `kubectl describe hpa` shows.
//!
//! # Caveats
//! Rate-limit policies count from the current replica count at each sync (one sync per
//! 15 s period), not from a history of scale events. Pods, object and external metrics
//! (custom.metrics.k8s.io, external.metrics.k8s.io) are not served, so such an HPA
//! reports `ScalingActive=False`.

use crate::runtime::RunLogged;
use crate::util::{Error, pp};
use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscaler};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch};
use kube::core::GroupVersionKind;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MANAGER: &str = "horizontal-pod-autoscaler";
/// How often each HPA is looked at (kube's `--horizontal-pod-autoscaler-sync-period`).
const SYNC_PERIOD: Duration = Duration::from_secs(15);
/// Ratios this close to 1 change nothing (kube's `--horizontal-pod-autoscaler-tolerance`).
const TOLERANCE: f64 = 0.1;

/// One pod of the target, for a resource metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Its usage (millicores, or bytes), if metrics have it.
    pub usage: Option<i128>,
    /// The sum of its containers' requests of the resource, if all have one.
    pub request: Option<i128>,
}

/// What a resource metric asks for: (replicas, utilization % if by utilization, the
/// average usage).
///
/// # Errors
/// kube's reasons: no metrics, or a pod without a request (for a utilization target).
pub fn recommend(
    current: i32,
    samples: &[Sample],
    resource: &str,
    utilization: Option<i32>,
    average: Option<i128>,
) -> Result<(i32, Option<i64>, i128), String> {
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.usage.is_some()).collect();
    if measured.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    let used: i128 = measured.iter().filter_map(|s| s.usage).sum();
    let count = measured.len() as i128;
    let per_pod = used / count;
    let ratio_to = |ratio: f64| {
        if (ratio - 1.0).abs() <= TOLERANCE { current } else { (ratio * count as f64).ceil() as i32 }
    };
    if let Some(target) = utilization {
        if measured.iter().any(|s| s.request.is_none()) {
            return Err(format!("failed to get {resource} utilization: missing request for {resource}"));
        }
        let requested: i128 = measured.iter().filter_map(|s| s.request).sum();
        if requested <= 0 {
            return Err(format!("failed to get {resource} utilization: missing request for {resource}"));
        }
        let pct = (used * 100 / requested) as i64;
        return Ok((ratio_to(pct as f64 / f64::from(target.max(1))), Some(pct), per_pod));
    }
    let target = average.unwrap_or(1).max(1);
    Ok((ratio_to(per_pod as f64 / target as f64), None, per_pod))
}

/// The most a scaling direction's policies allow from `current` in one period.
fn policy_limit(rules: Option<&HPAScalingRules>, current: i32, up: bool) -> i32 {
    let defaults: Vec<(String, i32)> =
        if up { vec![("Pods".into(), 4), ("Percent".into(), 100)] } else { vec![("Percent".into(), 100)] };
    let policies: Vec<(String, i32)> = rules
        .and_then(|r| r.policies.clone())
        .map(|ps| ps.into_iter().map(|p| (p.type_, p.value)).collect())
        .unwrap_or(defaults);
    let select = rules.and_then(|r| r.select_policy.clone()).unwrap_or_else(|| "Max".into());
    if select == "Disabled" {
        return current;
    }
    let limits: Vec<i32> = policies
        .iter()
        .map(|(kind, value)| {
            let step =
                if kind == "Pods" { *value } else { (f64::from(current) * f64::from(*value) / 100.0).ceil() as i32 };
            if up { current + step } else { (current - step).max(0) }
        })
        .collect();
    // For scaling up, Max picks the largest change; for scaling down, the largest change
    // is the lowest count.
    let most = if up { limits.iter().max() } else { limits.iter().min() };
    let least = if up { limits.iter().min() } else { limits.iter().max() };
    *(if select == "Min" { least } else { most }).unwrap_or(&current)
}

/// From a new recommendation and the recent ones: the replicas to set, and why it is
/// limited (`TooManyReplicas`, `TooFewReplicas`, `ScaleUpLimit`, `ScaleDownLimit`) if so.
pub fn decide(
    hpa: &HorizontalPodAutoscaler,
    current: i32,
    recommended: i32,
    history: &[(Instant, i32)],
    now: Instant,
) -> (i32, Option<&'static str>) {
    let spec = &hpa.spec;
    let behavior = spec.behavior.as_ref();
    let window = |rules: Option<&HPAScalingRules>, default: i32| {
        Duration::from_secs(
            u64::try_from(rules.and_then(|r| r.stabilization_window_seconds).unwrap_or(default)).unwrap_or(0),
        )
    };
    let up_window = window(behavior.and_then(|b| b.scale_up.as_ref()), 0);
    let down_window = window(behavior.and_then(|b| b.scale_down.as_ref()), 300);
    let within = |w: Duration| history.iter().filter(move |(t, _)| now.duration_since(*t) <= w).map(|(_, r)| *r);
    // Scale up to the least, down to the most, recommended within each window.
    let up_to = within(up_window).chain([recommended]).min().unwrap_or(recommended);
    let down_to = within(down_window).chain([recommended]).max().unwrap_or(recommended);
    let mut desired = if recommended > current { up_to.max(current) } else { down_to.min(current) };
    let mut limited = None;
    if desired > current {
        let limit = policy_limit(behavior.and_then(|b| b.scale_up.as_ref()), current, true);
        if desired > limit {
            desired = limit;
            limited = Some("ScaleUpLimit");
        }
    } else if desired < current {
        let limit = policy_limit(behavior.and_then(|b| b.scale_down.as_ref()), current, false);
        if desired < limit {
            desired = limit;
            limited = Some("ScaleDownLimit");
        }
    }
    let (min, max) = (spec.min_replicas.unwrap_or(1), spec.max_replicas);
    if desired > max {
        (max, Some("TooManyReplicas"))
    } else if desired < min {
        (min, Some("TooFewReplicas"))
    } else {
        (desired, limited)
    }
}

struct Ctx {
    client: kube::Client,
    recorder: kube::runtime::events::Recorder,
    /// Recent recommendations of each HPA (by uid), for the stabilization windows.
    history: Mutex<HashMap<String, Vec<(Instant, i32)>>>,
}

/// Run the HPA controller.
pub async fn run(client: kube::Client) {
    let hpas: Api<HorizontalPodAutoscaler> = Api::all(client.clone());
    let ctx = Ctx { recorder: crate::util::recorder(&client, MANAGER), client, history: Default::default() };
    Controller::new(hpas, watcher::Config::default())
        .with_config(crate::util::controller_config())
        .run_logged("horizontal-pod-autoscaler", reconcile, Arc::new(ctx))
        .await;
}

fn condition(kind: &str, status: bool, reason: &str, message: impl Into<String>) -> Value {
    let now = vkube_core::meta::now_rfc3339();
    json!({"type": kind, "status": if status { "True" } else { "False" }, "reason": reason, "message": message.into(), "lastTransitionTime": now})
}

/// Keep a condition's transition time when its status did not change.
fn keep_transitions(conditions: &mut [Value], old: &HorizontalPodAutoscaler) {
    for c in conditions.iter_mut() {
        let before = old.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| {
            cs.iter().find(|o| {
                Some(o.type_.as_str()) == c["type"].as_str() && Some(o.status.as_str()) == c["status"].as_str()
            })
        });
        if let Some(t) = before.and_then(|b| b.last_transition_time.as_ref()) {
            c["lastTransitionTime"] = json!(t);
        }
    }
}

fn pod_request(pod: &Pod, resource: &str) -> Option<i128> {
    let containers = &pod.spec.as_ref()?.containers;
    let mut total = 0;
    for c in containers {
        let q = c.resources.as_ref()?.requests.as_ref()?.get(resource)?;
        let v = vkube_core::quantity::parse_milli(&q.0)?;
        total += if resource == "cpu" { v } else { v / 1000 };
    }
    Some(total)
}

fn pod_usage(metrics: &Value, resource: &str) -> Option<i128> {
    let containers = metrics["containers"].as_array()?;
    let mut total = 0;
    for c in containers {
        let v = vkube_core::quantity::parse_milli(c.pointer(&format!("/usage/{resource}"))?.as_str()?)?;
        total += if resource == "cpu" { v } else { v / 1000 };
    }
    Some(total)
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if hpa.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = hpa.metadata.namespace.clone().unwrap_or_default();
    let name = hpa.metadata.name.clone().unwrap_or_default();
    let uid = hpa.metadata.uid.clone().unwrap_or_default();
    let spec = &hpa.spec;
    let regarding = kube::Resource::object_ref(&*hpa, &());
    let target = &spec.scale_target_ref;
    let (group, version) = match target.api_version.as_deref().unwrap_or("v1").split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), target.api_version.clone().unwrap_or_else(|| "v1".into())),
    };
    let api_status = |conditions: Vec<Value>, current: i32, desired: i32, metrics: Vec<Value>, scaled: bool| {
        let mut conditions = conditions;
        keep_transitions(&mut conditions, &hpa);
        let mut status = json!({"currentReplicas": current, "desiredReplicas": desired, "currentMetrics": metrics, "conditions": conditions});
        if scaled {
            status["lastScaleTime"] = json!(vkube_core::meta::now_rfc3339());
        }
        if let Some(g) = hpa.metadata.generation {
            status["observedGeneration"] = json!(g);
        }
        status
    };
    let hpa_api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &ns);
    let write = |status: Value| {
        let hpa_api = hpa_api.clone();
        let name = name.clone();
        async move { hpa_api.patch_status(&name, &pp(MANAGER), &Patch::Merge(json!({"status": status}))).await }
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &target.kind);
    let scale_api = match kube::discovery::pinned_kind(&ctx.client, &gvk).await {
        Ok((ar, _)) => Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &ns, &ar),
        Err(e) => {
            let msg = format!(
                "the HPA controller was unable to get the target's current scale: no matches for kind {:?} in group {group:?}: {e}",
                target.kind
            );
            crate::util::record(&ctx.recorder, &regarding, true, "FailedGetScale", "Scaling", msg.clone()).await;
            write(api_status(vec![condition("AbleToScale", false, "FailedGetScale", msg)], 0, 0, vec![], false))
                .await?;
            return Ok(Action::requeue(SYNC_PERIOD));
        }
    };
    let scale = match scale_api.get_scale(&target.name).await {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("the HPA controller was unable to get the target's current scale: {e}");
            crate::util::record(&ctx.recorder, &regarding, true, "FailedGetScale", "Scaling", msg.clone()).await;
            write(api_status(vec![condition("AbleToScale", false, "FailedGetScale", msg)], 0, 0, vec![], false))
                .await?;
            return Ok(Action::requeue(SYNC_PERIOD));
        }
    };
    let current = scale.status.as_ref().map(|s| s.replicas).unwrap_or(0);
    let selector = scale.status.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
    let able = condition(
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
    );
    if current == 0 && spec.min_replicas.unwrap_or(1) != 0 {
        // Scaled to zero by hand: autoscaling is off until it is scaled up again.
        let conditions = vec![
            able,
            condition(
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            ),
        ];
        write(api_status(conditions, 0, 0, vec![], false)).await?;
        return Ok(Action::requeue(SYNC_PERIOD));
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_list: Vec<Pod> = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && vkube_core::pod::phase(p) == "Running")
        .collect();
    let path = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?labelSelector={}",
        form_urlencoded::byte_serialize(selector.as_bytes()).collect::<String>()
    );
    let metrics: Result<Value, String> = match http::Request::get(&path).body(Vec::new()) {
        Ok(req) => ctx.client.request::<Value>(req).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let by_pod: HashMap<String, Value> = metrics
        .as_ref()
        .ok()
        .and_then(|m| m["items"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| Some((m.pointer("/metadata/name")?.as_str()?.to_string(), m)))
        .collect();
    let mut recommendation: Option<i32> = None;
    let mut current_metrics = Vec::new();
    let mut failure: Option<(String, String)> = None;
    let mut reason_text = String::new();
    for m in spec.metrics.iter().flatten() {
        let Some(r) = &m.resource else {
            failure = Some((
                "InvalidMetricSourceType".into(),
                format!("the HPA controller does not serve {} metrics", m.type_),
            ));
            continue;
        };
        if let Err(e) = &metrics {
            failure = Some((
                "FailedGetResourceMetric".into(),
                format!(
                    "unable to get metrics for resource {}: unable to fetch metrics from resource metrics API: {e}",
                    r.name
                ),
            ));
            continue;
        }
        let samples: Vec<Sample> = pod_list
            .iter()
            .map(|p| Sample {
                usage: by_pod.get(p.metadata.name.as_deref().unwrap_or_default()).and_then(|m| pod_usage(m, &r.name)),
                request: pod_request(p, &r.name),
            })
            .collect();
        let average = r
            .target
            .average_value
            .as_ref()
            .and_then(|q| vkube_core::quantity::parse_milli(&q.0))
            .map(|v| if r.name == "cpu" { v } else { v / 1000 });
        let utilization = (r.target.type_ == "Utilization").then(|| r.target.average_utilization.unwrap_or(80));
        match recommend(current, &samples, &r.name, utilization, average) {
            Ok((replicas, pct, per_pod)) => {
                let shown =
                    if r.name == "cpu" { vkube_core::quantity::format_cpu_milli(per_pod) } else { per_pod.to_string() };
                let mut cur = json!({"averageValue": shown});
                if let Some(p) = pct {
                    cur["averageUtilization"] = json!(p);
                }
                current_metrics.push(json!({"type": "Resource", "resource": {"name": r.name, "current": cur}}));
                if recommendation.is_none_or(|best| replicas > best) {
                    recommendation = Some(replicas);
                    let how = if pct.is_some() { "resource utilization (percentage of request)" } else { "resource" };
                    let side = if replicas > current { "above" } else { "below" };
                    reason_text = format!("{} {how} {side} target", r.name);
                }
            }
            Err(e) => failure = Some(("FailedGetResourceMetric".into(), e)),
        }
    }
    let Some(recommended) = recommendation else {
        let (reason, message) = failure.unwrap_or_else(|| ("FailedGetResourceMetric".into(), "no metrics".into()));
        crate::util::record(&ctx.recorder, &regarding, true, "FailedGetResourceMetric", "Scaling", message.clone())
            .await;
        let conditions = vec![able, condition("ScalingActive", false, &reason, message)];
        write(api_status(conditions, current, current, current_metrics, false)).await?;
        return Ok(Action::requeue(SYNC_PERIOD));
    };
    let now = Instant::now();
    let history = {
        let mut all = ctx.history.lock().unwrap_or_else(|e| e.into_inner());
        let entry = all.entry(uid.clone()).or_default();
        entry.retain(|(t, _)| now.duration_since(*t) <= Duration::from_secs(3600));
        let before = entry.clone();
        entry.push((now, recommended));
        before
    };
    let (desired, limited) = decide(&hpa, current, recommended, &history, now);
    let mut scaled = false;
    if desired != current {
        scale_api
            .patch_scale(&target.name, &pp(MANAGER), &Patch::Merge(json!({"spec": {"replicas": desired}})))
            .await?;
        scaled = true;
        let msg = format!("New size: {desired}; reason: {reason_text}");
        crate::util::record(&ctx.recorder, &regarding, false, "SuccessfulRescale", "Scaling", msg).await;
    }
    let able = if scaled {
        condition(
            "AbleToScale",
            true,
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {desired}"),
        )
    } else {
        condition("AbleToScale", true, "ReadyForNewScale", "recommended size matches current size")
    };
    let metric = reason_text.trim_end_matches(" above target").trim_end_matches(" below target");
    let active = condition(
        "ScalingActive",
        true,
        "ValidMetricFound",
        format!("the HPA was able to successfully calculate a replica count from {metric}"),
    );
    let limit = match limited {
        Some("TooManyReplicas") => condition(
            "ScalingLimited",
            true,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        ),
        Some("TooFewReplicas") => condition(
            "ScalingLimited",
            true,
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        ),
        Some(r @ ("ScaleUpLimit" | "ScaleDownLimit")) => condition(
            "ScalingLimited",
            true,
            r,
            "the desired replica count is changing faster than the maximum allowed rate",
        ),
        _ => {
            condition("ScalingLimited", false, "DesiredWithinRange", "the desired count is within the acceptable range")
        }
    };
    write(api_status(vec![able, active, limit], current, desired, current_metrics, scaled)).await?;
    Ok(Action::requeue(SYNC_PERIOD))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa(v: Value) -> HorizontalPodAutoscaler {
        serde_json::from_value(v).expect("hpa")
    }

    #[test]
    fn utilization_asks_for_the_replicas_that_bring_it_to_target_within_tolerance() {
        let busy = |usage| Sample { usage: Some(usage), request: Some(100) };
        // 200% of requests against a 50% target: four times the pods.
        assert_eq!(recommend(1, &[busy(200)], "cpu", Some(50), None), Ok((4, Some(200), 200)));
        // 52% against 50%: within 10%, no change.
        assert_eq!(recommend(3, &[busy(52), busy(52), busy(52)], "cpu", Some(50), None).map(|r| r.0), Ok(3));
        // 10% against 50%: one pod of five is enough.
        assert_eq!(recommend(5, &[busy(10); 5], "cpu", Some(50), None).map(|r| r.0), Ok(1));
        let unrequested = Sample { usage: Some(10), request: None };
        assert!(
            recommend(1, &[unrequested], "cpu", Some(50), None).is_err_and(|e| e.contains("missing request for cpu"))
        );
        assert!(recommend(1, &[Sample { usage: None, request: Some(1) }], "cpu", Some(50), None).is_err());
        // An average value: 300m over pods against 100m each.
        assert_eq!(recommend(1, &[busy(300)], "cpu", None, Some(100)).map(|r| r.0), Ok(3));
    }

    #[test]
    fn behavior_stabilizes_down_limits_up_and_clamps() {
        let now = Instant::now();
        let h = hpa(
            json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 10}}),
        );
        // Up by at most max(+4, x2) a period: from 1, 5.
        assert_eq!(decide(&h, 1, 9, &[], now), (5, Some("ScaleUpLimit")));
        assert_eq!(decide(&h, 4, 8, &[], now), (8, None));
        // Down: the highest recommendation of the last 300 s holds.
        let recent = [(now - Duration::from_secs(60), 6)];
        assert_eq!(decide(&h, 8, 2, &recent, now), (6, None));
        let old = [(now - Duration::from_secs(400), 6)];
        assert_eq!(decide(&h, 8, 2, &old, now), (2, None));
        // Clamped to the range.
        assert_eq!(decide(&h, 9, 12, &[], now), (10, Some("TooManyReplicas")));
        let zero_window = hpa(
            json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 10,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}}),
        );
        assert_eq!(decide(&zero_window, 5, 1, &recent, now), (2, Some("TooFewReplicas")));
    }
}
