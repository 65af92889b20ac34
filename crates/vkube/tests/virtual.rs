//! End-to-end: `kubectl` against `vkube up` — a virtual cluster whose workloads run on a
//! simulated host — and against `vkube host` with two `vkube serve` beside it.

#[macro_use]
mod common;

use common::tier::{Env, HostCluster, Tier, VirtualCluster};
use common::{Vkube, start_host_in, start_role, start_up_in};

fn up() -> Vkube {
    start_up_in(tempfile::tempdir().expect("tempdir"), &[])
}

fn deployment_runs_on_host_nodes_with_configmaps_services_and_events(tier: Tier) {
    let vk = Env::start(tier, None);
    vk.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=3"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    let pods = vk.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.spec.nodeName} {.status.podIP}{\"\\n\"}{end}",
    ]);
    assert_eq!(pods.lines().count(), 3, "{pods}");
    let host = vk.host_ok(&[
        "get",
        "pods",
        "-n",
        "vkube-vc",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.spec.nodeName} {.status.podIP}{\"\\n\"}{end}",
    ]);
    for line in pods.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[1], "Running", "{line}");
        let host_line = format!("{}-x-default-x-vc Running {} {}", f[0], f[2], f[3]);
        assert!(host.contains(&host_line), "virtual {line} not on the host as {host_line}: {host}");
    }
    // Virtual nodes are the host nodes that run synced pods.
    let nodes = vk.ok(&["get", "nodes", "-o", "name"]);
    assert!(nodes.contains("node/node-"), "{nodes}");
    // A pod mounting a configmap gets it on the host.
    vk.ok(&["create", "configmap", "app-cfg", "--from-literal=mode=prod"]);
    let reader = "apiVersion: v1\nkind: Pod\nmetadata: {name: reader}\nspec:\n  containers: [{name: c, image: busybox, volumeMounts: [{name: cfg, mountPath: /etc/cfg}]}]\n  volumes: [{name: cfg, configMap: {name: app-cfg}}]\n";
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], reader);
    assert!(ok, "{err}");
    vk.wait_for(&["get", "pod", "reader", "-o", "jsonpath={.status.phase}"], 20, |o| o == "Running");
    assert_eq!(
        vk.host_ok(&["get", "cm", "app-cfg-x-default-x-vc", "-n", "vkube-vc", "-o", "jsonpath={.data.mode}"]),
        "prod"
    );
    assert_eq!(
        vk.host_ok(&[
            "get",
            "pod",
            "reader-x-default-x-vc",
            "-n",
            "vkube-vc",
            "-o",
            "jsonpath={.spec.volumes[0].configMap.name}"
        ]),
        "app-cfg-x-default-x-vc"
    );
    // A service gets a host cluster IP, mirrored back.
    vk.ok(&["expose", "deployment", "web", "--port=80"]);
    let host_ip = common::retry(20, || {
        let out = std::process::Command::new("kubectl")
            .args(["get", "svc", "web-x-default-x-vc", "-n", "vkube-vc", "-o", "jsonpath={.spec.clusterIP}"])
            .env("KUBECONFIG", vk.host_kubeconfig())
            .output()
            .ok()?;
        let ip = String::from_utf8_lossy(&out.stdout).into_owned();
        (!ip.is_empty()).then_some(ip)
    });
    vk.wait_for(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"], 20, |o| o == host_ip);
    // Events about the pods appear in the virtual cluster.
    let events = vk.wait_for(&["get", "events", "--field-selector", "involvedObject.name=reader"], 20, |o| {
        o.contains("Scheduled")
    });
    assert!(events.contains("Successfully assigned default/reader to node-"), "{events}");
    // kubectl logs shows the host pod's logs.
    let logs = vk.ok(&["logs", "reader"]);
    assert!(logs.contains("pod vkube-vc/reader-x-default-x-vc"), "{logs}");
    // The host's status in the virtual pod's terms: the generations the kubelet saw are
    // the virtual pod's, its QoS class its own — also after a spec change.
    let generations = r#"jsonpath={.metadata.generation} {.status.observedGeneration} {.status.conditions[?(@.type=="Ready")].observedGeneration} {.status.qosClass} {.status.phase}"#;
    vk.wait_for(&["get", "pod", "reader", "-o", generations], 20, |o| o == "1 1 1 BestEffort Running");
    vk.ok(&["set", "image", "pod/reader", "c=busybox:1.37"]);
    vk.wait_for(&["get", "pod", "reader", "-o", generations], 20, |o| o == "2 2 2 BestEffort Running");
    assert_eq!(
        vk.host_ok(&[
            "get",
            "pod",
            "reader-x-default-x-vc",
            "-n",
            "vkube-vc",
            "-o",
            "jsonpath={.spec.containers[0].image}"
        ]),
        "busybox:1.37"
    );
    // Labels and annotations follow too (services select host pods by them).
    vk.ok(&["label", "pod", "reader", "tier=frontend"]);
    vk.ok(&["annotate", "pod", "reader", "team=blue"]);
    let host_meta = r#"jsonpath={.metadata.labels.tier} {.metadata.annotations.team}"#;
    common::retry(20, || {
        let out = vk.host.kubectl(&["get", "pod", "reader-x-default-x-vc", "-n", "vkube-vc", "-o", host_meta]).1;
        (out == "frontend blue").then_some(())
    });
    vk.ok(&["label", "pod", "reader", "tier-"]);
    vk.ok(&["annotate", "pod", "reader", "team-"]);
    common::retry(20, || {
        let out = vk.host.kubectl(&["get", "pod", "reader-x-default-x-vc", "-n", "vkube-vc", "-o", host_meta]).1;
        (out == " ").then_some(())
    });
}

