//! End-to-end: node edits inside a virtual cluster, in each of the three modes, and
//! drain in the virtual cluster and on the host.

#[macro_use]
mod common;

use common::Vkube;
use common::tier::{Env, Tier};
use std::time::Duration;

const VIRTUAL_SCHEDULER: &str = "controlPlane:\n  advanced:\n    virtualScheduler:\n      enabled: true\n";
const SYNC_BACK: &str = "sync:\n  fromHost:\n    nodes:\n      enabled: true\n      syncBackChanges: true\n";

fn wait_nodes(vk: &Vkube, n: usize) {
    if vk.ok(&["get", "nodes", "--no-headers"]).lines().count() < n {
        vk.ok(&["create", "deployment", "warm", "--image=nginx", &format!("--replicas={}", n * 2)]);
        vk.ok(&["rollout", "status", "deploy/warm", "--timeout=30s"]);
    }
    vk.wait_for(&["get", "nodes", "--no-headers"], 20, |o| o.lines().count() >= n);
}

fn default_mode_warns_reverts_and_records_why(tier: Tier) {
    let vk = Env::start(tier, None);
    wait_nodes(&vk, 3);
    let (ok, _, err) = vk.kubectl(&["cordon", "node-1"]);
    assert!(ok, "{err}");
    assert!(err.contains("will be reverted because node specs are synced from the host cluster"), "{err}");
    assert!(
        err.contains("controlPlane.advanced.virtualScheduler.enabled")
            && err.contains("sync.fromHost.nodes.syncBackChanges"),
        "{err}"
    );
    // Reverted within a second.
    let started = std::time::Instant::now();
    vk.wait_for(&["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"], 5, |o| {
        o.is_empty() || o == "false"
    });
    assert!(started.elapsed() < Duration::from_secs(1), "revert took {:?}", started.elapsed());
    let described = vk.wait_for(&["describe", "node", "node-1"], 10, |o| o.contains("NodeChangeReverted"));
    assert!(described.contains("Reverted spec.unschedulable (false -> true) on node node-1"), "{described}");
    let (_, _, err) = vk.kubectl(&["label", "node", "node-2", "team=x"]);
    assert!(err.contains("label team will be reverted"), "{err}");
    vk.wait_for(&["get", "node", "node-2", "--show-labels"], 5, |o| !o.contains("team=x"));
    // Drain in the virtual cluster still evicts; the host scheduler places the pods.
    vk.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=3"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    let (ok, out, err) = vk.kubectl(&["drain", "node-3", "--ignore-daemonsets", "--timeout=30s"]);
    assert!(ok && out.contains("drained"), "{out}{err}");
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    vk.ok(&["rollout", "status", "deploy/warm", "--timeout=30s"]);
}

fn virtual_scheduler_keeps_edits_honours_them_and_merges_host_changes(tier: Tier) {
    let vk = Env::start(tier, Some(VIRTUAL_SCHEDULER));
    vk.wait_for(&["get", "nodes", "--no-headers"], 20, |o| o.lines().count() == 3);
    let (_, _, err) = vk.kubectl(&["cordon", "node-1"]);
    assert!(!err.contains("reverted"), "no revert warning in this mode: {err}");
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(vk.ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]), "true", "cordon persists");
    assert_eq!(
        vk.host_ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]),
        "",
        "host node untouched"
    );
    // The virtual scheduler honours it.
    vk.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=4"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    let nodes = vk.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"]);
    assert!(!nodes.contains("node-1"), "{nodes}");
    // Taints and tolerations in the virtual cluster.
    vk.ok(&["taint", "node", "node-2", "dedicated=gpu:NoSchedule"]);
    vk.ok(&["taint", "node", "node-3", "dedicated=gpu:NoSchedule"]);
    vk.ok(&["run", "nowhere", "--image=nginx"]);
    let described = vk.wait_for(&["describe", "pod", "nowhere"], 15, |o| o.contains("FailedScheduling"));
    assert!(
        described.contains(
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had untolerated taint(s). no new claims to deallocate, preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        ),
        "{described}"
    );
    let tolerating = "apiVersion: v1\nkind: Pod\nmetadata: {name: gpu}\nspec:\n  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]\n  containers: [{name: c, image: cuda}]\n";
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], tolerating);
    assert!(ok, "{err}");
    vk.wait_for(&["get", "pod", "gpu", "-o", "jsonpath={.status.phase}"], 20, |o| o == "Running");
    // A host label flows in while the virtual label stays.
    vk.ok(&["label", "node", "node-2", "team=blue"]);
    vk.host_ok(&["label", "node", "node-2", "disk=ssd"]);
    let labels = vk.wait_for(&["get", "node", "node-2", "--show-labels"], 10, |o| o.contains("disk=ssd"));
    assert!(labels.contains("team=blue"), "{labels}");
    assert!(!vk.host_ok(&["get", "node", "node-2", "--show-labels"]).contains("team=blue"));
    // Removing the override returns the field to the host's value.
    vk.ok(&["uncordon", "node-1"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(vk.ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]), "");
    // A restart keeps the overrides.
    vk.ok(&["cordon", "node-3"]);
    let vk = vk.kill9_and_restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(vk.ok(&["get", "node", "node-3", "-o", "jsonpath={.spec.unschedulable}"]), "true");
    let labels = vk.ok(&["get", "node", "node-2", "--show-labels"]);
    assert!(labels.contains("team=blue") && labels.contains("disk=ssd"), "{labels}");
}

