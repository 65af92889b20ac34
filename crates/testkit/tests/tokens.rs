//! Service-account tokens through a real in-process API server and the kube-rs client:
//! TokenRequest, authentication with the issued JWT, revocation with the bound pod,
//! SelfSubjectReview / TokenReview, and the pod admission that mounts the token volume.

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenReview};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use vkube_testkit::TestServer;

fn pod(name: &str, extra_spec: Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}], "initContainers": [{"name": "i", "image": "busybox"}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pod")
}

async fn token_for(client: &kube::Client, ns: &str, sa: &str, spec: Value) -> Result<String, kube::Error> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req: TokenRequest = serde_json::from_value(json!({"spec": spec})).expect("token request");
    let out = api.create_token_request(sa, &PostParams::default(), &req).await?;
    Ok(out.status.and_then(|s| s.token).unwrap_or_default())
}

async fn client_with_token(server: &TestServer, token: &str) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(server.kubeconfig())?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    config.auth_info = kube::config::AuthInfo { token: Some(token.to_string().into()), ..Default::default() };
    Ok(kube::Client::try_from(config)?)
}

async fn whoami(client: &kube::Client) -> Result<Value, kube::Error> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review: SelfSubjectReview = serde_json::from_value(json!({"metadata": {}})).expect("review");
    let out = api.create(&PostParams::default(), &review).await?;
    Ok(serde_json::to_value(out.status.and_then(|s| s.user_info)).expect("json"))
}

fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        _ => 0,
    }
}

#[tokio::test]
async fn issued_tokens_authenticate_until_their_pod_is_gone() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let p = pods.create(&PostParams::default(), &pod("app", json!({}))).await?;
    let uid = p.metadata.uid.clone().expect("uid");

    // A token bound to the pod authenticates as the service account.
    let token = token_for(
        &admin,
        "default",
        "default",
        json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "app", "uid": uid}}),
    )
    .await?;
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let as_sa = client_with_token(&server, &token).await?;
    let me = whoami(&as_sa).await?;
    assert_eq!(me["username"], "system:serviceaccount:default:default");
    let groups: Vec<&str> = me["groups"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert!(groups.contains(&"system:serviceaccounts:default") && groups.contains(&"system:authenticated"), "{me}");
    assert_eq!(me["extra"]["authentication.kubernetes.io/pod-name"], json!(["app"]));
    // The same token works for ordinary requests, as far as RBAC grants: a default
    // service account gets nothing beyond discovery until a binding gives it more.
    let seen: Api<Pod> = Api::namespaced(as_sa.clone(), "default");
    let refused = seen.get_opt("app").await.expect_err("no grant yet");
    assert_eq!(code(&refused), 403, "{refused:?}");
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(admin.clone(), "default");
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "sa-views"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]}))?,
        )
        .await?;
    assert!(seen.get_opt("app").await?.is_some(), "the binding acts as soon as it is acknowledged");

    // TokenReview agrees; a garbage token is reported as not authenticated.
    let reviews: Api<TokenReview> = Api::all(admin.clone());
    let r = reviews.create(&PostParams::default(), &serde_json::from_value(json!({"spec": {"token": token}}))?).await?;
    assert_eq!(r.status.as_ref().and_then(|s| s.authenticated), Some(true));
    let bad =
        reviews.create(&PostParams::default(), &serde_json::from_value(json!({"spec": {"token": "x.y.z"}}))?).await?;
    assert_eq!(bad.status.as_ref().and_then(|s| s.authenticated), Some(false));

    // Deleting the bound pod revokes the token: 401.
    pods.delete("app", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await?;
    let err = whoami(&as_sa).await.expect_err("revoked");
    assert_eq!(code(&err), 401, "{err:?}");

    // A token for another audience does not authenticate to the API.
    let vault = token_for(&admin, "default", "default", json!({"audiences": ["vault"]})).await?;
    let err = whoami(&client_with_token(&server, &vault).await?).await.expect_err("foreign audience");
    assert_eq!(code(&err), 401);

    // Deleting and recreating the service account revokes its tokens (the uid differs).
    let plain = token_for(&admin, "default", "default", json!({})).await?;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    sas.delete("default", &DeleteParams::default()).await?;
    sas.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "default"}}))?).await?;
    let err = whoami(&client_with_token(&server, &plain).await?).await.expect_err("recreated account");
    assert_eq!(code(&err), 401);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn token_requests_are_checked() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.client().await?;
    let err = token_for(&admin, "default", "nobody", json!({})).await.expect_err("no such account");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.message == "serviceaccounts \"nobody\" not found"),
        "{err:?}"
    );
    let err = token_for(&admin, "default", "default", json!({"expirationSeconds": 60})).await.expect_err("too short");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("spec.expirationSeconds")),
        "{err:?}"
    );
    let err = token_for(
        &admin,
        "default",
        "default",
        json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "ghost"}}),
    )
    .await
    .expect_err("bound to a missing pod");
    assert_eq!(code(&err), 404);
    let err = token_for(
        &admin,
        "default",
        "default",
        json!({"boundObjectRef": {"kind": "Node", "apiVersion": "v1", "name": "n"}}),
    )
    .await
    .expect_err("unsupported kind");
    assert_eq!(code(&err), 422);
    // Unauthenticated requests stay refused, whatever the token looks like.
    let err = whoami(&client_with_token(&server, "a.b.c").await?).await.expect_err("garbage");
    assert_eq!(code(&err), 401);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn pods_get_a_service_account_token_volume() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let admin = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let p = serde_json::to_value(pods.create(&PostParams::default(), &pod("mounted", json!({}))).await?)?;
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    let vol = p["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"].as_str().is_some_and(|n| n.starts_with("kube-api-access-")))
        .cloned()
        .expect("token volume");
    let sources = &vol["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"], "metadata.namespace");
    for list in ["containers", "initContainers"] {
        assert_eq!(
            p["spec"][list][0]["volumeMounts"][0],
            json!({"name": vol["name"], "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
        );
    }
    // Opting out on the pod, or on its service account, leaves the pod alone.
    let off = serde_json::to_value(
        pods.create(&PostParams::default(), &pod("off", json!({"automountServiceAccountToken": false}))).await?,
    )?;
    assert!(off["spec"].get("volumes").is_none(), "{off}");
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "quiet"}, "automountServiceAccountToken": false}))?,
    )
    .await?;
    let quiet = serde_json::to_value(
        pods.create(&PostParams::default(), &pod("quiet", json!({"serviceAccountName": "quiet"}))).await?,
    )?;
    assert!(quiet["spec"].get("volumes").is_none(), "{quiet}");
    // A service account that does not exist: 403, as kube-apiserver.
    let err = pods
        .create(&PostParams::default(), &pod("lost", json!({"serviceAccountName": "missing"})))
        .await
        .expect_err("missing account");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403 && s.message.contains("error looking up service account default/missing")),
        "{err:?}"
    );
    server.stop().await;
    Ok(())
}