fn deletes_work_both_ways(tier: Tier) {
    let vk = Env::start(tier, None);
    vk.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    // Virtual delete: the host copy goes.
    let victim = vk.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]);
    vk.ok(&["delete", "pod", &victim, "--timeout=30s"]);
    let host_victim = format!("{victim}-x-default-x-vc");
    common::retry(20, || {
        let out = std::process::Command::new("kubectl")
            .args(["get", "pods", "-n", "vkube-vc", "-o", "name"])
            .env("KUBECONFIG", vk.host_kubeconfig())
            .output()
            .ok()?;
        (!String::from_utf8_lossy(&out.stdout).contains(&host_victim)).then_some(())
    });
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    // Host delete (out of band): the virtual pod goes and its ReplicaSet makes another.
    let host_pod =
        vk.host_ok(&["get", "pods", "-n", "vkube-vc", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]);
    let virtual_name = host_pod.trim_end_matches("-x-default-x-vc").to_string();
    vk.host_ok(&["delete", "pod", "-n", "vkube-vc", &host_pod]);
    vk.wait_for(&["get", "pods", "-l", "app=web", "-o", "name"], 20, |o| {
        !o.contains(&virtual_name) && o.lines().count() == 2
    });
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    // Deleting the deployment empties the host namespace of its pods.
    vk.ok(&["delete", "deployment", "web"]);
    common::retry(30, || {
        let out = std::process::Command::new("kubectl")
            .args(["get", "pods", "-n", "vkube-vc", "-l", "app=web", "-o", "name"])
            .env("KUBECONFIG", vk.host_kubeconfig())
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().is_empty().then_some(())
    });
}

fn kill_9_restart_keeps_everything_and_duplicates_nothing(tier: Tier) {
    let vk = Env::start(tier, None);
    vk.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=3"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    let before = vk.host_ok(&["get", "pods", "-n", "vkube-vc", "-o", "jsonpath={.items[*].metadata.uid}"]);
    let vk = vk.kill9_and_restart();
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(vk.ok(&["get", "pods", "-l", "app=web", "--no-headers"]).lines().count(), 3);
    let after = vk.host_ok(&["get", "pods", "-n", "vkube-vc", "-o", "jsonpath={.items[*].metadata.uid}"]);
    assert_eq!(before, after, "the same host pods, none added or replaced");
}

fn two_virtual_clusters_on_one_host_are_isolated(tier: Tier) {
    let host = HostCluster::start(tier);
    let host_kc = host.kubeconfig.display().to_string();
    let a = VirtualCluster::start(&host, "a", "shared", None);
    let b = VirtualCluster::start(&host, "b", "shared", None);
    // An object of the host's own in that namespace: never touched.
    host.ok(&["create", "configmap", "precious", "-n", "shared", "--from-literal=k=v"]);
    for vc in [&a, &b] {
        vc.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]);
        vc.ok(&["create", "configmap", "cfg", "--from-literal=k=v"]);
    }
    a.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    b.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    let host_pods = host.ok(&["get", "pods", "-n", "shared", "-o", "name"]);
    assert_eq!(host_pods.lines().filter(|l| l.ends_with("-x-default-x-a")).count(), 2, "{host_pods}");
    assert_eq!(host_pods.lines().filter(|l| l.ends_with("-x-default-x-b")).count(), 2, "{host_pods}");
    // Each sees only its own.
    assert_eq!(a.ok(&["get", "pods", "--no-headers"]).lines().count(), 2);
    a.ok(&["delete", "deployment", "web"]);
    a.wait_for(&["get", "pods", "--no-headers"], 30, |o| o.trim().is_empty());
    std::thread::sleep(std::time::Duration::from_secs(3));
    let host_pods = host.ok(&["get", "pods", "-n", "shared", "-o", "name"]);
    assert_eq!(host_pods.lines().filter(|l| l.ends_with("-x-default-x-b")).count(), 2, "b untouched: {host_pods}");
    assert_eq!(b.ok(&["get", "pods", "--no-headers"]).lines().count(), 2);
    // Uninstalling a removes what a created, nothing else.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vkube"))
        .args(["uninstall", "--name", "a", "--host-namespace", "shared", "--host-kubeconfig", &host_kc])
        .output()
        .expect("uninstall");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(a);
    let left = host.ok(&["get", "pods,cm,svc", "-n", "shared", "-o", "name"]);
    assert!(!left.contains("-x-a"), "{left}");
    assert!(left.contains("configmap/precious"), "{left}");
    assert_eq!(left.lines().filter(|l| l.starts_with("pod/") && l.ends_with("-x-default-x-b")).count(), 2, "{left}");
}

