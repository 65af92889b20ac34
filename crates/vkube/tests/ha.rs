//! High availability: three `vkube serve` replicas of one virtual cluster on one etcd.
//! Every replica serves the API; the controllers and the syncer run on the Lease holder.
//! Kill -9 the leader under a continuous write load: another replica takes over within
//! the lease, no acknowledged write is lost, a watcher resumes on another replica from
//! its last resourceVersion without missing an event, and the syncer does not duplicate
//! host objects.
mod common;

use common::{Vkube, retry, start_host_in, start_role};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(15);
const RETRY: Duration = Duration::from_secs(2);

async fn client(vk: &Vkube) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&vk.kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.expect("config");
    kube::Client::try_from(cfg).expect("client")
}

fn server_of(vk: &Vkube) -> String {
    vk.ok(&["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"]).trim().to_string()
}

async fn holder(c: &kube::Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(c.clone(), "kube-system");
    leases.get_opt("vkube-leader").await.ok().flatten()?.spec?.holder_identity
}

fn host_pods(host: &Vkube) -> usize {
    host.ok(&["get", "pods", "-n", "vkube-ha", "-o", "name"]).lines().filter(|l| !l.is_empty()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_replica_loses_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (endpoints, _etcd) = vkube_etcdkit::shared().expect("etcd");
    let endpoints = endpoints.join(",");
    let prefix = vkube_etcdkit::unique_prefix("ha");
    let host = start_host_in(tempfile::tempdir().expect("tempdir"), 2);
    let host_kc = host.kubeconfig.to_string_lossy().into_owned();
    let mut replicas: Vec<Option<Vkube>> = (0..3)
        .map(|_| {
            let args = ["serve", "--name", "ha", "--host-kubeconfig", &host_kc, "--etcd-servers", &endpoints];
            let mut args = args.to_vec();
            args.extend(["--etcd-prefix", &prefix]);
            Some(start_role(tempfile::tempdir().expect("tempdir"), &args, "ha.kubeconfig"))
        })
        .collect();
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for r in replicas.iter().flatten() {
        clients.push(client(r).await);
        servers.push(server_of(r));
    }
    // One leader, one of the three.
    let leader_id = {
        let deadline = Instant::now() + LEASE;
        loop {
            if let Some(h) = holder(&clients[1]).await {
                break h;
            }
            assert!(Instant::now() < deadline, "no replica took the lease");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let leader = servers
        .iter()
        .position(|s| s.ends_with(leader_id.rsplit('_').next().unwrap_or("?")))
        .unwrap_or_else(|| panic!("leader {leader_id} is none of {servers:?}"));
    // The syncer works (through the leader): a deployment's pods reach the host.
    let any = replicas[(leader + 1) % 3].as_ref().expect("replica");
    any.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]);
    retry(30, || (host_pods(&host) == 2).then_some(()));

    // A watcher that starts on the leader and moves to another replica when it breaks.
    let cms0: Api<ConfigMap> = Api::namespaced(clients[leader].clone(), "default");
    let start_rv = cms0.list(&ListParams::default()).await.expect("list").metadata.resource_version.expect("rv");
    let dead = Arc::new(AtomicUsize::new(usize::MAX));
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let watcher = {
        let (clients, dead, seen) = (clients.clone(), dead.clone(), seen.clone());
        tokio::spawn(async move {
            let mut rv = start_rv;
            let mut at = leader;
            loop {
                let api: Api<ConfigMap> = Api::namespaced(clients[at].clone(), "default");
                if let Ok(stream) = api.watch(&WatchParams::default().timeout(290), &rv).await {
                    let mut stream = stream.boxed();
                    while let Some(ev) = stream.next().await {
                        match ev {
                            Ok(WatchEvent::Added(cm)) => {
                                rv = cm.metadata.resource_version.clone().unwrap_or(rv);
                                seen.lock().expect("lock").insert(cm.metadata.name.unwrap_or_default());
                            }
                            Ok(WatchEvent::Modified(cm) | WatchEvent::Deleted(cm)) => {
                                rv = cm.metadata.resource_version.unwrap_or(rv);
                            }
                            Ok(WatchEvent::Error(e)) => panic!("watch error resuming at {rv}: {e:?}"),
                            _ => {}
                        }
                    }
                }
                // Resume on another live replica from the last resourceVersion.
                at = (at + 1) % 3;
                if at == dead.load(Ordering::Relaxed) {
                    at = (at + 1) % 3;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // A writer creating through all three replicas in turn.
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at = Arc::new(Mutex::new(None::<Instant>));
    let writer = {
        let (clients, dead, stop, killed_at) = (clients.clone(), dead.clone(), stop.clone(), killed_at.clone());
        tokio::spawn(async move {
            let (mut acked, mut after_kill) = (Vec::new(), 0);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let at = i % 3;
                if at == dead.load(Ordering::Relaxed) {
                    continue;
                }
                let api: Api<ConfigMap> = Api::namespaced(clients[at].clone(), "default");
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": format!("w-{i}")}}))
                    .expect("configmap");
                let pp = PostParams::default();
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), api.create(&pp, &cm)).await {
                    acked.push(format!("w-{i}"));
                    if killed_at.lock().expect("lock").is_some() {
                        after_kill += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (acked, after_kill)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kill -9 the leader.
    let killed = Instant::now();
    dead.store(leader, Ordering::Relaxed);
    *killed_at.lock().expect("lock") = Some(killed);
    if let Some(vk) = replicas[leader].take() {
        vk.kill9();
    }
    let survivor = (leader + 1) % 3;
    let new_leader = loop {
        if let Some(h) = holder(&clients[survivor]).await
            && h != leader_id
        {
            break h;
        }
        assert!(killed.elapsed() < LEASE + RETRY + Duration::from_secs(3), "no replica took over the lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let took_over = killed.elapsed();
    assert!(took_over <= LEASE + RETRY + Duration::from_secs(3), "takeover took {took_over:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, after_kill) = writer.await.expect("writer");
    assert!(after_kill > 0, "no write was acknowledged after the leader died");

    // No acknowledged write is lost ...
    let cms: Api<ConfigMap> = Api::namespaced(clients[survivor].clone(), "default");
    let stored: BTreeSet<String> = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    for name in &acked {
        assert!(stored.contains(name), "acknowledged {name} lost");
    }
    // ... and the watcher, moved to another replica, saw every one.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let missing: Vec<String> = {
            let seen = seen.lock().expect("lock");
            acked.iter().filter(|n| !seen.contains(*n)).cloned().collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the watcher missed {missing:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.abort();

    // The new leader's syncer picks up where the old one left: no duplicates, and new
    // work is synced.
    let live = replicas[survivor].as_ref().expect("survivor");
    live.ok(&["scale", "deployment", "web", "--replicas=3"]);
    retry(30, || (host_pods(&host) == 3).then_some(()));
    live.wait_for(&["get", "pods", "-o", "name"], 30, |out| out.lines().count() == 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(host_pods(&host), 3, "host pods duplicated after the failover (new leader {new_leader})");
    eprintln!("takeover after {took_over:?}; {} writes acknowledged, {after_kill} after the kill", acked.len());

    // A leader stopped gracefully hands the Lease over: the last replica takes it at its
    // next retry, not after the lease runs out.
    let second = servers
        .iter()
        .position(|s| s.ends_with(new_leader.rsplit('_').next().unwrap_or("?")))
        .unwrap_or_else(|| panic!("leader {new_leader} is none of {servers:?}"));
    let last = (0..3).find(|i| *i != leader && *i != second).expect("a third replica");
    let stopped = Instant::now();
    if let Some(vk) = replicas[second].take() {
        vk.stop();
    }
    loop {
        if let Some(h) = holder(&clients[last]).await
            && h != new_leader
            && !h.is_empty()
        {
            break;
        }
        assert!(stopped.elapsed() < RETRY + Duration::from_secs(5), "the lease was not handed over on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("handover on SIGTERM after {:?}", stopped.elapsed());
}

/// `controlPlane.backingStore.etcd.external` in vcluster.yaml: endpoint, TLS with a client
/// certificate, and a key prefix. Without the client certificate etcd refuses, and
/// `vkube serve` says so instead of starting.
#[test]
fn etcd_from_vcluster_yaml_over_tls_under_a_prefix() {
    let certs = tempfile::tempdir().expect("tempdir");
    let pki = vkube_apiserver::pki::Pki::load_or_create(certs.path(), &["127.0.0.1".into()]).expect("pki");
    let client = pki.issue_client("vkube", &[]).expect("client cert");
    let dir = certs.path().join("pki");
    std::fs::write(dir.join("client.crt"), &client.cert_pem).expect("write");
    std::fs::write(dir.join("client.key"), &client.key_pem).expect("write");
    let tls = vkube_etcdkit::ServerTls {
        ca: dir.join("ca.crt"),
        cert: dir.join("serving.crt"),
        key: dir.join("serving.key"),
    };
    let etcd = vkube_etcdkit::EtcdCluster::start_with(1, Some(tls)).expect("etcd over TLS");
    let endpoint = etcd.endpoints()[0].clone();
    assert!(endpoint.starts_with("https://"));
    let host = start_host_in(tempfile::tempdir().expect("tempdir"), 1);
    let host_kc = host.kubeconfig.to_string_lossy().into_owned();
    let values = |with_client_cert: bool| {
        let client = if with_client_cert {
            format!(
                "\n          certFile: {}\n          keyFile: {}",
                dir.join("client.crt").display(),
                dir.join("client.key").display()
            )
        } else {
            String::new()
        };
        format!(
            "controlPlane:\n  backingStore:\n    etcd:\n      external:\n        enabled: true\n        endpoint: {endpoint}\n        prefix: /tenants/t1\n        tls:\n          caFile: {}{client}\n",
            dir.join("ca.crt").display()
        )
    };
    // No client certificate: refused, with a message that names etcd.
    let vc_dir = tempfile::tempdir().expect("tempdir");
    let bad = vc_dir.path().join("bad.yaml");
    std::fs::write(&bad, values(false)).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vkube"))
        .args(["serve", "--name", "t1", "--host-kubeconfig", &host_kc, "--listen", "127.0.0.1:0", "-f"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(vc_dir.path())
        .output()
        .expect("vkube serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served without a client certificate");
    assert!(err.contains("connecting to etcd at https://127.0.0.1"), "{err}");

    let good = certs.path().join("vcluster.yaml");
    std::fs::write(&good, values(true)).expect("write");
    let good = good.to_string_lossy().into_owned();
    let vc =
        start_role(vc_dir, &["serve", "--name", "t1", "--host-kubeconfig", &host_kc, "-f", &good], "t1.kubeconfig");
    vc.ok(&["create", "configmap", "hello", "--from-literal=a=b"]);
    assert!(vc.ok(&["get", "configmap", "hello", "-o", "jsonpath={.data.a}"]).contains('b'));
    // The object is in etcd under the prefix.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let keys = rt.block_on(async {
        let config = vkube_store::EtcdConfig {
            endpoints: vec![endpoint.clone()],
            prefix: "/tenants/t1".into(),
            ca_file: Some(dir.join("ca.crt")),
            cert_file: Some(dir.join("client.crt")),
            key_file: Some(dir.join("client.key")),
            compaction_interval: None,
        };
        let store = vkube_store::EtcdStore::connect(config).await.expect("connect");
        let list = vkube_store::Store::list(&store, "/registry/", Default::default()).await.expect("list");
        list.items.into_iter().map(|kv| kv.key).collect::<Vec<_>>()
    });
    assert!(keys.iter().any(|k| k.ends_with("/configmaps/default/hello")), "{keys:?}");
}
