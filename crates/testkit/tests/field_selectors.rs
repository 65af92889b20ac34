//! Field selectors compare a field an object does not have as its zero value, as
//! kube-apiserver's typed field sets do (`spec.unschedulable=false` matches a node that
//! never set it — what the conformance suite lists nodes with), in lists and watches,
//! and refuse unsupported labels with kube-apiserver's messages.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, Service};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use vkube_testkit::TestServer;

async fn names<K>(api: &Api<K>, selector: &str) -> Vec<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out: Vec<String> = api
        .list(&ListParams::default().fields(selector))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .items
        .into_iter()
        .filter_map(|o| o.meta().name.clone())
        .collect();
    out.sort();
    out
}

async fn refusal<K>(api: &Api<K>, selector: &str) -> String
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.list(&ListParams::default().fields(selector)).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"), "{selector}");
            s.message
        }
        other => panic!("{selector} was accepted: {other:?}"),
    }
}

#[tokio::test]
async fn absent_fields_compare_as_their_zero_value() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, spec) in [
        ("plain", json!({})),
        ("cordoned", json!({"unschedulable": true})),
        ("explicit", json!({"unschedulable": false})),
    ] {
        nodes
            .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?)
            .await?;
    }
    assert_eq!(names(&nodes, "spec.unschedulable=false").await, ["explicit", "plain"]);
    assert_eq!(names(&nodes, "spec.unschedulable!=true").await, ["explicit", "plain"]);
    assert_eq!(names(&nodes, "spec.unschedulable=true").await, ["cordoned"]);
    assert_eq!(names(&nodes, "metadata.name=plain,spec.unschedulable=false").await, ["plain"]);

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = |name: &str, extra: serde_json::Value| -> anyhow::Result<Pod> {
        let mut spec = json!({"containers": [{"name": "c", "image": "nginx"}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        Ok(serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?)
    };
    pods.create(&PostParams::default(), &pod("pending", json!({}))?).await?;
    pods.create(&PostParams::default(), &pod("bound", json!({"nodeName": "plain"}))?).await?;
    pods.create(&PostParams::default(), &pod("host", json!({"nodeName": "plain", "hostNetwork": true}))?).await?;
    assert_eq!(names(&pods, "spec.nodeName=").await, ["pending"]);
    assert_eq!(names(&pods, "spec.nodeName!=").await, ["bound", "host"]);
    assert_eq!(names(&pods, "spec.hostNetwork=false").await, ["bound", "pending"]);
    assert_eq!(names(&pods, "spec.hostNetwork=true").await, ["host"]);
    assert_eq!(names(&pods, "status.podIP=").await, ["bound", "host", "pending"]);
    assert_eq!(names(&pods, "status.nominatedNodeName=,spec.schedulerName=default-scheduler").await.len(), 3);

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
            )?,
        )
        .await?;
    assert_eq!(names(&secrets, "type=kubernetes.io/tls").await, ["s"]);
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    assert_eq!(names(&services, "spec.type=ClusterIP").await, ["kubernetes"]);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}))?).await?;
    assert_eq!(names(&jobs, "status.successful=0").await, ["j"]);

    // A watch with the selector sees the zero value too: cordoning a node drops it out.
    let mut watch = nodes.watch(&WatchParams::default().fields("spec.unschedulable=false"), "0").await?.boxed();
    let mut added = Vec::new();
    while added.len() < 2 {
        match watch.try_next().await? {
            Some(WatchEvent::Added(n)) => added.push(n.metadata.name.unwrap_or_default()),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    added.sort();
    assert_eq!(added, ["explicit", "plain"]);
    nodes
        .patch("plain", &Default::default(), &kube::api::Patch::Merge(json!({"spec": {"unschedulable": true}})))
        .await?;
    match watch.try_next().await? {
        Some(WatchEvent::Deleted(n)) => assert_eq!(n.metadata.name.as_deref(), Some("plain")),
        other => panic!("expected the cordoned node to leave the watch, got {other:?}"),
    }

    // Unsupported labels: kube-apiserver's two messages, and Job's own.
    assert_eq!(refusal(&pods, "spec.priority=1").await, "field label not supported: spec.priority");
    assert_eq!(refusal(&nodes, "metadata.namespace=").await, "field label not supported: metadata.namespace");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    assert_eq!(
        refusal(&cms, "data.k=v").await,
        "\"data.k\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
    assert_eq!(refusal(&jobs, "spec.parallelism=1").await, "field label \"spec.parallelism\" not supported for Job");
    Ok(())
}