#[test]
fn bad_vcluster_yaml_is_refused_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let values = dir.path().join("vcluster.yaml");
    std::fs::write(&values, "sync:\n  fromHost:\n    nodes:\n      enabled: true\n      syncBackChange: true\n")
        .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vkube"))
        .args(["up", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("-f")
        .arg(&values)
        .output()
        .expect("vkube up");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "vcluster.yaml:5: sync.fromHost.nodes.syncBackChange: unknown key (did you mean syncBackChanges?)"
        ),
        "{err}"
    );
}

fn claims_ingresses_service_accounts_and_selectorless_endpoints_reach_the_host(tier: Tier) {
    let values = "sync:\n  toHost:\n    ingresses:\n      enabled: true\n    serviceAccounts:\n      enabled: true\n";
    let vk = Env::start(tier, Some(values));
    let manifest = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules: [{host: web.example, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: builder}
---
apiVersion: v1
kind: Service
metadata: {name: external}
spec: {ports: [{port: 5432}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: external}
subsets: [{addresses: [{ip: 192.0.2.10}], ports: [{port: 5432}]}]
"#;
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], manifest);
    assert!(ok, "{err}");
    let found = |args: &[&str]| {
        common::retry(20, || {
            let out = std::process::Command::new("kubectl")
                .args(args)
                .env("KUBECONFIG", vk.host_kubeconfig())
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && !text.trim().is_empty()).then_some(text)
        })
    };
    assert_eq!(
        found(&[
            "get",
            "pvc",
            "data-x-default-x-vc",
            "-n",
            "vkube-vc",
            "-o",
            "jsonpath={.spec.resources.requests.storage}"
        ]),
        "1Gi"
    );
    assert_eq!(
        found(&[
            "get",
            "ingress",
            "web-x-default-x-vc",
            "-n",
            "vkube-vc",
            "-o",
            "jsonpath={.spec.rules[0].http.paths[0].backend.service.name}"
        ]),
        "web-x-default-x-vc"
    );
    found(&["get", "sa", "builder-x-default-x-vc", "-n", "vkube-vc", "-o", "name"]);
    assert_eq!(
        found(&[
            "get",
            "endpoints",
            "external-x-default-x-vc",
            "-n",
            "vkube-vc",
            "-o",
            "jsonpath={.subsets[0].addresses[0].ip}"
        ]),
        "192.0.2.10"
    );
    vk.ok(&["delete", "pvc", "data"]);
    common::retry(20, || {
        let out = std::process::Command::new("kubectl")
            .args(["get", "pvc", "-n", "vkube-vc", "-o", "name"])
            .env("KUBECONFIG", vk.host_kubeconfig())
            .output()
            .ok()?;
        (!String::from_utf8_lossy(&out.stdout).contains("data-x-default-x-vc")).then_some(())
    });
}

fn the_syncer_converges_after_a_host_outage(tier: Tier) {
    let Env { mut host, vc } = Env::start(tier, None);
    vc.ok(&["create", "deployment", "before", "--image=nginx", "--replicas=1"]);
    vc.ok(&["rollout", "status", "deploy/before", "--timeout=30s"]);
    // The host's API goes away; work is created in the virtual cluster meanwhile. It
    // comes back on the same address: the syncer catches up.
    host.outage(|| {
        vc.ok(&["create", "deployment", "during", "--image=nginx", "--replicas=2"]);
        std::thread::sleep(std::time::Duration::from_secs(2));
    });
    vc.ok(&["rollout", "status", "deploy/during", "--timeout=60s"]);
    let host_pods = host.ok(&["get", "pods", "-n", "vkube-vc", "--no-headers"]);
    assert_eq!(host_pods.lines().filter(|l| l.starts_with("during-")).count(), 2, "{host_pods}");
    assert_eq!(host_pods.lines().filter(|l| l.starts_with("before-")).count(), 1, "{host_pods}");
}

