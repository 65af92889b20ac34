//! kube-apiserver's Priority admission: a new pod's `priorityClassName` (or the
//! cluster's `globalDefault` class when it names none) decides its `priority` and
//! `preemptionPolicy`; an unknown class, or a priority the pod sets itself that the class
//! does not give, is refused (403, kube-apiserver's messages).

use super::{Admission, AdmissionOutcome, AdmissionRequest, Operation};
use crate::registry::{ListParams, Registry};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;
use vkube_core::status::{ApiError, GroupResource};

/// The Priority admission plugin.
pub struct PriorityAdmission {
    /// Where the PriorityClasses are read.
    pub registry: Arc<Registry>,
}

#[async_trait]
impl Admission for PriorityAdmission {
    async fn admit(&self, req: &AdmissionRequest<'_>, mut object: Value) -> Result<AdmissionOutcome, ApiError> {
        if req.operation != Operation::Create || !req.is_core("Pod") {
            return Ok(AdmissionOutcome::pass(object));
        }
        let Some(classes) = self.registry.catalog().find("scheduling.k8s.io", "v1", "priorityclasses") else {
            return Ok(AdmissionOutcome::pass(object));
        };
        let name = if req.name.is_empty() { vkube_core::meta::name(&object).to_string() } else { req.name.to_string() };
        let forbidden =
            |message: String| ApiError::forbidden(GroupResource { group: "", resource: "pods" }, &name, message);
        let requested =
            object.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or_default().to_string();
        let class = if requested.is_empty() {
            let all = self.registry.list(&classes, "", &ListParams::default()).await?;
            let mut defaults: Vec<Value> = all
                .items
                .iter()
                .filter_map(|kv| Registry::decode_as(&classes, kv).ok())
                .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
                .collect();
            // Several defaults: the lowest value wins, as in kube-apiserver.
            defaults.sort_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0));
            defaults.into_iter().next()
        } else {
            match self.registry.get(&classes, "", &requested).await {
                Ok(c) => Some(c),
                Err(e) if e.code == 404 => {
                    return Err(forbidden(format!("no PriorityClass with name {requested} was found")));
                }
                Err(e) => return Err(e),
            }
        };
        let (class_name, priority, preemption) = match &class {
            Some(c) => (
                vkube_core::meta::name(c).to_string(),
                c.get("value").and_then(Value::as_i64).unwrap_or(0),
                c.get("preemptionPolicy").and_then(Value::as_str).unwrap_or("PreemptLowerPriority").to_string(),
            ),
            None => (String::new(), 0, "PreemptLowerPriority".to_string()),
        };
        if let Some(given) = object.pointer("/spec/priority").and_then(Value::as_i64)
            && given != priority
        {
            return Err(forbidden(format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            )));
        }
        if let Some(given) = object.pointer("/spec/preemptionPolicy").and_then(Value::as_str)
            && class.is_some()
            && given != preemption
        {
            return Err(forbidden(format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {preemption} from the given PriorityClass name"
            )));
        }
        if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
            if !class_name.is_empty() {
                spec.insert("priorityClassName".into(), json!(class_name));
            }
            spec.insert("priority".into(), json!(priority));
            spec.insert("preemptionPolicy".into(), json!(preemption));
        }
        Ok(AdmissionOutcome::pass(object))
    }
}
