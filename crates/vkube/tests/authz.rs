//! Authorization, judged against the real thing: the same RBAC objects in `vkube
//! apiserver` and in a real kube-apiserver v1.36 (../shared/bin), then a table of
//! requests (user × verb × resource, impersonation, escalation, reviews) sent by
//! kubectl to both, and every answer compared — status, and the refusal's exact text.

mod common;

use common::real::RealCluster;
use std::path::{Path, PathBuf};
use std::process::Command;
use vkube_apiserver::pki::{self, CertPair, Credential};

const POLICY: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: dev}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: bot, namespace: dev}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: allowed, namespace: dev}
data: {a: "1"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: dev}
rules:
- apiGroups: [""]
  resources: ["pods", "pods/log"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["configmaps"]
  resourceNames: ["allowed"]
  verbs: ["get", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: team-edits, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: team}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bot-views, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: bot}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-views}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-alice}
rules:
- apiGroups: [""]
  resources: ["users"]
  resourceNames: ["alice"]
  verbs: ["impersonate"]
- apiGroups: [""]
  resources: ["groups"]
  resourceNames: ["team"]
  verbs: ["impersonate"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: carol-impersonates}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-alice}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: carol}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dave-ghost, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ghost}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: dave}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: rbac-writer, namespace: dev}
rules:
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["create"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: erin-writes-rbac, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: rbac-writer}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: erin}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: erin-reads, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: erin}]
"#;

/// One API server under test, with a kubeconfig per identity.
struct Side {
    label: &'static str,
    dir: PathBuf,
    admin: PathBuf,
}

fn server_of(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    text.lines().find_map(|l| l.trim().strip_prefix("server: ")).expect("server").to_string()
}

impl Side {
    fn kubectl(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = Command::new("kubectl");
        cmd.args(args).env("KUBECONFIG", kubeconfig);
        cmd.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn admin_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.kubectl(&self.admin, args, stdin);
        assert!(ok, "{}: kubectl {args:?}: {err}{out}", self.label);
        out
    }

    /// A kubeconfig for a user with a client certificate signed by this side's CA.
    fn user(&self, name: &str, groups: &[&str]) -> PathBuf {
        let read = |f: &str| std::fs::read_to_string(self.dir.join("pki").join(f)).expect("CA file");
        let ca = CertPair { cert_pem: read("ca.crt"), key_pem: read("ca.key") };
        let pair = pki::issue_client_by(&ca, name, groups).expect("issue");
        let kc = pki::kubeconfig(name, &server_of(&self.admin), &ca.cert_pem, Credential::Cert(&pair));
        let path = self.dir.join(format!("user-{name}.kubeconfig"));
        std::fs::write(&path, kc).expect("write kubeconfig");
        path
    }

    /// A kubeconfig with a service account's token.
    fn service_account(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.admin_ok(&["create", "token", name, "-n", namespace], None);
        let ca = std::fs::read_to_string(self.dir.join("pki/ca.crt")).expect("ca");
        let kc = pki::kubeconfig(name, &server_of(&self.admin), &ca, Credential::Token(token.trim()));
        let path = self.dir.join(format!("sa-{namespace}-{name}.kubeconfig"));
        std::fs::write(&path, kc).expect("write kubeconfig");
        path
    }
}

/// What a client sees of one request: success, or kubectl's error line.
fn outcome(ok: bool, out: &str, err: &str) -> String {
    if ok {
        // Reviews answer with a status worth comparing; other successes only as such.
        match serde_json::from_str::<serde_json::Value>(out) {
            Ok(v) if v.get("status").is_some_and(|s| s.get("allowed").is_some()) => format!("ok {}", v["status"]),
            _ => "ok".into(),
        }
    } else {
        err.lines().filter(|l| !l.starts_with("Warning") && !l.starts_with('W')).collect::<Vec<_>>().join("\n")
    }
}

