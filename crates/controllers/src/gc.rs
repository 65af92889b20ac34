//! Garbage collection by ownerReferences: dependents whose owners are all gone are
//! deleted (background propagation); an owner deleted in the foreground
//! (`foregroundDeletion` finalizer) has its dependents deleted first; an owner deleted
//! with `orphan` propagation has its dependents released.
//!
//! # How it works
//! Like kube-controller-manager's collector, it keeps a graph of every object's
//! identity, owners and deletion state, fed by one metadata-only watch per listable
//! resource (Events aside), rediscovered every 15 s so custom resources join. A pass
//! over the graph runs after changes (at most once per `period`) and every 30 s; it
//! costs no API calls unless there is something to do. Memory is a few hundred bytes
//! per object, and nothing is listed periodically.
//!
//! # Invariants
//! - A dependent is deleted only after a GET of each owner confirmed it gone (or
//!   replaced under the same name by another uid), so an owner the graph has not seen
//!   yet (created between two watch events, or of a resource still listing) is never
//!   taken for missing.
//! - Owners of a resource whose watch has not finished its first list are waited for.
//!
//! # Caveats
//! Foreground deletion waits for every dependent, not only those with
//! `blockOwnerDeletion`.

use crate::util::pp;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch};
use kube::core::PartialObjectMeta;
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often the set of resources is rediscovered.
const DISCOVERY_PERIOD: Duration = Duration::from_secs(15);
/// How often while an owner reference names a kind not discovered yet (a custom
/// resource just defined): like a REST mapper that refreshes on a miss.
const DISCOVERY_ON_MISS: Duration = Duration::from_secs(2);
/// A pass runs at least this often, changes or not (retries what failed).
const RESYNC: Duration = Duration::from_secs(30);
/// An object acted on is left alone this long, while the watch catches up with the act.
const COOLDOWN: Duration = Duration::from_secs(2);

/// One listable, deletable resource.
struct Kind {
    ar: ApiResource,
    namespaced: bool,
}

impl Kind {
    fn key(&self) -> String {
        format!("{}/{}", self.ar.api_version, self.ar.plural)
    }

    fn api(&self, client: &kube::Client, ns: Option<&str>) -> Api<DynamicObject> {
        match (self.namespaced, ns) {
            (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &self.ar),
            _ => Api::all_with(client.clone(), &self.ar),
        }
    }
}

