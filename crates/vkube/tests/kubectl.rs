//! End-to-end: `kubectl` against the `vkube apiserver` binary.

mod common;

use common::{start, start_in};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
"#;

#[test]
fn crud_and_every_output_format() {
    let vk = start();
    let (ok, out, err) = vk.apply(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, labels: {app: demo}}\ndata: {a: \"1\"}\n",
    );
    assert!(ok, "{err}");
    assert!(out.contains("configmap/cfg created"), "{out}");
    assert!(vk.ok(&["get", "configmaps"]).contains("cfg    1      "));
    let json: serde_json::Value = serde_json::from_str(&vk.ok(&["get", "cm", "cfg", "-o", "json"])).expect("json");
    assert_eq!(json["data"]["a"], "1");
    assert!(vk.ok(&["get", "cm", "cfg", "-o", "yaml"]).contains("name: cfg"));
    assert_eq!(vk.ok(&["get", "cm", "cfg", "-o", "jsonpath={.metadata.labels.app}"]), "demo");
    let cols = vk.ok(&["get", "cm", "-o", "custom-columns=NAME:.metadata.name,A:.data.a"]);
    assert!(cols.contains("cfg    1"), "{cols}");
    vk.ok(&["label", "cm", "cfg", "tier=fe"]);
    vk.ok(&["annotate", "cm", "cfg", "note=hello"]);
    assert_eq!(vk.ok(&["get", "cm", "-l", "tier=fe", "-o", "jsonpath={.items[*].metadata.annotations.note}"]), "hello");
    // Wide table columns.
    let wide = vk.ok(&["get", "svc", "kubernetes", "-o", "wide"]);
    assert!(wide.contains("SELECTOR") && wide.contains("10.96.0.1"), "{wide}");
    let nodes = vk.kubectl(&["get", "nodes"]);
    assert!(nodes.0 && nodes.2.contains("No resources found"), "{nodes:?}");
    assert!(vk.ok(&["delete", "cm", "cfg"]).contains("configmap \"cfg\" deleted"));
    let (ok, _, err) = vk.kubectl(&["get", "cm", "cfg"]);
    assert!(!ok && err.contains("Error from server (NotFound): configmaps \"cfg\" not found"), "{err}");
}

