//! Admission: every write passes the [`AdmissionChain`] before the registry stores it —
//! kube-apiserver's built-in plugins first (ServiceAccount, [`serviceaccount`]; ResourceQuota,
//! [`resourcequota`]), then the
//! hooks plugged in from outside the API server (the syncer's node modes, for one). A
//! plugin may mutate the object, add warnings, or refuse it; every plugin sees the
//! request's `dryRun`.

pub mod resourcequota;
pub mod serviceaccount;

use async_trait::async_trait;
use serde_json::Value;
use std::sync::{Arc, RwLock};
use vkube_core::status::ApiError;

pub use vkube_core::admission::{Admission, AdmissionOutcome, AdmissionRequest, Operation, Target};

/// The plugins every write passes, in order.
pub struct AdmissionChain {
    plugins: RwLock<Vec<Arc<dyn Admission>>>,
}

impl AdmissionChain {
    /// kube-apiserver's built-in plugins that vkube has, reading from `registry`.
    pub fn builtin(registry: Arc<crate::registry::Registry>) -> Self {
        AdmissionChain {
            plugins: RwLock::new(vec![
                Arc::new(serviceaccount::ServiceAccountAdmission { registry: registry.clone() }),
                Arc::new(resourcequota::ResourceQuotaAdmission { registry }),
            ]),
        }
    }

    /// Add a plugin after those there.
    pub fn add(&self, plugin: Arc<dyn Admission>) {
        match self.plugins.write() {
            Ok(mut p) => p.push(plugin),
            Err(e) => e.into_inner().push(plugin),
        }
    }

    /// Run every plugin over a write; the (possibly mutated) object and the warnings.
    ///
    /// # Errors
    /// The first plugin's refusal.
    pub async fn run(&self, req: &AdmissionRequest<'_>, mut object: Value) -> Result<(Value, Vec<String>), ApiError> {
        let plugins = match self.plugins.read() {
            Ok(p) => p.clone(),
            Err(e) => e.into_inner().clone(),
        };
        let mut warnings = Vec::new();
        for plugin in plugins {
            let out = plugin.admit(req, object).await?;
            object = out.object;
            warnings.extend(out.warnings);
        }
        Ok((object, warnings))
    }
}

/// Where `pods/log` reads come from (a kubelet, a simulated node, a host cluster).
#[async_trait]
pub trait LogSource: Send + Sync {
    /// The log text of a container of a pod.
    ///
    /// # Errors
    /// An `ApiError` to return to the client.
    async fn logs(&self, pod: &Value, container: &str, tail_lines: Option<i64>) -> Result<String, ApiError>;
}