/// What the collector keeps of one object.
#[derive(Clone)]
struct Node {
    kind: Arc<Kind>,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

#[derive(Default)]
struct Graph {
    /// Objects by uid.
    nodes: HashMap<String, Node>,
    /// Resources (by [`Kind::key`]) whose watch has finished its first list.
    synced: HashSet<String>,
    /// The resources discovered, by `apiVersion` and kind (what owner references name).
    kinds: HashMap<(String, String), Arc<Kind>>,
}

impl Graph {
    fn upsert(&mut self, kind: &Arc<Kind>, o: PartialObjectMeta<DynamicObject>) -> Option<String> {
        let m = o.metadata;
        let uid = m.uid?;
        self.nodes.insert(
            uid.clone(),
            Node {
                kind: kind.clone(),
                namespace: m.namespace,
                name: m.name.unwrap_or_default(),
                owners: m.owner_references.unwrap_or_default(),
                deleting: m.deletion_timestamp.is_some(),
                finalizers: m.finalizers.unwrap_or_default(),
            },
        );
        Some(uid)
    }
}

/// Something a pass decided to do.
enum Action {
    /// Delete `dependent` if every one of its owners is confirmed gone.
    CollectIfOrphan { uid: String },
    /// Release the dependents, then drop the owner's `orphan` finalizer.
    Orphan { uid: String, dependents: Vec<String> },
    /// Delete the dependents in the foreground (none left: drop the finalizer).
    Foreground { uid: String, dependents: Vec<String> },
}

/// Run until aborted.
pub async fn run(client: kube::Client, period: Duration) {
    let graph = Arc::new(Mutex::new(Graph::default()));
    let wake = Arc::new(Notify::new());
    let mut watches: HashMap<String, (Arc<Kind>, tokio::task::JoinHandle<()>)> = HashMap::new();
    let mut last_discovery: Option<Instant> = None;
    let mut acted: HashMap<String, Instant> = HashMap::new();
    let mut discovery_period = DISCOVERY_PERIOD;
    loop {
        if last_discovery.is_none_or(|t| t.elapsed() > discovery_period) {
            if let Ok(d) = Discovery::new(client.clone()).run().await {
                rediscover(&client, &d, &mut watches, &graph, &wake);
            }
            last_discovery = Some(Instant::now());
        }
        let started = Instant::now();
        let Plan { actions, names_unknown_kind } = match graph.lock() {
            Ok(g) => plan(&g, &acted),
            Err(_) => return,
        };
        discovery_period = if names_unknown_kind { DISCOVERY_ON_MISS } else { DISCOVERY_PERIOD };
        acted.retain(|_, t| t.elapsed() < COOLDOWN);
        let mut owners_gone: HashMap<String, bool> = HashMap::new();
        for action in actions {
            execute(&client, &graph, action, &mut acted, &mut owners_gone).await;
        }
        // Wait for a change (or the resync), then let changes gather for the rest of
        // the period, so a burst of events costs one pass.
        let until_discovery = discovery_period.saturating_sub(last_discovery.map_or(Duration::ZERO, |t| t.elapsed()));
        let _ = tokio::time::timeout(RESYNC.min(until_discovery), wake.notified()).await;
        tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
    }
}

/// Start a watch for every new resource, stop those of resources gone.
fn rediscover(
    client: &kube::Client,
    d: &Discovery,
    watches: &mut HashMap<String, (Arc<Kind>, tokio::task::JoinHandle<()>)>,
    graph: &Arc<Mutex<Graph>>,
    wake: &Arc<Notify>,
) {
    let kinds: Vec<Kind> = d
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(ar, caps)| {
            caps.supports_operation(verbs::LIST)
                && caps.supports_operation(verbs::WATCH)
                && caps.supports_operation(verbs::DELETE)
                && ar.kind != "Event"
        })
        .map(|(ar, caps)| Kind { ar, namespaced: caps.scope == Scope::Namespaced })
        .collect();
    let keys: HashSet<String> = kinds.iter().map(Kind::key).collect();
    let kinds: Vec<Arc<Kind>> = kinds.into_iter().map(Arc::new).collect();
    if let Ok(mut g) = graph.lock() {
        g.kinds = kinds.iter().map(|k| ((k.ar.api_version.clone(), k.ar.kind.clone()), k.clone())).collect();
    }
    watches.retain(|key, (watched, task)| {
        let keep = keys.contains(key);
        if !keep {
            task.abort();
            if let Ok(mut g) = graph.lock() {
                g.synced.remove(key);
                g.nodes.retain(|_, n| !Arc::ptr_eq(&n.kind, watched));
            }
        }
        keep
    });
    for kind in kinds {
        let key = kind.key();
        if watches.contains_key(&key) {
            continue;
        }
        let task = tokio::spawn(follow(client.clone(), kind.clone(), graph.clone(), wake.clone()));
        watches.insert(key, (kind, task));
    }
}

