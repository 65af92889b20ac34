//! The `vkube` binary: a thin CLI over the crates. See `vkube --help`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

// jemalloc: the API server and controllers allocate and free many small JSON values;
// with a background thread returning freed pages after a second (.cargo/config.toml),
// RSS follows the live heap instead of a burst's high-water mark (BENCHMARKS.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod bench;
mod host;
mod load;
mod nodes;
mod podsecurity;
mod scale;
mod serve;

#[derive(Parser)]
#[command(name = "vkube", version, about = "Virtual Kubernetes clusters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// etcd flags, named as kube-apiserver names them.
#[derive(clap::Args, Debug, Clone, Default)]
struct EtcdArgs {
    /// etcd client endpoints, comma-separated (default: vcluster.yaml's
    /// controlPlane.backingStore.etcd.external, else the embedded SQLite store).
    /// Replicas of one virtual cluster on one etcd serve together (HA).
    #[arg(long = "etcd-servers", value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// Prefix of every key in etcd (default /vkube/NAME).
    #[arg(long)]
    etcd_prefix: Option<String>,
    /// CA file of the etcd members' certificates.
    #[arg(long)]
    etcd_cafile: Option<String>,
    /// Client certificate for etcd.
    #[arg(long)]
    etcd_certfile: Option<String>,
    /// Client certificate key for etcd.
    #[arg(long)]
    etcd_keyfile: Option<String>,
    /// Serve lists and watches on etcd from the watch cache (one etcd watch for all of
    /// them), as kube-apiserver's --watch-cache does.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    watch_cache: bool,
}

