//! CronJobs (stored; kubectl's columns).

use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind, age_at, age_of, col, name_of, none_if_empty};
use k8s_openapi::api::batch::v1::CronJob;
use serde_json::{Value, json};

/// The CronJob kind.
pub struct CronJobKind;

impl Kind for CronJobKind {
    type Object = CronJob;
    const SHORT_NAMES: &'static [&'static str] = &["cj"];
    const IN_ALL: bool = true;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Schedule", "string"),
        col("Timezone", "string"),
        col("Suspend", "boolean"),
        col("Active", "integer"),
        col("Last Schedule", "string"),
        col("Age", "string"),
    ];

    fn cells(cj: &CronJob) -> Vec<Value> {
        let spec = cj.spec.clone();
        let status = cj.status.clone().unwrap_or_default();
        let last = match &status.last_schedule_time {
            Some(t) => age_at(Some(t.0)),
            None => "<none>".into(),
        };
        vec![
            json!(name_of(&cj.metadata)),
            json!(spec.schedule),
            json!(none_if_empty(spec.time_zone.unwrap_or_default())),
            json!(spec.suspend.unwrap_or(false)),
            json!(status.active.map_or(0, |a| a.len())),
            json!(last),
            json!(age_of(&cj.metadata)),
        ]
    }
}