/// Keep the graph's view of one resource current.
async fn follow(client: kube::Client, kind: Arc<Kind>, graph: Arc<Mutex<Graph>>, wake: Arc<Notify>) {
    let key = kind.key();
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &kind.ar);
    let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(ev) = stream.next().await {
        let Ok(mut g) = graph.lock() else { return };
        match ev {
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(o)) => {
                if let Some(uid) = g.upsert(&kind, o) {
                    listed.insert(uid);
                }
            }
            Ok(watcher::Event::InitDone) => {
                // A relist: what it did not return is gone.
                g.nodes.retain(|uid, n| !Arc::ptr_eq(&n.kind, &kind) || listed.contains(uid));
                listed = HashSet::new();
                g.synced.insert(key.clone());
                wake.notify_one();
            }
            Ok(watcher::Event::Apply(o)) => {
                g.upsert(&kind, o);
                wake.notify_one();
            }
            Ok(watcher::Event::Delete(o)) => {
                if let Some(uid) = o.metadata.uid {
                    g.nodes.remove(&uid);
                }
                wake.notify_one();
            }
            Err(e) => tracing::debug!("gc watch {key}: {e}"),
        }
    }
}

/// The resource an owner reference names, if discovered.
fn kind_of<'a>(g: &'a Graph, r: &OwnerReference) -> Option<&'a Arc<Kind>> {
    g.kinds.get(&(r.api_version.clone(), r.kind.clone()))
}

/// What a pass decided, from the graph alone.
#[derive(Default)]
struct Plan {
    actions: Vec<Action>,
    /// Some object's owners are all absent and one is of a kind not discovered (yet).
    names_unknown_kind: bool,
}

/// Decide what to do from the graph alone.
fn plan(g: &Graph, acted: &HashMap<String, Instant>) -> Plan {
    let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
    for (uid, n) in &g.nodes {
        for r in &n.owners {
            dependents.entry(r.uid.as_str()).or_default().push(uid.as_str());
        }
    }
    let cooling = |uid: &str| acted.get(uid).is_some_and(|t| t.elapsed() < COOLDOWN);
    let mut plan = Plan::default();
    for (uid, n) in &g.nodes {
        let orphan_like = !n.owners.is_empty() && !n.owners.iter().any(|r| g.nodes.contains_key(&r.uid));
        if orphan_like && n.owners.iter().any(|r| kind_of(g, r).is_none()) {
            plan.names_unknown_kind = true;
        }
        if cooling(uid) {
            continue;
        }
        if n.deleting {
            let deps: Vec<String> = dependents
                .get(uid.as_str())
                .into_iter()
                .flatten()
                .filter(|d| **d != uid.as_str())
                .map(|d| d.to_string())
                .collect();
            if n.finalizers.iter().any(|f| f == "orphan") {
                plan.actions.push(Action::Orphan { uid: uid.clone(), dependents: deps });
            } else if n.finalizers.iter().any(|f| f == "foregroundDeletion") {
                plan.actions.push(Action::Foreground { uid: uid.clone(), dependents: deps });
            }
            continue;
        }
        if !orphan_like {
            continue;
        }
        // Every owner looks gone; wait until the owners' resources have been listed.
        let waiting = n.owners.iter().any(|r| kind_of(g, r).is_some_and(|k| !g.synced.contains(&k.key())));
        if !waiting {
            plan.actions.push(Action::CollectIfOrphan { uid: uid.clone() });
        }
    }
    plan
}

/// A node, copied out of the lock.
fn node(graph: &Mutex<Graph>, uid: &str) -> Option<Node> {
    graph.lock().ok()?.nodes.get(uid).cloned()
}

