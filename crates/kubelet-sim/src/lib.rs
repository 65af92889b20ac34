//! vkube-kubelet-sim: simulated nodes, like KWOK. A client of the Kubernetes API (it
//! never touches a store), so it runs against any cluster.
//!
//! Start with [`SimulatedNodes::start`]: it registers N nodes with realistic labels,
//! capacity, addresses and conditions, renews their Leases in `kube-node-lease`, and
//! runs every pod bound to them: Pending → Running with an IP from the node's podCIDR;
//! pods with `restartPolicy` Never/OnFailure finish after a simulated run time
//! (annotation [`RUN_SECONDS`], default 1 s) with an exit code ([`EXIT_CODE`], default
//! 0); deleted pods are removed once their containers stop.
//!
//! A node can be made NotReady for fault tests with the annotation [`NOT_READY`] set to
//! `"true"`: it stops its heartbeats and reports `Ready=False`.

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Annotation on a pod: how many seconds a Never/OnFailure pod runs (default 1).
pub const RUN_SECONDS: &str = "vkube.dev/run-seconds";
/// Annotation on a pod: the exit code it finishes with (default 0).
pub const EXIT_CODE: &str = "vkube.dev/exit-code";
/// Annotation on a node: `"true"` makes it NotReady (heartbeats stop).
pub const NOT_READY: &str = "vkube.dev/sim-not-ready";

const FIELD_MANAGER: &str = "vkube-kubelet-sim";

/// How the simulated nodes look.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// How many nodes.
    pub count: usize,
    /// Node names are `{prefix}{i}` (1-based).
    pub name_prefix: String,
    /// CPU capacity per node.
    pub cpu: String,
    /// Memory capacity per node.
    pub memory: String,
    /// Pod capacity per node.
    pub pods: u32,
    /// Zones to spread nodes over (round robin).
    pub zones: Vec<String>,
    /// Lease renewal period.
    pub heartbeat: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            count: 3,
            name_prefix: "node-".into(),
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            zones: vec!["zone-a".into(), "zone-b".into(), "zone-c".into()],
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// Running simulated nodes; dropping the handle stops them.
pub struct SimulatedNodes {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The node names.
    pub names: Vec<String>,
}

impl Drop for SimulatedNodes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn mp() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

fn now() -> String {
    vkube_core::meta::now_rfc3339()
}

fn micro_now() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

fn node_object(cfg: &NodeConfig, i: usize, name: &str) -> Value {
    let zone = cfg.zones.get(i % cfg.zones.len().max(1)).cloned().unwrap_or_else(|| "zone-a".into());
    let cidr = format!("10.244.{}.0/24", i + 1);
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "vkube-sim.medium",
                "topology.kubernetes.io/zone": zone,
                "topology.kubernetes.io/region": "region-1",
                "type": "vkube-sim",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
    })
}

fn node_status(cfg: &NodeConfig, i: usize, name: &str, ready: bool) -> Value {
    let t = now();
    let resources =
        json!({"cpu": cfg.cpu, "memory": cfg.memory, "pods": cfg.pods.to_string(), "ephemeral-storage": "100Gi"});
    let (status, reason, message) = if ready {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        ("False", "KubeletNotReady", "simulated node made NotReady")
    };
    json!({
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [{"type": "InternalIP", "address": format!("172.18.{}.{}", i / 250, i % 250 + 2)}, {"type": "Hostname", "address": name}],
            "nodeInfo": {
                "machineID": format!("{:032x}", i + 1),
                "systemUUID": uuid::Uuid::new_v4().to_string(),
                "bootID": uuid::Uuid::new_v4().to_string(),
                "kernelVersion": "6.1.0-vkube",
                "osImage": "vkube simulated node",
                "containerRuntimeVersion": "vkube-sim://0.1.0",
                "kubeletVersion": "v1.37.0-vkube",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available", "lastHeartbeatTime": t, "lastTransitionTime": t},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure", "lastHeartbeatTime": t, "lastTransitionTime": t},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available", "lastHeartbeatTime": t, "lastTransitionTime": t},
                {"type": "Ready", "status": status, "reason": reason, "message": message, "lastHeartbeatTime": t, "lastTransitionTime": t},
            ],
        }
    })
}

struct Shared {
    client: kube::Client,
    cfg: NodeConfig,
    names: Vec<String>,
    index: HashMap<String, usize>,
    /// Pod uids already started / finishing / deleting.
    started: Mutex<HashSet<String>>,
    finishing: Mutex<HashSet<String>>,
    deleting: Mutex<HashSet<String>>,
    /// Next IP suffix per node.
    next_ip: Mutex<HashMap<String, u32>>,
}