fn sync_back_writes_through_to_host_nodes(tier: Tier) {
    let vk = Env::start(tier, Some(SYNC_BACK));
    vk.wait_for(&["get", "nodes", "--no-headers"], 20, |o| o.lines().count() == 3);
    vk.ok(&["cordon", "node-1"]);
    assert_eq!(
        vk.host_ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]),
        "true",
        "written before the answer"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(vk.ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]), "true");
    vk.ok(&["uncordon", "node-1"]);
    // kube-apiserver omits a false `unschedulable`; vkube keeps it.
    let host = vk.host_ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]);
    assert!(host == "false" || host.is_empty(), "host node still cordoned: {host}");
    vk.ok(&["label", "node", "node-2", "team=x"]);
    assert!(vk.host_ok(&["get", "node", "node-2", "--show-labels"]).contains("team=x"));
    vk.ok(&["taint", "node", "node-3", "dedicated=gpu:NoSchedule"]);
    assert!(vk.host_ok(&["get", "node", "node-3", "-o", "jsonpath={.spec.taints}"]).contains("dedicated"));
    vk.ok(&["taint", "node", "node-3", "dedicated-"]);
    assert!(!vk.host_ok(&["get", "node", "node-3", "-o", "jsonpath={.spec.taints}"]).contains("dedicated"));
    // The other way: host changes appear in the virtual cluster.
    vk.host_ok(&["label", "node", "node-1", "disk=ssd"]);
    vk.wait_for(&["get", "node", "node-1", "--show-labels"], 10, |o| o.contains("disk=ssd"));
    // A host refusal is the answer, and nothing is applied.
    let (ok, _, err) =
        vk.kubectl(&["patch", "node", "node-2", "-p", r#"{"metadata":{"labels":{"bad":"-not-valid-"}}}"#]);
    assert!(!ok && err.contains("host cluster refused"), "{err}");
    assert!(!vk.ok(&["get", "node", "node-2", "--show-labels"]).contains("bad="));
}

fn drain_on_the_host_evicts_synced_pods_and_they_come_back(tier: Tier) {
    let vk = Env::start(tier, None);
    vk.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=3"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    let host_node = vk.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].spec.nodeName}"]);
    let out = std::process::Command::new("kubectl")
        .args(["drain", &host_node, "--ignore-daemonsets", "--timeout=30s"])
        .env("KUBECONFIG", vk.host_kubeconfig())
        .output()
        .expect("host drain");
    assert!(out.status.success(), "host drain refused: {}", String::from_utf8_lossy(&out.stderr));
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    vk.wait_for(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"], 20, |o| {
        o.split_whitespace().count() == 3 && !o.split_whitespace().any(|n| n == host_node)
    });
}

