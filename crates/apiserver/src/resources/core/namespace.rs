//! Namespaces: Active on create, labelled with their name, held by the `kubernetes`
//! finalizer until the namespace controller has emptied them; deleting one marks it
//! Terminating (never with an orphan or foreground finalizer). The API server's side of
//! the lifecycle (removal once nothing holds it) is in [`crate::namespaces`].

use crate::resources::Subresource;
use crate::resources::kind::{Column, DeletionRules, FieldLabel, Kind, age_of, col, label, name_of};
use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec, NamespaceStatus};
use serde_json::{Value, json};

/// The Namespace kind.
pub struct NamespaceKind;

impl Kind for NamespaceKind {
    type Object = Namespace;
    const SHORT_NAMES: &'static [&'static str] = &["ns"];
    const DELETE_COLLECTION: bool = false;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status, Subresource::Finalize];
    const NAME_IS_DNS_LABEL: bool = true;
    const FIELD_LABELS: &'static [FieldLabel] = &[label("status.phase")];
    const COLUMNS: &'static [Column] = &[col("Name", "string"), col("Status", "string"), col("Age", "string")];

    fn prepare_for_create(ns: &mut Namespace) {
        ns.status = Some(NamespaceStatus { phase: Some("Active".into()), ..Default::default() });
    }

    fn default(ns: &mut Namespace) {
        let name = ns.metadata.name.clone().unwrap_or_default();
        ns.metadata.labels.get_or_insert_with(Default::default).insert("kubernetes.io/metadata.name".into(), name);
        let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
        if spec.finalizers.is_none() {
            spec.finalizers = Some(vec!["kubernetes".into()]);
        }
    }

    fn deletion_rules() -> DeletionRules {
        DeletionRules { propagation_finalizers: false }
    }

    fn mark_deleting(obj: &mut Value) {
        obj["status"]["phase"] = json!("Terminating");
    }

    fn held_by_spec(obj: &Value) -> bool {
        obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
    }

    fn cells(ns: &Namespace) -> Vec<Value> {
        let phase = ns.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        vec![json!(name_of(&ns.metadata)), json!(phase), json!(age_of(&ns.metadata))]
    }
}
