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

/// kube-apiserver's CertificateApproval and CertificateSigning admission: `update` on
/// `/approval` (or `/status`) is not enough; the user needs `approve` (or `sign`) on the
/// signer, by name or by its domain's wildcard. A refused approval changes nothing.
#[tokio::test]
async fn approving_or_signing_needs_the_verb_on_the_signer() -> anyhow::Result<()> {
    use base64::Engine as _;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let server = TestServer::start().await?;
    let admin = server.client().await?;
    let csrs: Api<CertificateSigningRequest> = Api::all(admin.clone());
    let (pem, _) = csr_pem("joe", "dev")?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&pem);
    let request: CertificateSigningRequest = serde_json::from_value(json!({"metadata": {"name": "joe"},
        "spec": {"request": b64, "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"]}}))?;
    csrs.create(&PostParams::default(), &request).await?;
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "csr-writer"},
            "rules": [{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests",
                "certificatesigningrequests/approval", "certificatesigningrequests/status"],
                "verbs": ["get", "list", "update"]}]}))?,
        )
        .await?;
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "csr-writer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "csr-writer"},
            "subjects": [{"kind": "User", "name": "approver", "apiGroup": "rbac.authorization.k8s.io"}]}))?,
        )
        .await?;
    let approver = server.client_as("approver", &[]).await?;
    let as_approver: Api<CertificateSigningRequest> = Api::all(approver);
    // RBAC reloads in the background: wait until the approver may read the request.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut current = loop {
        match as_approver.get("joe").await {
            Ok(c) => break c,
            Err(e) => anyhow::ensure!(Instant::now() < deadline, "the approver never could read: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    current.status = Some(serde_json::from_value(json!({"conditions": [{"type": "Approved", "status": "True",
        "reason": "KubectlApprove", "message": "approved"}]}))?);
    let refused = |verb: &str| {
        format!(
            "certificatesigningrequests.certificates.k8s.io \"joe\" is forbidden: user not permitted to {verb} \
             requests with signerName \"kubernetes.io/kube-apiserver-client\""
        )
    };
    let err = as_approver.replace_subresource("approval", "joe", &PostParams::default(), &current).await;
    let Err(kube::Error::Api(s)) = err else { panic!("approval without `approve` on the signer: {err:?}") };
    assert_eq!((s.code, s.reason.as_str(), s.message.clone()), (403, "Forbidden", refused("approve")));
    assert!(csrs.get("joe").await?.status.and_then(|s| s.conditions).unwrap_or_default().is_empty(), "approved anyway");
    // Issuing a certificate through /status needs `sign`.
    let mut signed = current.clone();
    signed.status = Some(serde_json::from_value(json!({"certificate": b64_cert()?}))?);
    let err = as_approver.replace_status("joe", &PostParams::default(), &signed).await;
    let Err(kube::Error::Api(s)) = err else { panic!("signing without `sign` on the signer: {err:?}") };
    assert_eq!((s.code, s.message.clone()), (403, refused("sign")));
    assert!(csrs.get("joe").await?.status.and_then(|s| s.certificate).is_none(), "a refused certificate was stored");
    // `approve` on the signer's domain (`kubernetes.io/*`) is enough.
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "signer-approver"},
            "rules": [{"apiGroups": ["certificates.k8s.io"], "resources": ["signers"],
                "resourceNames": ["kubernetes.io/*"], "verbs": ["approve"]}]}))?,
        )
        .await?;
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "signer-approver"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "signer-approver"},
            "subjects": [{"kind": "User", "name": "approver", "apiGroup": "rbac.authorization.k8s.io"}]}))?,
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match as_approver.replace_subresource("approval", "joe", &PostParams::default(), &current).await {
            Ok(_) => break,
            Err(e) => anyhow::ensure!(Instant::now() < deadline, "approval with `approve` on kubernetes.io/*: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let conditions = csrs.get("joe").await?.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(conditions.iter().any(|c| c.type_ == "Approved" && c.status == "True"), "{conditions:?}");
    server.stop().await;
    Ok(())
}

/// A well-formed certificate, base64 as the API carries it (whose it is does not matter
/// to the check).
fn b64_cert() -> anyhow::Result<String> {
    use base64::Engine as _;
    let cert = rcgen::generate_simple_self_signed(vec!["joe".to_string()])?;
    Ok(base64::engine::general_purpose::STANDARD.encode(cert.cert.pem()))
}

/// CertificateSubjectRestriction: a request to the kube-apiserver-client signer for a
/// certificate in `system:masters` is refused on create, even to the admin, with
/// kube-apiserver's message; nothing is stored. The same group under another signer,
/// and other groups under this one, are accepted.
#[tokio::test]
async fn nobody_may_ask_for_a_system_masters_client_certificate() -> anyhow::Result<()> {
    use base64::Engine as _;
    let server = TestServer::start().await?;
    let csrs: Api<CertificateSigningRequest> = Api::all(server.client().await?);
    let request = |name: &str, org: &str, signer: &str| -> anyhow::Result<CertificateSigningRequest> {
        let (pem, _) = csr_pem(name, org)?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&pem);
        Ok(serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"request": b64, "signerName": signer, "usages": ["client auth"]}}))?)
    };
    let client_signer = "kubernetes.io/kube-apiserver-client";
    let err = csrs
        .create(&PostParams::default(), &request("root", "system:masters", client_signer)?)
        .await
        .expect_err("a system:masters client certificate was requested");
    let kube::Error::Api(s) = err else { panic!("expected an API error") };
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        "certificatesigningrequests.certificates.k8s.io \"root\" is forbidden: use of \
         kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"
    );
    assert!(csrs.get_opt("root").await?.is_none(), "the refused request was stored");
    csrs.create(&PostParams::default(), &request("dev", "developers", client_signer)?).await?;
    csrs.create(&PostParams::default(), &request("other", "system:masters", "example.com/signer")?).await?;
    Ok(())
}
