//! Pods: virtual → host (spec translated), host → virtual (status, and the node the
//! host scheduler chose), deletes both ways.
//!
//! Dispatch per virtual pod: host copy missing → create it (unless it existed before
//! and was deleted on the host: then the virtual pod goes, so its controller makes a
//! new one); both exist → copy status back, bind; virtual pod deleting → delete the
//! host copy, then finish the virtual delete. Host pods whose virtual pod is gone are
//! removed by [`crate::cleanup`].

use crate::names::{HostNames, NameMapper};
use crate::{Error, SyncContext};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Annotation on a virtual pod: the uid of its host copy, once created.
pub const HOST_UID: &str = "vkube.dev/host-uid";
/// Annotation prefix on a host pod: a token of the virtual cluster for one projected
/// `serviceAccountToken` source, which the host pod reads through the downward API.
pub const TOKEN_PREFIX: &str = "vkube.dev/token-";
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
pub fn token_needs(virtual_pod: &Value) -> Vec<TokenNeed> {
    let mut out = Vec::new();
    for v in virtual_pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten() {
        let volume = v.get("name").and_then(Value::as_str).unwrap_or_default();
        for s in v.pointer("/projected/sources").and_then(Value::as_array).into_iter().flatten() {
            if let Some(t) = s.get("serviceAccountToken") {
                let path = t.get("path").and_then(Value::as_str).unwrap_or_default();
                let audience = t.get("audience").and_then(Value::as_str).filter(|a| !a.is_empty());
                out.push(TokenNeed {
                    annotation: token_annotation(volume, path, audience),
                    audience: audience.map(String::from),
                });
            }
        }
    }
    out
}

/// Downward-API field paths that would name the host object, pointed at the annotations
/// that name the virtual one.
fn translate_field_ref(v: &mut Value) {
    if let Some(Value::String(path)) = v.pointer_mut("/fieldRef/fieldPath") {
        let annotation = match path.as_str() {
            "metadata.name" => crate::names::OBJECT_NAME,
            "metadata.namespace" => crate::names::OBJECT_NAMESPACE,
            "metadata.uid" => crate::names::OBJECT_UID,
            _ => return,
        };
        *path = format!("metadata.annotations['{annotation}']");
    }
}

fn rename(v: &mut Value, ptr: &str, names: &dyn HostNames, kind: &str, ns: &str) {
    if let Some(Value::String(s)) = v.pointer_mut(ptr) {
        *s = names.host_name_for(kind, ns, s);
    }
}

/// Parse `key=value:Effect` / `key:Effect` / `key` into a toleration.
pub fn parse_toleration(s: &str) -> Value {
    let (kv, effect) = s.split_once(':').map(|(a, b)| (a, Some(b))).unwrap_or((s, None));
    let mut t = match kv.split_once('=') {
        Some((k, v)) => json!({"key": k, "operator": "Equal", "value": v}),
        None => json!({"key": kv, "operator": "Exists"}),
    };
    if let Some(e) = effect {
        t["effect"] = json!(e);
    }
    t
}

