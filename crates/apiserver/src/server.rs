//! Serving: TLS (rustls) with client-certificate and bearer-token authentication,
//! HTTP/1.1 and HTTP/2 on one port, graceful shutdown.
//!
//! Start with [`ServerConfig`] and [`start`]: it loads or creates the certificates in
//! the data directory, writes `DIR/admin.kubeconfig`, bootstraps the default objects,
//! and serves until [`RunningServer::shutdown`].

use crate::authn::Authenticator;
use crate::endpoints::{self, ApiState};
use crate::pki::{self, Pki};
use crate::registry::Registry;
use crate::resources::Catalog;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use vkube_store::Store;

/// What the API server needs to start.
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1:0` for an ephemeral port).
    pub listen: SocketAddr,
    /// Directory for certificates and kubeconfigs.
    pub data_dir: PathBuf,
    /// The store to serve.
    pub store: Arc<dyn Store>,
    /// Service cluster IP range.
    pub service_cidr: (Ipv4Addr, u8),
    /// A static token file (kube-apiserver's CSV format: `token,user,uid,"g1,g2"`).
    pub token_file: Option<PathBuf>,
    /// Name of the cluster in the kubeconfig.
    pub cluster_name: String,
    /// Extra names for the serving certificate.
    pub extra_sans: Vec<String>,
    /// The store is shared with other replicas of this API server (etcd): take the CA
    /// and service-account key from it, and follow CRDs created through other replicas.
    pub replicated: bool,
}

impl ServerConfig {
    /// Defaults for a data directory: loopback ephemeral port, 10.96.0.0/12.
    pub fn new(data_dir: PathBuf, store: Arc<dyn Store>) -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            store,
            service_cidr: (Ipv4Addr::new(10, 96, 0, 0), 12),
            token_file: None,
            cluster_name: "vkube".into(),
            extra_sans: vec![],
            replicated: false,
        }
    }
}

/// Errors of starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding the port failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Certificates could not be loaded or created.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// TLS configuration failed.
    #[error("tls: {0}")]
    Tls(String),
    /// Bootstrapping default objects failed.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    /// The token file is unreadable or malformed.
    #[error("token file: {0}")]
    Tokens(String),
}

/// A running server.
pub struct RunningServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `https://ADDR`.
    pub url: String,
    /// The admin kubeconfig's path.
    pub kubeconfig_path: PathBuf,
    /// The certificates.
    pub pki: Pki,
    /// Shared state (registry, catalog).
    pub state: Arc<ApiState>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    crd_follower: Option<tokio::task::JoinHandle<()>>,
    rbac_follower: tokio::task::JoinHandle<()>,
    admission_follower: tokio::task::JoinHandle<()>,
    csr_signer: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// A kubeconfig for user `user` in groups `groups`, with a client certificate of
    /// this server's CA (the identities its own components act as).
    ///
    /// # Errors
    /// Certificate errors.
    pub fn kubeconfig_as(&self, user: &str, groups: &[&str]) -> Result<String, crate::pki::PkiError> {
        let pair = self.pki.issue_client(user, groups)?;
        Ok(crate::pki::kubeconfig("vkube", &self.url, &self.pki.ca.cert_pem, crate::pki::Credential::Cert(&pair)))
    }

    /// Stop accepting, close connections (watches end), and wait for the loop to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Some(f) = &self.crd_follower {
            f.abort();
        }
        self.rbac_follower.abort();
        self.admission_follower.abort();
        self.csr_signer.abort();
        let _ = self.task.await;
    }
}

fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig, ServeError> {
    pki::tls_server_config(&pki.serving, &pki.ca.cert_pem).map_err(ServeError::Tls)
}

/// Start serving.
///
/// # Errors
/// See [`ServeError`].
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServeError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| ServeError::Pki(pki::PkiError::Io { path: config.data_dir.clone(), source }))?;
    let mut sans = config.extra_sans.clone();
    if !config.listen.ip().is_unspecified() {
        sans.push(config.listen.ip().to_string());
    }
    if config.replicated {
        pki::share_through_store(&config.data_dir, config.store.as_ref()).await?;
    }
    let pki = Pki::load_or_create(&config.data_dir, &sans)?;
    let listener =
        TcpListener::bind(config.listen).await.map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let url = if host.contains(':') {
        format!("https://[{host}]:{}", addr.port())
    } else {
        format!("https://{host}:{}", addr.port())
    };
    let authenticator = Authenticator::new(config.token_file.as_deref()).map_err(ServeError::Tokens)?;
    let catalog = Arc::new(Catalog::builtin(crate::resources::BuiltinConfig { service_cidr: config.service_cidr }));
    let registry = Arc::new(Registry::new(config.store.clone(), catalog.clone(), config.service_cidr));
    crate::bootstrap::ensure_defaults(&registry).await.map_err(|e| ServeError::Bootstrap(e.message))?;
    crate::authz::bootstrap::ensure(&registry).await.map_err(|e| ServeError::Bootstrap(e.message))?;
    crate::crd::load_established(&registry).await;
    // Every CRD change — a delete collection, a finalizer removed, another replica's
    // write — reshapes the served custom resources, not only the writes that call
    // `crd::on_change` themselves.
    let crd_follower = Some(tokio::spawn(crate::crd::follow(registry.clone())));
    let issuer = crate::authn::tokens::TokenIssuer::new(&pki.service_account_key_pem).map_err(ServeError::Tls)?;
    let state = Arc::new(ApiState::new(registry, authenticator).with_tokens(issuer));
    // The RBAC objects are loaded before the first request is served, and followed.
    state.authz.refresh().await;
    let rbac_follower = tokio::spawn(state.authz.clone().follow());
    // Webhooks and admission policies, likewise.
    state.admission.dynamic.refresh().await;
    let admission_follower = tokio::spawn(state.admission.dynamic.clone().follow());
    let csr_signer = tokio::spawn(crate::csr_signer::follow(state.registry.clone(), pki.ca.clone()));
    let kubeconfig_path = config.data_dir.join("admin.kubeconfig");
    let kc = pki::kubeconfig(&config.cluster_name, &url, &pki.ca.cert_pem, pki::Credential::Cert(&pki.admin));
    pki::write_kubeconfig(&kubeconfig_path, &kc)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&pki)?));
    let (shutdown, mut stop) = watch::channel(false);
    let loop_state = state.clone();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, _peer)) = accepted else { continue };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let state = loop_state.clone();
                    let stop = stop.clone();
                    connections.spawn(serve_connection(tcp, acceptor, state, stop));
                }
                _ = stop.changed() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        // Give in-flight requests a moment, then drop the rest (watches end).
        let deadline = tokio::time::sleep(std::time::Duration::from_millis(500));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = connections.join_next() => if next.is_none() { break },
                _ = &mut deadline => { connections.abort_all(); break }
            }
        }
    });
    Ok(RunningServer {
        addr,
        url,
        kubeconfig_path,
        pki,
        state,
        shutdown,
        task,
        crd_follower,
        rbac_follower,
        admission_follower,
        csr_signer,
    })
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    state: Arc<ApiState>,
    mut stop: watch::Receiver<bool>,
) {
    let handshake = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await;
    let Ok(Ok(tls)) = handshake else { return };
    let cert_user = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|c| crate::authn::user_from_certificate(c.as_ref()));
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let cert_user = cert_user.clone();
        async move { Ok::<_, std::convert::Infallible>(endpoints::handle(state, cert_user, req).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_millis(400), conn).await;
        }
    }
}
