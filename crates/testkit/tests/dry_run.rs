//! `dryRun=All` on every mutating verb writes nothing anywhere: the store's revision does
//! not move (no object, no status, no service address claim, no budget decrement), and
//! the answer is what the real request would give.

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vkube_testkit::TestServer;

async fn revision(server: &TestServer) -> i64 {
    server.server().state.registry.store().current_revision().await.expect("revision")
}

fn dry() -> PostParams {
    PostParams { dry_run: true, ..Default::default() }
}

fn dry_patch() -> PatchParams {
    PatchParams { dry_run: true, ..Default::default() }
}

fn dry_delete() -> DeleteParams {
    DeleteParams { dry_run: true, ..Default::default() }
}

/// Every dry run below must leave the store where it was.
struct Unchanged<'a> {
    server: &'a TestServer,
    at: i64,
}

impl<'a> Unchanged<'a> {
    async fn from(server: &'a TestServer) -> Self {
        Unchanged { server, at: revision(server).await }
    }
    async fn check(&self, what: &str) {
        assert_eq!(revision(self.server).await, self.at, "{what} wrote to the store");
    }
}

#[tokio::test]
async fn dry_runs_of_every_verb_write_nothing() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let web: Service = serde_json::from_value(
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )?;
    services.create(&PostParams::default(), &web).await?;
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
    )?;
    pods.create(&PostParams::default(), &pod).await?;
    // `p` runs on a node (so evicting it consults the budget); `u` waits for one.
    let bind_to = |pod: &str| json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    pods.create_subresource::<Value, Value>("binding", "p", &PostParams::default(), &bind_to("p")).await?;
    pods.patch_status("p", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running"}}))).await?;
    let mut unbound = pod.clone();
    unbound.metadata.name = Some("u".into());
    pods.create(&PostParams::default(), &unbound).await?;
    namespaces.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "team"}}))?).await?;
    let pdb: PodDisruptionBudget = serde_json::from_value(
        json!({"metadata": {"name": "pdb"}, "spec": {"minAvailable": 0, "selector": {"matchLabels": {"app": "web"}}}}),
    )?;
    budgets.create(&PostParams::default(), &pdb).await?;
    // A budget with room for one disruption (as its controller would report).
    budgets
        .patch_status(
            "pdb",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 1, "desiredHealthy": 0, "expectedPods": 1}})),
        )
        .await?;
    let stored_ip = services.get("web").await?.spec.and_then(|s| s.cluster_ip).expect("cluster IP");
    let unchanged = Unchanged::from(&server).await;

    // Services: create (a cluster IP and node ports are answered, not claimed).
    let np: Service = serde_json::from_value(
        json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
    )?;
    let answered = services.create(&dry(), &np).await?;
    let spec = answered.spec.expect("spec");
    assert!(spec.cluster_ip.as_deref().is_some_and(|ip| ip.starts_with("10.")), "{spec:?}");
    assert!(spec.ports.iter().flatten().all(|p| p.node_port.is_some_and(|n| (30000..=32767).contains(&n))));
    unchanged.check("a dry-run service create").await;
    // ... a dry-run update to NodePort, of every patch type, and a replace.
    for (patch, what) in [
        (Patch::Merge(json!({"spec": {"type": "NodePort"}})), "merge"),
        (Patch::Strategic(json!({"spec": {"type": "LoadBalancer"}})), "strategic"),
        (
            Patch::Json(serde_json::from_value(json!([{"op": "replace", "path": "/spec/type", "value": "NodePort"}]))?),
            "json",
        ),
    ] {
        let out = services.patch("web", &dry_patch(), &patch).await?;
        let spec = out.spec.expect("spec");
        assert!(spec.ports.iter().flatten().all(|p| p.node_port.is_some()), "{what}: {spec:?}");
        unchanged.check(&format!("a dry-run {what} patch of a service")).await;
    }
    let apply = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    let pp = PatchParams { dry_run: true, ..PatchParams::apply("tester").force() };
    services.patch("web", &pp, &Patch::Apply(apply)).await?;
    unchanged.check("a dry-run server-side apply").await;
    let mut current = services.get("web").await?;
    current.spec.as_mut().expect("spec").type_ = Some("NodePort".into());
    services.replace("web", &dry(), &current).await?;
    unchanged.check("a dry-run replace").await;
    // Deletes: one, and a collection (the service keeps its address).
    services.delete("web", &dry_delete()).await?;
    services.delete_collection(&dry_delete(), &ListParams::default()).await?;
    unchanged.check("dry-run service deletes").await;
    assert_eq!(services.get("web").await?.spec.and_then(|s| s.cluster_ip), Some(stored_ip.clone()));

    // Pods: create (with its token volume admitted), binding, eviction, delete.
    let other: Pod = serde_json::from_value(
        json!({"metadata": {"name": "q"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
    )?;
    let answered = pods.create(&dry(), &other).await?;
    assert!(
        answered.spec.and_then(|s| s.volumes).is_some_and(|v| v.iter().any(|v| v.name.starts_with("kube-api-access-")))
    );
    pods.create_subresource::<Value, Value>("binding", "u", &dry(), &bind_to("u")).await?;
    assert_eq!(pods.get("u").await?.spec.and_then(|s| s.node_name), None, "a dry-run binding bound the pod");
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}, "deleteOptions": {"dryRun": ["All"]}});
    pods.create_subresource::<Value, Value>("eviction", "p", &PostParams::default(), &eviction).await?;
    unchanged.check("a dry-run eviction (pod and budget)").await;
    assert_eq!(budgets.get("pdb").await?.status.map(|s| s.disruptions_allowed), Some(Some(1)));
    pods.delete("p", &dry_delete()).await?;
    pods.delete_collection(&dry_delete(), &ListParams::default()).await?;
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), "default");
    let token = sa
        .create_token_request(
            "default",
            &dry(),
            &serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))?,
        )
        .await?;
    assert!(token.status.and_then(|s| s.token).is_some_and(|t| !t.is_empty()), "a dry-run TokenRequest answers");
    unchanged.check("dry-run pod writes").await;

    // Namespaces: a dry-run delete does not start terminating it.
    let out = namespaces.delete("team", &dry_delete()).await?;
    let answered = out.left().expect("the namespace as it would be");
    assert_eq!(answered.status.and_then(|s| s.phase).as_deref(), Some("Terminating"));
    assert_eq!(namespaces.get("team").await?.status.and_then(|s| s.phase).as_deref(), Some("Active"));
    namespaces.create(&dry(), &serde_json::from_value(json!({"metadata": {"name": "other"}}))?).await?;
    unchanged.check("dry-run namespace writes").await;
    assert!(namespaces.get_opt("other").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_service_changed_to_node_port_gets_node_ports_and_gives_them_back() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let web: Service = serde_json::from_value(
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 80}]}}),
    )?;
    let created = services.create(&PostParams::default(), &web).await?;
    let ip = created.spec.and_then(|s| s.cluster_ip).expect("cluster IP");
    let node_ports = |s: &Service| -> Vec<Option<i32>> {
        s.spec.as_ref().and_then(|s| s.ports.as_ref()).into_iter().flatten().map(|p| p.node_port).collect()
    };
    // ClusterIP -> NodePort: a node port per port, the cluster IP kept.
    let np =
        services.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"type": "NodePort"}}))).await?;
    let first = node_ports(&np);
    assert!(first.iter().all(|p| p.is_some_and(|n| (30000..=32767).contains(&n))), "{first:?}");
    assert_eq!(np.spec.as_ref().and_then(|s| s.cluster_ip.clone()), Some(ip.clone()));
    assert_eq!(np.spec.as_ref().and_then(|s| s.external_traffic_policy.as_deref()), Some("Cluster"));
    // A port added gets its own; the first keeps its.
    let two = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(
                json!([{"op": "add", "path": "/spec/ports/-", "value": {"name": "https", "port": 443}}]),
            )?),
        )
        .await?;
    let ports = node_ports(&two);
    assert_eq!(ports[0], first[0]);
    assert!(ports[1].is_some() && ports[1] != ports[0], "{ports:?}");
    // Another service cannot take a port in use...
    let taken: Service = serde_json::from_value(
        json!({"metadata": {"name": "taken"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": ports[0]}]}}),
    )?;
    let err = services.create(&PostParams::default(), &taken).await.expect_err("port in use");
    let kube::Error::Api(status) = err else { panic!("{err:?}") };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        format!(
            "Service \"taken\" is invalid: spec.ports[0].nodePort: Invalid value: {}: provided port is already allocated",
            ports[0].unwrap_or_default()
        )
    );
    // ... until the service goes back to ClusterIP, which gives its node ports back.
    let back =
        services.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"type": "ClusterIP"}}))).await?;
    assert_eq!(node_ports(&back), vec![None, None]);
    assert_eq!(back.spec.as_ref().and_then(|s| s.external_traffic_policy.clone()), None);
    services.create(&PostParams::default(), &taken).await?;
    // LoadBalancer with Local traffic: a health check port as well.
    let lb = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"}})),
        )
        .await?;
    let spec = lb.spec.clone().expect("spec");
    assert!(spec.health_check_node_port.is_some() && node_ports(&lb).iter().all(Option::is_some), "{spec:?}");
    assert_eq!(spec.allocate_load_balancer_node_ports, Some(true));
    // ExternalName: no address at all; back to ClusterIP: a new one.
    let external = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "ExternalName", "externalName": "example.com"}})),
        )
        .await?;
    let spec = external.spec.clone().expect("spec");
    assert_eq!((spec.cluster_ip.as_deref(), spec.health_check_node_port), (None, None), "{spec:?}");
    assert_eq!(node_ports(&external), vec![None, None]);
    let reclaimed: Service = serde_json::from_value(
        json!({"metadata": {"name": "reclaimed"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}),
    )?;
    services.create(&PostParams::default(), &reclaimed).await?;
    let again = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "ClusterIP", "externalName": null}})),
        )
        .await?;
    let new_ip = again.spec.and_then(|s| s.cluster_ip).expect("a new cluster IP");
    assert_ne!(new_ip, ip);
    // Headless services cannot become NodePort.
    let headless: Service = serde_json::from_value(
        json!({"metadata": {"name": "hl"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
    )?;
    services.create(&PostParams::default(), &headless).await?;
    let err = services
        .patch("hl", &PatchParams::default(), &Patch::Merge(json!({"spec": {"type": "NodePort"}})))
        .await
        .expect_err("headless NodePort");
    let kube::Error::Api(status) = err else { panic!("{err:?}") };
    assert_eq!(
        status.message,
        "Service \"hl\" is invalid: spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"
    );
    Ok(())
}
