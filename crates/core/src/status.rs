//! API errors and their Kubernetes `Status` form.
//!
//! Every failure an API handler can produce is an [`ApiError`]; [`ApiError::to_status`]
//! is the one place that renders it as `{"kind":"Status",...}` with the code and reason
//! kube-apiserver would use, so clients (kubectl, client-go, kube-rs) recognise it.

use serde_json::{Value, json};

/// One field-level cause of an `Invalid` error (`details.causes[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Machine-readable reason, e.g. `FieldValueRequired`, `FieldValueInvalid`.
    pub reason: String,
    /// Human-readable message, e.g. `Required value`.
    pub message: String,
    /// The field path, e.g. `spec.containers[0].name`.
    pub field: String,
}

impl Cause {
    /// A missing required field.
    pub fn required(field: impl Into<String>) -> Self {
        Cause { reason: "FieldValueRequired".into(), message: "Required value".into(), field: field.into() }
    }
    /// A field whose value is not allowed; `value` is echoed like kube-apiserver does.
    pub fn invalid(field: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: \"{}\": {}", value, detail.into()),
            field: field.into(),
        }
    }
    /// A field whose value is not allowed, echoed as given (`40000`, `["10.0.0.5"]`): for
    /// numbers and lists, which kube-apiserver prints without quotes.
    pub fn invalid_raw(field: impl Into<String>, rendered: &str, detail: impl Into<String>) -> Self {
        Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {rendered}: {}", detail.into()),
            field: field.into(),
        }
    }
    /// A value outside the enumerated set.
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!("Unsupported value: \"{}\": supported values: {}", value, list.join(", ")),
            field: field.into(),
        }
    }
    /// A field that may not be changed after creation.
    pub fn immutable(field: impl Into<String>) -> Self {
        Cause {
            reason: "FieldValueInvalid".into(),
            message: "Invalid value: field is immutable".into(),
            field: field.into(),
        }
    }
    /// A field that appears twice where it must be unique.
    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Cause {
            reason: "FieldValueDuplicate".into(),
            message: format!("Duplicate value: \"{value}\""),
            field: field.into(),
        }
    }
    /// A field that is not allowed in this context.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Cause {
            reason: "FieldValueForbidden".into(),
            message: format!("Forbidden: {}", detail.into()),
            field: field.into(),
        }
    }
    /// A field the type does not have (strict field validation).
    pub fn unknown_field(field: impl Into<String>) -> Self {
        let field = field.into();
        Cause { reason: "FieldValueInvalid".into(), message: format!("unknown field \"{field}\""), field }
    }
    fn render(&self) -> String {
        if self.field.is_empty() { self.message.clone() } else { format!("{}: {}", self.field, self.message) }
    }
}

/// An API failure, rendered as a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `StatusReason`, e.g. `NotFound`; empty for reasons Kubernetes leaves unset.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// `details` (name, group, kind, causes), if any.
    pub details: Option<Value>,
}

/// The (group, resource) pair Kubernetes names in most error details.
#[derive(Debug, Clone, Copy)]
pub struct GroupResource<'a> {
    /// API group; empty for core.
    pub group: &'a str,
    /// Plural resource name, e.g. `pods`.
    pub resource: &'a str,
}

impl std::fmt::Display for GroupResource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

impl ApiError {
    /// An error with no details.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError { code, reason: reason.into(), message: message.into(), details: None }
    }
    fn with_name(mut self, gr: GroupResource<'_>, name: &str) -> Self {
        // kube's StatusDetails leaves an empty name out.
        let mut d =
            if name.is_empty() { json!({"kind": gr.resource}) } else { json!({"name": name, "kind": gr.resource}) };
        if !gr.group.is_empty() {
            d["group"] = json!(gr.group);
        }
        self.details = Some(d);
        self
    }
    /// 404 `pods "x" not found`.
    pub fn not_found(gr: GroupResource<'_>, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{gr} \"{name}\" not found")).with_name(gr, name)
    }
    /// 404 for a path that names no resource.
    pub fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }
    /// 409 `pods "x" already exists`.
    pub fn already_exists(gr: GroupResource<'_>, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{gr} \"{name}\" already exists")).with_name(gr, name)
    }
    /// 409 optimistic-concurrency conflict.
    pub fn conflict(gr: GroupResource<'_>, name: &str, why: &str) -> Self {
        Self::new(409, "Conflict", format!("Operation cannot be fulfilled on {gr} \"{name}\": {why}"))
            .with_name(gr, name)
    }
    /// 409 for a stale resourceVersion.
    pub fn stale(gr: GroupResource<'_>, name: &str) -> Self {
        Self::conflict(
            gr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }
    /// 422 with field causes: `Pod "x" is invalid: spec.containers: Required value`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let rendered: Vec<String> = causes.iter().map(Cause::render).collect();
        let summary = if rendered.len() == 1 { rendered[0].clone() } else { format!("[{}]", rendered.join(", ")) };
        let qualified = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let mut details = json!({
            "name": name,
            "kind": kind,
            "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
        });
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        ApiError {
            code: 422,
            reason: "Invalid".into(),
            message: format!("{qualified} \"{name}\" is invalid: {summary}"),
            details: Some(details),
        }
    }
    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }
    /// 403 with a message.
    pub fn forbidden(gr: GroupResource<'_>, name: &str, message: impl Into<String>) -> Self {
        let m = message.into();
        let msg = if name.is_empty() {
            format!("{gr} is forbidden: {m}")
        } else {
            format!("{gr} \"{name}\" is forbidden: {m}")
        };
        Self::new(403, "Forbidden", msg).with_name(gr, name)
    }
    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    }
    /// 406.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }
    /// 410 for a compacted resourceVersion.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    /// 413.
    pub fn too_large() -> Self {
        Self::new(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
    }
    /// 415.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type})"
            ),
        )
    }
    /// 429 / 503 style retryable failures and 500s.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }
    /// 503 while the server is not ready.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// Replace the message (keeping code, reason and details).
    pub fn with_message_override(mut self, message: String) -> Self {
        self.message = message;
        self
    }

    /// The `Status` object kube-apiserver would send for this error.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        if !self.reason.is_empty() {
            s["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// A `Status` reporting success (returned by some deletes).
pub fn success_status(details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_renders_like_kube_apiserver() {
        let e = ApiError::not_found(GroupResource { group: "", resource: "pods" }, "web");
        let s = e.to_status();
        assert_eq!(s["message"], "pods \"web\" not found");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "pods");
    }

    #[test]
    fn invalid_lists_causes() {
        let e = ApiError::invalid(
            "apps",
            "Deployment",
            "d",
            vec![Cause::required("spec.selector"), Cause::required("spec.template")],
        );
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Deployment.apps \"d\" is invalid: [spec.selector: Required value, spec.template: Required value]"
        );
        assert_eq!(e.to_status()["details"]["causes"][1]["field"], "spec.template");
    }
}
