//! API server replicas on one etcd, in process: they share the CA (any replica's
//! kubeconfig works on every one), each other's CRDs, and never hand out one service
//! address twice.
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use vkube_testkit::TestServer;

async fn replica(endpoints: &[String], prefix: &str) -> anyhow::Result<TestServer> {
    let config = vkube_store::EtcdConfig { endpoints: endpoints.to_vec(), prefix: prefix.into(), ..Default::default() };
    // As `vkube` runs replicas on etcd: behind the watch cache.
    let etcd = Arc::new(vkube_store::EtcdStore::connect(config).await?);
    let store = Arc::new(vkube_store::CachedStore::start(etcd).await?);
    TestServer::start_on(store, |c| {
        c.replicated = true;
        // 61 usable addresses: concurrent creates on two replicas collide unless they
        // coordinate through the store.
        c.service_cidr = (std::net::Ipv4Addr::new(10, 0, 0, 0), 26);
    })
    .await
}

/// A client with `a`'s credentials, pointed at `b`.
async fn cross_client(a: &TestServer, b: &TestServer) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(a.kubeconfig())?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    config.cluster_url = b.server().url.parse()?;
    Ok(kube::Client::try_from(config)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_etcd_share_keys_crds_and_the_address_range() -> anyhow::Result<()> {
    let (endpoints, _etcd) = vkube_etcdkit::shared()?;
    let prefix = vkube_etcdkit::unique_prefix("replicas");
    let a = replica(&endpoints, &prefix).await?;
    let b = replica(&endpoints, &prefix).await?;
    let (ca, cb) = (a.client().await?, cross_client(&a, &b).await?);

    // 50 services at once, half through each replica.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        tasks.push(tokio::spawn(async move {
            let api: Api<Service> = Api::namespaced(client, "default");
            let svc: Service = serde_json::from_value(
                json!({"metadata": {"name": format!("s{i}")}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
            )?;
            let created = api.create(&PostParams::default(), &svc).await?;
            let spec = created.spec.unwrap_or_default();
            let node_port = spec.ports.unwrap_or_default().first().and_then(|p| p.node_port).unwrap_or(0);
            Ok::<_, anyhow::Error>((spec.cluster_ip.unwrap_or_default(), node_port))
        }));
    }
    let (mut ips, mut ports) = (BTreeSet::new(), BTreeSet::new());
    for t in tasks {
        let (ip, port) = t.await??;
        assert!(ips.insert(ip.clone()), "cluster IP {ip} handed out twice");
        assert!(ports.insert(port), "node port {port} handed out twice");
    }
    // Deleting a service frees its address for a new one at once.
    let through_a: Api<Service> = Api::namespaced(ca.clone(), "default");
    let s0 = through_a.get("s0").await?;
    let ip0 = s0.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
    through_a.delete("s0", &Default::default()).await?;
    let again: Service = serde_json::from_value(
        json!({"metadata": {"name": "again"}, "spec": {"clusterIP": ip0, "ports": [{"port": 80}]}}),
    )?;
    let through_b: Api<Service> = Api::namespaced(cb.clone(), "default");
    through_b.create(&PostParams::default(), &again).await?;

    // A CRD created through one replica is served by the other.
    use kube::core::{DynamicObject, GroupVersionKind};
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(ca.clone());
    let crd = serde_json::from_value(json!({
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))?;
    crds.create(&PostParams::default(), &crd).await?;
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Gadget");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let ar = loop {
        match kube::discovery::pinned_kind(&cb, &gvk).await {
            Ok((ar, _)) => break ar,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "replica b never served the CRD: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    let gadgets: Api<DynamicObject> = Api::namespaced_with(cb.clone(), "default", &ar);
    let g: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"n": 1}}),
    )?;
    gadgets.create(&PostParams::default(), &g).await?;
    a.stop().await;
    b.stop().await;
    Ok(())
}

/// One etcd member killed and restarted while clients write through two replicas and
/// watch through one: writes go on, nothing acknowledged is lost, the watch misses
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_member_killed_under_load_through_the_api() -> anyhow::Result<()> {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{ListParams, WatchEvent, WatchParams};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let mut etcd = vkube_etcdkit::EtcdCluster::start(3)?;
    let prefix = vkube_etcdkit::unique_prefix("member-kill");
    let a = replica(&etcd.endpoints(), &prefix).await?;
    let b = replica(&etcd.endpoints(), &prefix).await?;
    let (ca, cb) = (a.client().await?, cross_client(&a, &b).await?);
    let cms_b: Api<ConfigMap> = Api::namespaced(cb.clone(), "default");
    let rv = cms_b.list(&ListParams::default()).await?.metadata.resource_version.unwrap_or_default();
    let mut watch = cms_b.watch(&WatchParams::default().timeout(120), &rv).await?.boxed();
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicUsize::new(0));
    let per_phase: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
    let writer = {
        let (stop, phase, per_phase, clients) =
            (stop.clone(), phase.clone(), per_phase.clone(), [ca.clone(), cb.clone()]);
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let api: Api<ConfigMap> = Api::namespaced(clients[i % 2].clone(), "default");
                let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("c-{i}")}}))?;
                let pp = PostParams::default();
                match tokio::time::timeout(std::time::Duration::from_secs(5), api.create(&pp, &cm)).await {
                    Ok(Ok(_)) => {
                        acked.push(format!("c-{i}"));
                        per_phase[phase.load(Ordering::Relaxed)].fetch_add(1, Ordering::Relaxed);
                    }
                    _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                }
            }
            Ok::<_, anyhow::Error>(acked)
        })
    };
    // Each phase lasts until writes have gone on in it (or fails at a deadline).
    let wait_writes = |i: usize, what: &'static str| {
        let per_phase = per_phase.clone();
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            while per_phase[i].load(Ordering::Relaxed) < 30 {
                assert!(tokio::time::Instant::now() < deadline, "writes stalled {what}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    wait_writes(0, "before the kill").await;
    etcd.kill(0);
    phase.store(1, Ordering::Relaxed);
    wait_writes(1, "with a member down").await;
    let etcd = tokio::task::spawn_blocking(move || etcd.restart(0).map(|()| etcd)).await??;
    phase.store(2, Ordering::Relaxed);
    wait_writes(2, "after the restart").await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await??;
    let stored: BTreeSet<String> =
        cms_b.list(&ListParams::default()).await?.items.into_iter().filter_map(|c| c.metadata.name).collect();
    for n in &acked {
        assert!(stored.contains(n), "acknowledged {n} lost");
    }
    let mut seen = BTreeSet::new();
    while acked.iter().any(|n| !seen.contains(n)) {
        match tokio::time::timeout(std::time::Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(WatchEvent::Added(cm)))) => {
                seen.insert(cm.metadata.name.unwrap_or_default());
            }
            Ok(Some(Ok(WatchEvent::Error(e)))) => panic!("watch error: {e:?}"),
            Ok(Some(Ok(_))) => {}
            other => panic!("watch ended or stalled with {} of {} seen: {other:?}", seen.len(), acked.len()),
        }
    }
    a.stop().await;
    b.stop().await;
    drop(etcd);
    Ok(())
}