/// The host pod for a virtual pod; `names` gives the host names of what it refers to.
pub fn translate(
    virtual_pod: &Value,
    mapper: &NameMapper,
    names: &dyn HostNames,
    enforce_tolerations: &[String],
) -> Value {
    let ns = virtual_pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
    let name = virtual_pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut spec = virtual_pod.get("spec").cloned().unwrap_or_else(|| json!({}));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                if let Some(envs) = c.get_mut("env").and_then(Value::as_array_mut) {
                    for e in envs {
                        rename(e, "/valueFrom/configMapKeyRef/name", names, "ConfigMap", &ns);
                        rename(e, "/valueFrom/secretKeyRef/name", names, "Secret", &ns);
                        if let Some(from) = e.get_mut("valueFrom") {
                            translate_field_ref(from);
                        }
                    }
                }
                if let Some(from) = c.get_mut("envFrom").and_then(Value::as_array_mut) {
                    for f in from {
                        rename(f, "/configMapRef/name", names, "ConfigMap", &ns);
                        rename(f, "/secretRef/name", names, "Secret", &ns);
                    }
                }
            }
        }
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols {
            rename(v, "/configMap/name", names, "ConfigMap", &ns);
            rename(v, "/secret/secretName", names, "Secret", &ns);
            rename(v, "/persistentVolumeClaim/claimName", names, "PersistentVolumeClaim", &ns);
            for item in v.pointer_mut("/downwardAPI/items").and_then(Value::as_array_mut).into_iter().flatten() {
                translate_field_ref(item);
            }
            let volume = v.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            if let Some(sources) = v.pointer_mut("/projected/sources").and_then(Value::as_array_mut) {
                for s in sources {
                    rename(s, "/configMap/name", names, "ConfigMap", &ns);
                    rename(s, "/secret/name", names, "Secret", &ns);
                    for item in s.pointer_mut("/downwardAPI/items").and_then(Value::as_array_mut).into_iter().flatten()
                    {
                        translate_field_ref(item);
                    }
                    // A virtual-cluster token, read from the host pod's annotation (the
                    // syncer requests it when it creates the host pod).
                    if let Some(t) = s.get("serviceAccountToken") {
                        let path = t.get("path").and_then(Value::as_str).unwrap_or_default().to_string();
                        let audience = t.get("audience").and_then(Value::as_str).filter(|a| !a.is_empty());
                        let key = token_annotation(&volume, &path, audience);
                        *s = json!({"downwardAPI": {"items": [{"path": path, "fieldRef": {"apiVersion": "v1", "fieldPath": format!("metadata.annotations['{key}']")}}]}});
                    }
                }
            }
        }
    }
    if let Some(ips) = spec.get_mut("imagePullSecrets").and_then(Value::as_array_mut) {
        for s in ips {
            rename(s, "/name", names, "Secret", &ns);
        }
    }
    if let Some(m) = spec.as_object_mut() {
        // The host's own service account, without its token: in-pod clients talk to the
        // virtual API, not the host's.
        m.remove("serviceAccountName");
        m.remove("serviceAccount");
        m.insert("automountServiceAccountToken".into(), json!(false));
        m.remove("priorityClassName");
        m.remove("schedulerName");
        if !m.contains_key("hostname") {
            m.insert("hostname".into(), json!(name.chars().take(63).collect::<String>()));
        }
        m.remove("subdomain");
        let tolerations = m.entry("tolerations").or_insert_with(|| json!([]));
        if let Value::Array(ts) = tolerations {
            for t in enforce_tolerations {
                let t = parse_toleration(t);
                if !ts.contains(&t) {
                    ts.push(t);
                }
            }
        }
    }
    let host_name = names.host_name_for("Pod", &ns, &name);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": mapper.host_metadata("Pod", virtual_pod, &host_name), "spec": spec})
}

/// A virtual-cluster token for a pod's service account, bound to the pod.
async fn request_token(ctx: &SyncContext, vpod: &Pod, audience: Option<String>) -> Result<String, Error> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let ns = vpod.metadata.namespace.clone().unwrap_or_default();
    let sa = vpod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(ctx.virtual_client.clone(), &ns);
    let req = serde_json::from_value(json!({"spec": {
        "audiences": audience.into_iter().collect::<Vec<_>>(),
        "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": vpod.metadata.name, "uid": vpod.metadata.uid},
    }}))?;
    let out = api.create_token_request(&sa, &PostParams::default(), &req).await?;
    Ok(out.status.and_then(|s| s.token).unwrap_or_default())
}

