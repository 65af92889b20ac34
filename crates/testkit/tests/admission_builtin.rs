//! kube-apiserver's built-in admission plugins as a client sees them: Priority (a pod's
//! priority from its class, the system classes present from the first start),
//! LimitRanger (defaults applied, limits enforced), each refusal with kube-apiserver's
//! status and message and nothing stored.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, PostParams};
use serde_json::json;
use vkube_testkit::TestServer;

fn api_error(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other}"),
    }
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "nginx"}]);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pod")
}

#[tokio::test]
async fn a_pods_priority_comes_from_its_priority_class() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let classes: Api<PriorityClass> = Api::all(client.clone());
    assert_eq!(classes.get("system-node-critical").await?.value, Some(2_000_001_000));
    assert_eq!(classes.get("system-cluster-critical").await?.value, Some(2_000_000_000));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (code, reason, message) = api_error(
        pods.create(&PostParams::default(), &pod("nope", json!({"priorityClassName": "nope"})))
            .await
            .expect_err("unknown class"),
    );
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(message, "pods \"nope\" is forbidden: no PriorityClass with name nope was found");
    assert!(pods.get_opt("nope").await?.is_none());
    let (_, _, message) = api_error(
        pods.create(
            &PostParams::default(),
            &pod("given", json!({"priorityClassName": "system-cluster-critical", "priority": 5})),
        )
        .await
        .expect_err("own priority"),
    );
    assert_eq!(
        message,
        "pods \"given\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 2000000000 from the given PriorityClass name"
    );
    let made = pods
        .create(&PostParams::default(), &pod("critical", json!({"priorityClassName": "system-cluster-critical"})))
        .await?;
    let spec = made.spec.unwrap_or_default();
    assert_eq!((spec.priority, spec.preemption_policy.as_deref()), (Some(2_000_000_000), Some("PreemptLowerPriority")));
    // A global default class names and ranks the pods that name none.
    let class: PriorityClass = serde_json::from_value(
        json!({"metadata": {"name": "everyday"}, "value": 7, "globalDefault": true, "preemptionPolicy": "Never"}),
    )?;
    classes.create(&PostParams::default(), &class).await?;
    let made = pods.create(&PostParams::default(), &pod("plain", json!({}))).await?;
    let spec = made.spec.unwrap_or_default();
    assert_eq!(spec.priority_class_name.as_deref(), Some("everyday"));
    assert_eq!((spec.priority, spec.preemption_policy.as_deref()), (Some(7), Some("Never")));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn limit_ranges_default_and_bound_what_pods_ask_for() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let ranges: Api<k8s_openapi::api::core::v1::LimitRange> = Api::namespaced(client.clone(), "default");
    let lr: k8s_openapi::api::core::v1::LimitRange =
        serde_json::from_value(json!({"metadata": {"name": "lim"}, "spec": {"limits": [
        {"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"},
         "max": {"cpu": "1"}, "min": {"memory": "64Mi"}, "maxLimitRequestRatio": {"cpu": "10"}},
        {"type": "Pod", "max": {"memory": "1Gi"}}]}}))?;
    let stored = serde_json::to_value(ranges.create(&PostParams::default(), &lr).await?)?;
    // kube-apiserver's defaults of the range itself.
    assert_eq!(stored["spec"]["limits"][0]["defaultRequest"], json!({"cpu": "100m", "memory": "256Mi"}));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let made = serde_json::to_value(
        pods.create(&PostParams::default(), &pod("a", json!({"containers": [{"name": "a", "image": "x"}]}))).await?,
    )?;
    assert_eq!(
        made["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container a; cpu, memory limit for container a"
    );
    assert_eq!(
        made["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}})
    );
    let (code, _, message) = api_error(
        pods.create(&PostParams::default(), &pod("b", json!({"containers": [{"name": "b", "image": "x", "resources": {"limits": {"cpu": "2", "memory": "32Mi"}}}]})))
            .await
            .expect_err("outside the range"),
    );
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "pods \"b\" is forbidden: [minimum memory usage per Container is 64Mi, but request is 32Mi, maximum cpu usage per Container is 1, but limit is 2]"
    );
    let (_, _, message) = api_error(
        pods.create(&PostParams::default(), &pod("c", json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "1", "memory": "2Gi"}}}]})))
            .await
            .expect_err("ratio and pod max"),
    );
    assert_eq!(
        message,
        "pods \"c\" is forbidden: [cpu max limit to request ratio per Container is 10, but provided ratio is 100.000000, maximum memory usage per Pod is 1Gi, but limit is 2Gi]"
    );
    assert!(pods.get_opt("b").await?.is_none() && pods.get_opt("c").await?.is_none(), "a refused pod was stored");
    // Another namespace has no range: nothing is added.
    let other: Api<Pod> = Api::namespaced(client.clone(), "kube-public");
    let made = other.create(&PostParams::default(), &pod("free", json!({}))).await?;
    assert!(made.metadata.annotations.unwrap_or_default().is_empty());
    server.stop().await;
    Ok(())
}
