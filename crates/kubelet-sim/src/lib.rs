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
//!
//! Every node acts either with one shared identity ([`SimulatedNodes::start`]: a
//! cluster-admin client; one watch of all bound pods) or with its own, as a kubelet
//! does ([`SimulatedNodes::start_with_identities`]: `system:node:NAME` in
//! `system:nodes`, which the Node authorizer and NodeRestriction allow to register and
//! update its own Node and Lease, and to watch and update the pods bound to it).

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod serving;
pub mod spdy;
pub mod streams;

/// Annotation on a pod: how many seconds a Never/OnFailure pod runs (default 1).
pub const RUN_SECONDS: &str = "vkube.dev/run-seconds";
/// Annotation on a pod: the exit code it finishes with (default 0).
pub const EXIT_CODE: &str = "vkube.dev/exit-code";
/// Annotation on a node: `"true"` makes it NotReady (heartbeats stop).
pub const NOT_READY: &str = "vkube.dev/sim-not-ready";
/// Pod annotation: the CPU each of its containers uses (`250m`), for metrics and `kubectl top`.
pub const CPU_USAGE: &str = "vkube.dev/cpu-usage";
/// Pod annotation: the memory each of its containers uses (`64Mi`).
pub const MEMORY_USAGE: &str = "vkube.dev/memory-usage";

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
    /// Labels every node gets besides its own.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The second octet of the nodes' pod CIDRs (`10.N.I.0/24` for node I) and the third
    /// of their addresses (a /20 of `172.16.0.0/12`): groups of nodes on one cluster use different
    /// ones so that no two pods share an IP.
    pub address_block: u8,
    /// Serve `exec` and `port-forward` on the kubelet API as local processes and local
    /// ports ([`streams::LocalExec`]), with work directories under this directory; None:
    /// they are refused with the reason.
    pub exec_local: Option<std::path::PathBuf>,
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
            labels: Default::default(),
            address_block: 244,
            exec_local: None,
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
    let cidr = format!("10.{}.{}.0/24", cfg.address_block, i + 1);
    let mut node = json!({
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
    });
    for (k, v) in &cfg.labels {
        node["metadata"]["labels"][k] = json!(v);
    }
    node
}

fn node_ip(cfg: &NodeConfig, i: usize) -> String {
    // 172.16.0.0/12: the block picks one /20 of it, the index the address in that.
    let block = usize::from(cfg.address_block);
    format!("172.{}.{}.{}", 16 + block / 16, (block % 16) * 16 + i / 250 % 16, i % 250 + 2)
}

/// Where a node is reached: its InternalIP and its kubelet port.
#[derive(Debug, Clone)]
struct Endpoint {
    ip: String,
    kubelet_port: u16,
    /// Whether the node also reports a `Hostname` address (its name). Not when it
    /// serves a kubelet API: kube-apiserver prefers Hostname and could not resolve it.
    hostname: bool,
}

fn node_status(cfg: &NodeConfig, i: usize, name: &str, at: &Endpoint, ready: bool) -> Value {
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
            "addresses": if at.hostname {
                json!([{"type": "InternalIP", "address": at.ip}, {"type": "Hostname", "address": name}])
            } else {
                json!([{"type": "InternalIP", "address": at.ip}])
            },
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
            "daemonEndpoints": {"kubeletEndpoint": {"Port": at.kubelet_port}},
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
    /// Each node's client (the same one for every node with a shared identity).
    clients: Vec<kube::Client>,
    cfg: NodeConfig,
    names: Vec<String>,
    index: HashMap<String, usize>,
    /// Pod uids already started / finishing / deleting.
    started: Mutex<HashSet<String>>,
    finishing: Mutex<HashSet<String>>,
    deleting: Mutex<HashSet<String>>,
    /// Per node: the next IP suffix to try, and the suffixes pods hold (by pod uid).
    ips: Mutex<HashMap<String, NodeIps>>,
    /// Per node: its address and kubelet port.
    endpoints: Vec<Endpoint>,
}