fn pods_get_a_virtual_cluster_token_that_kubectl_accepts(tier: Tier) {
    let vk = Env::start(tier, None);
    vk.ok(&["run", "tok", "--image=busybox"]);
    vk.wait_for(&["get", "pod", "tok", "-o", "jsonpath={.status.phase}"], 30, |o| o == "Running");
    // The virtual cluster publishes its CA in every namespace; the pod's copy is on the host.
    assert!(vk.ok(&["get", "cm", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}"]).contains("BEGIN CERTIFICATE"));
    assert!(
        vk.host_ok(&[
            "get",
            "cm",
            "kube-root-ca.crt-x-default-x-vc",
            "-n",
            "vkube-vc",
            "-o",
            "jsonpath={.data.ca\\.crt}"
        ])
        .contains("BEGIN CERTIFICATE")
    );
    // The host pod carries a token of the virtual cluster, read through the downward API.
    let host_pod: serde_json::Value =
        serde_json::from_str(&vk.host_ok(&["get", "pod", "tok-x-default-x-vc", "-n", "vkube-vc", "-o", "json"]))
            .expect("json");
    let annotations = host_pod["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
    let (key, token) = annotations
        .iter()
        .find(|(k, _)| k.starts_with("vkube.dev/token-"))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .expect("token annotation");
    let sources = host_pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"].as_str().is_some_and(|n| n.starts_with("kube-api-access-")))
        .map(|v| v["projected"]["sources"].clone())
        .expect("token volume on the host pod");
    assert_eq!(
        sources[0]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
        format!("metadata.annotations['{key}']")
    );
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt-x-default-x-vc");
    assert_eq!(host_pod["spec"]["automountServiceAccountToken"], false, "no host token");
    // kubectl with only that token is the pod's service account in the virtual cluster.
    let server = vk.ok(&["config", "view", "--raw", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    let ca = vk.ok(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]);
    // In-pod clients are pointed at the virtual API server.
    let env = host_pod["spec"]["containers"][0]["env"].as_array().cloned().unwrap_or_default();
    let var = |n: &str| env.iter().find(|e| e["name"] == n).and_then(|e| e["value"].as_str()).map(String::from);
    let url = format!(
        "https://{}:{}",
        var("KUBERNETES_SERVICE_HOST").unwrap_or_default(),
        var("KUBERNETES_SERVICE_PORT").unwrap_or_default()
    );
    assert_eq!(url, server, "{env:?}");
    let kc = serde_json::json!({"apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "vc", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "vc", "user": "sa"}}]});
    let kc_path = vk.dir.path().join("sa.kubeconfig");
    std::fs::write(&kc_path, kc.to_string()).expect("write kubeconfig");
    let as_sa = |args: &[&str]| {
        let out =
            std::process::Command::new("kubectl").args(args).env("KUBECONFIG", &kc_path).output().expect("kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = as_sa(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert!(ok, "{err}");
    assert_eq!(out, "system:serviceaccount:default:default");
    // Deleting the pod revokes its token.
    vk.ok(&["delete", "pod", "tok", "--wait=true"]);
    let (ok, _, err) = as_sa(&["auth", "whoami"]);
    assert!(!ok && err.contains("Unauthorized"), "{err}");
}

fn host_storage_classes_appear_in_the_virtual_cluster(tier: Tier) {
    let vk = Env::start(tier, Some("sync:\n  fromHost:\n    storageClasses:\n      enabled: true\n"));
    let host_sc = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: fast, labels: {tier: ssd}}\nprovisioner: csi.example.com\nparameters: {type: ssd}\nvolumeBindingMode: WaitForFirstConsumer\n";
    let out = std::process::Command::new("kubectl")
        .args(["apply", "-f", "-"])
        .env("KUBECONFIG", vk.host_kubeconfig())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(host_sc.as_bytes())?;
            c.wait_with_output()
        })
        .expect("kubectl");
    assert!(out.status.success());
    // A class the user makes in the virtual cluster is theirs: never touched.
    vk.apply(
        &["apply", "-f", "-"],
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: mine}\nprovisioner: example.com/local\n",
    );
    vk.wait_for(
        &[
            "get",
            "sc",
            "fast",
            "-o",
            "jsonpath={.provisioner} {.parameters.type} {.volumeBindingMode} {.metadata.labels.tier}",
        ],
        20,
        |o| o == "csi.example.com ssd WaitForFirstConsumer ssd",
    );
    // Host changes flow in; a host class that goes takes its copy along.
    vk.host_ok(&["label", "sc", "fast", "tier=nvme", "--overwrite"]);
    vk.wait_for(&["get", "sc", "fast", "-o", "jsonpath={.metadata.labels.tier}"], 20, |o| o == "nvme");
    vk.host_ok(&["delete", "sc", "fast"]);
    vk.wait_for(&["get", "sc", "-o", "name"], 20, |o| !o.contains("storageclass.storage.k8s.io/fast"));
    assert!(vk.ok(&["get", "sc", "-o", "name"]).contains("storageclass.storage.k8s.io/mine"));
}

/// The host objects of `kind` in `namespace` whose origin annotations name `origin`
/// (`NS/NAME`): (host name, uid, podIP). `kubectl` runs kubectl against the host.
fn host_copies(
    kubectl: impl Fn(&[&str]) -> String,
    kind: &str,
    namespace: &str,
    origin: &str,
) -> Vec<(String, String, String)> {
    let out = kubectl(&[
        "get",
        kind,
        "-n",
        namespace,
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.annotations.vkube\.dev/object-namespace}/{.metadata.annotations.vkube\.dev/object-name} {.metadata.name} {.metadata.uid} {.status.podIP}{"\n"}{end}"#,
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&origin)).then(|| {
                let at = |i: usize| f.get(i).unwrap_or(&"").to_string();
                (at(1), at(2), at(3))
            })
        })
        .collect()
}

#[test]
fn two_virtual_objects_never_share_one_host_object() {
    let vk = up();
    // `a-x-b` in `c` and `a` in `b-x-c` both read `a-x-b-x-c-x-vc`.
    vk.ok(&["create", "namespace", "c"]);
    vk.ok(&["create", "namespace", "b-x-c"]);
    for (ns, name, mode) in [("c", "a-x-b", "first"), ("b-x-c", "a", "second")] {
        vk.ok(&["create", "configmap", "cfg-x-1", "-n", ns, &format!("--from-literal=mode={mode}")]);
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}\nspec:\n  containers: [{{name: c, image: nginx, envFrom: [{{configMapRef: {{name: cfg-x-1}}}}]}}]\n"
        );
        let (ok, _, err) = vk.apply(&["apply", "-f", "-"], &pod);
        assert!(ok, "{err}");
        vk.ok(&["expose", "pod", name, "-n", ns, "--port=80"]);
    }
    for (ns, name) in [("c", "a-x-b"), ("b-x-c", "a")] {
        vk.wait_for(&["get", "pod", name, "-n", ns, "-o", "jsonpath={.status.phase}"], 20, |o| o == "Running");
    }
    let first = host_copies(|a| vk.host_ok(a), "pods", "vkube-vc", "c/a-x-b");
    let second = host_copies(|a| vk.host_ok(a), "pods", "vkube-vc", "b-x-c/a");
    assert_eq!((first.len(), second.len()), (1, 1), "{first:?} {second:?}");
    assert_ne!(first[0].0, second[0].0, "one host pod for two virtual pods");
    // Each virtual pod shows its own host pod's IP, not the other's.
    for (ns, name, copy) in [("c", "a-x-b", &first[0]), ("b-x-c", "a", &second[0])] {
        assert_eq!(vk.ok(&["get", "pod", name, "-n", ns, "-o", "jsonpath={.status.podIP}"]), copy.2);
    }
    assert_ne!(first[0].2, second[0].2);
    // Each reads its own configmap and has its own service.
    for (ns, mode) in [("c", "first"), ("b-x-c", "second")] {
        let cms = host_copies(|a| vk.host_ok(a), "configmaps", "vkube-vc", &format!("{ns}/cfg-x-1"));
        assert_eq!(cms.len(), 1, "{cms:?}");
        assert_eq!(vk.host_ok(&["get", "cm", &cms[0].0, "-n", "vkube-vc", "-o", "jsonpath={.data.mode}"]), mode);
    }
    common::retry(20, || {
        let a = host_copies(|a| vk.host_ok(a), "services", "vkube-vc", "c/a-x-b");
        let b = host_copies(|a| vk.host_ok(a), "services", "vkube-vc", "b-x-c/a");
        (a.len() == 1 && b.len() == 1 && a[0].0 != b[0].0).then_some(())
    });
}

