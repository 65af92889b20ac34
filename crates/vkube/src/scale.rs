//! `vkube bench --suite scale`: many pods through one virtual cluster on a host of
//! many simulated nodes, as kube-burner's cluster-density loads a cluster. `vkube host`
//! and `vkube serve` run as processes of their own; this process is their client.
//!
//! Per backend of the virtual cluster (SQLite; etcd with the bench-etcd feature): the
//! time from the first deployment (of 100 replicas each) until a watch has seen every
//! pod Running; API latency in the virtual cluster during that load, from a probe that
//! creates a ConfigMap, waits for its watch event, gets it and lists a page of 500 pods,
//! over and over; CPU and RSS of `vkube serve` and of the host during the load; and,
//! once settled, their idle CPU and RSS.

use crate::bench::{Killed, cpu_seconds, median, percentile_f, rss_of, spawn_host, spawn_serve};
use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use std::path::Path;
use std::time::{Duration, Instant};

/// Replicas per deployment (cluster-density's).
const PER_DEPLOYMENT: usize = 100;
/// How long every pod may take to be Running before the run fails.
const DEADLINE: Duration = Duration::from_secs(1800);

/// Latencies the probe measured, ms.
#[derive(Default)]
struct Probes {
    create: Vec<f64>,
    watch: Vec<f64>,
    get: Vec<f64>,
    list: Vec<f64>,
    failures: usize,
}

/// One run's figures.
struct ScaleRun {
    running_s: f64,
    probes: Probes,
    serve_cores: f64,
    host_cores: f64,
    serve_rss_load: f64,
    host_rss_load: f64,
    serve_idle_pct: f64,
    host_idle_pct: f64,
    serve_rss_idle: f64,
    host_rss_idle: f64,
}

/// Create, see by watch, get, list a page: again and again until `stop`.
async fn probe(client: kube::Client, mut stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<Probes> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "probe");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let rv = cms.list_metadata(&ListParams::default()).await?.metadata.resource_version.unwrap_or_default();
    let mut events = cms.watch(&WatchParams::default().timeout(290), &rv).await?.boxed();
    let mut out = Probes::default();
    for i in 0.. {
        if *stop.borrow() {
            break;
        }
        let name = format!("probe-{i}");
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        let t = Instant::now();
        if cms.create(&PostParams::default(), &cm).await.is_err() {
            out.failures += 1;
            continue;
        }
        out.create.push(t.elapsed().as_secs_f64() * 1000.0);
        let seen = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(ev) = events.next().await {
                if let Ok(WatchEvent::Added(c)) = ev
                    && c.metadata.name.as_deref() == Some(name.as_str())
                {
                    return true;
                }
            }
            false
        })
        .await;
        match seen {
            Ok(true) => out.watch.push(t.elapsed().as_secs_f64() * 1000.0),
            _ => {
                out.failures += 1;
                let rv = cms.list_metadata(&ListParams::default()).await?.metadata.resource_version;
                events = cms.watch(&WatchParams::default().timeout(290), &rv.unwrap_or_default()).await?.boxed();
            }
        }
        let t = Instant::now();
        match cms.get(&name).await {
            Ok(_) => out.get.push(t.elapsed().as_secs_f64() * 1000.0),
            Err(_) => out.failures += 1,
        }
        let t = Instant::now();
        match pods.list_metadata(&ListParams::default().limit(500)).await {
            Ok(_) => out.list.push(t.elapsed().as_secs_f64() * 1000.0),
            Err(_) => out.failures += 1,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => {}
        }
    }
    Ok(out)
}

