//! Admission: every write passes the [`AdmissionChain`] before the registry stores it —
//! kube-apiserver's built-in plugins first (ServiceAccount, [`serviceaccount`]; ResourceQuota,
//! [`resourcequota`]), then the
//! hooks plugged in from outside the API server (the syncer's node modes, for one). A
//! plugin may mutate the object, add warnings, or refuse it; every plugin sees the
//! request's `dryRun`.

pub mod cel;
pub mod csr;
pub mod defaultstorageclass;
pub mod dynamic;
pub mod limitranger;
pub mod noderestriction;
pub mod podsecurity;
pub mod priority;
pub mod resourcequota;
pub mod serviceaccount;
pub mod webhook_client;

use async_trait::async_trait;
use serde_json::Value;
use std::sync::{Arc, RwLock};
use vkube_core::status::ApiError;

pub use vkube_core::admission::{Admission, AdmissionOutcome, AdmissionRequest, Operation, Target};

/// Validating admission that runs on the object as it will be stored: the registry
/// calls it after the kind's defaulting and validation, before the write.
#[async_trait]
pub trait ValidationStage: Send + Sync {
    /// Check the object (None on delete) against the stored one; warnings, or a refusal.
    ///
    /// # Errors
    /// The refusal.
    async fn check(&self, object: &Value, old: Option<&Value>) -> Result<Vec<String>, ApiError>;
}

/// The dynamic validating admission (policies, validating webhooks) of one request.
pub struct DynamicStage {
    /// The plugin.
    pub dynamic: Arc<dynamic::Dynamic>,
    /// The request.
    pub facts: dynamic::Facts,
}

#[async_trait]
impl ValidationStage for DynamicStage {
    async fn check(&self, object: &Value, old: Option<&Value>) -> Result<Vec<String>, ApiError> {
        self.dynamic.validate(&self.facts, Some(object), old).await
    }
}

/// The plugins every write passes, in order.
pub struct AdmissionChain {
    plugins: RwLock<Vec<Arc<dyn Admission>>>,
    /// Webhooks and policies: mutating webhooks after the plugins (see
    /// [`AdmissionChain::run`]), validation in the registry ([`ValidationStage`]).
    pub dynamic: Arc<dynamic::Dynamic>,
}

impl AdmissionChain {
    /// kube-apiserver's built-in plugins that vkube has, reading from `registry`.
    pub fn builtin(registry: Arc<crate::registry::Registry>, authz: Arc<crate::authz::Authorizer>) -> Self {
        AdmissionChain {
            dynamic: Arc::new(dynamic::Dynamic::new(registry.clone())),
            plugins: RwLock::new(vec![
                Arc::new(serviceaccount::ServiceAccountAdmission { registry: registry.clone() }),
                Arc::new(noderestriction::NodeRestriction),
                Arc::new(defaultstorageclass::DefaultStorageClassAdmission { registry: registry.clone() }),
                Arc::new(limitranger::LimitRangerAdmission { registry: registry.clone() }),
                Arc::new(priority::PriorityAdmission { registry: registry.clone() }),
                Arc::new(podsecurity::PodSecurityAdmission { registry: registry.clone() }),
                Arc::new(csr::CsrRequester),
                Arc::new(csr::CsrSignerAuthorization { authz }),
                Arc::new(csr::CsrSubjectRestriction),
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
        let out = self.dynamic.admit(req, object).await?;
        warnings.extend(out.warnings);
        Ok((out.object, warnings))
    }
}

/// What `GET pods/NAME/log` asks for (kube's `PodLogOptions`), checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Keep the stream open and send lines as they come, until the container ends.
    pub follow: bool,
    /// The previous terminated instance of the container.
    pub previous: bool,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<i64>,
    /// Only lines since this time.
    pub since_time: Option<jiff::Timestamp>,
    /// Each line prefixed with its RFC 3339 time.
    pub timestamps: bool,
    /// Only the last N lines.
    pub tail_lines: Option<i64>,
    /// At most this many bytes.
    pub limit_bytes: Option<i64>,
}

impl LogOptions {
    /// The earliest time a line may have (from `sinceSeconds` or `sinceTime`).
    pub fn since(&self) -> Option<jiff::Timestamp> {
        self.since_time.or_else(|| {
            self.since_seconds.and_then(|s| jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(s)).ok())
        })
    }
}

/// One log read: the pod, its container, the options, and the request's raw query
/// (for a source that passes it on whole, as to a host cluster).
pub struct LogRequest<'a> {
    /// The pod, as stored.
    pub pod: &'a Value,
    /// The container.
    pub container: &'a str,
    /// The checked options.
    pub options: &'a LogOptions,
    /// The raw query of the request.
    pub query: &'a str,
}

/// Where `pods/log` reads come from (a kubelet, a simulated node, a host cluster).
#[async_trait]
pub trait LogSource: Send + Sync {
    /// The log of a container of a pod: a body that may go on (`follow`).
    ///
    /// # Errors
    /// An `ApiError` to return to the client.
    async fn logs(&self, request: LogRequest<'_>) -> Result<http::Response<axum::body::Body>, ApiError>;
}
