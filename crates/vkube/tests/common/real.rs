//! A real Kubernetes control plane (`../shared/bin/real-cluster`: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler v1.36) for the real-host tier, with
//! `vkube nodes` as its nodes. Each test starts its own on free loopback ports, in its
//! own directory, and stops it when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `real-cluster`: `$VKUBE_REAL_CLUSTER`, or the workplace's `../shared/bin`.
pub fn real_cluster_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VKUBE_REAL_CLUSTER") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bin/real-cluster")
}

pub struct RealCluster {
    pub dir: tempfile::TempDir,
    /// cluster-admin.
    pub kubeconfig: PathBuf,
    nodes: Vec<Child>,
    /// kube-apiservers started again after an outage (real-cluster stop ends them).
    restarted: std::sync::Mutex<Vec<Child>>,
}

impl RealCluster {
    /// Start a control plane (kube-apiserver calls the nodes' kubelet API with the admin
    /// certificate, as `--kubelet-client-certificate`).
    pub fn start() -> RealCluster {
        let bin = real_cluster_bin();
        assert!(
            bin.exists(),
            "{} is missing: the real-host tier needs the real Kubernetes binaries of ../shared/bin (or set VKUBE_REAL_CLUSTER)",
            bin.display()
        );
        let dir = tempfile::Builder::new().prefix("vkube-real-").tempdir().expect("tempdir");
        let p = dir.path().join("pki");
        let flags = format!(
            "--kubelet-client-certificate={} --kubelet-client-key={}",
            p.join("admin.crt").display(),
            p.join("admin.key").display()
        );
        let out = Command::new(&bin)
            .arg("start")
            .arg(dir.path())
            .env("EXTRA_APISERVER_FLAGS", flags)
            .output()
            .expect("run real-cluster");
        assert!(
            out.status.success(),
            "real-cluster start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let cluster = RealCluster { dir, kubeconfig, nodes: Vec::new(), restarted: Default::default() };
        // Default service account and OpenAPI come a moment after /readyz.
        cluster.wait_for(&["get", "serviceaccount", "default", "-o", "name"], 60, |o| !o.trim().is_empty());
        cluster
    }

    pub fn ca(&self) -> (PathBuf, PathBuf) {
        (self.dir.path().join("pki/ca.crt"), self.dir.path().join("pki/ca.key"))
    }

    /// A kubeconfig with the cluster only (server and CA), no user at all.
    pub fn anonymous_kubeconfig(&self) -> PathBuf {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("admin kubeconfig");
        let server = text.lines().find_map(|l| l.trim().strip_prefix("server: ")).expect("server").to_string();
        let path = self.dir.path().join("cluster-only.kubeconfig");
        let kc = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: nobody\n  user: {{}}\ncontexts:\n- name: real\n  context: {{cluster: real, user: nobody}}\ncurrent-context: real\n",
            self.ca().0.display()
        );
        std::fs::write(&path, kc).expect("write kubeconfig");
        path
    }

    /// Join `count` simulated nodes named PREFIX1.. with kubelet credentials (and no
    /// other identity: their kubeconfig has the cluster only); wait until they are Ready.
    pub fn add_nodes(&mut self, prefix: &str, count: usize, labels: &str) {
        self.add_nodes_with(prefix, count, labels, &[]);
    }

    /// [`RealCluster::add_nodes`] with more `vkube nodes` arguments.
    pub fn add_nodes_with(&mut self, prefix: &str, count: usize, labels: &str, extra: &[&str]) {
        let (cert, key) = self.ca();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vkube"));
        cmd.args(["nodes", "--count", &count.to_string(), "--prefix", prefix])
            .arg("--kubeconfig")
            .arg(self.anonymous_kubeconfig())
            .arg("--node-ca-cert")
            .arg(cert)
            .arg("--node-ca-key")
            .arg(key);
        if !labels.is_empty() {
            cmd.args(["--labels", labels]);
        }
        cmd.args(extra);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn vkube nodes");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("vkube nodes printed nothing");
        assert!(line.contains("ready"), "vkube nodes: {line}");
        self.nodes.push(child);
        self.wait_for(&["get", "nodes", "--no-headers"], 30, |o| {
            o.lines().filter(|l| l.starts_with(prefix) && l.split_whitespace().nth(1) == Some("Ready")).count() == count
        });
    }

    /// Stop the node groups started so far (the Node objects stay, as when kubelets stop).
    pub fn stop_nodes(&mut self) {
        for n in &mut self.nodes {
            let _ = n.kill();
            let _ = n.wait();
        }
        self.nodes.clear();
    }

    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("kubectl").args(args).env("KUBECONFIG", &self.kubeconfig).output().expect("kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args);
        assert!(ok, "real kubectl {args:?}: {err}{out}");
        out
    }

    pub fn wait_for(&self, args: &[&str], secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, out, err) = self.kubectl(args);
            if pred(&out) {
                return out;
            }
            assert!(Instant::now() < deadline, "timed out waiting on real kubectl {args:?}: {out}{err}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The kube-apiserver's PID and command line.
    fn apiserver(&self) -> (u32, Vec<String>) {
        let pids = std::fs::read_to_string(self.dir.path().join("pids")).expect("pids");
        let pid: u32 = pids
            .lines()
            .filter_map(|l| l.strip_prefix("kube-apiserver "))
            .next_back()
            .and_then(|p| p.trim().parse().ok())
            .expect("kube-apiserver pid");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        let argv =
            cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned());
        (pid, argv.collect())
    }

    /// Stop kube-apiserver (SIGKILL); the returned command line restarts it.
    pub fn stop_apiserver(&self) -> Vec<String> {
        let (pid, argv) = self.apiserver();
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        argv
    }

    /// Start kube-apiserver again with `argv` and wait until it answers.
    pub fn start_apiserver(&self, argv: &[String]) {
        let log = std::fs::File::create(self.dir.path().join("logs/kube-apiserver-restarted.log")).expect("log");
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("restart kube-apiserver");
        let mut pids = std::fs::OpenOptions::new().append(true).open(self.dir.path().join("pids")).expect("pids");
        std::io::Write::write_all(&mut pids, format!("kube-apiserver {}\n", child.id()).as_bytes()).expect("pids");
        self.restarted.lock().unwrap_or_else(|e| e.into_inner()).push(child);
        self.wait_for(&["get", "--raw", "/readyz"], 60, |o| o.trim() == "ok");
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.kill();
            let _ = n.wait();
        }
        let _ = Command::new(real_cluster_bin()).arg("stop").arg(self.dir.path()).stdout(Stdio::null()).status();
        for c in self.restarted.get_mut().unwrap_or_else(|e| e.into_inner()).iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
