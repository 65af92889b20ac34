//! MutatingWebhookConfigurations: which writes are sent to which mutating webhooks (which may change the object).

use super::{CATEGORIES, default_client_config, default_rule, webhook_causes, webhooks_causes};
use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The MutatingWebhookConfiguration kind.
pub struct MutatingWebhookConfigurationKind;

impl Kind for MutatingWebhookConfigurationKind {
    type Object = MutatingWebhookConfiguration;
    const CATEGORIES: &'static [&'static str] = CATEGORIES;
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = &[col("Name", "string"), col("Webhooks", "integer"), col("Age", "string")];

    fn default(c: &mut MutatingWebhookConfiguration) {
        for h in c.webhooks.iter_mut().flatten() {
            h.failure_policy.get_or_insert_with(|| "Fail".into());
            h.match_policy.get_or_insert_with(|| "Equivalent".into());
            h.namespace_selector.get_or_insert_with(LabelSelector::default);
            h.object_selector.get_or_insert_with(LabelSelector::default);
            h.timeout_seconds.get_or_insert(10);
            h.reinvocation_policy.get_or_insert_with(|| "Never".into());
            h.rules.iter_mut().flatten().for_each(default_rule);
            default_client_config(&mut h.client_config);
        }
    }

    fn validate(c: &MutatingWebhookConfiguration) -> Vec<Cause> {
        webhooks_causes(
            c.webhooks
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, h)| {
                    let path = format!("webhooks[{i}]");
                    let mut own = webhook_causes(
                        &path,
                        &h.name,
                        h.rules.as_deref(),
                        h.failure_policy.as_deref(),
                        h.match_policy.as_deref(),
                        Some(h.side_effects.as_str()),
                        h.timeout_seconds,
                        h.namespace_selector.as_ref(),
                        h.object_selector.as_ref(),
                        &h.client_config,
                        h.match_conditions.as_deref(),
                    );
                    if let Some(p) = h.reinvocation_policy.as_deref()
                        && !["Never", "IfNeeded"].contains(&p)
                    {
                        own.push(Cause::not_supported(format!("{path}.reinvocationPolicy"), p, &["IfNeeded", "Never"]));
                    }
                    (path, own, h.name.clone(), h.admission_review_versions.clone())
                })
                .collect(),
        )
    }

    fn cells(c: &MutatingWebhookConfiguration) -> Vec<Value> {
        vec![json!(name_of(&c.metadata)), json!(c.webhooks.as_ref().map_or(0, Vec::len)), json!(age_of(&c.metadata))]
    }
}
