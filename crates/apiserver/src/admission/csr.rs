//! The requester of a CertificateSigningRequest, recorded on create as kube-apiserver
//! does (`spec.username`, `uid`, `groups`, `extra` from the authenticated user, whatever
//! the body says); and who may approve and sign them.

use super::{Admission, AdmissionOutcome, AdmissionRequest, Operation};
use crate::authz::{Attributes, Authorizer};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;
use vkube_core::status::{ApiError, GroupResource};

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

/// kube-apiserver's CertificateApproval and CertificateSigning plugins: approving
/// (`/approval`) or issuing (`status.certificate` through `/status`) a request needs
/// the `approve` or `sign` verb on `certificates.k8s.io/signers`, by the signer's name
/// or its domain (`example.com/*`).
pub struct CsrSignerAuthorization {
    /// The authorizer asked.
    pub authz: Arc<Authorizer>,
}

impl CsrSignerAuthorization {
    fn may(&self, user: &vkube_core::admission::User, verb: &str, signer: &str) -> bool {
        let ask = |name: String| {
            self.authz
                .authorize(&Attributes {
                    user: user.clone(),
                    verb: verb.into(),
                    resource_request: true,
                    api_group: "certificates.k8s.io".into(),
                    api_version: "*".into(),
                    resource: "signers".into(),
                    name,
                    ..Default::default()
                })
                .allowed
        };
        let domain = signer.split('/').next().unwrap_or_default();
        ask(signer.to_string()) || ask(format!("{domain}/*"))
    }
}

#[async_trait]
impl Admission for CsrSignerAuthorization {
    async fn admit(&self, req: &AdmissionRequest<'_>, object: Value) -> Result<AdmissionOutcome, ApiError> {
        let t = req.target;
        if req.operation != Operation::Update
            || t.group != "certificates.k8s.io"
            || t.kind != "CertificateSigningRequest"
        {
            return Ok(AdmissionOutcome::pass(object));
        }
        let verb = match t.subresource {
            Some("approval") => "approve",
            Some("status")
                if req.old.and_then(|o| o.pointer("/status/certificate")) != object.pointer("/status/certificate") =>
            {
                "sign"
            }
            _ => return Ok(AdmissionOutcome::pass(object)),
        };
        let signer = req
            .old
            .unwrap_or(&object)
            .pointer("/spec/signerName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if self.may(req.user, verb, &signer) {
            return Ok(AdmissionOutcome::pass(object));
        }
        let gr = GroupResource { group: "certificates.k8s.io", resource: "certificatesigningrequests" };
        let message = format!("user not permitted to {verb} requests with signerName {signer:?}");
        Err(ApiError::forbidden(gr, req.name, message))
    }
}

/// kube-apiserver's CertificateSubjectRestriction: nobody, not even `system:masters`,
/// may ask the `kubernetes.io/kube-apiserver-client` signer for a certificate in the
/// `system:masters` group, which would be a way around RBAC for good.
pub struct CsrSubjectRestriction;

/// The subject organisations (the groups of a client certificate) of a PEM request;
/// `None` when it does not parse, which validation reports.
fn requested_groups(pem: &[u8]) -> Option<Vec<String>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    use x509_parser::prelude::FromDer as _;
    let (_, request) = x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents).ok()?;
    let subject = &request.certification_request_info.subject;
    Some(subject.iter_organization().filter_map(|o| o.as_str().ok()).map(str::to_string).collect())
}

#[async_trait]
impl Admission for CsrSubjectRestriction {
    async fn admit(&self, req: &AdmissionRequest<'_>, object: Value) -> Result<AdmissionOutcome, ApiError> {
        const SIGNER: &str = "kubernetes.io/kube-apiserver-client";
        let t = req.target;
        if req.operation != Operation::Create
            || t.group != "certificates.k8s.io"
            || t.kind != "CertificateSigningRequest"
            || t.subresource.is_some()
            || object.pointer("/spec/signerName").and_then(Value::as_str) != Some(SIGNER)
        {
            return Ok(AdmissionOutcome::pass(object));
        }
        let Some(pem) = object
            .pointer("/spec/request")
            .and_then(Value::as_str)
            .and_then(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok())
        else {
            return Ok(AdmissionOutcome::pass(object));
        };
        if requested_groups(&pem).is_some_and(|groups| groups.iter().any(|g| g == "system:masters")) {
            let gr = GroupResource { group: "certificates.k8s.io", resource: "certificatesigningrequests" };
            let message = format!("use of {SIGNER} signer with system:masters group is not allowed");
            let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(req.name);
            return Err(ApiError::forbidden(gr, name, message));
        }
        Ok(AdmissionOutcome::pass(object))
    }
}
