//! `kubectl exec`, `cp` and `logs` in a virtual cluster (`vkube up`): the virtual API
//! server passes the upgraded connection to the host pod's `exec` through the host API,
//! and the simulated host runs the command as a local process (`--exec-local`); logs
//! are the host pod's, with kubectl's options, followed until the pod ends.

mod common;
use common::*;

fn running_pod(vk: &Vkube, name: &str) {
    vk.ok(&["run", name, "--image=busybox", "--env=GREETING=hello"]);
    vk.ok(&["wait", "--for=condition=Ready", &format!("pod/{name}"), "--timeout=60s"]);
}

#[test]
fn kubectl_exec_and_cp_reach_the_host_pod_with_stdin_and_exit_codes() {
    let vk = start_up_in(tempfile::tempdir().expect("tempdir"), &["--exec-local"]);
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

#[test]
fn kubectl_logs_follows_the_host_pod_until_it_ends_with_kubectls_options() {
    let vk = start_up_in(tempfile::tempdir().expect("tempdir"), &[]);
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
