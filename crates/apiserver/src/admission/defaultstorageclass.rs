//! kube-apiserver's DefaultStorageClass admission plugin: a new claim that names no
//! storage class gets the default one (annotated
//! `storageclass.kubernetes.io/is-default-class: "true"`; the newest if several).

use super::{Admission, AdmissionOutcome, AdmissionRequest, Operation};
use crate::registry::{ListParams, Registry};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;
use vkube_core::status::ApiError;

/// The annotation that makes a class the default.
pub const IS_DEFAULT: &str = "storageclass.kubernetes.io/is-default-class";

/// The plugin.
pub struct DefaultStorageClassAdmission {
    /// Where the classes are read.
    pub registry: Arc<Registry>,
}

/// The default class among `classes`: the newest annotated one (then by name, as kube).
pub fn default_class(classes: &[Value]) -> Option<String> {
    classes
        .iter()
        .filter(|c| {
            c.pointer("/metadata/annotations").and_then(|a| a.get(IS_DEFAULT)).and_then(Value::as_str) == Some("true")
        })
        .max_by(|a, b| {
            let key = |c: &Value| {
                (
                    c.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or_default().to_string(),
                    c.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(),
                )
            };
            key(a).cmp(&key(b))
        })
        .and_then(|c| c.pointer("/metadata/name").and_then(Value::as_str).map(String::from))
}

#[async_trait]
impl Admission for DefaultStorageClassAdmission {
    async fn admit(&self, req: &AdmissionRequest<'_>, mut object: Value) -> Result<AdmissionOutcome, ApiError> {
        let named = object.pointer("/spec/storageClassName").is_some_and(|v| !v.is_null());
        if req.operation != Operation::Create || !req.is_core("PersistentVolumeClaim") || named {
            return Ok(AdmissionOutcome::pass(object));
        }
        let Some(res) = self.registry.catalog().find("storage.k8s.io", "v1", "storageclasses") else {
            return Ok(AdmissionOutcome::pass(object));
        };
        let page = self.registry.list(&res, "", &ListParams::default()).await?;
        let classes: Vec<Value> = page.items.iter().filter_map(|kv| Registry::decode(kv).ok()).collect();
        if let (Some(class), Some(spec)) = (default_class(&classes), object.get_mut("spec")) {
            spec["storageClassName"] = json!(class);
        }
        Ok(AdmissionOutcome::pass(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_default_class_wins() {
        let class = |name: &str, default: bool, at: &str| json!({"metadata": {"name": name, "creationTimestamp": at, "annotations": {IS_DEFAULT: if default { "true" } else { "false" }}}});
        let classes = [
            class("old", true, "2026-01-01T00:00:00Z"),
            class("new", true, "2026-02-01T00:00:00Z"),
            class("x", false, "2026-03-01T00:00:00Z"),
        ];
        assert_eq!(default_class(&classes).as_deref(), Some("new"));
        assert_eq!(default_class(&classes[2..]), None);
    }
}
