//! kube-apiserver's ServiceAccount admission plugin, for new pods.

use super::{Admission, AdmissionOutcome, AdmissionRequest, Operation};
use crate::registry::Registry;
use async_trait::async_trait;
use serde_json::{Value, json};
use vkube_core::status::ApiError;

/// Where the token, CA bundle and namespace are mounted in every container.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap with the cluster CA, in every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// The lifetime kube-apiserver puts in the projected token source.
pub const PROJECTED_EXPIRATION_SECONDS: i64 = 3607;

/// kube-apiserver's ServiceAccount admission for a new pod: default
/// `serviceAccountName`, refuse a named service account that does not exist, and, unless
/// the pod or its service account turns automounting off, add the `kube-api-access-*`
/// projected volume (token, CA bundle, namespace) and mount it in every container.
///
/// One leniency: a namespace's `default` account is made by the controller manager
/// moments after the namespace; if it is still missing after a short wait (or no
/// controller manager runs), the pod is admitted without a token volume instead of
/// refused.
///
/// # Errors
/// 403 when a named service account does not exist.
async fn admit_pod(reg: &Registry, namespace: &str, pod: &mut Value) -> Result<(), ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    let sa_name = ["serviceAccountName", "serviceAccount"]
        .iter()
        .find_map(|k| spec.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(sa_name));
    let res = reg.catalog().find("", "v1", "serviceaccounts").ok_or_else(ApiError::path_not_found)?;
    // The `default` account appears moments after its namespace: wait briefly for it.
    let mut tries = if sa_name == "default" { 10 } else { 1 };
    let sa = loop {
        match reg.get(&res, namespace, &sa_name).await {
            Ok(sa) => break sa,
            Err(e) if e.code == 404 && tries > 1 => {
                tries -= 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) if e.code == 404 && sa_name == "default" => return Ok(()),
            Err(e) if e.code == 404 => {
                return Err(ApiError::forbidden(
                    vkube_core::status::GroupResource { group: "", resource: "pods" },
                    &name,
                    format!(
                        "error looking up service account {namespace}/{sa_name}: serviceaccount \"{sa_name}\" not found"
                    ),
                ));
            }
            Err(e) => return Err(e),
        }
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| sa.get("automountServiceAccountToken").and_then(Value::as_bool))
        .unwrap_or(true);
    if !automount {
        return Ok(());
    }
    let suffix: String = {
        use rand::Rng;
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut rng = rand::rng();
        (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
    };
    let volume = format!("kube-api-access-{suffix}");
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else { continue };
            if mounts.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH)) {
                continue;
            }
            mounts.push(json!({"name": volume, "readOnly": true, "mountPath": MOUNT_PATH}));
            mounted = true;
        }
    }
    if mounted {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(vs) = volumes.as_array_mut() {
            vs.push(json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": PROJECTED_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]}}));
        }
    }
    Ok(())
}

/// The ServiceAccount admission plugin.
pub struct ServiceAccountAdmission {
    /// Where service accounts are read from.
    pub registry: std::sync::Arc<Registry>,
}

#[async_trait]
impl Admission for ServiceAccountAdmission {
    async fn admit(&self, req: &AdmissionRequest<'_>, mut object: Value) -> Result<AdmissionOutcome, ApiError> {
        if req.operation == Operation::Create && req.is_core("Pod") {
            admit_pod(&self.registry, req.namespace, &mut object).await?;
        }
        Ok(AdmissionOutcome::pass(object))
    }
}
