//! TTL after finished, as kube-controller-manager's: a Job with
//! `spec.ttlSecondsAfterFinished` is deleted (foreground, its pods with it) that long
//! after it completed or failed.

use crate::runtime::RunLogged;
use crate::util::Error;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use std::sync::Arc;
use std::time::Duration;

/// How long until a job finished at `at` with `ttl` seconds expires (zero: now).
pub fn remaining(at: Timestamp, ttl: i32, now: Timestamp) -> Duration {
    let expires = at.as_millisecond() + i64::from(ttl.max(0)) * 1000;
    Duration::from_millis(u64::try_from(expires - now.as_millisecond()).unwrap_or(0))
}

/// Run the controller.
pub async fn run(client: kube::Client) {
    let jobs: Api<Job> = Api::all(client.clone());
    Controller::new(jobs, watcher::Config::default())
        .with_config(crate::util::controller_config())
        .run_logged("ttl-after-finished", reconcile, Arc::new(client))
        .await;
}

async fn reconcile(job: Arc<Job>, client: Arc<kube::Client>) -> Result<Action, Error> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    let Some((at, _)) = crate::cronjob::finished(&job) else { return Ok(Action::await_change()) };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let wait = remaining(at, ttl, Timestamp::now());
    if !wait.is_zero() {
        return Ok(Action::requeue(wait + Duration::from_millis(50)));
    }
    let api: Api<Job> = Api::namespaced((*client).clone(), job.metadata.namespace.as_deref().unwrap_or_default());
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        // Only this job: one of the same name made since is not ours to delete.
        preconditions: Some(Preconditions { uid: job.metadata.uid.clone(), resource_version: None }),
        ..Default::default()
    };
    crate::runtime::gone_is_ok(api.delete(job.metadata.name.as_deref().unwrap_or_default(), &params).await)?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_expires_its_ttl_after_it_finished() {
        let at: Timestamp = "2026-12-03T10:00:00Z".parse().expect("time");
        let now: Timestamp = "2026-12-03T10:00:04Z".parse().expect("time");
        assert_eq!(remaining(at, 10, now), Duration::from_secs(6));
        assert_eq!(remaining(at, 3, now), Duration::ZERO);
        assert_eq!(remaining(at, 0, now), Duration::ZERO);
    }
}
