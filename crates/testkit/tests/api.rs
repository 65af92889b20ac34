//! Integration tests: a real in-process API server on a loopback port, driven with the
//! kube-rs client.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use std::time::Duration;
use vkube_testkit::TestServer;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}))
        .expect("configmap")
}

async fn wait_until<F: FnMut() -> bool>(what: &str, mut f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn crud_conflicts_and_generate_name() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms.create(&PostParams::default(), &cm("a", json!({"app": "x"}))).await?;
    let rv = created.metadata.resource_version.clone().expect("rv");
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    // Update with the right resourceVersion works, with a stale one is a 409 Conflict.
    let mut updated = created.clone();
    updated.data = Some([("k".to_string(), "v2".to_string())].into());
    let after = cms.replace("a", &PostParams::default(), &updated).await?;
    assert_ne!(after.metadata.resource_version, Some(rv.clone()));
    let err = cms.replace("a", &PostParams::default(), &updated).await.expect_err("stale update");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Create twice: AlreadyExists.
    let dup = cms.create(&PostParams::default(), &cm("a", json!({}))).await.expect_err("duplicate");
    assert!(matches!(dup, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"), "{dup:?}");
    // generateName.
    let mut gen_cm = cm("", json!({}));
    gen_cm.metadata.name = None;
    gen_cm.metadata.generate_name = Some("gen-".into());
    let g = cms.create(&PostParams::default(), &gen_cm).await?;
    let name = g.metadata.name.expect("generated");
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    // Missing namespace: 404.
    let nowhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let err = nowhere.create(&PostParams::default(), &cm("x", json!({}))).await.expect_err("no namespace");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.message == "namespaces \"nope\" not found"),
        "{err:?}"
    );
    // Delete, then 404.
    cms.delete("a", &DeleteParams::default()).await?;
    let err = cms.get("a").await.expect_err("deleted");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.message == "configmaps \"a\" not found"),
        "{err:?}"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn selectors_and_pagination() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..25 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        cms.create(&PostParams::default(), &cm(&format!("cm-{i:02}"), json!({"tier": tier, "n": i.to_string()})))
            .await?;
    }
    let even = cms.list(&ListParams::default().labels("tier=even")).await?;
    assert_eq!(even.items.len(), 13);
    let set = cms.list(&ListParams::default().labels("tier in (odd),n notin (1,3)")).await?;
    assert_eq!(set.items.len(), 10);
    let named = cms.list(&ListParams::default().fields("metadata.name=cm-07")).await?;
    assert_eq!(named.items.len(), 1);
    let err = cms.list(&ListParams::default().fields("spec.bogus=x")).await.expect_err("unsupported field");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 400), "{err:?}");
    // Pages of 10: 10 + 10 + 5, consistent snapshot even with writes in between.
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(10);
    loop {
        let page = cms.list(&params).await?;
        names.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
        cms.create(&PostParams::default(), &cm(&format!("late-{}", names.len()), json!({}))).await?;
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = ListParams::default().limit(10).continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(names.len(), 25, "{names:?}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let spec = pods.list(&ListParams::default().fields("spec.nodeName=n1,status.phase!=Failed")).await?;
    assert!(spec.items.is_empty());
    server.stop().await;
    Ok(())
}

/// The next `n` events of a watch, bookmarks skipped, each as "TYPE name" with its object.
async fn next_events<K: kube::Resource>(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin),
    n: usize,
) -> anyhow::Result<Vec<(String, K)>> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await??.expect("event");
        let (kind, obj) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        };
        seen.push((format!("{kind} {}", obj.meta().name.clone().unwrap_or_default()), obj));
    }
    Ok(seen)
}

