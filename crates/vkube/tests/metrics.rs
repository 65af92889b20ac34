//! `kubectl top` in a virtual cluster: `metrics.k8s.io` served from the host's metrics
//! API, pods under their virtual names; on a simulated host the usage is what the pods'
//! annotations (or requests) say, and the nodes' the sum of their pods'.

#[macro_use]
mod common;
use common::tier::{Env, Tier};

fn kubectl_top_shows_the_host_pods_usage_under_virtual_names(tier: Tier) {
    let vk = Env::start(tier, None);
    vk.ok(&[
        "run",
        "busy",
        "--image=busybox",
        "--annotations=vkube.dev/cpu-usage=300m",
        "--annotations=vkube.dev/memory-usage=100Mi",
    ]);
    vk.ok(&["wait", "--for=condition=Ready", "pod/busy", "--timeout=60s"]);
    let (ok, out, err) = vk.kubectl(&["top", "pods"]);
    if tier == Tier::Real {
        // The real tier's host runs no metrics-server: a clear 503, not a wrong answer.
        assert!(!ok && err.contains("the host cluster serves no metrics API"), "{out}{err}");
        return;
    }
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("busy ")).unwrap_or_default().to_string();
    assert_eq!(line.split_whitespace().collect::<Vec<_>>(), ["busy", "300m", "100Mi"], "{out}");
    let node = vk.ok(&["get", "pod", "busy", "-o", "jsonpath={.spec.nodeName}"]);
    let nodes = vk.ok(&["top", "nodes", "--no-headers"]);
    let row: Vec<&str> =
        nodes.lines().find(|l| l.starts_with(&format!("{node} "))).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row.get(1), Some(&"300m"), "the node's usage counts its pods': {nodes}");
    let (ok, _, err) = vk.kubectl(&["top", "pod", "nope"]);
    assert!(!ok && err.contains("podmetrics.metrics.k8s.io \"default/nope\" not found"), "{err}");
    // Authorization: view (which aggregates metrics-server's reader role) may, others not.
    let (ok, _, err) = vk.kubectl(&["--as=carol", "top", "pods"]);
    assert!(!ok && err.contains("cannot list resource \"pods\" in API group \"metrics.k8s.io\""), "{err}");
    vk.ok(&["create", "rolebinding", "carol-views", "--clusterrole=view", "--user=carol"]);
    let mut shown = String::new();
    for _ in 0..50 {
        let (ok, out, _) = vk.kubectl(&["--as=carol", "top", "pods"]);
        if ok {
            shown = out;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(shown.contains("busy"), "view may read metrics: {shown}");
}

on_both_hosts!(kubectl_top_shows_the_host_pods_usage_under_virtual_names);
