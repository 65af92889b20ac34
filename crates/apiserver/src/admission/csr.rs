//! The requester of a CertificateSigningRequest, recorded on create as kube-apiserver
//! does (`spec.username`, `uid`, `groups`, `extra` from the authenticated user, whatever
//! the body says).

use super::{Admission, AdmissionOutcome, AdmissionRequest, Operation};
use async_trait::async_trait;
use serde_json::{Value, json};
use vkube_core::status::ApiError;

/// Records who asked for a certificate.
pub struct CsrRequester;

#[async_trait]
impl Admission for CsrRequester {
    async fn admit(&self, req: &AdmissionRequest<'_>, mut object: Value) -> Result<AdmissionOutcome, ApiError> {
        let t = req.target;
        if req.operation != Operation::Create
            || t.group != "certificates.k8s.io"
            || t.kind != "CertificateSigningRequest"
            || t.subresource.is_some()
        {
            return Ok(AdmissionOutcome::pass(object));
        }
        if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("username".into(), json!(req.user.name));
            spec.insert("groups".into(), json!(req.user.groups));
            spec.remove("uid");
            if req.user.extra.is_empty() {
                spec.remove("extra");
            } else {
                spec.insert("extra".into(), json!(req.user.extra));
            }
        }
        Ok(AdmissionOutcome::pass(object))
    }
}
