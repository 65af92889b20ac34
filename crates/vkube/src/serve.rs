//! `vkube serve` and `vkube up`: a virtual cluster (API server, controllers, the virtual
//! scheduler when enabled) plus the syncer against a host cluster.

use anyhow::Context;
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vkube_apiserver::admission::{LogRequest, LogSource};
use vkube_apiserver::endpoints::metrics::MetricsSource;
use vkube_apiserver::endpoints::streams::{StreamRequest, StreamSource};
use vkube_core::ApiError;
use vkube_syncer::names::NameMapper;

/// What `vkube serve` needs.
pub struct ServeConfig {
    /// The virtual cluster's name.
    pub name: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// vcluster.yaml, if any.
    pub values: Option<PathBuf>,
    /// Host namespace (default `vkube-NAME`).
    pub host_namespace: Option<String>,
    /// Listen address of the virtual API server.
    pub listen: SocketAddr,
    /// etcd, from the command line (overrides vcluster.yaml's
    /// `controlPlane.backingStore.etcd.external`).
    pub etcd: EtcdFlags,
}

/// `--etcd-*` flags.
#[derive(Debug, Clone)]
pub struct EtcdFlags {
    /// Client endpoints (empty: vcluster.yaml's, else the embedded SQLite store).
    pub endpoints: Vec<String>,
    /// Key prefix (default `/vkube/NAME`).
    pub prefix: Option<String>,
    /// CA, client certificate and key files.
    pub tls: vkube_config::EtcdTls,
    /// The watch cache in front of etcd.
    pub watch_cache: bool,
}

impl Default for EtcdFlags {
    fn default() -> Self {
        EtcdFlags { endpoints: Vec::new(), prefix: None, tls: Default::default(), watch_cache: true }
    }
}

/// The store: etcd when endpoints are configured (flags first, then vcluster.yaml), else
/// SQLite in the data directory. True when the store may be shared with other replicas.
/// `name` gives the default etcd key prefix, `/vkube/NAME`.
pub(crate) async fn open_store(
    flags: &EtcdFlags,
    values: &vkube_config::VClusterConfig,
    data_dir: &std::path::Path,
    name: &str,
) -> anyhow::Result<(Arc<dyn vkube_store::Store>, bool)> {
    let endpoints = if flags.endpoints.is_empty() { values.etcd_endpoints.clone() } else { flags.endpoints.clone() };
    if endpoints.is_empty() {
        let store = vkube_store::SqliteStore::open(&data_dir.join("state.db")).context("opening the store")?;
        return Ok((Arc::new(store), false));
    }
    let pick = |flag: &Option<String>, yaml: &Option<String>| flag.clone().or_else(|| yaml.clone()).map(PathBuf::from);
    let config = vkube_store::EtcdConfig {
        prefix: flags.prefix.clone().or_else(|| values.etcd_prefix.clone()).unwrap_or_else(|| format!("/vkube/{name}")),
        ca_file: pick(&flags.tls.ca_file, &values.etcd_tls.ca_file),
        cert_file: pick(&flags.tls.cert_file, &values.etcd_tls.cert_file),
        key_file: pick(&flags.tls.key_file, &values.etcd_tls.key_file),
        compaction_interval: Some(std::time::Duration::from_secs(300)),
        endpoints: endpoints.clone(),
    };
    let store = vkube_store::EtcdStore::connect(config)
        .await
        .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
    if !flags.watch_cache {
        return Ok((Arc::new(store), true));
    }
    let cached = vkube_store::CachedStore::start(Arc::new(store)).await.context("filling the watch cache from etcd")?;
    Ok((Arc::new(cached), true))
}

/// A running virtual cluster.
pub struct Virtual {
    /// Its API server.
    pub server: vkube_apiserver::RunningServer,
    /// `DIR/NAME.kubeconfig`.
    pub kubeconfig: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The client and election that run the controllers and the syncer here.
    election: (kube::Client, vkube_controllers::leader::LeaderConfig),
}

impl Virtual {
    /// Stop everything; hand the Lease over if this replica holds it.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        let (client, lease) = &self.election;
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(2), vkube_controllers::leader::release(client, lease))
                .await;
        self.server.shutdown().await;
    }
}

/// The host copies of virtual pods, for what reaches through to them: logs, streams
/// (exec, attach, port-forward) and metrics.
struct HostPods {
    host: kube::Client,
    mapper: NameMapper,
    /// The syncer's index of host objects (for pods synced under an older name).
    index: Arc<vkube_syncer::host_index::HostIndexes>,
}

impl HostPods {
    /// The name of a virtual pod's host copy.
    fn host_name(&self, pod: &Value) -> String {
        let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
        let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        self.index.existing_name(&self.mapper, "Pod", ns, name).unwrap_or_else(|| self.mapper.host_name(name, ns))
    }
}

