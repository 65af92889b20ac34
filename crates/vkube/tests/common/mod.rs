//! Shared by the end-to-end tests: start the `vkube` binary, wait for its `ready` line,
//! run kubectl against it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Vkube {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

/// Start `vkube apiserver` on DIR.
pub fn start_in(dir: tempfile::TempDir) -> Vkube {
    start_role(dir, &["apiserver"], "admin.kubeconfig")
}

/// Start `vkube host` with N nodes on DIR.
pub fn start_host_in(dir: tempfile::TempDir, nodes: usize) -> Vkube {
    let n = nodes.to_string();
    start_role(dir, &["host", "--nodes", &n], "host.kubeconfig")
}

/// Start `vkube up` on DIR (host and virtual cluster `vc`); the kubeconfig is the
/// virtual cluster's.
pub fn start_up_in(dir: tempfile::TempDir, extra: &[&str]) -> Vkube {
    let mut args = vec!["up", "--nodes", "3"];
    args.extend_from_slice(extra);

    start_role_with(dir, &args, "vc/vc.kubeconfig", "--host-listen")
}

/// Start a role of the binary and wait for its ready line.
pub fn start_role(dir: tempfile::TempDir, args: &[&str], kubeconfig_name: &str) -> Vkube {
    start_role_with(dir, args, kubeconfig_name, "")
}

/// Start a role; `extra_listen` names a second listen flag to set to an ephemeral port.
pub fn start_role_with(dir: tempfile::TempDir, args: &[&str], kubeconfig_name: &str, extra_listen: &str) -> Vkube {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vkube"));
    cmd.args(args);
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    cmd.arg("--data-dir").arg(dir.path());
    if !extra_listen.is_empty() {
        cmd.args([extra_listen, "127.0.0.1:0"]);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn vkube");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("vkube printed nothing");
    assert!(line.contains("ready"), "unexpected first line: {line}");
    let kubeconfig = dir.path().join(kubeconfig_name);
    assert!(kubeconfig.exists(), "{} missing after: {line}", kubeconfig.display());
    Vkube { child, dir, kubeconfig }
}

/// Start `vkube apiserver` on a fresh directory.
pub fn start() -> Vkube {
    start_in(tempfile::tempdir().expect("tempdir"))
}

impl Vkube {
    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let (code, out, err) = self.kubectl_exit(args, stdin);
        (code == Some(0), out, err)
    }

    /// Run kubectl; its exit code (None if killed by a signal), stdout and stderr.
    pub fn kubectl_exit(&self, args: &[&str], stdin: Option<&str>) -> (Option<i32>, String, String) {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl");
        if let Some(input) = stdin {
            child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("kubectl output");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Run kubectl and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args);
        assert!(ok, "kubectl {args:?} failed: {err}{out}");
        out
    }

    pub fn apply(&self, args: &[&str], manifest: &str) -> (bool, String, String) {
        self.kubectl_stdin(args, Some(manifest))
    }

    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            assert!(Instant::now() < deadline, "vkube did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }
}

impl Drop for Vkube {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vkube {
    /// The host cluster's kubeconfig of a `vkube up`.
    pub fn host_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("host/host.kubeconfig")
    }

    /// kubectl against the host of a `vkube up`; requires success.
    pub fn host_ok(&self, args: &[&str]) -> String {
        let out =
            Command::new("kubectl").args(args).env("KUBECONFIG", self.host_kubeconfig()).output().expect("kubectl");
        assert!(out.status.success(), "host kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kill -9.
    pub fn kill9(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    /// Poll `kubectl args` until `pred(stdout)` holds, or panic after `secs`.
    pub fn wait_for(&self, args: &[&str], secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, out, err) = self.kubectl(args);
            if pred(&out) {
                return out;
            }
            assert!(Instant::now() < deadline, "timed out waiting on kubectl {args:?}: {out}{err}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Call `f` until it returns Some, or panic after `secs`.
pub fn retry<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub mod real;
pub mod tier;
