//! End-to-end: `kubectl` against `vkube host` (API server, scheduler, controllers and
//! simulated nodes in one process).

mod common;

use common::{Vkube, start_host_in};

fn host(nodes: usize) -> Vkube {
    start_host_in(tempfile::tempdir().expect("tempdir"), nodes)
}

fn pod_nodes(vk: &Vkube, selector: &str) -> Vec<String> {
    let out = vk.ok(&["get", "pods", "-l", selector, "-o", "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}"]);
    out.lines().map(String::from).filter(|l| !l.is_empty()).collect()
}

#[test]
fn deployment_spreads_rolls_scales_and_undoes() {
    let vk = host(3);
    assert_eq!(
        vk.wait_for(&["get", "nodes", "--no-headers"], 10, |o| o.matches(" Ready ").count() == 3).lines().count(),
        3
    );
    vk.ok(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=3"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    let ready = vk.ok(&["get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}"]);
    assert_eq!(ready, "3");
    let mut nodes = pod_nodes(&vk, "app=web");
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "3 pods spread over 3 nodes: {nodes:?}");
    vk.ok(&["set", "image", "deploy/web", "nginx=nginx:1.26"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    vk.ok(&["rollout", "undo", "deploy/web"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    assert_eq!(
        vk.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]),
        "nginx:1.25"
    );
    let history = vk.ok(&["rollout", "history", "deploy/web"]);
    assert!(history.contains("3 "), "{history}");
    vk.ok(&["scale", "deploy/web", "--replicas=5"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    vk.wait_for(&["get", "pods", "-l", "app=web", "--no-headers"], 20, |o| {
        o.lines().filter(|l| l.contains("Running")).count() == 5
    });
    vk.ok(&["rollout", "restart", "deploy/web"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    let logs = vk.ok(&["logs", "deploy/web"]);
    assert!(logs.contains("[vkube-sim]"), "{logs}");
}

#[test]
fn cordon_taints_and_unschedulable_message() {
    let vk = host(3);
    vk.wait_for(&["get", "nodes", "--no-headers"], 10, |o| o.matches(" Ready ").count() == 3);
    vk.ok(&["cordon", "node-1"]);
    vk.ok(&["taint", "node", "node-2", "dedicated=gpu:NoSchedule"]);
    vk.ok(&["create", "deployment", "plain", "--image=nginx", "--replicas=4"]);
    vk.ok(&["rollout", "status", "deploy/plain", "--timeout=30s"]);
    assert!(pod_nodes(&vk, "app=plain").iter().all(|n| n == "node-3"), "cordoned and tainted nodes got no pods");
    let tolerating = r#"
apiVersion: v1
kind: Pod
metadata: {name: gpu-job, labels: {app: gpu}}
spec:
  nodeSelector: {kubernetes.io/hostname: node-2}
  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]
  containers: [{name: c, image: cuda}]
"#;
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], tolerating);
    assert!(ok, "{err}");
    vk.wait_for(&["get", "pod", "gpu-job", "-o", "jsonpath={.spec.nodeName}"], 10, |o| o == "node-2");
    vk.ok(&["taint", "node", "node-3", "dedicated=gpu:NoSchedule"]);
    vk.ok(&["run", "nowhere", "--image=nginx"]);
    let described = vk.wait_for(&["describe", "pod", "nowhere"], 10, |o| o.contains("FailedScheduling"));
    assert!(
        described.contains(
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had untolerated taint(s). no new claims to deallocate, preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        ),
        "{described}"
    );
    assert_eq!(
        vk.ok(&["get", "pod", "nowhere", "-o", "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}"]),
        "Unschedulable"
    );
    // Retried when a node changes, not by polling.
    vk.ok(&["uncordon", "node-1"]);
    vk.wait_for(&["get", "pod", "nowhere", "-o", "jsonpath={.spec.nodeName}"], 10, |o| o == "node-1");
}

#[test]
fn drain_evicts_and_pods_come_back_elsewhere() {
    let vk = host(3);
    vk.wait_for(&["get", "nodes", "--no-headers"], 10, |o| o.matches(" Ready ").count() == 3);
    vk.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=3"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    let (ok, out, err) = vk.kubectl(&["drain", "node-1", "--ignore-daemonsets", "--timeout=30s"]);
    assert!(ok && out.contains("node/node-1 drained"), "{out}{err}");
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    vk.wait_for(&["get", "pods", "-l", "app=web", "--no-headers"], 20, |o| {
        o.lines().filter(|l| l.contains("Running")).count() == 3
    });
    assert!(pod_nodes(&vk, "app=web").iter().all(|n| n != "node-1"), "no pod left on the drained node");
}

#[test]
fn namespace_deletion_cascades_and_jobs_complete() {
    let vk = host(2);
    vk.ok(&["create", "namespace", "team"]);
    vk.ok(&["create", "deployment", "w", "-n", "team", "--image=nginx", "--replicas=2"]);
    vk.ok(&["create", "configmap", "c", "-n", "team", "--from-literal=a=b"]);
    vk.ok(&["rollout", "status", "deploy/w", "-n", "team", "--timeout=30s"]);
    vk.ok(&["delete", "namespace", "team", "--timeout=30s"]);
    let (ok, _, err) = vk.kubectl(&["get", "namespace", "team"]);
    assert!(!ok && err.contains("not found"), "{err}");
    vk.ok(&["create", "namespace", "team"]);
    let leftovers = vk.ok(&["get", "deploy,rs,pods,cm", "-n", "team", "-o", "name"]);
    assert!(
        !leftovers.contains("deployment") && !leftovers.contains("pod/") && !leftovers.contains("configmap/c"),
        "{leftovers}"
    );
    vk.ok(&["create", "job", "once", "--image=busybox", "--", "echo", "hi"]);
    vk.ok(&["wait", "--for=condition=complete", "job/once", "--timeout=30s"]);
    assert!(vk.ok(&["get", "job", "once"]).contains("Complete"));
    let failing = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: bad}\nspec:\n  backoffLimit: 1\n  template:\n    metadata: {annotations: {vkube.dev/exit-code: \"3\", vkube.dev/run-seconds: \"0.1\"}}\n    spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}\n";
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], failing);
    assert!(ok, "{err}");
    vk.ok(&["wait", "--for=condition=failed", "job/bad", "--timeout=30s"]);
}

#[test]
fn garbage_collection_and_restart_resume() {
    let vk = host(2);
    vk.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    vk.ok(&["delete", "deployment", "web"]);
    vk.wait_for(&["get", "rs,pods", "-l", "app=web", "-o", "name"], 20, |o| o.trim().is_empty());
    vk.ok(&["create", "deployment", "keep", "--image=nginx", "--replicas=2"]);
    vk.ok(&["rollout", "status", "deploy/keep", "--timeout=30s"]);
    let dir = vk.stop();
    let vk = start_host_in(dir, 2);
    vk.ok(&["rollout", "status", "deploy/keep", "--timeout=30s"]);
    assert_eq!(
        vk.ok(&["get", "pods", "-l", "app=keep", "--no-headers"]).lines().count(),
        2,
        "no duplicate pods after a restart"
    );
}

#[test]
fn not_ready_node_gets_taints_once() {
    let vk = host(2);
    vk.wait_for(&["get", "nodes", "--no-headers"], 10, |o| o.matches(" Ready ").count() == 2);
    vk.ok(&["annotate", "node", "node-1", "vkube.dev/sim-not-ready=true"]);
    vk.wait_for(&["get", "node", "node-1", "--no-headers"], 10, |o| o.contains("NotReady"));
    let taints = vk.wait_for(
        &["get", "node", "node-1", "-o", "jsonpath={range .spec.taints[*]}{.key}:{.effect}{\"\\n\"}{end}"],
        10,
        |o| o.lines().count() == 2,
    );
    assert!(
        taints.contains("node.kubernetes.io/not-ready:NoSchedule")
            && taints.contains("node.kubernetes.io/not-ready:NoExecute"),
        "{taints}"
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    let again =
        vk.ok(&["get", "node", "node-1", "-o", "jsonpath={range .spec.taints[*]}{.key}:{.effect}{\"\\n\"}{end}"]);
    assert_eq!(again.lines().count(), 2, "no duplicate taints: {again}");
    vk.ok(&["annotate", "node", "node-1", "vkube.dev/sim-not-ready-"]);
    vk.wait_for(&["get", "node", "node-1", "-o", "jsonpath={.spec.taints}"], 15, |o| {
        o.trim().is_empty() || o.trim() == "[]"
    });
}

#[test]
fn daemonsets_and_statefulsets_roll_out() {
    let vk = host(3);
    vk.wait_for(&["get", "nodes", "--no-headers"], 10, |o| o.matches(" Ready ").count() == 3);
    let manifest = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: a, image: agent:1}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres:16}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"#;
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], manifest);
    assert!(ok, "{err}");
    vk.ok(&["rollout", "status", "ds/agent", "--timeout=30s"]);
    let mut nodes = pod_nodes(&vk, "app=agent");
    nodes.sort();
    assert_eq!(nodes, ["node-1", "node-2", "node-3"], "one daemon pod per node");
    vk.ok(&["rollout", "status", "sts/db", "--timeout=30s"]);
    assert_eq!(vk.ok(&["get", "pods", "-l", "app=db", "-o", "jsonpath={.items[*].metadata.name}"]), "db-0 db-1 db-2");
    assert_eq!(vk.ok(&["get", "pvc", "-o", "jsonpath={.items[*].metadata.name}"]), "data-db-0 data-db-1 data-db-2");
    vk.ok(&["set", "image", "ds/agent", "a=agent:2"]);
    vk.ok(&["rollout", "status", "ds/agent", "--timeout=30s"]);
    vk.ok(&["set", "image", "sts/db", "db=postgres:17"]);
    vk.ok(&["rollout", "status", "sts/db", "--timeout=30s"]);
    let images = vk.ok(&["get", "pods", "-l", "app=db", "-o", "jsonpath={.items[*].spec.containers[0].image}"]);
    assert_eq!(images, "postgres:17 postgres:17 postgres:17");
    vk.ok(&["scale", "sts/db", "--replicas=1"]);
    vk.wait_for(&["get", "pods", "-l", "app=db", "-o", "jsonpath={.items[*].metadata.name}"], 20, |o| o == "db-0");
}

