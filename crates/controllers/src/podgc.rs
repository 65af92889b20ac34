//! Pod garbage collection, as kube-controller-manager's `pod-garbage-collector`: every
//! 20 s it deletes
//! - pods bound to a node that no longer exists (after it has been gone for a 40 s
//!   quarantine and a fresh read confirms it): marked `Failed` with a `DisruptionTarget`
//!   condition (`DeletionByPodGC`, "PodGC: node no longer exists"), then deleted at once;
//! - pods being deleted that were never scheduled (nothing would ever finish them);
//! - the oldest finished (`Succeeded`/`Failed`) pods beyond the threshold (12,500, kube's
//!   `--terminated-pod-gc-threshold`).
//!
//! What it needs of each pod is kept slim from one watch (not whole pods), so it costs
//! little memory with tens of thousands of pods.

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The collector's settings (kube-controller-manager's defaults).
#[derive(Debug, Clone)]
pub struct PodGcConfig {
    /// Finished pods kept before the oldest go (0: never by count).
    pub terminated_threshold: usize,
    /// Time between passes.
    pub period: Duration,
    /// How long a node must have been gone before its pods are.
    pub quarantine: Duration,
}

impl Default for PodGcConfig {
    fn default() -> Self {
        PodGcConfig {
            terminated_threshold: 12_500,
            period: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
        }
    }
}

/// What the collector keeps of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slim {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid (deletes are preconditioned on it).
    pub uid: String,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// `Succeeded` or `Failed`.
    pub terminal: bool,
    /// Has a deletion timestamp.
    pub deleting: bool,
    /// Creation time.
    pub created: Option<Timestamp>,
}

impl Slim {
    fn of(pod: &Pod) -> Self {
        let m = &pod.metadata;
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        Slim {
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
            terminal: matches!(phase, Some("Succeeded" | "Failed")),
            deleting: m.deletion_timestamp.is_some(),
            created: m.creation_timestamp.as_ref().map(|t| t.0),
        }
    }

    fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }
}

/// One pass's decisions.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The oldest finished pods beyond the threshold.
    pub terminated: Vec<Slim>,
    /// Pods on nodes gone longer than the quarantine (to confirm, then mark and delete).
    pub orphaned: Vec<Slim>,
    /// Pods being deleted that were never scheduled.
    pub unscheduled_terminating: Vec<Slim>,
}

/// Decide a pass. `gone_since` holds when each missing node was first seen missing;
/// it is updated (a node seen again, or no longer used, leaves it).
pub fn plan(
    pods: &HashMap<(String, String), Slim>,
    nodes: &HashSet<String>,
    gone_since: &mut HashMap<String, Instant>,
    now: Instant,
    cfg: &PodGcConfig,
) -> Plan {
    let mut out = Plan::default();
    let mut finished: Vec<&Slim> = pods.values().filter(|p| p.terminal && !p.deleting).collect();
    if cfg.terminated_threshold > 0 && finished.len() > cfg.terminated_threshold {
        finished.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
        let excess = finished.len() - cfg.terminated_threshold;
        out.terminated = finished.into_iter().take(excess).cloned().collect();
    }
    let mut missing = HashSet::new();
    for p in pods.values() {
        match &p.node {
            Some(node) if !nodes.contains(node) => {
                missing.insert(node.clone());
                let since = *gone_since.entry(node.clone()).or_insert(now);
                if now.duration_since(since) >= cfg.quarantine {
                    out.orphaned.push(p.clone());
                }
            }
            None if p.deleting => out.unscheduled_terminating.push(p.clone()),
            _ => {}
        }
    }
    gone_since.retain(|node, _| missing.contains(node));
    for list in [&mut out.terminated, &mut out.orphaned, &mut out.unscheduled_terminating] {
        list.sort_by_key(Slim::key);
    }
    out
}

async fn delete_now(client: &kube::Client, p: &Slim) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some(p.uid.clone()), resource_version: None }),
        ..Default::default()
    };
    match api.delete(&p.name, &dp).await {
        Ok(_) => Ok(()),
        // Gone already, or a new pod under the name: not ours.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A pod of a node that is gone: `Failed` with the condition saying why, then deleted.
async fn delete_orphan(client: &kube::Client, p: &Slim) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
    let condition = serde_json::json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
        "message": "PodGC: node no longer exists", "lastTransitionTime": Timestamp::now().to_string()});
    let mut status = serde_json::json!({"conditions": [condition]});
    if !p.terminal {
        status["phase"] = "Failed".into();
    }
    let patch = Patch::Strategic(serde_json::json!({"status": status}));
    match api.patch_status(&p.name, &PatchParams::default(), &patch).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e),
    }
    delete_now(client, p).await
}

async fn pass(client: &kube::Client, plan: Plan) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut confirmed: HashMap<String, bool> = HashMap::new();
    for p in &plan.orphaned {
        let Some(node) = &p.node else { continue };
        // A fresh read: a node back (or a cache behind) keeps its pods.
        let gone = match confirmed.get(node) {
            Some(g) => *g,
            None => {
                let g = match nodes.get_opt(node).await {
                    Ok(n) => n.is_none(),
                    Err(e) => {
                        tracing::warn!(node, error = %e, "pod GC: cannot confirm the node is gone; keeping its pods");
                        false
                    }
                };
                confirmed.insert(node.clone(), g);
                g
            }
        };
        if gone {
            tracing::info!(pod = %format!("{}/{}", p.namespace, p.name), node, "deleting a pod of a node that no longer exists");
            if let Err(e) = delete_orphan(client, p).await {
                tracing::warn!(pod = %p.name, error = %e, "pod GC: orphaned pod not deleted (next pass retries)");
            }
        }
    }
    for p in plan.unscheduled_terminating.iter().chain(&plan.terminated) {
        if let Err(e) = delete_now(client, p).await {
            tracing::warn!(pod = %p.name, error = %e, "pod GC: pod not deleted (next pass retries)");
        }
    }
}

