//! Admission: every write passes the [`AdmissionChain`] before the registry stores it —
//! kube-apiserver's built-in plugins first (ServiceAccount, [`serviceaccount`]), then the
//! hooks plugged in from outside the API server (the syncer's node modes, for one). A
//! plugin may mutate the object, add warnings, or refuse it; every plugin sees the
//! request's `dryRun`.

pub mod serviceaccount;

use crate::authn::User;
use crate::resources::{Resource, Subresource};
use async_trait::async_trait;
use serde_json::Value;
use vkube_core::status::ApiError;

/// The kind of write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// POST.
    Create,
    /// PUT or PATCH (the object is the patched result).
    Update,
    /// DELETE.
    Delete,
}

/// One write, as a hook sees it.
pub struct AdmissionRequest<'a> {
    /// What is done.
    pub operation: Operation,
    /// To which resource.
    pub resource: &'a Resource,
    /// In which namespace.
    pub namespace: &'a str,
    /// The object's name ("" on create with generateName).
    pub name: &'a str,
    /// The subresource written, if any.
    pub subresource: Option<Subresource>,
    /// By whom.
    pub user: &'a User,
    /// The stored object, for updates and deletes.
    pub old: Option<&'a Value>,
    /// `dryRun=All`: the request must be answered as the real one would be, and a hook
    /// with side effects (writes elsewhere, claims, events) must not cause them.
    pub dry_run: bool,
    /// Read access to the cluster's objects.
    pub registry: &'a crate::registry::Registry,
}

/// What a hook decided.
pub struct AdmissionOutcome {
    /// The object to continue with.
    pub object: Value,
    /// Warnings for the client.
    pub warnings: Vec<String>,
}

/// An admission hook.
///
/// # Errors
/// An `ApiError` refuses the request with that status.
#[async_trait]
pub trait Admission: Send + Sync {
    /// Look at (and possibly change) a write.
    async fn admit(&self, request: &AdmissionRequest<'_>, object: Value) -> Result<AdmissionOutcome, ApiError>;
}

/// The plugins every write passes, in order.
pub struct AdmissionChain {
    plugins: std::sync::RwLock<Vec<std::sync::Arc<dyn Admission>>>,
}

impl Default for AdmissionChain {
    /// kube-apiserver's built-in plugins that vkube has.
    fn default() -> Self {
        AdmissionChain {
            plugins: std::sync::RwLock::new(vec![std::sync::Arc::new(serviceaccount::ServiceAccountAdmission)]),
        }
    }
}

impl AdmissionChain {
    /// Add a plugin after those there.
    pub fn add(&self, plugin: std::sync::Arc<dyn Admission>) {
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
