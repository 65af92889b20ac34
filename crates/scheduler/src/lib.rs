//! vkube-scheduler: a kube-scheduler subset, as a client of the Kubernetes API.
//!
//! Start with [`Scheduler::run`]. One loop owns the state: it watches nodes and pods,
//! keeps what is placed on each node (bound pods plus pods it has just bound but not
//! yet seen back — kube-scheduler's "assumed" pods), and schedules pending pods whose
//! `spec.schedulerName` is its own: filter ([`plugins::filter`]), score
//! ([`plugins::score`]), bind through `pods/binding`, record a `Scheduled` event. A pod
//! that fits nowhere gets `PodScheduled=False`, reason `Unschedulable`, with
//! kube-scheduler's message, and a `FailedScheduling` event; it is retried when a node
//! or a pod changes, never by polling.

pub mod plugins;

/// The user the scheduler acts as: kube-apiserver's bootstrap policy binds it to the
/// `system:kube-scheduler` and `system:volume-scheduler` roles.
pub const USER: &str = "system:kube-scheduler";

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::Recorder;
use kube::runtime::{WatchStreamExt, watcher};
use plugins::{NodeInfo, PlacedPod};
use rand::Rng;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods with this `spec.schedulerName` are ours.
    pub scheduler_name: String,
    /// Bindings in flight at once.
    pub parallel_binds: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { scheduler_name: "default-scheduler".into(), parallel_binds: 32 }
    }
}

enum Input {
    Node(Box<watcher::Event<Node>>),
    Pod(Box<watcher::Event<Pod>>),
    BindFailed(String),
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, Arc<Node>>,
    /// pod uid → (node, what it uses).
    placed: HashMap<String, (String, PlacedPod)>,
    /// Pending pods by uid.
    pending: HashMap<String, Pod>,
    queue: VecDeque<String>,
    unschedulable: HashSet<String>,
    /// Pods bound by us and not yet seen bound (uid → node).
    assumed: HashMap<String, String>,
}

use vkube_core::pod::is_terminal as terminal;

/// The scheduler.
pub struct Scheduler;

impl Scheduler {
    /// Run until the task is aborted.
    ///
    /// # Errors
    /// Never returns under normal operation.
    pub async fn run(client: kube::Client, cfg: SchedulerConfig) -> anyhow::Result<()> {
        let (tx, mut rx) = mpsc::channel::<Input>(4096);
        let nodes: Api<Node> = Api::all(client.clone());
        let pods: Api<Pod> = Api::all(client.clone());
        let ntx = tx.clone();
        let mut watchers = tokio::task::JoinSet::new();
        watchers.spawn(async move {
            let mut s = watcher(nodes, watcher::Config::default()).default_backoff().boxed();
            while let Some(ev) = s.next().await {
                if let Ok(ev) = ev
                    && ntx.send(Input::Node(Box::new(ev))).await.is_err()
                {
                    return;
                }
            }
        });
        let ptx = tx.clone();
        watchers.spawn(async move {
            let mut s = watcher(pods, watcher::Config::default()).default_backoff().boxed();
            while let Some(ev) = s.next().await {
                if let Ok(ev) = ev
                    && ptx.send(Input::Pod(Box::new(ev))).await.is_err()
                {
                    return;
                }
            }
        });
        let binds = Arc::new(Semaphore::new(cfg.parallel_binds.max(1)));
        let recorder = Arc::new(vkube_controllers::util::recorder(&client, &cfg.scheduler_name));
        let mut st = State::default();
        let mut retry = false;
        loop {
            // Drain every input that is ready, then schedule.
            let first = match tokio::time::timeout(
                Duration::from_millis(if st.queue.is_empty() { 1000 } else { 0 }),
                rx.recv(),
            )
            .await
            {
                Ok(Some(i)) => Some(i),
                Ok(None) => return Ok(()),
                Err(_) => None,
            };
            let mut inputs: Vec<Input> = first.into_iter().collect();
            while let Ok(i) = rx.try_recv() {
                inputs.push(i);
                if inputs.len() > 4096 {
                    break;
                }
            }
            for input in inputs {
                retry |= apply_input(&mut st, &cfg, input);
            }
            if retry {
                let uids: Vec<String> = st.unschedulable.drain().collect();
                st.queue.extend(uids);
                retry = false;
            }
            if st.queue.is_empty() {
                continue;
            }
            // One snapshot per batch, updated in place as pods are placed.
            let mut nodes = snapshot(&st);
            let mut batch = 0;
            while let Some(uid) = st.queue.pop_front() {
                let Some(pod) = st.pending.get(&uid).cloned() else { continue };
                schedule_one(&client, &recorder, &mut st, &mut nodes, &pod, &binds, &tx);
                batch += 1;
                if batch >= 512 {
                    break;
                }
            }
        }
    }
}