#[test]
fn pods_synced_under_an_older_name_keep_their_host_pod() {
    let host = start_host_in(tempfile::tempdir().expect("tempdir"), 2);
    let host_kc = host.kubeconfig.display().to_string();
    let serve = |dir| {
        start_role(
            dir,
            &["serve", "--name", "vc", "--host-namespace", "shared", "--host-kubeconfig", &host_kc],
            "vc.kubeconfig",
        )
    };
    let vc = serve(tempfile::tempdir().expect("tempdir"));
    vc.ok(&["create", "namespace", "c"]);
    vc.ok(&["run", "a-x-b", "-n", "c", "--image=nginx"]);
    vc.wait_for(&["get", "pod", "a-x-b", "-n", "c", "-o", "jsonpath={.status.phase}"], 20, |o| o == "Running");
    // What an older vkube left: the same host pod under the name that did not read back.
    let dir = vc.stop();
    let copies = host_copies(|a| host.ok(a), "pods", "shared", "c/a-x-b");
    assert_eq!(copies.len(), 1);
    let json = host.ok(&["get", "pod", &copies[0].0, "-n", "shared", "-o", "json"]);
    let mut pod: serde_json::Value = serde_json::from_str(&json).expect("pod json");
    pod["metadata"]["name"] = serde_json::json!("a-x-b-x-c-x-vc");
    for f in ["uid", "resourceVersion", "creationTimestamp", "managedFields"] {
        pod["metadata"].as_object_mut().map(|m| m.remove(f));
    }
    host.ok(&["delete", "pod", &copies[0].0, "-n", "shared", "--grace-period=0", "--force"]);
    let (ok, _, err) = host.apply(&["create", "-f", "-"], &pod.to_string());
    assert!(ok, "{err}");
    host.wait_for(&["get", "pod", "a-x-b-x-c-x-vc", "-n", "shared", "-o", "jsonpath={.status.phase}"], 20, |o| {
        o == "Running"
    });
    let legacy_uid = host.ok(&["get", "pod", "a-x-b-x-c-x-vc", "-n", "shared", "-o", "jsonpath={.metadata.uid}"]);
    // The upgraded syncer keeps using it: no second copy, the pod not recreated.
    let vc = serve(dir);
    vc.wait_for(&["get", "pod", "a-x-b", "-n", "c", "-o", "jsonpath={.status.phase}"], 20, |o| o == "Running");
    std::thread::sleep(std::time::Duration::from_secs(5));
    let copies = host_copies(|a| host.ok(a), "pods", "shared", "c/a-x-b");
    assert_eq!(copies, vec![("a-x-b-x-c-x-vc".to_string(), legacy_uid, copies[0].2.clone())], "{copies:?}");
    assert_eq!(vc.ok(&["get", "pod", "a-x-b", "-n", "c", "-o", "jsonpath={.status.podIP}"]), copies[0].2);
    // A new pod with such a name gets the one-to-one name.
    vc.ok(&["run", "d-x-e", "-n", "c", "--image=nginx"]);
    vc.wait_for(&["get", "pod", "d-x-e", "-n", "c", "-o", "jsonpath={.status.phase}"], 20, |o| o == "Running");
    let new = host_copies(|a| host.ok(a), "pods", "shared", "c/d-x-e");
    assert_eq!(new.len(), 1);
    assert_ne!(new[0].0, "d-x-e-x-c-x-vc");
}