const ROLE_OK: &str = r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"sub-reader","namespace":"dev"},"rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get","list"]}]}"#;
const ROLE_ESCALATES: &str = r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"grabber","namespace":"dev"},"rules":[{"apiGroups":[""],"resources":["secrets"],"verbs":["get","list"]},{"apiGroups":["apps"],"resources":["deployments"],"resourceNames":["web"],"verbs":["*"]},{"apiGroups":[""],"resources":["pods"],"verbs":["get","delete"]}]}"#;
const BINDING_ESCALATES: &str = r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"give-view","namespace":"dev"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"mallory"}]}"#;
const BINDING_OK: &str = r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"share-reader","namespace":"dev"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"pod-reader"},"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"mallory"}]}"#;
const CONFIGMAP: &str =
    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"made-by-team","namespace":"dev"}}"#;
const SSAR_SECRETS: &str = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"namespace":"dev","verb":"list","resource":"secrets"}}}"#;
const SSAR_PODS: &str = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"resourceAttributes":{"namespace":"dev","verb":"get","resource":"pods"}}}"#;

/// (who, kubectl arguments, body): the same on both sides.
fn table() -> Vec<(&'static str, Vec<&'static str>, Option<&'static str>)> {
    let raw_get = |p: &'static str| vec!["get", "--raw", p];
    let raw_create = |p: &'static str| vec!["create", "--raw", p, "-f", "-"];
    vec![
        ("alice", raw_get("/api/v1/namespaces/dev/pods"), None),
        ("alice", raw_get("/api/v1/namespaces/kube-system/secrets"), None),
        ("alice", raw_get("/api/v1/namespaces/dev/configmaps/allowed"), None),
        ("alice", raw_get("/api/v1/namespaces/dev/configmaps/other"), None),
        ("alice", raw_get("/api/v1/namespaces/dev/configmaps"), None),
        ("alice", raw_get("/api/v1/namespaces/dev/pods/missing/log"), None),
        ("alice", raw_get("/api/v1/namespaces/dev/pods/missing/exec"), None),
        ("alice", vec!["delete", "--raw", "/api/v1/namespaces/dev"], None),
        ("alice", raw_get("/api/v1/nodes"), None),
        ("alice", raw_get("/apis/apps/v1/namespaces/dev/deployments/web/scale"), None),
        ("alice", raw_get("/apis/example.com/v1/namespaces/dev/widgets?watch=true"), None),
        ("alice", raw_get("/metrics"), None),
        ("alice", raw_get("/api"), None),
        ("alice", raw_get("/apis/apps/v1"), None),
        ("alice", raw_get("/version"), None),
        ("alice", raw_create("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"), Some(SSAR_PODS)),
        ("alice", raw_create("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"), Some(SSAR_SECRETS)),
        ("bob", raw_get("/api/v1/namespaces/dev/secrets"), None),
        ("bob", raw_get("/apis/apps/v1/deployments"), None),
        ("bob", raw_create("/api/v1/namespaces/dev/configmaps"), Some(CONFIGMAP)),
        ("bob", raw_create("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"), Some(SSAR_PODS)),
        ("frank", raw_create("/api/v1/namespaces/dev/configmaps"), Some(CONFIGMAP)),
        ("frank", raw_get("/api/v1/namespaces/dev/secrets"), None),
        ("frank", raw_create("/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles"), Some(ROLE_OK)),
        ("frank", raw_get("/api/v1/namespaces/default/secrets"), None),
        ("bot", raw_get("/api/v1/namespaces/dev/pods"), None),
        ("bot", raw_get("/api/v1/namespaces/default/pods"), None),
        ("bot", raw_get("/api/v1/namespaces/kube-system/secrets/anything"), None),
        ("bot", vec!["delete", "--raw", "/api/v1/namespaces/dev"], None),
        ("dave", raw_get("/api/v1/namespaces/dev/pods"), None),
        ("dave", raw_create("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"), Some(SSAR_PODS)),
        ("carol", vec!["get", "--raw", "/api/v1/namespaces/dev/pods", "--as", "alice"], None),
        ("carol", vec!["get", "--raw", "/api/v1/namespaces/dev/pods", "--as", "bob"], None),
        ("carol", vec!["get", "--raw", "/api/v1/namespaces/dev/pods", "--as", "alice", "--as-group", "ops"], None),
        ("carol", vec!["get", "--raw", "/api/v1/namespaces/dev/secrets", "--as", "alice", "--as-group", "team"], None),
        ("carol", vec!["get", "--raw", "/api/v1/namespaces/dev/pods", "--as", "system:serviceaccount:dev:bot"], None),
        ("alice", vec!["get", "--raw", "/api/v1/namespaces/dev/pods", "--as", "bob"], None),
        ("erin", raw_create("/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles"), Some(ROLE_OK)),
        ("erin", raw_create("/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles"), Some(ROLE_ESCALATES)),
        ("erin", raw_create("/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings"), Some(BINDING_ESCALATES)),
        ("erin", raw_create("/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings"), Some(BINDING_OK)),
        ("mallory", raw_get("/api/v1/namespaces/dev/pods"), None),
    ]
}

