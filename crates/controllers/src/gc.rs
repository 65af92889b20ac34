//! Garbage collection by ownerReferences: dependents whose owners are all gone are
//! deleted (background propagation); an owner deleted in the foreground
//! (`foregroundDeletion` finalizer) has its dependents deleted first; an owner deleted
//! with `orphan` propagation has its dependents released.
//!
//! # Caveats
//! It sweeps every listable resource each period rather than keeping a graph from
//! watches; each deletion is confirmed by reading the owner first, so a dependent of an
//! owner created between two lists is never taken for an orphan.

use crate::util::{Error, pp};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch};
use kube::discovery::{Discovery, Scope, verbs};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

struct Kind {
    ar: ApiResource,
    namespaced: bool,
}

/// Run until aborted.
pub async fn run(client: kube::Client, period: Duration) {
    let mut kinds: Vec<Kind> = Vec::new();
    let mut last_discovery = std::time::Instant::now() - Duration::from_secs(3600);
    loop {
        if last_discovery.elapsed() > Duration::from_secs(15)
            && let Ok(d) = Discovery::new(client.clone()).run().await
        {
            kinds = d
                .groups()
                .flat_map(|g| g.recommended_resources())
                .filter(|(_, caps)| caps.supports_operation(verbs::LIST) && caps.supports_operation(verbs::DELETE))
                .map(|(ar, caps)| Kind { ar, namespaced: caps.scope == Scope::Namespaced })
                .collect();
            last_discovery = std::time::Instant::now();
        }
        let started = std::time::Instant::now();
        if let Err(e) = sweep(&client, &kinds).await {
            tracing::debug!("gc: {e}");
        }
        // A sweep lists every object: with many objects, sweep less often, so the
        // collector never takes more than about a tenth of the time.
        tokio::time::sleep(period.max(started.elapsed() * 10)).await;
    }
}

fn api_for(client: &kube::Client, k: &Kind, ns: Option<&str>) -> Api<DynamicObject> {
    match (k.namespaced, ns) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &k.ar),
        _ => Api::all_with(client.clone(), &k.ar),
    }
}

async fn owner_exists(
    client: &kube::Client,
    kinds: &[Kind],
    r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ns: Option<&str>,
) -> bool {
    let Some(k) = kinds.iter().find(|k| k.ar.kind == r.kind && k.ar.api_version == r.api_version) else { return true };
    match api_for(client, k, ns).get_metadata_opt(&r.name).await {
        Ok(Some(o)) => o.metadata.uid.as_deref() == Some(r.uid.as_str()),
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Drop one finalizer from an object (best effort; the next sweep retries).
async fn remove_finalizer(api: &Api<DynamicObject>, name: &str, finalizers: &[String], which: &str) {
    let rest: Vec<&String> = finalizers.iter().filter(|f| *f != which).collect();
    let patch = Patch::Merge(json!({"metadata": {"finalizers": rest}}));
    let _ = api.patch_metadata(name, &pp("garbage-collector"), &patch).await;
}

async fn sweep(client: &kube::Client, kinds: &[Kind]) -> Result<(), Error> {
    let mut objects: Vec<(usize, kube::core::PartialObjectMeta<DynamicObject>)> = Vec::new();
    for (i, k) in kinds.iter().enumerate() {
        if k.ar.kind == "Event" {
            continue;
        }
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &k.ar);
        match api.list_metadata(&ListParams::default()).await {
            Ok(list) => objects.extend(list.items.into_iter().map(|o| (i, o))),
            Err(e) => tracing::debug!("gc list {}: {e}", k.ar.plural),
        }
    }
    let uids: HashSet<String> = objects.iter().filter_map(|(_, o)| o.metadata.uid.clone()).collect();
    let mut dependents: HashMap<String, Vec<usize>> = HashMap::new();
    for (idx, (_, o)) in objects.iter().enumerate() {
        for r in o.metadata.owner_references.iter().flatten() {
            dependents.entry(r.uid.clone()).or_default().push(idx);
        }
    }
    for (idx, (ki, o)) in objects.iter().enumerate() {
        let k = &kinds[*ki];
        let ns = o.metadata.namespace.as_deref();
        let name = o.metadata.name.clone().unwrap_or_default();
        let uid = o.metadata.uid.clone().unwrap_or_default();
        let finalizers = o.metadata.finalizers.clone().unwrap_or_default();
        let api = api_for(client, k, ns);
        if o.metadata.deletion_timestamp.is_some() {
            let deps: Vec<usize> =
                dependents.get(&uid).cloned().unwrap_or_default().into_iter().filter(|d| *d != idx).collect();
            if finalizers.iter().any(|f| f == "orphan") {
                for d in &deps {
                    let (dk, dobj) = &objects[*d];
                    let refs: Vec<_> =
                        dobj.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
                    let dapi = api_for(client, &kinds[*dk], dobj.metadata.namespace.as_deref());
                    let _ = dapi
                        .patch_metadata(
                            dobj.metadata.name.as_deref().unwrap_or_default(),
                            &pp("garbage-collector"),
                            &Patch::Merge(json!({"metadata": {"ownerReferences": refs}})),
                        )
                        .await;
                }
                remove_finalizer(&api, &name, &finalizers, "orphan").await;
            } else if finalizers.iter().any(|f| f == "foregroundDeletion") {
                if deps.is_empty() {
                    remove_finalizer(&api, &name, &finalizers, "foregroundDeletion").await;
                } else {
                    for d in &deps {
                        let (dk, dobj) = &objects[*d];
                        if dobj.metadata.deletion_timestamp.is_none() {
                            let dapi = api_for(client, &kinds[*dk], dobj.metadata.namespace.as_deref());
                            let _ = dapi
                                .delete(dobj.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::foreground())
                                .await;
                        }
                    }
                }
            }
            continue;
        }
        let refs: Vec<_> = o.metadata.owner_references.clone().unwrap_or_default();
        if refs.is_empty() || refs.iter().any(|r| uids.contains(&r.uid)) {
            continue;
        }
        let mut all_gone = true;
        for r in &refs {
            if owner_exists(client, kinds, r, ns).await {
                all_gone = false;
                break;
            }
        }
        if all_gone {
            let _ = api.delete(&name, &DeleteParams::background()).await;
        }
    }
    Ok(())
}