#[test]
fn services_get_endpoints_and_budgets_block_eviction() {
    let vk = host(2);
    vk.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80"]);
    vk.ok(&["expose", "deployment", "web", "--port=8080", "--target-port=80"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    let eps = vk.wait_for(&["get", "endpoints", "web", "-o", "jsonpath={.subsets[0].addresses[*].ip}"], 15, |o| {
        o.split_whitespace().count() == 2
    });
    assert!(eps.split_whitespace().all(|ip| ip.starts_with("10.244.")), "{eps}");
    assert_eq!(vk.ok(&["get", "endpoints", "web", "-o", "jsonpath={.subsets[0].ports[0].port}"]), "80");
    let slices = vk.ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "jsonpath={.items[0].endpoints[*].addresses[0]}",
    ]);
    assert_eq!(slices.split_whitespace().count(), 2, "{slices}");
    // A budget that allows no disruption blocks eviction (drain reports it and retries).
    vk.ok(&["create", "poddisruptionbudget", "web", "--selector=app=web", "--min-available=2"]);
    vk.wait_for(&["get", "pdb", "web", "-o", "jsonpath={.status.currentHealthy}"], 15, |o| o == "2");
    let node = vk.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].spec.nodeName}"]);
    let (ok, out, err) = vk.kubectl(&["drain", &node, "--ignore-daemonsets", "--timeout=3s"]);
    assert!(!ok, "drain should not finish: {out}");
    assert!(err.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{err}");
}