/// `pods` pods as deployments of [`PER_DEPLOYMENT`] in the virtual cluster, timed until
/// a watch has seen every one Running.
async fn deployments_running(client: &kube::Client, pods: usize) -> anyhow::Result<f64> {
    use kube::runtime::{WatchStreamExt, watcher};
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let vpods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut running_pods =
        watcher(vpods, watcher::Config::default().labels("bench=scale")).default_backoff().applied_objects().boxed();
    let t = Instant::now();
    let mut left = pods;
    for i in 0.. {
        if left == 0 {
            break;
        }
        let replicas = left.min(PER_DEPLOYMENT);
        left -= replicas;
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("scale-{i}")},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": format!("scale-{i}")}},
                "template": {"metadata": {"labels": {"app": format!("scale-{i}"), "bench": "scale"}},
                    "spec": {"containers": [{"name": "c", "image": "registry.example/app:1.0",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}
        }))?;
        deploys.create(&PostParams::default(), &d).await?;
    }
    let mut running = std::collections::HashSet::new();
    while running.len() < pods {
        let next = tokio::time::timeout(DEADLINE.saturating_sub(t.elapsed()), running_pods.next()).await;
        let Ok(Some(Ok(p))) = next else {
            anyhow::bail!("only {} of {pods} pods Running after {:.0} s", running.len(), t.elapsed().as_secs_f64());
        };
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            running.insert(p.metadata.name.clone().unwrap_or_default());
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

/// CPU of `pid` over `window`, in % of one core.
async fn idle_pct(pids: [u32; 2], window: Duration) -> [f64; 2] {
    let before = pids.map(cpu_seconds);
    tokio::time::sleep(window).await;
    let after = pids.map(cpu_seconds);
    [0, 1].map(|i| (after[i] - before[i]) / window.as_secs_f64() * 100.0)
}

async fn one_run(dir: &Path, nodes: usize, pods: usize, serve_extra: &[String]) -> anyhow::Result<ScaleRun> {
    let host_dir = dir.join("host");
    let host = Killed(spawn_host(&host_dir, nodes).context("starting vkube host")?);
    let vc_dir = dir.join("vc");
    let serve = Killed(spawn_serve(&host_dir, &vc_dir, serve_extra).context("starting vkube serve")?);
    let (serve_pid, host_pid) = (serve.0.id(), host.0.id());
    let client = crate::host::client_from(&vc_dir.join("vc.kubeconfig")).await?;
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": "probe"}}))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let prober = tokio::spawn(probe(client.clone(), stopped));
    let cpu0 = (cpu_seconds(serve_pid), cpu_seconds(host_pid));
    let running_s = deployments_running(&client, pods).await?;
    let cpu1 = (cpu_seconds(serve_pid), cpu_seconds(host_pid));
    let (serve_rss_load, host_rss_load) = (rss_of(serve_pid), rss_of(host_pid));
    stop.send(true).ok();
    let probes = prober.await??;
    // Settled: the last status updates are in; then a quiet window.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let [serve_idle_pct, host_idle_pct] = idle_pct([serve_pid, host_pid], Duration::from_secs(20)).await;
    Ok(ScaleRun {
        running_s,
        probes,
        serve_cores: (cpu1.0 - cpu0.0) / running_s.max(1e-9),
        host_cores: (cpu1.1 - cpu0.1) / running_s.max(1e-9),
        serve_rss_load,
        host_rss_load,
        serve_idle_pct,
        host_idle_pct,
        serve_rss_idle: rss_of(serve_pid),
        host_rss_idle: rss_of(host_pid),
    })
}

/// The backends to run the virtual cluster on: label, `vkube serve` flags, and what must
/// live as long as the run.
type Backend = (&'static str, Vec<String>, Option<Box<dyn std::any::Any>>);

#[cfg(feature = "bench-etcd")]
fn etcd_backend() -> anyhow::Result<Option<Backend>> {
    let etcd = vkube_etcdkit::EtcdCluster::start(1)?;
    let flags = vec!["--etcd-servers".into(), etcd.endpoints().join(",")];
    Ok(Some(("virtual cluster on etcd", flags, Some(Box::new(etcd)))))
}

#[cfg(not(feature = "bench-etcd"))]
fn etcd_backend() -> anyhow::Result<Option<Backend>> {
    eprintln!(
        "built without the bench-etcd feature: no etcd column (cargo build --release -p vkube --features bench-etcd)"
    );
    Ok(None)
}

/// `vkube bench --suite scale --nodes N --pods P`: see the module documentation. Each
/// figure is the median of `runs` (at most 3: a run of 30,000 pods takes minutes).
pub async fn scale(runs: usize, nodes: usize, pods: usize) -> anyhow::Result<()> {
    let runs = runs.clamp(1, 3);
    let mut columns: Vec<(&str, Vec<(String, String)>)> = Vec::new();
    let mut backends: Vec<Backend> = vec![("virtual cluster on SQLite", Vec::new(), None)];
    if let Some(etcd) = etcd_backend()? {
        backends.push(etcd);
    }
    for (label, flags, _keep) in &backends {
        let mut all = Vec::new();
        for r in 0..runs {
            eprintln!("scale: {label}, run {} of {runs}: {pods} pods on {nodes} nodes", r + 1);
            let dir = tempfile::tempdir()?;
            // Each run on etcd under a prefix of its own.
            let mut flags = flags.clone();
            if !flags.is_empty() {
                flags.extend(["--etcd-prefix".to_string(), format!("/vkube/scale-{r}")]);
            }
            all.push(one_run(dir.path(), nodes, pods, &flags).await?);
        }
        let mut probes = Probes::default();
        for run in &mut all {
            probes.create.append(&mut run.probes.create);
            probes.watch.append(&mut run.probes.watch);
            probes.get.append(&mut run.probes.get);
            probes.list.append(&mut run.probes.list);
            probes.failures += run.probes.failures;
        }
        let med = |f: &dyn Fn(&ScaleRun) -> f64| median(all.iter().map(f).collect());
        let p = |v: &mut Vec<f64>| format!("{:.1} / {:.1}", percentile_f(&mut v.clone(), 0.5), percentile_f(v, 0.99));
        let col = vec![
            (
                format!("{pods} pods in deployments of {PER_DEPLOYMENT}: first create until all Running, s"),
                format!("{:.1}", med(&|r| r.running_s)),
            ),
            ("pods Running per second".into(), format!("{:.0}", pods as f64 / med(&|r| r.running_s).max(1e-9))),
            ("during the load: create p50 / p99 ms".into(), p(&mut probes.create)),
            ("during the load: create until the watch event, p50 / p99 ms".into(), p(&mut probes.watch)),
            ("during the load: get p50 / p99 ms".into(), p(&mut probes.get)),
            ("during the load: list of 500 pods (one page) p50 / p99 ms".into(), p(&mut probes.list)),
            (
                "during the load: probe requests / failed".into(),
                format!("{} / {}", probes.create.len() + probes.get.len() + probes.list.len(), probes.failures),
            ),
            (
                "during the load: CPU of vkube serve / host, cores".into(),
                format!("{:.2} / {:.2}", med(&|r| r.serve_cores), med(&|r| r.host_cores)),
            ),
            (
                "RSS of vkube serve / host with all Running, MiB".into(),
                format!("{:.0} / {:.0}", med(&|r| r.serve_rss_load), med(&|r| r.host_rss_load)),
            ),
            (
                "settled: idle CPU of vkube serve / host, % of a core".into(),
                format!("{:.1} / {:.1}", med(&|r| r.serve_idle_pct), med(&|r| r.host_idle_pct)),
            ),
            (
                "settled: RSS of vkube serve / host, MiB".into(),
                format!("{:.0} / {:.0}", med(&|r| r.serve_rss_idle), med(&|r| r.host_rss_idle)),
            ),
        ];
        columns.push((label, col));
    }
    let header: Vec<&str> = columns.iter().map(|(l, _)| *l).collect();
    println!("| measure ({nodes} simulated nodes, median of {runs}) | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(header.len()));
    if let Some((_, first)) = columns.first() {
        for (i, (name, _)) in first.iter().enumerate() {
            let cells: Vec<String> =
                columns.iter().map(|(_, c)| c.get(i).map(|(_, v)| v.clone()).unwrap_or_default()).collect();
            println!("| {name} | {} |", cells.join(" | "));
        }
    }
    Ok(())
}
