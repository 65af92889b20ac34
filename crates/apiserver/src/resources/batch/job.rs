//! Jobs: kube-apiserver's defaults (one completion, backoff limit 6, a selector made
//! from the job's uid with the labels it implies), Never/OnFailure templates, an
//! immutable template (but for scheduling directives), kubectl's columns.

use crate::resources::Subresource;
use crate::resources::core::podspec::{default_pod_spec, validate_pod_spec};
use crate::resources::kind::{
    Column, FieldLabel, Kind, age_at, age_of, col, common_merge_key, containers_images, default_to, name_of,
    selector_string, wide,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};
use vkube_core::meta::{age_seconds, human_duration};
use vkube_core::status::Cause;

/// The Job kind.
pub struct JobKind;

impl Kind for JobKind {
    type Object = Job;
    const IN_ALL: bool = true;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const TRACKS_GENERATION: bool = true;
    const FIELD_LABELS: &'static [FieldLabel] = &[FieldLabel { path: "status.successful", zero: "0" }];
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Status", "string"),
        col("Completions", "string"),
        col("Duration", "string"),
        col("Age", "string"),
        wide("Containers", "string"),
        wide("Images", "string"),
        wide("Selector", "string"),
    ];

    fn prepare_for_create(job: &mut Job) {
        job.status = None;
    }

    fn default(job: &mut Job) {
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let name = job.metadata.name.clone().unwrap_or_default();
        let spec = job.spec.get_or_insert_with(Default::default);
        default_to(&mut spec.parallelism, || 1);
        default_to(&mut spec.completions, || 1);
        default_to(&mut spec.backoff_limit, || 6);
        default_to(&mut spec.completion_mode, || "NonIndexed".into());
        default_to(&mut spec.suspend, || false);
        default_to(&mut spec.pod_replacement_policy, || "TerminatingOrFailed".into());
        // The selector from the job's uid, as kube-apiserver makes it.
        if spec.manual_selector != Some(true) && !uid.is_empty() && spec.selector.is_none() {
            spec.selector = Some(LabelSelector {
                match_labels: Some([("batch.kubernetes.io/controller-uid".to_string(), uid.clone())].into()),
                ..Default::default()
            });
            let labels =
                spec.template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default);
            labels.insert("batch.kubernetes.io/controller-uid".into(), uid.clone());
            labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
            labels.insert("controller-uid".into(), uid);
            labels.insert("job-name".into(), name);
        }
        if let Some(pod) = spec.template.spec.as_mut() {
            default_pod_spec(pod);
        }
    }

    fn validate(job: &Job) -> Vec<Cause> {
        match job.spec.as_ref().and_then(|s| s.template.spec.as_ref()) {
            Some(spec) => {
                let mut causes = validate_pod_spec(spec, "spec.template.spec");
                let rp = spec.restart_policy.as_deref().unwrap_or_default();
                if rp != "Never" && rp != "OnFailure" {
                    causes.push(Cause::not_supported("spec.template.spec.restartPolicy", rp, &["OnFailure", "Never"]));
                }
                causes
            }
            None => vec![Cause::required("spec.template.spec.containers")],
        }
    }

    fn validate_update(job: &Job, old: &Job) -> Vec<Cause> {
        let mut causes = Self::validate(job);
        let spec = job.spec.clone().unwrap_or_default();
        let old_spec = old.spec.clone().unwrap_or_default();
        if spec.selector != old_spec.selector {
            causes.push(Cause::immutable("spec.selector"));
        }
        // Scheduling directives of the template may change (for suspended jobs); the
        // rest may not.
        let strip = |mut t: k8s_openapi::api::core::v1::PodTemplateSpec| {
            if let Some(s) = t.spec.as_mut() {
                s.node_selector = None;
                s.tolerations = None;
                s.scheduling_gates = None;
            }
            t
        };
        if strip(spec.template) != strip(old_spec.template) {
            causes.push(Cause::immutable("spec.template"));
        }
        causes
    }

    fn unsupported_field_label(field: &str) -> String {
        format!("field label \"{field}\" not supported for Job")
    }

    fn cells(job: &Job) -> Vec<Value> {
        let spec = job.spec.clone().unwrap_or_default();
        let status = job.status.clone().unwrap_or_default();
        let (c, i) = containers_images(spec.template.spec.as_ref());
        let has = |t: &str| status.conditions.iter().flatten().any(|c| c.type_ == t && c.status == "True");
        let state = if has("Complete") {
            "Complete"
        } else if has("Failed") {
            "Failed"
        } else if has("FailureTarget") {
            "FailureTarget"
        } else if spec.suspend == Some(true) {
            "Suspended"
        } else {
            "Running"
        };
        let succeeded = status.succeeded.unwrap_or(0);
        let completions = match spec.completions {
            Some(c) => format!("{succeeded}/{c}"),
            None => format!("{succeeded}/1 of {}", spec.parallelism.unwrap_or(0)),
        };
        let duration = match (&status.start_time, &status.completion_time) {
            (None, _) => String::new(),
            (Some(start), None) => age_at(Some(start.0)),
            (Some(start), Some(done)) => {
                human_duration(age_seconds(&start.0.to_string()) - age_seconds(&done.0.to_string()))
            }
        };
        vec![
            json!(name_of(&job.metadata)),
            json!(state),
            json!(completions),
            json!(duration),
            json!(age_of(&job.metadata)),
            json!(c),
            json!(i),
            json!(selector_string(spec.selector.as_ref())),
        ]
    }

    fn merge_key(path: &[&str]) -> Option<&'static str> {
        match path.last() {
            Some(&"conditions") => None,
            _ => common_merge_key(path),
        }
    }
}
