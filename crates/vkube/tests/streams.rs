//! `kubectl exec`, `cp` and `logs` in a virtual cluster (`vkube up`): the virtual API
//! server passes the upgraded connection to the host pod's `exec` through the host API,
//! and the simulated host runs the command as a local process (`--exec-local`); logs
//! are the host pod's, with kubectl's options, followed until the pod ends.

#[macro_use]
mod common;
use common::tier::{Env, Tier};
use common::*;

fn running_pod(vk: &Vkube, name: &str) {
    vk.ok(&["run", name, "--image=busybox", "--env=GREETING=hello"]);
    vk.ok(&["wait", "--for=condition=Ready", &format!("pod/{name}"), "--timeout=60s"]);
}

fn kubectl_exec_and_cp_reach_the_host_pod_with_stdin_and_exit_codes(tier: Tier) {
    let vk = Env::start(tier, None);
    running_pod(&vk, "box");

    let (code, out, err) = vk.kubectl_exit(
        &["exec", "box", "--", "sh", "-c", "echo \"$GREETING from $HOSTNAME\"; echo oops >&2; exit 3"],
        None,
    );
    assert_eq!(code, Some(3), "kubectl exec's exit code is the command's: {err}");
    assert_eq!(out, "hello from box\n");
    assert!(err.contains("oops"), "stderr reaches kubectl's stderr: {err}");

    let (code, out, err) = vk.kubectl_exit(&["exec", "-i", "box", "--", "cat"], Some("line one\nline two\n"));
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "line one\nline two\n"),
        "stdin reaches the command, and its end ends it: {err}"
    );

    // exec -it: kubectl on a terminal (script gives it one) and the command on its own.
    let kubeconfig = vk.kubeconfig.to_string_lossy().into_owned();
    let tty = std::process::Command::new("script")
        .args(["-qec", "kubectl exec -it box -- sh -c 'test -t 0 && echo on-a-terminal; exit 5'", "/dev/null"])
        .env("KUBECONFIG", &kubeconfig)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux)");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(shown.contains("on-a-terminal"), "{shown}");
    assert_eq!(tty.status.code(), Some(5), "{shown}");

    // kubectl cp both ways (tar through exec), relative to the container's work directory.
    let local = vk.dir.path().join("upload.txt");
    std::fs::write(&local, "copied through exec\n").expect("write");
    let local_arg = local.to_string_lossy().into_owned();
    vk.ok(&["cp", &local_arg, "box:upload.txt"]);
    assert_eq!(vk.ok(&["exec", "box", "--", "cat", "upload.txt"]), "copied through exec\n");
    let back = vk.dir.path().join("download.txt");
    vk.ok(&["cp", "box:upload.txt", &back.to_string_lossy()]);
    assert_eq!(std::fs::read_to_string(&back).expect("downloaded"), "copied through exec\n");

    // Authorization: `get` on pods/exec is not enough, a WebSocket exec needs `create`.
    vk.ok(&["create", "role", "exec-get", "--verb=get", "--resource=pods,pods/exec"]);
    vk.ok(&["create", "rolebinding", "exec-get", "--role=exec-get", "--user=alice"]);
    let (code, _, err) =
        vk.kubectl_exit(&["--as=alice", "exec", "box", "--", "sh", "-c", "touch alice-was-here"], None);
    assert_ne!(code, Some(0));
    assert!(err.contains("User \"alice\" cannot create resource \"pods/exec\""), "{err}");
    let (_, listing, _) = vk.kubectl_exit(&["exec", "box", "--", "ls"], None);
    assert!(!listing.contains("alice-was-here"), "the refused command did not run: {listing}");
    vk.ok(&["create", "role", "exec-create", "--verb=create", "--resource=pods/exec"]);
    vk.ok(&["create", "rolebinding", "exec-create", "--role=exec-create", "--user=alice"]);
    let (code, out, err) = vk.kubectl_exit(&["--as=alice", "exec", "box", "--", "echo", "allowed"], None);
    assert_eq!((code, out.as_str()), (Some(0), "allowed\n"), "{err}");
}

#[test]
fn kubectl_exec_on_a_host_without_local_exec_says_why_it_cannot() {
    let vk = start_up_in(tempfile::tempdir().expect("tempdir"), &[]);
    running_pod(&vk, "box");
    let (code, out, err) = vk.kubectl_exit(&["exec", "box", "--", "echo", "never"], None);
    assert_ne!(code, Some(0));
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("simulated node") && err.contains("--exec-local"), "{err}");
}