on_both_hosts!(
    deployment_runs_on_host_nodes_with_configmaps_services_and_events,
    deletes_work_both_ways,
    kill_9_restart_keeps_everything_and_duplicates_nothing,
    pods_get_a_virtual_cluster_token_that_kubectl_accepts,
    two_virtual_clusters_on_one_host_are_isolated,
    claims_ingresses_service_accounts_and_selectorless_endpoints_reach_the_host,
    the_syncer_converges_after_a_host_outage,
    host_storage_classes_appear_in_the_virtual_cluster,
);

/// A ResourceQuota acts: its status counts what the namespace holds, a pod past
/// `spec.hard` is refused with kube-apiserver's message and is not created, and the
/// syncer's re-creation of a service with the host's cluster IP survives the quota
/// (it counted the copy it replaces until the controller recounted).
#[test]
fn resource_quotas_count_refuse_past_hard_and_keep_synced_services() {
    let vk = up();
    vk.ok(&["create", "namespace", "q"]);
    vk.ok(&["create", "quota", "q", "-n", "q", "--hard=pods=1,requests.cpu=1,services=2,services.nodeports=1"]);
    let used = |key: &str| format!("jsonpath={{.status.used.{key}}}");
    vk.wait_for(&["get", "quota", "q", "-n", "q", "-o", &used("pods")], 20, |o| o == "0");
    vk.ok(&["run", "a", "-n", "q", "--image=nginx", "--overrides={\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"nginx\",\"resources\":{\"requests\":{\"cpu\":\"600m\"}}}]}}"]);
    vk.wait_for(
        &["get", "quota", "q", "-n", "q", "-o", "jsonpath={.status.used.pods} {.status.used.requests\\.cpu}"],
        20,
        |o| o == "1 600m",
    );
    let (ok, _, err) = vk.kubectl(&["run", "b", "-n", "q", "--image=nginx"]);
    assert!(!ok, "a second pod passed a quota of one");
    assert!(
        err.contains("pods \"b\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"),
        "{err}"
    );
    let (found, _, _) = vk.kubectl(&["get", "pod", "b", "-n", "q"]);
    assert!(!found, "the refused pod exists");
    // Services: the syncer re-creates each with the host's cluster IP; both stay.
    vk.ok(&["create", "service", "clusterip", "s1", "-n", "q", "--tcp=80:80"]);
    vk.ok(&["create", "service", "nodeport", "s2", "-n", "q", "--tcp=80:80"]);
    let host_ip = |name: &str| {
        vk.host_ok(&["get", "svc", "-n", "vkube-vc", &format!("{name}-x-q-x-vc"), "-o", "jsonpath={.spec.clusterIP}"])
    };
    for s in ["s1", "s2"] {
        let want = common::retry(20, || Some(host_ip(s)).filter(|ip| !ip.is_empty()));
        vk.wait_for(&["get", "svc", s, "-n", "q", "-o", "jsonpath={.spec.clusterIP}"], 30, |o| o == want);
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let names = vk.ok(&["get", "svc", "-n", "q", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert_eq!(names, "s1 s2", "a synced service was lost");
    vk.wait_for(&["get", "quota", "q", "-n", "q", "-o", &used("services")], 20, |o| o == "2");
}

/// vcluster.yaml `policies`, as vCluster deploys them: the ResourceQuota and LimitRange
/// `vc-NAME` in the host namespace (the quota's keys over vCluster's defaults, the
/// limit range following it by `auto`), pods the host refuses stay Pending without a host
/// copy and say why in a SyncError event, and every virtual namespace — there before,
/// made after, or stripped of its label — enforces the pod security standard.
#[test]
fn policies_deploy_the_host_quota_and_limit_range_and_label_namespaces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let values = dir.path().join("vcluster.yaml");
    std::fs::write(
        &values,
        "policies:\n  podSecurityStandard: baseline\n  resourceQuota:\n    enabled: true\n    quota:\n      count/pods: 2\n",
    )
    .expect("write values");
    let values = values.to_string_lossy().into_owned();
    let vk = common::start_up_in(dir, &["-f", &values]);
    let hard = vk.host_ok(&["get", "resourcequota", "vc-vc", "-n", "vkube-vc", "-o", "jsonpath={.spec.hard}"]);
    assert!(hard.contains(r#""count/pods":"2""#) && hard.contains(r#""limits.memory":"40Gi""#), "{hard}");
    let defaults =
        vk.host_ok(&["get", "limitrange", "vc-vc", "-n", "vkube-vc", "-o", "jsonpath={.spec.limits[0].default}"]);
    assert!(defaults.contains(r#""cpu":"1""#) && defaults.contains(r#""memory":"512Mi""#), "{defaults}");
    // Namespaces enforce baseline: the ones made at start, new ones, and one whose
    // label a tenant takes off.
    let label = "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}";
    assert_eq!(vk.ok(&["get", "ns", "default", "-o", label]), "baseline");
    vk.ok(&["create", "ns", "team"]);
    assert_eq!(vk.ok(&["get", "ns", "team", "-o", label]), "baseline");
    vk.ok(&["label", "ns", "team", "pod-security.kubernetes.io/enforce=privileged", "--overwrite"]);
    assert_eq!(vk.ok(&["get", "ns", "team", "-o", label]), "baseline");
    let privileged = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"root","namespace":"team"},
        "spec":{"containers":[{"name":"c","image":"busybox","securityContext":{"privileged":true}}]}}"#;
    let (ok, _, err) = vk.apply(&["create", "-f", "-"], privileged);
    assert!(!ok && err.contains("violates PodSecurity \"baseline:latest\""), "{err}");
    // The limit range's defaults reach the host copies; the quota counts them all.
    for name in ["a", "b", "c"] {
        let pod = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"c","image":"busybox"}}]}}}}"#
        );
        let (ok, _, err) = vk.apply(&["create", "-f", "-"], &pod);
        assert!(ok, "{err}");
        if name != "c" {
            vk.wait_for(&["get", "pod", name, "-o", "jsonpath={.status.phase}"], 60, |p| p == "Running");
        }
    }
    let limits = vk.host_ok(&[
        "get",
        "pod",
        "a-x-default-x-vc",
        "-n",
        "vkube-vc",
        "-o",
        "jsonpath={.spec.containers[0].resources.limits.memory}",
    ]);
    assert_eq!(limits, "512Mi");
    let events = vk.wait_for(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=c,reason=SyncError",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        60,
        |m| m.contains("exceeded quota: vc-vc"),
    );
    assert!(events.contains("Error syncing to physical cluster: "), "{events}");
    // Pending for good, and no host copy.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(vk.ok(&["get", "pod", "c", "-o", "jsonpath={.status.phase}"]), "Pending");
    let host_pods = vk.host_ok(&["get", "pods", "-n", "vkube-vc", "-o", "name"]);
    assert!(!host_pods.contains("c-x-default-x-vc"), "{host_pods}");
}