#[derive(Default)]
struct NodeIps {
    next: u32,
    held: HashMap<u32, String>,
}

impl SimulatedNodes {
    /// Register the nodes and start simulating them.
    ///
    /// # Errors
    /// If a node cannot be registered.
    pub async fn start(client: kube::Client, cfg: NodeConfig) -> anyhow::Result<Self> {
        let clients = vec![client; cfg.count];
        Self::run(clients, false, cfg, None).await
    }

    /// Register the nodes, each acting with its own client (`clients[i]` for node i,
    /// named `{prefix}{i+1}`), and start simulating them. With `kubelet_tls`, each node
    /// also serves the kubelet API (container logs) on its own loopback address
    /// ([`SimulatedNodes::kubelet_ip`]), which then is its InternalIP.
    ///
    /// # Errors
    /// If a node cannot be registered or cannot listen, or the clients do not match the
    /// count.
    pub async fn start_with_identities(
        clients: Vec<kube::Client>,
        cfg: NodeConfig,
        kubelet_tls: Option<Arc<rustls::ServerConfig>>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(clients.len() == cfg.count, "{} clients for {} nodes", clients.len(), cfg.count);
        Self::run(clients, true, cfg, kubelet_tls).await
    }

    /// The loopback address node `i` serves its kubelet API on (`127.BLOCK.x.y`).
    pub fn kubelet_ip(cfg: &NodeConfig, i: usize) -> std::net::IpAddr {
        let third = u8::try_from(i / 250).unwrap_or(u8::MAX);
        let fourth = u8::try_from(i % 250 + 2).unwrap_or(u8::MAX);
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, cfg.address_block, third, fourth))
    }

    /// The name of node `i` (0-based) of `cfg`.
    pub fn name(cfg: &NodeConfig, i: usize) -> String {
        format!("{}{}", cfg.name_prefix, i + 1)
    }

    async fn run(
        clients: Vec<kube::Client>,
        per_node: bool,
        cfg: NodeConfig,
        kubelet_tls: Option<Arc<rustls::ServerConfig>>,
    ) -> anyhow::Result<Self> {
        let names: Vec<String> = (0..cfg.count).map(|i| Self::name(&cfg, i)).collect();
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        let mut tasks = Vec::new();
        let mut endpoints = Vec::with_capacity(cfg.count);
        for (i, name) in names.iter().enumerate() {
            let Some(tls) = &kubelet_tls else {
                endpoints.push(Endpoint { ip: node_ip(&cfg, i), kubelet_port: 10250, hostname: true });
                continue;
            };
            let ip = Self::kubelet_ip(&cfg, i);
            let server = Arc::new(serving::NodeServer {
                node: name.clone(),
                client: clients[i].clone(),
                exec: cfg.exec_local.clone().map(|root| streams::LocalExec { root }),
            });
            let (addr, task) = serving::serve(ip, tls.clone(), server)
                .await
                .map_err(|e| anyhow::anyhow!("node {name}: serving the kubelet API on {ip}: {e}"))?;
            tasks.push(task);
            endpoints.push(Endpoint { ip: ip.to_string(), kubelet_port: addr.port(), hostname: false });
        }
        let shared = Arc::new(Shared {
            clients,
            cfg: cfg.clone(),
            names: names.clone(),
            index,
            started: Default::default(),
            finishing: Default::default(),
            deleting: Default::default(),
            ips: Default::default(),
            endpoints,
        });
        // Register 32 at a time: thousands of nodes one by one take minutes.
        let register = |i: usize| {
            let (shared, cfg) = (shared.clone(), cfg.clone());
            async move {
                let name = &shared.names[i];
                let nodes: Api<Node> = Api::all(shared.clients[i].clone());
                match nodes
                    .create(
                        &PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() },
                        &serde_json::from_value(node_object(&cfg, i, name))?,
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
                let current = nodes.get(name).await?;
                let ready =
                    current.metadata.annotations.as_ref().is_none_or(|a| a.get(NOT_READY).is_none_or(|v| v != "true"));
                let status = node_status(&cfg, i, name, &shared.endpoints[i], ready);
                nodes.patch_status(name, &mp(), &Patch::Merge(status)).await?;
                Ok(())
            }
        };
        futures::stream::iter((0..names.len()).map(register)).buffer_unordered(32).try_collect::<Vec<()>>().await?;
        tasks.push(tokio::spawn(heartbeats(shared.clone())));
        if per_node {
            for i in 0..names.len() {
                tasks.push(tokio::spawn(run_pods(shared.clone(), Some(i))));
                tasks.push(tokio::spawn(watch_nodes(shared.clone(), Some(i))));
            }
        } else {
            tasks.push(tokio::spawn(run_pods(shared.clone(), None)));
            tasks.push(tokio::spawn(watch_nodes(shared.clone(), None)));
        }
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
    let mut tick = 0u64;
    loop {
        for (i, name) in shared.names.iter().enumerate() {
            let leases: Api<Lease> = Api::namespaced(shared.clients[i].clone(), "kube-node-lease");
            let nodes: Api<Node> = Api::all(shared.clients[i].clone());
            let Ok(node) = nodes.get(name).await else { continue };
            let not_ready =
                node.metadata.annotations.as_ref().is_some_and(|a| a.get(NOT_READY).is_some_and(|v| v == "true"));
            if not_ready {
                continue;
            }
            renew_lease(&leases, name, shared.cfg.heartbeat).await;
            if tick % 6 == 5
                && let Err(e) = nodes
                    .patch_status(
                        name,
                        &mp(),
                        &Patch::Merge(node_status(&shared.cfg, i, name, &shared.endpoints[i], true)),
                    )
                    .await
            {
                tracing::warn!("node {name}: status heartbeat: {e}");
            }
        }
        tick += 1;
        tokio::time::sleep(shared.cfg.heartbeat).await;
    }
}

