//! ReplicaSet (and ReplicationController, its older twin with a map selector): keep
//! `spec.replicas` pods matching the template, and report status.
//!
//! Pods are read from a watch-fed cache (with managedFields dropped), not listed per
//! reconcile: a ReplicaSet of 1,000 pods would otherwise fetch all 1,000 on each of the
//! many pod changes. The cache lags the writes this controller makes, so, as
//! kube-controller-manager does, it keeps *expectations*: pods it created that the
//! cache has not shown yet count as present, pods it deleted count as gone.

use crate::util::{Error, controlled_by, controller_ref, is_active, is_ready, pp};
use futures::StreamExt;
use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the controller needs of a kind of replicated pods (ReplicaSet,
/// ReplicationController).
pub trait Replicated:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The controller's name in logs and as field manager.
    const MANAGER: &'static str;
    /// `apiVersion` of the owner reference.
    const API_VERSION: &'static str;
    /// `kind` of the owner reference.
    const KIND: &'static str;
    /// `spec.replicas` (default 1).
    fn replicas(&self) -> i32;
    /// `spec.template`.
    fn template(&self) -> Option<&k8s_openapi::api::core::v1::PodTemplateSpec>;
    /// `status`, as JSON.
    fn status_json(&self) -> Value;
    /// The selector, parsed once per reconcile (not once per pod: with tens of thousands
    /// of pods in a namespace, parsing it for each was most of the controller's time).
    /// None selects nothing (empty or invalid).
    fn selector(&self) -> Option<vkube_core::selector::LabelSelector>;
    /// `spec.minReadySeconds`: how long a ready pod waits to count as available.
    fn min_ready_seconds(&self) -> i32;
}

fn selector_of(selector: Option<Value>) -> Option<vkube_core::selector::LabelSelector> {
    match vkube_core::selector::LabelSelector::from_object(selector.as_ref()) {
        Ok(s) if !s.requirements.is_empty() => Some(s),
        _ => None,
    }
}

/// Whether `selector` selects `meta`'s labels.
fn selects(selector: Option<&vkube_core::selector::LabelSelector>, meta: &ObjectMeta) -> bool {
    static NONE: std::sync::LazyLock<std::collections::BTreeMap<String, String>> =
        std::sync::LazyLock::new(Default::default);
    selector.is_some_and(|s| s.matches(meta.labels.as_ref().unwrap_or(&NONE)))
}

impl Replicated for ReplicaSet {
    const MANAGER: &'static str = "replicaset-controller";
    const API_VERSION: &'static str = "apps/v1";
    const KIND: &'static str = "ReplicaSet";
    fn replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }
    fn template(&self) -> Option<&k8s_openapi::api::core::v1::PodTemplateSpec> {
        self.spec.template.as_ref()
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
    fn selector(&self) -> Option<vkube_core::selector::LabelSelector> {
        selector_of(serde_json::to_value(&self.spec.selector).ok())
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.min_ready_seconds.unwrap_or(0)
    }
}

