//! Certificates and kubeconfigs: a CA, the serving certificate and the admin client
//! certificate, generated on first start and kept in `DIR/pki/`.
//!
//! # Guarantees
//! Restarting on the same directory reuses the same CA and certificates, so kubeconfigs
//! written earlier stay valid.

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

/// Errors of certificate handling.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// File I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Generating or parsing a certificate failed.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// Reading or writing the shared keys in the store failed.
    #[error("sharing the cluster's keys through the store: {0}")]
    Shared(String),
}

/// The store key under which API server replicas on one store share the cluster CA and
/// the service-account signing key (kube-apiserver replicas must share both).
pub const SHARED_KEYS: &str = "/vkube/pki/shared";

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct SharedKeys {
    ca_crt: String,
    ca_key: String,
    sa_key: String,
}

/// Make `DIR/pki/` hold the CA and service-account key shared through `store`: the
/// first replica publishes its own (created if missing); every later one adopts them,
/// replacing local ones (and the certificates the old CA signed). Serving and admin
/// certificates stay per replica, signed by the shared CA.
///
/// # Errors
/// Store errors, unreadable or unwritable files.
pub async fn share_through_store(data_dir: &Path, store: &dyn vkube_store::Store) -> Result<(), PkiError> {
    let dir = data_dir.join("pki");
    let shared_err = |e: &dyn std::fmt::Display| PkiError::Shared(e.to_string());
    for _ in 0..3 {
        if let Some(kv) = store.get(SHARED_KEYS).await.map_err(|e| shared_err(&e))? {
            let keys: SharedKeys = serde_json::from_slice(&kv.value).map_err(|e| shared_err(&e))?;
            std::fs::create_dir_all(&dir).map_err(|source| PkiError::Io { path: dir.clone(), source })?;
            let local = load_pair(&dir, "ca");
            if local.as_ref().is_none_or(|p| p.cert_pem != keys.ca_crt || p.key_pem != keys.ca_key) {
                save_pair(&dir, "ca", &CertPair { cert_pem: keys.ca_crt, key_pem: keys.ca_key })?;
                for stale in ["serving", "admin"] {
                    let _ = std::fs::remove_file(dir.join(format!("{stale}.crt")));
                }
            }
            write(&dir.join("sa.key"), &keys.sa_key)?;
            return Ok(());
        }
        let local = Pki::load_or_create(data_dir, &[])?;
        let keys =
            SharedKeys { ca_crt: local.ca.cert_pem, ca_key: local.ca.key_pem, sa_key: local.service_account_key_pem };
        let bytes = serde_json::to_vec(&keys).map_err(|e| shared_err(&e))?;
        match store.create(SHARED_KEYS, bytes.into()).await {
            Ok(_) => return Ok(()),
            // Another replica published first: adopt its keys.
            Err(vkube_store::StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(shared_err(&e)),
        }
    }
    Err(PkiError::Shared("the shared keys keep changing".into()))
}

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct CertPair {
    /// The certificate.
    pub cert_pem: String,
    /// The private key.
    pub key_pem: String,
}

/// The cluster's certificates.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA.
    pub ca: CertPair,
    /// The serving certificate.
    pub serving: CertPair,
    /// The admin client certificate (CN=vkube-admin, O=system:masters).
    pub admin: CertPair,
    /// The key that signs service-account tokens (PKCS#8 PEM, ECDSA P-256).
    pub service_account_key_pem: String,
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io { path: path.into(), source })
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(|source| PkiError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| PkiError::Io { path: path.into(), source })
}

fn load_pair(dir: &Path, name: &str) -> Option<CertPair> {
    let cert_pem = std::fs::read_to_string(dir.join(format!("{name}.crt"))).ok()?;
    let key_pem = std::fs::read_to_string(dir.join(format!("{name}.key"))).ok()?;
    Some(CertPair { cert_pem, key_pem })
}

fn save_pair(dir: &Path, name: &str, pair: &CertPair) -> Result<(), PkiError> {
    write(&dir.join(format!("{name}.key")), &pair.key_pem)?;
    write(&dir.join(format!("{name}.crt")), &pair.cert_pem)
}

fn dn(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    for o in orgs {
        d.push(DnType::OrganizationName, *o);
    }
    d
}

fn validity(params: &mut CertificateParams) {
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(10 * 365 * 24 * 3600)).into();
}

impl Pki {
    /// Load the certificates from `DIR/pki/`, creating what is missing. `hosts` are the
    /// serving certificate's extra names (DNS names or IP addresses).
    ///
    /// # Errors
    /// I/O or certificate errors.
    pub fn load_or_create(data_dir: &Path, hosts: &[String]) -> Result<Self, PkiError> {
        let dir = data_dir.join("pki");
        std::fs::create_dir_all(&dir).map_err(|source| PkiError::Io { path: dir.clone(), source })?;
        let ca = match load_pair(&dir, "ca") {
            Some(p) => p,
            None => {
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::new(Vec::<String>::new())?;
                params.distinguished_name = dn("vkube-ca", &[]);
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages =
                    vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
                validity(&mut params);
                let cert = params.self_signed(&key)?;
                let pair = CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
                save_pair(&dir, "ca", &pair)?;
                // Anything signed by an old CA is now worthless.
                for stale in ["serving", "admin"] {
                    let _ = std::fs::remove_file(dir.join(format!("{stale}.crt")));
                }
                pair
            }
        };
        let serving = match load_pair(&dir, "serving") {
            Some(p) => p,
            None => {
                let mut names: Vec<String> = vec![
                    "localhost".into(),
                    "127.0.0.1".into(),
                    "::1".into(),
                    "kubernetes".into(),
                    "kubernetes.default".into(),
                    "kubernetes.default.svc".into(),
                ];
                names.extend(hosts.iter().cloned());
                let pair = issue(&ca, "vkube-apiserver", &[], &names, true)?;
                save_pair(&dir, "serving", &pair)?;
                pair
            }
        };
        let admin = match load_pair(&dir, "admin") {
            Some(p) => p,
            None => {
                let pair = issue(&ca, "vkube-admin", &["system:masters"], &[], false)?;
                save_pair(&dir, "admin", &pair)?;
                pair
            }
        };
        let sa_path = dir.join("sa.key");
        let service_account_key_pem = match std::fs::read_to_string(&sa_path) {
            Ok(k) => k,
            Err(_) => {
                let k = KeyPair::generate()?.serialize_pem();
                write(&sa_path, &k)?;
                k
            }
        };
        Ok(Pki { ca, serving, admin, service_account_key_pem })
    }