/// React to NotReady annotations at once: of every node (`only` None) or of one (with
/// its own identity, which may read only its own Node).
async fn watch_nodes(shared: Arc<Shared>, only: Option<usize>) {
    let client = shared.clients[only.unwrap_or(0)].clone();
    let nodes: Api<Node> = Api::all(client);
    let mut last: HashMap<String, bool> = HashMap::new();
    let config = match only {
        Some(i) => watcher::Config::default().fields(&format!("metadata.name={}", shared.names[i])),
        None => watcher::Config::default(),
    };
    let stream = watcher(nodes.clone(), config).default_backoff().applied_objects();
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
        if let Err(e) = nodes
            .patch_status(
                &name,
                &mp(),
                &Patch::Merge(node_status(&shared.cfg, i, &name, &shared.endpoints[i], !not_ready)),
            )
            .await
        {
            tracing::warn!("node {name}: reporting readiness: {e}");
        }
    }
}

/// The pod IP prefix of node `i` (`10.BLOCK.I+1.`).
fn pod_ip_prefix(cfg: &NodeConfig, i: usize) -> String {
    format!("10.{}.{}.", cfg.address_block, i + 1)
}

/// A free pod IP of `node` for the pod `uid`: one no other pod of the node holds (those
/// that ran before this process started included, see [`hold_ip`]), while there is one.
fn allocate_ip(shared: &Shared, node: &str, uid: &str) -> String {
    let i = shared.index.get(node).copied().unwrap_or(0);
    let mut ips = shared.ips.lock().unwrap_or_else(|e| e.into_inner());
    let ips = ips.entry(node.to_string()).or_default();
    let mut n = ips.next.clamp(2, 254);
    for _ in 2..=254 {
        if !ips.held.contains_key(&n) {
            break;
        }
        n = if n >= 254 { 2 } else { n + 1 };
    }
    ips.held.insert(n, uid.to_string());
    ips.next = if n >= 254 { 2 } else { n + 1 };
    format!("{}{n}", pod_ip_prefix(&shared.cfg, i))
}

