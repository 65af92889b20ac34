//! An admission webhook for tests: an HTTPS server on a loopback port, with its own CA,
//! answering each AdmissionReview with what a test's function decides, and keeping the
//! reviews it received.

use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// Decides the `response` of a review (`uid` is filled in).
pub type Decide = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// A running webhook server.
pub struct TestWebhook {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The port.
    pub port: u16,
    /// The CA that signed its certificate (for `caBundle`).
    pub ca_pem: String,
    reviews: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TestWebhook {
    /// Serve reviews with `decide`; the certificate names `127.0.0.1` and `extra_names`.
    ///
    /// # Errors
    /// If the certificates or the listener cannot be made.
    pub async fn start(extra_names: &[&str], decide: Decide) -> anyhow::Result<Self> {
        crate::install_crypto();
        let dir = tempfile::tempdir()?;
        let mut names: Vec<String> = vec!["127.0.0.1".into()];
        names.extend(extra_names.iter().map(|s| s.to_string()));
        let pki = vkube_apiserver::pki::Pki::load_or_create(dir.path(), &names)?;
        let config =
            vkube_apiserver::pki::tls_server_config(&pki.serving, &pki.ca.cert_pem).map_err(anyhow::Error::msg)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let reviews: Arc<Mutex<Vec<Value>>> = Arc::default();
        let seen = reviews.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                let decide = decide.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let decide = decide.clone();
                        let seen = seen.clone();
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let review: Value = serde_json::from_slice(&body).unwrap_or_default();
                            let request = review.get("request").cloned().unwrap_or_default();
                            if let Ok(mut s) = seen.lock() {
                                s.push(review.clone());
                            }
                            let mut response = decide(&request);
                            response["uid"] = request.get("uid").cloned().unwrap_or_default();
                            let answer = json!({
                                "apiVersion": review.get("apiVersion").cloned().unwrap_or(json!("admission.k8s.io/v1")),
                                "kind": "AdmissionReview",
                                "response": response,
                            });
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(bytes::Bytes::from(
                                answer.to_string(),
                            ))))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(tls);
                    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                    if let Err(e) = builder.serve_connection(io, service).await {
                        tracing::debug!(error = %e, "test webhook connection ended");
                    }
                });
            }
        });
        Ok(TestWebhook {
            url: format!("https://127.0.0.1:{port}"),
            port,
            ca_pem: pki.ca.cert_pem.clone(),
            reviews,
            task,
            _dir: dir,
        })
    }

    /// The reviews received so far.
    pub fn reviews(&self) -> Vec<Value> {
        self.reviews.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for TestWebhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}
