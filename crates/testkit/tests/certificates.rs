//! CertificateSigningRequests end to end: kube-apiserver's validation, the requester
//! recorded from the authenticated user, approval through `/approval`, and the cluster CA
//! signing what is approved — a certificate the API server then accepts as the user
//! and groups of its subject (and RBAC refuses as that user).

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};
use vkube_testkit::TestServer;

fn csr_pem(cn: &str, org: &str) -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name.push(rcgen::DnType::OrganizationName, org);
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

#[tokio::test]
async fn an_approved_request_becomes_a_certificate_the_api_server_accepts() -> anyhow::Result<()> {
    use base64::Engine as _;
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let bad: CertificateSigningRequest = serde_json::from_value(json!({"metadata": {"name": "bad"},
        "spec": {"request": "aGVsbG8=", "usages": ["nonsense"]}}))?;
    let err = csrs.create(&PostParams::default(), &bad).await.expect_err("invalid");
    let kube::Error::Api(s) = err else { panic!("expected an API error") };
    assert_eq!(s.code, 422);
    for part in [
        "spec.request: Invalid value: \"aGVsbG8=\": PEM block type must be CERTIFICATE REQUEST",
        "spec.usages[0]: Unsupported value: \"nonsense\": supported values: \"any\", \"cert sign\", \"client auth\"",
        "spec.signerName: Required value",
    ] {
        assert!(s.message.contains(part), "missing {part:?} in {}", s.message);
    }
    let (pem, key) = csr_pem("jane", "dev")?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let request: CertificateSigningRequest = serde_json::from_value(json!({"metadata": {"name": "jane"},
        "spec": {"request": b64(&pem), "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"],
            "username": "someone-else", "groups": ["system:masters"]}}))?;
    let made = csrs.create(&PostParams::default(), &request).await?;
    // The requester is who asked, not what the body claims.
    assert_eq!(made.spec.username.as_deref(), Some("vkube-admin"));
    assert!(made.spec.groups.unwrap_or_default().contains(&"system:authenticated".to_string()));
    // Not approved: never signed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(csrs.get("jane").await?.status.and_then(|s| s.certificate).is_none(), "a pending request was signed");
    let mut approved = csrs.get("jane").await?;
    approved.status = Some(serde_json::from_value(json!({"conditions": [{"type": "Approved", "status": "True",
        "reason": "KubectlApprove", "message": "This CSR was approved by kubectl certificate approve."}]}))?);
    csrs.replace_subresource("approval", "jane", &PostParams::default(), &approved).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let cert = loop {
        if let Some(c) = csrs.get("jane").await?.status.and_then(|s| s.certificate) {
            break String::from_utf8(c.0)?;
        }
        anyhow::ensure!(Instant::now() < deadline, "the approved request was never signed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    // The API server takes the certificate as jane of group dev, whom RBAC gives nothing.
    let pki = &server.server().pki;
    let kubeconfig = vkube_apiserver::pki::kubeconfig(
        "jane",
        &server.server().url,
        &pki.ca.cert_pem,
        vkube_apiserver::pki::Credential::Cert(&vkube_apiserver::pki::CertPair { cert_pem: cert, key_pem: key }),
    );
    let config =
        kube::Config::from_custom_kubeconfig(kube::config::Kubeconfig::from_yaml(&kubeconfig)?, &Default::default())
            .await?;
    let jane = kube::Client::try_from(config)?;
    let err = Api::<Secret>::namespaced(jane, "kube-system").list(&Default::default()).await.expect_err("forbidden");
    let kube::Error::Api(s) = err else { panic!("expected an API error") };
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        "secrets is forbidden: User \"jane\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
    );
    server.stop().await;
    Ok(())
}
