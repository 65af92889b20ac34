//! PodDisruptionBudget status: how many matching pods are healthy and how many
//! disruptions the budget allows (what the eviction API checks).

use crate::runtime::RunLogged;
use crate::util::{Error, int_or_percent, is_ready, label_selector, pp};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

struct Ctx {
    client: kube::Client,
}

/// Run the disruption controller.
pub async fn run(client: kube::Client) {
    let pdbs: Api<PodDisruptionBudget> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let controller = Controller::new(pdbs, watcher::Config::default()).with_config(crate::util::controller_config());
    let store = controller.store();
    controller
        .watches(pods, watcher::Config::default(), move |pod: Pod| {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            store
                .state()
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .run_logged("pdb", reconcile, Arc::new(Ctx { client }))
        .await;
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = pdb.metadata.namespace.clone().unwrap_or_default();
    let name = pdb.metadata.name.clone().unwrap_or_default();
    let Some(spec) = pdb.spec.as_ref() else { return Ok(Action::await_change()) };
    let selector = label_selector(spec.selector.as_ref())?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let matching: Vec<Pod> =
        if selector.is_empty() { vec![] } else { pods.list(&ListParams::default().labels(&selector)).await?.items };
    let active: Vec<&Pod> = matching.iter().filter(|p| crate::util::is_active(p)).collect();
    let expected = active.len() as i32;
    let healthy = active.iter().filter(|p| is_ready(p)).count() as i32;
    let min = spec.min_available.as_ref().map(serde_json::to_value).transpose()?;
    let max_un = spec.max_unavailable.as_ref().map(serde_json::to_value).transpose()?;
    let desired = match (min, max_un) {
        (Some(m), _) => int_or_percent(Some(&m), expected, true, 0),
        (None, Some(m)) => expected - int_or_percent(Some(&m), expected, true, 0),
        (None, None) => expected,
    };
    let allowed = (healthy - desired).max(0);
    let now = vkube_core::meta::now_rfc3339();
    let status = json!({"status": {
        "observedGeneration": pdb.metadata.generation.unwrap_or(0),
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": allowed,
        "conditions": [{"type": "DisruptionAllowed", "status": if allowed > 0 { "True" } else { "False" }, "reason": if allowed > 0 { "SufficientPods" } else { "InsufficientPods" }, "message": "", "lastTransitionTime": now, "observedGeneration": pdb.metadata.generation.unwrap_or(0)}],
    }});
    let cur = pdb.status.as_ref();
    let same = cur.is_some_and(|s| {
        s.current_healthy == Some(healthy)
            && s.desired_healthy == Some(desired)
            && s.expected_pods == Some(expected)
            && s.disruptions_allowed == Some(allowed)
            && s.observed_generation == pdb.metadata.generation
    });
    if !same {
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(&name, &pp("disruption-controller"), &Patch::Merge(status)).await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}
