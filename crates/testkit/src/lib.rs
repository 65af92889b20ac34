//! vkube-testkit: boot real in-process vkube servers on ephemeral loopback ports, each
//! with its own temporary data directory, for integration tests — an API server alone
//! ([`TestServer`]), or a cluster with the controllers (and a scheduler and simulated
//! nodes, for a host), optionally syncing into another one ([`TestCluster`]), so that
//! controller and syncer behaviour is tested without the binary.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let host = vkube_testkit::TestCluster::host(2).await?;
//! let virtual_cluster = vkube_testkit::TestCluster::start().await?.with_syncer(&host, Default::default()).await?;
//! let client = virtual_cluster.client().await?;
//! # Ok(()) }
//! ```

pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A running API server with its data directory; stopped and removed on drop of
/// [`TestServer::stop`] (or when the test ends).
pub struct TestServer {
    server: Option<vkube_apiserver::RunningServer>,
    dir: tempfile::TempDir,
}

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl TestServer {
    /// Start a server over SQLite in a fresh temporary directory.
    ///
    /// # Errors
    /// If the server cannot start.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let server = Self::boot(dir.path(), None).await?;
        Ok(TestServer { server: Some(server), dir })
    }

    /// Start a server over `store` (e.g. one replica of several on one etcd), with
    /// `configure` adjusting its configuration first.
    ///
    /// # Errors
    /// If the server cannot start.
    pub async fn start_on(
        store: Arc<dyn vkube_store::Store>,
        configure: impl FnOnce(&mut vkube_apiserver::ServerConfig),
    ) -> anyhow::Result<Self> {
        install_crypto();
        let dir = tempfile::tempdir()?;
        let mut config = vkube_apiserver::ServerConfig::new(dir.path().to_path_buf(), store);
        configure(&mut config);
        let server = vkube_apiserver::start(config).await?;
        Ok(TestServer { server: Some(server), dir })
    }

    async fn boot(dir: &Path, listen: Option<std::net::SocketAddr>) -> anyhow::Result<vkube_apiserver::RunningServer> {
        install_crypto();
        let store = vkube_store::SqliteStore::open(&dir.join("state.db"))?;
        let mut config = vkube_apiserver::ServerConfig::new(dir.to_path_buf(), Arc::new(store));
        if let Some(addr) = listen {
            config.listen = addr;
        }
        Ok(vkube_apiserver::start(config).await?)
    }

    /// Stop the server and start it again on the same data directory and port, so
    /// clients made before keep working.
    ///
    /// # Errors
    /// If it cannot restart.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let mut addr = None;
        if let Some(s) = self.server.take() {
            addr = Some(s.addr);
            s.shutdown().await;
        }
        let mut last = None;
        for _ in 0..50 {
            match Self::boot(self.dir.path(), addr).await {
                Ok(s) => {
                    self.server = Some(s);
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("restart failed")))
    }

    /// The running server.
    pub fn server(&self) -> &vkube_apiserver::RunningServer {
        self.server.as_ref().expect("server is running")
    }

    /// The admin kubeconfig path.
    pub fn kubeconfig(&self) -> PathBuf {
        self.server().kubeconfig_path.clone()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A kube-rs client with the admin credentials.
    ///
    /// # Errors
    /// If the kubeconfig cannot be read.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        install_crypto();
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// A kube-rs client acting as `user` in `groups` (a client certificate of this
    /// server's CA).
    ///
    /// # Errors
    /// Certificate or client errors.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> anyhow::Result<kube::Client> {
        install_crypto();
        vkube_controllers::util::client_from_kubeconfig(&self.server().kubeconfig_as(user, groups)?).await
    }

    /// The clients of the controllers, each its own service account, as
    /// kube-controller-manager runs them.
    ///
    /// # Errors
    /// Certificate or client errors.
    pub async fn controller_clients(&self) -> anyhow::Result<vkube_controllers::Clients> {
        install_crypto();
        vkube_controllers::Clients::per_controller(|user, groups| Ok(self.server().kubeconfig_as(user, groups)?)).await
    }

    /// Stop the server.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// An API server with what runs beside it: the controllers, and for a host the
/// scheduler and simulated nodes, or for a virtual cluster the syncer. Everything stops
/// when it is dropped.
pub struct TestCluster {
    /// The API server.
    pub server: TestServer,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    nodes: Option<vkube_kubelet_sim::SimulatedNodes>,
}

impl TestCluster {
    /// An API server with the controllers.
    ///
    /// # Errors
    /// If the server cannot start.
    pub async fn start() -> anyhow::Result<Self> {
        let server = TestServer::start().await?;
        let clients = server.controller_clients().await?;
        let manager = vkube_controllers::ManagerConfig {
            root_ca_pem: Some(server.server().pki.ca.cert_pem.clone()),
            ..Default::default()
        };
        let tasks = vec![tokio::spawn(vkube_controllers::ControllerManager::run_unelected(clients, manager))];
        Ok(TestCluster { server, tasks, nodes: None })
    }

    /// A host cluster: the controllers, the scheduler and `nodes` simulated nodes.
    ///
    /// # Errors
    /// If the server cannot start or the nodes cannot register.
    pub async fn host(nodes: usize) -> anyhow::Result<Self> {
        let mut cluster = Self::start().await?;
        let client = cluster.client().await?;
        let scheduler = cluster.server.client_as(vkube_scheduler::USER, &[]).await?;
        cluster.tasks.push(tokio::spawn(async move {
            if let Err(e) = vkube_scheduler::Scheduler::run(scheduler, Default::default()).await {
                tracing::error!("test scheduler stopped: {e}");
            }
        }));
        let config = vkube_kubelet_sim::NodeConfig { count: nodes, ..Default::default() };
        cluster.nodes = Some(vkube_kubelet_sim::SimulatedNodes::start(client, config).await?);
        Ok(cluster)
    }

    /// Sync this (virtual) cluster into `host`'s namespace `vkube-vc`, as virtual
    /// cluster `vc`, with `config` (vcluster.yaml's settings).
    ///
    /// # Errors
    /// If the clients cannot be made.
    pub async fn with_syncer(
        mut self,
        host: &TestCluster,
        config: vkube_config::VClusterConfig,
    ) -> anyhow::Result<Self> {
        use k8s_openapi::api::core::v1::Namespace;
        let host_client = host.client().await?;
        let namespaces: kube::Api<Namespace> = kube::Api::all(host_client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": "vkube-vc"}}))?;
        match namespaces.create(&Default::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        let mapper = vkube_syncer::names::NameMapper::new("vc", "vkube-vc");
        let ctx = vkube_syncer::SyncContext::new(self.client().await?, host_client, mapper, config);
        self.tasks.push(tokio::spawn(vkube_syncer::Syncer::run(std::sync::Arc::new(ctx))));
        Ok(self)
    }

    /// A kube-rs client with the admin credentials.
    ///
    /// # Errors
    /// If the kubeconfig cannot be read.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        self.server.client().await
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.nodes.take();
    }
}
