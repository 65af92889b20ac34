//! `vkube load`: the client of `vkube bench --suite peer`, in a process of its own. The
//! server under test and its client then share the machine as two processes, as a
//! server and an HTTP load tool do, and the client costs the same whichever server it
//! loads. Every connection is its own kube-rs client (one TLS connection each); the
//! request bodies are built before the clock starts. It prints one JSON line of results.

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, WatchEvent, WatchParams};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `vkube load` flags.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Kubeconfig of the server under load.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// `creates` (ConfigMaps with unique names), `gets` (of those), `pods` (creates),
    /// `lists` (of the default namespace's pods, raw JSON) or `fanout` (watchers, then
    /// creates, until every watcher saw every create).
    #[arg(long)]
    mode: String,
    /// Connections, each a client of its own.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests in all (creates, gets, pods, lists); creates each watcher must see (fanout).
    #[arg(long)]
    count: usize,
    /// Names are PREFIX-CONNECTION-I.
    #[arg(long, default_value = "load")]
    prefix: String,
    /// Watchers (fanout).
    #[arg(long, default_value_t = 100)]
    watchers: usize,
}

/// What one load run measured.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Default)]
pub struct LoadResult {
    /// Requests that succeeded (events delivered, for fanout).
    pub requests: usize,
    /// Wall time of the run.
    pub seconds: f64,
    /// Requests per second.
    pub per_sec: f64,
    /// Latency percentiles, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default().as_secs_f64() * 1000.0
}

fn result(mut lat: Vec<Duration>, elapsed: Duration) -> LoadResult {
    lat.sort();
    let seconds = elapsed.as_secs_f64();
    LoadResult {
        requests: lat.len(),
        seconds,
        per_sec: lat.len() as f64 / seconds.max(1e-9),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        max_ms: percentile(&lat, 1.0),
    }
}

async fn clients(kubeconfig: &PathBuf, n: usize) -> anyhow::Result<Vec<kube::Client>> {
    let kc =
        kube::config::Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    (0..n.max(1)).map(|_| kube::Client::try_from(config.clone()).map_err(anyhow::Error::from)).collect()
}

/// Connection `c`'s part of `count` requests over `connections`: the remainder goes to
/// the first connections, so the parts add up to `count`.
fn share(count: usize, connections: usize, c: usize) -> usize {
    let n = connections.max(1);
    count / n + usize::from(c < count % n)
}

/// One request of a closed loop: method, path and body.
type Request = (http::Method, String, Vec<u8>);

/// Every connection sends its requests one after the other; all connections at once.
async fn closed_loop(clients: Vec<kube::Client>, requests: Vec<Vec<Request>>) -> anyhow::Result<LoadResult> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (client, reqs) in clients.into_iter().zip(requests) {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(reqs.len());
            for (method, path, body) in reqs {
                let mut req = http::Request::builder().method(method).uri(path);
                if !body.is_empty() {
                    req = req.header(http::header::CONTENT_TYPE, "application/json");
                }
                let req = req.body(body)?;
                let t = Instant::now();
                client.request_text(req).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(result(all, started.elapsed()))
}

fn config_map(name: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}
    }))
    .unwrap_or_default()
}

fn pod(name: &str, shard: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "shard": shard.to_string()}},
        "spec": {"containers": [{"name": "c", "image": "registry.example/app:1.0",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    }))
    .unwrap_or_default()
}