/// Run until aborted.
pub async fn run(client: kube::Client, cfg: PodGcConfig) {
    let pods_api: Api<Pod> = Api::all(client.clone());
    let nodes_api: Api<Node> = Api::all(client.clone());
    let mut pod_events = watcher(pods_api, watcher::Config::default()).default_backoff().boxed();
    let mut node_events = watcher(nodes_api, watcher::Config::default()).default_backoff().boxed();
    let (mut pods, mut pods_next): (HashMap<(String, String), Slim>, HashMap<_, _>) = Default::default();
    let (mut nodes, mut nodes_next): (HashSet<String>, HashSet<String>) = Default::default();
    let (mut pods_ready, mut nodes_ready) = (false, false);
    let mut gone_since = HashMap::new();
    let mut tick = tokio::time::interval(cfg.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = pod_events.next() => match ev {
                Some(Ok(watcher::Event::Apply(p))) => { let s = Slim::of(&p); pods.insert(s.key(), s); }
                Some(Ok(watcher::Event::Delete(p))) => { pods.remove(&Slim::of(&p).key()); }
                Some(Ok(watcher::Event::Init)) => pods_next.clear(),
                Some(Ok(watcher::Event::InitApply(p))) => { let s = Slim::of(&p); pods_next.insert(s.key(), s); }
                Some(Ok(watcher::Event::InitDone)) => { pods = std::mem::take(&mut pods_next); pods_ready = true; }
                Some(Err(e)) => tracing::warn!(error = %e, "pod GC: pod watch failed (retried)"),
                None => return,
            },
            ev = node_events.next() => match ev {
                Some(Ok(watcher::Event::Apply(n))) => { nodes.insert(n.metadata.name.unwrap_or_default()); }
                Some(Ok(watcher::Event::Delete(n))) => { nodes.remove(n.metadata.name.as_deref().unwrap_or_default()); }
                Some(Ok(watcher::Event::Init)) => nodes_next.clear(),
                Some(Ok(watcher::Event::InitApply(n))) => { nodes_next.insert(n.metadata.name.unwrap_or_default()); }
                Some(Ok(watcher::Event::InitDone)) => { nodes = std::mem::take(&mut nodes_next); nodes_ready = true; }
                Some(Err(e)) => tracing::warn!(error = %e, "pod GC: node watch failed (retried)"),
                None => return,
            },
            _ = tick.tick() => {
                // Only on complete views: half a node list would orphan every pod.
                if pods_ready && nodes_ready {
                    let plan = plan(&pods, &nodes, &mut gone_since, Instant::now(), &cfg);
                    pass(&client, plan).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, terminal: bool, deleting: bool, created: &str) -> Slim {
        Slim {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            node: node.map(String::from),
            terminal,
            deleting,
            created: created.parse().ok(),
        }
    }

    #[test]
    fn orphans_wait_out_the_quarantine_and_the_oldest_finished_go_first() {
        let cfg = PodGcConfig { terminated_threshold: 2, ..Default::default() };
        let pods: HashMap<_, _> = [
            pod("on-live", Some("n1"), false, false, "2026-12-04T10:00:00Z"),
            pod("on-gone", Some("gone"), false, false, "2026-12-04T10:00:00Z"),
            pod("done-old", Some("n1"), true, false, "2026-12-04T09:00:00Z"),
            pod("done-mid", Some("n1"), true, false, "2026-12-04T09:30:00Z"),
            pod("done-new", Some("n1"), true, false, "2026-12-04T09:45:00Z"),
            pod("never-scheduled", None, false, true, "2026-12-04T10:00:00Z"),
            pod("pending", None, false, false, "2026-12-04T10:00:00Z"),
        ]
        .into_iter()
        .map(|p| (p.key(), p))
        .collect();
        let nodes: HashSet<String> = ["n1".to_string()].into();
        let mut gone = HashMap::new();
        let t0 = Instant::now();
        let first = plan(&pods, &nodes, &mut gone, t0, &cfg);
        assert!(first.orphaned.is_empty(), "orphaned before the quarantine: {first:?}");
        assert_eq!(first.terminated.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["done-old"]);
        assert_eq!(
            first.unscheduled_terminating.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["never-scheduled"]
        );
        let later = plan(&pods, &nodes, &mut gone, t0 + cfg.quarantine, &cfg);
        assert_eq!(later.orphaned.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["on-gone"]);
        // The node comes back: the clock starts again if it goes once more.
        let back: HashSet<String> = ["n1".to_string(), "gone".to_string()].into();
        assert!(plan(&pods, &back, &mut gone, t0 + cfg.quarantine * 2, &cfg).orphaned.is_empty());
        assert!(gone.is_empty());
        assert!(plan(&pods, &nodes, &mut gone, t0 + cfg.quarantine * 3, &cfg).orphaned.is_empty());
    }
}
