//! CronJobs: kube-apiserver's defaults (Allow, history limits 3 and 1, not suspended,
//! the job template's pod defaults), its validation of the schedule (robfig/cron's
//! messages, [`vkube_core::cron`]), the time zone and the concurrency policy, and
//! kubectl's columns. The CronJob controller runs them.

use crate::resources::Subresource;
use crate::resources::core::podspec::{default_pod_spec, validate_pod_spec};
use crate::resources::kind::{Column, Kind, age_at, age_of, col, name_of, none_if_empty};
use k8s_openapi::api::batch::v1::CronJob;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The CronJob kind.
pub struct CronJobKind;

impl Kind for CronJobKind {
    type Object = CronJob;
    const SHORT_NAMES: &'static [&'static str] = &["cj"];
    const IN_ALL: bool = true;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Schedule", "string"),
        col("Timezone", "string"),
        col("Suspend", "boolean"),
        col("Active", "integer"),
        col("Last Schedule", "string"),
        col("Age", "string"),
    ];

    fn default(cj: &mut CronJob) {
        let spec = &mut cj.spec;
        spec.concurrency_policy.get_or_insert_with(|| "Allow".into());
        spec.successful_jobs_history_limit.get_or_insert(3);
        spec.failed_jobs_history_limit.get_or_insert(1);
        spec.suspend.get_or_insert(false);
        if let Some(pod) = spec.job_template.spec.as_mut().and_then(|j| j.template.spec.as_mut()) {
            default_pod_spec(pod);
        }
    }

    fn validate(cj: &CronJob) -> Vec<Cause> {
        let spec = &cj.spec;
        let mut causes = Vec::new();
        if spec.schedule.is_empty() {
            causes.push(Cause::required("spec.schedule"));
        } else if let Err(e) = vkube_core::cron::Schedule::parse(&spec.schedule) {
            causes.push(Cause::invalid("spec.schedule", &spec.schedule, e));
        }
        if let Some(tz) = spec.time_zone.as_deref()
            && let Err(e) = vkube_core::cron::time_zone(Some(tz))
        {
            causes.push(Cause::invalid("spec.timeZone", tz, e));
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if !matches!(policy, "Allow" | "Forbid" | "Replace") {
            causes.push(Cause::not_supported("spec.concurrencyPolicy", policy, &["Allow", "Forbid", "Replace"]));
        }
        for (field, limit) in [
            ("spec.successfulJobsHistoryLimit", spec.successful_jobs_history_limit),
            ("spec.failedJobsHistoryLimit", spec.failed_jobs_history_limit),
            ("spec.startingDeadlineSeconds", spec.starting_deadline_seconds.map(|s| s as i32)),
        ] {
            if let Some(n) = limit.filter(|n| *n < 0) {
                causes.push(Cause::invalid_raw(field, &n.to_string(), "must be greater than or equal to 0"));
            }
        }
        match spec.job_template.spec.as_ref().and_then(|j| j.template.spec.as_ref()) {
            Some(pod) => {
                causes.extend(validate_pod_spec(pod, "spec.jobTemplate.spec.template.spec"));
                let rp = pod.restart_policy.as_deref().unwrap_or_default();
                if rp != "Never" && rp != "OnFailure" {
                    causes.push(Cause::not_supported(
                        "spec.jobTemplate.spec.template.spec.restartPolicy",
                        rp,
                        &["OnFailure", "Never"],
                    ));
                }
            }
            None => causes.push(Cause::required("spec.jobTemplate.spec.template.spec.containers")),
        }
        causes
    }

    fn cells(cj: &CronJob) -> Vec<Value> {
        let spec = cj.spec.clone();
        let status = cj.status.clone().unwrap_or_default();
        let last = match &status.last_schedule_time {
            Some(t) => age_at(Some(t.0)),
            None => "<none>".into(),
        };
        vec![
            json!(name_of(&cj.metadata)),
            json!(spec.schedule),
            json!(none_if_empty(spec.time_zone.unwrap_or_default())),
            json!(spec.suspend.unwrap_or(false)),
            json!(status.active.map_or(0, |a| a.len())),
            json!(last),
            json!(age_of(&cj.metadata)),
        ]
    }
}
