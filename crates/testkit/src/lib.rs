//! vkube-testkit: boot real in-process vkube servers on ephemeral loopback ports, each
//! with its own temporary data directory, for integration tests.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let server = vkube_testkit::TestServer::start().await?;
//! let client = server.client().await?;
//! # Ok(()) }
//! ```

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

    /// Stop the server.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}
