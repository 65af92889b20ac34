//! `kubectl exec` and `kubectl cp` in a virtual cluster (`vkube up`): the virtual API
//! server passes the upgraded connection to the host pod's `exec` through the host API,
//! and the simulated host runs the command as a local process (`--exec-local`).

mod common;
use common::*;

fn running_pod(vk: &Vkube, name: &str) {
    vk.ok(&["run", name, "--image=busybox", "--restart=Never", "--env=GREETING=hello"]);
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