impl EtcdArgs {
    fn flags(self) -> serve::EtcdFlags {
        serve::EtcdFlags {
            endpoints: self.etcd_servers,
            prefix: self.etcd_prefix,
            tls: vkube_config::EtcdTls {
                ca_file: self.etcd_cafile,
                cert_file: self.etcd_certfile,
                key_file: self.etcd_keyfile,
            },
            watch_cache: self.watch_cache,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a Kubernetes API server over the embedded store (a development entry point).
    Apiserver {
        /// Data directory (state, certificates, kubeconfig).
        #[arg(long, default_value = ".vkube/apiserver")]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
        /// Static token file (token,user,uid,"groups").
        #[arg(long)]
        token_auth_file: Option<PathBuf>,
        /// Service cluster IP range (IPv4 CIDR).
        #[arg(long, default_value = "10.96.0.0/12")]
        service_cluster_ip_range: String,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Run a simulated host cluster: API server, scheduler, controllers and simulated nodes.
    Host {
        /// Data directory (state, certificates, host.kubeconfig).
        #[arg(long, default_value = ".vkube/host")]
        data_dir: PathBuf,
        /// Number of simulated nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
        /// Run `kubectl exec` commands as local processes on this machine, with this
        /// process's privileges (each pod's container gets a work directory under
        /// DATA_DIR/exec; it is no sandbox). Off: exec is refused, nodes run no containers.
        #[arg(long)]
        exec_local: bool,
    },
    /// Run one virtual cluster against a host cluster (any cluster, by kubeconfig).
    Serve {
        /// The host cluster's kubeconfig.
        #[arg(long, env = "VKUBE_HOST_KUBECONFIG")]
        host_kubeconfig: PathBuf,
        /// The virtual cluster's name.
        #[arg(long, default_value = "vc")]
        name: String,
        /// Data directory (state, certificates, NAME.kubeconfig).
        #[arg(long, default_value = ".vkube/vc")]
        data_dir: PathBuf,
        /// vcluster.yaml.
        #[arg(short = 'f', long = "values")]
        values: Option<PathBuf>,
        /// Host namespace for the synced objects (default vkube-NAME).
        #[arg(long)]
        host_namespace: Option<String>,
        /// Address of the virtual API server.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// The quickstart: a simulated host cluster and one virtual cluster, in one process.
    Up {
        /// Data directory (default: ~/.vkube, or ./.vkube without a home).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Simulated host nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// vcluster.yaml.
        #[arg(short = 'f', long = "values")]
        values: Option<PathBuf>,
        /// The virtual cluster's name.
        #[arg(long, default_value = "vc")]
        name: String,
        /// Address of the virtual API server.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Address of the host API server.
        #[arg(long, default_value = "127.0.0.1:0")]
        host_listen: SocketAddr,
        /// Run `kubectl exec` commands as local processes (see `vkube host --exec-local`).
        #[arg(long)]
        exec_local: bool,
    },
    /// Print the host RBAC a virtual cluster's syncer needs — a ServiceAccount, a Role in
    /// the host namespace, a ClusterRole only for what vcluster.yaml needs cluster-wide —
    /// as manifests for `kubectl apply -f -`. `vkube serve` with that ServiceAccount's
    /// token needs nothing more.
    HostRbac {
        /// The virtual cluster's name.
        #[arg(long, default_value = "vc")]
        name: String,
        /// Host namespace (default vkube-NAME).
        #[arg(long)]
        namespace: Option<String>,
        /// vcluster.yaml (what it syncs decides the grants).
        #[arg(short = 'f', long = "values")]
        values: Option<PathBuf>,
    },
    /// Remove every host object a virtual cluster created (and nothing else).
    Uninstall {
        /// The host cluster's kubeconfig.
        #[arg(long, env = "VKUBE_HOST_KUBECONFIG")]
        host_kubeconfig: PathBuf,
        /// The virtual cluster's name.
        #[arg(long, default_value = "vc")]
        name: String,
        /// Host namespace (default vkube-NAME).
        #[arg(long)]
        host_namespace: Option<String>,
    },
    /// Simulated nodes for any cluster (like KWOK): they register, heartbeat, and run
    /// the pods bound to them (Running with an IP from their pod CIDR). With the
    /// cluster's CA each node acts as a kubelet does, as `system:node:NAME`.
    Nodes {
        /// The cluster to join.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// How many nodes.
        #[arg(long, default_value_t = 3)]
        count: usize,
        /// Node names are PREFIX1, PREFIX2, ...
        #[arg(long, default_value = "node-")]
        prefix: String,
        /// Labels every node gets (k=v,k2=v2).
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// The cluster CA's certificate and key: each node then gets its own kubelet
        /// credentials (CN=system:node:NAME, O=system:nodes) instead of the kubeconfig's.
        #[arg(long, requires = "node_ca_key")]
        node_ca_cert: Option<PathBuf>,
        /// See --node-ca-cert.
        #[arg(long, requires = "node_ca_cert")]
        node_ca_key: Option<PathBuf>,
        /// The second octet of the nodes' pod CIDRs (10.N.I.0/24): give groups of nodes
        /// on one cluster different ones (default: from the prefix; 244 for node-).
        #[arg(long)]
        address_block: Option<u8>,
        /// Run `kubectl exec` commands as local processes and forward ports to this
        /// machine's loopback, with this process's privileges (work directories under
        /// DIR; it is no sandbox). Unset: exec and port-forward are refused.
        #[arg(long, value_name = "DIR")]
        exec_local: Option<PathBuf>,
    },
    /// Benchmark the API server (durable SQLite against the in-memory baseline).
    Bench {
        /// Runs per measure (medians are reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Pods to store for the list and RSS measures.
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
        /// Which benchmark: `api`, `scheduler`, `virtual`, `nodes`, `backends` (SQLite
        /// against etcd), `authz` (what RBAC costs a create, with 1,000 roles stored) or
        /// `peer` (separate processes: vkube on SQLite and on etcd, and kube-apiserver, under
        /// the same external client) or `scale` (`--pods` pods in deployments of 100 through
        /// one virtual cluster on a host of `--nodes` simulated nodes).
        #[arg(long, default_value = "api")]
        suite: String,
        /// Nodes for the scheduler and scale benchmarks.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
    },
    /// The load generator of `vkube bench --suite peer` (a process of its own).
    #[command(hide = true)]
    Load(load::LoadArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A failure is one message with its causes (`error: what: why`), not a debug dump
    // with a backtrace.
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("VKUBE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Apiserver { data_dir, listen, token_auth_file, service_cluster_ip_range, etcd } => {
            let started = std::time::Instant::now();
            std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            let (store, _) = serve::open_store(&etcd.flags(), &Default::default(), &data_dir, "apiserver").await?;
            let mut config = vkube_apiserver::ServerConfig::new(data_dir.clone(), store);
            config.listen = listen;
            config.token_file = token_auth_file;
            config.service_cidr = parse_cidr(&service_cluster_ip_range)?;
            let server = vkube_apiserver::start(config).await?;
            println!(
                "vkube apiserver ready at {} in {} ms; kubeconfig: {}",
                server.url,
                started.elapsed().as_millis(),
                server.kubeconfig_path.display()
            );
            wait_for_signal().await;
            server.shutdown().await;
            Ok(())
        }
        Command::Host { data_dir, nodes, listen, exec_local } => {
            let started = std::time::Instant::now();
            let host = host::start(host::HostConfig { data_dir, nodes, listen, exec_local }).await?;
            println!(
                "vkube host ready at {} with {nodes} nodes in {} ms; kubeconfig: {}",
                host.server.url,
                started.elapsed().as_millis(),
                host.kubeconfig.display()
            );
            wait_for_signal().await;
            host.stop().await;
            Ok(())
        }
        Command::Nodes { kubeconfig, count, prefix, labels, node_ca_cert, node_ca_key, address_block, exec_local } => {
            let started = std::time::Instant::now();
            let ca = match (node_ca_cert, node_ca_key) {
                (Some(cert), Some(key)) => Some((cert, key)),
                _ => None,
            };
            let opts = nodes::NodesConfig { kubeconfig, count, prefix, labels, ca, address_block, exec_local };
            let running = nodes::start(opts).await?;
            println!("vkube nodes ready: {} in {} ms", running.names.join(","), started.elapsed().as_millis());
            wait_for_signal().await;
            drop(running);
            Ok(())
        }
        Command::Serve { host_kubeconfig, name, data_dir, values, host_namespace, listen, etcd } => {
            let started = std::time::Instant::now();
            let host_client = host::client_from(&host_kubeconfig).await.context("reading the host kubeconfig")?;
            let vc = serve::start(
                serve::ServeConfig { name: name.clone(), data_dir, values, host_namespace, listen, etcd: etcd.flags() },
                host_client,
            )
            .await?;
            println!(
                "vkube virtual cluster {name} ready at {} in {} ms; kubeconfig: {}",
                vc.server.url,
                started.elapsed().as_millis(),
                vc.kubeconfig.display()
            );
            wait_for_signal().await;
            vc.stop().await;
            Ok(())
        }
        Command::Up { data_dir, nodes, values, name, listen, host_listen, exec_local } => {
            let started = std::time::Instant::now();
            let base = data_dir.unwrap_or_else(|| match std::env::var_os("HOME") {
                Some(h) => PathBuf::from(h).join(".vkube"),
                None => PathBuf::from(".vkube"),
            });
            // Check vcluster.yaml before starting anything.
            serve::load_values(values.as_deref())?;
            let host =
                host::start(host::HostConfig { data_dir: base.join("host"), nodes, listen: host_listen, exec_local })
                    .await?;
            let host_client = host::client_from(&host.kubeconfig).await?;
            let vc = serve::start(
                serve::ServeConfig {
                    name: name.clone(),
                    data_dir: base.join(&name),
                    values,
                    host_namespace: None,
                    listen,
                    etcd: Default::default(),
                },
                host_client,
            )
            .await?;
            println!("vkube up: host and virtual cluster {name} ready in {} ms", started.elapsed().as_millis());
            println!("  virtual cluster: export KUBECONFIG={}", vc.kubeconfig.display());
            println!("  host cluster:    export KUBECONFIG={}", host.kubeconfig.display());
            println!("what now:");
            println!(
                "  kubectl --kubeconfig {} create deployment hello --image=nginx --replicas=3",
                vc.kubeconfig.display()
            );
            println!("  kubectl --kubeconfig {} get pods -o wide", vc.kubeconfig.display());
            println!(
                "  kubectl --kubeconfig {} get pods -n vkube-{name} -o wide   # the same pods on the host",
                host.kubeconfig.display()
            );
            wait_for_signal().await;
            vc.stop().await;
            host.stop().await;
            Ok(())
        }
        Command::HostRbac { name, namespace, values } => {
            let config = serve::load_values(values.as_deref())?;
            let namespace = namespace.unwrap_or_else(|| format!("vkube-{name}"));
            let needs = vkube_syncer::rbac::needs(&config);
            let yaml = vkube_syncer::rbac::manifests(&name, &namespace, &needs).map_err(anyhow::Error::msg)?;
            print!("{yaml}");
            Ok(())
        }
        Command::Uninstall { host_kubeconfig, name, host_namespace } => {
            let host_client = host::client_from(&host_kubeconfig).await.context("reading the host kubeconfig")?;
            let namespace = host_namespace.unwrap_or_else(|| format!("vkube-{name}"));
            let mapper = vkube_syncer::names::NameMapper::new(name, namespace);
            let n = vkube_syncer::cleanup::uninstall(host_client, &mapper).await?;
            println!("removed {n} host objects of virtual cluster {}", mapper.cluster);
            Ok(())
        }
        Command::Load(args) => load::run(args).await,
        Command::Bench { runs, pods, suite, nodes } => match suite.as_str() {
            "scheduler" => bench::scheduler(runs, nodes, pods).await,
            "virtual" => bench::virtual_cluster(runs, pods).await,
            "nodes" => bench::node_edits(runs).await,
            "backends" => bench::backends(runs, pods).await,
            "authz" => bench::authorization(runs).await,
            "peer" => bench::peer(runs, pods).await,
            "scale" => scale::scale(runs, nodes, pods).await,
            _ => bench::run(runs, pods).await,
        },
    }
}

fn parse_cidr(s: &str) -> anyhow::Result<(std::net::Ipv4Addr, u8)> {
    let (ip, bits) = s.split_once('/').ok_or_else(|| {
        anyhow::anyhow!("--service-cluster-ip-range: expected an IPv4 CIDR such as 10.96.0.0/12, got {s}")
    })?;
    let ip: std::net::Ipv4Addr =
        ip.parse().with_context(|| format!("--service-cluster-ip-range: bad address in {s}"))?;
    let bits: u8 = bits
        .parse()
        .ok()
        .filter(|b| (8..=30).contains(b))
        .ok_or_else(|| anyhow::anyhow!("--service-cluster-ip-range: prefix length must be 8..30 in {s}"))?;
    Ok((ip, bits))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
