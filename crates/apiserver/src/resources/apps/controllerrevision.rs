//! ControllerRevisions (written by the StatefulSet and DaemonSet controllers).

use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::apps::v1::ControllerRevision;
use serde_json::{Value, json};

/// The ControllerRevision kind.
pub struct ControllerRevisionKind;

impl Kind for ControllerRevisionKind {
    type Object = ControllerRevision;
    const COLUMNS: &'static [Column] =
        &[col("Name", "string"), col("Controller", "string"), col("Revision", "integer"), col("Age", "string")];

    fn cells(r: &ControllerRevision) -> Vec<Value> {
        let owner = r
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| {
                format!("{}.{}/{}", o.kind.to_lowercase(), o.api_version.split('/').next().unwrap_or_default(), o.name)
            })
            .unwrap_or_else(|| "<none>".into());
        vec![json!(name_of(&r.metadata)), json!(owner), json!(r.revision), json!(age_of(&r.metadata))]
    }
}