/// Run the load the flags describe and print its [`LoadResult`] as JSON.
///
/// # Errors
/// An unknown mode, an unreadable kubeconfig, or a request the server refuses.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let cms = "/api/v1/namespaces/default/configmaps";
    let pods = "/api/v1/namespaces/default/pods";
    let for_each = |f: &dyn Fn(usize, usize) -> Request| -> Vec<Vec<Request>> {
        (0..args.connections).map(|c| (0..share(args.count, args.connections, c)).map(|i| f(c, i)).collect()).collect()
    };
    let p = &args.prefix;
    let out = match args.mode.as_str() {
        "creates" => {
            let reqs = for_each(&|c, i| (http::Method::POST, cms.to_string(), config_map(&format!("{p}-{c}-{i}"))));
            closed_loop(clients(&args.kubeconfig, args.connections).await?, reqs).await?
        }
        "gets" => {
            // Of the objects a `creates` run with the same prefix made.
            let reqs = for_each(&|c, i| (http::Method::GET, format!("{cms}/{p}-{c}-{i}"), Vec::new()));
            closed_loop(clients(&args.kubeconfig, args.connections).await?, reqs).await?
        }
        "pods" => {
            let reqs = for_each(&|c, i| (http::Method::POST, pods.to_string(), pod(&format!("{p}-{c}-{i}"), c)));
            closed_loop(clients(&args.kubeconfig, args.connections).await?, reqs).await?
        }
        "lists" => {
            let reqs = vec![(0..args.count).map(|_| (http::Method::GET, pods.to_string(), Vec::new())).collect()];
            closed_loop(clients(&args.kubeconfig, 1).await?, reqs).await?
        }
        "fanout" => fanout(&args).await?,
        other => anyhow::bail!("--mode: unknown mode {other} (creates, gets, pods, lists, fanout)"),
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

/// `watchers` watches of the default namespace's ConfigMaps, each on its own connection;
/// once every one is open, `count` creates from `connections` writers. The result's
/// seconds run from the first create until the last watcher saw its last event; its
/// latencies are each watcher's time to see them all.
async fn fanout(args: &LoadArgs) -> anyhow::Result<LoadResult> {
    let watch_clients = clients(&args.kubeconfig, args.watchers).await?;
    let api: Api<ConfigMap> = Api::namespaced(watch_clients[0].clone(), "default");
    let rv = api.list_metadata(&kube::api::ListParams::default().limit(1)).await?.metadata.resource_version;
    let rv = rv.unwrap_or_default();
    let (opened, mut all_open) = tokio::sync::mpsc::channel::<()>(args.watchers.max(1));
    let (go, _) = tokio::sync::broadcast::channel::<Instant>(1);
    let mut watchers = Vec::new();
    for client in watch_clients {
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let want = args.count;
        let (rv, opened, mut start) = (rv.clone(), opened.clone(), go.subscribe());
        let prefix = format!("{}-", args.prefix);
        watchers.push(tokio::spawn(async move {
            let mut events = api.watch(&WatchParams::default().timeout(290), &rv).await?.boxed();
            opened.send(()).await.ok();
            let started = start.recv().await?;
            let mut seen = 0;
            while seen < want {
                match events.next().await {
                    Some(Ok(WatchEvent::Added(cm)))
                        if cm.metadata.name.as_deref().is_some_and(|n| n.starts_with(&prefix)) =>
                    {
                        seen += 1
                    }
                    Some(Ok(WatchEvent::Error(e))) => anyhow::bail!("watch ended: {}", e.message),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(anyhow::anyhow!(e)),
                    None => anyhow::bail!("watch closed after {seen} of {want} events"),
                }
            }
            Ok::<_, anyhow::Error>(started.elapsed())
        }));
    }
    drop(opened);
    for _ in 0..args.watchers {
        all_open.recv().await.context("a watcher failed to open")?;
    }
    let writers = clients(&args.kubeconfig, args.connections).await?;
    let reqs = (0..args.connections)
        .map(|c| {
            (0..share(args.count, args.connections, c))
                .map(|i| {
                    (
                        http::Method::POST,
                        "/api/v1/namespaces/default/configmaps".to_string(),
                        config_map(&format!("{}-{c}-{i}", args.prefix)),
                    )
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    go.send(started).ok();
    closed_loop(writers, reqs).await?;
    let mut lat = Vec::new();
    for w in watchers {
        lat.push(w.await??);
    }
    let elapsed = started.elapsed();
    let mut out = result(lat, elapsed);
    out.requests = args.watchers * args.count;
    out.per_sec = out.requests as f64 / elapsed.as_secs_f64().max(1e-9);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up_to_the_count() {
        for (count, n) in [(10_000, 32), (500, 32), (5, 32), (0, 4), (7, 0)] {
            let total: usize = (0..n.max(1)).map(|c| share(count, n, c)).sum();
            assert_eq!(total, count, "{count} over {n}");
        }
    }
}
