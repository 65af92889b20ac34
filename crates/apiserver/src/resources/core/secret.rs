//! Secrets: `stringData` folded into `data`, type defaulting to Opaque, at most 1 MiB.

use super::configmap::{MAX_DATA_BYTES, data_keys, too_long};
use crate::resources::kind::{Column, FieldLabel, Kind, age_of, col, default_to, label, name_of};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The Secret kind.
pub struct SecretKind;

impl Kind for SecretKind {
    type Object = Secret;
    const FIELD_LABELS: &'static [FieldLabel] = &[label("type")];
    const COLUMNS: &'static [Column] =
        &[col("Name", "string"), col("Type", "string"), col("Data", "integer"), col("Age", "string")];

    fn default(secret: &mut Secret) {
        default_to(&mut secret.type_, || "Opaque".into());
        if let Some(string_data) = secret.string_data.take() {
            let data = secret.data.get_or_insert_with(Default::default);
            for (k, v) in string_data {
                data.insert(k, ByteString(v.into_bytes()));
            }
        }
    }

    fn validate(secret: &Secret) -> Vec<Cause> {
        let mut causes = data_keys("data", secret.data.iter().flatten().map(|(k, _)| k));
        let size: usize = secret.data.iter().flatten().map(|(k, v)| k.len() + v.0.len()).sum();
        if size > MAX_DATA_BYTES {
            causes.push(too_long("data"));
        }
        causes
    }

    fn cells(secret: &Secret) -> Vec<Value> {
        vec![
            json!(name_of(&secret.metadata)),
            json!(secret.type_.clone().unwrap_or_default()),
            json!(secret.data.as_ref().map_or(0, |m| m.len())),
            json!(age_of(&secret.metadata)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_folds_into_data() {
        let mut s: Secret = serde_json::from_value(json!({"stringData": {"k": "v"}})).expect("secret");
        SecretKind::default(&mut s);
        assert_eq!(serde_json::to_value(&s).expect("json")["data"]["k"], "dg==");
        assert!(s.string_data.is_none());
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
    }
}