impl SimulatedNodes {
    /// Register the nodes and start simulating them.
    ///
    /// # Errors
    /// If a node cannot be registered.
    pub async fn start(client: kube::Client, cfg: NodeConfig) -> anyhow::Result<Self> {
        let names: Vec<String> = (1..=cfg.count).map(|i| format!("{}{i}", cfg.name_prefix)).collect();
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        let shared = Arc::new(Shared {
            client: client.clone(),
            cfg: cfg.clone(),
            names: names.clone(),
            index,
            started: Default::default(),
            finishing: Default::default(),
            deleting: Default::default(),
            next_ip: Default::default(),
        });
        let nodes: Api<Node> = Api::all(client.clone());
        for (i, name) in names.iter().enumerate() {
            match nodes
                .create(
                    &PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() },
                    &serde_json::from_value(node_object(&cfg, i, name))?,
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            let current = nodes.get(name).await?;
            let ready =
                current.metadata.annotations.as_ref().is_none_or(|a| a.get(NOT_READY).is_none_or(|v| v != "true"));
            nodes.patch_status(name, &mp(), &Patch::Merge(node_status(&cfg, i, name, ready))).await?;
        }
        let tasks = vec![
            tokio::spawn(heartbeats(shared.clone())),
            tokio::spawn(run_pods(shared.clone())),
            tokio::spawn(watch_nodes(shared.clone())),
        ];
        Ok(SimulatedNodes { tasks, names })
    }
}

async fn renew_lease(leases: &Api<Lease>, name: &str, period: Duration) {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": (period.as_secs() * 4).max(4), "renewTime": micro_now()},
    });
    if let Err(e) = leases.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(lease)).await {
        tracing::debug!("lease {name}: {e}");
    }
}

async fn heartbeats(shared: Arc<Shared>) {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let mut tick = 0u64;
    loop {
        for (i, name) in shared.names.iter().enumerate() {
            let Ok(node) = nodes.get(name).await else { continue };
            let not_ready =
                node.metadata.annotations.as_ref().is_some_and(|a| a.get(NOT_READY).is_some_and(|v| v == "true"));
            if not_ready {
                continue;
            }
            renew_lease(&leases, name, shared.cfg.heartbeat).await;
            if tick % 6 == 5
                && let Err(e) =
                    nodes.patch_status(name, &mp(), &Patch::Merge(node_status(&shared.cfg, i, name, true))).await
            {
                tracing::warn!("node {name}: status heartbeat: {e}");
            }
        }
        tick += 1;
        tokio::time::sleep(shared.cfg.heartbeat).await;
    }
}

/// React to NotReady annotations at once.
async fn watch_nodes(shared: Arc<Shared>) {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let mut last: HashMap<String, bool> = HashMap::new();
    let stream = watcher(nodes.clone(), watcher::Config::default()).default_backoff().applied_objects();
    futures::pin_mut!(stream);
    while let Some(ev) = stream.next().await {
        let Ok(node) = ev else { continue };
        let name = node.metadata.name.clone().unwrap_or_default();
        let Some(&i) = shared.index.get(&name) else { continue };
        let not_ready =
            node.metadata.annotations.as_ref().is_some_and(|a| a.get(NOT_READY).is_some_and(|v| v == "true"));
        let ready_now = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        if last.get(&name) == Some(&not_ready) && ready_now != not_ready {
            continue;
        }
        last.insert(name.clone(), not_ready);
        if not_ready != ready_now {
            continue;
        }
        if let Err(e) =
            nodes.patch_status(&name, &mp(), &Patch::Merge(node_status(&shared.cfg, i, &name, !not_ready))).await
        {
            tracing::warn!("node {name}: reporting readiness: {e}");
        }
    }
}

fn allocate_ip(shared: &Shared, node: &str) -> String {
    let i = shared.index.get(node).copied().unwrap_or(0);
    let mut next = shared.next_ip.lock().unwrap_or_else(|e| e.into_inner());
    let n = next.entry(node.to_string()).or_insert(2);
    let ip = format!("10.244.{}.{}", i + 1, *n);
    *n = if *n >= 254 { 2 } else { *n + 1 };
    ip
}

fn container_names(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| (c.name.clone(), c.image.clone().unwrap_or_default())).collect())
        .unwrap_or_default()
}

