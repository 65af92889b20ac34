//! ConfigMaps: keys checked, at most 1 MiB of data (kube-apiserver's limit).

use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The ConfigMap kind.
pub struct ConfigMapKind;

/// The most data a ConfigMap or Secret holds (kube-apiserver's `MaxSecretSize`).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// kube-apiserver's cause for data over [`MAX_DATA_BYTES`].
pub fn too_long(field: &str) -> Cause {
    Cause {
        reason: "FieldValueTooLong".into(),
        message: format!("Too long: may not be more than {MAX_DATA_BYTES} bytes"),
        field: field.into(),
    }
}

/// Causes for keys of a data map that are not valid config keys.
pub fn data_keys<'a>(field: &str, keys: impl Iterator<Item = &'a String>) -> Vec<Cause> {
    keys.filter(|k| {
        !(!k.is_empty() && k.len() <= 253 && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    })
    .map(|k| {
        Cause::invalid(
            format!("{field}[{k}]"),
            k,
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        )
    })
    .collect()
}

impl Kind for ConfigMapKind {
    type Object = ConfigMap;
    const SHORT_NAMES: &'static [&'static str] = &["cm"];
    const COLUMNS: &'static [Column] = &[col("Name", "string"), col("Data", "integer"), col("Age", "string")];

    fn validate(cm: &ConfigMap) -> Vec<Cause> {
        let mut causes = data_keys("data", cm.data.iter().flatten().map(|(k, _)| k));
        causes.extend(data_keys("binaryData", cm.binary_data.iter().flatten().map(|(k, _)| k)));
        let size: usize = cm.data.iter().flatten().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + cm.binary_data.iter().flatten().map(|(k, v)| k.len() + v.0.len()).sum::<usize>();
        if size > MAX_DATA_BYTES {
            causes.push(too_long("[]"));
        }
        causes
    }

    fn cells(cm: &ConfigMap) -> Vec<Value> {
        let count = cm.data.as_ref().map_or(0, |m| m.len()) + cm.binary_data.as_ref().map_or(0, |m| m.len());
        vec![json!(name_of(&cm.metadata)), json!(count), json!(age_of(&cm.metadata))]
    }
}
