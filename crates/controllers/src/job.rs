//! Job: run pods until `completions` succeed (at most `parallelism` at once), fail after
//! `backoffLimit` failures, and report the conditions `kubectl wait` and `get jobs` read.

use crate::replicaset::{owned_pods, pod_from_template};
use crate::runtime::RunLogged;
use crate::util::{Error, controller_ref, is_ready, is_terminal, label_selector, phase, pp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const MANAGER: &str = "job-controller";

struct Ctx {
    client: kube::Client,
    recorder: kube::runtime::events::Recorder,
}

/// Run the Job controller.
pub async fn run(client: kube::Client) {
    let jobs: Api<Job> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    Controller::new(jobs, watcher::Config::default())
        .with_config(crate::util::controller_config())
        .owns(pods, watcher::Config::default())
        .run_logged("job", reconcile, Arc::new(Ctx { recorder: crate::util::recorder(&client, MANAGER), client }))
        .await;
}

fn has_condition(job: &Job, ty: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == ty && c.status == "True"))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if job.metadata.deletion_timestamp.is_some() || has_condition(&job, "Complete") || has_condition(&job, "Failed") {
        return Ok(Action::await_change());
    }
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let Some(spec) = job.spec.as_ref() else { return Ok(Action::await_change()) };
    let pods = owned_pods(&ctx.client, &ns, &label_selector(spec.selector.as_ref())?, &uid).await?;
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i32;
    let failed = pods.iter().filter(|p| phase(p) == "Failed").count() as i32;
    let active: Vec<&Pod> =
        pods.iter().filter(|p| !is_terminal(p) && p.metadata.deletion_timestamp.is_none()).collect();
    let completions = spec.completions.unwrap_or(1);
    let parallelism = spec.parallelism.unwrap_or(1);
    let backoff = spec.backoff_limit.unwrap_or(6);
    let now = vkube_core::meta::now_rfc3339();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut status = json!({
        "active": active.len(),
        "succeeded": succeeded,
        "failed": failed,
        "ready": active.iter().filter(|p| is_ready(p)).count(),
        "terminating": 0,
        "uncountedTerminatedPods": {},
        "startTime": job.status.as_ref().and_then(|s| s.start_time.clone()).map(|t| json!(t)).unwrap_or_else(|| json!(now)),
    });
    let regarding = kube::Resource::object_ref(&*job, &());
    if succeeded >= completions {
        status["completionTime"] = json!(now);
        status["active"] = json!(0);
        status["conditions"] = json!([
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now},
        ]);
        crate::util::record(&ctx.recorder, &regarding, false, "Completed", "Completing", "Job completed").await;
    } else if failed > backoff {
        for p in &active {
            crate::runtime::gone_is_ok(
                pod_api.delete(p.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await,
            )?;
        }
        status["active"] = json!(0);
        status["conditions"] = json!([
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": now, "lastTransitionTime": now},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": now, "lastTransitionTime": now},
        ]);
        crate::util::record(
            &ctx.recorder,
            &regarding,
            true,
            "BackoffLimitExceeded",
            "Failing",
            "Job has reached the specified backoff limit",
        )
        .await;
    } else if !spec.suspend.unwrap_or(false) {
        let wanted = parallelism.min(completions - succeeded) - active.len() as i32;
        if wanted > 0 {
            let template = serde_json::to_value(&spec.template)?;
            let owner = controller_ref("batch/v1", "Job", &name, &uid);
            let pod = pod_from_template(&template, &format!("{name}-"), &owner)?;
            for _ in 0..wanted {
                let created = pod_api
                    .create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, &pod)
                    .await?;
                let msg = format!("Created pod: {}", created.metadata.name.unwrap_or_default());
                crate::util::record(&ctx.recorder, &regarding, false, "SuccessfulCreate", "Creating", msg).await;
            }
            status["active"] = json!(active.len() as i32 + wanted);
        }
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(&name, &pp(MANAGER), &Patch::Merge(json!({"status": status}))).await?;
    Ok(Action::requeue(Duration::from_secs(30)))
}