async fn execute(
    client: &kube::Client,
    graph: &Mutex<Graph>,
    action: Action,
    acted: &mut HashMap<String, Instant>,
    owners_gone: &mut HashMap<String, bool>,
) {
    match action {
        Action::CollectIfOrphan { uid } => {
            let Some(Node { kind, namespace: ns, name, owners, .. }) = node(graph, &uid) else { return };
            acted.insert(uid, Instant::now());
            for r in &owners {
                let gone = match owners_gone.get(&r.uid) {
                    Some(g) => *g,
                    None => {
                        let g = owner_gone(client, graph, r, ns.as_deref()).await;
                        owners_gone.insert(r.uid.clone(), g);
                        g
                    }
                };
                if !gone {
                    return;
                }
            }
            report(
                "deleting",
                &name,
                crate::runtime::gone_is_ok(
                    kind.api(client, ns.as_deref()).delete(&name, &DeleteParams::background()).await,
                ),
            );
        }
        Action::Orphan { uid, dependents } => {
            let Some(Node { kind, namespace: ns, name, finalizers, .. }) = node(graph, &uid) else { return };
            for d in &dependents {
                let Some(Node { kind: dkind, namespace: dns, name: dname, owners: downers, .. }) = node(graph, d)
                else {
                    continue;
                };
                let rest: Vec<_> = downers.into_iter().filter(|r| r.uid != uid).collect();
                let patch = Patch::Merge(json!({"metadata": {"ownerReferences": rest}}));
                report(
                    "orphaning",
                    &dname,
                    crate::runtime::gone_is_ok(
                        dkind
                            .api(client, dns.as_deref())
                            .patch_metadata(&dname, &pp("garbage-collector"), &patch)
                            .await,
                    ),
                );
            }
            remove_finalizer(&kind.api(client, ns.as_deref()), &name, &finalizers, "orphan").await;
            acted.insert(uid, Instant::now());
        }
        Action::Foreground { uid, dependents } => {
            let Some(Node { kind, namespace: ns, name, finalizers, .. }) = node(graph, &uid) else { return };
            if dependents.is_empty() {
                remove_finalizer(&kind.api(client, ns.as_deref()), &name, &finalizers, "foregroundDeletion").await;
            }
            for d in &dependents {
                let Some(Node { kind: dkind, namespace: dns, name: dname, deleting: false, .. }) = node(graph, d)
                else {
                    continue;
                };
                report(
                    "deleting",
                    &dname,
                    crate::runtime::gone_is_ok(
                        dkind.api(client, dns.as_deref()).delete(&dname, &DeleteParams::foreground()).await,
                    ),
                );
            }
            // Nothing here is cooled down: dependents being deleted are skipped anyway,
            // and the pass after the last one goes drops the owner's finalizer at once.
        }
    }
}

/// Whether an owner is confirmed gone by a GET (an unknown kind, or an error, is not).
async fn owner_gone(client: &kube::Client, graph: &Mutex<Graph>, r: &OwnerReference, ns: Option<&str>) -> bool {
    // An owner of a resource not served (yet) is not taken for gone.
    let Some(kind) = graph.lock().ok().and_then(|g| kind_of(&g, r).cloned()) else { return false };
    match kind.api(client, ns).get_metadata_opt(&r.name).await {
        Ok(Some(o)) => o.metadata.uid.as_deref() != Some(r.uid.as_str()),
        Ok(None) => true,
        Err(_) => false,
    }
}

/// Drop one finalizer from an object (the next pass retries a failure).
async fn remove_finalizer(api: &Api<DynamicObject>, name: &str, finalizers: &[String], which: &str) {
    let rest: Vec<&String> = finalizers.iter().filter(|f| *f != which).collect();
    let patch = Patch::Merge(json!({"metadata": {"finalizers": rest}}));
    report(
        "removing the finalizer of",
        name,
        crate::runtime::gone_is_ok(api.patch_metadata(name, &pp("garbage-collector"), &patch).await),
    );
}

