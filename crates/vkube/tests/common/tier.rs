//! The two host tiers the virtual-cluster tests run on, with the same test bodies:
//! - simulated: `vkube host` (our API server, scheduler, controllers, simulated nodes);
//! - real: a real v1.36 control plane (`real-cluster`) with `vkube nodes`, and the
//!   syncer holding only the least-privilege ServiceAccount of `vkube host-rbac`.
//!
//! Either way the virtual cluster is a `vkube serve` process named `vc` in host
//! namespace `vkube-vc` (unless named otherwise), and the host has nodes node-1..3,
//! which run exec commands as local processes (`--exec-local`).

use super::real::RealCluster;
use super::{Vkube, start_role};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Simulated,
    Real,
}

enum Host {
    Simulated { server: Option<Vkube>, port: u16 },
    Real(RealCluster),
}

/// A host cluster of either tier.
pub struct HostCluster {
    host: Host,
    /// The host admin's kubeconfig.
    pub kubeconfig: PathBuf,
    pub tier: Tier,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

fn start_sim_host(dir: tempfile::TempDir, port: u16) -> Vkube {
    let listen = format!("127.0.0.1:{port}");
    start_role(dir, &["host", "--nodes", "3", "--listen", &listen, "--exec-local"], "host.kubeconfig")
}

impl HostCluster {
    pub fn start(tier: Tier) -> HostCluster {
        match tier {
            Tier::Simulated => {
                // A fixed port, so that a host restarted after an outage is where the
                // virtual clusters' kubeconfigs point.
                let port = free_port();
                let server = start_sim_host(tempfile::tempdir().expect("tempdir"), port);
                let kubeconfig = server.kubeconfig.clone();
                HostCluster { host: Host::Simulated { server: Some(server), port }, kubeconfig, tier }
            }
            Tier::Real => {
                let mut real = RealCluster::start();
                let exec_dir = real.dir.path().join("exec");
                real.add_nodes_with("node-", 3, "", &["--exec-local", &exec_dir.to_string_lossy()]);
                let kubeconfig = real.kubeconfig.clone();
                HostCluster { host: Host::Real(real), kubeconfig, tier }
            }
        }
    }

    fn dir(&self) -> &Path {
        match &self.host {
            Host::Simulated { server, .. } => server.as_ref().expect("host running").dir.path(),
            Host::Real(r) => r.dir.path(),
        }
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        if let Some(input) = stdin {
            child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("stdin");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        self.kubectl_stdin(args, None)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args);
        assert!(ok, "host kubectl {args:?} ({:?}): {err}{out}", self.tier);
        out
    }

    /// The credentials a virtual cluster's syncer gets: on the simulated host its admin;
    /// on the real one a token of the ServiceAccount `vkube host-rbac` prints for
    /// `name`/`namespace`/`values`, with exactly its grants.
    pub fn syncer_kubeconfig(&self, name: &str, namespace: &str, values: Option<&Path>) -> PathBuf {
        if self.tier == Tier::Simulated {
            return self.kubeconfig.clone();
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vkube"));
        cmd.args(["host-rbac", "--name", name, "--namespace", namespace]);
        if let Some(v) = values {
            cmd.arg("-f").arg(v);
        }
        let out = cmd.output().expect("vkube host-rbac");
        assert!(out.status.success(), "vkube host-rbac: {}", String::from_utf8_lossy(&out.stderr));
        let manifests = String::from_utf8_lossy(&out.stdout).into_owned();
        let (ok, _, err) = self.kubectl_stdin(&["apply", "-f", "-"], Some(&manifests));
        assert!(ok, "applying host-rbac: {err}");
        let sa = format!("vc-{name}");
        let token = self.ok(&["create", "token", &sa, "-n", namespace, "--duration=24h"]);
        let text = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let server = text.lines().find_map(|l| l.trim().strip_prefix("server: ")).expect("server").to_string();
        let ca = self.dir().join("pki/ca.crt");
        let path = self.dir().join(format!("{name}-{namespace}-syncer.kubeconfig"));
        let kc = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: host\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: {sa}\n  user:\n    token: {}\ncontexts:\n- name: host\n  context: {{cluster: host, user: {sa}, namespace: {namespace}}}\ncurrent-context: host\n",
            ca.display(),
            token.trim()
        );
        std::fs::write(&path, kc).expect("write kubeconfig");
        path
    }