#[tokio::test]
async fn watch_sees_changes_in_order_with_selectors() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = cms.list(&ListParams::default()).await?.metadata.resource_version.expect("rv");
    let mut stream = cms.watch(&WatchParams::default().labels("app=w").timeout(20), &start).await?.boxed();
    cms.create(&PostParams::default(), &cm("w1", json!({"app": "w"}))).await?;
    cms.create(&PostParams::default(), &cm("other", json!({"app": "z"}))).await?;
    cms.patch("w1", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}}))).await?;
    cms.patch("w1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}}))).await?;
    let seen: Vec<String> = next_events(&mut stream, 3).await?.into_iter().map(|(seen, _)| seen).collect();
    assert_eq!(seen, ["ADDED w1", "MODIFIED w1", "DELETED w1"], "leaving the selector reads as DELETED");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn metadata_only_watch_with_a_label_selector() -> anyhow::Result<()> {
    // What garbage collectors and metadata informers use: PartialObjectMetadata events.
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = cms.list(&ListParams::default()).await?.metadata.resource_version.expect("rv");
    let mut stream = cms.watch_metadata(&WatchParams::default().labels("app=m").timeout(20), &start).await?.boxed();
    cms.create(&PostParams::default(), &cm("m1", json!({"app": "m"}))).await?;
    cms.create(&PostParams::default(), &cm("other", json!({"app": "z"}))).await?;
    cms.patch("m1", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}}))).await?;
    let events = next_events(&mut stream, 2).await?;
    for (seen, o) in &events {
        if seen.starts_with("ADDED") {
            assert_eq!(o.types.as_ref().map(|t| t.kind.as_str()), Some("PartialObjectMetadata"));
            assert_eq!(o.metadata.labels.clone().unwrap_or_default().get("app").map(String::as_str), Some("m"));
            assert!(o.metadata.uid.is_some() && o.metadata.resource_version.is_some());
        }
    }
    let seen: Vec<&str> = events.iter().map(|(seen, _)| seen.as_str()).collect();
    assert_eq!(seen, ["ADDED m1", "DELETED m1"]);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn reflector_survives_a_server_restart() -> anyhow::Result<()> {
    let mut server = TestServer::start().await?;
    let client = server.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("before", json!({}))).await?;
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().timeout(5);
    let task = tokio::spawn(
        reflector(writer, watcher(cms.clone(), config).default_backoff()).applied_objects().for_each(|_| async {}),
    );
    wait_until("the reflector to see the first object", || {
        reader.state().iter().any(|c| c.metadata.name.as_deref() == Some("before"))
    })
    .await;
    server.restart().await?;
    // Written after the restart, through the same client: the reflector resumes
    // (relisting after 410 Gone) and sees it.
    let mut ok = false;
    for _ in 0..50 {
        if cms.create(&PostParams::default(), &cm("after", json!({}))).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "server did not come back");
    wait_until("the reflector to see the object written after the restart", || {
        reader.state().iter().any(|c| c.metadata.name.as_deref() == Some("after"))
    })
    .await;
    assert!(reader.state().iter().any(|c| c.metadata.name.as_deref() == Some("before")), "restart kept the object");
    task.abort();
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_gone() -> anyhow::Result<()> {
    let mut server = TestServer::start().await?;
    let client = server.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let c = cms.create(&PostParams::default(), &cm("a", json!({}))).await?;
    cms.create(&PostParams::default(), &cm("b", json!({}))).await?;
    server.restart().await?;
    let client = server.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let rv = c.metadata.resource_version.expect("rv");
    let mut stream = cms.watch(&WatchParams::default(), &rv).await?.boxed();
    let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await??.expect("event");
    match ev {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn default_namespaces_and_kubernetes_service_exist() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let nss: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> =
        nss.list(&ListParams::default()).await?.items.into_iter().filter_map(|n| n.metadata.name).collect();
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    let k = svcs.get("kubernetes").await?;
    assert_eq!(k.spec.and_then(|s| s.cluster_ip).as_deref(), Some("10.96.0.1"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn custom_resources_are_served_once_established() -> anyhow::Result<()> {
    use kube::core::{DynamicObject, GroupVersionKind};
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let crd = serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wg"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}
    }))?;
    crds.create(&PostParams::default(), &crd).await?;
    let got = crds.get("widgets.example.com").await?;
    let established = got
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let (ar, _) = kube::discovery::pinned_kind(&client, &gvk).await?;
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3, "unknown": true}}),
    )?;
    let created = widgets.create(&PostParams::default(), &w).await?;
    assert_eq!(created.data["spec"]["size"], 3);
    assert!(created.data["spec"].get("unknown").is_none(), "pruned by the schema");
    assert_eq!(widgets.list(&ListParams::default()).await?.items.len(), 1);
    server.stop().await;
    Ok(())
}

