//! `vkube nodes`: the simulated nodes of `vkube host`, joined to any cluster — with the
//! kubeconfig's identity, or, given the cluster's CA, each with its own kubelet
//! credentials (`system:node:NAME` in `system:nodes`), which is all a real control plane
//! with the Node authorizer and NodeRestriction lets a kubelet do.

use anyhow::Context;
use std::path::PathBuf;
use vkube_kubelet_sim::{NodeConfig, SimulatedNodes};

/// What `vkube nodes` needs.
pub struct NodesConfig {
    /// The cluster to join.
    pub kubeconfig: PathBuf,
    /// How many nodes.
    pub count: usize,
    /// Name prefix.
    pub prefix: String,
    /// `k=v` labels for every node.
    pub labels: Vec<String>,
    /// The cluster CA (certificate, key), for per-node kubelet credentials.
    pub ca: Option<(PathBuf, PathBuf)>,
    /// The nodes' address block (see [`NodeConfig::address_block`]).
    pub address_block: Option<u8>,
    /// Serve exec and port-forward locally, work directories under this (see
    /// [`NodeConfig::exec_local`]).
    pub exec_local: Option<PathBuf>,
}

/// The address block of a node group: 244 for the default `node-` prefix, else one
/// derived from the prefix (so that two groups on one cluster rarely share one).
fn address_block_of(prefix: &str) -> u8 {
    if prefix == "node-" {
        return 244;
    }
    let h = prefix.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    // 10.100.x.x to 10.199.x.x, clear of the default block and of service ranges.
    100 + (h % 100) as u8
}

/// Join the nodes to the cluster.
///
/// # Errors
/// A bad kubeconfig, labels or CA, or a node the cluster refuses to register.
pub async fn start(cfg: NodesConfig) -> anyhow::Result<SimulatedNodes> {
    let mut labels = std::collections::BTreeMap::new();
    for l in cfg.labels.iter().filter(|l| !l.is_empty()) {
        let (k, v) = l.split_once('=').with_context(|| format!("label {l:?}: expected key=value"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let node_cfg = NodeConfig {
        count: cfg.count,
        name_prefix: cfg.prefix.clone(),
        labels,
        address_block: cfg.address_block.unwrap_or_else(|| address_block_of(&cfg.prefix)),
        exec_local: cfg.exec_local.clone(),
        ..Default::default()
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(&cfg.kubeconfig)
        .with_context(|| format!("reading {}", cfg.kubeconfig.display()))?;
    let Some((ca_cert, ca_key)) = &cfg.ca else {
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        return SimulatedNodes::start(kube::Client::try_from(config)?, node_cfg).await;
    };
    let ca = vkube_apiserver::pki::CertPair {
        cert_pem: std::fs::read_to_string(ca_cert).with_context(|| format!("reading {}", ca_cert.display()))?,
        key_pem: std::fs::read_to_string(ca_key).with_context(|| format!("reading {}", ca_key.display()))?,
    };
    // The cluster (server, its CA) from the kubeconfig; each node's own user.
    let base = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    // The kubelet API (container logs) on each node's loopback address, with a serving
    // certificate of the cluster CA, taking the cluster's client certificates.
    let ips: Vec<String> = (0..cfg.count).map(|i| SimulatedNodes::kubelet_ip(&node_cfg, i).to_string()).collect();
    let serving = vkube_apiserver::pki::issue_server_by(&ca, &format!("{}kubelet", cfg.prefix), &ips)
        .context("issuing the nodes' serving certificate with the given CA")?;
    let tls = vkube_apiserver::pki::tls_server_config(&serving, &ca.cert_pem).map_err(anyhow::Error::msg)?;
    let mut clients = Vec::with_capacity(cfg.count);
    for i in 0..cfg.count {
        let name = SimulatedNodes::name(&node_cfg, i);
        let pair = vkube_apiserver::pki::issue_client_by(&ca, &format!("system:node:{name}"), &["system:nodes"])
            .context("issuing a node certificate with the given CA")?;
        let mut config = base.clone();
        config.auth_info = kube::config::AuthInfo {
            client_certificate_data: Some(base64_of(&pair.cert_pem)),
            client_key_data: Some(base64_of(&pair.key_pem).into()),
            ..Default::default()
        };
        clients.push(kube::Client::try_from(config)?);
    }
    SimulatedNodes::start_with_identities(clients, node_cfg, Some(std::sync::Arc::new(tls))).await
}

fn base64_of(pem: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(pem)
}
