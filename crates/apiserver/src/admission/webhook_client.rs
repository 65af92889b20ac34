//! The HTTPS client admission webhooks are called with: one POST per call over rustls,
//! trusting the configuration's `caBundle` (or the system's roots without one), with the
//! webhook's timeout over the whole exchange.

use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::Duration;

/// Where to send a review.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port` to connect to.
    pub address: String,
    /// The name the server's certificate must carry.
    pub server_name: String,
    /// The request path and query.
    pub path: String,
    /// The URL as kube-apiserver names it in errors (`https://host/path?timeout=10s`).
    pub display: String,
}

/// Split `https://host[:port][/path]` into an endpoint (query `timeout` added).
///
/// # Errors
/// A URL that is not `https://host…`.
pub fn endpoint_of_url(url: &str, timeout: Duration) -> Result<Endpoint, String> {
    let rest = url.strip_prefix("https://").ok_or_else(|| format!("url {url:?} is not https"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = split_host_port(authority);
    Ok(endpoint(host, port.unwrap_or(443), host, path, timeout))
}

/// An endpoint for a host and port (a resolved service).
pub fn endpoint(host: &str, port: u16, server_name: &str, path: &str, timeout: Duration) -> Endpoint {
    let path = if path.is_empty() { "/" } else { path };
    let query = format!("timeout={}s", timeout.as_secs());
    let path = if path.contains('?') { format!("{path}&{query}") } else { format!("{path}?{query}") };
    let shown_host = if port == 443 { server_name.to_string() } else { format!("{server_name}:{port}") };
    let address = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Endpoint {
        address,
        server_name: server_name.trim_start_matches('[').trim_end_matches(']').to_string(),
        display: format!("https://{shown_host}{path}"),
        path,
    }
}

fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[')
        && let Some((h, p)) = rest.split_once(']')
    {
        return (h, p.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (authority, None),
    }
}

fn tls_config(ca_bundle: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_bundle.filter(|b| !b.is_empty()) {
        Some(pem) => {
            let mut reader = std::io::BufReader::new(pem);
            for cert in rustls_pemfile::certs(&mut reader) {
                let cert = cert.map_err(|e| format!("caBundle: {e}"))?;
                roots.add(cert).map_err(|e| format!("caBundle: {e}"))?;
            }
            if roots.is_empty() {
                return Err("caBundle holds no certificate".into());
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::debug!(error = %e, "a system root certificate could not be loaded");
            }
            for cert in native.certs {
                if let Err(e) = roots.add(cert) {
                    tracing::debug!(error = %e, "a system root certificate was skipped");
                }
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// POST a JSON body; the response body on a 2xx.
///
/// # Errors
/// kube-apiserver's wording for what failed (connection, TLS, status, timeout).
pub async fn post(
    endpoint: &Endpoint,
    ca_bundle: Option<&[u8]>,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let exchange = async {
        let config = tls_config(ca_bundle)?;
        let tcp = tokio::net::TcpStream::connect(&endpoint.address)
            .await
            .map_err(|e| format!("dial tcp {}: {e}", endpoint.address))?;
        let name = rustls::pki_types::ServerName::try_from(endpoint.server_name.clone())
            .map_err(|e| format!("invalid server name {:?}: {e}", endpoint.server_name))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "webhook connection ended");
            }
        });
        let request = http::Request::post(endpoint.path.as_str())
            .header(http::header::HOST, endpoint.server_name.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if !status.is_success() {
            return Err(format!(
                "the server responded with the status code {} but did not return more information",
                status.as_u16()
            ));
        }
        Ok(bytes.to_vec())
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r.map_err(|e| format!("Post \"{}\": {e}", endpoint.display)),
        Err(_) => Err(format!("Post \"{}\": context deadline exceeded", endpoint.display)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_as_kube_apiserver_names_them() {
        let e = endpoint_of_url("https://example.com/x", Duration::from_secs(10)).expect("a value");
        assert_eq!((e.address.as_str(), e.server_name.as_str()), ("example.com:443", "example.com"));
        assert_eq!(e.display, "https://example.com/x?timeout=10s");
        let e = endpoint_of_url("https://127.0.0.1:8443", Duration::from_secs(3)).expect("a value");
        assert_eq!((e.address.as_str(), e.path.as_str()), ("127.0.0.1:8443", "/?timeout=3s"));
        let e = endpoint_of_url("https://[::1]:9443/v", Duration::from_secs(3)).expect("a value");
        assert_eq!((e.address.as_str(), e.server_name.as_str()), ("[::1]:9443", "::1"));
    }
}
