//! The signer of approved CertificateSigningRequests, as kube-controller-manager's
//! `csrsigning` controller with the cluster CA: requests for
//! `kubernetes.io/kube-apiserver-client` (users: the API server trusts the certificate
//! at once, as the name and groups of its subject), `kubernetes.io/kube-apiserver-client-kubelet`
//! and `kubernetes.io/kubelet-serving` get `status.certificate`, valid for
//! `spec.expirationSeconds` (default one year); a request that cannot be signed gets a
//! `Failed` condition saying why. Other signers are left to whoever implements them.

use crate::pki::CertPair;
use crate::registry::{Registry, WriteOptions};
use crate::resources::Subresource;
use base64::Engine as _;
use serde_json::{Value, json};
use std::sync::Arc;

const SIGNERS: &[&str] = &[
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kubelet-serving",
];
const DEFAULT_SECONDS: u64 = 365 * 24 * 3600;

fn approved(csr: &Value) -> bool {
    let conditions = csr.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let has = |t: &str| conditions.iter().any(|c| c["type"] == t && c["status"] == "True");
    has("Approved") && !has("Denied") && !has("Failed")
}

/// Sign every approved, unsigned request once.
async fn sign_pending(registry: &Registry, ca: &CertPair) {
    let Some(res) = registry.catalog().find("certificates.k8s.io", "v1", "certificatesigningrequests") else { return };
    let page = match registry.list(&res, "", &Default::default()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e.message, "certificate signing requests could not be listed");
            return;
        }
    };
    for kv in &page.items {
        let Ok(csr) = Registry::decode_as(&res, kv) else { continue };
        let signer = csr.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or_default();
        let signed = csr.pointer("/status/certificate").and_then(Value::as_str).is_some_and(|c| !c.is_empty());
        if signed || !approved(&csr) || !SIGNERS.contains(&signer) {
            continue;
        }
        let name = vkube_core::meta::name(&csr).to_string();
        let request = csr
            .pointer("/spec/request")
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default();
        let usages: Vec<String> = csr
            .pointer("/spec/usages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        let seconds = csr
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_SECONDS)
            .min(DEFAULT_SECONDS);
        let now = vkube_core::meta::now_rfc3339();
        let result = crate::pki::sign_request(ca, &request, &usages, seconds);
        let opts = WriteOptions {
            field_manager: Some("certificatesigningrequest-signing-controller".into()),
            ..Default::default()
        };
        let write = registry
            .update_with(&res, "", &name, Some(Subresource::Status), &opts, |cur| {
                let mut next = cur.clone();
                let status = next.as_object_mut().map(|m| m.entry("status").or_insert_with(|| json!({})));
                if let Some(status) = status {
                    match &result {
                        Ok(pem) => status["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(pem)),
                        Err(e) => {
                            let mut conditions = status.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
                            conditions.push(json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                                "message": format!("invalid certificate request: {e}"), "lastTransitionTime": now, "lastUpdateTime": now}));
                            status["conditions"] = json!(conditions);
                        }
                    }
                }
                if let Some(md) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                    md.remove("resourceVersion");
                }
                Ok(next)
            })
            .await;
        if let Err(e) = write {
            tracing::warn!(csr = name, error = %e.message, "certificate not written to its signing request");
        }
    }
}

/// Sign what is approved, on every change to the requests (through any replica).
pub async fn follow(registry: Arc<Registry>, ca: CertPair) {
    let Some(res) = registry.catalog().find("certificates.k8s.io", "v1", "certificatesigningrequests") else { return };
    let prefix = res.prefix();
    registry.follow_prefix(&prefix, "certificate signer", || sign_pending(&registry, &ca)).await;
}
