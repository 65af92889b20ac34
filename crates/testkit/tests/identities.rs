//! The controllers act as their own service accounts, bound by the bootstrap policy to
//! kube's `system:controller:NAME` roles (kube-controller-manager with
//! `--use-service-account-credentials`), not as `system:masters`: take a controller's
//! binding away and its work stops; give it back and the work resumes.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};
use vkube_testkit::TestCluster;

#[tokio::test]
async fn a_controller_without_its_binding_does_nothing() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.client().await?;
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let name = "system:controller:deployment-controller";
    let mut binding = bindings.get(name).await?;
    bindings.delete(name, &DeleteParams::default()).await?;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(admin.clone(), "default");
    let deployment: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))?;
    deployments.create(&PostParams::default(), &deployment).await?;
    // The deployment controller may not create ReplicaSets now (what must not happen,
    // watched for a while).
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let sets = replicasets.list(&ListParams::default()).await?.items;
        assert!(sets.is_empty(), "a ReplicaSet was made without the controller's binding: {sets:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    binding.metadata.resource_version = None;
    binding.metadata.uid = None;
    binding.metadata.creation_timestamp = None;
    binding.metadata.managed_fields = None;
    bindings.create(&PostParams::default(), &binding).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if !replicasets.list(&ListParams::default()).await?.items.is_empty() {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "no ReplicaSet after the binding came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// On every start the default policy is brought up to date, as kube-apiserver
/// reconciles it: a default rule or subject someone removed comes back, what an
/// administrator added stays, and an object marked `autoupdate: "false"` is left as it is.
#[tokio::test]
async fn a_restart_restores_the_default_policy_but_keeps_additions() -> anyhow::Result<()> {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use kube::api::{Api, Patch, PatchParams};
    let mut server = vkube_testkit::TestServer::start().await?;
    let client = server.client().await?;
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let original = roles.get("system:basic-user").await?.rules.unwrap_or_default();
    assert!(!original.is_empty());
    let extra = serde_json::json!({"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]});
    let pp = PatchParams::default();
    roles.patch("system:basic-user", &pp, &Patch::Merge(serde_json::json!({"rules": [extra.clone()]}))).await?;
    roles
        .patch(
            "system:public-info-viewer",
            &pp,
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {"rbac.authorization.kubernetes.io/autoupdate": "false"}},
                "rules": [extra.clone()]})),
        )
        .await?;
    bindings.patch("system:discovery", &pp, &Patch::Merge(serde_json::json!({"subjects": []}))).await?;
    server.restart().await?;
    let client = server.client().await?;
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client);
    let restored = roles.get("system:basic-user").await?.rules.unwrap_or_default();
    for rule in &original {
        assert!(restored.contains(rule), "{rule:?} was not restored: {restored:?}");
    }
    assert!(restored.iter().any(|r| r.api_groups == Some(vec!["example.com".into()])), "the addition went");
    let frozen = roles.get("system:public-info-viewer").await?.rules.unwrap_or_default();
    assert_eq!(frozen.len(), 1, "an autoupdate=false role was changed: {frozen:?}");
    let subjects = bindings.get("system:discovery").await?.subjects.unwrap_or_default();
    assert!(subjects.iter().any(|s| s.name == "system:authenticated"), "{subjects:?}");
    server.stop().await;
    Ok(())
}
