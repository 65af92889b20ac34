//! Dynamic admission through a real client: webhook configurations and admission
//! policies are validated as kube-apiserver validates them, and once stored they act —
//! a validating webhook refuses (and the refused object is not stored), a mutating one
//! patches, failurePolicy and timeouts decide what an unreachable webhook means,
//! selectors and match conditions choose what is sent, a service reference reaches the
//! webhook through the service's endpoints, and a ValidatingAdmissionPolicy refuses with
//! kube-apiserver's message.

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Service};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vkube_testkit::TestServer;
use vkube_testkit::webhook::TestWebhook;

fn api_error(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other}"),
    }
}

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"a": "1"}})).expect("configmap")
}

/// Create configmaps named `marker-N` until `done` holds for the result (the
/// configuration took effect), within a deadline.
async fn until_effective(
    cms: &Api<ConfigMap>,
    what: &str,
    done: impl Fn(&Result<ConfigMap, kube::Error>) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0.. {
        let r = cms.create(&PostParams::default(), &configmap(&format!("marker-{i}"))).await;
        if done(&r) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: never took effect (last: {:?})", r.map(|c| c.data));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn webhook_configurations_are_validated_and_defaulted_as_kube_apiserver() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(server.client().await?);
    let bad: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "bad"},
        "webhooks": [
            {"name": "ab", "clientConfig": {"url": "http://example.com/x"},
             "rules": [{"operations": ["CREATE", "FOO"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
             "admissionReviewVersions": ["v3"], "timeoutSeconds": 40,
             "matchConditions": [{"name": "m1", "expression": "... [] bad expression"}, {"name": "m1", "expression": "1"}]},
        ]
    }))?;
    let (code, reason, message) = api_error(vwcs.create(&PostParams::default(), &bad).await.expect_err("invalid"));
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    for part in [
        "webhooks[0].name: Invalid value: \"ab\": should be a domain with at least three segments separated by dots",
        "webhooks[0].rules[0].operations[1]: Unsupported value: \"FOO\": supported values: \"*\", \"CONNECT\", \"CREATE\", \"DELETE\", \"UPDATE\"",
        "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun",
        "webhooks[0].timeoutSeconds: Invalid value: 40: the timeout value must be between 1 and 30 seconds",
        "webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]",
        "webhooks[0].matchConditions[0].expression: Invalid value: \"... [] bad expression\": compilation failed: ERROR: <input>:1:",
        "webhooks[0].matchConditions[1].expression: Invalid value: \"1\": must evaluate to bool but got int",
        "webhooks[0].matchConditions[1].name: Duplicate value: \"m1\"",
        "webhooks[0].admissionReviewVersions: Invalid value: [\"v3\"]: must include at least one of v1, v1beta1",
    ] {
        assert!(message.contains(part), "missing {part:?} in {message}");
    }
    assert!(vwcs.get_opt("bad").await?.is_none(), "an invalid configuration was stored");
    let good: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "good"},
        "webhooks": [{"name": "a.b.c", "clientConfig": {"service": {"namespace": "d", "name": "s"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"]}]
    }))?;
    let stored = serde_json::to_value(vwcs.create(&PostParams::default(), &good).await?)?;
    let hook = &stored["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["matchPolicy"], "Equivalent");
    assert_eq!(hook["timeoutSeconds"], 10);
    assert_eq!(hook["namespaceSelector"], json!({}));
    assert_eq!(hook["objectSelector"], json!({}));
    assert_eq!(hook["rules"][0]["scope"], "*");
    assert_eq!(hook["clientConfig"]["service"]["port"], 443);
    assert_eq!(stored["metadata"]["generation"], 1);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_validating_webhook_refuses_and_a_mutating_one_patches() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let hook = TestWebhook::start(
        &[],
        Arc::new(|req: &Value| {
            let name = req.pointer("/object/metadata/name").and_then(Value::as_str).unwrap_or_default();
            if req.pointer("/kind/kind") == Some(&json!("ConfigMap")) && name.starts_with("deny") {
                return json!({"allowed": false, "status": {"code": 403, "message": "configmaps named deny-* are not welcome"}});
            }
            json!({"allowed": true})
        }),
    )
    .await?;
    let mutator = TestWebhook::start(
        &[],
        Arc::new(|_req: &Value| {
            let patch = json!([{"op": "add", "path": "/data/mutated", "value": "yes"}]);
            json!({"allowed": true, "patchType": "JSONPatch", "patch": b64(&patch.to_string()), "warnings": ["mutated by the test"]})
        }),
    )
    .await?;
    let rules = json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]);
    let vwc: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "deny"},
        "webhooks": [{"name": "deny.example.com", "clientConfig": {"url": hook.url, "caBundle": b64(&hook.ca_pem)},
            "rules": rules, "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "matchConditions": [{"name": "not-skip-me", "expression": "object.metadata.name != 'deny-skip-me'"}]}]
    }))?;
    Api::<ValidatingWebhookConfiguration>::all(client.clone()).create(&PostParams::default(), &vwc).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    until_effective(&cms, "validating webhook", |_| !hook.reviews().is_empty()).await?;
    let (code, _, message) =
        api_error(cms.create(&PostParams::default(), &configmap("deny-me")).await.expect_err("refused"));
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "admission webhook \"deny.example.com\" denied the request: configmaps named deny-* are not welcome"
    );
    assert!(cms.get_opt("deny-me").await?.is_none(), "a refused configmap was stored");
    // The review carried what kube-apiserver sends.
    let review = hook
        .reviews()
        .into_iter()
        .rev()
        .find(|r| r.pointer("/request/name") == Some(&json!("deny-me")))
        .expect("review");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["request"]["operation"], "CREATE");
    assert_eq!(review["request"]["namespace"], "default");
    assert_eq!(review["request"]["resource"], json!({"group": "", "version": "v1", "resource": "configmaps"}));
    assert_eq!(review["request"]["userInfo"]["username"], "vkube-admin");
    assert_eq!(review["request"]["dryRun"], false);
    // A match condition that is false sends nothing and lets it through.
    let before = hook.reviews().len();
    cms.create(&PostParams::default(), &configmap("deny-skip-me")).await?;
    assert_eq!(hook.reviews().len(), before, "a request the match condition excludes was sent");
    // A dry run is sent as one, refused alike.
    let dry = PostParams { dry_run: true, ..Default::default() };
    api_error(cms.create(&dry, &configmap("deny-dry")).await.expect_err("refused dry run"));
    let review = hook
        .reviews()
        .into_iter()
        .rev()
        .find(|r| r.pointer("/request/name") == Some(&json!("deny-dry")))
        .expect("review");
    assert_eq!(review["request"]["dryRun"], true);

    let mwc: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "mutate"},
        "webhooks": [{"name": "mutate.example.com", "clientConfig": {"url": mutator.url, "caBundle": b64(&mutator.ca_pem)},
            "rules": rules, "sideEffects": "None", "admissionReviewVersions": ["v1"]}]
    }))?;
    Api::<MutatingWebhookConfiguration>::all(client.clone()).create(&PostParams::default(), &mwc).await?;
    until_effective(&cms, "mutating webhook", |r| {
        r.as_ref().ok().and_then(|c| c.data.as_ref()).is_some_and(|d| d.contains_key("mutated"))
    })
    .await?;
    let made = cms.create(&PostParams::default(), &configmap("plain")).await?;
    assert_eq!(made.data.unwrap_or_default().get("mutated").map(String::as_str), Some("yes"));
    let stored = cms.get("plain").await?;
    assert_eq!(
        stored.data.unwrap_or_default().get("mutated").map(String::as_str),
        Some("yes"),
        "the mutation was not stored"
    );
    let dry_made = cms.create(&dry, &configmap("dry-plain")).await?;
    assert!(dry_made.data.unwrap_or_default().contains_key("mutated"));
    assert!(cms.get_opt("dry-plain").await?.is_none(), "a dry run stored an object");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn failure_policy_and_timeouts_decide_for_an_unreachable_webhook() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    // A port nothing listens on, and one that accepts and never answers.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let closed_port = closed.local_addr()?.port();
    drop(closed);
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent_port = silent.local_addr()?.port();
    let _holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let hook = |name: &str, url: String, policy: &str, ns_label: &str, timeout: i64| {
        json!({"name": name, "clientConfig": {"url": url},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": policy, "timeoutSeconds": timeout,
            "namespaceSelector": {"matchLabels": {"hook": ns_label}}})
    };
    let vwc: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "unreachable"},
        "webhooks": [
            hook("fail.example.com", format!("https://127.0.0.1:{closed_port}/x"), "Fail", "fail", 5),
            hook("ignore.example.com", format!("https://127.0.0.1:{closed_port}/x"), "Ignore", "ignore", 5),
            hook("slow.example.com", format!("https://127.0.0.1:{silent_port}/x"), "Fail", "slow", 1),
        ]
    }))?;
    Api::<ValidatingWebhookConfiguration>::all(client.clone()).create(&PostParams::default(), &vwc).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in ["fail", "ignore", "slow"] {
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns, "labels": {"hook": ns}}}))?;
        namespaces.create(&PostParams::default(), &n).await?;
    }
    let fail: Api<ConfigMap> = Api::namespaced(client.clone(), "fail");
    until_effective(&fail, "fail-closed webhook", |r| r.is_err()).await?;
    let (code, reason, message) =
        api_error(fail.create(&PostParams::default(), &configmap("x")).await.expect_err("fails closed"));
    assert_eq!((code, reason.as_str()), (500, "InternalError"));
    assert!(
        message.starts_with(&format!(
            "Internal error occurred: failed calling webhook \"fail.example.com\": failed to call webhook: Post \"https://127.0.0.1:{closed_port}/x?timeout=5s\": "
        )),
        "{message}"
    );
    assert!(fail.get_opt("x").await?.is_none());
    // Fail-open: admitted and stored.
    Api::<ConfigMap>::namespaced(client.clone(), "ignore").create(&PostParams::default(), &configmap("x")).await?;
    // The default namespace is selected by none of them.
    Api::<ConfigMap>::namespaced(client.clone(), "default").create(&PostParams::default(), &configmap("x")).await?;
    let started = Instant::now();
    let slow: Api<ConfigMap> = Api::namespaced(client.clone(), "slow");
    let (code, _, message) =
        api_error(slow.create(&PostParams::default(), &configmap("x")).await.expect_err("times out"));
    assert_eq!(code, 500);
    assert!(message.contains("slow.example.com") && message.contains("context deadline exceeded"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10), "the 1 s timeout was not kept: {:?}", started.elapsed());
    // A fail-closed webhook on everything cannot lock its own configuration in: the
    // admissionregistration objects are exempt, as in kube-apiserver.
    let everything: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "everything"},
        "webhooks": [{"name": "all.example.com", "clientConfig": {"url": format!("https://127.0.0.1:{closed_port}/x")},
            "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"]}]
    }))?;
    let vwcs = Api::<ValidatingWebhookConfiguration>::all(client.clone());
    vwcs.create(&PostParams::default(), &everything).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    until_effective(&cms, "webhook on everything", |r| r.is_err()).await?;
    vwcs.delete("everything", &Default::default()).await?;
    vwcs.delete("unreachable", &Default::default()).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_service_reference_reaches_the_webhook_through_its_endpoints() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let hook = TestWebhook::start(
        &["hooks.webhooks.svc"],
        Arc::new(|_req: &Value| json!({"allowed": false, "status": {"message": "reached through the service"}})),
    )
    .await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "webhooks"}}))?)
        .await?;
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "hooks"}, "spec": {"ports": [{"name": "https", "port": 443, "targetPort": hook.port}]}}),
    )?;
    Api::<Service>::namespaced(client.clone(), "webhooks").create(&PostParams::default(), &svc).await?;
    let eps: Endpoints = serde_json::from_value(json!({"metadata": {"name": "hooks"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": hook.port}]}]}))?;
    Api::<Endpoints>::namespaced(client.clone(), "webhooks").create(&PostParams::default(), &eps).await?;
    let vwc: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "by-service"},
        "webhooks": [{"name": "svc.example.com",
            "clientConfig": {"service": {"namespace": "webhooks", "name": "hooks", "path": "/validate"}, "caBundle": b64(&hook.ca_pem)},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "objectSelector": {"matchLabels": {"checked": "yes"}}}]
    }))?;
    Api::<ValidatingWebhookConfiguration>::all(client.clone()).create(&PostParams::default(), &vwc).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let labelled = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"checked": "yes"}}})).expect("cm")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    let message = loop {
        match cms.create(&PostParams::default(), &labelled(&format!("l{i}"))).await {
            Err(e) => break api_error(e).2,
            Ok(_) => anyhow::ensure!(Instant::now() < deadline, "the webhook never took effect"),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(message, "admission webhook \"svc.example.com\" denied the request: reached through the service");
    // An object the object selector leaves out is not sent.
    let before = hook.reviews().len();
    cms.create(&PostParams::default(), &configmap("unlabelled")).await?;
    assert_eq!(hook.reviews().len(), before);
    server.stop().await;
    Ok(())
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))
    .expect("deployment")
}