#[test]
fn cascading_deletion_foreground_and_orphan() {
    let vk = host(2);
    vk.ok(&["create", "deployment", "fg", "--image=nginx", "--replicas=2"]);
    vk.ok(&["create", "deployment", "or", "--image=nginx", "--replicas=2"]);
    vk.ok(&["rollout", "status", "deploy/fg", "--timeout=30s"]);
    vk.ok(&["rollout", "status", "deploy/or", "--timeout=30s"]);
    vk.ok(&["delete", "deployment", "fg", "--cascade=foreground", "--timeout=30s"]);
    vk.wait_for(&["get", "rs,pods", "-l", "app=fg", "-o", "name"], 20, |o| o.trim().is_empty());
    vk.ok(&["delete", "deployment", "or", "--cascade=orphan", "--timeout=30s"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let left = vk.ok(&["get", "rs", "-l", "app=or", "-o", "jsonpath={.items[*].metadata.ownerReferences}"]);
    assert_eq!(vk.ok(&["get", "rs", "-l", "app=or", "-o", "name"]).lines().count(), 1, "orphaned ReplicaSet stays");
    assert!(left.trim().is_empty() || left.trim() == "[]", "owner reference removed: {left}");
}

#[test]
fn garbage_collection_follows_owners_of_any_kind() {
    // The collector watches every resource it discovers, custom ones included.
    let vk = host(1);
    let crd = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#;
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], crd);
    assert!(ok, "{err}");
    vk.ok(&["wait", "--for=condition=established", "crd/widgets.example.com", "--timeout=30s"]);
    let (ok, _, err) =
        vk.apply(&["apply", "-f", "-"], "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\n");
    assert!(ok, "{err}");
    let uid = vk.ok(&["get", "widget", "w1", "-o", "jsonpath={.metadata.uid}"]);
    let owned = |name: &str, uid: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  ownerReferences:\n  - {{apiVersion: example.com/v1, kind: Widget, name: w1, uid: {uid}}}\n"
        )
    };
    for (name, owner_uid) in [("dep", uid.trim()), ("stale", "00000000-0000-0000-0000-000000000000")] {
        let (ok, _, err) = vk.apply(&["apply", "-f", "-"], &owned(name, owner_uid));
        assert!(ok, "{err}");
    }
    vk.ok(&["create", "configmap", "unowned"]);
    // An owner of that name exists, but not with that uid: the dependent goes.
    vk.wait_for(&["get", "configmap", "-o", "name"], 40, |o| !o.contains("configmap/stale"));
    assert!(vk.ok(&["get", "configmap", "-o", "name"]).contains("configmap/dep"), "its owner is there");
    vk.ok(&["delete", "widget", "w1"]);
    vk.wait_for(&["get", "configmap", "-o", "name"], 40, |o| !o.contains("configmap/dep"));
    assert!(vk.ok(&["get", "configmap", "-o", "name"]).contains("configmap/unowned"));
}

/// Beyond 1,000 nodes the simulated nodes share one identity and one connection (see
/// `PER_NODE_IDENTITIES`): 1,500 register, all go Ready with their leases, and a
/// deployment's pods run on them.
#[test]
fn past_a_thousand_simulated_nodes_all_register_and_run_pods() {
    let vk = host(1500);
    vk.wait_for(&["get", "nodes", "--no-headers"], 120, |o| o.matches(" Ready ").count() == 1500);
    let leases =
        vk.wait_for(&["get", "leases", "-n", "kube-node-lease", "--no-headers"], 60, |o| o.lines().count() == 1500);
    assert!(leases.contains("node-1500"), "node-1500 holds its lease: {leases}");
    vk.ok(&["create", "deployment", "many", "--image=nginx:1.25", "--replicas=20"]);
    vk.ok(&["rollout", "status", "deploy/many", "--timeout=60s"]);
    let running = vk.ok(&["get", "pods", "-l", "app=many", "--field-selector=status.phase=Running", "--no-headers"]);
    assert_eq!(running.lines().count(), 20, "{running}");
}
