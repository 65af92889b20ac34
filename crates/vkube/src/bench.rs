//! `vkube bench`: API server benchmarks through the kube-rs client against an
//! in-process server: durable creates from concurrent clients (throughput, p50/p99),
//! gets, a 10k-pod list, watch fan-out, and RSS. Each figure is the median of several
//! runs; the same workload over the in-memory store is the baseline.

use anyhow::Context;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams, WatchParams};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn client_for(server: &vkube_apiserver::RunningServer) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(&server.kubeconfig_path)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn boot(durable: bool, dir: &std::path::Path) -> anyhow::Result<vkube_apiserver::RunningServer> {
    let store: Arc<dyn vkube_store::Store> = if durable {
        Arc::new(vkube_store::SqliteStore::open(&dir.join("state.db"))?)
    } else {
        Arc::new(vkube_store::MemoryStore::new())
    };
    Ok(vkube_apiserver::start(vkube_apiserver::ServerConfig::new(dir.to_path_buf(), store)).await?)
}

struct CreateRun {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn creates(client: &kube::Client, clients: usize, total: usize, tag: &str) -> anyhow::Result<CreateRun> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..total / clients {
                let cm: ConfigMap = serde_json::from_value(
                    serde_json::json!({"metadata": {"name": format!("{tag}-{c}-{i}")}, "data": {"k": "v"}}),
                )?;
                let t = Instant::now();
                api.create(&PostParams::default(), &cm).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = all.len() as f64;
    Ok(CreateRun {
        per_sec: n / elapsed,
        p50_ms: percentile(&mut all, 0.5).as_secs_f64() * 1000.0,
        p99_ms: percentile(&mut all, 0.99).as_secs_f64() * 1000.0,
    })
}

pub(crate) fn rss_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// RSS of a real `vkube apiserver` child process after storing `pods` pods.
async fn server_process_rss(pods: usize) -> anyhow::Result<f64> {
    use std::io::BufRead;
    let dir = tempfile::tempdir()?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["apiserver", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    anyhow::ensure!(line.contains("ready"), "apiserver did not start: {line}");
    let kc = kube::config::Kubeconfig::read_from(dir.path().join("admin.kubeconfig"))?;
    let client = kube::Client::try_from(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?)?;
    let api: Api<Pod> = Api::namespaced(client, "default");
    let mut tasks = Vec::new();
    for c in 0..32 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..pods / 32 + 1 {
                let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": format!("p-{c}-{i}"), "labels": {"app": "bench"}}, "spec": {"containers": [{"name": "c", "image": "registry.example/app:1.0", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}))?;
                api.create(&PostParams::default(), &pod).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    api.list(&ListParams::default()).await?;
    let rss = rss_of(child.id());
    let _ = child.kill();
    let _ = child.wait();
    Ok(rss)
}

/// Scheduler throughput: `pods` pending pods onto `nodes` Ready nodes, from scheduler
/// start until every pod is bound (median of `runs`), beside the time the API took to
/// accept the same pods (the baseline of the same run).
pub async fn scheduler(runs: usize, nodes: usize, pods: usize) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::Patch;
    let mut sched = Vec::new();
    let mut create = Vec::new();
    for r in 0..runs {
        let dir = tempfile::tempdir()?;
        let server = boot(true, dir.path()).await?;
        let client = client_for(&server).await?;
        let node_api: Api<Node> = Api::all(client.clone());
        let mut tasks = Vec::new();
        for c in 0..16 {
            let api = node_api.clone();
            tasks.push(tokio::spawn(async move {
                for i in (c..nodes).step_by(16) {
                    let name = format!("n-{i}");
                    let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": format!("z{}", i % 3)}}}))?;
                    api.create(&PostParams::default(), &node).await?;
                    let status = serde_json::json!({"status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}, "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}});
                    api.patch_status(&name, &kube::api::PatchParams::default(), &Patch::Merge(status)).await?;
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
        let t = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..32 {
            let api = pod_api.clone();
            tasks.push(tokio::spawn(async move {
                for i in (c..pods).step_by(32) {
                    let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": format!("p-{r}-{i}")}, "spec": {"containers": [{"name": "c", "image": "app", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}))?;
                    api.create(&PostParams::default(), &pod).await?;
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        create.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let task = tokio::spawn(vkube_scheduler::Scheduler::run(client.clone(), Default::default()));
        loop {
            let pending = pod_api.list(&ListParams::default().fields("spec.nodeName=")).await?.items.len();
            if pending == 0 {
                break;
            }
            anyhow::ensure!(t.elapsed() < Duration::from_secs(120), "{pending} pods still pending");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sched.push(t.elapsed().as_secs_f64());
        task.abort();
        server.shutdown().await;
    }
    println!("| measure | value |\n|---|---|");
    println!(
        "| scheduler: {pods} pods onto {nodes} nodes, s until all bound (median of {runs}) | {:.2} |",
        median(sched.clone())
    );
    println!("| baseline: API accepting the same {pods} pods from 32 clients, s | {:.2} |", median(create.clone()));
    println!("| ratio scheduling / creating | {:.2} |", median(sched) / median(create).max(1e-9));
    Ok(())
}

/// When each host pod was first seen and first seen Running.
type SeenTimes =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (Option<Instant>, Option<Instant>)>>>;

pub(crate) fn spawn_ready(args: &[String]) -> anyhow::Result<(std::process::Child, Duration)> {
    use std::io::BufRead;
    let t = Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(std::process::Stdio::piped())
        // VKUBE_BENCH_LOGS=1 keeps the servers' logs (on this process's stderr).
        .stderr(if std::env::var_os("VKUBE_BENCH_LOGS").is_some() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        })
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    anyhow::ensure!(line.contains("ready"), "not ready: {line}");
    let elapsed = t.elapsed();
    std::thread::spawn(move || {
        let mut sink = String::new();
        while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    Ok((child, elapsed))
}

pub(crate) fn percentile_f(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

/// Virtual cluster benchmarks: start-up, sync latency, 1000 pods, RSS of `vkube serve`.
/// A `vkube host` child process with `nodes` nodes on `dir`, once ready.
pub(crate) fn spawn_host(dir: &std::path::Path, nodes: usize) -> anyhow::Result<std::process::Child> {
    let args =
        ["host", "--nodes", &nodes.to_string(), "--listen", "127.0.0.1:0", "--data-dir", &dir.display().to_string()]
            .map(String::from);
    Ok(spawn_ready(&args)?.0)
}

/// A `vkube serve` child process (cluster `vc`) on `vc_dir` against the host on `host_dir`.
pub(crate) fn spawn_serve(
    host_dir: &std::path::Path,
    vc_dir: &std::path::Path,
    extra: &[String],
) -> anyhow::Result<std::process::Child> {
    let kubeconfig = host_dir.join("host.kubeconfig").display().to_string();
    let mut args: Vec<String> =
        ["serve", "--name", "vc", "--host-kubeconfig", &kubeconfig, "--data-dir", &vc_dir.display().to_string()]
            .map(String::from)
            .to_vec();
    args.extend_from_slice(extra);
    Ok(spawn_ready(&args)?.0)
}

/// A deployment of `pods` replicas in `default`, timed from its creation until a watch
/// has seen every pod Running (a watch, as a client would follow it: polling lists would
/// load the server being measured).
async fn many_pods_running(client: &kube::Client, pods: usize) -> anyhow::Result<f64> {
    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::runtime::{WatchStreamExt, watcher};
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let vpods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "many"}, "spec": {"replicas": pods, "selector": {"matchLabels": {"app": "many"}}, "template": {"metadata": {"labels": {"app": "many"}}, "spec": {"containers": [{"name": "c", "image": "app"}]}}}}),
    )?;
    let mut running_pods =
        watcher(vpods, watcher::Config::default().labels("app=many")).default_backoff().applied_objects().boxed();
    let t = Instant::now();
    deploys.create(&PostParams::default(), &d).await?;
    let mut running = std::collections::HashSet::new();
    while running.len() < pods {
        let next =
            tokio::time::timeout(Duration::from_secs(300).saturating_sub(t.elapsed()), running_pods.next()).await;
        let Ok(Some(Ok(p))) = next else {
            anyhow::bail!("only {} of {pods} Running", running.len());
        };
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            running.insert(p.metadata.name.clone().unwrap_or_default());
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

pub async fn virtual_cluster(runs: usize, pods: usize) -> anyhow::Result<()> {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let mut rows: Vec<(String, String)> = Vec::new();
    // Start-up of `vkube up` (host and virtual cluster), and of the host alone as baseline.
    let (mut up_ms, mut host_ms) = (vec![], vec![]);
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let (mut c, d) = spawn_ready(&["up".into(), "--data-dir".into(), dir.path().display().to_string()])?;
        up_ms.push(d.as_secs_f64() * 1000.0);
        let _ = c.kill();
        let _ = c.wait();
        let dir = tempfile::tempdir()?;
        let (mut c, d) = spawn_ready(&[
            "apiserver".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            dir.path().display().to_string(),
        ])?;
        host_ms.push(d.as_secs_f64() * 1000.0);
        let _ = c.kill();
        let _ = c.wait();
    }
    rows.push((
        format!("vkube up: start until host and virtual API servers are ready, ms (median of {runs})"),
        format!("{:.0}", median(up_ms)),
    ));
    rows.push(("baseline: one vkube apiserver until ready, ms".into(), format!("{:.0}", median(host_ms))));
    // Separate host and serve processes, so serve's RSS is its own.
    let dir = tempfile::tempdir()?;
    let host_dir = dir.path().join("host");
    let nodes = pods.div_ceil(100).max(3);
    let mut host = spawn_host(&host_dir, nodes)?;
    let vc_dir = dir.path().join("vc");
    let mut serve = spawn_serve(&host_dir, &vc_dir, &[])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rows.push(("RSS of vkube serve, idle, MiB".into(), format!("{:.0}", rss_of(serve.id()))));
    let host_client = crate::host::client_from(&host_dir.join("host.kubeconfig")).await?;
    let vc_client = crate::host::client_from(&vc_dir.join("vc.kubeconfig")).await?;
    // Sync latency: virtual pod created -> host pod exists; host Running -> virtual Running.
    let host_pods: Api<Pod> = Api::namespaced(host_client.clone(), "vkube-vc");
    let vpods: Api<Pod> = Api::namespaced(vc_client.clone(), "default");
    let host_seen: SeenTimes = Default::default();
    let hs = host_seen.clone();
    let host_watch = tokio::spawn(async move {
        let mut s = watcher(host_pods, watcher::Config::default()).default_backoff().applied_objects().boxed();
        while let Some(Ok(p)) = s.next().await {
            let name = p.metadata.name.clone().unwrap_or_default();
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let mut m = hs.lock().unwrap_or_else(|e| e.into_inner());
            let e = m.entry(name).or_insert((None, None));
            if e.0.is_none() {
                e.0 = Some(Instant::now());
            }
            if running && e.1.is_none() {
                e.1 = Some(Instant::now());
            }
        }
    });
    let (mut to_host, mut back) = (vec![], vec![]);
    for i in 0..100 {
        let name = format!("lat-{i}");
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "app"}]}}),
        )?;
        let t = Instant::now();
        vpods.create(&PostParams::default(), &pod).await?;
        let host_name = format!("{name}-x-default-x-vc");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let entry = host_seen.lock().unwrap_or_else(|e| e.into_inner()).get(&host_name).copied();
            if let Some((Some(created), Some(running))) = entry {
                let v = vpods.get(&name).await?;
                if v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                    to_host.push(created.duration_since(t).as_secs_f64() * 1000.0);
                    back.push(running.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "pod {name} did not sync");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    host_watch.abort();
    rows.push((
        "sync latency virtual pod created -> host pod exists, p50 / p99 ms (100 pods)".to_string(),
        format!("{:.1} / {:.1}", percentile_f(&mut to_host.clone(), 0.5), percentile_f(&mut to_host, 0.99)),
    ));
    rows.push((
        "sync latency host Running -> virtual Running, p50 / p99 ms (upper bound, 2 ms polling)".to_string(),
        format!("{:.1} / {:.1}", percentile_f(&mut back.clone(), 0.5), percentile_f(&mut back, 0.99)),
    ));
    let _ = serve.kill();
    let _ = host.kill();
    let _ = serve.wait();
    let _ = host.wait();
    // Many pods at once: fresh processes each run; the same deployment on the host alone
    // (no virtual cluster) is the baseline of the same run.
    let (mut virt_s, mut host_s, mut rss, mut settled) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs.clamp(1, 5) {
        let dir = tempfile::tempdir()?;
        let host_dir = dir.path().join("host");
        let mut host = spawn_host(&host_dir, nodes)?;
        let host_client = crate::host::client_from(&host_dir.join("host.kubeconfig")).await?;
        host_s.push(many_pods_running(&host_client, pods).await.context("on the host alone")?);
        // A fresh host for the virtual cluster: the baseline's pods fill this one.
        let _ = host.kill();
        let _ = host.wait();
        let host_dir = dir.path().join("host2");
        let mut host = spawn_host(&host_dir, nodes)?;
        let vc_dir = dir.path().join("vc");
        let mut serve = spawn_serve(&host_dir, &vc_dir, &[])?;
        let vc_client = crate::host::client_from(&vc_dir.join("vc.kubeconfig")).await?;
        virt_s.push(many_pods_running(&vc_client, pods).await.context("in the virtual cluster")?);
        rss.push(rss_of(serve.id()));
        // The same 1,000 pods, Running, once the burst's transient buffers are freed.
        tokio::time::sleep(Duration::from_secs(10)).await;
        settled.push(rss_of(serve.id()));
        let _ = serve.kill();
        let _ = host.kill();
        let _ = serve.wait();
        let _ = host.wait();
    }
    let n = virt_s.len();
    let (v, h) = (median(virt_s), median(host_s));
    rows.push((
        format!("{pods} pods created at once in the virtual cluster until all Running there, s (median of {n})"),
        format!("{v:.2}"),
    ));
    rows.push((format!("baseline: the same {pods} pods on the host alone, s (median of {n})"), format!("{h:.2}")));
    rows.push(("ratio virtual / host alone".into(), format!("{:.2}", v / h.max(1e-9))));
    rows.push((
        format!("RSS of vkube serve with {pods} pods, right after the last went Running, MiB (median of {n})"),
        format!("{:.0}", median(rss)),
    ));
    rows.push((
        format!("RSS of vkube serve with {pods} pods Running, 10 s later, MiB (median of {n})"),
        format!("{:.0}", median(settled)),
    ));
    println!("| measure | value |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}

/// Node-edit latency: `kubectl cordon`'s patch in the virtual cluster until the host node
/// is unschedulable (sync back), and until the revert (default mode); 100 runs each.
pub async fn node_edits(runs: usize) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Patch, PatchParams};
    let mut rows = Vec::new();
    for (mode, values) in [
        ("sync back", "sync:\n  fromHost:\n    nodes:\n      enabled: true\n      syncBackChanges: true\n"),
        ("default", ""),
    ] {
        let dir = tempfile::tempdir()?;
        let values_path = dir.path().join("vcluster.yaml");
        std::fs::write(&values_path, values)?;
        let data = dir.path().join("data");
        let (mut child, _) = spawn_ready(&[
            "up".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "-f".into(),
            values_path.display().to_string(),
        ])?;
        let vc = crate::host::client_from(&data.join("vc/vc.kubeconfig")).await?;
        let host = crate::host::client_from(&data.join("host/host.kubeconfig")).await?;
        let vnodes: Api<Node> = Api::all(vc.clone());
        let hnodes: Api<Node> = Api::all(host.clone());
        // Make sure the virtual node exists (default mode shows nodes that run pods).
        let pods: Api<Pod> = Api::namespaced(vc.clone(), "default");
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "warm"}, "spec": {"nodeSelector": {"kubernetes.io/hostname": "node-1"}, "containers": [{"name": "c", "image": "x"}]}}),
        )?;
        pods.create(&PostParams::default(), &pod).await?;
        let t = Instant::now();
        while vnodes.get_opt("node-1").await?.is_none() {
            anyhow::ensure!(t.elapsed() < Duration::from_secs(30), "virtual node-1 never appeared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pp = PatchParams::default();
        let mut lat = Vec::new();
        for i in 0..runs {
            let on = i % 2 == 0;
            let t = Instant::now();
            vnodes.patch("node-1", &pp, &Patch::Strategic(serde_json::json!({"spec": {"unschedulable": on}}))).await?;
            loop {
                let done = if mode == "sync back" {
                    hnodes.get("node-1").await?.spec.and_then(|s| s.unschedulable).unwrap_or(false) == on
                } else {
                    !vnodes.get("node-1").await?.spec.and_then(|s| s.unschedulable).unwrap_or(false)
                };
                if done {
                    break;
                }
                anyhow::ensure!(t.elapsed() < Duration::from_secs(10), "{mode}: no effect in run {i}");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            if mode == "default" {
                // Wait for the revert to settle before the next edit.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let what = if mode == "sync back" {
            "cordon/uncordon in the virtual cluster -> host node changed (sync back)"
        } else {
            "cordon in the virtual cluster -> reverted (default mode)"
        };
        rows.push((
            format!("{what}, p50 / p99 ms over {runs}"),
            format!("{:.1} / {:.1}", percentile_f(&mut lat.clone(), 0.5), percentile_f(&mut lat, 0.99)),
        ));
        let _ = child.kill();
        let _ = child.wait();
    }
    println!("| measure | value |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}

/// One backend of the `backends` suite: the store, and what must live as long as it.
#[cfg(feature = "bench-etcd")]
async fn backend_store(
    kind: &str,
    dir: &std::path::Path,
) -> anyhow::Result<(Arc<dyn vkube_store::Store>, Option<vkube_etcdkit::EtcdCluster>)> {
    Ok(match kind {
        "sqlite" => (Arc::new(vkube_store::SqliteStore::open(&dir.join("state.db"))?), None),
        _ => {
            let members = if kind == "etcd3" { 3 } else { 1 };
            let etcd = tokio::task::spawn_blocking(move || vkube_etcdkit::EtcdCluster::start(members)).await??;
            let config = vkube_store::EtcdConfig {
                endpoints: etcd.endpoints(),
                prefix: "/vkube/bench".into(),
                ..Default::default()
            };
            (Arc::new(vkube_store::EtcdStore::connect(config).await?), Some(etcd))
        }
    })
}

/// The real kube-apiserver v1.36 (with its etcd; no controllers, no scheduler) as the
/// baseline, from `real-cluster` (`$VKUBE_REAL_CLUSTER`, else `../shared/bin`): the
/// reference binaries, used by benchmarks only.
struct RealBaseline {
    script: std::path::PathBuf,
    dir: tempfile::TempDir,
    client: kube::Client,
    /// kube-apiserver and etcd: name and process id.
    procs: Vec<(String, u32)>,
}

impl RealBaseline {
    /// Start one, if the binaries are on this machine.
    async fn start() -> anyhow::Result<Option<Self>> {
        let script = std::env::var_os("VKUBE_REAL_CLUSTER")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from("../shared/bin/real-cluster"));
        if !script.exists() {
            eprintln!("no real-cluster at {} (set VKUBE_REAL_CLUSTER): no kube-apiserver baseline", script.display());
            return Ok(None);
        }
        let dir = tempfile::tempdir()?;
        let out = std::process::Command::new(&script)
            .arg("start")
            .arg(dir.path())
            .env("NO_KCM", "1")
            .env("NO_SCHED", "1")
            .output()?;
        anyhow::ensure!(out.status.success(), "real-cluster start: {}", String::from_utf8_lossy(&out.stderr));
        let procs = std::fs::read_to_string(dir.path().join("pids"))?
            .lines()
            .filter_map(|l| l.split_once(' ').and_then(|(n, p)| Some((n.to_string(), p.trim().parse().ok()?))))
            .collect();
        let kc = kube::config::Kubeconfig::read_from(dir.path().join("admin.kubeconfig"))?;
        let client = kube::Client::try_from(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?)?;
        // Without kube-controller-manager the default service account is not made; pods need it.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), "default");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let made = serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}}))?;
            match sa.create(&PostParams::default(), &made).await {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 409 => break,
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        Ok(Some(RealBaseline { script, dir, client, procs }))
    }

    /// RSS of kube-apiserver and etcd together.
    fn rss_mib(&self) -> f64 {
        self.procs.iter().map(|(_, p)| rss_of(*p)).sum()
    }

    fn stop(self) {
        drop(self);
    }
}

/// A bench that fails half-way still stops its kube-apiserver and etcd.
impl Drop for RealBaseline {
    fn drop(&mut self) {
        if let Err(e) = std::process::Command::new(&self.script).arg("stop").arg(self.dir.path()).output() {
            eprintln!("could not stop the kube-apiserver baseline in {}: {e}", self.dir.path().display());
        }
    }
}

/// Time `n` lists of the default namespace's pods as raw JSON over HTTPS (the server's
/// work, not the client's decoding), ms each; `pods` is how many they must hold.
async fn raw_pod_lists(client: &kube::Client, n: usize, pods: usize) -> anyhow::Result<Vec<f64>> {
    let mut raw_ms = Vec::new();
    for _ in 0..n {
        let req = http::Request::get("/api/v1/namespaces/default/pods").body(Vec::new())?;
        let t = Instant::now();
        let text = client.request_text(req).await?;
        raw_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(text.len() > pods * 100, "short list");
    }
    Ok(raw_ms)
}

/// Create `pods` pods (rounded down to a multiple of 32) from 32 concurrent clients.
async fn create_pods(client: &kube::Client, pods: usize) -> anyhow::Result<()> {
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut tasks = Vec::new();
    for c in 0..32 {
        let api = pods_api.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..pods / 32 {
                let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": format!("p-{c}-{i}"), "labels": {"app": "bench", "shard": c.to_string()}}, "spec": {"containers": [{"name": "c", "image": "registry.example/app:1.0", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}))?;
                api.create(&PostParams::default(), &pod).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Without the `bench-etcd` feature: how to get it.
///
/// # Errors
/// Always.
#[cfg(not(feature = "bench-etcd"))]
pub async fn backends(_runs: usize, _pods: usize) -> anyhow::Result<()> {
    anyhow::bail!(
        "this vkube was built without throwaway etcd clusters; run: cargo run --release -p vkube --features bench-etcd -- bench --suite backends"
    )
}

/// The API server on each storage backend in one run: the embedded SQLite store (the
/// baseline) and etcd with one and three members (throwaway clusters on loopback, fsync
/// on). Prints a Markdown table.
///
/// # Errors
/// If etcd or a server cannot start, or a request fails.
#[cfg(feature = "bench-etcd")]
pub async fn backends(runs: usize, pods: usize) -> anyhow::Result<()> {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut rates = Vec::new();
    for kind in ["sqlite", "etcd1", "etcd3"] {
        let label = match kind {
            "sqlite" => "SQLite (baseline)",
            "etcd1" => "etcd, 1 member",
            _ => "etcd, 3 members",
        };
        let (mut rate, mut p50, mut p99) = (vec![], vec![], vec![]);
        for r in 0..runs {
            let dir = tempfile::tempdir()?;
            let (store, etcd) = backend_store(kind, dir.path()).await?;
            let server =
                vkube_apiserver::start(vkube_apiserver::ServerConfig::new(dir.path().to_path_buf(), store)).await?;
            let client = client_for(&server).await?;
            let run = creates(&client, 32, 3200, &format!("r{r}")).await?;
            rate.push(run.per_sec);
            p50.push(run.p50_ms);
            p99.push(run.p99_ms);
            server.shutdown().await;
            drop(etcd);
        }
        let median_rate = median(rate);
        rates.push(median_rate);
        rows.push((format!("creates/s, 32 clients ({label})"), format!("{median_rate:.0}")));
        rows.push((format!("create p50 / p99 ms ({label})"), format!("{:.2} / {:.2}", median(p50), median(p99))));
        // A list of many pods, raw JSON over HTTPS (the server's work, not the client's).
        let dir = tempfile::tempdir()?;
        let (store, etcd) = backend_store(kind, dir.path()).await?;
        let server =
            vkube_apiserver::start(vkube_apiserver::ServerConfig::new(dir.path().to_path_buf(), store)).await?;
        let client = client_for(&server).await?;
        create_pods(&client, pods).await?;
        let raw_ms = raw_pod_lists(&client, runs.max(3), pods / 32 * 32).await?;
        rows.push((
            format!("list {} pods, raw JSON over HTTPS, ms ({label})", pods / 32 * 32),
            format!("{:.1}", median(raw_ms)),
        ));
        server.shutdown().await;
        drop(etcd);
    }
    println!("| measure | value |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    if let [sqlite, etcd1, etcd3] = rates[..] {
        println!(
            "\ncreates/s ratio to SQLite: etcd 1 member {:.2}, etcd 3 members {:.2}",
            etcd1 / sqlite,
            etcd3 / sqlite
        );
    }
    Ok(())
}

/// Store `n` Roles and `n` RoleBindings (for other users) over ten namespaces, as a
/// tenant with many teams has them.
async fn many_roles(admin: &kube::Client, n: usize) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let spaces: Vec<String> = (0..9).map(|i| format!("team-{i}")).chain(["default".to_string()]).collect();
    for ns in spaces.iter().filter(|n| *n != "default") {
        namespaces
            .create(&PostParams::default(), &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?)
            .await?;
    }
    let mut tasks = Vec::new();
    for chunk in 0..8 {
        let admin = admin.clone();
        let spaces = spaces.clone();
        tasks.push(tokio::spawn(async move {
            for i in (chunk..n).step_by(8) {
                let ns = &spaces[i % spaces.len()];
                let roles: Api<Role> = Api::namespaced(admin.clone(), ns);
                let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), ns);
                let role = serde_json::json!({"metadata": {"name": format!("role-{i}")}, "rules": [
                    {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list"]},
                    {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": [format!("d-{i}")], "verbs": ["update"]},
                    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]});
                roles.create(&PostParams::default(), &serde_json::from_value(role)?).await?;
                let binding = serde_json::json!({"metadata": {"name": format!("binding-{i}")},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role-{i}")},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": format!("user-{i}")},
                                 {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": format!("team-{}", i % 50)}]});
                bindings.create(&PostParams::default(), &serde_json::from_value(binding)?).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

struct AuthzRun {
    masters: f64,
    masters_after: f64,
    few: f64,
    many: f64,
    few_p99: f64,
    many_p99: f64,
}

/// The three measures on one API server: creates as `system:masters`, as `writer`
/// (bound to a Role that may create config maps in `default`), then as `writer` after 1,000 Roles and
/// RoleBindings are stored.
async fn authz_side(admin: &kube::Client, writer: &kube::Client, runs: usize, tag: &str) -> anyhow::Result<AuthzRun> {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    // A role of its own (kube's `edit` is aggregated by kube-controller-manager, which
    // the baseline runs without).
    let role = serde_json::json!({"metadata": {"name": "writer"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list"]}]});
    Api::<Role>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &serde_json::from_value(role)?)
        .await?;
    let binding = serde_json::json!({"metadata": {"name": "writer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "writer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "writer"}]});
    Api::<RoleBinding>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &serde_json::from_value(binding)?)
        .await?;
    // RBAC caches catch up (kube-apiserver's informers), and connections are warm.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    while creates(writer, 1, 1, &format!("{tag}-probe-{attempt}")).await.is_err() {
        attempt += 1;
        anyhow::ensure!(Instant::now() < deadline, "the writer's binding never acted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    creates(writer, 32, 320, &format!("{tag}-warm")).await?;
    let (mut masters, mut few, mut many, mut few_p99, mut many_p99) = (vec![], vec![], vec![], vec![], vec![]);
    for r in 0..runs {
        masters.push(creates(admin, 32, 3200, &format!("{tag}-m{r}")).await?.per_sec);
        let run = creates(writer, 32, 3200, &format!("{tag}-a{r}")).await?;
        few.push(run.per_sec);
        few_p99.push(run.p99_ms);
    }
    many_roles(admin, 1000).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut masters_after = Vec::new();
    for r in 0..runs {
        masters_after.push(creates(admin, 32, 3200, &format!("{tag}-n{r}")).await?.per_sec);
        let run = creates(writer, 32, 3200, &format!("{tag}-b{r}")).await?;
        many.push(run.per_sec);
        many_p99.push(run.p99_ms);
    }
    Ok(AuthzRun {
        masters: median(masters),
        masters_after: median(masters_after),
        few: median(few),
        many: median(many),
        few_p99: median(few_p99),
        many_p99: median(many_p99),
    })
}

/// `vkube bench --suite authz`: what RBAC costs a write, on vkube and on the real
/// kube-apiserver in the same run. ConfigMap creates from 32 clients as a user bound to
/// a Role in `default` (RBAC decides every request), then again after 1,000 Roles and
/// 1,000 RoleBindings for other users are stored; and the same creates as
/// `system:masters` (no RBAC lookup) for scale.
///
/// # Errors
/// If a server cannot start or a request fails.
pub async fn authorization(runs: usize) -> anyhow::Result<()> {
    let mut sides = Vec::new();
    let dir = tempfile::tempdir()?;
    let server = boot(true, dir.path()).await?;
    let admin = client_for(&server).await?;
    let writer = vkube_controllers::util::client_from_kubeconfig(&server.kubeconfig_as("writer", &[])?).await?;
    sides.push(("vkube, sqlite (durable)", authz_side(&admin, &writer, runs, "vk").await?));
    server.shutdown().await;
    if let Some(real) = RealBaseline::start().await? {
        let read = |f: &str| std::fs::read_to_string(real.dir.path().join("pki").join(f));
        let ca = vkube_apiserver::pki::CertPair { cert_pem: read("ca.crt")?, key_pem: read("ca.key")? };
        let pair = vkube_apiserver::pki::issue_client_by(&ca, "writer", &[])?;
        let kc = std::fs::read_to_string(real.dir.path().join("admin.kubeconfig"))?;
        let url = kc.lines().find_map(|l| l.trim().strip_prefix("server: ")).context("server in kubeconfig")?;
        let text =
            vkube_apiserver::pki::kubeconfig("real", url, &ca.cert_pem, vkube_apiserver::pki::Credential::Cert(&pair));
        let writer = vkube_controllers::util::client_from_kubeconfig(&text).await?;
        sides.push(("kube-apiserver 1.36 on etcd (baseline)", authz_side(&real.client, &writer, runs, "kube").await?));
        real.stop();
    }
    println!("| measure | {} |", sides.iter().map(|(l, _)| *l).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---|".repeat(sides.len()));
    let row = |name: &str, f: &dyn Fn(&AuthzRun) -> String| {
        println!("| {name} | {} |", sides.iter().map(|(_, r)| f(r)).collect::<Vec<_>>().join(" | "));
    };
    row("creates/s, 32 clients, as system:masters (no RBAC lookup)", &|r| format!("{:.0}", r.masters));
    row("creates/s as a user bound to a Role, default policy only", &|r| {
        format!("{:.0} (p99 {:.2} ms)", r.few, r.few_p99)
    });
    row("creates/s as that user, 1,000 Roles + 1,000 RoleBindings stored", &|r| {
        format!("{:.0} (p99 {:.2} ms)", r.many, r.many_p99)
    });
    row("creates/s as system:masters after, as a control (the store holds more)", &|r| {
        format!("{:.0}", r.masters_after)
    });
    row("cost of the 1,000 roles and bindings", &|r| format!("{:.1} %", (r.few - r.many) / r.few * 100.0));
    row("the same, net of the store's growth (against the system:masters control)", &|r| {
        format!("{:.1} %", (r.few / r.masters - r.many / r.masters_after) / (r.few / r.masters) * 100.0)
    });
    row("cost of RBAC at all (user vs system:masters)", &|r| {
        format!("{:.1} %", (r.masters - r.few) / r.masters * 100.0)
    });
    if let [(_, ours), (_, theirs)] = &sides[..] {
        println!("| creates/s ratio with 1,000 roles, vkube / kube-apiserver | {:.2} |", ours.many / theirs.many);
    }
    Ok(())
}

/// Run the benchmarks and print a Markdown table.
///
/// # Errors
/// If a server cannot start or a request fails.
pub async fn run(runs: usize, pods: usize) -> anyhow::Result<()> {
    let mut rows: Vec<(String, String)> = Vec::new();
    let real = RealBaseline::start().await?;
    let mut rates: HashMap<&str, f64> = HashMap::new();
    for target in ["sqlite", "memory", "kube-apiserver"] {
        let label = match target {
            "sqlite" => "vkube, sqlite (durable)",
            "memory" => "vkube, memory",
            _ => "kube-apiserver 1.36 on etcd (baseline)",
        };
        let (mut rate, mut p50, mut p99, mut get_ms) = (vec![], vec![], vec![], vec![]);
        for r in 0..runs {
            let dir = tempfile::tempdir()?;
            let (server, client) = match (target, &real) {
                ("kube-apiserver", Some(real)) => (None, real.client.clone()),
                ("kube-apiserver", None) => break,
                _ => {
                    let server = boot(target == "sqlite", dir.path()).await?;
                    let client = client_for(&server).await?;
                    (Some(server), client)
                }
            };
            let run = creates(&client, 32, 3200, &format!("r{r}")).await?;
            rate.push(run.per_sec);
            p50.push(run.p50_ms);
            p99.push(run.p99_ms);
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
            let mut lats = Vec::new();
            for i in 0..500 {
                let t = Instant::now();
                api.get(&format!("r{r}-0-{}", i % 100)).await?;
                lats.push(t.elapsed());
            }
            get_ms.push(percentile(&mut lats, 0.5).as_secs_f64() * 1000.0);
            if let Some(server) = server {
                server.shutdown().await;
            }
        }
        if rate.is_empty() {
            continue;
        }
        rates.insert(target, median(rate.clone()));
        rows.push((format!("creates/s, 32 clients ({label})"), format!("{:.0}", median(rate))));
        rows.push((format!("create p50 / p99 ms ({label})"), format!("{:.2} / {:.2}", median(p50), median(p99))));
        rows.push((format!("get p50 ms ({label})"), format!("{:.2}", median(get_ms))));
    }
    if let (Some(ours), Some(theirs)) = (rates.get("sqlite"), rates.get("kube-apiserver")) {
        rows.push(("creates/s ratio, vkube sqlite / kube-apiserver".into(), format!("{:.2}", ours / theirs)));
    }
    // The same pods in the baseline: its list time and memory.
    let (mut baseline_list, mut baseline_rss) = (None, None);
    if let Some(real) = real {
        create_pods(&real.client, pods).await?;
        let raw = raw_pod_lists(&real.client, runs.max(3), pods / 32 * 32).await?;
        let list = median(raw);
        rows.push((
            format!("list {} pods, raw JSON over HTTPS, ms (kube-apiserver baseline)", pods / 32 * 32),
            format!("{list:.1}"),
        ));
        let rss = real.rss_mib();
        rows.push((
            format!("RSS MiB of kube-apiserver + etcd with {pods} pods stored (baseline)"),
            format!("{rss:.0}"),
        ));
        baseline_rss = Some(rss);
        baseline_list = Some(list);
        real.stop();
    }
    // List of many pods, watch fan-out, RSS (durable store).
    let dir = tempfile::tempdir()?;
    let server = boot(true, dir.path()).await?;
    let client = client_for(&server).await?;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rss_before = rss_mib();
    create_pods(&client, pods).await?;
    let mut list_ms = Vec::new();
    let mut count = 0;
    for _ in 0..runs.max(3) {
        let t = Instant::now();
        let l = pods_api.list(&ListParams::default()).await?;
        list_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        count = l.items.len();
    }
    rows.push((
        format!("list {count} pods, typed kube-rs client incl. decoding, ms (median)"),
        format!("{:.1}", median(list_ms)),
    ));
    let raw_ms = median(raw_pod_lists(&client, runs.max(3), count).await?);
    rows.push((format!("list {count} pods, raw JSON over HTTPS, ms (median)"), format!("{raw_ms:.1}")));
    if let Some(theirs) = baseline_list {
        rows.push(("raw list time ratio, vkube / kube-apiserver".into(), format!("{:.2}", raw_ms / theirs)));
    }
    let _ = rss_before;
    let rss = server_process_rss(pods).await?;
    rows.push((
        format!("RSS MiB of a separate `vkube apiserver` process with {pods} pods stored"),
        format!("{rss:.0}"),
    ));
    if let Some(theirs) = baseline_rss {
        rows.push(("RSS ratio, vkube / (kube-apiserver + etcd)".into(), format!("{:.2}", rss / theirs)));
    }
    // Watch fan-out: 100 watchers, 500 events each.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms.list(&ListParams::default().limit(1)).await?.metadata.resource_version.unwrap_or_default();
    let mut watchers = Vec::new();
    for _ in 0..100 {
        let api = cms.clone();
        let rv = rv.clone();
        watchers.push(tokio::spawn(async move {
            use futures::StreamExt;
            let mut s = api.watch(&WatchParams::default().timeout(60), &rv).await?.boxed();
            let mut n = 0;
            while n < 500 {
                match s.next().await {
                    Some(Ok(kube::api::WatchEvent::Added(_))) => n += 1,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(anyhow::anyhow!(e)),
                    None => break,
                }
            }
            Ok::<_, anyhow::Error>(n)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    creates(&client, 10, 500, "fan").await?;
    let mut delivered = 0;
    for w in watchers {
        delivered += w.await??;
    }
    rows.push((
        "watch fan-out: 500 creates to 100 watchers, s until all delivered".into(),
        format!("{:.2} ({delivered} events)", t.elapsed().as_secs_f64()),
    ));
    server.shutdown().await;
    println!("| measure | value |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}

/// CPU seconds (user + system) a process has used so far.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may hold spaces) start at field 3; utime and
    // stime are fields 14 and 15, in clock ticks of 1/100 s on Linux.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A child process killed when dropped.
pub(crate) struct Killed(pub(crate) std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One server under the peer suite's load: its kubeconfig, its processes (name, pid),
/// and what must live as long as it.
struct PeerTarget {
    label: &'static str,
    kubeconfig: std::path::PathBuf,
    procs: Vec<(String, u32)>,
    _keep: Vec<Box<dyn std::any::Any>>,
}

/// `vkube apiserver` as a child process on `dir`, with `extra` flags.
fn vkube_apiserver(dir: &std::path::Path, extra: &[String]) -> anyhow::Result<Killed> {
    let mut args = ["apiserver", "--listen", "127.0.0.1:0", "--data-dir"].map(String::from).to_vec();
    args.push(dir.display().to_string());
    args.extend_from_slice(extra);
    Ok(Killed(spawn_ready(&args)?.0))
}

#[cfg(feature = "bench-etcd")]
fn vkube_on_etcd() -> anyhow::Result<Vec<PeerTarget>> {
    let mut targets = Vec::new();
    for (label, cache) in [("vkube on etcd", "true"), ("vkube on etcd, no watch cache", "false")] {
        let etcd = vkube_etcdkit::EtcdCluster::start(1)?;
        let dir = tempfile::tempdir()?;
        let endpoints = etcd.endpoints().join(",");
        let flags = ["--etcd-servers".into(), endpoints, format!("--watch-cache={cache}")];
        let server = vkube_apiserver(dir.path(), &flags)?;
        let mut procs = vec![("vkube apiserver".to_string(), server.0.id())];
        procs.extend(etcd.pids().into_iter().map(|p| ("etcd".to_string(), p)));
        targets.push(PeerTarget {
            label,
            kubeconfig: dir.path().join("admin.kubeconfig"),
            procs,
            _keep: vec![Box::new(server), Box::new(etcd), Box::new(dir)],
        });
    }
    Ok(targets)
}

#[cfg(not(feature = "bench-etcd"))]
fn vkube_on_etcd() -> anyhow::Result<Vec<PeerTarget>> {
    eprintln!(
        "built without the bench-etcd feature: no vkube-on-etcd column (cargo build --release -p vkube --features bench-etcd)"
    );
    Ok(Vec::new())
}

/// Run `vkube load` (a process of its own) against a kubeconfig.
fn load(
    kubeconfig: &std::path::Path,
    mode: &str,
    count: usize,
    prefix: &str,
) -> anyhow::Result<crate::load::LoadResult> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["load", "--mode", mode, "--count", &count.to_string(), "--prefix", prefix, "--kubeconfig"])
        .arg(kubeconfig)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "vkube load --mode {mode} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| format!("vkube load printed {text}"))
}

/// `vkube bench --suite peer`: one external client process (`vkube load`, 32
/// connections) against separate server processes in one run — vkube on SQLite, vkube
/// on a one-member etcd (with the bench-etcd feature), and the real kube-apiserver on
/// its etcd — with the same requests: ConfigMap creates with unique names, gets, a list
/// of `pods` pods, watch fan-out, the servers' CPU per 1,000 creates, and the RSS of
/// every process. Prints a Markdown table; each figure is the median of `runs`.
///
/// # Errors
/// If a server cannot start or a load run fails.
pub async fn peer(runs: usize, pods: usize) -> anyhow::Result<()> {
    let runs = runs.max(1);
    let mut targets = Vec::new();
    let dir = tempfile::tempdir()?;
    let sqlite = vkube_apiserver(dir.path(), &[])?;
    targets.push(PeerTarget {
        label: "vkube on SQLite",
        kubeconfig: dir.path().join("admin.kubeconfig"),
        procs: vec![("vkube apiserver".into(), sqlite.0.id())],
        _keep: vec![Box::new(sqlite), Box::new(dir)],
    });
    targets.extend(vkube_on_etcd()?);
    if let Some(real) = RealBaseline::start().await? {
        targets.push(PeerTarget {
            label: "kube-apiserver 1.36 on etcd",
            kubeconfig: real.dir.path().join("admin.kubeconfig"),
            procs: real.procs.clone(),
            _keep: vec![Box::new(real)],
        });
    }
    let creates_per_run = 6400;
    let mut columns: Vec<Vec<(String, String)>> = Vec::new();
    let (mut rates, mut lists) = (Vec::new(), Vec::new());
    for t in &targets {
        eprintln!("peer: {}", t.label);
        let cpu = || t.procs.iter().map(|(_, p)| cpu_seconds(*p)).sum::<f64>();
        let (mut rate, mut p50, mut p99, mut cpu_k, mut get50, mut get99) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for r in 0..runs {
            let before = cpu();
            let c = load(&t.kubeconfig, "creates", creates_per_run, &format!("r{r}"))?;
            cpu_k.push((cpu() - before) / c.requests.max(1) as f64 * 1000.0);
            rate.push(c.per_sec);
            p50.push(c.p50_ms);
            p99.push(c.p99_ms);
            let g = load(&t.kubeconfig, "gets", creates_per_run, &format!("r{r}"))?;
            get50.push(g.p50_ms);
            get99.push(g.p99_ms);
        }
        load(&t.kubeconfig, "pods", pods, "p")?;
        let etcd_cpu = || t.procs.iter().filter(|(n, _)| n == "etcd").map(|(_, p)| cpu_seconds(*p)).sum::<f64>();
        let before = etcd_cpu();
        let list = load(&t.kubeconfig, "lists", runs.max(3), "p")?;
        let fan = load(&t.kubeconfig, "fanout", 500, "fan")?;
        let etcd_reads = etcd_cpu() - before;
        let rate = median(rate);
        rates.push(rate);
        lists.push(list.p50_ms);
        let mut col = vec![
            ("creates/s, 32 connections".to_string(), format!("{rate:.0}")),
            ("create p50 / p99 ms".into(), format!("{:.2} / {:.2}", median(p50), median(p99))),
            ("server CPU s per 1,000 creates".into(), format!("{:.2}", median(cpu_k))),
            ("get p50 / p99 ms, 32 connections".into(), format!("{:.2} / {:.2}", median(get50), median(get99))),
            (format!("list of {pods} pods, raw JSON, ms (median)"), format!("{:.1}", list.p50_ms)),
            ("watch fan-out: 500 creates to 100 watchers, s".into(), format!("{:.2}", fan.seconds)),
        ];
        if t.procs.iter().any(|(n, _)| n == "etcd") {
            col.push(("etcd CPU s during the lists and the fan-out".into(), format!("{etcd_reads:.2}")));
        }
        let mut total = 0.0;
        for (name, pid) in &t.procs {
            let rss = rss_of(*pid);
            total += rss;
            col.push((format!("RSS MiB, {name}"), format!("{rss:.0}")));
        }
        col.push(("RSS MiB, all processes".into(), format!("{total:.0}")));
        columns.push(col);
    }
    // One table: a row per measure, a column per server (rows may differ by process name).
    let mut names: Vec<String> = Vec::new();
    for col in &columns {
        for (k, _) in col {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let header: Vec<&str> = targets.iter().map(|t| t.label).collect();
    println!("| measure | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(header.len()));
    for name in names {
        let cells: Vec<String> = columns
            .iter()
            .map(|col| col.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()).unwrap_or_else(|| "—".into()))
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    // Ratios against the first column (vkube on SQLite), each server in the same run.
    if targets.len() > 1 {
        println!();
        for (i, t) in targets.iter().enumerate().skip(1) {
            println!(
                "{}: creates/s {:.2}× of vkube on SQLite's, list {:.2}× its time",
                t.label,
                rates[i] / rates[0].max(1e-9),
                lists[i] / lists[0].max(1e-9)
            );
        }
    }
    Ok(())
}