fn virtual_no_execute_taints_evict_and_allocatable_excludes_host_pods(tier: Tier) {
    let vk = Env::start(tier, Some(VIRTUAL_SCHEDULER));
    vk.wait_for(&["get", "nodes", "--no-headers"], 20, |o| o.lines().count() == 3);
    // A host pod outside the virtual cluster takes 3 of node-1's 4 CPUs.
    let hog = "apiVersion: v1\nkind: Pod\nmetadata: {name: hog, namespace: default}\nspec:\n  nodeName: node-1\n  containers: [{name: c, image: x, resources: {requests: {cpu: \"3\"}}}]\n";
    let out = std::process::Command::new("kubectl")
        .args(["apply", "-f", "-"])
        .env("KUBECONFIG", vk.host_kubeconfig())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().map(|mut s| s.write_all(hog.as_bytes()));
            c.wait()
        })
        .expect("host apply");
    assert!(out.success());
    vk.host_ok(&["label", "node", "node-1", "touch=1"]);
    vk.wait_for(&["get", "node", "node-1", "-o", "jsonpath={.status.allocatable.cpu}"], 15, |o| o == "1");
    // NoExecute in the virtual cluster evicts pods that do not tolerate it.
    vk.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=3"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    vk.ok(&["taint", "node", "node-2", "maintenance=now:NoExecute"]);
    vk.ok(&["taint", "node", "node-3", "maintenance=now:NoSchedule"]);
    vk.wait_for(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"], 30, |o| {
        o.split_whitespace().count() == 3 && o.split_whitespace().all(|n| n != "node-2")
    });
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
}

fn both_keys_write_through_and_the_virtual_scheduler_uses_the_edits(tier: Tier) {
    let both = "controlPlane:\n  advanced:\n    virtualScheduler:\n      enabled: true\nsync:\n  fromHost:\n    nodes:\n      enabled: true\n      syncBackChanges: true\n";
    let vk = Env::start(tier, Some(both));
    vk.wait_for(&["get", "nodes", "--no-headers"], 20, |o| o.lines().count() == 3);
    vk.ok(&["cordon", "node-1"]);
    assert_eq!(vk.host_ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]), "true");
    vk.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=4"]);
    vk.ok(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    let nodes = vk.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"]);
    assert!(!nodes.contains("node-1"), "{nodes}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(vk.ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}"]), "true");
}

/// The host pods (in `vkube-vc`) whose virtual origin is the pod `name` in `default`,
/// found by their origin annotations, not by their names.
fn host_pods_of(vk: &Env, name: &str) -> Vec<(String, String)> {
    let out = vk.host_ok(&[
        "get",
        "pods",
        "-n",
        "vkube-vc",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.annotations.vkube\.dev/object-namespace}/{.metadata.annotations.vkube\.dev/object-name} {.metadata.name} {.spec.nodeName}{"\n"}{end}"#,
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&format!("default/{name}").as_str()))
                .then(|| (f.get(1).unwrap_or(&"").to_string(), f.get(2).unwrap_or(&"").to_string()))
        })
        .collect()
}

