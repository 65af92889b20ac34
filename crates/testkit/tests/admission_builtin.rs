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

/// POST (or PATCH) a JSON body with kube's client; the status and the Warning headers.
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<(u16, Vec<String>)> {
    let content_type = if method == "PATCH" { "application/merge-patch+json" } else { "application/json" };
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(serde_json::to_vec(&body)?)?;
    let resp = client.send(req.map(kube::client::Body::from)).await?;
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            let v = v.strip_prefix("299 - \"").unwrap_or(v);
            v.strip_suffix('"').unwrap_or(v).replace("\\\"", "\"")
        })
        .collect();
    Ok((resp.status().as_u16(), warnings))
}

#[tokio::test]
async fn pod_security_labels_enforce_and_warn_as_kube_apiserver() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = |name: &str, labels: serde_json::Value| -> Namespace {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).expect("namespace")
    };
    let (code, _, message) = api_error(
        namespaces
            .create(&PostParams::default(), &ns("bogus", json!({"pod-security.kubernetes.io/enforce": "bogus"})))
            .await
            .expect_err("invalid level"),
    );
    assert_eq!(code, 422);
    assert!(message.contains("metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"bogus\": must be one of privileged, baseline, restricted"), "{message}");
    namespaces
        .create(&PostParams::default(), &ns("psr", json!({"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "baseline"})))
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "psr");
    let (code, reason, message) = api_error(
        pods.create(&PostParams::default(), &pod("p1", json!({"containers": [{"name": "p1", "image": "x"}]})))
            .await
            .expect_err("restricted"),
    );
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "pods \"p1\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"p1\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"p1\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"p1\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"p1\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
    );
    assert!(pods.get_opt("p1").await?.is_none());
    let hardened = pod(
        "ok",
        json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "x", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}),
    );
    pods.create(&PostParams::default(), &hardened).await?;
    // warn=restricted: admitted, with kube-apiserver's warning; then enforcing it warns
    // about the pod already there.
    namespaces
        .create(&PostParams::default(), &ns("psb", json!({"pod-security.kubernetes.io/warn": "restricted"})))
        .await?;
    let (code, warnings) = send(
        &client,
        "POST",
        "/api/v1/namespaces/psb/pods",
        serde_json::to_value(pod("p3", json!({"containers": [{"name": "p3", "image": "x"}]})))?,
    )
    .await?;
    assert_eq!(code, 201);
    assert_eq!(warnings, vec!["would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"p3\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"p3\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"p3\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"p3\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")".to_string()]);
    let (code, warnings) = send(
        &client,
        "PATCH",
        "/api/v1/namespaces/psb",
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}),
    )
    .await?;
    assert_eq!(code, 200);
    assert_eq!(
        warnings,
        vec![
            "existing pods in namespace \"psb\" violate the new PodSecurity enforce level \"restricted:latest\""
                .to_string(),
            "p3: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
                .to_string(),
        ]
    );
    // Workload templates are warned about, not refused.
    let (code, warnings) = send(&client, "POST", "/apis/apps/v1/namespaces/psb/deployments", json!({"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}})).await?;
    assert_eq!(code, 201);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"c\""
        ),
        "{warnings:?}"
    );
    server.stop().await;
    Ok(())
}
