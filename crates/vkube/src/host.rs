//! `vkube host`: a whole simulated host cluster in one process — the API server, the
//! scheduler, the controllers and N simulated nodes, the latter three as API clients.

use anyhow::Context;
use async_trait::async_trait;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use vkube_apiserver::Body;
use vkube_apiserver::admission::{LogOptions, LogRequest, LogSource};
use vkube_apiserver::endpoints::metrics::MetricsSource;
use vkube_apiserver::endpoints::streams::{StreamRequest, StreamSource};
use vkube_apiserver::resources::Subresource;
use vkube_core::ApiError;

/// What `vkube host` needs.
pub struct HostConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Simulated nodes.
    pub nodes: usize,
    /// Listen address.
    pub listen: SocketAddr,
    /// Run `kubectl exec` commands as local processes (`--exec-local`), in work
    /// directories under `DATA_DIR/exec`; without it exec gets a clear refusal.
    pub exec_local: bool,
}

/// A running host cluster.
pub struct Host {
    /// The API server.
    pub server: vkube_apiserver::RunningServer,
    /// `DIR/host.kubeconfig`.
    pub kubeconfig: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _nodes: vkube_kubelet_sim::SimulatedNodes,
}

impl Host {
    /// Stop everything.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        drop(self._nodes);
        self.server.shutdown().await;
    }
}

/// Logs of pods on the simulated nodes, followed (`-f`) until the pod ends or goes.
struct SimulatedLogs {
    registry: Arc<vkube_apiserver::registry::Registry>,
}

fn view_of(options: &LogOptions) -> vkube_kubelet_sim::LogView {
    vkube_kubelet_sim::LogView {
        tail_lines: options.tail_lines,
        timestamps: options.timestamps,
        since: options.since(),
        limit_bytes: options.limit_bytes,
    }
}

#[async_trait]
impl LogSource for SimulatedLogs {
    async fn logs(&self, request: LogRequest<'_>) -> Result<http::Response<Body>, ApiError> {
        let pod = request.pod;
        let container = request.container.to_string();
        let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
        if request.options.previous {
            // A simulated container never restarts: there is no previous one (the kubelet's answer).
            return Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
        let view = view_of(request.options);
        let body = if request.options.follow {
            let (registry, pods) = (self.registry.clone(), self.registry.catalog().find("", "v1", "pods"));
            let fetch = move || {
                let (registry, pods, namespace, name) =
                    (registry.clone(), pods.clone(), namespace.clone(), name.clone());
                async move { registry.get(&*pods?, &namespace, &name).await.ok() }
            };
            let stream = vkube_kubelet_sim::follow_simulated_logs(pod, &container, &view, fetch);
            Body::from_stream(futures::StreamExt::map(stream, Ok::<_, std::convert::Infallible>))
        } else {
            Body::from(vkube_kubelet_sim::simulated_logs(pod, &container, &view))
        };
        let mut r = http::Response::new(body);
        r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
        Ok(r)
    }
}

/// Streams of pods on the simulated nodes: exec as a local process when opted into,
/// else kube-apiserver's 400 with the reason (the node runs no containers).
struct SimulatedStreams {
    local: Option<vkube_kubelet_sim::streams::LocalExec>,
}

#[async_trait]
impl StreamSource for SimulatedStreams {
    async fn stream(&self, request: StreamRequest) -> Result<http::Response<bytes::Bytes>, ApiError> {
        let node = request.pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default();
        let what = request.subresource.name();
        match (&self.local, request.subresource, request.container.as_deref()) {
            (Some(local), Subresource::Exec, Some(container)) => {
                Ok(local.exec(&request.pod, container, &request.query, &request.headers, request.upgrade))
            }
            (Some(local), Subresource::PortForward, _) => {
                Ok(local.port_forward(&request.pod, &request.headers, request.upgrade))
            }
            (Some(_), _, _) => Err(ApiError::bad_request(format!(
                "node {node} is a simulated node: {what} is not served there (its containers have no process to attach to)"
            ))),
            (None, _, _) => Err(ApiError::bad_request(format!(
                "node {node} is a simulated node: it runs no containers, so there is nothing to {what}; \
                 start vkube host (or vkube up) with --exec-local to run exec commands as local processes"
            ))),
        }
    }
}

/// `kubectl top` on the simulated nodes: each running pod's usage as
/// [`vkube_kubelet_sim::simulated_usage`] has it, each node's the sum of its pods'.
struct SimulatedMetrics {
    registry: Arc<vkube_apiserver::registry::Registry>,
}

#[async_trait]
impl MetricsSource for SimulatedMetrics {
    async fn pods(&self, pods: &[Value]) -> Result<Vec<Option<Value>>, ApiError> {
        Ok(pods
            .iter()
            .map(|p| {
                let usage = vkube_kubelet_sim::simulated_usage(p)?;
                Some(Value::Array(
                    usage
                        .into_iter()
                        .map(|(name, cpu, memory)| {
                            serde_json::json!({"name": name, "usage": vkube_kubelet_sim::usage_of(cpu, memory)})
                        })
                        .collect(),
                ))
            })
            .collect())
    }

