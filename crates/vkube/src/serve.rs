//! `vkube serve` and `vkube up`: a virtual cluster (API server, controllers, the virtual
//! scheduler when enabled) plus the syncer against a host cluster.

use anyhow::Context;
use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, LogParams, PostParams};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vkube_apiserver::admission::LogSource;
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
}

/// A running virtual cluster.
pub struct Virtual {
    /// Its API server.
    pub server: vkube_apiserver::RunningServer,
    /// `DIR/NAME.kubeconfig`.
    pub kubeconfig: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Virtual {
    /// Stop everything.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.server.shutdown().await;
    }
}

struct HostLogs {
    host: kube::Client,
    mapper: NameMapper,
}

#[async_trait]
impl LogSource for HostLogs {
    async fn logs(&self, pod: &Value, container: &str, tail_lines: Option<i64>) -> Result<String, ApiError> {
        let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
        let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.host.clone(), &self.mapper.host_namespace);
        let lp = LogParams { container: Some(container.to_string()), tail_lines, ..Default::default() };
        api.logs(&self.mapper.host_name(name, ns), &lp).await.map_err(|e| match e {
            kube::Error::Api(s) => ApiError::new(s.code, &s.reason, s.message.clone()),
            other => ApiError::unavailable(format!("host cluster: {other}")),
        })
    }
}

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
    let store = vkube_store::SqliteStore::open(&cfg.data_dir.join("state.db")).context("opening the store")?;
    let mut config = vkube_apiserver::ServerConfig::new(cfg.data_dir.clone(), Arc::new(store));
    config.listen = cfg.listen;
    config.cluster_name = cfg.name.clone();
    let server = vkube_apiserver::start(config).await?;
    let host_namespace = cfg.host_namespace.clone().unwrap_or_else(|| format!("vkube-{}", cfg.name));
    let mapper = NameMapper { cluster: cfg.name.clone(), host_namespace: host_namespace.clone() };
    if let Ok(mut logs) = server.state.logs.write() {
        *logs = Some(Arc::new(HostLogs { host: host_client.clone(), mapper: mapper.clone() }));
    }
    let kubeconfig = cfg.data_dir.join(format!("{}.kubeconfig", cfg.name));
    let text = std::fs::read_to_string(&server.kubeconfig_path)?;
    std::fs::write(&kubeconfig, text).context("writing the kubeconfig")?;
    // The host namespace, if it is not there yet.
    let namespaces: Api<Namespace> = Api::all(host_client.clone());
    if namespaces.get_opt(&host_namespace).await?.is_none() {
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": host_namespace}}))?;
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context("creating the host namespace"),
        }
    }
    // The syncer has its own identity, so the API server can tell its writes from a user's.
    let pair = server.pki.issue_client(crate::node_admission::SYNCER_USER, &["system:masters"])?;
    let syncer_kc = vkube_apiserver::pki::kubeconfig(
        &cfg.name,
        &server.url,
        &server.pki.ca.cert_pem,
        vkube_apiserver::pki::Credential::Cert(&pair),
    );
    let syncer_config =
        kube::Config::from_custom_kubeconfig(kube::config::Kubeconfig::from_yaml(&syncer_kc)?, &Default::default())
            .await?;
    let virtual_client = kube::Client::try_from(syncer_config)?;
    server.state.add_admission(Arc::new(crate::node_admission::NodeEdits {
        virtual_scheduler: values.virtual_scheduler,
        sync_back: values.sync_back_changes,
        host: host_client.clone(),
    }));
    let mut tasks = Vec::new();
    // Virtual nodes are kept by the syncer; the node lifecycle controller only evicts
    // pods that do not tolerate their NoExecute taints.
    let manager = vkube_controllers::ManagerConfig {
        node_lifecycle: vkube_controllers::nodelifecycle::NodeLifecycleConfig {
            manage_nodes: false,
            ..Default::default()
        },
        identity: format!("vkube-{}-{}", cfg.name, std::process::id()),
        root_ca_pem: Some(server.pki.ca.cert_pem.clone()),
        ..Default::default()
    };
    tasks.push(tokio::spawn(vkube_controllers::ControllerManager::run(virtual_client.clone(), manager)));
    if values.virtual_scheduler {
        let c = virtual_client.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = vkube_scheduler::Scheduler::run(c, Default::default()).await {
                tracing::error!("virtual scheduler stopped: {e}");
            }
        }));
    }
    let mut sync = vkube_syncer::SyncContext::new(virtual_client, host_client, mapper, values);
    // Pods are told where the virtual API is when it listens on a definite address (the
    // serving certificate names it); with 0.0.0.0 the reachable address is unknown.
    if !server.addr.ip().is_unspecified() {
        sync.api_endpoint = Some((server.addr.ip().to_string(), server.addr.port()));
    }
    let ctx = Arc::new(sync);
    tasks.push(tokio::spawn(vkube_syncer::Syncer::run(ctx)));
    Ok(Virtual { server, kubeconfig, tasks })
}