/// Fold an input into the state; returns whether unschedulable pods should be retried.
fn apply_input(st: &mut State, cfg: &SchedulerConfig, input: Input) -> bool {
    match input {
        Input::Node(ev) => {
            match *ev {
                watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                    st.nodes.insert(n.metadata.name.clone().unwrap_or_default(), Arc::new(n));
                }
                watcher::Event::Delete(n) => {
                    st.nodes.remove(n.metadata.name.as_deref().unwrap_or_default());
                }
                watcher::Event::Init => st.nodes.clear(),
                watcher::Event::InitDone => {}
            }
            true
        }
        Input::Pod(ev) => match *ev {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => observe_pod(st, cfg, p),
            watcher::Event::Delete(p) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                st.pending.remove(&uid);
                st.unschedulable.remove(&uid);
                st.assumed.remove(&uid);
                st.placed.remove(&uid).is_some()
            }
            watcher::Event::Init => {
                st.placed.retain(|uid, _| st.assumed.contains_key(uid));
                false
            }
            watcher::Event::InitDone => true,
        },
        Input::BindFailed(uid) => {
            st.assumed.remove(&uid);
            st.placed.remove(&uid);
            if st.pending.contains_key(&uid) {
                st.queue.push_back(uid);
            }
            false
        }
    }
}

fn observe_pod(st: &mut State, cfg: &SchedulerConfig, p: Pod) -> bool {
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    if !node.is_empty() {
        st.pending.remove(&uid);
        st.unschedulable.remove(&uid);
        st.assumed.remove(&uid);
        if terminal(&p) {
            return st.placed.remove(&uid).is_some();
        }
        st.placed.insert(uid, (node, plugins::placed(&p)));
        return false;
    }
    let ours =
        p.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).unwrap_or("default-scheduler") == cfg.scheduler_name;
    if !ours || p.metadata.deletion_timestamp.is_some() || terminal(&p) || st.assumed.contains_key(&uid) {
        return false;
    }
    let known = st.pending.insert(uid.clone(), p).is_some();
    if !known && !st.unschedulable.contains(&uid) {
        st.queue.push_back(uid);
    }
    false
}

fn snapshot(st: &State) -> Vec<NodeInfo> {
    let mut per_node: HashMap<&str, Vec<PlacedPod>> = HashMap::new();
    for (node, p) in st.placed.values() {
        per_node.entry(node.as_str()).or_default().push(p.clone());
    }
    st.nodes
        .iter()
        .map(|(name, n)| NodeInfo::new(n.clone(), per_node.remove(name.as_str()).unwrap_or_default()))
        .collect()
}

fn schedule_one(
    client: &kube::Client,
    recorder: &Arc<Recorder>,
    st: &mut State,
    nodes: &mut [NodeInfo],
    pod: &Pod,
    binds: &Arc<Semaphore>,
    tx: &mpsc::Sender<Input>,
) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let mut best: Vec<(i64, usize)> = Vec::new();
    let cluster = plugins::Cluster::new(nodes);
    for (i, n) in nodes.iter().enumerate() {
        let r = plugins::filter(pod, n, &cluster);
        if r.is_empty() {
            best.push((plugins::score(pod, n), i));
        } else {
            for reason in r {
                *reasons.entry(reason).or_default() += 1;
            }
        }
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    if best.is_empty() {
        let message = plugins::failure_message(nodes.len(), &reasons);
        st.unschedulable.insert(uid);
        let (client, pod, recorder) = (client.clone(), pod.clone(), recorder.clone());
        tokio::spawn(async move { report_unschedulable(client, &recorder, pod, message).await });
        return;
    }
    let top = best.iter().map(|b| b.0).max().unwrap_or(0);
    let candidates: Vec<usize> = best.iter().filter(|b| b.0 == top).map(|b| b.1).collect();
    let pick = candidates[rand::rng().random_range(0..candidates.len())];
    let node = nodes[pick].name().to_string();
    st.pending.remove(&uid);
    st.assumed.insert(uid.clone(), node.clone());
    let placed = plugins::placed(pod);
    nodes[pick].add(placed.clone());
    st.placed.insert(uid.clone(), (node.clone(), placed));
    let client = client.clone();
    let binds = binds.clone();
    let tx = tx.clone();
    let recorder = recorder.clone();
    let regarding = kube::Resource::object_ref(pod, &());
    tokio::spawn(async move {
        let Ok(_permit) = binds.acquire().await else { return };
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        match pods.create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding).await
        {
            Ok(_) => {
                let note = format!("Successfully assigned {ns}/{name} to {node}");
                vkube_controllers::util::record(&recorder, &regarding, false, "Scheduled", "Binding", note).await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                // Gone or bound by someone else: forget the assumption.
                let _ = tx.send(Input::BindFailed(uid)).await;
            }
            Err(e) => {
                tracing::warn!("binding {ns}/{name} to {node}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = tx.send(Input::BindFailed(uid)).await;
            }
        }
    });
}

async fn report_unschedulable(client: kube::Client, recorder: &Recorder, pod: Pod, message: String) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let already = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message.as_str()));
    if already {
        return;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut conditions: Vec<serde_json::Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "PodScheduled")
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    // The transition time stays while the pod stays unschedulable (only the message moves);
    // observedGeneration as kube-scheduler 1.36 writes it.
    let since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False"))
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0.to_string()))
        .unwrap_or_else(vkube_core::meta::now_rfc3339);
    conditions.push(json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": since, "observedGeneration": pod.metadata.generation.unwrap_or(1)}));
    let pp = PatchParams { field_manager: Some("default-scheduler".into()), ..Default::default() };
    if let Err(e) = pods.patch_status(&name, &pp, &Patch::Merge(json!({"status": {"conditions": conditions}}))).await {
        tracing::warn!("recording that {ns}/{name} is unschedulable: {e}");
    }
    vkube_controllers::util::record(
        recorder,
        &kube::Resource::object_ref(&pod, &()),
        true,
        "FailedScheduling",
        "Scheduling",
        message,
    )
    .await;
}