fn running_status(pod: &Pod, node_ip: &str, pod_ip: &str) -> Value {
    let t = now();
    let statuses: Vec<Value> = container_names(pod)
        .into_iter()
        .map(|(name, image)| json!({"name": name, "image": image, "imageID": format!("sim://{image}"), "containerID": format!("sim://{}", uuid::Uuid::new_v4().simple()), "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": t}}, "lastState": {}}))
        .collect();
    json!({"status": {
        "phase": "Running",
        "hostIP": node_ip,
        "hostIPs": [{"ip": node_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": t,
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": null, "lastTransitionTime": t},
            {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": t},
            {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": t},
            {"type": "ContainersReady", "status": "True", "lastProbeTime": null, "lastTransitionTime": t},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": t},
        ],
        "containerStatuses": statuses,
    }})
}

fn finished_status(pod: &Pod, exit_code: i64) -> Value {
    let t = now();
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    let statuses: Vec<Value> = container_names(pod)
        .into_iter()
        .map(|(name, image)| json!({"name": name, "image": image, "imageID": format!("sim://{image}"), "ready": false, "started": false, "restartCount": 0, "state": {"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": t, "finishedAt": t}}, "lastState": {}}))
        .collect();
    json!({"status": {
        "phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "False", "lastProbeTime": null, "lastTransitionTime": t},
            {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": t, "reason": "PodCompleted"},
            {"type": "Ready", "status": "False", "lastProbeTime": null, "lastTransitionTime": t, "reason": "PodCompleted"},
            {"type": "ContainersReady", "status": "False", "lastProbeTime": null, "lastTransitionTime": t, "reason": "PodCompleted"},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": t},
        ],
        "containerStatuses": statuses,
    }})
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
}

async fn handle_pod(shared: Arc<Shared>, pod: Pod) {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { return };
    let Some(&i) = shared.index.get(&node) else { return };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        if !shared.deleting.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.clone()) {
            return;
        }
        // Simulated containers stop at once on SIGTERM; then the pod object goes.
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match pods.delete(&name, &dp).await {
            Ok(_) => {}
            // Gone, or replaced by a pod of the same name: nothing of this one is left.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!("removing the finished pod {ns}/{name}: {e}"),
        }
        return;
    }
    let restart = pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
    if phase == "Pending" || phase.is_empty() {
        if !shared.started.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.clone()) {
            return;
        }
        let node_ip = format!("172.18.{}.{}", i / 250, i % 250 + 2);
        let pod_ip = allocate_ip(&shared, &node);
        let pp = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        if let Err(e) = pods.patch_status(&name, &pp, &Patch::Merge(running_status(&pod, &node_ip, &pod_ip))).await {
            tracing::debug!("starting {ns}/{name}: {e}");
            shared.started.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
            return;
        }
    } else if phase != "Running" {
        return;
    }
    if restart != "Always" && shared.finishing.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.clone()) {
        let secs: f64 = annotation(&pod, RUN_SECONDS).and_then(|s| s.parse().ok()).unwrap_or(1.0);
        let code: i64 = annotation(&pod, EXIT_CODE).and_then(|s| s.parse().ok()).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
        let pp = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        if let Ok(current) = pods.get(&name).await
            && current.metadata.uid.as_deref() == Some(uid.as_str())
            && current.metadata.deletion_timestamp.is_none()
            && let Err(e) = pods.patch_status(&name, &pp, &Patch::Merge(finished_status(&current, code))).await
        {
            tracing::warn!("finishing {ns}/{name}: {e}");
            shared.finishing.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
        }
    }
}

async fn run_pods(shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let stream =
        watcher(pods, watcher::Config::default().fields("spec.nodeName!=")).default_backoff().applied_objects();
    stream
        .for_each_concurrent(64, |ev| {
            let shared = shared.clone();
            async move {
                if let Ok(pod) = ev {
                    handle_pod(shared, pod).await;
                }
            }
        })
        .await;
}

/// Simulated container logs for `kubectl logs`.
pub fn simulated_logs(pod: &Value, container: &str, tail: Option<i64>) -> String {
    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
    let image = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["name"] == container))
        .and_then(|c| c["image"].as_str())
        .unwrap_or_default();
    let started = pod.pointer("/status/startTime").and_then(Value::as_str).unwrap_or_default();
    let mut lines = vec![
        format!(
            "{started} [vkube-sim] starting container {container} (image {image}) of pod {ns}/{name} on node {node}"
        ),
        format!("{started} [vkube-sim] container {container} is running"),
    ];
    if let Some(args) = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["name"] == container))
        .and_then(|c| c.get("args").or_else(|| c.get("command")))
        .and_then(Value::as_array)
    {
        let cmd: Vec<&str> = args.iter().filter_map(Value::as_str).collect();
        lines.push(format!("{started} [vkube-sim] simulated command: {}", cmd.join(" ")));
    }
    if let Some(phase) =
        pod.pointer("/status/phase").and_then(Value::as_str).filter(|p| vkube_core::pod::phase_is_terminal(Some(p)))
    {
        lines.push(format!("[vkube-sim] container {container} exited ({phase})"));
    }
    let skip = tail.map(|t| lines.len().saturating_sub(t.max(0) as usize)).unwrap_or(0);
    let mut out = lines[skip..].join("\n");
    out.push('\n');
    out
}