/// Note the IP a pod of ours already has, so that no new pod gets it.
fn hold_ip(shared: &Shared, pod: &Pod) {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else { return };
    let Some(&i) = shared.index.get(node) else { return };
    let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()) else { return };
    let Some(n) = ip.strip_prefix(&pod_ip_prefix(&shared.cfg, i)).and_then(|n| n.parse::<u32>().ok()) else { return };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    shared.ips.lock().unwrap_or_else(|e| e.into_inner()).entry(node.to_string()).or_default().held.insert(n, uid);
}

/// Give a pod's IP back (the pod is going or has finished).
fn release_ip(shared: &Shared, pod: &Pod) {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else { return };
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    if let Some(ips) = shared.ips.lock().unwrap_or_else(|e| e.into_inner()).get_mut(node) {
        ips.held.retain(|_, holder| holder != uid);
    }
}

fn container_names(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| (c.name.clone(), c.image.clone().unwrap_or_default())).collect())
        .unwrap_or_default()
}

/// The pod's conditions as a kubelet reports them, each with the generation it saw;
/// PodScheduled only when the scheduler did not set it (a pod bound by its creator).
fn conditions(pod: &Pod, of: &[(&str, &str, Option<&str>)]) -> Vec<Value> {
    let t = now();
    let generation = pod.metadata.generation.unwrap_or(1);
    let scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "PodScheduled"));
    let mut out: Vec<Value> = of
        .iter()
        .map(|(type_, status, reason)| {
            let mut c = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": t, "observedGeneration": generation});
            if let Some(r) = reason {
                c["reason"] = json!(r);
            }
            c
        })
        .collect();
    if !scheduled {
        out.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": t, "observedGeneration": generation}));
    }
    out
}

/// A status patch (strategic: conditions merge by type, as a kubelet's do).
fn running_status(pod: &Pod, node_ip: &str, pod_ip: &str) -> Value {
    let t = now();
    let statuses: Vec<Value> = container_names(pod)
        .into_iter()
        .map(|(name, image)| json!({"name": name, "image": image, "imageID": format!("sim://{image}"), "containerID": format!("sim://{}", uuid::Uuid::new_v4().simple()), "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": t}}, "lastState": {}}))
        .collect();
    json!({"status": {
        "observedGeneration": pod.metadata.generation.unwrap_or(1),
        "phase": "Running",
        "hostIP": node_ip,
        "hostIPs": [{"ip": node_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": t,
        "conditions": conditions(pod, &[
            ("PodReadyToStartContainers", "True", None),
            ("Initialized", "True", None),
            ("Ready", "True", None),
            ("ContainersReady", "True", None),
        ]),
        "containerStatuses": statuses,
    }})
}

/// The status of a running pod whose spec changed since its status was reported (its
/// generation is ahead): containers whose image changed restarted with the new one.
fn respec_status(pod: &Pod) -> Option<Value> {
    let generation = pod.metadata.generation?;
    let status = pod.status.as_ref()?;
    if status.observed_generation.is_some_and(|g| g >= generation) || status.observed_generation.is_none() {
        return None;
    }
    let t = now();
    let images: HashMap<String, String> = container_names(pod).into_iter().collect();
    let statuses: Vec<Value> = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| {
            // The whole list: containerStatuses is replaced by a patch, not merged.
            let mut v = serde_json::to_value(c).unwrap_or_default();
            let image = images.get(&c.name).cloned().unwrap_or_else(|| c.image.clone());
            if image != c.image {
                v["lastState"] = json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": c.state.as_ref().and_then(|s| s.running.as_ref()).and_then(|r| r.started_at.clone()), "finishedAt": t}});
                v["image"] = json!(image);
                v["imageID"] = json!(format!("sim://{image}"));
                v["containerID"] = json!(format!("sim://{}", uuid::Uuid::new_v4().simple()));
                v["restartCount"] = json!(c.restart_count + 1);
                v["state"] = json!({"running": {"startedAt": t}});
            }
            v
        })
        .collect();
    let conditions: Vec<Value> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| json!({"type": c.type_, "observedGeneration": generation}))
        .collect();
    // Ephemeral containers (`kubectl debug`) start once and run; they are never ready.
    let known = status.ephemeral_container_statuses.clone().unwrap_or_default();
    let ephemeral: Vec<Value> = pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .into_iter()
        .flatten()
        .map(|e| match known.iter().find(|k| k.name == e.name) {
            Some(k) => serde_json::to_value(k).unwrap_or_default(),
            None => {
                let image = e.image.clone().unwrap_or_default();
                json!({"name": e.name, "image": image, "imageID": format!("sim://{image}"), "containerID": format!("sim://{}", uuid::Uuid::new_v4().simple()), "ready": false, "restartCount": 0, "started": true, "state": {"running": {"startedAt": t}}})
            }
        })
        .collect();
    let mut out =
        json!({"status": {"observedGeneration": generation, "conditions": conditions, "containerStatuses": statuses}});
    if !ephemeral.is_empty() {
        out["status"]["ephemeralContainerStatuses"] = json!(ephemeral);
    }
    Some(out)
}

