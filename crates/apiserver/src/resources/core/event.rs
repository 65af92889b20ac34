//! Core Events (the same stored objects are served as events.k8s.io/v1 Events, see
//! [`crate::conversion`]), with kubectl's columns and field labels.

use crate::resources::kind::{Column, FieldLabel, Kind, age_at, col, label, name_of, wide};
use k8s_openapi::api::core::v1::Event;
use serde_json::{Value, json};

/// The core Event kind.
pub struct EventKind;

/// Event columns (both APIs).
pub const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string"),
    col("Type", "string"),
    col("Reason", "string"),
    col("Object", "string"),
    col("Message", "string"),
    wide("Source", "string"),
    wide("First Seen", "string"),
    wide("Count", "string"),
    wide("Name", "string"),
];

impl Kind for EventKind {
    type Object = Event;
    const SHORT_NAMES: &'static [&'static str] = &["ev"];
    const FIELD_LABELS: &'static [FieldLabel] = &[
        label("involvedObject.kind"),
        label("involvedObject.namespace"),
        label("involvedObject.name"),
        label("involvedObject.uid"),
        label("involvedObject.apiVersion"),
        label("involvedObject.resourceVersion"),
        label("involvedObject.fieldPath"),
        label("reason"),
        label("reportingComponent"),
        label("source"),
        label("type"),
    ];
    const COLUMNS: &'static [Column] = EVENT_COLUMNS;

    fn field_value(obj: &Value, label: &FieldLabel) -> String {
        let path = if label.path == "source" { "source.component" } else { label.path };
        vkube_core::selector::field_value(obj, path).unwrap_or_default()
    }

    fn cells(e: &Event) -> Vec<Value> {
        let last = e.last_timestamp.as_ref().map(|t| t.0).or(e.event_time.as_ref().map(|t| t.0)).or(e
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0));
        let object = format!(
            "{}/{}",
            e.involved_object.kind.clone().unwrap_or_default().to_lowercase(),
            e.involved_object.name.clone().unwrap_or_default()
        );
        vec![
            json!(age_at(last)),
            json!(e.type_.clone().unwrap_or_default()),
            json!(e.reason.clone().unwrap_or_default()),
            json!(object),
            json!(e.message.clone().unwrap_or_default()),
            json!(e.source.as_ref().and_then(|s| s.component.clone()).unwrap_or_default()),
            json!(age_at(e.first_timestamp.as_ref().map(|t| t.0))),
            json!(e.count.unwrap_or(0).max(1).to_string()),
            json!(name_of(&e.metadata)),
        ]
    }
}
