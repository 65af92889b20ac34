//! ResourceQuota: `status.hard` mirrors `spec.hard`, `status.used` is what the
//! namespace's objects use of each of those names ([`vkube_core::quota`]), recomputed
//! whenever a quota or an object it may count changes (and every 30 s). Admission
//! refuses what would exceed it (the API server's quota plugin).

use crate::runtime::RunLogged;
use crate::util::{Error, pp};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch};
use kube::core::GroupVersionKind;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use vkube_core::quota;

const MANAGER: &str = "resourcequota-controller";

/// The kinds a quota can count: (group, version, kind, plural).
const COUNTED: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "Pod", "pods"),
    ("", "v1", "Service", "services"),
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "Secret", "secrets"),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("", "v1", "ResourceQuota", "resourcequotas"),
    ("", "v1", "ReplicationController", "replicationcontrollers"),
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "ReplicaSet", "replicasets"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("apps", "v1", "DaemonSet", "daemonsets"),
    ("batch", "v1", "Job", "jobs"),
    ("batch", "v1", "CronJob", "cronjobs"),
];

struct Ctx {
    client: kube::Client,
}

/// The quotas of an object's namespace, to recompute when it changes.
fn quotas_of<K: kube::Resource>(store: Store<ResourceQuota>) -> impl Fn(K) -> Vec<ObjectRef<ResourceQuota>> {
    move |obj: K| {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        store
            .state()
            .iter()
            .filter(|q| q.metadata.namespace.as_deref() == Some(ns.as_str()))
            .map(|q| ObjectRef::from_obj(q.as_ref()))
            .collect()
    }
}

/// Run the ResourceQuota controller.
pub async fn run(client: kube::Client) {
    let cfg = watcher::Config::default;
    let controller =
        Controller::new(Api::<ResourceQuota>::all(client.clone()), cfg()).with_config(crate::util::controller_config());
    let store = controller.store();
    controller
        .watches(Api::<Pod>::all(client.clone()), cfg(), quotas_of::<Pod>(store.clone()))
        .watches(Api::<Service>::all(client.clone()), cfg(), quotas_of::<Service>(store.clone()))
        .watches(Api::<ConfigMap>::all(client.clone()), cfg(), quotas_of::<ConfigMap>(store.clone()))
        .watches(Api::<Secret>::all(client.clone()), cfg(), quotas_of::<Secret>(store.clone()))
        .watches(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            cfg(),
            quotas_of::<PersistentVolumeClaim>(store.clone()),
        )
        .watches(Api::<Deployment>::all(client.clone()), cfg(), quotas_of::<Deployment>(store.clone()))
        .watches(Api::<ReplicaSet>::all(client.clone()), cfg(), quotas_of::<ReplicaSet>(store.clone()))
        .watches(Api::<StatefulSet>::all(client.clone()), cfg(), quotas_of::<StatefulSet>(store.clone()))
        .watches(Api::<DaemonSet>::all(client.clone()), cfg(), quotas_of::<DaemonSet>(store.clone()))
        .watches(Api::<Job>::all(client.clone()), cfg(), quotas_of::<Job>(store.clone()))
        .watches(Api::<CronJob>::all(client.clone()), cfg(), quotas_of::<CronJob>(store))
        .run_logged("resourcequota", reconcile, Arc::new(Ctx { client }))
        .await;
}

async fn reconcile(rq: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if rq.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = rq.metadata.namespace.clone().unwrap_or_default();
    let name = rq.metadata.name.clone().unwrap_or_default();
    let q = serde_json::to_value(rq.as_ref())?;
    let hard = quota::hard_of(&q);
    let scopes = quota::scopes_of(&q);
    let mut used: quota::Usage = hard.keys().map(|k| (k.clone(), 0)).collect();
    for (group, version, kind, plural) in COUNTED {
        if !hard.keys().any(|k| quota::tracks(k, group, plural)) {
            continue;
        }
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &ar);
        let items = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            // A kind this server does not serve uses nothing.
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(e.into()),
        };
        for obj in items {
            let v = serde_json::to_value(&obj)?;
            for (k, n) in quota::usage(group, plural, &v, &scopes) {
                if let Some(u) = used.get_mut(&k) {
                    *u += n;
                }
            }
        }
    }
    let spec_hard = q.pointer("/spec/hard").cloned().unwrap_or_else(|| json!({}));
    let used_json: Map<String, Value> = used.iter().map(|(k, v)| (k.clone(), json!(quota::format_milli(*v)))).collect();
    if quota::used_of(&q) != used || quota::usage_of(q.pointer("/status/hard")) != hard {
        let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
        // A merge patch would keep names dropped from spec.hard: set the whole status
        // (a JSON patch `add` replaces a member that exists).
        let status = json!({"hard": spec_hard, "used": used_json});
        let patch = serde_json::from_value(json!([{"op": "add", "path": "/status", "value": status}]))?;
        let result = api.patch_status(&name, &pp(MANAGER), &Patch::Json::<()>(patch)).await;
        match result {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}