fn finished_status(pod: &Pod, exit_code: i64) -> Value {
    let t = now();
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    let statuses: Vec<Value> = container_names(pod)
        .into_iter()
        .map(|(name, image)| json!({"name": name, "image": image, "imageID": format!("sim://{image}"), "ready": false, "started": false, "restartCount": 0, "state": {"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": t, "finishedAt": t}}, "lastState": {}}))
        .collect();
    json!({"status": {
        "observedGeneration": pod.metadata.generation.unwrap_or(1),
        "phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
        "conditions": conditions(pod, &[
            ("PodReadyToStartContainers", "False", None),
            ("Initialized", "True", Some("PodCompleted")),
            ("Ready", "False", Some("PodCompleted")),
            ("ContainersReady", "False", Some("PodCompleted")),
        ]),
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
    let pods: Api<Pod> = Api::namespaced(shared.clients[i].clone(), &ns);
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        release_ip(&shared, &pod);
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
        let node_ip = shared.endpoints[i].ip.clone();
        let pod_ip = allocate_ip(&shared, &node, &uid);
        let pp = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        if let Err(e) = pods.patch_status(&name, &pp, &Patch::Strategic(running_status(&pod, &node_ip, &pod_ip))).await
        {
            tracing::debug!("starting {ns}/{name}: {e}");
            shared.started.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
            release_ip(&shared, &pod);
            return;
        }
    } else if phase != "Running" {
        release_ip(&shared, &pod);
        return;
    } else if let Some(patch) = respec_status(&pod) {
        // A spec change (a new image): the containers restart with it, as a kubelet's do.
        let pp = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        if let Err(e) = pods.patch_status(&name, &pp, &Patch::Strategic(patch)).await {
            tracing::debug!("restarting the changed containers of {ns}/{name}: {e}");
        }
    }
    if restart != "Always" && shared.finishing.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.clone()) {
        let secs: f64 = annotation(&pod, RUN_SECONDS).and_then(|s| s.parse().ok()).unwrap_or(1.0);
        let code: i64 = annotation(&pod, EXIT_CODE).and_then(|s| s.parse().ok()).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
        let pp = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        if let Ok(current) = pods.get(&name).await
            && current.metadata.uid.as_deref() == Some(uid.as_str())
            && current.metadata.deletion_timestamp.is_none()
            && let Err(e) = pods.patch_status(&name, &pp, &Patch::Strategic(finished_status(&current, code))).await
        {
            tracing::warn!("finishing {ns}/{name}: {e}");
            shared.finishing.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
        }
    }
}