    /// Issue a client certificate for user `cn` in groups `orgs`.
    ///
    /// # Errors
    /// Certificate errors.
    pub fn issue_client(&self, cn: &str, orgs: &[&str]) -> Result<CertPair, PkiError> {
        issue(&self.ca, cn, orgs, &[], false)
    }
}

/// Issue a client certificate for user `cn` in groups `orgs`, signed by `ca` (any CA:
/// another cluster's, e.g. to give simulated nodes a kubelet's identity there).
///
/// # Errors
/// Certificate errors (an unreadable CA key, for one).
pub fn issue_client_by(ca: &CertPair, cn: &str, orgs: &[&str]) -> Result<CertPair, PkiError> {
    issue(ca, cn, orgs, &[], false)
}

/// Issue a serving certificate for `names` (DNS names or IP addresses), signed by `ca`.
///
/// # Errors
/// Certificate errors.
pub fn issue_server_by(ca: &CertPair, cn: &str, names: &[String]) -> Result<CertPair, PkiError> {
    issue(ca, cn, &[], names, true)
}

/// A TLS server configuration serving `serving` that asks for (but does not require)
/// client certificates of `client_ca_pem`, offering HTTP/2 and HTTP/1.1.
///
/// # Errors
/// Unreadable certificates or keys.
pub fn tls_server_config(serving: &CertPair, client_ca_pem: &str) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(std::sync::Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| e.to_string())?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(serving.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

fn issue(ca: &CertPair, cn: &str, orgs: &[&str], names: &[String], server: bool) -> Result<CertPair, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = dn(cn, orgs);
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages =
        vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
    validity(&mut params);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// How a kubeconfig's user authenticates.
pub enum Credential<'a> {
    /// A client certificate.
    Cert(&'a CertPair),
    /// A bearer token.
    Token(&'a str),
}

/// Render a kubeconfig with one cluster, user and context, all named `name`.
pub fn kubeconfig(name: &str, server: &str, ca_pem: &str, credential: Credential<'_>) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = match credential {
        Credential::Cert(pair) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&pair.cert_pem),
            b64(&pair.key_pem)
        ),
        Credential::Token(t) => format!("    token: {t}\n"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {name}\n  user:\n{user}contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\ncurrent-context: {name}\npreferences: {{}}\n",
        ca = b64(ca_pem)
    )
}

/// Write a kubeconfig file atomically (mode 0600).
///
/// # Errors
/// I/O errors.
pub fn write_kubeconfig(path: &Path, contents: &str) -> Result<(), PkiError> {
    write(path, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    let _ = read(path)?;
    Ok(())
}

/// Sign a PEM certificate request with `ca` for `usages` (kube's names: `client auth`,
/// `server auth`, `digital signature`, `key encipherment`, …), valid `seconds` from now;
/// the certificate's PEM. The request's subject and names are kept; it is never a CA.
///
/// # Errors
/// A request that does not parse or verify, or signing errors.
pub fn sign_request(ca: &CertPair, request_pem: &str, usages: &[String], seconds: u64) -> Result<String, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(request_pem)?;
    let p = &mut csr.params;
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages = usages
        .iter()
        .filter_map(|u| match u.as_str() {
            "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
            "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
            "key agreement" => Some(KeyUsagePurpose::KeyAgreement),
            "content commitment" => Some(KeyUsagePurpose::ContentCommitment),
            "data encipherment" => Some(KeyUsagePurpose::DataEncipherment),
            _ => None,
        })
        .collect();
    p.extended_key_usages = usages
        .iter()
        .filter_map(|u| match u.as_str() {
            "client auth" => Some(ExtendedKeyUsagePurpose::ClientAuth),
            "server auth" => Some(ExtendedKeyUsagePurpose::ServerAuth),
            "code signing" => Some(ExtendedKeyUsagePurpose::CodeSigning),
            "email protection" => Some(ExtendedKeyUsagePurpose::EmailProtection),
            "timestamping" => Some(ExtendedKeyUsagePurpose::TimeStamping),
            "ocsp signing" => Some(ExtendedKeyUsagePurpose::OcspSigning),
            _ => None,
        })
        .collect();
    let now = std::time::SystemTime::now();
    // As kube-controller-manager's signer: backdated five minutes for clock skew.
    p.not_before = (now - std::time::Duration::from_secs(300)).into();
    p.not_after = (now + std::time::Duration::from_secs(seconds)).into();
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
    Ok(csr.signed_by(&issuer)?.pem())
}
