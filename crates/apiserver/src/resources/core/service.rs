//! Services: defaults (type, session affinity, IP families, traffic policies), type
//! changes that wipe what the new type does not use (kube-apiserver's
//! `dropTypeDependentFields`), validation with kube-apiserver's errors, and kubectl's
//! columns. Cluster IPs and node ports are the storage hook in
//! [`super::service_addresses`].

use crate::resources::Subresource;
use crate::resources::kind::{
    Column, FieldLabel, Kind, age_of, col, common_merge_key, default_to, label, name_of, none_if_empty, wide,
};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec, ServiceStatus};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use vkube_core::status::Cause;

/// The Service kind.
pub struct ServiceKind;

/// The service's type (`ClusterIP` when unset).
pub fn service_type(svc: &Service) -> &str {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()).filter(|t| !t.is_empty()).unwrap_or("ClusterIP")
}

/// Whether a service of this shape holds node ports.
pub fn needs_node_ports(svc: &Service) -> bool {
    match service_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc.spec.as_ref().and_then(|s| s.allocate_load_balancer_node_ports).unwrap_or(true),
        _ => false,
    }
}

/// Whether a service of this shape holds a health check node port.
pub fn needs_health_check_port(svc: &Service) -> bool {
    service_type(svc) == "LoadBalancer"
        && svc.spec.as_ref().and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local")
}

fn node_ports(svc: &Service) -> Vec<Option<i32>> {
    svc.spec.as_ref().and_then(|s| s.ports.as_ref()).into_iter().flatten().map(|p| p.node_port).collect()
}

