//! CronJob, as kube-controller-manager's (cronjob controller v2): at each scheduled
//! time (in `spec.timeZone`) a Job from the template, named `NAME-<minutes since the
//! epoch>` so a time runs once; `concurrencyPolicy` Allow, Forbid (skip while one runs)
//! or Replace (delete the running ones first); `startingDeadlineSeconds` (a time missed
//! by more is skipped with `MissSchedule`); `suspend`; finished jobs beyond
//! `successfulJobsHistoryLimit`/`failedJobsHistoryLimit` deleted, oldest first; status
//! `active`, `lastScheduleTime`, `lastSuccessfulTime`; the events kubectl describe shows.
//!
//! [`plan`] decides from the CronJob, its jobs and the time; [`reconcile`] carries it
//! out. The plan is unit-tested without a server.

use crate::runtime::RunLogged;
use crate::util::{Error, controlled_by, controller_ref, pp};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, DeleteParams, ListParams, Patch, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use vkube_core::cron::Schedule;

const MANAGER: &str = "cronjob-controller";
/// The annotation naming the time a job was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed times than this is reported (kube's `TooManyMissedTimes`).
const TOO_MANY_MISSED: usize = 100;
/// How many schedule times are looked at, at most, to find the most recent one.
const MAX_STEPS: usize = 100_000;

/// A job of the CronJob, as the plan sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedJob {
    /// Its name.
    pub name: String,
    /// When it finished and whether it succeeded (None: still running).
    pub finished: Option<(Timestamp, bool)>,
    /// When it was created.
    pub created: Timestamp,
}

/// The CronJob's settings, as the plan sees them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The CronJob's name.
    pub name: String,
    /// Its schedule.
    pub schedule: Schedule,
    /// Its time zone.
    pub tz: TimeZone,
    /// `spec.suspend`.
    pub suspend: bool,
    /// `spec.concurrencyPolicy`.
    pub concurrency: String,
    /// `spec.startingDeadlineSeconds`.
    pub starting_deadline: Option<i64>,
    /// `spec.successfulJobsHistoryLimit`.
    pub keep_succeeded: usize,
    /// `spec.failedJobsHistoryLimit`.
    pub keep_failed: usize,
    /// When it was created.
    pub created: Timestamp,
    /// `status.lastScheduleTime`.
    pub last_schedule: Option<Timestamp>,
}

/// An event to record: (warning, reason, message).
pub type Note = (bool, &'static str, String);

/// What to do.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Create a job for this scheduled time.
    pub create: Option<Timestamp>,
    /// Running jobs to delete first (Replace).
    pub replace: Vec<String>,
    /// Finished jobs beyond the history limits.
    pub prune: Vec<String>,
    /// Events to record.
    pub notes: Vec<Note>,
    /// Look again after this long (the next scheduled time), if ever.
    pub requeue: Option<Duration>,
}

