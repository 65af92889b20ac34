//! PriorityLevelConfigurations, with kube-apiserver's defaults and kubectl's columns.

use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind, age_of, col, name_of};
use k8s_openapi::api::flowcontrol::v1::{PriorityLevelConfiguration, QueuingConfiguration};
use serde_json::{Value, json};

/// The PriorityLevelConfiguration kind.
pub struct PriorityLevelConfigurationKind;

impl Kind for PriorityLevelConfigurationKind {
    type Object = PriorityLevelConfiguration;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Type", "string"),
        col("NominalConcurrencyShares", "string"),
        col("Queues", "string"),
        col("HandSize", "string"),
        col("QueueLengthLimit", "string"),
        col("Age", "string"),
    ];

    fn default(plc: &mut PriorityLevelConfiguration) {
        let spec = &mut plc.spec;
        if let Some(limited) = spec.limited.as_mut() {
            limited.nominal_concurrency_shares.get_or_insert(30);
            limited.lendable_percent.get_or_insert(0);
            if limited.limit_response.type_ == "Queue" {
                let q = limited.limit_response.queuing.get_or_insert_with(QueuingConfiguration::default);
                q.queues.get_or_insert(64);
                q.hand_size.get_or_insert(8);
                q.queue_length_limit.get_or_insert(50);
            }
        }
        if let Some(exempt) = spec.exempt.as_mut() {
            exempt.nominal_concurrency_shares.get_or_insert(0);
            exempt.lendable_percent.get_or_insert(0);
        }
    }

    fn cells(plc: &PriorityLevelConfiguration) -> Vec<Value> {
        let spec = plc.spec.clone();
        let none = || "<none>".to_string();
        let limited = spec.limited.clone();
        let queuing = limited.as_ref().and_then(|l| l.limit_response.queuing.clone());
        let shown = |v: Option<i32>| v.map_or_else(none, |v| v.to_string());
        vec![
            json!(name_of(&plc.metadata)),
            json!(spec.type_),
            json!(shown(limited.and_then(|l| l.nominal_concurrency_shares))),
            json!(shown(queuing.as_ref().and_then(|q| q.queues))),
            json!(shown(queuing.as_ref().and_then(|q| q.hand_size))),
            json!(shown(queuing.as_ref().and_then(|q| q.queue_length_limit))),
            json!(age_of(&plc.metadata)),
        ]
    }
}