fn kubectl_logs_follows_the_host_pod_until_it_ends_with_kubectls_options(tier: Tier) {
    let vk = Env::start(tier, None);
    vk.ok(&[
        "run",
        "job",
        "--image=busybox",
        "--restart=Never",
        "--annotations=vkube.dev/run-seconds=6",
        "--",
        "echo",
        "hi",
    ]);
    vk.ok(&["wait", "--for=condition=Ready", "pod/job", "--timeout=60s"]);
    assert_eq!(vk.ok(&["get", "pod", "job", "-o", "jsonpath={.status.phase}"]), "Running");
    // Started while the pod runs: the exit line can only come by following.
    let followed = vk.ok(&["logs", "-f", "job"]);
    assert!(followed.contains("container job is running"), "{followed}");
    assert!(followed.trim_end().ends_with("container job exited (Succeeded)"), "{followed}");
    assert_eq!(vk.ok(&["get", "pod", "job", "-o", "jsonpath={.status.phase}"]), "Succeeded");

    let tail = vk.ok(&["logs", "job", "--tail=1"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let stamped = vk.ok(&["logs", "job", "--tail=1", "--timestamps"]);
    let stamp = stamped.split_whitespace().next().unwrap_or_default();
    assert!(stamp.len() >= 20 && stamp.ends_with('Z') && stamp.contains('T'), "an RFC 3339 time first: {stamped}");
    assert!(stamped.ends_with(&tail), "the same line after its time: {stamped} / {tail}");
    let (ok, _, err) = vk.kubectl(&["logs", "job", "--previous"]);
    assert!(!ok && err.contains("previous terminated container \"job\" in pod"), "{err}");
    let (ok, _, err) = vk.kubectl(&["get", "--raw", "/api/v1/namespaces/default/pods/job/log?tailLines=-1"]);
    assert!(
        !ok && err.contains(
            "PodLogOptions \"job\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        ),
        "{err}"
    );

    let two = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}, {"name": "side", "image": "busybox"}]}}"#;
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], two);
    assert!(ok, "{err}");
    vk.ok(&["wait", "--for=condition=Ready", "pod/two", "--timeout=60s"]);
    let side = vk.ok(&["logs", "two", "-c", "side"]);
    assert!(side.contains("container side is running") && !side.contains("container app"), "{side}");
    let all = vk.ok(&["logs", "two", "--all-containers"]);
    assert!(all.contains("container app is running") && all.contains("container side is running"), "{all}");
}

/// A TCP echo server on a free loopback port: what a forwarded port reaches.
fn echo_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut reader = conn.try_clone().expect("clone");
                let _ = std::io::copy(&mut reader, &mut conn);
            });
        }
    });
    port
}

/// Run `kubectl port-forward` (WebSocket-tunnelled unless `spdy`), connect through it,
/// and return what came back for `payload`.
fn through_port_forward(vk: &Vkube, pod: &str, port: u16, spdy: bool, payload: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::{BufRead, Read, Write};
    let mut child = std::process::Command::new("kubectl")
        .args(["port-forward", pod, &format!(":{port}")])
        .env("KUBECONFIG", &vk.kubeconfig)
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", if spdy { "false" } else { "true" })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let _ = stdout.read_line(&mut line);
    // Keep reading: kubectl reports each connection there, and dies on a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    // "Forwarding from 127.0.0.1:NNNN -> PORT"
    let local = line.split("127.0.0.1:").nth(1).and_then(|r| r.split_whitespace().next()).map(String::from);
    let result = (|| -> Result<Vec<u8>, String> {
        let local = local.ok_or_else(|| format!("kubectl printed {line:?}"))?;
        let mut conn = std::net::TcpStream::connect(format!("127.0.0.1:{local}")).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).map_err(|e| e.to_string())?;
        conn.write_all(payload).map_err(|e| e.to_string())?;
        let mut back = vec![0u8; payload.len()];
        conn.read_exact(&mut back).map_err(|e| e.to_string())?;
        Ok(back)
    })();
    let _ = child.kill();
    let out = child.wait_with_output().expect("port-forward output");
    result.map_err(|e| format!("{e}; kubectl: {}", String::from_utf8_lossy(&out.stderr)))
}

fn kubectl_port_forward_and_spdy_exec_reach_the_host_pod(tier: Tier) {
    let vk = Env::start(tier, None);
    let port = echo_server();
    let pod = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "web"}},
            "spec": {{"containers": [{{"name": "web", "image": "nginx", "ports": [{{"containerPort": {port}}}]}}]}}}}"#
    );
    let (ok, _, err) = vk.apply(&["apply", "-f", "-"], &pod);
    assert!(ok, "{err}");
    vk.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=60s"]);

    // kubectl ≥ 1.31 tunnels SPDY through a WebSocket; older ones speak SPDY itself.
    let payload = b"through the virtual cluster and back\n";
    assert_eq!(through_port_forward(&vk, "pod/web", port, false, payload).as_deref(), Ok(&payload[..]));
    assert_eq!(through_port_forward(&vk, "pod/web", port, true, payload).as_deref(), Ok(&payload[..]));
    // A port the pod does not declare is not forwarded, with the reason.
    let undeclared = echo_server();
    let refused = through_port_forward(&vk, "pod/web", undeclared, false, b"x");
    assert!(refused.as_ref().is_err_and(|e| e.contains("declares no container port")), "{refused:?}");

    // exec over SPDY (clients before WebSockets): output, stdin and the exit code.
    let spdy = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = std::process::Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &vk.kubeconfig)
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("stdin");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("kubectl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = spdy(&["exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 4"], None);
    assert_eq!((code, out.as_str()), (Some(4), "out\n"), "{err}");
    assert!(err.contains("err"), "{err}");
    let (code, out, err) = spdy(&["exec", "-i", "web", "--", "cat"], Some("over spdy\n"));
    assert_eq!((code, out.as_str()), (Some(0), "over spdy\n"), "{err}");
}

