//! events.k8s.io/v1 Events: the core Events' storage under their newer names (see
//! [`crate::conversion`]), with the same columns.

use crate::resources::core::event::EVENT_COLUMNS;
use crate::resources::kind::{Column, FieldLabel, Kind, age_at, label, name_of};
use k8s_openapi::api::events::v1::Event;
use serde_json::{Value, json};

/// The events.k8s.io Event kind.
pub struct EventKind;

impl Kind for EventKind {
    type Object = Event;
    const SHORT_NAMES: &'static [&'static str] = &["ev"];
    const FIELD_LABELS: &'static [FieldLabel] = &[
        label("regarding.kind"),
        label("regarding.namespace"),
        label("regarding.name"),
        label("regarding.uid"),
        label("regarding.apiVersion"),
        label("reason"),
        label("reportingController"),
        label("type"),
    ];
    const COLUMNS: &'static [Column] = EVENT_COLUMNS;

    fn cells(e: &Event) -> Vec<Value> {
        let last = e.deprecated_last_timestamp.as_ref().map(|t| t.0).or(e.event_time.as_ref().map(|t| t.0)).or(e
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0));
        let regarding = e.regarding.clone().unwrap_or_default();
        vec![
            json!(age_at(last)),
            json!(e.type_.clone().unwrap_or_default()),
            json!(e.reason.clone().unwrap_or_default()),
            json!(format!(
                "{}/{}",
                regarding.kind.unwrap_or_default().to_lowercase(),
                regarding.name.unwrap_or_default()
            )),
            json!(e.note.clone().unwrap_or_default()),
            json!(e.reporting_controller.clone().unwrap_or_default()),
            json!(age_at(e.deprecated_first_timestamp.as_ref().map(|t| t.0))),
            json!(e.deprecated_count.unwrap_or(0).max(1).to_string()),
            json!(name_of(&e.metadata)),
        ]
    }
}
