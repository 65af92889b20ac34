//! Pods: virtual → host (spec translated), host → virtual (status, and the node the
//! host scheduler chose), deletes both ways.
//!
//! Dispatch per virtual pod: host copy missing → create it (unless it existed before
//! and was deleted on the host: then the virtual pod goes, so its controller makes a
//! new one); both exist → copy status back, bind; virtual pod deleting → delete the
//! host copy, then finish the virtual delete. Host pods whose virtual pod is gone are
//! removed by [`crate::cleanup`].

use crate::names::Naming;
use crate::{Error, SyncContext};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIProjection, DownwardAPIVolumeFile, EnvVar, ObjectFieldSelector, Toleration, Volume,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use vkube_controllers::runtime::RunLogged;

/// Annotation on a virtual pod: the uid of its host copy, once created.
pub const HOST_UID: &str = "vkube.dev/host-uid";
/// Annotation prefix on a host pod: a token of the virtual cluster for one projected
/// `serviceAccountToken` source, which the host pod reads through the downward API.
pub const TOKEN_PREFIX: &str = "vkube.dev/token-";
/// Annotation on a host pod: the virtual pod's generation and a digest of its labels
/// and annotations (`GENERATION/DIGEST`), as the host copy last mirrored them.
pub const VIRTUAL_STATE: &str = "vkube.dev/virtual-state";
/// Annotation on a host pod: the keys of the virtual pod's annotations written to it
/// (so that one the virtual pod drops goes from the host copy too).
pub const MANAGED_ANNOTATIONS: &str = "vkube.dev/managed-annotations";
/// Lifetime of the tokens the syncer requests: the host kubelet cannot refresh them, so
/// they live a year, and the virtual API server revokes them when the pod is deleted.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 365 * 24 * 3600;

/// What the pod syncer keeps of a virtual pod: its metadata (without managedFields)
/// and the few fields read between events. A typed `Pod` takes ~14 KiB in memory
/// (k8s-openapi's structs hold every optional field inline), this ~1 KiB; the full pod
/// is read from the API when a host copy is made.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct CachedPod {
    /// The virtual pod's metadata.
    pub metadata: ObjectMeta,
    /// `spec.nodeName`.
    pub node_name: Option<String>,
    /// `status.phase`.
    pub phase: Option<String>,
    /// `status.qosClass` (the virtual API server's, immutable once set).
    pub qos_class: Option<String>,
    /// A digest of `{"status": ...}` as the syncer would write it back, to tell whether
    /// the host status differs.
    pub status_digest: u64,
    /// Names of the configmaps the pod references.
    pub config_maps: Vec<String>,
    /// Names of the secrets the pod references.
    pub secrets: Vec<String>,
}

impl kube::Resource for CachedPod {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl CachedPod {
    /// The parts of `pod` the syncer keeps.
    pub fn of(pod: Pod) -> Self {
        let (cms, secrets) = crate::config::pod_references(&pod);
        let status = serde_json::to_value(&pod.status).unwrap_or_default();
        let mut metadata = pod.metadata;
        metadata.managed_fields = None;
        CachedPod {
            metadata,
            node_name: pod.spec.and_then(|s| s.node_name),
            qos_class: pod.status.as_ref().and_then(|s| s.qos_class.clone()),
            phase: pod.status.and_then(|s| s.phase),
            status_digest: status_digest(&json!({"status": status})),
            config_maps: cms.into_iter().collect(),
            secrets: secrets.into_iter().collect(),
        }
    }

    /// Whether the pod has finished (Succeeded or Failed).
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    /// The pod as an object reference for events.
    fn as_regarding(&self) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": self.metadata.name, "namespace": self.metadata.namespace, "uid": self.metadata.uid}})
    }
}

/// A digest of a JSON value that does not depend on the order of object keys.
pub fn status_digest(v: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    fn feed(v: &Value, h: &mut std::collections::hash_map::DefaultHasher) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                b'{'.hash(h);
                for k in keys {
                    k.hash(h);
                    feed(&m[k], h);
                }
                b'}'.hash(h);
            }
            Value::Array(a) => {
                b'['.hash(h);
                a.iter().for_each(|x| feed(x, h));
                b']'.hash(h);
            }
            other => other.to_string().hash(h),
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    feed(v, &mut h);
    h.finish()
}

/// A virtual-cluster token a host pod needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenNeed {
    /// The host pod annotation that carries it.
    pub annotation: String,
    /// The audience asked for (None: the virtual API server).
    pub audience: Option<String>,
}

fn token_annotation(volume: &str, path: &str, audience: Option<&str>) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{volume}/{path}/{}", audience.unwrap_or_default()).as_bytes());
    let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{TOKEN_PREFIX}{hash}")
}

/// The tokens a virtual pod's projected `serviceAccountToken` sources need.
pub fn token_needs(pod: &Pod) -> Vec<TokenNeed> {
    let mut out = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(t) = &src.service_account_token {
                let audience = t.audience.as_deref().filter(|a| !a.is_empty());
                out.push(TokenNeed {
                    annotation: token_annotation(&v.name, &t.path, audience),
                    audience: audience.map(String::from),
                });
            }
        }
    }
    out
}