/// `kubectl debug`: an ephemeral container through `pods/ephemeralcontainers`, on the
/// host pod too, running there, and one can exec into it; kube-apiserver's rules for it.
fn kubectl_debug_adds_an_ephemeral_container_that_runs_on_the_host_pod(tier: Tier) {
    let vk = Env::start(tier, None);
    running_pod(&vk, "app");
    vk.ok(&["debug", "app", "--image=busybox", "--container=dbg", "--", "sleep", "1000"]);
    vk.wait_for(
        &["get", "pod", "app", "-o", "jsonpath={.status.ephemeralContainerStatuses[0].state.running.startedAt}"],
        30,
        |o| !o.is_empty(),
    );
    let host = vk.host_ok(&[
        "get",
        "pods",
        "-n",
        "vkube-vc",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.ephemeralContainers[*].name} {end}",
    ]);
    assert!(host.contains("app-x-default-x-vc=dbg"), "{host}");
    let (code, out, err) = vk.kubectl_exit(&["exec", "app", "-c", "dbg", "--", "echo", "debugging"], None);
    assert_eq!((code, out.as_str()), (Some(0), "debugging\n"), "{err}");
    // As kube-apiserver: not through a plain update, not changed or removed once there.
    for (args, message) in [
        (
            vec![
                "patch",
                "pod",
                "app",
                "--type=strategic",
                "-p",
                r#"{"spec":{"ephemeralContainers":[{"name":"direct","image":"busybox"}]}}"#,
            ],
            "spec: Forbidden: pod updates may not change fields other than",
        ),
        (
            vec![
                "patch",
                "pod",
                "app",
                "--subresource=ephemeralcontainers",
                "--type=json",
                "-p",
                r#"[{"op":"remove","path":"/spec/ephemeralContainers/0"}]"#,
            ],
            "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be removed",
        ),
        (
            vec![
                "patch",
                "pod",
                "app",
                "--subresource=ephemeralcontainers",
                "--type=strategic",
                "-p",
                r#"{"spec":{"ephemeralContainers":[{"name":"dbg","image":"alpine"}]}}"#,
            ],
            "existing ephemeral containers \"dbg\" may not be changed",
        ),
        (
            vec![
                "patch",
                "pod",
                "app",
                "--subresource=ephemeralcontainers",
                "--type=strategic",
                "-p",
                r#"{"spec":{"ephemeralContainers":[{"name":"app","image":"busybox"}]}}"#,
            ],
            // The new item first, as kube-apiserver's strategic merge orders it (and so
            // its message reads, checked against kube-apiserver 1.36).
            "spec.ephemeralContainers[0].name: Duplicate value: \"app\"",
        ),
        (
            vec![
                "patch",
                "pod",
                "app",
                "--subresource=ephemeralcontainers",
                "--type=strategic",
                "-p",
                r#"{"spec":{"ephemeralContainers":[{"name":"p","image":"busybox","ports":[{"containerPort":80}]}]}}"#,
            ],
            "spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container",
        ),
    ] {
        let (ok, _, err) = vk.kubectl(&args);
        assert!(!ok && err.contains(message), "{args:?}: {err}");
    }
    assert_eq!(vk.ok(&["get", "pod", "app", "-o", "jsonpath={.spec.ephemeralContainers[*].name}"]), "dbg");
    let with = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "withe"},
        "spec": {"containers": [{"name": "a", "image": "nginx"}], "ephemeralContainers": [{"name": "e", "image": "busybox"}]}}"#;
    let (ok, _, err) = vk.apply(&["create", "-f", "-"], with);
    assert!(!ok && err.contains("spec.ephemeralContainers: Forbidden: cannot be set on create"), "{err}");
}

on_both_hosts!(
    kubectl_debug_adds_an_ephemeral_container_that_runs_on_the_host_pod,
    kubectl_exec_and_cp_reach_the_host_pod_with_stdin_and_exit_codes,
    kubectl_logs_follows_the_host_pod_until_it_ends_with_kubectls_options,
    kubectl_port_forward_and_spdy_exec_reach_the_host_pod,
);