#[async_trait]
impl LogSource for HostPods {
    /// The host pod's log with the same options, streamed as the host sends it (`-f`
    /// follows until the host ends it).
    async fn logs(&self, request: LogRequest<'_>) -> Result<http::Response<vkube_apiserver::Body>, ApiError> {
        let host_name = self.host_name(request.pod);
        let mut query: Vec<(String, String)> = form_urlencoded::parse(request.query.as_bytes())
            .filter(|(k, _)| k != "container")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        query.push(("container".into(), request.container.to_string()));
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish();
        let uri = format!("/api/v1/namespaces/{}/pods/{host_name}/log?{query}", self.mapper.host_namespace);
        let upstream = http::Request::get(uri)
            .body(kube::client::Body::empty())
            .map_err(|e| ApiError::internal(format!("building the host request: {e}")))?;
        let answer = self.host.send(upstream).await.map_err(|e| ApiError::unavailable(format!("host cluster: {e}")))?;
        let (parts, body) = answer.into_parts();
        let mut r = http::Response::new(vkube_apiserver::Body::new(body));
        *r.status_mut() = parts.status;
        if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
            r.headers_mut().insert(http::header::CONTENT_TYPE, ct.clone());
        }
        Ok(r)
    }
}

// `kubectl exec`, `attach` and `port-forward` in the virtual cluster: the upgraded
// connection is passed to the host pod's subresource through the host API, as vCluster
// does, so any host (and its kubelets) serves them.

/// The headers of a stream upgrade, both ways (WebSocket and SPDY).
const UPGRADE_HEADERS: [&str; 8] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "x-stream-protocol-version",
];

fn copy_upgrade_headers(from: &http::HeaderMap, to: &mut http::HeaderMap) {
    for name in UPGRADE_HEADERS {
        for v in from.get_all(name) {
            to.append(name, v.clone());
        }
    }
}

#[async_trait]
impl StreamSource for HostPods {
    async fn stream(&self, request: StreamRequest) -> Result<http::Response<bytes::Bytes>, ApiError> {
        let ns = request.pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
        let name = request.pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let host_name = self.host_name(&request.pod);
        let mut uri = format!(
            "/api/v1/namespaces/{}/pods/{host_name}/{}",
            self.mapper.host_namespace,
            request.subresource.name()
        );
        if !request.query.is_empty() {
            uri = format!("{uri}?{}", request.query);
        }
        let mut upstream = http::Request::builder()
            .method(request.method.clone())
            .uri(uri)
            .body(kube::client::Body::empty())
            .map_err(|e| ApiError::internal(format!("building the host request: {e}")))?;
        copy_upgrade_headers(&request.headers, upstream.headers_mut());
        let answer = self.host.send(upstream).await.map_err(|e| ApiError::unavailable(format!("host cluster: {e}")))?;
        if answer.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            // The host's refusal, as it gave it (a Status, or a kubelet's text).
            let status = answer.status();
            let content_type = answer.headers().get(http::header::CONTENT_TYPE).cloned();
            let body = http_body_util::BodyExt::collect(answer.into_body())
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| ApiError::unavailable(format!("host cluster: reading its answer: {e}")))?;
            let mut r = http::Response::new(body);
            *r.status_mut() = status;
            if let Some(ct) = content_type {
                r.headers_mut().insert(http::header::CONTENT_TYPE, ct);
            }
            return Ok(r);
        }
        let mut r = http::Response::new(bytes::Bytes::new());
        *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        copy_upgrade_headers(answer.headers(), r.headers_mut());
        let client = request.upgrade;
        let what = format!("{ns}/{name} {}", request.subresource.name());
        tokio::spawn(async move {
            let (host_side, client_side) = tokio::join!(hyper::upgrade::on(answer), client);
            let (mut host_side, mut client_side) = match (host_side, client_side) {
                (Ok(h), Ok(c)) => (hyper_util::rt::TokioIo::new(h), hyper_util::rt::TokioIo::new(c)),
                (Err(e), _) => return tracing::warn!("{what}: the host connection was not upgraded: {e}"),
                (_, Err(e)) => return tracing::debug!("{what}: the client connection was not upgraded: {e}"),
            };
            if let Err(e) = tokio::io::copy_bidirectional(&mut client_side, &mut host_side).await {
                tracing::debug!("{what}: stream ended: {e}");
            }
        });
        Ok(r)
    }
}

