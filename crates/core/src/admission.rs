//! The admission vocabulary, shared by the API server (which runs the chain) and the
//! crates that plug behaviour into it (the syncer's node modes): what a write looks like
//! to a plugin ([`AdmissionRequest`]), what a plugin decides ([`AdmissionOutcome`]), and
//! the plugin trait ([`Admission`]).

use crate::status::ApiError;
use serde_json::Value;
use std::collections::BTreeMap;

/// An authenticated user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// User name.
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes (for service accounts: the bound pod and the token's id).
    pub extra: BTreeMap<String, Vec<String>>,
}

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

/// What is written: the resource's identity as the request names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// API group ("" for core).
    pub group: &'a str,
    /// Version.
    pub version: &'a str,
    /// Kind.
    pub kind: &'a str,
    /// Resource (plural).
    pub resource: &'a str,
    /// The subresource written, if any (`status`, `binding`, ...).
    pub subresource: Option<&'a str>,
}

/// One write, as a plugin sees it.
pub struct AdmissionRequest<'a> {
    /// What is done.
    pub operation: Operation,
    /// To what.
    pub target: Target<'a>,
    /// In which namespace.
    pub namespace: &'a str,
    /// The object's name ("" on create with generateName).
    pub name: &'a str,
    /// By whom.
    pub user: &'a User,
    /// The stored object, for updates and deletes.
    pub old: Option<&'a Value>,
    /// `dryRun=All`: the request must be answered as the real one would be, and a
    /// plugin with side effects (writes elsewhere, claims, events) must not cause them.
    pub dry_run: bool,
}

impl AdmissionRequest<'_> {
    /// Whether the write is to the core kind `kind` itself (not a subresource).
    pub fn is_core(&self, kind: &str) -> bool {
        self.target.group.is_empty() && self.target.kind == kind && self.target.subresource.is_none()
    }
}

/// What a plugin decided.
pub struct AdmissionOutcome {
    /// The object to continue with.
    pub object: Value,
    /// Warnings for the client.
    pub warnings: Vec<String>,
}

impl AdmissionOutcome {
    /// Let the object through as it is.
    pub fn pass(object: Value) -> Self {
        AdmissionOutcome { object, warnings: vec![] }
    }
}

/// An admission plugin.
///
/// # Errors
/// An `ApiError` refuses the request with that status.
#[async_trait::async_trait]
pub trait Admission: Send + Sync {
    /// Look at (and possibly change) a write.
    async fn admit(&self, request: &AdmissionRequest<'_>, object: Value) -> Result<AdmissionOutcome, ApiError>;
}
