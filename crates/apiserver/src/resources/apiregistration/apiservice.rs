//! APIServices, stored and validated as kube-apiserver's aggregator does, with its
//! columns. vkube does not proxy to the services they name (no aggregation): an
//! APIService with a service stays without an Available condition.

use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The APIService kind.
pub struct APIServiceKind;

impl Kind for APIServiceKind {
    type Object = APIService;
    const CATEGORIES: &'static [&'static str] = &["api-extensions"];
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const COLUMNS: &'static [Column] =
        &[col("Name", "string"), col("Service", "string"), col("Available", "string"), col("Age", "string")];

    fn default(a: &mut APIService) {
        if let Some(s) = a.spec.as_mut().and_then(|s| s.service.as_mut()) {
            s.port.get_or_insert(443);
        }
    }

    fn validate(a: &APIService) -> Vec<Cause> {
        let spec = a.spec.clone().unwrap_or_default();
        let mut causes = Vec::new();
        let version = spec.version.clone().unwrap_or_default();
        let group = spec.group.clone().unwrap_or_default();
        let expected = format!("{version}.{group}");
        let name = name_of(&a.metadata);
        if name != expected {
            causes.push(Cause::invalid(
                "metadata.name",
                &name,
                format!("must be `spec.version+\".\"+spec.group`: \"{expected}\""),
            ));
        }
        if version.is_empty() {
            causes.push(Cause::required("spec.version"));
        }
        if !(1..20000).contains(&spec.group_priority_minimum) {
            causes.push(Cause::invalid_raw(
                "spec.groupPriorityMinimum",
                &spec.group_priority_minimum.to_string(),
                "must be positive and less than 20000",
            ));
        }
        if !(1..1000).contains(&spec.version_priority) {
            causes.push(Cause::invalid_raw(
                "spec.versionPriority",
                &spec.version_priority.to_string(),
                "must be positive and less than 1000",
            ));
        }
        if spec.service.is_none() {
            if !group.is_empty() && spec.ca_bundle.is_some() {
                causes.push(Cause::invalid("spec.caBundle", "(bytes)", "local APIServices may not have a caBundle"));
            }
        } else if spec.insecure_skip_tls_verify == Some(true)
            && spec.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty())
        {
            causes.push(Cause::invalid("spec.insecureSkipTLSVerify", "true", "may not be true if caBundle is present"));
        }
        causes
    }

    fn cells(a: &APIService) -> Vec<Value> {
        let service = a.spec.as_ref().and_then(|s| s.service.as_ref()).map_or_else(
            || "Local".to_string(),
            |s| format!("{}/{}", s.namespace.clone().unwrap_or_default(), s.name.clone().unwrap_or_default()),
        );
        let available = a
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Available"))
            .map_or_else(
                || "Unknown".to_string(),
                |c| {
                    if c.status == "True" {
                        "True".into()
                    } else {
                        format!("{} ({})", c.status, c.reason.clone().unwrap_or_default())
                    }
                },
            );
        vec![json!(name_of(&a.metadata)), json!(service), json!(available), json!(age_of(&a.metadata))]
    }
}
