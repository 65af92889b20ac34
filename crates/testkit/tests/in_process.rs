//! Controllers and the syncer in-process (no binary): a deployment rolls out on a host
//! with simulated nodes, and a virtual cluster syncs its pods into that host — and
//! leaves alone a host object that is not its own.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use std::time::Duration;
use vkube_testkit::TestCluster;

async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_and_is_collected() -> anyhow::Result<()> {
    let host = TestCluster::host(2).await?;
    let client = host.client().await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))?;
    deployments.create(&PostParams::default(), &d).await?;
    eventually("3 running pods", 20, || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await.ok()?;
        let running = list.items.iter().filter(|p| vkube_core::pod::phase(p) == "Running").count();
        (running == 3).then_some(())
    })
    .await;
    // Deleting the deployment takes its ReplicaSet and pods with it (garbage collection).
    deployments.delete("web", &DeleteParams::background()).await?;
    eventually("pods collected", 20, || async {
        pods.list(&ListParams::default().labels("app=web")).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_controller_keeps_its_replicas_and_scales() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ReplicationController;
    let host = TestCluster::host(2).await?;
    let client = host.client().await?;
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The selector and the labels default to the template's labels.
    let rc: ReplicationController = serde_json::from_value(
        json!({"metadata": {"name": "legacy"}, "spec": {"replicas": 2,
        "template": {"metadata": {"labels": {"app": "legacy"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
    )?;
    let made = rcs.create(&PostParams::default(), &rc).await?;
    let spec = made.spec.clone().unwrap_or_default();
    assert_eq!(spec.selector.unwrap_or_default().get("app").map(String::as_str), Some("legacy"));
    assert_eq!(made.metadata.labels.unwrap_or_default().get("app").map(String::as_str), Some("legacy"));
    let ready = |n: i32| {
        let rcs = rcs.clone();
        async move {
            let rc = rcs.get("legacy").await.ok()?;
            let st = rc.status?;
            (st.replicas == n && st.ready_replicas == Some(n)).then_some(())
        }
    };
    eventually("2 ready replicas", 20, || ready(2)).await;
    let owned = pods.list(&ListParams::default().labels("app=legacy")).await?;
    assert_eq!(owned.items.len(), 2);
    for p in &owned.items {
        let owner = &p.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("ReplicationController", "legacy", Some(true))
        );
    }
    // Scaled through /scale, as `kubectl scale rc` does; the selector shows as a string.
    let scale = rcs.get_scale("legacy").await?;
    assert_eq!(scale.status.and_then(|s| s.selector).as_deref(), Some("app=legacy"));
    rcs.patch_scale("legacy", &Default::default(), &kube::api::Patch::Merge(json!({"spec": {"replicas": 3}}))).await?;
    eventually("3 ready replicas", 20, || ready(3)).await;
    // A pod that stops matching is released; one that matches and has no controller is
    // adopted (and, being one too many, removed).
    let owned = pods.list(&ListParams::default().labels("app=legacy")).await?;
    let first = owned.items[0].metadata.name.clone().unwrap_or_default();
    pods.patch(&first, &Default::default(), &kube::api::Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}})))
        .await?;
    eventually("the pod released", 20, || async {
        let p = pods.get(&first).await.ok()?;
        p.metadata.owner_references.unwrap_or_default().is_empty().then_some(())
    })
    .await;
    eventually("3 ready replicas again", 20, || ready(3)).await;
    pods.delete(&first, &DeleteParams::default()).await?;
    let orphan = serde_json::from_value(json!({"metadata": {"name": "orphan", "labels": {"app": "legacy"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))?;
    pods.create(&PostParams::default(), &orphan).await?;
    // Adopted (the controller may then remove it or another as the one too many).
    let adopted = std::sync::atomic::AtomicBool::new(false);
    eventually("the orphan adopted and 3 pods left", 30, || async {
        if let Ok(p) = pods.get("orphan").await
            && p.metadata.owner_references.unwrap_or_default().iter().any(|r| r.name == "legacy")
        {
            adopted.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let list = pods.list(&ListParams::default().labels("app=legacy")).await.ok()?;
        let active = list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).count();
        (active == 3 && adopted.load(std::sync::atomic::Ordering::SeqCst)).then_some(())
    })
    .await;
    // Deleting it takes its pods with it.
    rcs.delete("legacy", &DeleteParams::default()).await?;
    eventually("no pods left", 20, || async {
        pods.list(&ListParams::default().labels("app=legacy")).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_that_stops_a_replication_controller_shows_as_its_failure_condition() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{ReplicationController, ResourceQuota};
    let host = TestCluster::host(1).await?;
    let client = host.client().await?;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "default");
    let q: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": "two"}, "spec": {"hard": {"pods": "2"}}}))?;
    quotas.create(&PostParams::default(), &q).await?;
    eventually("the quota's usage", 20, || async { quotas.get("two").await.ok()?.status?.used.map(|_| ()) }).await;
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let rc: ReplicationController = serde_json::from_value(
        json!({"metadata": {"name": "three"}, "spec": {"replicas": 3,
        "template": {"metadata": {"labels": {"app": "three"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
    )?;
    rcs.create(&PostParams::default(), &rc).await?;
    let failure = |want: bool| {
        let rcs = rcs.clone();
        async move {
            let rc = rcs.get("three").await.ok()?;
            let c = rc.status?.conditions.unwrap_or_default().into_iter().find(|c| c.type_ == "ReplicaFailure");
            match (want, c) {
                (true, Some(c)) => Some(c.message),
                (false, None) => Some(None),
                _ => None,
            }
        }
    };
    let message = eventually("the ReplicaFailure condition", 30, || failure(true)).await.unwrap_or_default();
    assert!(message.contains("exceeded quota: two, requested: pods=1, used: pods=2, limited: pods=2"), "{message}");
    rcs.patch_scale("three", &Default::default(), &kube::api::Patch::Merge(json!({"spec": {"replicas": 2}}))).await?;
    eventually("the condition cleared", 30, || failure(false)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_adopts_a_matching_replica_set_and_rolls_past_its_revision() -> anyhow::Result<()> {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let host = TestCluster::host(1).await?;
    let client = host.client().await?;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(
        json!({"metadata": {"name": "old", "labels": {"app": "roll"}, "annotations": {"deployment.kubernetes.io/revision": "41"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "roll"}},
            "template": {"metadata": {"labels": {"app": "roll"}}, "spec": {"containers": [{"name": "c", "image": "httpd"}]}}}}),
    )?;
    sets.create(&PostParams::default(), &rs).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "roll"}, "spec": {"replicas": 1,
        "selector": {"matchLabels": {"app": "roll"}},
        "template": {"metadata": {"labels": {"app": "roll"}}, "spec": {"containers": [{"name": "c", "image": "agnhost"}]}}}}))?;
    deployments.create(&PostParams::default(), &d).await?;
    eventually("the old set adopted and scaled down, a new one at revision 42", 30, || async {
        let list = sets.list(&ListParams::default()).await.ok()?;
        let old = list.items.iter().find(|r| r.metadata.name.as_deref() == Some("old"))?;
        let owned = old.metadata.owner_references.clone().unwrap_or_default().iter().any(|o| o.name == "roll");
        let newest = list.items.iter().find(|r| r.metadata.name.as_deref() != Some("old"))?;
        let rev =
            newest.metadata.annotations.clone().unwrap_or_default().get("deployment.kubernetes.io/revision").cloned();
        (owned && old.spec.replicas == Some(0) && rev.as_deref() == Some("42")).then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_syncer_places_pods_on_the_host_and_leaves_others_objects_alone() -> anyhow::Result<()> {
    let host = TestCluster::host(2).await?;
    let vc = TestCluster::start().await?.with_syncer(&host, Default::default()).await?;
    let (host_client, virtual_client) = (host.client().await?, vc.client().await?);
    let host_pods: Api<Pod> = Api::namespaced(host_client.clone(), "vkube-vc");
    let virtual_pods: Api<Pod> = Api::namespaced(virtual_client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(virtual_client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"k": "v"}}))?,
    )
    .await?;
    let pod = |name: &str| -> anyhow::Result<Pod> {
        Ok(serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "nginx", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}}),
        )?)
    };
    virtual_pods.create(&PostParams::default(), &pod("web")?).await?;
    // The host copy: named by the mapping, marked, its references renamed; Running, and
    // its IP and node flow back.
    let host_pod = eventually("a running host pod", 20, || async {
        let p = host_pods.get_opt("web-x-default-x-vc").await.ok()??;
        (vkube_core::pod::phase(&p) == "Running").then_some(p)
    })
    .await;
    let labels = host_pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("vkube.dev/managed-by").map(String::as_str), Some("vc"));
    let env_from = host_pod.spec.as_ref().and_then(|s| s.containers[0].env_from.clone()).unwrap_or_default();
    assert_eq!(env_from[0].config_map_ref.as_ref().map(|r| r.name.as_str()), Some("cfg-x-default-x-vc"));
    let host_cms: Api<ConfigMap> = Api::namespaced(host_client.clone(), "vkube-vc");
    assert!(host_cms.get_opt("cfg-x-default-x-vc").await?.is_some(), "the pod's configmap is on the host");
    let ip = host_pod.status.and_then(|s| s.pod_ip).expect("host pod IP");
    eventually("the IP back in the virtual pod", 20, || async {
        let p = virtual_pods.get("web").await.ok()?;
        (p.status.and_then(|s| s.pod_ip).as_deref() == Some(ip.as_str())).then_some(())
    })
    .await;
    // Someone else's host pod under the name the next virtual pod would get: left as it
    // is, and the virtual pod says why it waits.
    let foreign: Pod = serde_json::from_value(
        json!({"metadata": {"name": "taken-x-default-x-vc"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )?;
    let foreign = host_pods.create(&PostParams::default(), &foreign).await?;
    virtual_pods.create(&PostParams::default(), &pod("taken")?).await?;
    let events: Api<Event> = Api::namespaced(virtual_client.clone(), "default");
    eventually("a HostNameTaken event", 20, || async {
        let list = events.list(&ListParams::default().fields("involvedObject.name=taken")).await.ok()?;
        list.items.iter().any(|e| e.reason.as_deref() == Some("HostNameTaken")).then_some(())
    })
    .await;
    let still = host_pods.get("taken-x-default-x-vc").await?;
    assert_eq!(still.metadata.uid, foreign.metadata.uid);
    assert_eq!(still.metadata.labels, foreign.metadata.labels, "the foreign pod was not marked");
    // Deleting the virtual pod removes its host copy, and only that.
    virtual_pods.delete("web", &DeleteParams::default()).await?;
    eventually("the host copy gone", 20, || async {
        host_pods.get_opt("web-x-default-x-vc").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(host_pods.get_opt("taken-x-default-x-vc").await?.is_some());
    Ok(())
}