fn identities(side: &Side) -> std::collections::HashMap<&'static str, PathBuf> {
    let mut m = std::collections::HashMap::new();
    for (name, groups) in [
        ("alice", &["dev"][..]),
        ("bob", &[][..]),
        ("carol", &[][..]),
        ("dave", &[][..]),
        ("erin", &[][..]),
        ("frank", &["team"][..]),
        ("mallory", &[][..]),
    ] {
        m.insert(name, side.user(name, groups));
    }
    m.insert("bot", side.service_account("dev", "bot"));
    m
}

fn rules_of(side: &Side, role: &str) -> Vec<String> {
    let out = side.admin_ok(&["get", "clusterrole", role, "-o", "json"], None);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let mut rules: Vec<String> = v["rules"].as_array().into_iter().flatten().map(|r| r.to_string()).collect();
    rules.sort();
    rules
}

#[test]
fn rbac_answers_every_request_as_kube_apiserver_does() {
    let real = RealCluster::start();
    let vk = common::start();
    let sides = [
        Side { label: "kube-apiserver", dir: real.dir.path().to_path_buf(), admin: real.kubeconfig.clone() },
        Side { label: "vkube", dir: vk.dir.path().to_path_buf(), admin: vk.kubeconfig.clone() },
    ];
    for side in &sides {
        side.admin_ok(&["apply", "-f", "-"], Some(POLICY));
    }
    // The default policy: the aggregated roles hold what kube-controller-manager gathers.
    for role in ["admin", "edit", "view", "cluster-admin", "system:discovery", "system:basic-user"] {
        let real_rules = rules_of(&sides[0], role);
        common::retry(20, || (rules_of(&sides[1], role) == real_rules).then_some(()));
        assert!(!real_rules.is_empty(), "{role} has rules");
    }
    let ids: Vec<_> = sides.iter().map(identities).collect();
    let mut differences = Vec::new();
    for (who, args, body) in table() {
        let answers: Vec<String> = sides
            .iter()
            .zip(&ids)
            .map(|(side, ids)| {
                let (ok, out, err) = side.kubectl(&ids[who], &args, body);
                outcome(ok, &out, &err)
            })
            .collect();
        if answers[0] != answers[1] {
            differences
                .push(format!("{who} {args:?}\n  kube-apiserver: {}\n  vkube:          {}", answers[0], answers[1]));
        }
    }
    assert!(differences.is_empty(), "vkube answered differently:\n{}", differences.join("\n"));
    // A refused escalation stored nothing; an allowed one acts at once.
    for side in &sides {
        let (ok, _, err) = side.kubectl(&side.admin, &["get", "role", "grabber", "-n", "dev"], None);
        assert!(!ok && err.contains("NotFound"), "{}: {err}", side.label);
    }
    let (ok, _, err) = sides[1].kubectl(&ids[1]["mallory"], &["get", "pods", "-n", "dev"], None);
    assert!(ok, "mallory reads pods through the binding erin made: {err}");
    // `kubectl auth can-i` reads the same on both.
    for args in [
        vec!["auth", "can-i", "--list", "-n", "dev"],
        vec!["auth", "can-i", "list", "secrets", "-n", "dev"],
        vec!["auth", "can-i", "update", "configmaps/allowed", "-n", "dev"],
        vec!["auth", "can-i", "get", "pods", "--subresource=log", "-n", "dev"],
    ] {
        let seen: Vec<String> = sides
            .iter()
            .zip(&ids)
            .map(|(side, ids)| {
                let (_, out, err) = side.kubectl(&ids["alice"], &args, None);
                let mut lines: Vec<&str> = out.lines().chain(err.lines()).collect();
                lines.sort_unstable();
                lines.dedup();
                lines.join("\n")
            })
            .collect();
        assert_eq!(seen[0], seen[1], "kubectl {args:?}");
    }
    drop(vk);
}