    async fn nodes(&self, nodes: &[Value]) -> Result<Vec<Option<Value>>, ApiError> {
        let pods = self.registry.catalog().find("", "v1", "pods").ok_or_else(|| ApiError::internal("no pods"))?;
        let page = self.registry.list(&pods, "", &Default::default()).await?;
        let mut per_node: std::collections::HashMap<String, (i128, i128)> = Default::default();
        for pod in page.items.iter().filter_map(|kv| vkube_apiserver::registry::Registry::decode(kv).ok()) {
            let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or_default().to_string();
            if let Some(usage) = vkube_kubelet_sim::simulated_usage(&pod) {
                let sum = per_node.entry(node).or_default();
                for (_, cpu, memory) in usage {
                    sum.0 += cpu;
                    sum.1 += memory;
                }
            }
        }
        Ok(nodes
            .iter()
            .map(|n| {
                let name = n.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                let (cpu, memory) = per_node.get(name).copied().unwrap_or_default();
                Some(vkube_kubelet_sim::usage_of(cpu, memory))
            })
            .collect())
    }
}

/// The simulated host's default StorageClass `standard` (its volumes made by the volume
/// binder's simulated provisioner, as kind's `standard` by its local-path one), made
/// on a host that has no class at all.
async fn default_storage_class(client: &kube::Client) -> anyhow::Result<()> {
    let classes: kube::Api<k8s_openapi::api::storage::v1::StorageClass> = kube::Api::all(client.clone());
    if !classes.list(&kube::api::ListParams::default().limit(1)).await?.items.is_empty() {
        return Ok(());
    }
    let standard = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": vkube_controllers::volumebinding::SIMULATED_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }))?;
    match classes.create(&kube::api::PostParams::default(), &standard).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A kube-rs client from a kubeconfig file.
pub async fn client_from(path: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// A client of `server` acting as `user` in `groups` (a client certificate of its CA).
///
/// # Errors
/// Certificate or client errors.
pub async fn client_as(
    server: &vkube_apiserver::RunningServer,
    user: &str,
    groups: &[&str],
) -> anyhow::Result<kube::Client> {
    vkube_controllers::util::client_from_kubeconfig(&server.kubeconfig_as(user, groups)?).await
}

/// Up to this many simulated nodes, each acts under its own identity, with a
/// connection and two watches of its own, as kubelets do. Beyond it, 10,000 nodes would
/// hold 20,000 sockets in this one process (more than its file limit allows), so they
/// share one identity, [`SHARED_NODES_USER`], one connection, and one watch of pods and
/// of nodes, as kubemark's hollow nodes are not: the API's load per node is then lower
/// than real kubelets' (heartbeats and status updates stay per node).
pub const PER_NODE_IDENTITIES: usize = 1000;
/// The identity simulated nodes share beyond [`PER_NODE_IDENTITIES`] (in
/// `system:masters`: the Node authorizer knows only `system:node:NAME`).
pub const SHARED_NODES_USER: &str = "vkube:simulated-nodes";

/// Start a host cluster.
///
/// # Errors
/// If the API server cannot start or the nodes cannot register.
pub async fn start(cfg: HostConfig) -> anyhow::Result<Host> {
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let store = vkube_store::SqliteStore::open(&cfg.data_dir.join("state.db")).context("opening the store")?;
    let mut config = vkube_apiserver::ServerConfig::new(cfg.data_dir.clone(), Arc::new(store));
    config.listen = cfg.listen;
    config.cluster_name = "vkube-host".into();
    let server = vkube_apiserver::start(config).await?;
    if let Ok(mut logs) = server.state.logs.write() {
        *logs = Some(Arc::new(SimulatedLogs { registry: server.state.registry.clone() }));
    }
    let local = cfg.exec_local.then(|| vkube_kubelet_sim::streams::LocalExec { root: cfg.data_dir.join("exec") });
    if let Ok(mut streams) = server.state.streams.write() {
        *streams = Some(Arc::new(SimulatedStreams { local }));
    }
    vkube_apiserver::endpoints::metrics::enable(
        &server.state,
        Arc::new(SimulatedMetrics { registry: server.state.registry.clone() }),
    )
    .await
    .context("serving metrics.k8s.io")?;
    let kubeconfig = cfg.data_dir.join("host.kubeconfig");
    std::fs::copy(&server.kubeconfig_path, &kubeconfig).context("writing host.kubeconfig")?;
    let client = client_from(&kubeconfig).await?;
    default_storage_class(&client).await.context("creating the default StorageClass")?;
    let mut tasks = Vec::new();
    // The scheduler and the controllers act under their own identities, as
    // kube-scheduler and kube-controller-manager do.
    let scheduler = client_as(&server, vkube_scheduler::USER, &[]).await?;
    let controllers =
        vkube_controllers::Clients::per_controller(|user, groups| Ok(server.kubeconfig_as(user, groups)?)).await?;
    tasks.push(tokio::spawn({
        async move {
            if let Err(e) = vkube_scheduler::Scheduler::run(scheduler, Default::default()).await {
                tracing::error!("scheduler stopped: {e}");
            }
        }
    }));
    let manager = vkube_controllers::ManagerConfig {
        root_ca_pem: Some(server.pki.ca.cert_pem.clone()),
        volume_binding: true,
        ..Default::default()
    };
    tasks.push(tokio::spawn(vkube_controllers::ControllerManager::run(controllers, manager)));
    // Each simulated node acts as its kubelet would, as `system:node:NAME` in
    // `system:nodes`: the Node authorizer and NodeRestriction hold it to its own node.
    // Beyond PER_NODE_IDENTITIES nodes they share one identity instead (see there).
    let node_cfg = vkube_kubelet_sim::NodeConfig { count: cfg.nodes, ..Default::default() };
    let nodes = if cfg.nodes <= PER_NODE_IDENTITIES {
        let mut kubelets = Vec::with_capacity(cfg.nodes);
        for i in 0..cfg.nodes {
            let name = vkube_kubelet_sim::SimulatedNodes::name(&node_cfg, i);
            let user = format!("{}{name}", vkube_apiserver::authz::node::NODE_USER_PREFIX);
            kubelets.push(client_as(&server, &user, &[vkube_apiserver::authz::node::NODES_GROUP]).await?);
        }
        vkube_kubelet_sim::SimulatedNodes::start_with_identities(kubelets, node_cfg, None).await?
    } else {
        tracing::info!(
            nodes = cfg.nodes,
            "more than {PER_NODE_IDENTITIES} simulated nodes: they share the identity {SHARED_NODES_USER}"
        );
        let kubelets = client_as(&server, SHARED_NODES_USER, &["system:masters"]).await?;
        vkube_kubelet_sim::SimulatedNodes::start(kubelets, node_cfg).await?
    };
    Ok(Host { server, kubeconfig, tasks, _nodes: nodes })
}
