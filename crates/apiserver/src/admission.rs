//! Admission hooks: the seam where behaviour from outside the API server (the syncer's
//! node modes, for one) plugs in. A hook sees each write before the registry does and
//! may mutate the object, add warnings, or refuse it.

use crate::auth::User;
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

/// Where `pods/log` reads come from (a kubelet, a simulated node, a host cluster).
#[async_trait]
pub trait LogSource: Send + Sync {
    /// The log text of a container of a pod.
    ///
    /// # Errors
    /// An `ApiError` to return to the client.
    async fn logs(&self, pod: &Value, container: &str, tail_lines: Option<i64>) -> Result<String, ApiError>;
}