// `kubectl top` in the virtual cluster: the host's metrics API (metrics-server, or a
// vkube host), pods read in the host namespace under their host names, nodes by name
// (virtual nodes are named after host nodes), as vCluster's metrics-server proxy does.
impl HostPods {
    async fn host_get(&self, path: &str) -> Result<Value, ApiError> {
        let request = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| ApiError::internal(format!("building the host request: {e}")))?;
        self.host.request::<Value>(request).await.map_err(|e| match e {
            // A list there is never NotFound when the API is served: it is not.
            kube::Error::Api(s) if s.code == 404 => {
                ApiError::unavailable("the host cluster serves no metrics API (metrics.k8s.io)")
            }
            kube::Error::Api(s) => ApiError::new(s.code, &s.reason, s.message.clone()),
            other => ApiError::unavailable(format!("host cluster metrics: {other}")),
        })
    }
}

#[async_trait]
impl MetricsSource for HostPods {
    async fn pods(&self, pods: &[Value]) -> Result<Vec<Option<Value>>, ApiError> {
        let list = self
            .host_get(&format!("/apis/metrics.k8s.io/v1beta1/namespaces/{}/pods", self.mapper.host_namespace))
            .await?;
        let by_name: std::collections::HashMap<&str, &Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| Some((m.pointer("/metadata/name")?.as_str()?, &m["containers"])))
            .collect();
        Ok(pods.iter().map(|p| by_name.get(self.host_name(p).as_str()).map(|c| (*c).clone())).collect())
    }

    async fn nodes(&self, nodes: &[Value]) -> Result<Vec<Option<Value>>, ApiError> {
        let list = self.host_get("/apis/metrics.k8s.io/v1beta1/nodes").await?;
        let by_name: std::collections::HashMap<&str, &Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| Some((m.pointer("/metadata/name")?.as_str()?, &m["usage"])))
            .collect();
        Ok(nodes
            .iter()
            .map(|n| {
                let name = n.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                by_name.get(name).map(|u| (*u).clone())
            })
            .collect())
    }
}

/// The Lease (in the virtual cluster's `kube-system`) whose holder runs the controllers,
/// the virtual scheduler and the syncer.
pub const LEADER_LEASE: &str = "vkube-leader";