/// The name of the job for a scheduled time.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// Decide what to do now.
pub fn plan(s: &Settings, jobs: &[OwnedJob], now: Timestamp) -> Plan {
    let mut p = Plan::default();
    // History: the oldest finished jobs beyond each limit.
    for (succeeded, keep) in [(true, s.keep_succeeded), (false, s.keep_failed)] {
        let mut done: Vec<(&OwnedJob, Timestamp)> =
            jobs.iter().filter_map(|j| j.finished.filter(|(_, ok)| *ok == succeeded).map(|(at, _)| (j, at))).collect();
        done.sort_by_key(|(j, at)| (*at, j.created));
        let excess = done.len().saturating_sub(keep);
        p.prune.extend(done.iter().take(excess).map(|(j, _)| j.name.clone()));
    }
    let next_after_now = s.schedule.next(now, &s.tz);
    p.requeue = next_after_now.map(|t| {
        let wait = t.duration_since(now).as_millis().max(0) as u64 + 100;
        Duration::from_millis(wait)
    });
    if s.suspend {
        p.requeue = None;
        return p;
    }
    // The most recent scheduled time not yet run (kube's mostRecentScheduleTime).
    let mut earliest = s.last_schedule.unwrap_or(s.created);
    if let Some(d) = s.starting_deadline
        && let Ok(window_start) = now.checked_sub(jiff::SignedDuration::from_secs(d))
        && window_start > earliest
    {
        earliest = window_start;
    }
    let (mut most_recent, mut missed) = (None, 0usize);
    let mut t = s.schedule.next(earliest, &s.tz);
    while let Some(at) = t.filter(|at| *at <= now) {
        most_recent = Some(at);
        missed += 1;
        if missed >= MAX_STEPS {
            break;
        }
        t = s.schedule.next(at, &s.tz);
    }
    let Some(scheduled) = most_recent else { return p };
    if missed > TOO_MANY_MISSED {
        p.notes.push((
            true,
            "TooManyMissedTimes",
            format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
        ));
    }
    if let Some(d) = s.starting_deadline
        && scheduled.checked_add(jiff::SignedDuration::from_secs(d)).is_ok_and(|late| late < now)
    {
        let when = scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000");
        p.notes.push((true, "MissSchedule", format!("Missed scheduled time to start a job: {when}")));
        return p;
    }
    let name = job_name(&s.name, scheduled);
    if jobs.iter().any(|j| j.name == name) {
        return p;
    }
    let active: Vec<&OwnedJob> = jobs.iter().filter(|j| j.finished.is_none()).collect();
    match s.concurrency.as_str() {
        "Forbid" if !active.is_empty() => {
            p.notes.push((
                false,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            return p;
        }
        "Replace" => p.replace = active.iter().map(|j| j.name.clone()).collect(),
        _ => {}
    }
    p.create = Some(scheduled);
    p
}

struct Ctx {
    client: kube::Client,
    recorder: kube::runtime::events::Recorder,
}

/// Run the CronJob controller.
pub async fn run(client: kube::Client) {
    let cronjobs: Api<CronJob> = Api::all(client.clone());
    let jobs: Api<Job> = Api::all(client.clone());
    Controller::new(cronjobs, watcher::Config::default())
        .with_config(crate::util::controller_config())
        .owns(jobs, watcher::Config::default())
        .run_logged("cronjob", reconcile, Arc::new(Ctx { recorder: crate::util::recorder(&client, MANAGER), client }))
        .await;
}

fn timestamp(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Timestamp {
    t.0
}

/// When a job finished and whether it succeeded (its Complete or Failed condition).
pub(crate) fn finished(job: &Job) -> Option<(Timestamp, bool)> {
    let status = job.status.as_ref()?;
    let cond = status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    let at = status
        .completion_time
        .as_ref()
        .map(timestamp)
        .or_else(|| cond.last_transition_time.as_ref().map(timestamp))
        .unwrap_or_else(Timestamp::now);
    Some((at, cond.type_ == "Complete"))
}

/// RFC 3339 in the CronJob's zone, as kube writes the scheduled-timestamp annotation.
fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    let s = z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    s.strip_suffix("+00:00").map(|b| format!("{b}Z")).unwrap_or(s)
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = cj.metadata.namespace.clone().unwrap_or_default();
    let name = cj.metadata.name.clone().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let spec = &cj.spec;
    let regarding = kube::Resource::object_ref(&*cj, &());
    let (schedule, tz) = match (Schedule::parse(&spec.schedule), vkube_core::cron::time_zone(spec.time_zone.as_deref()))
    {
        (Ok(s), Ok(tz)) => (s, tz),
        (Err(e), _) | (_, Err(e)) => {
            let msg = format!("unparseable schedule: {:?} : {e}", spec.schedule);
            crate::util::record(&ctx.recorder, &regarding, true, "UnparseableSchedule", "Scheduling", msg).await;
            return Ok(Action::await_change());
        }
    };
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs: Vec<Job> = job_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| controlled_by(&j.metadata, &uid))
        .collect();
    let owned: Vec<OwnedJob> = jobs
        .iter()
        .map(|j| OwnedJob {
            name: j.metadata.name.clone().unwrap_or_default(),
            finished: finished(j),
            created: j.metadata.creation_timestamp.as_ref().map(timestamp).unwrap_or_else(Timestamp::now),
        })
        .collect();
    let settings = Settings {
        name: name.clone(),
        schedule,
        tz: tz.clone(),
        suspend: spec.suspend.unwrap_or(false),
        concurrency: spec.concurrency_policy.clone().unwrap_or_else(|| "Allow".into()),
        starting_deadline: spec.starting_deadline_seconds,
        keep_succeeded: usize::try_from(spec.successful_jobs_history_limit.unwrap_or(3)).unwrap_or(0),
        keep_failed: usize::try_from(spec.failed_jobs_history_limit.unwrap_or(1)).unwrap_or(0),
        created: cj.metadata.creation_timestamp.as_ref().map(timestamp).unwrap_or_else(Timestamp::now),
        last_schedule: cj.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).map(timestamp),
    };
    let now = Timestamp::now();
    let plan = plan(&settings, &owned, now);
    for (warning, reason, message) in &plan.notes {
        crate::util::record(&ctx.recorder, &regarding, *warning, reason, "Scheduling", message.clone()).await;
    }
    let background = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
    let mut gone: Vec<String> = Vec::new();
    for job in plan.replace.iter().chain(&plan.prune) {
        crate::runtime::gone_is_ok(job_api.delete(job, &background).await.map(|_| ()))?;
        crate::util::record(
            &ctx.recorder,
            &regarding,
            false,
            "SuccessfulDelete",
            "Deleting",
            format!("Deleted job {job}"),
        )
        .await;
        gone.push(job.clone());
    }
    let mut created = None;
    if let Some(scheduled) = plan.create {
        let template = &spec.job_template;
        let meta = template.metadata.clone().unwrap_or_default();
        let mut annotations = meta.annotations.unwrap_or_default();
        annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339_in(scheduled, &tz));
        let job_name = job_name(&name, scheduled);
        let job = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": job_name,
                "namespace": ns,
                "labels": meta.labels.unwrap_or_default(),
                "annotations": annotations,
                "ownerReferences": [controller_ref("batch/v1", "CronJob", &name, &uid)],
            },
            "spec": template.spec,
        });
        let job: Job = serde_json::from_value(job)?;
        match job_api.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, &job).await {
            Ok(j) => {
                let msg = format!("Created job {job_name}");
                crate::util::record(&ctx.recorder, &regarding, false, "SuccessfulCreate", "Creating", msg).await;
                created = Some(j);
            }
            // Created already (a reconcile before this one's status write): it runs once.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let reference = |j: &Job| {
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": j.metadata.name,
            "namespace": ns,
            "uid": j.metadata.uid,
            "resourceVersion": j.metadata.resource_version,
        })
    };
    let active: Vec<serde_json::Value> = jobs
        .iter()
        .filter(|j| finished(j).is_none() && !gone.contains(j.metadata.name.as_ref().unwrap_or(&String::new())))
        .chain(created.as_ref())
        .map(reference)
        .collect();
    let last_successful = owned.iter().filter_map(|j| j.finished.filter(|(_, ok)| *ok).map(|(at, _)| at)).max();
    let mut status = json!({"active": if active.is_empty() { serde_json::Value::Null } else { json!(active) }});
    if let Some(t) = plan.create.or(settings.last_schedule) {
        status["lastScheduleTime"] = json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    if let Some(t) = last_successful {
        status["lastSuccessfulTime"] = json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(&name, &pp(MANAGER), &Patch::Merge(json!({"status": status}))).await?;
    Ok(match plan.requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn settings(schedule: &str) -> Settings {
        Settings {
            name: "tick".into(),
            schedule: Schedule::parse(schedule).expect("schedule"),
            tz: TimeZone::UTC,
            suspend: false,
            concurrency: "Allow".into(),
            starting_deadline: None,
            keep_succeeded: 3,
            keep_failed: 1,
            created: at("2026-12-03T10:00:10Z"),
            last_schedule: None,
        }
    }

    fn job(name: &str, finished: Option<(&str, bool)>) -> OwnedJob {
        OwnedJob {
            name: name.into(),
            finished: finished.map(|(t, ok)| (at(t), ok)),
            created: at("2026-12-03T10:00:00Z"),
        }
    }

    #[test]
    fn a_due_time_makes_one_job_named_for_it_and_the_next_time_is_awaited() {
        let s = settings("* * * * *");
        let p = plan(&s, &[], at("2026-12-03T10:01:05Z"));
        assert_eq!(p.create, Some(at("2026-12-03T10:01:00Z")));
        assert_eq!(
            job_name("tick", at("2026-12-03T10:01:00Z")),
            format!("tick-{}", at("2026-12-03T10:01:00Z").as_second() / 60)
        );
        assert_eq!(p.requeue, Some(Duration::from_millis(55_100)));
        // That time's job exists: nothing more.
        let name = job_name("tick", at("2026-12-03T10:01:00Z"));
        let again = plan(&s, &[job(&name, None)], at("2026-12-03T10:01:30Z"));
        assert_eq!(again.create, None);
        // Before the first time: nothing yet.
        assert_eq!(plan(&s, &[], at("2026-12-03T10:00:50Z")).create, None);
    }

    #[test]
    fn concurrency_policies_forbid_or_replace_a_running_job() {
        let mut s = settings("* * * * *");
        let running = [job("tick-1", None)];
        let now = at("2026-12-03T10:02:05Z");
        assert_eq!(plan(&s, &running, now).create, Some(at("2026-12-03T10:02:00Z")));
        s.concurrency = "Forbid".into();
        let p = plan(&s, &running, now);
        assert_eq!(p.create, None);
        assert_eq!(p.notes.first().map(|n| n.1), Some("JobAlreadyActive"));
        s.concurrency = "Replace".into();
        let p = plan(&s, &running, now);
        assert_eq!((p.create, p.replace), (Some(at("2026-12-03T10:02:00Z")), vec!["tick-1".to_string()]));
    }

    #[test]
    fn suspended_missed_and_history_are_kubes() {
        let mut s = settings("* * * * *");
        s.suspend = true;
        let p = plan(&s, &[], at("2026-12-03T10:05:00Z"));
        assert_eq!((p.create, p.requeue), (None, None));
        // A deadline of 10 s: a time 30 s ago is missed, not run late.
        let mut s = settings("*/5 * * * *");
        s.starting_deadline = Some(10);
        s.last_schedule = Some(at("2026-12-03T09:55:00Z"));
        let p = plan(&s, &[], at("2026-12-03T10:00:30Z"));
        assert_eq!(p.create, None);
        assert_eq!(p.requeue, Some(Duration::from_millis(270_100)));
        // Within the deadline it runs, late.
        assert_eq!(plan(&s, &[], at("2026-12-03T10:00:08Z")).create, Some(at("2026-12-03T10:00:00Z")));
        // History: 3 succeeded kept, 1 failed kept; the oldest go.
        let s = settings("0 0 1 1 *");
        let jobs = [
            job("s1", Some(("2026-12-03T10:01:00Z", true))),
            job("s2", Some(("2026-12-03T10:02:00Z", true))),
            job("s3", Some(("2026-12-03T10:03:00Z", true))),
            job("s4", Some(("2026-12-03T10:04:00Z", true))),
            job("f1", Some(("2026-12-03T10:01:00Z", false))),
            job("f2", Some(("2026-12-03T10:02:00Z", false))),
            job("running", None),
        ];
        let p = plan(&s, &jobs, at("2026-12-03T10:05:00Z"));
        assert_eq!(p.prune, vec!["s1".to_string(), "f1".to_string()]);
    }

    #[test]
    fn the_scheduled_timestamp_is_rfc3339_in_the_zone() {
        let t = at("2026-12-03T08:00:00Z");
        assert_eq!(rfc3339_in(t, &TimeZone::UTC), "2026-12-03T08:00:00Z");
        let berlin = vkube_core::cron::time_zone(Some("Europe/Berlin")).expect("zone");
        assert_eq!(rfc3339_in(t, &berlin), "2026-12-03T09:00:00+01:00");
    }
}