/// Downward-API field paths that would name the host object, pointed at the annotations
/// that name the virtual one.
fn translate_field_ref(f: &mut ObjectFieldSelector) {
    let annotation = match f.field_path.as_str() {
        "metadata.name" => crate::names::OBJECT_NAME,
        "metadata.namespace" => crate::names::OBJECT_NAMESPACE,
        "metadata.uid" => crate::names::OBJECT_UID,
        _ => return,
    };
    f.field_path = format!("metadata.annotations['{annotation}']");
}

fn translate_downward_items(items: Option<&mut Vec<DownwardAPIVolumeFile>>) {
    for item in items.into_iter().flatten() {
        if let Some(f) = item.field_ref.as_mut() {
            translate_field_ref(f);
        }
    }
}

/// Parse `key=value:Effect` / `key:Effect` / `key` into a toleration.
pub fn parse_toleration(s: &str) -> Toleration {
    let (kv, effect) = s.split_once(':').map(|(a, b)| (a, Some(b))).unwrap_or((s, None));
    let (key, operator, value) = match kv.split_once('=') {
        Some((k, v)) => (k, "Equal", Some(v.to_string())),
        None => (kv, "Exists", None),
    };
    Toleration {
        key: Some(key.into()),
        operator: Some(operator.into()),
        value,
        effect: effect.map(String::from),
        toleration_seconds: None,
    }
}

fn translate_container(c: &mut Container, naming: Naming<'_>, ns: &str) {
    for e in c.env.iter_mut().flatten() {
        if let Some(from) = e.value_from.as_mut() {
            if let Some(r) = from.config_map_key_ref.as_mut() {
                r.name = naming.host_name("ConfigMap", ns, &r.name);
            }
            if let Some(r) = from.secret_key_ref.as_mut() {
                r.name = naming.host_name("Secret", ns, &r.name);
            }
            if let Some(f) = from.field_ref.as_mut() {
                translate_field_ref(f);
            }
        }
    }
    for f in c.env_from.iter_mut().flatten() {
        if let Some(r) = f.config_map_ref.as_mut() {
            r.name = naming.host_name("ConfigMap", ns, &r.name);
        }
        if let Some(r) = f.secret_ref.as_mut() {
            r.name = naming.host_name("Secret", ns, &r.name);
        }
    }
}