fn virtual_scheduler_holds_pods_that_fit_nowhere_off_the_host(tier: Tier) {
    let vk = Env::start(tier, Some(VIRTUAL_SCHEDULER));
    vk.wait_for(&["get", "nodes", "--no-headers"], 20, |o| o.lines().count() == 3);
    vk.ok(&["cordon", "node-2"]);
    vk.ok(&["taint", "node", "node-3", "dedicated=gpu:NoSchedule"]);
    vk.ok(&["taint", "node", "node-1", "maintenance=now:NoExecute"]);
    let pinned = |name: &str, node: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeSelector: {{kubernetes.io/hostname: {node}}}\n  containers: [{{name: c, image: nginx}}]\n"
        )
    };
    for (pod, node) in
        [("on-cordoned", "node-2"), ("on-tainted", "node-3"), ("on-noexecute", "node-1"), ("nowhere", "node-9")]
    {
        let (ok, _, err) = vk.apply(&["apply", "-f", "-"], &pinned(pod, node));
        assert!(ok, "{err}");
    }
    // kube-scheduler 1.36 stops at the first failing filter per node (NodeUnschedulable,
    // TaintToleration, NodeAffinity, ...): every node refuses before its selector counts.
    const ALL_REFUSE: &str = "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had untolerated taint(s). no new claims to deallocate, preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    let expected = [
        ("on-cordoned", ALL_REFUSE),
        ("on-tainted", ALL_REFUSE),
        ("on-noexecute", ALL_REFUSE),
        ("nowhere", ALL_REFUSE),
    ];
    let condition = r#"jsonpath={.status.phase} {.spec.nodeName}|{.status.conditions[?(@.type=="PodScheduled")].status} {.status.conditions[?(@.type=="PodScheduled")].reason}|{.status.conditions[?(@.type=="PodScheduled")].message}"#;
    for (pod, message) in expected {
        vk.wait_for(&["get", "pod", pod, "-o", condition], 15, |o| {
            o == format!("Pending |False Unschedulable|{message}")
        });
    }
    // Held for 15 s: still Pending, unbound, and no host pod was ever made for them.
    let held_until = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < held_until {
        for (pod, message) in expected {
            assert_eq!(vk.ok(&["get", "pod", pod, "-o", condition]), format!("Pending |False Unschedulable|{message}"));
            assert_eq!(host_pods_of(&vk, pod), vec![], "{pod} reached the host");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Once a pod fits, the virtual scheduler binds it and its host pod is made bound to
    // that node (not placed by the host scheduler).
    vk.ok(&["uncordon", "node-2"]);
    vk.wait_for(&["get", "pod", "on-cordoned", "-o", "jsonpath={.status.phase} {.spec.nodeName}"], 20, |o| {
        o == "Running node-2"
    });
    let host = host_pods_of(&vk, "on-cordoned");
    assert_eq!(host.len(), 1, "{host:?}");
    assert_eq!(host[0].1, "node-2");
    vk.ok(&["taint", "node", "node-3", "dedicated-"]);
    vk.wait_for(&["get", "pod", "on-tainted", "-o", "jsonpath={.status.phase} {.spec.nodeName}"], 20, |o| {
        o == "Running node-3"
    });
    // What is left: node-1's NoExecute taint, and a selector that matches no node.
    vk.wait_for(&["get", "pod", "nowhere", "-o", condition], 15, |o| {
        o == "Pending |False Unschedulable|0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match Pod's node affinity/selector. no new claims to deallocate, preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    });
    assert_eq!(host_pods_of(&vk, "nowhere"), vec![]);
    assert_eq!(host_pods_of(&vk, "on-noexecute"), vec![]);
    vk.ok(&["taint", "node", "node-1", "maintenance-"]);
    vk.wait_for(&["get", "pod", "on-noexecute", "-o", "jsonpath={.status.phase} {.spec.nodeName}"], 20, |o| {
        o == "Running node-1"
    });
    vk.wait_for(&["get", "pod", "nowhere", "-o", condition], 15, |o| {
        o == "Pending |False Unschedulable|0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. no new claims to deallocate, preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    });
    assert_eq!(host_pods_of(&vk, "nowhere"), vec![]);
}

/// What a node edit could change: its spec (unschedulable, taints) and its labels.
fn node_edit_fields(json: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(json).expect("node json");
    serde_json::json!({"spec": v["spec"], "labels": v["metadata"]["labels"]})
}

/// Every mutating verb on a node with `--dry-run=server`: the answer is the real one,
/// and nothing changes on the virtual node, on the host node, or in events.
fn dry_runs_change_nothing(vk: &Env) {
    vk.wait_for(&["get", "nodes", "--no-headers"], 20, |o| o.lines().count() == 3);
    let virtual_before = node_edit_fields(&vk.ok(&["get", "node", "node-1", "-o", "json"]));
    let host_before = node_edit_fields(&vk.host_ok(&["get", "node", "node-1", "-o", "json"]));
    let (ok, out, err) = vk.kubectl(&["cordon", "node-1", "--dry-run=server"]);
    assert!(ok && out.contains("cordoned (server dry run)"), "{out}{err}");
    for args in [
        vec!["label", "node", "node-1", "dry=run"],
        vec!["annotate", "node", "node-1", "dry=run"],
        vec!["taint", "node", "node-1", "dry=run:NoSchedule"],
        vec!["patch", "node", "node-1", "--type=merge", "-p", r#"{"spec":{"unschedulable":true}}"#],
        vec!["patch", "node", "node-1", "--type=strategic", "-p", r#"{"metadata":{"labels":{"dry":"run"}}}"#],
        vec![
            "patch",
            "node",
            "node-1",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/spec/unschedulable","value":true}]"#,
        ],
        vec!["delete", "node", "node-1"],
    ] {
        let mut args = args.clone();
        args.push("--dry-run=server");
        let (ok, out, err) = vk.kubectl(&args);
        assert!(ok, "{args:?}: {out}{err}");
    }
    let applied =
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-1, labels: {dry: run}}\nspec: {unschedulable: true}\n";
    let (ok, out, err) =
        vk.apply(&["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-"], applied);
    assert!(ok, "apply: {out}{err}");
    let mut replaced: serde_json::Value =
        serde_json::from_str(&vk.ok(&["get", "node", "node-1", "-o", "json"])).expect("json");
    replaced["spec"]["unschedulable"] = serde_json::json!(true);
    let (ok, out, err) = vk.apply(&["replace", "--dry-run=server", "-f", "-"], &replaced.to_string());
    assert!(ok, "replace: {out}{err}");
    // Nothing changed anywhere, then or later (the syncer saw no edit to revert).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(node_edit_fields(&vk.ok(&["get", "node", "node-1", "-o", "json"])), virtual_before, "virtual node");
    assert_eq!(node_edit_fields(&vk.host_ok(&["get", "node", "node-1", "-o", "json"])), host_before, "host node");
    let events = vk.ok(&[
        "get",
        "events",
        "-A",
        "--field-selector",
        "involvedObject.name=node-1",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(!events.contains("NodeChangeReverted"), "{events}");
}

fn dry_run_node_edits_change_nothing_in_the_default_mode(tier: Tier) {
    let vk = Env::start(tier, Some("sync:\n  fromHost:\n    nodes:\n      enabled: true\n"));
    dry_runs_change_nothing(&vk);
    // The answer is the real one: the warning comes with the dry run too.
    let (_, _, err) = vk.kubectl(&["cordon", "node-2", "--dry-run=server"]);
    assert!(err.contains("will be reverted"), "{err}");
    // Dry-run pods and services never reach the host (no copy, no token, no address).
    vk.ok(&["run", "dry", "--image=nginx", "--dry-run=server"]);
    vk.ok(&["create", "service", "nodeport", "dry", "--tcp=80", "--dry-run=server"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(host_pods_of(&vk, "dry"), vec![]);
    let services = vk.host_ok(&["get", "services", "-n", "vkube-vc", "-o", "name"]);
    assert!(!services.contains("dry"), "{services}");
    assert!(vk.kubectl(&["get", "pod", "dry"]).2.contains("NotFound"));
}

fn dry_run_node_edits_change_nothing_with_the_virtual_scheduler(tier: Tier) {
    let vk = Env::start(tier, Some(VIRTUAL_SCHEDULER));
    dry_runs_change_nothing(&vk);
}

fn dry_run_node_edits_change_nothing_with_sync_back(tier: Tier) {
    let vk = Env::start(tier, Some(SYNC_BACK));
    dry_runs_change_nothing(&vk);
    // A change the host refuses is refused in the dry run as well, with the host's words.
    let (ok, _, err) = vk.kubectl(&[
        "patch",
        "node",
        "node-2",
        "--dry-run=server",
        "-p",
        r#"{"metadata":{"labels":{"bad":"-not-valid-"}}}"#,
    ]);
    assert!(!ok && err.contains("host cluster refused"), "{err}");
    // And a real one still goes through.
    vk.ok(&["cordon", "node-2"]);
    assert_eq!(vk.host_ok(&["get", "node", "node-2", "-o", "jsonpath={.spec.unschedulable}"]), "true");
}

on_both_hosts!(
    default_mode_warns_reverts_and_records_why,
    virtual_scheduler_keeps_edits_honours_them_and_merges_host_changes,
    sync_back_writes_through_to_host_nodes,
    drain_on_the_host_evicts_synced_pods_and_they_come_back,
    virtual_no_execute_taints_evict_and_allocatable_excludes_host_pods,
    both_keys_write_through_and_the_virtual_scheduler_uses_the_edits,
    virtual_scheduler_holds_pods_that_fit_nowhere_off_the_host,
    dry_run_node_edits_change_nothing_in_the_default_mode,
    dry_run_node_edits_change_nothing_with_the_virtual_scheduler,
    dry_run_node_edits_change_nothing_with_sync_back,
);