/// The conformance spec "updates the published spec when one version gets renamed":
/// a CRD whose version `v3` becomes `v4` (same schema) is published as `v4` and no
/// longer as `v3`. The documents were cached by a signature without the version, so
/// the old name stayed published until some other CRD changed.
#[tokio::test]
async fn the_published_openapi_follows_a_renamed_crd_version() -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let version = |name: &str, storage: bool| {
        json!({"name": name, "served": true, "storage": storage,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "description": "the spec"}}}}})
    };
    let crd = serde_json::from_value(json!({
        "metadata": {"name": "gadgets.renamed.example.com"},
        "spec": {"group": "renamed.example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [version("v2", true), version("v3", false)]}
    }))?;
    crds.create(&PostParams::default(), &crd).await?;
    let definitions = |client: kube::Client| async move {
        let text = client.request_text(http::Request::get("/openapi/v2").body(Vec::new())?).await?;
        let doc: serde_json::Value = serde_json::from_str(&text)?;
        let names: Vec<String> =
            doc["definitions"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        anyhow::Ok(names)
    };
    let v3 = "com.example.renamed.v3.Gadget".to_string();
    let v4 = "com.example.renamed.v4.Gadget".to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !definitions(client.clone()).await?.contains(&v3) {
        assert!(tokio::time::Instant::now() < deadline, "v3 never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let patch = json!({"spec": {"versions": [version("v2", true), version("v4", false)]}});
    crds.patch("gadgets.renamed.example.com", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names = definitions(client.clone()).await?;
        if names.contains(&v4) && !names.contains(&v3) {
            break;
        }
        let gadgets: Vec<&String> = names.iter().filter(|n| n.contains("renamed")).collect();
        assert!(tokio::time::Instant::now() < deadline, "v4 not published in place of v3: {gadgets:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn events_written_through_events_v1_are_core_events_too() -> anyhow::Result<()> {
    use kube::runtime::events::{Event as RecordedEvent, EventType, Recorder, Reporter};
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let target = cms.create(&PostParams::default(), &cm("target", json!({}))).await?;
    let recorder = Recorder::new(client.clone(), Reporter { controller: "vkube-test".into(), instance: None });
    let reference = kube::Resource::object_ref(&target, &());
    recorder
        .publish(
            &RecordedEvent {
                type_: EventType::Normal,
                reason: "Tested".into(),
                note: Some("it works".into()),
                action: "Test".into(),
                secondary: None,
            },
            &reference,
        )
        .await?;
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let found =
        core.list(&ListParams::default().fields("involvedObject.name=target,involvedObject.kind=ConfigMap")).await?;
    assert_eq!(found.items.len(), 1, "{found:?}");
    assert_eq!(found.items[0].message.as_deref(), Some("it works"));
    assert_eq!(found.items[0].reason.as_deref(), Some("Tested"));
    let v1: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
    let again = v1.list(&ListParams::default().fields("regarding.name=target")).await?;
    assert_eq!(again.items.len(), 1);
    assert_eq!(again.items[0].note.as_deref(), Some("it works"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn status_subresource_finalizers_and_dry_run() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p", "finalizers": ["example.com/hold"]}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )?;
    // Dry run stores nothing.
    pods.create(&PostParams { dry_run: true, ..Default::default() }, &pod).await?;
    assert!(pods.get_opt("p").await?.is_none());
    let created = pods.create(&PostParams::default(), &pod).await?;
    assert_eq!(created.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Pending"));
    // The main resource ignores status; /status ignores spec.
    pods.patch("p", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running"}}))).await?;
    assert_eq!(pods.get("p").await?.status.and_then(|s| s.phase).as_deref(), Some("Pending"));
    pods.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}, "metadata": {"labels": {"x": "y"}}})),
    )
    .await?;
    let now = pods.get("p").await?;
    assert_eq!(now.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    assert!(now.metadata.labels.is_none(), "status writes do not change metadata");
    // A finalizer holds deletion: deletionTimestamp is set, the pod stays until it goes.
    pods.delete("p", &DeleteParams::default()).await?;
    let held = pods.get("p").await?;
    assert!(held.metadata.deletion_timestamp.is_some());
    pods.patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await?;
    assert!(pods.get_opt("p").await?.is_none(), "removing the last finalizer deletes");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn leader_election_has_one_holder_and_fails_over() -> anyhow::Result<()> {
    use vkube_controllers::leader::{LeaderConfig, try_acquire};
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let cfg = |id: &str| LeaderConfig {
        namespace: "kube-system".into(),
        name: "test-lease".into(),
        identity: id.into(),
        lease_duration: Duration::from_secs(1),
        retry_period: Duration::from_millis(100),
    };
    assert!(try_acquire(&client, &cfg("a")).await);
    assert!(!try_acquire(&client, &cfg("b")).await, "b must not take a live lease");
    assert!(try_acquire(&client, &cfg("a")).await, "the holder renews");
    // a stops renewing: b takes over after the lease duration.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(try_acquire(&client, &cfg("b")).await);
    assert!(!try_acquire(&client, &cfg("a")).await);
    server.stop().await;
    Ok(())
}

/// Aggregated cluster roles follow the roles they gather, and a binding acts as soon as
/// its write is acknowledged (asked through a SelfSubjectAccessReview, as `kubectl auth
/// can-i` does).
#[tokio::test]
async fn aggregated_roles_follow_their_sources_and_bindings_act_at_once() -> anyhow::Result<()> {
    use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let server = TestServer::start().await?;
    let admin = server.client().await?;
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let widget_rule = json!({"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]});
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "widget-viewer",
                "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}, "rules": [widget_rule]}))?,
        )
        .await?;
    let view_has_widgets = |r: &ClusterRole| {
        r.rules.iter().flatten().any(|rule| rule.api_groups.as_deref() == Some(&["example.com".to_string()][..]))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !view_has_widgets(&roles.get("view").await?) {
        anyhow::ensure!(std::time::Instant::now() < deadline, "view never gathered widget-viewer's rule");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A user with a certificate and no binding may not; bound to `view`, it may at once.
    let pair = server.server().pki.issue_client("zoe", &[])?;
    let kc = vkube_apiserver::pki::kubeconfig(
        "t",
        &server.server().url,
        &server.server().pki.ca.cert_pem,
        vkube_apiserver::pki::Credential::Cert(&pair),
    );
    let zoe = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kube::config::Kubeconfig::from_yaml(&kc)?, &Default::default()).await?,
    )?;
    let can_get_widgets = || async {
        let review: SelfSubjectAccessReview = serde_json::from_value(json!({"spec": {"resourceAttributes":
            {"namespace": "default", "verb": "get", "group": "example.com", "resource": "widgets"}}}))?;
        let out = Api::<SelfSubjectAccessReview>::all(zoe.clone()).create(&PostParams::default(), &review).await?;
        anyhow::Ok(out.status.map(|s| (s.allowed, s.reason.unwrap_or_default())).unwrap_or_default())
    };
    assert_eq!(can_get_widgets().await?, (false, String::new()));
    let denied = Api::<ConfigMap>::namespaced(zoe.clone(), "default").list(&ListParams::default()).await;
    match denied {
        Err(kube::Error::Api(e)) => assert_eq!(
            (e.code, e.message.as_str()),
            (
                403,
                "configmaps is forbidden: User \"zoe\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
            )
        ),
        other => anyhow::bail!("expected 403, got {other:?}"),
    }
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "zoe-views"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "zoe"}]}))?,
        )
        .await?;
    assert_eq!(
        can_get_widgets().await?,
        (true, "RBAC: allowed by ClusterRoleBinding \"zoe-views\" of ClusterRole \"view\" to User \"zoe\"".to_string())
    );
    // The gathered role gone, `view` gives it back up.
    roles.delete("widget-viewer", &DeleteParams::default()).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while view_has_widgets(&roles.get("view").await?) {
        anyhow::ensure!(std::time::Instant::now() < deadline, "view kept widget-viewer's rule");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!can_get_widgets().await?.0);
    server.stop().await;
    Ok(())
}

/// A custom resource is checked against its CRD's schema as kube-apiserver checks it:
/// type, enum, required, pattern, lengths, bounds and item counts, each refused with a
/// 422 whose message is kube-apiserver 1.36's for the same body (read back from it);
/// a valid one is stored, a refused one is not.
#[tokio::test]
async fn custom_resources_are_validated_against_their_schema() -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::core::{DynamicObject, GroupVersionKind};
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = serde_json::from_value(json!({
        "metadata": {"name": "vals.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "vals", "singular": "val", "kind": "Val"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object",
                "properties": {"spec": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5, "minLength": 2},
                    "feeling": {"type": "string", "enum": ["Great", "Down"]},
                    "count": {"type": "integer", "minimum": 1, "maximum": 10},
                    "ratio": {"type": "number"},
                    "tags": {"type": "array", "maxItems": 2, "minItems": 1, "items": {"type": "string"}},
                    "bars": {"type": "array", "items": {"type": "object", "required": ["name"],
                        "properties": {"name": {"type": "string"}}}}}}}}}}]}
    }))?;
    crds.create(&PostParams::default(), &crd).await?;
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Val");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ar = loop {
        match kube::discovery::pinned_kind(&client, &gvk).await {
            Ok((ar, _)) => break ar,
            Err(e) => anyhow::ensure!(std::time::Instant::now() < deadline, "never served: {e}"),
        }
    };
    let vals: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let table = [
        (
            json!({"name": "ok", "feeling": "Bad"}),
            "spec.feeling: Unsupported value: \"Bad\": supported values: \"Great\", \"Down\"",
        ),
        (json!({"feeling": "Great"}), "spec.name: Required value"),
        (json!({"name": "ABC"}), "spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'"),
        (json!({"name": "abcdefg"}), "spec.name: Too long: may not be more than 5 bytes"),
        (json!({"name": "a"}), "spec.name: Invalid value: \"a\": spec.name in body should be at least 2 chars long"),
        (
            json!({"name": "ok", "count": 0}),
            "spec.count: Invalid value: 0: spec.count in body should be greater than or equal to 1",
        ),
        (
            json!({"name": "ok", "count": 11}),
            "spec.count: Invalid value: 11: spec.count in body should be less than or equal to 10",
        ),
        (
            json!({"name": "ok", "count": "x"}),
            "spec.count: Invalid value: \"string\": spec.count in body must be of type integer: \"string\"",
        ),
        (
            json!({"name": "ok", "ratio": "x"}),
            "spec.ratio: Invalid value: \"string\": spec.ratio in body must be of type number: \"string\"",
        ),
        (
            json!({"name": "ok", "tags": []}),
            "spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items",
        ),
        (json!({"name": "ok", "tags": ["a", "b", "c"]}), "spec.tags: Too many: 3: must have at most 2 items"),
        (json!({"name": "ok", "bars": [{"x": 1}]}), "spec.bars[0].name: Required value"),
        (json!("str"), "spec: Invalid value: \"string\": spec in body must be of type object: \"string\""),
        (
            json!({"name": 5}),
            "spec.name: Invalid value: \"integer\": spec.name in body must be of type string: \"integer\"",
        ),
    ];
    for (i, (spec, want)) in table.iter().enumerate() {
        let name = format!("v{i}");
        let obj: DynamicObject = serde_json::from_value(
            json!({"apiVersion": "example.com/v1", "kind": "Val", "metadata": {"name": name}, "spec": spec}),
        )?;
        let err = vals.create(&PostParams::default(), &obj).await.expect_err("an invalid custom resource was stored");
        let kube::Error::Api(s) = err else { panic!("expected an API error for {spec}") };
        assert_eq!(s.code, 422, "{spec}");
        assert_eq!(s.message, format!("Val.example.com \"{name}\" is invalid: {want}"), "{spec}");
        assert!(vals.get_opt(&name).await?.is_none());
    }
    let good: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Val",
        "metadata": {"name": "good"}, "spec": {"name": "good", "feeling": "Great", "count": 3, "tags": ["x"]}}))?;
    vals.create(&PostParams::default(), &good).await?;
    server.stop().await;
    Ok(())
}