fn translate_volume(v: &mut Volume, naming: Naming<'_>, ns: &str) {
    if let Some(cm) = v.config_map.as_mut() {
        cm.name = naming.host_name("ConfigMap", ns, &cm.name);
    }
    if let Some(name) = v.secret.as_mut().and_then(|s| s.secret_name.as_mut()) {
        *name = naming.host_name("Secret", ns, name);
    }
    if let Some(claim) = v.persistent_volume_claim.as_mut() {
        claim.claim_name = naming.host_name("PersistentVolumeClaim", ns, &claim.claim_name);
    }
    translate_downward_items(v.downward_api.as_mut().and_then(|d| d.items.as_mut()));
    let volume = v.name.clone();
    for src in v.projected.iter_mut().flat_map(|p| p.sources.iter_mut().flatten()) {
        if let Some(cm) = src.config_map.as_mut() {
            cm.name = naming.host_name("ConfigMap", ns, &cm.name);
        }
        if let Some(secret) = src.secret.as_mut() {
            secret.name = naming.host_name("Secret", ns, &secret.name);
        }
        translate_downward_items(src.downward_api.as_mut().and_then(|d| d.items.as_mut()));
        // A virtual-cluster token, read from the host pod's annotation (the syncer
        // requests it when it creates the host pod).
        if let Some(t) = src.service_account_token.take() {
            let key = token_annotation(&volume, &t.path, t.audience.as_deref().filter(|a| !a.is_empty()));
            *src = VolumeProjection {
                downward_api: Some(DownwardAPIProjection {
                    items: Some(vec![DownwardAPIVolumeFile {
                        path: t.path,
                        field_ref: Some(ObjectFieldSelector {
                            api_version: Some("v1".into()),
                            field_path: format!("metadata.annotations['{key}']"),
                        }),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            };
        }
    }
}

/// The user's annotations of a virtual pod (not vkube's own, not kubectl's copy).
fn user_annotations(meta: &ObjectMeta) -> std::collections::BTreeMap<String, String> {
    let mut a = meta.annotations.clone().unwrap_or_default();
    a.retain(|k, _| !k.starts_with("vkube.dev/") && k != "kubectl.kubernetes.io/last-applied-configuration");
    a
}

/// What of a virtual pod its host copy mirrors, as [`VIRTUAL_STATE`] records it.
pub fn virtual_state(meta: &ObjectMeta) -> String {
    let digest = status_digest(&json!({"labels": meta.labels, "annotations": user_annotations(meta)}));
    format!("{}/{digest:016x}", meta.generation.unwrap_or(1))
}

/// The virtual generation a host pod's spec mirrors (from [`VIRTUAL_STATE`]).
fn mirrored_generation(host: &Pod) -> Option<i64> {
    let state = host.metadata.annotations.as_ref()?.get(VIRTUAL_STATE)?;
    state.split('/').next()?.parse().ok()
}

/// The host pod for a virtual pod (pure: references renamed, the virtual cluster's
/// service account and token kept out of the host's, its scheduling fields dropped, the
/// config's tolerations and node selector enforced).
pub fn translate(pod: &Pod, naming: Naming<'_>, config: &vkube_config::VClusterConfig) -> Pod {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut spec = pod.spec.clone().unwrap_or_default();
    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        translate_container(c, naming, &ns);
    }
    for c in spec.ephemeral_containers.iter_mut().flatten() {
        for e in c.env.iter_mut().flatten() {
            if let Some(from) = e.value_from.as_mut() {
                if let Some(r) = from.config_map_key_ref.as_mut() {
                    r.name = naming.host_name("ConfigMap", &ns, &r.name);
                }
                if let Some(r) = from.secret_key_ref.as_mut() {
                    r.name = naming.host_name("Secret", &ns, &r.name);
                }
                if let Some(f) = from.field_ref.as_mut() {
                    translate_field_ref(f);
                }
            }
        }
    }
    for v in spec.volumes.iter_mut().flatten() {
        translate_volume(v, naming, &ns);
    }
    for s in spec.image_pull_secrets.iter_mut().flatten() {
        s.name = naming.host_name("Secret", &ns, &s.name);
    }
    // The host's own service account, without its token: in-pod clients talk to the
    // virtual API, not the host's.
    spec.service_account_name = None;
    spec.service_account = None;
    spec.automount_service_account_token = Some(false);
    // The host's Priority admission gives the host pod its priority (a virtual
    // cluster's classes are not the host's; a priority without its class is refused).
    spec.priority_class_name = None;
    spec.priority = None;
    spec.preemption_policy = None;
    spec.scheduler_name = None;
    if spec.hostname.is_none() {
        spec.hostname = Some(name.chars().take(63).collect());
    }
    spec.subdomain = None;
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in &config.enforce_tolerations {
        let t = parse_toleration(t);
        if !tolerations.contains(&t) {
            tolerations.push(t);
        }
    }
    // As vCluster: pods run only on the nodes the virtual cluster syncs.
    if let Some(labels) = config.enforced_node_selector() {
        let selector = spec.node_selector.get_or_insert_with(Default::default);
        selector.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut metadata = naming.host_metadata("Pod", &pod.metadata);
    let annotations = metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(VIRTUAL_STATE.into(), virtual_state(&pod.metadata));
    let managed: Vec<String> = user_annotations(&pod.metadata).into_keys().collect();
    annotations.insert(MANAGED_ANNOTATIONS.into(), managed.join(","));
    Pod { metadata, spec: Some(spec), status: None }
}

/// The ephemeral containers (`kubectl debug`) the virtual pod has and its host copy not
/// yet, as a strategic merge patch for the host's `pods/ephemeralcontainers`.
pub fn ephemeral_patch(host: &Pod, want: &Pod) -> Option<Value> {
    let have = host.spec.as_ref().and_then(|s| s.ephemeral_containers.clone()).unwrap_or_default();
    let new: Vec<Value> = want
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !have.iter().any(|h| h.name == e.name))
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    (!new.is_empty()).then(|| json!({"spec": {"ephemeralContainers": new}}))
}

/// The strategic merge patch that brings host pod `host` to `want` (its translation
/// now) in what a pod may change: labels, annotations, container images,
/// `activeDeadlineSeconds`, tolerations. None when nothing differs.
pub fn update_patch(host: &Pod, want: &Pod) -> Option<Value> {
    let mut labels = serde_json::Map::new();
    let have_labels = host.metadata.labels.clone().unwrap_or_default();
    let want_labels = want.metadata.labels.clone().unwrap_or_default();
    for k in have_labels.keys().filter(|k| !want_labels.contains_key(*k)) {
        labels.insert(k.clone(), Value::Null);
    }
    for (k, v) in &want_labels {
        if have_labels.get(k) != Some(v) {
            labels.insert(k.clone(), json!(v));
        }
    }
    let mut annotations = serde_json::Map::new();
    let have = host.metadata.annotations.clone().unwrap_or_default();
    let want_annotations = want.metadata.annotations.clone().unwrap_or_default();
    let managed_before = have.get(MANAGED_ANNOTATIONS).cloned().unwrap_or_default();
    for k in managed_before.split(',').filter(|k| !k.is_empty() && !want_annotations.contains_key(*k)) {
        if have.contains_key(k) {
            annotations.insert(k.to_string(), Value::Null);
        }
    }
    for (k, v) in &want_annotations {
        if have.get(k) != Some(v) {
            annotations.insert(k.clone(), json!(v));
        }
    }
    let mut spec = serde_json::Map::new();
    let (have_spec, want_spec) = (host.spec.clone().unwrap_or_default(), want.spec.clone().unwrap_or_default());
    let images = |have: &[Container], want: &[Container]| -> Vec<Value> {
        want.iter()
            .filter(|w| have.iter().any(|h| h.name == w.name && h.image != w.image))
            .map(|w| json!({"name": w.name, "image": w.image}))
            .collect()
    };
    let containers = images(&have_spec.containers, &want_spec.containers);
    if !containers.is_empty() {
        spec.insert("containers".into(), json!(containers));
    }
    let init = images(
        have_spec.init_containers.as_deref().unwrap_or_default(),
        want_spec.init_containers.as_deref().unwrap_or_default(),
    );
    if !init.is_empty() {
        spec.insert("initContainers".into(), json!(init));
    }
    if have_spec.active_deadline_seconds != want_spec.active_deadline_seconds {
        spec.insert("activeDeadlineSeconds".into(), json!(want_spec.active_deadline_seconds));
    }
    if have_spec.tolerations.clone().unwrap_or_default() != want_spec.tolerations.clone().unwrap_or_default() {
        spec.insert("tolerations".into(), json!(want_spec.tolerations));
    }
    if labels.is_empty() && annotations.is_empty() && spec.is_empty() {
        return None;
    }
    let mut patch = json!({"metadata": {}});
    if !labels.is_empty() {
        patch["metadata"]["labels"] = Value::Object(labels);
    }
    if !annotations.is_empty() {
        patch["metadata"]["annotations"] = Value::Object(annotations);
    }
    if !spec.is_empty() {
        patch["spec"] = Value::Object(spec);
    }
    Some(patch)
}

/// A virtual-cluster token for a pod's service account, bound to the pod.
async fn request_token(ctx: &SyncContext, vpod: &Pod, audience: Option<String>) -> Result<String, Error> {
    use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let ns = vpod.metadata.namespace.clone().unwrap_or_default();
    let sa = vpod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(ctx.virtual_client.clone(), &ns);
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(audience.into_iter().collect()),
            expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: vpod.metadata.name.clone(),
                uid: vpod.metadata.uid.clone(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let out = api.create_token_request(&sa, &PostParams::default(), &req).await?;
    Ok(out.status.and_then(|s| s.token).unwrap_or_default())
}

/// Point in-pod clients at the virtual API server: `KUBERNETES_SERVICE_HOST` and
/// `KUBERNETES_SERVICE_PORT` in every container (what client-go's in-cluster config
/// reads; a value in the container spec wins over the host kubelet's), unless the pod
/// sets them itself.
pub fn point_at_virtual_api(host_pod: &mut Pod, host: &str, port: u16) {
    let Some(spec) = host_pod.spec.as_mut() else { return };
    for c in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
        let env = c.env.get_or_insert_with(Vec::new);
        for (name, value) in
            [("KUBERNETES_SERVICE_HOST", host.to_string()), ("KUBERNETES_SERVICE_PORT", port.to_string())]
        {
            if !env.iter().any(|e| e.name == name) {
                env.push(EnvVar { name: name.into(), value: Some(value), value_from: None });
            }
        }
    }
}

/// Note on the virtual pod which host pod is its copy ([`HOST_UID`]).
async fn record_host_uid(virtual_api: &Api<Pod>, name: &str, host: &Pod) -> Result<(), Error> {
    let uid = host.metadata.uid.clone().unwrap_or_default();
    let pp = PatchParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() };
    virtual_api.patch(name, &pp, &Patch::Merge(json!({"metadata": {"annotations": {HOST_UID: uid}}}))).await?;
    Ok(())
}

/// The virtual pod's status from its host copy (`{"status": ...}`, as a status patch
/// and as the cache digests it). What is the host's own stays there: its scheduler's
/// nomination; its QoS class (the virtual pod keeps the one its API server gave it,
/// which is immutable — a host of another version may compute it differently); and the
/// generations observed (the host pod's generations count the host's spec changes, not
/// the virtual pod's: "caught up with the host spec" becomes "caught up with the
/// virtual spec").
pub fn status_back(host_pod: &Pod, virtual_pod: &CachedPod) -> Value {
    let mut status = host_pod.status.clone().unwrap_or_default();
    status.nominated_node_name = None;
    if virtual_pod.qos_class.is_some() {
        status.qos_class = virtual_pod.qos_class.clone();
    }
    let host_generation = host_pod.metadata.generation.unwrap_or(1);
    let virtual_generation = virtual_pod.metadata.generation.unwrap_or(1);
    // The virtual generation the host spec mirrors; a kubelet that has seen the latest
    // host spec has seen that one, one that has not, an older one.
    let mirrored = mirrored_generation(host_pod).unwrap_or(virtual_generation).min(virtual_generation);
    let observed = |g: Option<i64>| g.map(|g| if g >= host_generation { mirrored } else { g.min(mirrored - 1).max(1) });
    status.observed_generation = observed(status.observed_generation);
    for c in status.conditions.iter_mut().flatten() {
        c.observed_generation = observed(c.observed_generation);
    }
    json!({"status": status})
}

/// Run the pod syncer.
pub async fn run(ctx: Arc<SyncContext>) {
    let virtual_pods: Api<Pod> = Api::all(ctx.virtual_client.clone());
    let host_pods: Api<Pod> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
    let mapper = ctx.mapper.clone();
    // The virtual pods are cached slim ([`CachedPod`]), and reconciled a bounded number
    // at a time.
    let (reader, writer) = kube::runtime::reflector::store::<CachedPod>();
    if ctx.virtual_pods.set(reader.clone()).is_err() {
        tracing::warn!("the pod syncer runs twice in one context; the second shares the first's cache");
    }
    let slim = watcher(virtual_pods, watcher::Config::default()).default_backoff().map(|ev| {
        ev.map(|ev| match ev {
            watcher::Event::Apply(p) => watcher::Event::Apply(CachedPod::of(p)),
            watcher::Event::Delete(p) => watcher::Event::Delete(CachedPod::of(p)),
            watcher::Event::InitApply(p) => watcher::Event::InitApply(CachedPod::of(p)),
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitDone => watcher::Event::InitDone,
        })
    });
    let virtual_changes = kube::runtime::reflector::reflector(writer, slim).applied_objects();
    Controller::for_stream(virtual_changes, reader)
        .with_config(crate::engine::config())
        .watches(host_pods, watcher::Config::default().labels(&ctx.mapper.selector()), move |hp: Pod| {
            mapper.virtual_of(&hp.metadata).map(|(ns, name)| ObjectRef::new(&name).within(&ns))
        })
        .run_logged("pod-syncer", reconcile, ctx)
        .await;
}

async fn reconcile(vpod: Arc<CachedPod>, ctx: Arc<SyncContext>) -> Result<Action, Error> {
    let ns = vpod.metadata.namespace.clone().unwrap_or_default();
    let name = vpod.metadata.name.clone().unwrap_or_default();
    let host_name = ctx.naming().host_name("Pod", &ns, &name);
    let host_api: Api<Pod> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
    let virtual_api: Api<Pod> = Api::namespaced(ctx.virtual_client.clone(), &ns);
    let host = host_api.get_opt(&host_name).await?;
    // Only this pod's own copy counts: a host pod under the name that is anyone else's
    // (told by its origin annotations) is left alone, and this pod waits.
    if host.as_ref().is_some_and(|h| !ctx.mapper.is_copy_of(&h.metadata, "Pod", &ns, &name)) {
        ctx.report_name_taken("Pod", &vpod.as_regarding(), &host_name).await;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let synced_before = vpod.metadata.annotations.as_ref().and_then(|a| a.get(HOST_UID)).cloned();
    // Virtual pod deleting: host copy first, then the virtual pod.
    if vpod.metadata.deletion_timestamp.is_some() {
        match host {
            Some(h) if h.metadata.deletion_timestamp.is_none() => {
                let grace = vpod.metadata.deletion_grace_period_seconds;
                let dp = DeleteParams { grace_period_seconds: grace.map(|g| g as u32), ..Default::default() };
                host_api.delete(&host_name, &dp).await?;
                Ok(Action::requeue(Duration::from_millis(500)))
            }
            Some(_) => Ok(Action::requeue(Duration::from_millis(500))),
            None => {
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: vpod
                        .metadata
                        .uid
                        .clone()
                        .map(|u| Preconditions { uid: Some(u), resource_version: None }),
                    ..Default::default()
                };
                match virtual_api.delete(&name, &dp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(Action::await_change())
            }
        }
    } else {
        match host {
            None if synced_before.is_some() => {
                // Deleted on the host (drain, eviction, out of band): the virtual pod goes
                // too, and its controller replaces it.
                let dp = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
                match virtual_api.delete(&name, &dp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
                crate::events::virtual_event(
                    &ctx,
                    &vpod.as_regarding(),
                    "Warning",
                    "HostPodDeleted",
                    "The pod was deleted on the host cluster (drained, evicted or removed); its controller replaces it",
                )
                .await;
                Ok(Action::await_change())
            }
            None => {
                if vpod.is_terminal() {
                    return Ok(Action::await_change());
                }
                // With the virtual scheduler, the virtual cluster decides where a pod runs:
                // an unbound pod never reaches the host (the host scheduler would place it
                // where the virtual one refused to), as in vCluster. It is synced, bound,
                // once the virtual scheduler binds it.
                if ctx.config.virtual_scheduler && vpod.node_name.as_deref().is_none_or(str::is_empty) {
                    return Ok(Action::await_change());
                }
                // The cache is slim: the host copy is made from the whole pod (the same
                // pod: one recreated under the name is reconciled on its own event).
                let cached_uid = vpod.metadata.uid.clone();
                let Some(vpod) = virtual_api.get_opt(&name).await? else { return Ok(Action::await_change()) };
                if vpod.metadata.uid != cached_uid {
                    return Ok(Action::await_change());
                }
                crate::config::ensure_referenced(&ctx, &vpod).await?;
                let mut host_pod = translate(&vpod, ctx.naming(), &ctx.config);
                if let Some((host, port)) = &ctx.api_endpoint {
                    point_at_virtual_api(&mut host_pod, host, *port);
                }
                for need in token_needs(&vpod) {
                    let token = request_token(&ctx, &vpod, need.audience).await?;
                    host_pod.metadata.annotations.get_or_insert_with(Default::default).insert(need.annotation, token);
                }
                if let Some(node) = vpod.spec.as_ref().and_then(|s| s.node_name.clone())
                    && let Some(spec) = host_pod.spec.as_mut()
                {
                    spec.node_name = Some(node);
                }
                if let Some((owner, uid)) = ctx.owner.get() {
                    host_pod.metadata.owner_references = Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "ConfigMap".into(),
                        name: owner.clone(),
                        uid: uid.clone(),
                        controller: Some(true),
                        block_owner_deletion: None,
                    }]);
                }
                let created = match host_api
                    .create(&PostParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() }, &host_pod)
                    .await
                {
                    Ok(p) => p,
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        return Ok(Action::requeue(Duration::from_millis(200)));
                    }
                    // The host refuses the copy (its quota or limit range, its admission):
                    // the pod stays Pending, and says why, as vCluster's SyncError event.
                    Err(kube::Error::Api(e)) if matches!(e.code, 400 | 403 | 422) => {
                        let message = format!("Error syncing to physical cluster: {}", e.message);
                        let m = &vpod.metadata;
                        let regarding = json!({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": m.name, "namespace": m.namespace, "uid": m.uid}});
                        crate::events::virtual_event(&ctx, &regarding, "Warning", "SyncError", &message).await;
                        return Ok(Action::requeue(Duration::from_secs(10)));
                    }
                    Err(e) => return Err(e.into()),
                };
                record_host_uid(&virtual_api, &name, &created).await?;
                Ok(Action::requeue(Duration::from_secs(30)))
            }
            Some(h) => {
                // Bind the virtual pod where the host scheduler put it.
                let host_node = h.spec.as_ref().and_then(|s| s.node_name.clone());
                let virtual_node = vpod.node_name.clone();
                if let (Some(node), None) = (&host_node, &virtual_node) {
                    crate::nodes::ensure_virtual_node(&ctx, node).await?;
                    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
                    match virtual_api
                        .create_subresource::<_, Value>("binding", &name, &PostParams::default(), &binding)
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                // What the virtual pod changed since its host copy last mirrored it.
                let mirrors = h.metadata.annotations.as_ref().and_then(|a| a.get(VIRTUAL_STATE));
                if mirrors != Some(&virtual_state(&vpod.metadata))
                    && h.metadata.deletion_timestamp.is_none()
                    && let Some(full) = virtual_api.get_opt(&name).await?
                    && full.metadata.uid == vpod.metadata.uid
                {
                    let want = translate(&full, ctx.naming(), &ctx.config);
                    let pp = PatchParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() };
                    if let Some(patch) = update_patch(&h, &want) {
                        host_api.patch(&host_name, &pp, &Patch::Strategic(patch)).await?;
                    }
                    if let Some(patch) = ephemeral_patch(&h, &want) {
                        host_api
                            .patch_subresource("ephemeralcontainers", &host_name, &pp, &Patch::Strategic(patch))
                            .await?;
                    }
                    // The status goes back with the next host event, against the new spec.
                    return Ok(Action::requeue(Duration::from_secs(60)));
                }
                let wanted = status_back(&h, &vpod);
                if status_digest(&wanted) != vpod.status_digest {
                    virtual_api
                        .patch_status(
                            &name,
                            &PatchParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() },
                            &Patch::Merge(wanted),
                        )
                        .await?;
                }
                if synced_before.is_none() {
                    record_host_uid(&virtual_api, &name, &h).await?;
                }
                Ok(Action::requeue(Duration::from_secs(60)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapper() -> crate::names::NameMapper {
        crate::names::NameMapper::new("vc", "host")
    }

    fn pod(v: &Value) -> Pod {
        serde_json::from_value(v.clone()).expect("pod")
    }

    /// The host pod of a virtual one, as JSON (to read the fields as the host sees them).
    fn host(v: &Value, tolerations: &[String]) -> Value {
        let config = vkube_config::VClusterConfig { enforce_tolerations: tolerations.to_vec(), ..Default::default() };
        serde_json::to_value(translate(&pod(v), mapper().naming(), &config)).expect("json")
    }

    #[test]
    fn references_are_renamed_and_tokens_kept_out() {
        let v = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {
            "serviceAccountName": "builder",
            "containers": [{"name": "c", "image": "i",
                "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "b"}}}],
                "envFrom": [{"configMapRef": {"name": "cfg2"}}]}],
            "volumes": [{"name": "v", "configMap": {"name": "cfg3"}}, {"name": "s", "secret": {"secretName": "sec2"}}, {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
            "imagePullSecrets": [{"name": "pull"}]}});
        let h = host(&v, &["dedicated=vc:NoSchedule".to_string()]);
        assert_eq!(h["metadata"]["name"], "p-x-ns-x-vc");
        let c = &h["spec"]["containers"][0];
        assert_eq!(c["env"][0]["valueFrom"]["configMapKeyRef"]["name"], "cfg-x-ns-x-vc");
        assert_eq!(c["env"][1]["valueFrom"]["secretKeyRef"]["name"], "sec-x-ns-x-vc");
        assert_eq!(c["envFrom"][0]["configMapRef"]["name"], "cfg2-x-ns-x-vc");
        assert_eq!(h["spec"]["volumes"][0]["configMap"]["name"], "cfg3-x-ns-x-vc");
        assert_eq!(h["spec"]["volumes"][1]["secret"]["secretName"], "sec2-x-ns-x-vc");
        assert_eq!(h["spec"]["volumes"][2]["persistentVolumeClaim"]["claimName"], "data-x-ns-x-vc");
        assert_eq!(h["spec"]["imagePullSecrets"][0]["name"], "pull-x-ns-x-vc");
        assert!(h["spec"].get("serviceAccountName").is_none());
        assert_eq!(h["spec"]["automountServiceAccountToken"], false);
        assert_eq!(
            h["spec"]["tolerations"][0],
            json!({"key": "dedicated", "operator": "Equal", "value": "vc", "effect": "NoSchedule"})
        );
    }

    #[test]
    fn token_sources_become_annotations_and_field_refs_name_the_virtual_pod() {
        let v = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {
            "containers": [{"name": "c", "image": "i", "env": [{"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]}],
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}},
                {"name": "vault", "projected": {"sources": [{"serviceAccountToken": {"audience": "vault", "path": "t"}}]}}]}});
        let needs = token_needs(&pod(&v));
        assert_eq!(needs.len(), 2);
        assert_eq!(needs[1].audience.as_deref(), Some("vault"));
        assert_ne!(needs[0].annotation, needs[1].annotation);
        let h = host(&v, &[]);
        let sources = &h["spec"]["volumes"][0]["projected"]["sources"];
        assert_eq!(
            sources[0]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            format!("metadata.annotations['{}']", needs[0].annotation)
        );
        assert_eq!(sources[0]["downwardAPI"]["items"][0]["path"], "token");
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt-x-ns-x-vc");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.annotations['vkube.dev/object-namespace']"
        );
        assert_eq!(
            h["spec"]["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.annotations['vkube.dev/object-namespace']"
        );
    }

    #[test]
    fn host_pods_are_pointed_at_the_virtual_api() {
        let v = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
            "initContainers": [{"name": "i", "image": "i"}],
            "containers": [{"name": "c", "image": "i", "env": [{"name": "KUBERNETES_SERVICE_PORT", "value": "8443"}]}]}});
        let mut typed = translate(&pod(&v), mapper().naming(), &Default::default());
        point_at_virtual_api(&mut typed, "10.0.0.5", 6443);
        let h = serde_json::to_value(&typed).expect("json");
        assert_eq!(
            h["spec"]["initContainers"][0]["env"],
            json!([{"name": "KUBERNETES_SERVICE_HOST", "value": "10.0.0.5"}, {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"}])
        );
        // The pod's own value stays.
        assert_eq!(
            h["spec"]["containers"][0]["env"],
            json!([{"name": "KUBERNETES_SERVICE_PORT", "value": "8443"}, {"name": "KUBERNETES_SERVICE_HOST", "value": "10.0.0.5"}])
        );
    }

    #[test]
    fn the_cache_keeps_what_the_syncer_reads() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "annotations": {HOST_UID: "h"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                "envFrom": [{"configMapRef": {"name": "cfg"}}]}],
                "volumes": [{"name": "s", "secret": {"secretName": "sec"}}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}}))
        .expect("pod");
        let c = CachedPod::of(pod.clone());
        let host_status = status_back(&pod, &c);
        assert!(c.metadata.managed_fields.is_none());
        assert_eq!(c.metadata.annotations.as_ref().and_then(|a| a.get(HOST_UID)).map(String::as_str), Some("h"));
        assert_eq!(c.node_name.as_deref(), Some("n1"));
        assert!(!c.is_terminal());
        assert_eq!(
            (c.config_maps.as_slice(), c.secrets.as_slice()),
            (&["cfg".to_string()][..], &["sec".to_string()][..])
        );
        // The same status from the host, keys in any order: nothing to write back.
        assert_eq!(status_digest(&host_status), c.status_digest);
        let reordered = json!({"status": {"podIP": "10.0.0.1", "conditions": [{"status": "True", "type": "Ready"}], "phase": "Running"}});
        assert_eq!(status_digest(&reordered), c.status_digest);
        let changed = json!({"status": {"podIP": "10.0.0.2", "conditions": [{"status": "True", "type": "Ready"}], "phase": "Running"}});
        assert_ne!(status_digest(&changed), c.status_digest);
    }

    #[test]
    fn tolerations_parse() {
        let json_of = |t: Toleration| serde_json::to_value(t).expect("json");
        assert_eq!(
            json_of(parse_toleration("gpu:NoSchedule")),
            json!({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"})
        );
        assert_eq!(json_of(parse_toleration("k=v")), json!({"key": "k", "operator": "Equal", "value": "v"}));
    }

    #[test]
    fn the_synced_nodes_selector_is_enforced_unless_the_virtual_scheduler_binds() {
        let v = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
            "nodeSelector": {"disk": "ssd", "pool": "mine"}, "containers": [{"name": "c", "image": "i"}]}});
        let mut config = vkube_config::VClusterConfig { sync_nodes: true, ..Default::default() };
        config.node_selector_labels.insert("pool".into(), "a".into());
        let h = serde_json::to_value(translate(&pod(&v), mapper().naming(), &config)).expect("json");
        assert_eq!(h["spec"]["nodeSelector"], json!({"disk": "ssd", "pool": "a"}));
        config.virtual_scheduler = true;
        let h = serde_json::to_value(translate(&pod(&v), mapper().naming(), &config)).expect("json");
        assert_eq!(h["spec"]["nodeSelector"], json!({"disk": "ssd", "pool": "mine"}));
        config.virtual_scheduler = false;
        config.sync_nodes = false;
        let h = serde_json::to_value(translate(&pod(&v), mapper().naming(), &config)).expect("json");
        assert_eq!(h["spec"]["nodeSelector"], json!({"disk": "ssd", "pool": "mine"}));
    }

    #[test]
    fn status_back_keeps_the_virtual_qos_class_and_generations() {
        let virtual_pod = CachedPod::of(
            serde_json::from_value(json!({"metadata": {"name": "p", "generation": 3},
                "status": {"phase": "Pending", "qosClass": "Burstable"}}))
            .expect("pod"),
        );
        // A host of another version: another QoS class, and generations of its own.
        let host: Pod = serde_json::from_value(json!({"metadata": {"name": "h", "generation": 5},
            "status": {"phase": "Running", "qosClass": "BestEffort", "observedGeneration": 5,
                "conditions": [{"type": "Ready", "status": "True", "observedGeneration": 5},
                    {"type": "PodScheduled", "status": "True", "observedGeneration": 2}]}}))
        .expect("pod");
        let back = status_back(&host, &virtual_pod);
        assert_eq!(back["status"]["qosClass"], "Burstable");
        assert_eq!(back["status"]["observedGeneration"], 3, "caught up with the host: with the virtual pod");
        assert_eq!(back["status"]["conditions"][0]["observedGeneration"], 3);
        assert_eq!(back["status"]["conditions"][1]["observedGeneration"], 2, "behind stays behind");
        assert_eq!(back["status"]["phase"], "Running");
        // Without a virtual class yet, the host's.
        let fresh = CachedPod::of(serde_json::from_value(json!({"metadata": {"name": "p"}})).expect("pod"));
        assert_eq!(status_back(&host, &fresh)["status"]["qosClass"], "BestEffort");
    }

    #[test]
    fn updates_reach_the_host_copy_in_what_a_pod_may_change() {
        let v1 = json!({"metadata": {"name": "p", "namespace": "ns", "generation": 1,
            "labels": {"app": "web", "old": "x"}, "annotations": {"note": "a", "gone": "b"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}, {"name": "d", "image": "redis"}]}});
        let host = translate(&pod(&v1), mapper().naming(), &Default::default());
        assert!(update_patch(&host, &host).is_none(), "nothing differs");
        let mut v2 = v1.clone();
        v2["metadata"]["generation"] = json!(2);
        v2["metadata"]["labels"] = json!({"app": "web", "new": "y"});
        v2["metadata"]["annotations"] = json!({"note": "changed"});
        v2["spec"]["containers"][0]["image"] = json!("nginx:2");
        v2["spec"]["activeDeadlineSeconds"] = json!(30);
        let want = translate(&pod(&v2), mapper().naming(), &Default::default());
        let patch = update_patch(&host, &want).expect("a patch");
        assert_eq!(patch["metadata"]["labels"]["old"], Value::Null);
        assert_eq!(patch["metadata"]["labels"]["new"], "y");
        assert!(patch["metadata"]["labels"].get("app").is_none(), "unchanged labels are not sent");
        assert_eq!(patch["metadata"]["annotations"]["note"], "changed");
        assert_eq!(patch["metadata"]["annotations"]["gone"], Value::Null);
        assert_eq!(patch["metadata"]["annotations"][VIRTUAL_STATE], virtual_state(&pod(&v2).metadata));
        assert_eq!(patch["spec"]["containers"], json!([{"name": "c", "image": "nginx:2"}]));
        assert_eq!(patch["spec"]["activeDeadlineSeconds"], 30);
        assert!(patch["spec"].get("tolerations").is_none());
        // A host annotation of someone else's is never removed.
        let mut foreign = host.clone();
        foreign.metadata.annotations.get_or_insert_with(Default::default).insert("host.example/x".into(), "1".into());
        let patch = update_patch(&foreign, &want).expect("a patch");
        assert!(patch["metadata"]["annotations"].get("host.example/x").is_none());
        // The status maps to the generation the host spec mirrors.
        let mut h: Pod = foreign;
        h.metadata.generation = Some(4);
        h.status = serde_json::from_value(json!({"observedGeneration": 4})).ok();
        let cached = CachedPod::of(pod(&v2));
        assert_eq!(status_back(&h, &cached)["status"]["observedGeneration"], 1, "the host mirrors generation 1");
    }
}