/// Point in-pod clients at the virtual API server: `KUBERNETES_SERVICE_HOST` and
/// `KUBERNETES_SERVICE_PORT` in every container (what client-go's in-cluster config
/// reads; a value in the container spec wins over the host kubelet's), unless the pod
/// sets them itself.
pub fn point_at_virtual_api(host_pod: &mut Value, host: &str, port: u16) {
    for list in ["initContainers", "containers"] {
        for c in host_pod.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(c) = c.as_object_mut() else { continue };
            let env = c.entry("env").or_insert_with(|| json!([]));
            let Some(env) = env.as_array_mut() else { continue };
            for (name, value) in
                [("KUBERNETES_SERVICE_HOST", host.to_string()), ("KUBERNETES_SERVICE_PORT", port.to_string())]
            {
                if !env.iter().any(|e| e.get("name").and_then(Value::as_str) == Some(name)) {
                    env.push(json!({"name": name, "value": value}));
                }
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

/// The virtual pod's status from its host copy.
pub fn status_back(host_pod: &Value) -> Value {
    let mut status = host_pod.get("status").cloned().unwrap_or_else(|| json!({}));
    if let Some(m) = status.as_object_mut() {
        m.remove("nominatedNodeName");
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
    let _ = ctx.virtual_pods.set(reader.clone());
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
        .with_config(kube::runtime::controller::Config::default().concurrency(crate::RECONCILE_CONCURRENCY))
        .watches(host_pods, watcher::Config::default().labels(&ctx.mapper.selector()), move |hp: Pod| {
            mapper.virtual_of(&hp.metadata).map(|(ns, name)| ObjectRef::new(&name).within(&ns))
        })
        .run(
            reconcile,
            |_, e, _| {
                tracing::debug!("pod sync: {e}");
                Action::requeue(Duration::from_millis(500))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

async fn reconcile(vpod: Arc<CachedPod>, ctx: Arc<SyncContext>) -> Result<Action, Error> {
    let ns = vpod.metadata.namespace.clone().unwrap_or_default();
    let name = vpod.metadata.name.clone().unwrap_or_default();
    let host_name = ctx.host_name_for("Pod", &ns, &name);
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
                let vpod_value = serde_json::to_value(&vpod)?;
                let mut host_pod = translate(&vpod_value, &ctx.mapper, ctx.as_ref(), &ctx.config.enforce_tolerations);
                if let Some((host, port)) = &ctx.api_endpoint {
                    point_at_virtual_api(&mut host_pod, host, *port);
                }
                for need in token_needs(&vpod_value) {
                    let token = request_token(&ctx, &vpod, need.audience).await?;
                    host_pod["metadata"]["annotations"][need.annotation] = json!(token);
                }
                if let Some(node) = vpod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                    host_pod["spec"]["nodeName"] = json!(node);
                }
                if let Some((owner, uid)) = ctx.owner.get() {
                    host_pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid, "controller": true}]);
                }
                let created = match host_api
                    .create(
                        &PostParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() },
                        &serde_json::from_value(host_pod)?,
                    )
                    .await
                {
                    Ok(p) => p,
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        return Ok(Action::requeue(Duration::from_millis(200)));
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
                let host_v = serde_json::to_value(&h)?;
                let wanted = status_back(&host_v);
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

    fn mapper() -> NameMapper {
        NameMapper::new("vc", "host")
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
        let h = translate(&v, &mapper(), &mapper(), &["dedicated=vc:NoSchedule".to_string()]);
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
        let needs = token_needs(&v);
        assert_eq!(needs.len(), 2);
        assert_eq!(needs[1].audience.as_deref(), Some("vault"));
        assert_ne!(needs[0].annotation, needs[1].annotation);
        let h = translate(&v, &mapper(), &mapper(), &[]);
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
        let mut h = translate(&v, &mapper(), &mapper(), &[]);
        point_at_virtual_api(&mut h, "10.0.0.5", 6443);
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
        let host_status = status_back(&serde_json::to_value(&pod).expect("json"));
        let c = CachedPod::of(pod);
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
        assert_eq!(
            parse_toleration("gpu:NoSchedule"),
            json!({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"})
        );
        assert_eq!(parse_toleration("k=v"), json!({"key": "k", "operator": "Equal", "value": "v"}));
    }
}