const KUBELET_OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: kubelets}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: runner, namespace: kubelets}
---
apiVersion: v1
kind: Secret
metadata: {name: used, namespace: kubelets}
stringData: {a: "1"}
---
apiVersion: v1
kind: Secret
metadata: {name: unused, namespace: kubelets}
stringData: {a: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: used, namespace: kubelets}
data: {a: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other, namespace: kubelets}
data: {a: "1"}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
"#;

/// A pod on n1 with projected tokens: the API server's audience and `vault`.
const TOKEN_POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p-with-token","namespace":"kubelets"},
"spec":{"nodeName":"n1","serviceAccountName":"runner","automountServiceAccountToken":false,"containers":[{"name":"c","image":"busybox"}],
"volumes":[{"name":"t","projected":{"sources":[{"serviceAccountToken":{"path":"api"}},{"serviceAccountToken":{"path":"v","audience":"vault"}}]}}]}}"#;

fn kubelet_pod(node: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p-{node}","namespace":"kubelets"}},
        "spec":{{"nodeName":"{node}","serviceAccountName":"runner","automountServiceAccountToken":false,
        "containers":[{{"name":"c","image":"busybox","env":[{{"name":"A","valueFrom":{{"secretKeyRef":{{"name":"used","key":"a"}}}}}}],
        "envFrom":[{{"configMapRef":{{"name":"used"}}}}]}}]}}}}"#
    )
}