impl Replicated for k8s_openapi::api::core::v1::ReplicationController {
    const MANAGER: &'static str = "replication-controller";
    const API_VERSION: &'static str = "v1";
    const KIND: &'static str = "ReplicationController";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn template(&self) -> Option<&k8s_openapi::api::core::v1::PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
    fn selector(&self) -> Option<vkube_core::selector::LabelSelector> {
        let map = self.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
        selector_of(Some(json!({"matchLabels": map})))
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
}

/// How long a write of this controller may take to show in the cache before it is
/// believed lost.
const EXPECTATION_TTL: Duration = Duration::from_secs(30);

/// Pods created but not yet seen, by name: when, and the pod the API returned.
type Awaited = HashMap<String, (Instant, Pod)>;

/// Writes made but not yet seen in the cache, per owner uid.
#[derive(Default)]
pub struct Expectations {
    created: Mutex<HashMap<String, Awaited>>,
    deleted: Mutex<HashMap<String, HashMap<String, Instant>>>,
}

impl Expectations {
    fn created(&self, owner: &str, pod: Pod) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Ok(mut m) = self.created.lock() {
            m.entry(owner.to_string()).or_default().insert(name, (Instant::now(), pod));
        }
    }
    fn deleted(&self, owner: &str, name: &str) {
        if let Ok(mut m) = self.deleted.lock() {
            m.entry(owner.to_string()).or_default().insert(name.to_string(), Instant::now());
        }
    }
    /// The owner's pods as this controller knows them: the cache, plus pods created
    /// and not yet seen, minus pods deleted and still seen.
    pub fn view(&self, owner: &str, cached: Vec<Pod>) -> Vec<Pod> {
        let mut out = Vec::with_capacity(cached.len());
        let seen: std::collections::HashSet<String> = cached.iter().filter_map(|p| p.metadata.name.clone()).collect();
        if let Ok(mut m) = self.deleted.lock()
            && let Some(d) = m.get_mut(owner)
        {
            d.retain(|name, at| seen.contains(name) && at.elapsed() < EXPECTATION_TTL);
            out.extend(cached.into_iter().filter(|p| !p.metadata.name.as_ref().is_some_and(|n| d.contains_key(n))));
        } else {
            out = cached;
        }
        if let Ok(mut m) = self.created.lock()
            && let Some(c) = m.get_mut(owner)
        {
            c.retain(|name, (at, _)| !seen.contains(name) && at.elapsed() < EXPECTATION_TTL);
            out.extend(c.values().map(|(_, p)| p.clone()));
            if c.is_empty() {
                m.remove(owner);
            }
        }
        out
    }
    /// A pod change came through the watch: a creation it shows is no longer awaited.
    pub fn observe(&self, pod: &Pod) {
        let (Some(name), Some(refs)) = (&pod.metadata.name, &pod.metadata.owner_references) else { return };
        if let Ok(mut m) = self.created.lock() {
            for r in refs.iter().filter(|r| r.controller == Some(true)) {
                if let Some(c) = m.get_mut(&r.uid) {
                    c.remove(name);
                    if c.is_empty() {
                        m.remove(&r.uid);
                    }
                }
            }
        }
    }
    /// Forget an owner (deleted).
    pub fn forget(&self, owner: &str) {
        if let Ok(mut m) = self.created.lock() {
            m.remove(owner);
        }
        if let Ok(mut m) = self.deleted.lock() {
            m.remove(owner);
        }
    }
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
}

/// What the ReplicaSet controller keeps of a pod: identity, labels, owners, phase and
/// conditions, and the node; not the containers, volumes or managedFields, which are
/// most of a pod's memory (a cache of 1,000 pods shrinks several-fold).
pub fn slim(p: &mut Pod) {
    p.metadata.managed_fields = None;
    if let Some(spec) = p.spec.take() {
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec { node_name: spec.node_name, ..Default::default() });
    }
    if let Some(status) = p.status.as_mut() {
        status.container_statuses = None;
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
    }
}

/// A watch-fed cache of every pod, [slimmed](slim), and the stream of its changes.
pub fn pod_cache(
    client: &kube::Client,
) -> (Store<Pod>, impl futures::Stream<Item = Result<Pod, watcher::Error>> + Send + 'static) {
    let (reader, writer) = reflector::store::<Pod>();
    let stream = reflector::reflector(
        writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().modify(slim),
    )
    .touched_objects();
    (reader, stream)
}

/// Run the ReplicaSet controller.
pub async fn run(client: kube::Client) {
    run_for::<ReplicaSet>(client, "replicaset").await;
}

/// Run the ReplicationController controller.
pub async fn run_replication_controllers(client: kube::Client) {
    run_for::<k8s_openapi::api::core::v1::ReplicationController>(client, "replicationcontroller").await;
}

async fn run_for<K: Replicated>(client: kube::Client, name: &'static str) {
    let rs: Api<K> = Api::all(client.clone());
    let (pods, pod_changes) = pod_cache(&client);
    let expectations = Arc::new(Expectations::default());
    let seen = expectations.clone();
    let controller = Controller::new(rs, watcher::Config::default())
        .with_config(crate::util::controller_config())
        .owns_stream(pod_changes.inspect_ok(move |p| seen.observe(p)));
    let ctx = Arc::new(Ctx { client, pods: pods.clone(), expectations });
    crate::runtime::run(
        name,
        controller,
        move |rs: Arc<K>, ctx: Arc<Ctx>| async move {
            // An empty cache before the first list would look like "no pods".
            if ctx.pods.wait_until_ready().await.is_err() {
                return Ok(Action::requeue(Duration::from_millis(500)));
            }
            reconcile(rs, ctx).await
        },
        ctx,
    )
    .await;
}

