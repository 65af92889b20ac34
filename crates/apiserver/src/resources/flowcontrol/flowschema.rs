//! FlowSchemas, with kube-apiserver's defaults and kubectl's columns.

use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::flowcontrol::v1::FlowSchema;
use serde_json::{Value, json};

/// The FlowSchema kind.
pub struct FlowSchemaKind;

impl Kind for FlowSchemaKind {
    type Object = FlowSchema;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("PriorityLevel", "string"),
        col("MatchingPrecedence", "string"),
        col("DistinguisherMethod", "string"),
        col("Age", "string"),
        col("MissingPL", "string"),
    ];

    fn default(fs: &mut FlowSchema) {
        fs.spec.matching_precedence.get_or_insert(1000);
    }

    fn cells(fs: &FlowSchema) -> Vec<Value> {
        let spec = fs.spec.clone();
        let missing = fs
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Dangling"))
            .and_then(|c| c.status.clone())
            .unwrap_or_else(|| "?".into());
        vec![
            json!(name_of(&fs.metadata)),
            json!(spec.priority_level_configuration.name),
            json!(spec.matching_precedence.unwrap_or(1000).to_string()),
            json!(spec.distinguisher_method.map_or_else(|| "<none>".into(), |d| d.type_)),
            json!(age_of(&fs.metadata)),
            json!(missing),
        ]
    }
}