/// Log a failed action of the collector (the next pass, a plan made afresh, retries it).
fn report(what: &str, name: &str, result: Result<(), kube::Error>) {
    if let Err(e) = result {
        tracing::warn!("garbage collector: {what} {name}: {e} (retried on the next pass)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(kind: &str, api_version: &str, plural: &str) -> Arc<Kind> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        Arc::new(Kind {
            ar: ApiResource {
                group: group.into(),
                version: version.into(),
                api_version: api_version.into(),
                kind: kind.into(),
                plural: plural.into(),
            },
            namespaced: true,
        })
    }

    fn owner(kind: &str, api_version: &str, uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: format!("{uid}-name"),
            uid: uid.into(),
            ..Default::default()
        }
    }

    fn add(g: &mut Graph, k: &Arc<Kind>, uid: &str, owners: Vec<OwnerReference>, finalizers: &[&str]) {
        g.nodes.insert(
            uid.into(),
            Node {
                kind: k.clone(),
                namespace: Some("ns".into()),
                name: format!("{uid}-name"),
                owners,
                deleting: !finalizers.is_empty(),
                finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
            },
        );
    }

    /// A graph that knows ReplicaSets (listed or not: the caller says) and pods.
    fn replica_sets_and_pods() -> (Arc<Kind>, Arc<Kind>, Graph) {
        let rs = kind("ReplicaSet", "apps/v1", "replicasets");
        let pod = kind("Pod", "v1", "pods");
        let mut g = Graph::default();
        g.kinds.insert(("apps/v1".into(), "ReplicaSet".into()), rs.clone());
        (rs, pod, g)
    }

    #[test]
    fn plans_only_what_needs_doing() {
        let (rs, pod, mut g) = replica_sets_and_pods();
        g.synced.insert(rs.key());
        g.synced.insert(pod.key());
        add(&mut g, &rs, "rs1", vec![], &[]);
        add(&mut g, &pod, "p1", vec![owner("ReplicaSet", "apps/v1", "rs1")], &[]);
        add(&mut g, &pod, "p2", vec![owner("ReplicaSet", "apps/v1", "gone")], &[]);
        add(&mut g, &rs, "rs2", vec![], &["foregroundDeletion"]);
        add(&mut g, &pod, "p3", vec![owner("ReplicaSet", "apps/v1", "rs2")], &[]);
        add(&mut g, &rs, "rs3", vec![], &["orphan"]);
        let mut actions = plan(&g, &HashMap::new()).actions;
        actions.sort_by_key(|a| match a {
            Action::CollectIfOrphan { uid } | Action::Orphan { uid, .. } | Action::Foreground { uid, .. } => {
                uid.clone()
            }
        });
        assert_eq!(actions.len(), 3, "p1 has its owner; rs1 has none");
        assert!(matches!(&actions[0], Action::CollectIfOrphan { uid } if uid == "p2"));
        assert!(matches!(&actions[1], Action::Foreground { uid, dependents } if uid == "rs2" && dependents == &["p3"]));
        assert!(matches!(&actions[2], Action::Orphan { uid, dependents } if uid == "rs3" && dependents.is_empty()));
        // Just acted on: left alone while the watch catches up.
        let acted = HashMap::from([("p2".to_string(), Instant::now())]);
        assert_eq!(plan(&g, &acted).actions.len(), 2);
    }

    #[test]
    fn an_owner_of_an_undiscovered_kind_asks_for_discovery() {
        let (_, pod, mut g) = replica_sets_and_pods();
        add(&mut g, &pod, "p", vec![owner("ReplicaSet", "apps/v1", "gone")], &[]);
        assert!(!plan(&g, &HashMap::new()).names_unknown_kind);
        add(&mut g, &pod, "q", vec![owner("Widget", "example.com/v1", "w")], &[]);
        assert!(plan(&g, &HashMap::new()).names_unknown_kind);
    }

    #[test]
    fn waits_for_the_owners_resource_to_be_listed() {
        let (rs, pod, mut g) = replica_sets_and_pods();
        g.synced.insert(pod.key());
        add(&mut g, &rs, "rs-other", vec![], &[]);
        add(&mut g, &pod, "p", vec![owner("ReplicaSet", "apps/v1", "rs-not-seen-yet")], &[]);
        assert!(plan(&g, &HashMap::new()).actions.is_empty(), "ReplicaSets are still listing");
        g.synced.insert(rs.key());
        assert_eq!(plan(&g, &HashMap::new()).actions.len(), 1);
    }
}