/// Run the pods bound to every node (`only` None: one watch of all bound pods) or to one
/// (with its own identity: the pods bound to it, as a kubelet watches them).
async fn run_pods(shared: Arc<Shared>, only: Option<usize>) {
    let pods: Api<Pod> = Api::all(shared.clients[only.unwrap_or(0)].clone());
    let selector = match only {
        Some(i) => format!("spec.nodeName={}", shared.names[i]),
        None => "spec.nodeName!=".to_string(),
    };
    // IPs the pods of earlier runs hold stay theirs.
    match pods.list(&kube::api::ListParams::default().fields(&selector)).await {
        Ok(list) => list.items.iter().for_each(|p| hold_ip(&shared, p)),
        Err(e) => tracing::warn!("listing the pods already on the nodes (their IPs may be given again): {e}"),
    }
    let stream = watcher(pods, watcher::Config::default().fields(&selector)).default_backoff().applied_objects();
    stream
        .for_each_concurrent(64, |ev| {
            if let Ok(pod) = &ev {
                hold_ip(&shared, pod);
            }
            let shared = shared.clone();
            async move {
                if let Ok(pod) = ev {
                    handle_pod(shared, pod).await;
                }
            }
        })
        .await;
}

/// What a log read asks of a simulated container (the kubelet's log options).
#[derive(Debug, Clone, Default)]
pub struct LogView {
    /// Only the last N lines.
    pub tail_lines: Option<i64>,
    /// Prefix each line with its time.
    pub timestamps: bool,
    /// Only lines at or after this time.
    pub since: Option<k8s_openapi::jiff::Timestamp>,
    /// At most this many bytes.
    pub limit_bytes: Option<i64>,
}

/// The lines a simulated container has logged, with their times: its start, that it
/// runs, its command, and its end once the pod is terminal.
fn simulated_log_lines(pod: &Value, container: &str) -> Vec<(String, String)> {
    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
    let spec = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["name"] == container));
    let image = spec.and_then(|c| c["image"].as_str()).unwrap_or_default();
    let status = ["containerStatuses", "initContainerStatuses"]
        .iter()
        .flat_map(|k| pod.pointer(&format!("/status/{k}")).and_then(Value::as_array).into_iter().flatten())
        .find(|c| c["name"] == container);
    let started = status
        .and_then(|c| c.pointer("/state/running/startedAt").or_else(|| c.pointer("/state/terminated/startedAt")))
        .or_else(|| pod.pointer("/status/startTime"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut lines = vec![
        (
            started.clone(),
            format!("[vkube-sim] starting container {container} (image {image}) of pod {ns}/{name} on node {node}"),
        ),
        (started.clone(), format!("[vkube-sim] container {container} is running")),
    ];
    if let Some(args) = spec.and_then(|c| c.get("args").or_else(|| c.get("command"))).and_then(Value::as_array) {
        let cmd: Vec<&str> = args.iter().filter_map(Value::as_str).collect();
        lines.push((started.clone(), format!("[vkube-sim] simulated command: {}", cmd.join(" "))));
    }
    if let Some(phase) =
        pod.pointer("/status/phase").and_then(Value::as_str).filter(|p| vkube_core::pod::phase_is_terminal(Some(p)))
    {
        let finished = status
            .and_then(|c| c.pointer("/state/terminated/finishedAt"))
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or(started);
        lines.push((finished, format!("[vkube-sim] container {container} exited ({phase})")));
    }
    lines
}

/// What a container uses when nothing says otherwise: an idle process.
const IDLE_CPU_MILLI: i128 = 1;
const IDLE_MEMORY_BYTES: i128 = 4 * 1024 * 1024;

/// What the containers of a running simulated pod use, as (name, CPU in millicores,
/// memory in bytes): the pod's [`CPU_USAGE`]/[`MEMORY_USAGE`] annotations, else each
/// container's requests, else an idle process's. None unless the pod is Running.
pub fn simulated_usage(pod: &Value) -> Option<Vec<(String, i128, i128)>> {
    if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
        return None;
    }
    let annotation =
        |k: &str| pod.pointer(&format!("/metadata/annotations/{}", k.replace('/', "~1"))).and_then(Value::as_str);
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array)?;
    Some(
        containers
            .iter()
            .map(|c| {
                let request = |r: &str| c.pointer(&format!("/resources/requests/{r}")).and_then(Value::as_str);
                let cpu = annotation(CPU_USAGE)
                    .or_else(|| request("cpu"))
                    .and_then(vkube_core::quantity::parse_milli)
                    .unwrap_or(IDLE_CPU_MILLI);
                let memory = annotation(MEMORY_USAGE)
                    .or_else(|| request("memory"))
                    .and_then(vkube_core::quantity::parse_milli)
                    .map(|m| m / 1000)
                    .unwrap_or(IDLE_MEMORY_BYTES);
                (c["name"].as_str().unwrap_or_default().to_string(), cpu, memory)
            })
            .collect(),
    )
}

