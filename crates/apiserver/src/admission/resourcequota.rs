//! kube-apiserver's ResourceQuota admission: a new object that would take a quota of
//! its namespace past `spec.hard` is refused (403, "exceeded quota: …"), judged against
//! the quota's `status.used` as the quota controller last wrote it.

use super::{Admission, AdmissionOutcome, AdmissionRequest, Operation};
use crate::registry::{ListParams, Registry, WriteOptions};
use crate::resources::Subresource;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use vkube_core::quota;
use vkube_core::status::{ApiError, GroupResource};

/// The ResourceQuota admission plugin.
pub struct ResourceQuotaAdmission {
    /// Where the quotas are read.
    pub registry: Arc<Registry>,
}

fn listing(u: &quota::Usage, names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n}={}", quota::format_milli(u.get(n).copied().unwrap_or(0))))
        .collect::<Vec<_>>()
        .join(",")
}

#[async_trait]
impl Admission for ResourceQuotaAdmission {
    async fn admit(&self, req: &AdmissionRequest<'_>, object: Value) -> Result<AdmissionOutcome, ApiError> {
        let t = req.target;
        if req.operation != Operation::Create || t.subresource.is_some() || req.namespace.is_empty() {
            return Ok(AdmissionOutcome::pass(object));
        }
        let Some(res) = self.registry.catalog().find("", "v1", "resourcequotas") else {
            return Ok(AdmissionOutcome::pass(object));
        };
        let object_name =
            if req.name.is_empty() { vkube_core::meta::name(&object).to_string() } else { req.name.to_string() };
        let quotas = self.registry.list(&res, req.namespace, &ListParams::default()).await?;
        for kv in &quotas.items {
            let q = Registry::decode_as(&res, kv)?;
            let hard = quota::hard_of(&q);
            let tracked: Vec<String> = hard.keys().filter(|k| quota::tracks(k, t.group, t.resource)).cloned().collect();
            if tracked.is_empty() {
                continue;
            }
            let requested = quota::usage(t.group, t.resource, &object, &quota::scopes_of(&q));
            let requested_names: Vec<String> =
                tracked.iter().filter(|k| requested.get(*k).is_some_and(|v| *v > 0)).cloned().collect();
            if requested_names.is_empty() {
                continue;
            }
            let name = vkube_core::meta::name(&q).to_string();
            let gr = GroupResource { group: t.group, resource: t.resource };
            let judge = |current: &Value| -> Result<Value, ApiError> {
                let used = quota::used_of(current);
                let unknown: Vec<String> = requested_names.iter().filter(|k| !used.contains_key(*k)).cloned().collect();
                if !unknown.is_empty() {
                    return Err(ApiError::forbidden(
                        gr,
                        &object_name,
                        format!("status unknown for quota: {name}, resources: {}", unknown.join(",")),
                    ));
                }
                let over: Vec<String> = requested_names
                    .iter()
                    .filter(|k| used.get(*k).copied().unwrap_or(0) + requested.get(*k).copied().unwrap_or(0) > hard[*k])
                    .cloned()
                    .collect();
                if !over.is_empty() {
                    return Err(ApiError::forbidden(
                        gr,
                        &object_name,
                        format!(
                            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                            listing(&requested, &over),
                            listing(&used, &over),
                            listing(&hard, &over)
                        ),
                    ));
                }
                // Charge the quota now, as kube-apiserver does, so that the next write
                // sees this one before the quota controller recounts.
                let mut next = current.clone();
                for k in &requested_names {
                    let v = used.get(k).copied().unwrap_or(0) + requested.get(k).copied().unwrap_or(0);
                    next["status"]["used"][k] = serde_json::json!(quota::format_milli(v));
                }
                Ok(next)
            };
            if req.dry_run {
                judge(&q)?;
            } else {
                let opts = WriteOptions { field_manager: Some("resourcequota-admission".into()), ..Default::default() };
                let name = name.clone();
                self.registry.update_with(&res, req.namespace, &name, Some(Subresource::Status), &opts, judge).await?;
            }
        }
        Ok(AdmissionOutcome::pass(object))
    }
}

/// An object is gone from the store: give its usage back to the quotas of its
/// namespace at once, rather than when the quota controller next recounts, so that a
/// delete and re-create (the syncer's service with the host's cluster IP) is not
/// refused for a copy that no longer exists. The controller's recount stays the truth.
pub async fn release(reg: &Registry, res: &crate::resources::Resource, namespace: &str, old: &Value) {
    if namespace.is_empty() {
        return;
    }
    let Some(quotas) = reg.catalog().find("", "v1", "resourcequotas") else { return };
    let Ok(list) = reg.list(&quotas, namespace, &ListParams::default()).await else { return };
    for kv in &list.items {
        let Ok(q) = Registry::decode_as(&quotas, kv) else { continue };
        let freed = quota::usage(&res.group, &res.plural, old, &quota::scopes_of(&q));
        let names: Vec<String> = quota::hard_of(&q)
            .into_keys()
            .filter(|k| quota::tracks(k, &res.group, &res.plural) && freed.get(k).is_some_and(|v| *v > 0))
            .collect();
        if names.is_empty() {
            continue;
        }
        let opts = WriteOptions { field_manager: Some("resourcequota-admission".into()), ..Default::default() };
        let name = vkube_core::meta::name(&q).to_string();
        let result = reg
            .update_with(&quotas, namespace, &name, Some(Subresource::Status), &opts, |current| {
                let used = quota::used_of(current);
                let mut next = current.clone();
                for k in names.iter().filter(|k| used.contains_key(*k)) {
                    let v = (used[k] - freed.get(k).copied().unwrap_or(0)).max(0);
                    next["status"]["used"][k] = serde_json::json!(quota::format_milli(v));
                }
                Ok(next)
            })
            .await;
        if let Err(e) = result
            && e.code != 404
        {
            tracing::warn!("releasing quota {namespace}/{name}: {}", e.message);
        }
    }
}