    /// Take the host's API away, run `during`, bring it back on the same address.
    pub fn outage(&mut self, during: impl FnOnce()) {
        match &mut self.host {
            Host::Simulated { server, port } => {
                let dir = server.take().expect("host running").stop();
                during();
                *server = Some(start_sim_host(dir, *port));
            }
            Host::Real(real) => {
                let argv = real.stop_apiserver();
                during();
                real.start_apiserver(&argv);
            }
        }
    }
}

/// A virtual cluster (`vkube serve`) on a host of either tier.
pub struct VirtualCluster {
    pub vc: Vkube,
    pub name: String,
    pub host_namespace: String,
    args: Vec<String>,
}

impl std::ops::Deref for VirtualCluster {
    type Target = Vkube;
    fn deref(&self) -> &Vkube {
        &self.vc
    }
}

impl VirtualCluster {
    /// `vkube serve --name NAME --host-namespace NS [-f values]` against `host`.
    pub fn start(host: &HostCluster, name: &str, namespace: &str, values: Option<&str>) -> VirtualCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let values_path = values.map(|v| {
            let p = dir.path().join("vcluster.yaml");
            std::fs::write(&p, v).expect("values");
            p
        });
        let kc = host.syncer_kubeconfig(name, namespace, values_path.as_deref());
        let mut args: Vec<String> = ["serve", "--name", name, "--host-namespace", namespace, "--host-kubeconfig"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(kc.display().to_string());
        if let Some(p) = &values_path {
            args.push("-f".into());
            args.push(p.display().to_string());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let vc = start_role(dir, &argv, &format!("{name}.kubeconfig"));
        VirtualCluster { vc, name: name.into(), host_namespace: namespace.into(), args }
    }

    /// kill -9 the virtual cluster and start it again on its data.
    pub fn kill9_and_restart(self) -> VirtualCluster {
        let VirtualCluster { vc, name, host_namespace, args } = self;
        let dir = vc.kill9();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let vc = start_role(dir, &argv, &format!("{name}.kubeconfig"));
        VirtualCluster { vc, name, host_namespace, args }
    }
}

/// A host and the virtual cluster `vc` on it, in host namespace `vkube-vc`.
pub struct Env {
    pub host: HostCluster,
    pub vc: VirtualCluster,
}

impl std::ops::Deref for Env {
    type Target = VirtualCluster;
    fn deref(&self) -> &VirtualCluster {
        &self.vc
    }
}

impl Env {
    pub fn start(tier: Tier, values: Option<&str>) -> Env {
        let host = HostCluster::start(tier);
        let vc = VirtualCluster::start(&host, "vc", "vkube-vc", values);
        Env { host, vc }
    }

    /// kubectl against the host as its admin; requires success.
    pub fn host_ok(&self, args: &[&str]) -> String {
        self.host.ok(args)
    }

    pub fn host_kubeconfig(&self) -> PathBuf {
        self.host.kubeconfig.clone()
    }

    pub fn kill9_and_restart(self) -> Env {
        let Env { host, vc } = self;
        Env { vc: vc.kill9_and_restart(), host }
    }
}

/// `#[test]`s running one body on both tiers: `mod NAME { simulated_host, real_host }`.
#[macro_export]
macro_rules! on_both_hosts {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn simulated_host() {
                super::$name($crate::common::tier::Tier::Simulated)
            }
            #[test]
            fn real_host() {
                super::$name($crate::common::tier::Tier::Real)
            }
        }
    )*};
}