#[test]
fn patch_apply_and_server_side_apply() {
    let vk = start();
    let (ok, out, err) = vk.apply(&["apply", "-f", "-"], DEPLOYMENT);
    assert!(ok && out.contains("deployment.apps/web created"), "{out}{err}");
    let (ok, out, err) = vk.apply(&["apply", "-f", "-"], DEPLOYMENT);
    assert!(ok && out.contains("deployment.apps/web unchanged"), "{out}{err}");
    vk.ok(&["patch", "deploy", "web", "-p", r#"{"spec":{"replicas":3}}"#]);
    assert_eq!(vk.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "3");
    vk.ok(&["patch", "deploy", "web", "--type=merge", "-p", r#"{"spec":{"replicas":4}}"#]);
    assert_eq!(vk.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "4");
    vk.ok(&["patch", "deploy", "web", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/replicas","value":5}]"#]);
    assert_eq!(vk.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.metadata.generation}"]), "5 4");
    // Server-side apply conflicts with the manager that set replicas, until forced.
    let (ok, _, err) = vk.apply(&["apply", "--server-side", "-f", "-"], DEPLOYMENT);
    assert!(
        !ok && err
            .contains("Apply failed with 1 conflict: conflict with \"kubectl-patch\" using apps/v1: .spec.replicas"),
        "{err}"
    );
    let (ok, out, err) = vk.apply(&["apply", "--server-side", "--force-conflicts", "-f", "-"], DEPLOYMENT);
    assert!(ok && out.contains("serverside-applied"), "{out}{err}");
    assert_eq!(vk.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "2");
    let managers = vk.ok(&[
        "get",
        "deploy",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(managers.contains("kubectl"), "{managers}");
    let (ok, out, err) = vk.apply(&["replace", "-f", "-"], DEPLOYMENT);
    assert!(ok && out.contains("replaced"), "{out}{err}");
}

/// Every kubectl on the machine: the default one and the older minor versions installed
/// beside it as `kubectl.1.NN`.
fn every_kubectl() -> Vec<std::path::PathBuf> {
    let default = Command::new("sh").args(["-c", "readlink -f \"$(command -v kubectl)\""]).output().expect("sh");
    let default = std::path::PathBuf::from(String::from_utf8_lossy(&default.stdout).trim());
    let mut all = vec![default.clone()];
    if let Some(dir) = default.parent()
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        let mut older: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("kubectl.1.")))
            .collect();
        older.sort();
        all.extend(older);
    }
    all
}

#[test]
fn every_kubectl_version_creates_applies_and_explains() {
    let vk = start();
    let kubectls = every_kubectl();
    assert!(kubectls.len() >= 2, "expected kubectl and older versions beside it: {kubectls:?}");
    for (i, kubectl) in kubectls.iter().enumerate() {
        let attempt = |args: &[&str], stdin: Option<&str>| {
            let mut child = Command::new(kubectl)
                .args(args)
                .env("KUBECONFIG", &vk.kubeconfig)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("kubectl");
            if let Some(input) = stdin {
                use std::io::Write;
                child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("stdin");
            }
            drop(child.stdin.take());
            let out = child.wait_with_output().expect("output");
            (
                out.status.success(),
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            )
        };
        let run = |args: &[&str], stdin: Option<&str>| {
            let (ok, text) = attempt(args, stdin);
            assert!(ok, "{} {args:?}: {text}", kubectl.display());
            text
        };
        let name = format!("web{i}");
        let manifest = DEPLOYMENT.replace("name: web\n", &format!("name: {name}\n"));
        assert!(run(&["create", "-f", "-"], Some(&manifest)).contains("created"));
        run(&["apply", "-f", "-"], Some(&manifest));
        let changed = manifest.replace("replicas: 2", "replicas: 3");
        assert!(run(&["apply", "-f", "-"], Some(&changed)).contains("configured"));
        assert!(
            run(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&manifest))
                .contains("serverside-applied")
        );
        assert!(
            run(&["create", "--dry-run=server", "-f", "-"], Some(&manifest.replace(&name, &format!("{name}-dry"))))
                .contains("created (server dry run)")
        );
        let explain = run(&["explain", "deployment.spec.replicas"], None);
        assert!(explain.contains("replicas") && explain.contains("integer"), "{}: {explain}", kubectl.display());
        let explain = run(&["explain", "pods.spec.containers.image"], None);
        assert!(explain.contains("string"), "{}: {explain}", kubectl.display());
        assert_eq!(
            run(&["get", "deploy", &name, "-o", "jsonpath={.spec.replicas}"], None),
            "2",
            "{}",
            kubectl.display()
        );
        // Client-side validation (older kubectl) and server-side validation refuse a
        // misspelt field either way.
        let bad = manifest.replace("replicas: 2", "replicaz: 2").replace(&name, &format!("{name}-bad"));
        let (ok, err) = attempt(&["create", "-f", "-"], Some(&bad));
        assert!(!ok && err.contains("replicaz"), "{}: {err}", kubectl.display());
    }
}

#[test]
fn discovery_explain_and_api_resources() {
    let vk = start();
    let res = vk.ok(&["api-resources"]);
    for needle in ["deployments", "customresourcedefinitions", "poddisruptionbudgets", "leases", "endpointslices"] {
        assert!(res.contains(needle), "{needle} missing from {res}");
    }
    let explain = vk.ok(&["explain", "deployment.spec.replicas"]);
    assert!(explain.contains("FIELD: replicas <integer>"), "{explain}");
    let explain = vk.ok(&["explain", "pods.spec.containers"]);
    assert!(explain.contains("image"), "{explain}");
    assert!(vk.ok(&["version", "-o", "json"]).contains("serverVersion"));
}

#[test]
fn errors_come_back_as_status() {
    let vk = start();
    // 422 with the field.
    let bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec: {containers: []}\n";
    let (ok, _, err) = vk.apply(&["create", "-f", "-"], bad);
    assert!(!ok && err.contains("is invalid: spec.containers: Required value"), "{err}");
    // Unknown fields: rejected by kubectl's default strict validation, warned with Warn.
    let unknown = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: u}\nbogus: 1\n";
    let (ok, _, err) = vk.apply(&["create", "-f", "-"], unknown);
    assert!(!ok && err.contains("unknown field \"bogus\""), "{err}");
    let (ok, _, err) = vk.apply(&["create", "--validate=warn", "-f", "-"], unknown);
    assert!(ok && err.contains("unknown field \"bogus\""), "{err}");
    // Malformed JSON: 400 with the parser's message.
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("bad.json");
    std::fs::write(&f, "{not json").expect("write");
    let (ok, _, err) =
        vk.kubectl(&["create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", f.to_str().unwrap_or_default()]);
    assert!(!ok && err.contains("json parse error"), "{err}");
    // Over 3 MiB: 413.
    let big = dir.path().join("big.json");
    std::fs::write(&big, format!("{{\"data\":\"{}\"}}", "x".repeat(3 * 1024 * 1024 + 10))).expect("write");
    let (ok, _, err) = vk.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        big.to_str().unwrap_or_default(),
    ]);
    assert!(!ok && err.contains("Request entity too large"), "{err}");
    // Without credentials: 401.
    let admin = std::fs::read_to_string(&vk.kubeconfig).expect("kubeconfig");
    let cluster: String = admin.lines().take_while(|l| !l.starts_with("users:")).collect::<Vec<_>>().join("\n");
    let anonymous = format!(
        "{cluster}\nusers:\n- name: vkube\n  user:\n    token: wrong\ncontexts:\n- name: vkube\n  context: {{cluster: vkube, user: vkube}}\ncurrent-context: vkube\n"
    );
    let anon_path = dir.path().join("anon.kubeconfig");
    std::fs::write(&anon_path, anonymous).expect("write");
    let (ok, _, err) = vk.kubectl(&["get", "pods", "--kubeconfig", anon_path.to_str().unwrap_or_default()]);
    assert!(!ok && (err.contains("Unauthorized") || err.contains("must be logged in")), "{err}");
    // Conflicting resourceVersion: 409.
    vk.apply(&["create", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n");
    let stale = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, resourceVersion: \"1\"}\ndata: {x: z}\n";
    let (ok, _, err) = vk.apply(&["replace", "-f", "-"], stale);
    assert!(!ok && err.contains("the object has been modified"), "{err}");
}

#[test]
fn get_watch_prints_changes() {
    let vk = start();
    let mut watch = Command::new("kubectl")
        .args(["get", "configmaps", "-w", "--request-timeout=20s"])
        .env("KUBECONFIG", &vk.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl -w");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Keep creating until the watch has reported one (it may start after the first).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = false;
    let mut i = 0;
    while !seen && Instant::now() < deadline {
        let (ok, _, err) = vk.apply(
            &["create", "-f", "-"],
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: watched-{i}}}\n"),
        );
        assert!(ok, "{err}");
        i += 1;
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            if line.starts_with("watched-") {
                seen = true;
            }
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen, "kubectl get -w printed no change");
}

#[test]
fn restart_resumes_with_objects_and_certificates() {
    let vk = start();
    vk.apply(&["create", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\ndata: {k: v}\n");
    let ca_before = std::fs::read_to_string(vk.dir.path().join("pki/ca.crt")).expect("ca");
    let dir = vk.stop();
    let vk = start_in(dir);
    assert_eq!(vk.ok(&["get", "cm", "keep", "-o", "jsonpath={.data.k}"]), "v");
    let ca_after = std::fs::read_to_string(vk.dir.path().join("pki/ca.crt")).expect("ca");
    assert_eq!(ca_before, ca_after, "same CA after restart");
}

#[test]
fn deleting_a_namespace_keeps_track_of_its_objects() {
    let vk = start();
    let m = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: team}\n";
    let (ok, _, err) = vk.apply(&["create", "-f", "-"], m);
    assert!(ok, "{err}");
    vk.ok(&["delete", "namespace", "team", "--wait=false"]);
    assert!(vk.ok(&["get", "ns", "team"]).contains("Terminating"));
    assert!(vk.ok(&["get", "cm", "-n", "team"]).contains("c "), "objects stay listed while terminating");
    let (ok, _, err) =
        vk.apply(&["create", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d, namespace: team}\n");
    assert!(!ok && err.contains("because it is being terminated"), "{err}");
}

#[test]
fn typed_client_commands_send_protobuf_and_work() {
    let vk = start();
    vk.ok(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=3"]);
    assert_eq!(
        vk.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.restartPolicy} {.spec.strategy.rollingUpdate.maxSurge}"
        ]),
        "3 Always 25%"
    );
    vk.ok(&["create", "configmap", "cm", "--from-literal=a=b"]);
    vk.ok(&["create", "secret", "generic", "s", "--from-literal=pw=x"]);
    assert_eq!(vk.ok(&["get", "secret", "s", "-o", "jsonpath={.data.pw}"]), "eA==");
    vk.ok(&["create", "job", "j", "--image=busybox", "--", "echo", "hi"]);
    assert!(vk.ok(&["get", "job", "j", "-o", "jsonpath={.spec.selector.matchLabels}"]).contains("controller-uid"));
    vk.ok(&["scale", "deploy", "web", "--replicas=0"]);
    assert_eq!(vk.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "0");
    vk.ok(&["expose", "deploy", "web", "--port=80"]);
    let svc = vk.ok(&["get", "svc", "web", "-o", "wide"]);
    assert!(svc.contains("app=web") && svc.contains("80/TCP"), "{svc}");
    vk.ok(&["set", "image", "deploy/web", "nginx=nginx:1.26"]);
    assert_eq!(vk.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"]), "3");
}

#[test]
fn service_ip_range_is_configurable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vk = common::start_role(dir, &["apiserver", "--service-cluster-ip-range", "10.200.0.0/24"], "admin.kubeconfig");
    assert_eq!(vk.ok(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]), "10.200.0.1");
    vk.ok(&["create", "service", "clusterip", "s", "--tcp=80:80"]);
    assert!(vk.ok(&["get", "svc", "s", "-o", "jsonpath={.spec.clusterIP}"]).starts_with("10.200.0."));
}

#[test]
fn the_official_python_client_works() {
    let vk = start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/client.py");
    // scripts/test provides an interpreter with the client installed.
    let python = std::env::var("VKUBE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python).arg(script).arg(&vk.kubeconfig).output().expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("python client ok"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn oversized_bodies_get_413_and_a_clean_close_under_load() {
    let vk = start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/big_bodies.py");
    let python = std::env::var("VKUBE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python).arg(script).arg(&vk.kubeconfig).output().expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("big bodies ok"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // curl, over HTTP/1.1 and HTTP/2: the Status arrives, the transfer ends cleanly.
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("big.json");
    let payload = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"k\":\"{}\"}}}}",
        "x".repeat(16 * 1024 * 1024)
    );
    std::fs::write(&body, payload).expect("write body");
    let server = vk.ok(&["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    let pki = vk.dir.path().join("pki");
    for version in ["--http1.1", "--http2"] {
        let out = Command::new("curl")
            .args(["-sS", version, "--cacert"])
            .arg(pki.join("ca.crt"))
            .arg("--cert")
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"))
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", body.display()))
            .args(["-w", "\n%{http_code}", &format!("{server}/api/v1/namespaces/default/configmaps")])
            .output()
            .expect("curl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "curl {version}: {}{stdout}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.ends_with("\n413") && stdout.contains("RequestEntityTooLarge"), "curl {version}: {stdout}");
    }
}

#[test]
fn kubectl_create_token_and_auth_whoami() {
    let vk = start();
    assert_eq!(vk.ok(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]), "vkube-admin");
    vk.ok(&["create", "serviceaccount", "builder"]);
    let token = vk.ok(&["create", "token", "builder", "--duration=15m"]);
    let server = vk.ok(&["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    // Only the token (no client certificate): the request is the service account's.
    let out = Command::new("kubectl")
        .args(["--server", &server, "--insecure-skip-tls-verify", "--token", token.trim(), "auth", "whoami"])
        .args(["-o", "jsonpath={.status.userInfo.username}"])
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("kubectl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "system:serviceaccount:default:builder");
    let (ok, _, err) = vk.kubectl(&["create", "token", "builder", "--duration=1m"]);
    assert!(!ok && err.contains("may not specify a duration less than 10 minutes"), "{err}");
    let (ok, _, err) = vk.kubectl(&["create", "token", "nobody"]);
    assert!(!ok && err.contains("serviceaccounts \"nobody\" not found"), "{err}");
}