/// Read and check vcluster.yaml (printing the vCluster keys vkube ignores).
///
/// # Errors
/// Unknown keys, wrong types, unreadable file.
pub fn load_values(path: Option<&Path>) -> anyhow::Result<vkube_config::VClusterConfig> {
    let Some(path) = path else { return Ok(Default::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "vcluster.yaml".into());
    let parsed = vkube_config::VClusterConfig::parse(&file, &text)?;
    for line in &parsed.not_implemented {
        eprintln!("warning: {line}");
    }
    Ok(parsed.config)
}

/// Start a virtual cluster against a host.
///
/// # Errors
/// A bad vcluster.yaml, a server that cannot start, a host that refuses the namespace.
pub async fn start(cfg: ServeConfig, host_client: kube::Client) -> anyhow::Result<Virtual> {
    let mut values = load_values(cfg.values.as_deref())?;
    // The virtual scheduler places pods on virtual nodes: they mirror the host's.
    if values.virtual_scheduler {
        values.sync_nodes = true;
    }
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let (store, replicated) = open_store(&cfg.etcd, &values, &cfg.data_dir, &cfg.name).await?;
    let mut config = vkube_apiserver::ServerConfig::new(cfg.data_dir.clone(), store);
    config.listen = cfg.listen;
    config.cluster_name = cfg.name.clone();
    config.replicated = replicated;
    let server = vkube_apiserver::start(config).await?;
    let host_namespace = cfg.host_namespace.clone().unwrap_or_else(|| format!("vkube-{}", cfg.name));
    let mapper = NameMapper::new(cfg.name.clone(), host_namespace.clone());
    let host_index =
        Arc::new(vkube_syncer::host_index::HostIndexes::new(&vkube_syncer::host_index::kinds_for(&values)));
    let host_pods = Arc::new(HostPods { host: host_client.clone(), mapper: mapper.clone(), index: host_index.clone() });
    if let Ok(mut logs) = server.state.logs.write() {
        *logs = Some(host_pods.clone());
    }
    if let Ok(mut streams) = server.state.streams.write() {
        *streams = Some(host_pods.clone());
    }
    vkube_apiserver::endpoints::metrics::enable(&server.state, host_pods).await.context("serving metrics.k8s.io")?;
    let kubeconfig = cfg.data_dir.join(format!("{}.kubeconfig", cfg.name));
    let text = std::fs::read_to_string(&server.kubeconfig_path)?;
    std::fs::write(&kubeconfig, text).context("writing the kubeconfig")?;
    // The host namespace, if it is not there yet. Least-privilege credentials (a Role in
    // the namespace, see `vkube host-rbac`) may not read it: it exists then.
    let namespaces: Api<Namespace> = Api::all(host_client.clone());
    match namespaces.get_opt(&host_namespace).await {
        Ok(Some(_)) => {}
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        Err(e) => return Err(e).context("reading the host namespace"),
        Ok(None) => {
            let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": host_namespace}}))?;
            match namespaces.create(&PostParams::default(), &ns).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e).context("creating the host namespace"),
            }
        }
    }
    // Everything the syncer will do on the host, asked before it starts: a missing grant
    // is an error naming it, not a syncer that stalls on it.
    let needs = vkube_syncer::rbac::needs(&values);
    let gaps = vkube_syncer::rbac::missing(&host_client, &host_namespace, &needs)
        .await
        .context("asking the host what its credentials may do")?;
    if !gaps.is_empty() {
        let user = vkube_syncer::rbac::who(&host_client).await.map(|u| format!(" ({u})")).unwrap_or_default();
        let values_flag = cfg.values.as_ref().map(|p| format!(" -f {}", p.display())).unwrap_or_default();
        anyhow::bail!(
            "the host credentials{user} may not do what this virtual cluster needs on the host:\n{}\
             Grant it with the manifests of `vkube host-rbac --name {} --namespace {host_namespace}{values_flag}` \
             (kubectl apply -f - on the host, as its admin), then use that ServiceAccount's token.",
            vkube_syncer::rbac::describe(&gaps),
            cfg.name
        );
    }
    vkube_syncer::policies::ensure_host_policies(&host_client, &mapper, &cfg.name, &values)
        .await
        .context("deploying policies.resourceQuota / policies.limitRange on the host")?;
    if let Some(level) = &values.pod_security_standard {
        crate::podsecurity::enforce_everywhere(&server, level).await?;
    }
    // The syncer has its own identity, so the API server can tell its writes from a
    // user's, bound to the least it needs (the `vkube:syncer` cluster role of the
    // bootstrap policy); the controllers and the scheduler have theirs.
    let virtual_client = crate::host::client_as(&server, vkube_syncer::resources::node_edits::SYNCER_USER, &[]).await?;
    let scheduler_client = crate::host::client_as(&server, vkube_scheduler::USER, &[]).await?;
    let controllers =
        vkube_controllers::Clients::per_controller(|user, groups| Ok(server.kubeconfig_as(user, groups)?)).await?;
    server.state.add_admission(Arc::new(vkube_syncer::resources::node_edits::NodeEdits {
        virtual_scheduler: values.virtual_scheduler,
        sync_back: values.sync_back_changes,
        host: host_client.clone(),
    }));
    // Virtual nodes are kept by the syncer; the node lifecycle controller only evicts
    // pods that do not tolerate their NoExecute taints.
    // Unique across machines too (two replicas on 0.0.0.0:6443 share an address), with
    // the address last so an operator can tell which replica leads.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let identity = format!("{}_{}_{}_{}", cfg.name, hostname.trim(), std::process::id(), server.addr);
    let manager = vkube_controllers::ManagerConfig {
        node_lifecycle: vkube_controllers::nodelifecycle::NodeLifecycleConfig {
            manage_nodes: false,
            ..Default::default()
        },
        identity: identity.clone(),
        root_ca_pem: Some(server.pki.ca.cert_pem.clone()),
        ..Default::default()
    };
    let mut sync = vkube_syncer::SyncContext::new(virtual_client.clone(), host_client, mapper, values.clone());
    sync.host_index = host_index;
    // Pods are told where the virtual API is when it listens on a definite address (the
    // serving certificate names it); with 0.0.0.0 the reachable address is unknown.
    if !server.addr.ip().is_unspecified() {
        sync.api_endpoint = Some((server.addr.ip().to_string(), server.addr.port()));
    }
    let sync = Arc::new(sync);
    // Every replica serves the API; the controllers, the virtual scheduler and the syncer
    // run on the one holding the Lease, and move when it dies.
    let lease = vkube_controllers::leader::LeaderConfig {
        namespace: "kube-system".into(),
        name: LEADER_LEASE.into(),
        identity,
        lease_duration: std::time::Duration::from_secs(15),
        retry_period: std::time::Duration::from_secs(2),
    };
    let virtual_scheduler = values.virtual_scheduler;
    let election = (virtual_client.clone(), lease.clone());
    let elected = vkube_controllers::leader::run_elected(virtual_client, lease, move || {
        let (controllers, scheduler, manager, sync) =
            (controllers.clone(), scheduler_client.clone(), manager.clone(), sync.clone());
        async move {
            let mut set = tokio::task::JoinSet::new();
            set.spawn(vkube_controllers::ControllerManager::run_unelected(controllers, manager));
            if virtual_scheduler {
                set.spawn(async move {
                    if let Err(e) = vkube_scheduler::Scheduler::run(scheduler, Default::default()).await {
                        tracing::error!("virtual scheduler stopped: {e}");
                    }
                });
            }
            set.spawn(vkube_syncer::Syncer::run(sync));
            while set.join_next().await.is_some() {}
        }
    });
    let tasks = vec![tokio::spawn(elected)];
    Ok(Virtual { server, kubeconfig, tasks, election })
}
