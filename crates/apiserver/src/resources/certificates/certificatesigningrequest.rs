//! CertificateSigningRequests: validated as kube-apiserver does (a PEM `CERTIFICATE
//! REQUEST`, a signer, known usages), the requester recorded by admission
//! ([`crate::admission::csr`]), approval through `/approval` and the certificate
//! through `/status`; kubectl's columns.

use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The CertificateSigningRequest kind.
pub struct CertificateSigningRequestKind;

const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

impl Kind for CertificateSigningRequestKind {
    type Object = CertificateSigningRequest;
    const SHORT_NAMES: &'static [&'static str] = &["csr"];
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status, Subresource::Approval];
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Age", "date"),
        col("SignerName", "string"),
        col("Requestor", "string"),
        col("RequestedDuration", "string"),
        col("Condition", "string"),
    ];

    fn validate(csr: &CertificateSigningRequest) -> Vec<Cause> {
        let spec = &csr.spec;
        let mut causes = Vec::new();
        let shown = base64_of(&spec.request.0);
        let pem = String::from_utf8_lossy(&spec.request.0);
        if spec.request.0.is_empty() {
            causes.push(Cause::required("spec.request"));
        } else if !pem.contains("-----BEGIN CERTIFICATE REQUEST-----") {
            causes.push(Cause::invalid("spec.request", &shown, "PEM block type must be CERTIFICATE REQUEST"));
        }
        for (i, u) in spec.usages.iter().flatten().enumerate() {
            if !USAGES.contains(&u.as_str()) {
                causes.push(Cause::not_supported(format!("spec.usages[{i}]"), u, USAGES));
            }
        }
        if spec.signer_name.is_empty() {
            causes.push(Cause::required("spec.signerName"));
        }
        if let Some(d) = spec.expiration_seconds
            && d < 600
        {
            causes.push(Cause::invalid_raw(
                "spec.expirationSeconds",
                &d.to_string(),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
        causes.extend(conditions_causes(csr));
        causes
    }

    fn validate_update(csr: &CertificateSigningRequest, old: &CertificateSigningRequest) -> Vec<Cause> {
        let mut causes = Self::validate(csr);
        if csr.spec != old.spec {
            causes.push(Cause::immutable("spec"));
        }
        causes
    }

    fn cells(csr: &CertificateSigningRequest) -> Vec<Value> {
        let conditions: Vec<String> = csr
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.status == "True")
            .map(|c| c.type_.clone())
            .collect();
        let mut condition = if conditions.is_empty() { "Pending".to_string() } else { conditions.join(",") };
        if csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty()) {
            condition.push_str(",Issued");
        }
        vec![
            json!(name_of(&csr.metadata)),
            json!(age_of(&csr.metadata)),
            json!(csr.spec.signer_name),
            json!(csr.spec.username.clone().unwrap_or_default()),
            json!(
                csr.spec
                    .expiration_seconds
                    .map_or_else(|| "<none>".to_string(), |s| vkube_core::meta::human_duration(i64::from(s)))
            ),
            json!(condition),
        ]
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn conditions_causes(csr: &CertificateSigningRequest) -> Vec<Cause> {
    let mut causes = Vec::new();
    let conditions = csr.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let mut seen = Vec::new();
    for (i, c) in conditions.iter().enumerate() {
        let path = format!("status.conditions[{i}]");
        if c.type_.is_empty() {
            causes.push(Cause::required(format!("{path}.type")));
        }
        if !["True", "False", "Unknown"].contains(&c.status.as_str()) {
            causes.push(Cause::not_supported(format!("{path}.status"), &c.status, &["False", "True", "Unknown"]));
        }
        if ["Approved", "Denied", "Failed"].contains(&c.type_.as_str()) {
            if seen.contains(&c.type_) {
                causes.push(Cause::duplicate(format!("{path}.type"), &c.type_));
            }
            seen.push(c.type_.clone());
        }
    }
    let has = |t: &str| conditions.iter().any(|c| c.type_ == t && c.status == "True");
    if has("Approved") && has("Denied") {
        causes.push(Cause::invalid_raw(
            "status.conditions",
            "[Approved, Denied]",
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    causes
}