/// `sync.fromHost.{priorityClasses, runtimeClasses, ingressClasses}`: the host's classes
/// appear in the virtual cluster (only those the selector picks), a pod there can name
/// them, a host change flows in, a class removed on the host goes, and a built-in or
/// user-made class of the same name is never touched.
#[test]
fn classes_come_from_the_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let values = dir.path().join("vcluster.yaml");
    std::fs::write(
        &values,
        "sync:\n  fromHost:\n    priorityClasses:\n      enabled: true\n    runtimeClasses:\n      enabled: true\n    ingressClasses:\n      enabled: true\n      selector:\n        matchLabels:\n          team: a\n",
    )
    .expect("write values");
    let values = values.to_string_lossy().into_owned();
    let vk = common::start_up_in(dir, &["-f", &values]);
    let host_apply = |manifest: &str| {
        let mut child = std::process::Command::new("kubectl")
            .args(["apply", "-f", "-"])
            .env("KUBECONFIG", vk.host_kubeconfig())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(manifest.as_bytes()).expect("write");
        let out = child.wait_with_output().expect("kubectl");
        assert!(out.status.success(), "host apply: {}", String::from_utf8_lossy(&out.stderr));
    };
    host_apply(
        r#"{"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"scheduling.k8s.io/v1","kind":"PriorityClass","metadata":{"name":"high"},"value":1000,"description":"batch"},
        {"apiVersion":"node.k8s.io/v1","kind":"RuntimeClass","metadata":{"name":"gvisor"},"handler":"runsc"},
        {"apiVersion":"networking.k8s.io/v1","kind":"IngressClass","metadata":{"name":"nginx","labels":{"team":"a"}},"spec":{"controller":"k8s.io/ingress-nginx"}},
        {"apiVersion":"networking.k8s.io/v1","kind":"IngressClass","metadata":{"name":"other"},"spec":{"controller":"example.com/other"}}]}"#,
    );
    vk.wait_for(&["get", "priorityclass", "high", "-o", "jsonpath={.value}"], 30, |v| v == "1000");
    vk.wait_for(&["get", "runtimeclass", "gvisor", "-o", "jsonpath={.handler}"], 30, |v| v == "runsc");
    vk.wait_for(&["get", "ingressclass", "nginx", "-o", "jsonpath={.spec.controller}"], 30, |v| {
        v == "k8s.io/ingress-nginx"
    });
    let (found, _, _) = vk.kubectl(&["get", "ingressclass", "other"]);
    assert!(!found, "an ingress class the selector does not pick was copied");
    // The host's system-node-critical is not copied over the virtual cluster's own.
    assert_eq!(vk.ok(&["get", "priorityclass", "system-node-critical", "-o", "jsonpath={.value}"]), "2000001000");
    // A pod names the copied classes; the Priority admission reads the copy.
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"batch"},
        "spec":{"priorityClassName":"high","runtimeClassName":"gvisor","containers":[{"name":"c","image":"busybox"}]}}"#;
    let (ok, _, err) = vk.apply(&["create", "-f", "-"], pod);
    assert!(ok, "{err}");
    assert_eq!(vk.ok(&["get", "pod", "batch", "-o", "jsonpath={.spec.priority}"]), "1000");
    // A host change flows in (the immutable value by replacing the copy); a removal too.
    host_apply(
        r#"{"apiVersion":"scheduling.k8s.io/v1","kind":"PriorityClass","metadata":{"name":"high"},"value":1000,"description":"nightly batch"}"#,
    );
    vk.wait_for(&["get", "priorityclass", "high", "-o", "jsonpath={.description}"], 30, |v| v == "nightly batch");
    vk.host_ok(&["delete", "runtimeclass", "gvisor"]);
    vk.wait_for(&["get", "runtimeclass", "-o", "name"], 30, |v| !v.contains("gvisor"));
}
