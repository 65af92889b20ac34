//! Ingresses, with kubectl's columns.

use crate::resources::Subresource;
use crate::resources::kind::{Column, Kind, age_of, col, name_of, none_if_empty};
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};

/// The Ingress kind.
pub struct IngressKind;

impl Kind for IngressKind {
    type Object = Ingress;
    const SHORT_NAMES: &'static [&'static str] = &["ing"];
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const TRACKS_GENERATION: bool = true;
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Class", "string"),
        col("Hosts", "string"),
        col("Address", "string"),
        col("Ports", "string"),
        col("Age", "string"),
    ];

    fn cells(ing: &Ingress) -> Vec<Value> {
        let spec = ing.spec.clone().unwrap_or_default();
        let hosts: Vec<String> =
            spec.rules.iter().flatten().filter_map(|r| r.host.clone()).filter(|h| !h.is_empty()).collect();
        let addresses: Vec<String> = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.clone())
            .into_iter()
            .flatten()
            .map(|i| i.ip.filter(|ip| !ip.is_empty()).or(i.hostname).unwrap_or_default())
            .collect();
        let ports = if spec.tls.as_ref().is_none_or(|t| t.is_empty()) { "80" } else { "80, 443" };
        vec![
            json!(name_of(&ing.metadata)),
            json!(none_if_empty(spec.ingress_class_name.unwrap_or_default())),
            json!(if hosts.is_empty() { "*".into() } else { hosts.join(",") }),
            json!(addresses.join(",")),
            json!(ports),
            json!(age_of(&ing.metadata)),
        ]
    }
}