/// The pods a workload controls, found by selector and controller reference.
pub async fn owned_pods(client: &kube::Client, ns: &str, selector: &str, uid: &str) -> Result<Vec<Pod>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods.list(&ListParams::default().labels(selector)).await?;
    Ok(list.items.into_iter().filter(|p| controlled_by(&p.metadata, uid)).collect())
}

/// A pod for a template owned by a controller.
pub fn pod_from_template(
    template: &Value,
    generate_name: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Result<Pod, Error> {
    let mut md = template.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(m) = md.as_object_mut() {
        m.remove("name");
        m.remove("namespace");
        m.insert("generateName".into(), json!(generate_name));
        m.insert("ownerReferences".into(), json!([owner]));
    }
    Ok(serde_json::from_value(json!({"metadata": md, "spec": template.get("spec").cloned().unwrap_or_default()}))?)
}

/// Which pods to delete first when scaling down: unscheduled, pending, not ready, newest.
pub fn deletion_rank(p: &Pod) -> (u8, u8, u8, std::cmp::Reverse<String>) {
    let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let running = crate::util::phase(p) == "Running";
    let ready = is_ready(p);
    let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    (u8::from(scheduled), u8::from(running), u8::from(ready), std::cmp::Reverse(created))
}

/// As kube-controller-manager's ReplicaSet controller: take active pods that match the
/// selector and have no controller (adopt), give back owned pods that no longer match
/// (release), both by rewriting the pod's owner references.
async fn adopt_and_release<K: Replicated>(rs: &K, ctx: &Ctx, ns: &str, name: &str, uid: &str) -> Result<bool, Error> {
    let mut changed = false;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = rs.selector();
    let candidates: Vec<Arc<Pod>> =
        ctx.pods.state().into_iter().filter(|p| p.metadata.namespace.as_deref() == Some(ns)).collect();
    for p in candidates {
        let refs = p.metadata.owner_references.as_deref().unwrap_or_default();
        let has_controller = refs.iter().any(|r| r.controller == Some(true));
        let ours = controlled_by(&p.metadata, uid);
        if has_controller && !ours {
            // Another controller's pod (most of them): nothing to read further.
            continue;
        }
        let next = if !has_controller
            && selects(selector.as_ref(), &p.metadata)
            && is_active(&p)
            && p.metadata.deletion_timestamp.is_none()
        {
            let mut next = refs.to_vec();
            next.push(controller_ref(K::API_VERSION, K::KIND, name, uid));
            next
        } else if ours && !selects(selector.as_ref(), &p.metadata) {
            refs.iter().filter(|r| r.uid != uid).cloned().collect()
        } else {
            continue;
        };
        let pod_name = p.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {"ownerReferences": next, "uid": p.metadata.uid}});
        match pods.patch(&pod_name, &pp(K::MANAGER), &Patch::Merge(patch)).await {
            Ok(_) => changed = true,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(changed)
}

async fn reconcile<K: Replicated>(rs: Arc<K>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let meta = rs.meta();
    let uid = meta.uid.clone().unwrap_or_default();
    if meta.deletion_timestamp.is_some() {
        ctx.expectations.forget(&uid);
        return Ok(Action::await_change());
    }
    let ns = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let desired = rs.replicas().max(0) as usize;
    if adopt_and_release(&*rs, &ctx, &ns, &name, &uid).await? {
        // Count the adopted (and released) pods once the cache shows them.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let selector = rs.selector();
    let cached: Vec<Pod> = ctx
        .pods
        .state()
        .iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(ns.as_str())
                && controlled_by(&p.metadata, &uid)
                && selects(selector.as_ref(), &p.metadata)
        })
        .map(|p| (**p).clone())
        .collect();
    let all = ctx.expectations.view(&uid, cached);
    let mut active: Vec<Pod> = all.iter().filter(|p| is_active(p)).cloned().collect();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    // Why pods could not be created (a quota, admission): the ReplicaFailure condition.
    let mut failure: Option<String> = None;
    if active.len() < desired {
        let template = serde_json::to_value(rs.template())?;
        let owner = controller_ref(K::API_VERSION, K::KIND, &name, &uid);
        let pod = pod_from_template(&template, &format!("{name}-"), &owner)?;
        let post = PostParams { field_manager: Some(K::MANAGER.into()), ..Default::default() };
        let creates = (0..desired - active.len()).map(|_| {
            let (pods, post, pod) = (pods.clone(), post.clone(), pod.clone());
            async move { pods.create(&post, &pod).await }
        });
        let results: Vec<_> =
            futures::stream::iter(creates).buffer_unordered(crate::util::WRITE_CONCURRENCY).collect().await;
        for r in results {
            match r {
                Ok(mut p) => {
                    slim(&mut p);
                    ctx.expectations.created(&uid, p.clone());
                    active.push(p);
                }
                Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => {
                    failure.get_or_insert(e.message.clone());
                }
                Err(e) => return Err(e.into()),
            }
        }
    } else if active.len() > desired {
        active.sort_by_key(deletion_rank);
        let extra: Vec<Pod> = active.drain(..active.len() - desired).collect();
        let dp = DeleteParams::default();
        let names: Vec<String> = extra.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
        let deletes = names.into_iter().map(|name| {
            let (pods, dp) = (pods.clone(), dp.clone());
            async move { pods.delete(&name, &dp).await.map(|_| ()) }
        });
        for p in &extra {
            ctx.expectations.deleted(&uid, p.metadata.name.as_deref().unwrap_or_default());
        }
        let results: Vec<_> =
            futures::stream::iter(deletes).buffer_unordered(crate::util::WRITE_CONCURRENCY).collect().await;
        for r in results {
            if let Err(kube::Error::Api(e)) = &r
                && e.code == 404
            {
                continue;
            }
            r?;
        }
    }
    let ready = active.iter().filter(|p| is_ready(p)).count();
    // Available: ready for minReadySeconds; the soonest of the others brings a requeue.
    let now = k8s_openapi::jiff::Timestamp::now();
    let waits: Vec<Duration> =
        active.iter().filter_map(|p| vkube_core::pod::available_in(p, rs.min_ready_seconds(), now)).collect();
    let available = waits.iter().filter(|w| w.is_zero()).count();
    let next_available = waits.iter().filter(|w| !w.is_zero()).min().copied();
    let labels = rs.template().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| labels.iter().all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v)))
        .count();
    let current = rs.status_json();
    let old_conditions: Vec<Value> = current.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let old_failure = old_conditions.iter().find(|c| c["type"] == "ReplicaFailure").cloned();
    let mut conditions: Vec<Value> = old_conditions.iter().filter(|c| c["type"] != "ReplicaFailure").cloned().collect();
    if let Some(message) = &failure {
        let same = old_failure.as_ref().is_some_and(|c| c["message"] == json!(message));
        conditions.push(match (same, &old_failure) {
            (true, Some(c)) => c.clone(),
            _ => json!({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": message,
                "lastTransitionTime": vkube_core::meta::now_rfc3339()}),
        });
    }
    let status = json!({"status": {
        "replicas": active.len(),
        "readyReplicas": ready,
        "availableReplicas": available,
        "fullyLabeledReplicas": fully_labeled,
        "observedGeneration": meta.generation.unwrap_or(0),
        "conditions": if conditions.is_empty() { Value::Null } else { json!(conditions) },
    }});
    let changed = ["replicas", "readyReplicas", "availableReplicas", "fullyLabeledReplicas", "observedGeneration"]
        .iter()
        .any(|k| current.get(k).and_then(Value::as_i64).unwrap_or(0) != status["status"][k].as_i64().unwrap_or(0))
        || conditions != old_conditions;
    if changed {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        match api.patch_status(&name, &pp(K::MANAGER), &Patch::Merge(status)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if failure.is_some() {
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    if let Some(wait) = next_available {
        return Ok(Action::requeue(wait.min(Duration::from_secs(60)) + Duration::from_millis(50)));
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}