/// (method, path, body) a kubelet of node `n1` sends.
fn kubelet_table() -> Vec<(&'static str, &'static str, Option<&'static str>)> {
    let merge = Some(r#"{"metadata":{"labels":{"example.com/team":"a"}}}"#);
    let lease = |n: &'static str| -> Option<&'static str> {
        Some(if n == "n1" {
            r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"n1"},"spec":{"holderIdentity":"n1"}}"#
        } else {
            r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"n2"},"spec":{"holderIdentity":"n2"}}"#
        })
    };
    vec![
        ("POST", "/api/v1/nodes", Some(r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n3"}}"#)),
        (
            "POST",
            "/api/v1/nodes",
            Some(
                r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","labels":{"node-role.kubernetes.io/master":""}}}"#,
            ),
        ),
        ("GET", "/api/v1/nodes/n1", None),
        ("GET", "/api/v1/nodes/n2", None),
        ("GET", "/api/v1/nodes", None),
        ("GET", "/api/v1/nodes?fieldSelector=metadata.name%3Dn1", None),
        ("PATCH", "/api/v1/nodes/n1", merge),
        ("PATCH", "/api/v1/nodes/n1", Some(r#"{"metadata":{"labels":{"node-restriction.kubernetes.io/x":"y"}}}"#)),
        ("PATCH", "/api/v1/nodes/n1", Some(r#"{"metadata":{"labels":{"node-role.kubernetes.io/master":""}}}"#)),
        ("PATCH", "/api/v1/nodes/n1", Some(r#"{"spec":{"taints":[{"key":"k","effect":"NoSchedule"}]}}"#)),
        ("PATCH", "/api/v1/nodes/n2", merge),
        ("DELETE", "/api/v1/nodes/n2", None),
        ("GET", "/api/v1/pods", None),
        ("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1", None),
        ("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn2", None),
        ("GET", "/api/v1/namespaces/kubelets/pods/p-n1", None),
        ("GET", "/api/v1/namespaces/kubelets/pods/p-n2", None),
        ("GET", "/api/v1/namespaces/kubelets/pods/p-n1/status", None),
        ("PATCH", "/api/v1/namespaces/kubelets/pods/p-n1/status", Some(r#"{"status":{"message":"seen"}}"#)),
        ("PATCH", "/api/v1/namespaces/kubelets/pods/p-n2/status", Some(r#"{"status":{"message":"seen"}}"#)),
        ("PATCH", "/api/v1/namespaces/kubelets/pods/p-n1", merge),
        (
            "POST",
            "/api/v1/namespaces/kubelets/pods",
            Some(
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"nodeName":"n1","serviceAccountName":"runner","containers":[{"name":"c","image":"i"}]}}"#,
            ),
        ),
        ("DELETE", "/api/v1/namespaces/kubelets/pods/p-n2", None),
        ("GET", "/api/v1/namespaces/kubelets/secrets/used", None),
        ("GET", "/api/v1/namespaces/kubelets/secrets/unused", None),
        ("GET", "/api/v1/namespaces/kubelets/secrets", None),
        ("GET", "/api/v1/namespaces/kubelets/secrets?fieldSelector=metadata.name%3Dused", None),
        ("GET", "/api/v1/namespaces/kubelets/configmaps/used", None),
        ("GET", "/api/v1/namespaces/kubelets/configmaps/other", None),
        ("DELETE", "/api/v1/namespaces/kubelets/secrets/used", None),
        ("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease("n1")),
        ("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease("n2")),
        ("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1", None),
        ("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2", None),
        ("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", None),
        ("POST", "/apis/coordination.k8s.io/v1/namespaces/kubelets/leases", lease("n1")),
        (
            "POST",
            "/api/v1/namespaces/kubelets/events",
            Some(
                r#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"e1"},"involvedObject":{"kind":"Pod","name":"p-n1","namespace":"kubelets"},"reason":"Seen","message":"m"}"#,
            ),
        ),
        ("GET", "/api/v1/services", None),
        ("GET", "/api/v1/namespaces", None),
        ("GET", "/api/v1/namespaces/kubelets/endpoints", None),
        ("GET", "/apis/apps/v1/deployments", None),
        ("GET", "/api/v1/namespaces/kubelets/serviceaccounts/runner", None),
    ]
}

/// What a client sees of a raw request: "ok", or the status code and message.
async fn raw_outcome(client: &kube::Client, method: &str, path: &str, body: Option<&str>) -> String {
    let content_type = if method == "PATCH" { "application/merge-patch+json" } else { "application/json" };
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(body.unwrap_or_default().as_bytes().to_vec())
        .expect("request");
    match client.request_text(req).await {
        Ok(_) => "ok".into(),
        Err(kube::Error::Api(s)) => format!("{} {}", s.code, s.message),
        Err(e) => format!("error {e}"),
    }
}

async fn node_client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.expect("config");
    kube::Client::try_from(config).expect("client")
}

/// The Node authorizer and NodeRestriction: a kubelet (`system:node:n1` in
/// `system:nodes`, by client certificate) registers and edits only its own Node and
/// Lease, reads only the pods bound to it and what they use, writes status only for
/// those — and every answer, allowed or refused, is kube-apiserver's.
#[tokio::test(flavor = "multi_thread")]
async fn kubelets_reach_only_their_own_node_as_with_kube_apiserver() {
    let real = RealCluster::start();
    let vk = common::start();
    let sides = [
        Side { label: "kube-apiserver", dir: real.dir.path().to_path_buf(), admin: real.kubeconfig.clone() },
        Side { label: "vkube", dir: vk.dir.path().to_path_buf(), admin: vk.kubeconfig.clone() },
    ];
    let mut clients = Vec::new();
    for side in &sides {
        side.admin_ok(&["apply", "-f", "-"], Some(KUBELET_OBJECTS));
        let client = node_client(&side.user("system:node:n1", &["system:nodes"])).await;
        // The kubelet registers its node, then the pods are bound to it and to n2.
        let node = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"}}"#;
        assert_eq!(raw_outcome(&client, "POST", "/api/v1/nodes", Some(node)).await, "ok", "{}", side.label);
        for n in ["n1", "n2"] {
            side.admin_ok(&["create", "-f", "-"], Some(&kubelet_pod(n)));
        }
        side.admin_ok(&["create", "-f", "-"], Some(TOKEN_POD));
        // The graph follows the pods a moment later, on both.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(50);
        while raw_outcome(&client, "GET", "/api/v1/namespaces/kubelets/secrets/used", None).await != "ok" {
            assert!(std::time::Instant::now() < deadline, "{}: the pod's secret never became readable", side.label);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        clients.push(client);
    }
    let mut differences = Vec::new();
    for (method, path, body) in kubelet_table() {
        let mut answers = Vec::new();
        for client in &clients {
            answers.push(raw_outcome(client, method, path, body).await);
        }
        if answers[0] != answers[1] {
            differences
                .push(format!("{method} {path}\n  kube-apiserver: {}\n  vkube:          {}", answers[0], answers[1]));
        }
    }
    // Tokens bound to pods, and evictions: the bodies name each side's own pod uids.
    let token_path = "/api/v1/namespaces/kubelets/serviceaccounts/runner/token";
    let mut per_side: Vec<Vec<String>> = Vec::new();
    for (side, client) in sides.iter().zip(&clients) {
        let uid =
            |pod: &str| side.admin_ok(&["get", "pod", pod, "-n", "kubelets", "-o", "jsonpath={.metadata.uid}"], None);
        let (own, other, token_pod) = (uid("p-n1"), uid("p-n2"), uid("p-with-token"));
        let token = |bound: &str, audiences: &str| {
            format!(
                r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{{{audiences}"boundObjectRef":{bound}}}}}"#
            )
        };
        let pod_ref =
            |name: &str, uid: &str| format!(r#"{{"kind":"Pod","apiVersion":"v1","name":"{name}","uid":"{uid}"}}"#);
        let bodies = [
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}"#.to_string(),
            token(r#"{"kind":"Pod","apiVersion":"v1","name":"p-n1"}"#, ""),
            token(&pod_ref("p-n1", "abc"), ""),
            token(&pod_ref("p-n2", &other), ""),
            token(&pod_ref("p-n1", &own), r#""audiences":["elsewhere"],"#),
            token(&pod_ref("p-n1", &own), ""),
            token(&pod_ref("p-with-token", &token_pod), ""),
            token(&pod_ref("p-with-token", &token_pod), r#""audiences":["vault"],"#),
            token(&pod_ref("p-with-token", &token_pod), r#""audiences":["elsewhere"],"#),
        ];
        let mut answers = Vec::new();
        for body in &bodies {
            answers.push(raw_outcome(client, "POST", token_path, Some(body)).await);
        }
        let eviction = r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p-n2"}}"#;
        answers
            .push(raw_outcome(client, "POST", "/api/v1/namespaces/kubelets/pods/p-n2/eviction", Some(eviction)).await);
        per_side.push(answers);
    }
    for (i, (real, ours)) in per_side[0].iter().zip(&per_side[1]).enumerate() {
        if real != ours {
            differences.push(format!("token/eviction request {i}\n  kube-apiserver: {real}\n  vkube:          {ours}"));
        }
    }
    assert_eq!(per_side[1].last().map(|a| a.starts_with("403")), Some(true), "the eviction was not refused");
    assert!(differences.is_empty(), "vkube answered the kubelet differently:\n{}", differences.join("\n"));
    // Refused writes changed nothing.
    for side in &sides {
        let labels = side.admin_ok(&["get", "node", "n2", "-o", "jsonpath={.metadata.labels}"], None);
        assert!(!labels.contains("example.com/team"), "{}: n2 was labelled: {labels}", side.label);
        let (ok, _, _) = side.kubectl(&side.admin, &["get", "pod", "p-n2", "-n", "kubelets"], None);
        assert!(ok, "{}: the kubelet of n1 deleted a pod of n2", side.label);
    }
    drop(vk);
}