impl Kind for ServiceKind {
    type Object = Service;
    const SHORT_NAMES: &'static [&'static str] = &["svc"];
    const IN_ALL: bool = true;
    const SUBRESOURCES: &'static [Subresource] = &[Subresource::Status];
    const NAME_IS_DNS_LABEL: bool = true;
    const FIELD_LABELS: &'static [FieldLabel] = &[label("spec.clusterIP"), label("spec.type")];
    const COLUMNS: &'static [Column] = &[
        col("Name", "string"),
        col("Type", "string"),
        col("Cluster-IP", "string"),
        col("External-IP", "string"),
        col("Port(s)", "string"),
        col("Age", "string"),
        wide("Selector", "string"),
    ];

    fn prepare_for_create(svc: &mut Service) {
        svc.status = Some(ServiceStatus { load_balancer: Some(Default::default()), ..Default::default() });
    }

    /// kube-apiserver's `dropTypeDependentFields`: a type change wipes what the new type
    /// does not use — when the client left it as it was (so it was not asked for) — so
    /// the addresses are released and the new type's defaults apply.
    fn prepare_for_update(svc: &mut Service, old: &Service) {
        let (old_type, new_type) = (service_type(old).to_string(), service_type(svc).to_string());
        let wipe_node_ports = needs_node_ports(old) && !needs_node_ports(svc) && node_ports(old) == node_ports(svc);
        let wipe_health_check = needs_health_check_port(old) && !needs_health_check_port(svc);
        let old_spec = old.spec.clone().unwrap_or_default();
        let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
        macro_rules! wipe_if_same {
            ($($field:ident),*) => {$(
                if spec.$field == old_spec.$field {
                    spec.$field = None;
                }
            )*};
        }
        if old_type != "ExternalName" && new_type == "ExternalName" {
            wipe_if_same!(cluster_ip, cluster_ips, ip_families, ip_family_policy, internal_traffic_policy);
        }
        if wipe_node_ports {
            for p in spec.ports.iter_mut().flatten() {
                p.node_port = None;
            }
        }
        if wipe_health_check {
            wipe_if_same!(health_check_node_port);
        }
        if old_type == "LoadBalancer" && new_type != "LoadBalancer" {
            wipe_if_same!(allocate_load_balancer_node_ports, load_balancer_class);
        }
        let externally_accessible = |t: &str| t == "NodePort" || t == "LoadBalancer";
        if externally_accessible(&old_type) && !externally_accessible(&new_type) {
            wipe_if_same!(external_traffic_policy);
        }
        if new_type != "LoadBalancer" {
            svc.status = Some(ServiceStatus { load_balancer: Some(Default::default()), ..Default::default() });
        }
    }

    fn default(svc: &mut Service) {
        let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
        default_to(&mut spec.type_, || "ClusterIP".into());
        default_to(&mut spec.session_affinity, || "None".into());
        let ty = spec.type_.clone().unwrap_or_default();
        if ty != "ExternalName" {
            default_to(&mut spec.ip_families, || vec!["IPv4".into()]);
            default_to(&mut spec.ip_family_policy, || "SingleStack".into());
            default_to(&mut spec.internal_traffic_policy, || "Cluster".into());
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            default_to(&mut spec.external_traffic_policy, || "Cluster".into());
        }
        if ty == "LoadBalancer" {
            default_to(&mut spec.allocate_load_balancer_node_ports, || true);
        }
        for p in spec.ports.iter_mut().flatten() {
            default_to(&mut p.protocol, || "TCP".into());
            default_to(&mut p.target_port, || IntOrString::Int(p.port));
        }
    }

    fn validate(svc: &Service) -> Vec<Cause> {
        let mut causes = vec![];
        let spec = svc.spec.clone().unwrap_or_default();
        let ty = service_type(svc);
        const TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
        if !TYPES.contains(&ty) {
            causes.push(Cause::not_supported("spec.type", ty, &TYPES));
        }
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if headless && (ty == "NodePort" || ty == "LoadBalancer") {
            causes.push(Cause::invalid(
                "spec.clusterIPs[0]",
                "None",
                format!("may not be set to 'None' for {ty} services"),
            ));
        }
        if ty == "ExternalName" && spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
            causes.push(Cause::forbidden("spec.clusterIPs", "may not be set for ExternalName services"));
        }
        let ports = spec.ports.unwrap_or_default();
        if ty != "ExternalName" && !headless && ports.is_empty() {
            causes.push(Cause::required("spec.ports"));
        }
        for (i, p) in ports.iter().enumerate() {
            if !(1..=65535).contains(&p.port) {
                causes.push(Cause::invalid(
                    format!("spec.ports[{i}].port"),
                    &p.port.to_string(),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if ports.len() > 1 && p.name.as_deref().unwrap_or_default().is_empty() {
                causes.push(Cause::required(format!("spec.ports[{i}].name")));
            }
            if (ty == "ClusterIP" || ty == "ExternalName") && p.node_port.is_some_and(|n| n != 0) {
                causes.push(Cause::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            }
        }
        causes
    }

    fn validate_update(svc: &Service, old: &Service) -> Vec<Cause> {
        let mut causes = Self::validate(svc);
        let ip = |s: &Service| s.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default();
        if !ip(old).is_empty() && ip(svc) != ip(old) && service_type(svc) != "ExternalName" {
            causes.push(Cause::immutable("spec.clusterIPs[0]"));
        }
        causes
    }

    fn cells(svc: &Service) -> Vec<Value> {
        let spec = svc.spec.clone().unwrap_or_default();
        let ty = service_type(svc).to_string();
        let mut external: Vec<String> = spec.external_ips.clone().unwrap_or_default();
        let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.clone());
        for i in ingress.into_iter().flatten() {
            external.push(i.ip.filter(|ip| !ip.is_empty()).or(i.hostname).unwrap_or_default());
        }
        let external = match ty.as_str() {
            "ExternalName" => spec.external_name.clone().unwrap_or_default(),
            "LoadBalancer" if external.is_empty() => "<pending>".into(),
            _ => none_if_empty(external.join(",")),
        };
        let selector: Vec<String> = spec.selector.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
        vec![
            json!(name_of(&svc.metadata)),
            json!(ty),
            json!(none_if_empty(spec.cluster_ip.clone().unwrap_or_default())),
            json!(external),
            json!(ports_string(spec.ports.as_deref().unwrap_or_default())),
            json!(age_of(&svc.metadata)),
            json!(none_if_empty(selector.join(","))),
        ]
    }

    fn merge_key(path: &[&str]) -> Option<&'static str> {
        match path {
            ["spec", "ports"] => Some("port"),
            _ => common_merge_key(path),
        }
    }
}

fn ports_string(ports: &[ServicePort]) -> String {
    let text: Vec<String> = ports
        .iter()
        .map(|p| {
            let proto = p.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
            match p.node_port.filter(|n| *n > 0) {
                Some(np) => format!("{}:{np}/{proto}", p.port),
                None => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    none_if_empty(text.join(","))
}