#[tokio::test]
async fn a_validating_admission_policy_refuses_with_kube_apiservers_message() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "vt", "labels": {"env": "test"}}}))?,
        )
        .await?;
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bad: ValidatingAdmissionPolicy = serde_json::from_value(json!({"metadata": {"name": "bad"},
        "spec": {"validations": [{"expression": "object.x +"}]}}))?;
    let (code, _, message) = api_error(policies.create(&PostParams::default(), &bad).await.expect_err("invalid"));
    assert_eq!(code, 422);
    assert!(message.contains("spec.matchConstraints: Required value"), "{message}");
    assert!(
        message.contains(
            "spec.validations[0].expression: Invalid value: \"object.x +\": compilation failed: ERROR: <input>:1:11"
        ),
        "{message}"
    );
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(
        json!({"metadata": {"name": "replicas.example.com"},
        "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
            "variables": [{"name": "replicas", "expression": "object.spec.replicas"}, {"name": "odd", "expression": "variables.replicas % 2 == 1"}],
            "validations": [
                {"expression": "variables.replicas <= 5", "messageExpression": "'wants at most 5 replicas, got ' + string(variables.replicas)"},
                {"expression": "variables.odd", "reason": "Forbidden"},
                {"expression": "namespaceObject.metadata.name == 'vt'", "message": "only in vt"}]}}),
    )?;
    let stored = serde_json::to_value(policies.create(&PostParams::default(), &policy).await?)?;
    assert_eq!(stored["spec"]["failurePolicy"], "Fail");
    assert_eq!(stored["spec"]["matchConstraints"]["matchPolicy"], "Equivalent");
    let binding: ValidatingAdmissionPolicyBinding =
        serde_json::from_value(json!({"metadata": {"name": "replicas-binding"},
        "spec": {"policyName": "replicas.example.com", "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"env": "test"}}}}}))?;
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone()).create(&PostParams::default(), &binding).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "vt");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    let (code, reason, message) = loop {
        match deployments.create(&PostParams::default(), &deployment(&format!("big{i}"), 7)).await {
            Err(e) => break api_error(e),
            Ok(_) => anyhow::ensure!(Instant::now() < deadline, "the policy never took effect"),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(
        message,
        format!(
            "deployments.apps \"big{i}\" is forbidden: ValidatingAdmissionPolicy 'replicas.example.com' with binding 'replicas-binding' denied request: wants at most 5 replicas, got 7"
        )
    );
    assert!(deployments.get_opt(&format!("big{i}")).await?.is_none());
    let (code, reason, message) =
        api_error(deployments.create(&PostParams::default(), &deployment("even", 2)).await.expect_err("even"));
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert!(message.ends_with("denied request: failed expression: variables.odd"), "{message}");
    deployments.create(&PostParams::default(), &deployment("fine", 3)).await?;
    // Outside the selected namespaces, the policy does not apply.
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &deployment("big", 8))
        .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_mutating_admission_policy_changes_what_is_stored() -> anyhow::Result<()> {
    use k8s_openapi::api::admissionregistration::v1::{MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding};
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "mt", "labels": {"mutate": "true"}}}))?,
        )
        .await?;
    let rules = json!({"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]}]});
    let policy: MutatingAdmissionPolicy = serde_json::from_value(json!({"metadata": {"name": "replicas.example.com"},
        "spec": {"matchConstraints": rules, "reinvocationPolicy": "Never", "mutations": [
            {"patchType": "ApplyConfiguration", "applyConfiguration": {"expression":
                "Object{spec: Object.spec{replicas: 1337}, metadata: Object.metadata{annotations: {'mutated-by': 'admission-policy'}}}"}},
            {"patchType": "JSONPatch", "jsonPatch": {"expression":
                "[JSONPatch{op: 'add', path: '/metadata/labels/size', value: string(object.spec.replicas)}]"}}]}}))?;
    Api::<MutatingAdmissionPolicy>::all(client.clone()).create(&PostParams::default(), &policy).await?;
    let binding: MutatingAdmissionPolicyBinding = serde_json::from_value(
        json!({"metadata": {"name": "replicas-binding"},
        "spec": {"policyName": "replicas.example.com", "matchResources": {"namespaceSelector": {"matchLabels": {"mutate": "true"}}}}}),
    )?;
    Api::<MutatingAdmissionPolicyBinding>::all(client.clone()).create(&PostParams::default(), &binding).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "mt");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    let made = loop {
        let mut d = deployment(&format!("d{i}"), 1);
        d.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
        let made = deployments.create(&PostParams::default(), &d).await?;
        if made.spec.replicas == Some(1337) {
            break made;
        }
        anyhow::ensure!(Instant::now() < deadline, "the policy never took effect");
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stored = deployments.get(&made.metadata.name.clone().unwrap_or_default()).await?;
    assert_eq!(stored.spec.replicas, Some(1337), "the mutation was not stored");
    assert_eq!(
        stored.metadata.annotations.unwrap_or_default().get("mutated-by").map(String::as_str),
        Some("admission-policy")
    );
    let labels = stored.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("size").map(String::as_str),
        Some("1337"),
        "the JSON patch did not see the applied configuration"
    );
    assert_eq!(labels.get("app").map(String::as_str), Some("x"), "the merge dropped a label");
    // Outside the selected namespaces nothing changes.
    let other = Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &deployment("plain", 2))
        .await?;
    assert_eq!(other.spec.replicas, Some(2));
    server.stop().await;
    Ok(())
}
