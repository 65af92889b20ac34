//! Namespace lifecycle: a namespace being deleted has everything in it deleted (every
//! namespaced resource the server lists in discovery) — its pods first, and nothing
//! else while a pod remains (KEP-5080's ordered deletion: a workload keeps its secrets
//! and config maps until it is gone) — then its `kubernetes` finalizer removed, which
//! lets the API server delete it. What blocks deletion shows in the namespace's
//! conditions, as kube-controller-manager reports it.

use crate::runtime::RunLogged;
use crate::util::Error;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PostParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

struct Ctx {
    client: kube::Client,
}

/// Run the namespace controller.
pub async fn run(client: kube::Client) {
    let ns: Api<Namespace> = Api::all(client.clone());
    Controller::new(ns, watcher::Config::default()).run_logged("namespace", reconcile, Arc::new(Ctx { client })).await;
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    // Pods first: while one remains (a finalizer, a grace period), nothing else goes.
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &name);
    let left = pods.list(&ListParams::default()).await?.items;
    if !left.is_empty() {
        for p in left.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            let n = p.metadata.name.clone().unwrap_or_default();
            match pods.delete(&n, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let finalizers: std::collections::BTreeSet<String> =
            left.iter().flat_map(|p| p.metadata.finalizers.clone().unwrap_or_default()).collect();
        report_remaining(&ctx.client, &ns, &name, left.len(), &finalizers).await?;
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let discovery = Discovery::new(ctx.client.clone()).run().await?;
    let mut remaining = 0usize;
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || !caps.supports_operation(verbs::DELETE)
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &name, &ar);
            let list = match api.list(&ListParams::default()).await {
                Ok(l) => l,
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => continue,
                Err(e) => return Err(e.into()),
            };
            for obj in list.items {
                remaining += 1;
                if obj.metadata.deletion_timestamp.is_none() {
                    let n = obj.metadata.name.clone().unwrap_or_default();
                    match api.delete(&n, &DeleteParams::background()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
    if remaining > 0 {
        return Ok(Action::requeue(Duration::from_millis(300)));
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let mut finalized = (*ns).clone();
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = Some(vec![]);
    }
    match api.replace_subresource("finalize", &name, &PostParams::default(), &finalized).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Action::requeue(Duration::from_millis(200))),
        Err(e) => Err(e.into()),
    }
}

/// The namespace's deletion conditions while pods block it.
async fn report_remaining(
    client: &kube::Client,
    ns: &Namespace,
    name: &str,
    pods: usize,
    finalizers: &std::collections::BTreeSet<String>,
) -> Result<(), Error> {
    let now = vkube_core::meta::now_rfc3339();
    let mut wanted = vec![
        (
            "NamespaceDeletionContentFailure",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, 1 remaining: unexpected items still remain in namespace: {name} for gvr: /v1, Resource=pods"
            ),
        ),
        (
            "NamespaceContentRemaining",
            "SomeResourcesRemain",
            format!("Some resources are remaining: pods. has {pods} resource instances"),
        ),
    ];
    if !finalizers.is_empty() {
        let list =
            finalizers.iter().map(|f| format!("{f} in {pods} resource instances")).collect::<Vec<_>>().join(", ");
        wanted.push((
            "NamespaceFinalizersRemaining",
            "SomeFinalizersRemain",
            format!("Some content in the namespace has finalizers remaining: {list}"),
        ));
    }
    let current = ns.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let same = wanted.iter().all(|(t, r, m)| {
        current.iter().any(|c| {
            c.type_ == *t
                && c.status == "True"
                && c.reason.as_deref() == Some(r)
                && c.message.as_deref() == Some(m.as_str())
        })
    });
    if same {
        return Ok(());
    }
    let conditions: Vec<serde_json::Value> = wanted
        .iter()
        .map(|(t, r, m)| json!({"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now}))
        .collect();
    let api: Api<Namespace> = Api::all(client.clone());
    match api
        .patch_status(
            name,
            &crate::util::pp("namespace-controller"),
            &Patch::Merge(json!({"status": {"conditions": conditions}})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