/// A usage as metrics-server writes it (CPU in nanocores, memory in KiB).
pub fn usage_of(cpu_milli: i128, memory_bytes: i128) -> Value {
    json!({"cpu": format!("{}n", cpu_milli * 1_000_000), "memory": format!("{}Ki", memory_bytes / 1024)})
}

/// How often a followed simulated log looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// A simulated log as `view` asks for it, followed (`kubectl logs -f`): the log now, then
/// the lines that come as `fetch` shows the pod change, until the pod ends or is gone
/// (`fetch` gives None), as a kubelet ends a followed log when its container stops.
pub fn follow_simulated_logs<F, Fut>(
    pod: &Value,
    container: &str,
    view: &LogView,
    fetch: F,
) -> impl futures::Stream<Item = bytes::Bytes> + Send + 'static
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Value>> + Send,
{
    let ended = |p: &Value| vkube_core::pod::phase_is_terminal(p.pointer("/status/phase").and_then(Value::as_str));
    let first = simulated_logs(pod, container, view);
    // What follows is every new line, whatever the tail and byte limit of the first part.
    let all = LogView { tail_lines: None, limit_bytes: None, ..view.clone() };
    let seen = (!ended(pod)).then(|| simulated_logs(pod, container, &all));
    let container = container.to_string();
    let fetch = std::sync::Arc::new(fetch);
    let rest = futures::stream::unfold(seen, move |seen| {
        let (fetch, all, container) = (fetch.clone(), all.clone(), container.clone());
        async move {
            let mut seen = seen?;
            loop {
                tokio::time::sleep(FOLLOW_POLL).await;
                let now = fetch().await?;
                let log = simulated_logs(&now, &container, &all);
                let new = log.strip_prefix(seen.as_str()).unwrap_or_default().to_string();
                let next = (!ended(&now)).then(|| log.clone());
                seen = log;
                if !new.is_empty() || next.is_none() {
                    return Some((bytes::Bytes::from(new), next));
                }
            }
        }
    });
    futures::stream::once(async move { bytes::Bytes::from(first) }).chain(rest)
}

/// Simulated container logs for `kubectl logs`, as `view` asks for them.
pub fn simulated_logs(pod: &Value, container: &str, view: &LogView) -> String {
    let mut lines = simulated_log_lines(pod, container);
    if let Some(since) = view.since {
        lines.retain(|(t, _)| t.parse::<k8s_openapi::jiff::Timestamp>().map_or(true, |t| t >= since));
    }
    let skip = view.tail_lines.map(|t| lines.len().saturating_sub(usize::try_from(t).unwrap_or(0))).unwrap_or(0);
    let mut out = String::new();
    for (t, line) in &lines[skip..] {
        if view.timestamps {
            out.push_str(t);
            out.push(' ');
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(limit) = view.limit_bytes.and_then(|l| usize::try_from(l).ok())
        && out.len() > limit
    {
        let mut cut = limit;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}
