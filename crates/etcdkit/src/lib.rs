//! Throwaway etcd clusters for tests and benchmarks: members of Debian's `etcd` binary on
//! loopback ports, each with a temporary data directory, stopped when dropped.
//!
//! Start with [`EtcdCluster::start`]. Tests that only need *an* etcd use [`shared`]: the
//! cluster `scripts/test` started (its endpoints in `VKUBE_TEST_ETCD_ENDPOINTS`), or a
//! private one-member cluster when that is not set; and a key prefix of their own
//! ([`unique_prefix`]) so they never see each other's keys.

use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming a running cluster's client endpoints (comma-separated).
pub const ENDPOINTS_ENV: &str = "VKUBE_TEST_ETCD_ENDPOINTS";

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Plain-HTTP `/health`, whatever the client URLs require.
    metrics_port: u16,
    child: Option<Child>,
}

/// Serve clients over TLS and require client certificates signed by `ca`.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// CA that signed the clients' certificates.
    pub ca: PathBuf,
    /// The members' serving certificate (must name 127.0.0.1).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// A running etcd cluster of throwaway members.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
    initial_cluster: String,
    tls: Option<ServerTls>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The etcd binary: `$VKUBE_ETCD`, or `etcd` on the PATH.
fn etcd_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("VKUBE_ETCD") {
        return Ok(PathBuf::from(p));
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("etcd");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("etcd not found on the PATH: install Debian's etcd-server package (./scripts/test does)")
}

/// True when `GET /health` on the (plain HTTP) metrics port answers healthy.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

impl EtcdCluster {
    /// Start `members` members and wait until every one is healthy.
    ///
    /// # Errors
    /// No etcd binary, or a member that does not become healthy within 30 s.
    pub fn start(members: usize) -> anyhow::Result<Self> {
        Self::start_with(members, None)
    }

    /// Like [`EtcdCluster::start`], serving clients over TLS with client-certificate
    /// authentication when `tls` is given.
    ///
    /// # Errors
    /// As [`EtcdCluster::start`].
    pub fn start_with(members: usize, tls: Option<ServerTls>) -> anyhow::Result<Self> {
        // A free port is free when picked, not always when etcd binds it (a test beside
        // this one may take it meanwhile): start again on new ports then.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(members, tls.clone()) {
                Err(e) if attempt < 4 && e.to_string().contains("address already in use") => continue,
                other => return other,
            }
        }
    }

    fn start_once(members: usize, tls: Option<ServerTls>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("vkube-etcd-").tempdir()?;
        let mut ms = Vec::new();
        for i in 0..members.max(1) {
            ms.push(Member {
                name: format!("m{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                metrics_port: free_port()?,
                child: None,
            });
        }
        let initial_cluster =
            ms.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect::<Vec<_>>().join(",");
        let mut cluster = EtcdCluster { members: ms, dir, initial_cluster, tls };
        for i in 0..cluster.members.len() {
            cluster.spawn(i, "new")?;
        }
        cluster.wait_healthy(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize, state: &str) -> anyhow::Result<()> {
        let bin = etcd_binary()?;
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let metrics = format!("http://127.0.0.1:{}", m.metrics_port);
        let mut cmd = Command::new(bin);
        if let Some(tls) = &self.tls {
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key);
        }
        let child = cmd
            .args(["--name", &m.name, "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", state])
            .args(["--initial-cluster-token", "vkube-test", "--logger", "zap", "--log-level", "error"])
            .args(["--listen-metrics-urls", &metrics])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd")?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Wait until every running member answers healthy.
    ///
    /// # Errors
    /// A member still unhealthy at the deadline (its log is in the error).
    pub fn wait_healthy(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            while !healthy(self.members[i].metrics_port) {
                if let Some(Ok(Some(status))) = self.members[i].child.as_mut().map(Child::try_wait) {
                    bail!("etcd member {i} exited ({status}): {}", self.log(i));
                }
                if Instant::now() > deadline {
                    bail!("etcd member {i} not healthy after {within:?}: {}", self.log(i));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.members[i].name))).unwrap_or_default()
    }

    /// The process ids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(|m| m.child.as_ref().map(Child::id)).collect()
    }

    /// The client endpoints (`http://127.0.0.1:PORT`, or https with TLS), one per member.
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.members.iter().map(|m| format!("{scheme}://127.0.0.1:{}", m.client_port)).collect()
    }

    /// Kill member `i` with SIGKILL (its data stays, for [`EtcdCluster::restart`]).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members.get_mut(i).and_then(|m| m.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restart member `i` on its data and wait until it is healthy.
    ///
    /// # Errors
    /// As [`EtcdCluster::start`].
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i, "existing")?;
        self.wait_healthy(Duration::from_secs(30))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// An etcd for a test: the cluster named by `VKUBE_TEST_ETCD_ENDPOINTS` (no guard), or a
/// private one-member cluster (the guard stops it).
///
/// # Errors
/// No shared cluster and no etcd binary to start one.
pub fn shared() -> anyhow::Result<(Vec<String>, Option<EtcdCluster>)> {
    if let Ok(eps) = std::env::var(ENDPOINTS_ENV) {
        let eps: Vec<String> = eps.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect();
        if !eps.is_empty() {
            return Ok((eps, None));
        }
    }
    let c = EtcdCluster::start(1)?;
    Ok((c.endpoints(), Some(c)))
}

/// A key prefix no other test uses: `/vkube-test/TAG-PID-NANOS`.
pub fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("/vkube-test/{tag}-{}-{nanos}", std::process::id())
}
