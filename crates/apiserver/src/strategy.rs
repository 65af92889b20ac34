//! Per-resource behaviour, called by the registry in a fixed order:
//! `prepare_for_create`/`prepare_for_update` → `default` → `validate` → `warnings`.
//!
//! Every method has a no-op default; a kind overrides only what differs. Strategies see
//! objects as JSON that has already been type-checked and pruned against the kind's
//! schema, so they may assume field types are right.

use serde_json::{Value, json};
use std::sync::Arc;
use vkube_core::meta::{self, DNS1123_LABEL_MSG, DNS1123_SUBDOMAIN_MSG};
use vkube_core::status::Cause;

/// Per-resource behaviour. See the module docs for the call order.
pub trait Strategy: Send + Sync {
    /// Clear what a client may not set on create (e.g. status).
    fn prepare_for_create(&self, _obj: &mut Value) {}
    /// Carry over what a client may not change on update.
    fn prepare_for_update(&self, _obj: &mut Value, _old: &Value) {}
    /// Fill in defaults.
    fn default(&self, _obj: &mut Value) {}
    /// Validate a new object; `name_rule` is checked by the registry.
    fn validate(&self, _obj: &Value) -> Vec<Cause> {
        vec![]
    }
    /// Validate an update (defaults to [`Strategy::validate`]).
    fn validate_update(&self, obj: &Value, _old: &Value) -> Vec<Cause> {
        self.validate(obj)
    }
    /// Warnings to send with a successful write.
    fn warnings(&self, _obj: &Value) -> Vec<String> {
        vec![]
    }
    /// Whether names must be DNS labels (true) or DNS subdomains (false).
    fn name_is_dns_label(&self) -> bool {
        false
    }
    /// Field selector labels supported beyond `metadata.name` and `metadata.namespace`,
    /// each with the value an object without the field has (kube-apiserver selects on
    /// the typed object, where an absent field is its zero value: `false`, `""`, `0`).
    fn field_labels(&self) -> &'static [FieldLabel] {
        &[]
    }
    /// The value of a field label of `obj` (a label from [`Strategy::field_labels`]).
    fn field_value(&self, obj: &Value, label: &FieldLabel) -> String {
        vkube_core::selector::field_value(obj, label.path).unwrap_or_else(|| label.zero.to_string())
    }
    /// The refusal for a field selector on a label the kind does not support.
    /// Kinds with field label conversions in kube-apiserver answer `field label not
    /// supported`; the others list what is.
    fn unsupported_field_label(&self, field: &str) -> String {
        if self.field_labels().is_empty() {
            format!("\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")
        } else {
            format!("field label not supported: {field}")
        }
    }
    /// The grace period to use when deleting `obj` (None or Some(0): delete at once).
    fn grace_period(&self, _obj: &Value, requested: Option<i64>) -> Option<i64> {
        requested.filter(|g| *g > 0).map(|_| 0)
    }
    /// Whether writes to the main resource bump `metadata.generation` on spec changes.
    fn tracks_generation(&self) -> bool {
        false
    }
}

/// A field selector label of a kind and the value it has when the field is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLabel {
    /// The dotted path, e.g. `spec.unschedulable`.
    pub path: &'static str,
    /// The zero value of the field's Go type, as a field selector compares it.
    pub zero: &'static str,
}

const fn label(path: &'static str) -> FieldLabel {
    FieldLabel { path, zero: "" }
}

const fn flag(path: &'static str) -> FieldLabel {
    FieldLabel { path, zero: "false" }
}

/// The default strategy (no special behaviour).
pub struct Plain;
impl Strategy for Plain {}

/// The strategy for a kind.
pub fn for_kind(group: &str, kind: &str) -> Arc<dyn Strategy> {
    match (group, kind) {
        ("", "Pod") => Arc::new(PodStrategy),
        ("", "Namespace") => Arc::new(NamespaceStrategy),
        ("", "Service") => Arc::new(ServiceStrategy),
        ("", "Node") => Arc::new(NodeStrategy),
        ("", "Secret") => Arc::new(SecretStrategy),
        ("", "ConfigMap") => Arc::new(ConfigMapStrategy),
        ("", "Event") => Arc::new(EventStrategy),
        ("events.k8s.io", "Event") => Arc::new(EventsV1Strategy),
        ("", "PersistentVolumeClaim") => Arc::new(PvcStrategy),
        ("", "PersistentVolume") => Arc::new(PvStrategy),
        ("", "ServiceAccount") => Arc::new(Plain),
        ("apps", "Deployment") => Arc::new(WorkloadStrategy::Deployment),
        ("apps", "ReplicaSet") => Arc::new(WorkloadStrategy::ReplicaSet),
        ("apps", "StatefulSet") => Arc::new(WorkloadStrategy::StatefulSet),
        ("apps", "DaemonSet") => Arc::new(WorkloadStrategy::DaemonSet),
        ("batch", "Job") => Arc::new(JobStrategy),
        ("batch", "CronJob") => Arc::new(GenerationOnly),
        ("policy", "PodDisruptionBudget") => Arc::new(GenerationOnly),
        ("networking.k8s.io", "Ingress") => Arc::new(GenerationOnly),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Arc::new(GenerationOnly),
        _ => Arc::new(Plain),
    }
}

/// A strategy that only tracks generation.
pub struct GenerationOnly;
impl Strategy for GenerationOnly {
    fn tracks_generation(&self) -> bool {
        true
    }
}

fn set_default(obj: &mut Value, path: &[&str], value: Value) {
    let mut cur = obj;
    for (i, p) in path.iter().enumerate() {
        if !cur.is_object() {
            return;
        }
        let last = i == path.len() - 1;
        let entry = cur
            .as_object_mut()
            .map(|m| m.entry(p.to_string()).or_insert_with(|| if last { value.clone() } else { json!({}) }));
        match entry {
            Some(e) => {
                if e.is_null() {
                    *e = if last { value.clone() } else { json!({}) };
                }
                cur = e;
            }
            None => return,
        }
    }
}

fn str_at<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn check_name(field: &str, name: &str, label: bool, causes: &mut Vec<Cause>) {
    if name.is_empty() {
        causes.push(Cause::required(field));
    } else if label && !meta::is_dns1123_label(name) {
        causes.push(Cause::invalid(field, name, DNS1123_LABEL_MSG));
    } else if !label && !meta::is_dns1123_subdomain(name) {
        causes.push(Cause::invalid(field, name, DNS1123_SUBDOMAIN_MSG));
    }
}

/// Defaults shared by every pod spec (pods and workload templates).
pub fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, &["restartPolicy"], json!("Always"));
    set_default(spec, &["dnsPolicy"], json!("ClusterFirst"));
    set_default(spec, &["terminationGracePeriodSeconds"], json!(30));
    set_default(spec, &["schedulerName"], json!("default-scheduler"));
    set_default(spec, &["securityContext"], json!({}));
    set_default(spec, &["enableServiceLinks"], json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                default_container(c);
            }
        }
    }
}

fn default_container(c: &mut Value) {
    let image = str_at(c, "/image").to_string();
    let tag_latest = {
        let last = image.rsplit('/').next().unwrap_or_default();
        !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"))
    };
    set_default(c, &["imagePullPolicy"], json!(if tag_latest { "Always" } else { "IfNotPresent" }));
    set_default(c, &["terminationMessagePath"], json!("/dev/termination-log"));
    set_default(c, &["terminationMessagePolicy"], json!("File"));
    set_default(c, &["resources"], json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, &["protocol"], json!("TCP"));
        }
    }
}

fn validate_pod_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => causes.push(Cause::required(format!("{path}.containers"))),
        Some(cs) if cs.is_empty() => causes.push(Cause::required(format!("{path}.containers"))),
        Some(cs) => {
            let mut seen = std::collections::HashSet::new();
            for (i, c) in cs.iter().enumerate() {
                let name = str_at(c, "/name");
                let field = format!("{path}.containers[{i}].name");
                if name.is_empty() {
                    causes.push(Cause::required(field));
                } else if !meta::is_dns1123_label(name) {
                    causes.push(Cause::invalid(field, name, DNS1123_LABEL_MSG));
                } else if !seen.insert(name.to_string()) {
                    causes.push(Cause::duplicate(field, name));
                }
                if str_at(c, "/image").trim().is_empty() {
                    causes.push(Cause::required(format!("{path}.containers[{i}].image")));
                }
            }
        }
    }
    let rp = str_at(spec, "/restartPolicy");
    if !["Always", "OnFailure", "Never"].contains(&rp) {
        causes.push(Cause::not_supported(format!("{path}.restartPolicy"), rp, &["Always", "OnFailure", "Never"]));
    }
    let dns = str_at(spec, "/dnsPolicy");
    if !["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"].contains(&dns) {
        causes.push(Cause::not_supported(
            format!("{path}.dnsPolicy"),
            dns,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ));
    }
}

fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> =
        spec.get("containers").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(res));
            let r = req.and_then(|r| r.get(res)).or(l);
            if l.is_none() || r != l {
                guaranteed = false;
            }
        }
    }
    if guaranteed {
        "Guaranteed"
    } else if any {
        "Burstable"
    } else {
        "BestEffort"
    }
}

/// Pods.
pub struct PodStrategy;
impl Strategy for PodStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        let qos = qos_class(obj.get("spec").unwrap_or(&Value::Null));
        obj["status"] = json!({"phase": "Pending", "qosClass": qos});
    }
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            default_pod_spec(spec);
            set_default(spec, &["serviceAccountName"], json!("default"));
            if spec.get("serviceAccount").is_none() {
                let sa = spec["serviceAccountName"].clone();
                spec["serviceAccount"] = sa;
            }
            set_default(spec, &["priority"], json!(0));
            set_default(spec, &["preemptionPolicy"], json!("PreemptLowerPriority"));
            let tolerations = spec.as_object_mut().map(|m| m.entry("tolerations").or_insert_with(|| json!([])));
            if let Some(Value::Array(ts)) = tolerations {
                for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
                    if !ts.iter().any(|t| t.get("key").and_then(Value::as_str) == Some(key)) {
                        ts.push(
                            json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
                        );
                    }
                }
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = vec![];
        match obj.get("spec") {
            Some(spec) => validate_pod_spec(spec, "spec", &mut causes),
            None => causes.push(Cause::required("spec.containers")),
        }
        causes
    }
    fn validate_update(&self, obj: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(obj);
        // Only images, activeDeadlineSeconds, tolerations (additions) and
        // terminationGracePeriodSeconds may change in a pod spec.
        let mut new_spec = obj.get("spec").cloned().unwrap_or_default();
        let mut old_spec = old.get("spec").cloned().unwrap_or_default();
        for s in [&mut new_spec, &mut old_spec] {
            for list in ["containers", "initContainers"] {
                if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                    for c in cs {
                        if let Some(m) = c.as_object_mut() {
                            m.remove("image");
                        }
                    }
                }
            }
            if let Some(m) = s.as_object_mut() {
                for f in ["activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"] {
                    m.remove(f);
                }
                // nodeName may be set once (binding).
                m.remove("nodeName");
            }
        }
        let old_node = str_at(old, "/spec/nodeName");
        let new_node = str_at(obj, "/spec/nodeName");
        if !old_node.is_empty() && old_node != new_node {
            causes.push(Cause::immutable("spec.nodeName"));
        }
        if new_spec != old_spec {
            causes.push(Cause::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
        causes
    }
    fn field_labels(&self) -> &'static [FieldLabel] {
        const {
            &[
                label("spec.nodeName"),
                label("spec.restartPolicy"),
                label("spec.schedulerName"),
                label("spec.serviceAccountName"),
                flag("spec.hostNetwork"),
                label("status.phase"),
                label("status.podIP"),
                // Accepted by kube-apiserver's conversion, never set in its field set.
                label("status.podIPs"),
                label("status.nominatedNodeName"),
            ]
        }
    }
    fn field_value(&self, obj: &Value, label: &FieldLabel) -> String {
        match label.path {
            "status.podIPs" => String::new(),
            // kube-apiserver reads the first of `status.podIPs`.
            "status.podIP" => {
                obj.pointer("/status/podIPs/0/ip").and_then(Value::as_str).unwrap_or_default().to_string()
            }
            path => vkube_core::selector::field_value(obj, path).unwrap_or_else(|| label.zero.to_string()),
        }
    }
    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        // Unscheduled and finished pods go at once, as in kube-apiserver.
        let phase = str_at(obj, "/status/phase");
        if str_at(obj, "/spec/nodeName").is_empty() || phase == "Succeeded" || phase == "Failed" {
            return Some(0);
        }
        Some(requested.unwrap_or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30)
        }))
    }
}

/// Namespaces.
pub struct NamespaceStrategy;
impl Strategy for NamespaceStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Active"});
    }
    fn default(&self, obj: &mut Value) {
        let name = meta::name(obj).to_string();
        let md = meta::metadata_mut(obj);
        let labels = md.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        set_default(obj, &["spec", "finalizers"], json!(["kubernetes"]));
    }
    fn name_is_dns_label(&self) -> bool {
        true
    }
    fn field_labels(&self) -> &'static [FieldLabel] {
        const { &[label("status.phase")] }
    }
}

/// Services.
pub struct ServiceStrategy;

fn service_type(obj: &Value) -> &str {
    match str_at(obj, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    }
}

fn service_needs_node_ports(obj: &Value) -> bool {
    match service_type(obj) {
        "NodePort" => true,
        "LoadBalancer" => obj.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool).unwrap_or(true),
        _ => false,
    }
}

fn service_node_ports(obj: &Value) -> Vec<Option<i64>> {
    obj.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().map(|p| p.get("nodePort").and_then(Value::as_i64)).collect())
        .unwrap_or_default()
}

impl Strategy for ServiceStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
    }
    /// kube-apiserver's `dropTypeDependentFields`: a type change wipes what the new type
    /// does not use — when the client left it as it was (so it was not asked for) — so
    /// the addresses are released and the defaults of the new type apply.
    fn prepare_for_update(&self, obj: &mut Value, old: &Value) {
        let same = |ptr: &str, obj: &Value| obj.pointer(ptr) == old.pointer(ptr);
        let (old_type, new_type) = (service_type(old).to_string(), service_type(obj).to_string());
        let mut wipe: Vec<&str> = Vec::new();
        if old_type != "ExternalName" && new_type == "ExternalName" {
            for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"] {
                if same(&format!("/spec/{f}"), obj) {
                    wipe.push(f);
                }
            }
        }
        if service_needs_node_ports(old)
            && !service_needs_node_ports(obj)
            && service_node_ports(old) == service_node_ports(obj)
            && let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut)
        {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("nodePort");
            }
        }
        let needs_health_check =
            |v: &Value| service_type(v) == "LoadBalancer" && str_at(v, "/spec/externalTrafficPolicy") == "Local";
        if needs_health_check(old) && !needs_health_check(obj) && same("/spec/healthCheckNodePort", obj) {
            wipe.push("healthCheckNodePort");
        }
        if old_type == "LoadBalancer" && new_type != "LoadBalancer" {
            for f in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
                if same(&format!("/spec/{f}"), obj) {
                    wipe.push(f);
                }
            }
        }
        let externally_accessible = |t: &str| t == "NodePort" || t == "LoadBalancer";
        if externally_accessible(&old_type)
            && !externally_accessible(&new_type)
            && same("/spec/externalTrafficPolicy", obj)
        {
            wipe.push("externalTrafficPolicy");
        }
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            for f in wipe {
                spec.remove(f);
            }
        }
        if new_type != "LoadBalancer" {
            obj["status"] = json!({"loadBalancer": {}});
        }
    }
    fn default(&self, obj: &mut Value) {
        set_default(obj, &["spec", "type"], json!("ClusterIP"));
        set_default(obj, &["spec", "sessionAffinity"], json!("None"));
        let ty = str_at(obj, "/spec/type").to_string();
        if ty != "ExternalName" {
            set_default(obj, &["spec", "ipFamilies"], json!(["IPv4"]));
            set_default(obj, &["spec", "ipFamilyPolicy"], json!("SingleStack"));
            set_default(obj, &["spec", "internalTrafficPolicy"], json!("Cluster"));
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            set_default(obj, &["spec", "externalTrafficPolicy"], json!("Cluster"));
        }
        if ty == "LoadBalancer" {
            set_default(obj, &["spec", "allocateLoadBalancerNodePorts"], json!(true));
        }
        if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports {
                set_default(p, &["protocol"], json!("TCP"));
                if p.get("targetPort").is_none_or(Value::is_null) {
                    let port = p.get("port").cloned().unwrap_or(json!(0));
                    p["targetPort"] = port;
                }
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = vec![];
        let ty = str_at(obj, "/spec/type");
        if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
            causes.push(Cause::not_supported(
                "spec.type",
                ty,
                &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
            ));
        }
        let headless = str_at(obj, "/spec/clusterIP") == "None";
        if headless && (ty == "NodePort" || ty == "LoadBalancer") {
            causes.push(Cause::invalid(
                "spec.clusterIPs[0]",
                "None",
                format!("may not be set to 'None' for {ty} services"),
            ));
        }
        if ty == "ExternalName"
            && obj.pointer("/spec/clusterIP").and_then(Value::as_str).is_some_and(|ip| !ip.is_empty())
        {
            causes.push(Cause::forbidden("spec.clusterIPs", "may not be set for ExternalName services"));
        }
        let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
        if ty != "ExternalName" && !headless && ports.is_none_or(|p| p.is_empty()) {
            causes.push(Cause::required("spec.ports"));
        }
        for (i, p) in ports.into_iter().flatten().enumerate() {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&port) {
                causes.push(Cause::invalid(
                    format!("spec.ports[{i}].port"),
                    &port.to_string(),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if ports.is_some_and(|ps| ps.len() > 1) && str_at(p, "/name").is_empty() {
                causes.push(Cause::required(format!("spec.ports[{i}].name")));
            }
            if (ty == "ClusterIP" || ty == "ExternalName")
                && p.get("nodePort").and_then(Value::as_i64).is_some_and(|n| n != 0)
            {
                causes.push(Cause::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            }
        }
        causes
    }
    fn validate_update(&self, obj: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(obj);
        let old_ip = str_at(old, "/spec/clusterIP");
        if !old_ip.is_empty() && str_at(obj, "/spec/clusterIP") != old_ip && str_at(obj, "/spec/type") != "ExternalName"
        {
            causes.push(Cause::immutable("spec.clusterIPs[0]"));
        }
        causes
    }
    fn name_is_dns_label(&self) -> bool {
        true
    }
    fn field_labels(&self) -> &'static [FieldLabel] {
        const { &[label("spec.clusterIP"), label("spec.type")] }
    }
}

/// Nodes.
pub struct NodeStrategy;
impl Strategy for NodeStrategy {
    fn default(&self, obj: &mut Value) {
        // As kube-apiserver: allocatable defaults to capacity.
        if obj.pointer("/status/allocatable").is_none_or(Value::is_null)
            && let Some(cap) = obj.pointer("/status/capacity").cloned()
        {
            obj["status"]["allocatable"] = cap;
        }
    }
    fn field_labels(&self) -> &'static [FieldLabel] {
        const { &[flag("spec.unschedulable")] }
    }
}

/// Secrets: `stringData` is folded into `data`; `type` defaults to Opaque.
pub struct SecretStrategy;
impl Strategy for SecretStrategy {
    fn default(&self, obj: &mut Value) {
        use base64::Engine as _;
        set_default(obj, &["type"], json!("Opaque"));
        if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
            let data = obj.as_object_mut().map(|m| m.entry("data").or_insert_with(|| json!({})));
            if let Some(Value::Object(d)) = data {
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or_default();
                    d.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(s)));
                }
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut c = data_keys(obj, "data");
        let size: usize = obj
            .get("data")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, |b| b.len() / 4 * 3))
            .sum();
        if size > MAX_DATA_BYTES {
            c.push(too_long("data"));
        }
        c
    }
    fn field_labels(&self) -> &'static [FieldLabel] {
        const { &[label("type")] }
    }
}

fn data_keys(obj: &Value, field: &str) -> Vec<Cause> {
    let mut causes = vec![];
    if let Some(m) = obj.get(field).and_then(Value::as_object) {
        for k in m.keys() {
            let ok =
                !k.is_empty() && k.len() <= 253 && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                causes.push(Cause::invalid(
                    format!("{field}[{k}]"),
                    k,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                ));
            }
        }
    }
    causes
}

/// The most data a ConfigMap or Secret holds (kube-apiserver's `MaxSecretSize`).
const MAX_DATA_BYTES: usize = 1024 * 1024;

fn too_long(field: &str) -> Cause {
    Cause {
        reason: "FieldValueTooLong".into(),
        message: format!("Too long: may not be more than {MAX_DATA_BYTES} bytes"),
        field: field.into(),
    }
}

/// ConfigMaps.
pub struct ConfigMapStrategy;
impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut c = data_keys(obj, "data");
        c.extend(data_keys(obj, "binaryData"));
        // Keys and values of both maps count (binary values decoded).
        let mut size = 0usize;
        for (k, v) in obj.get("data").and_then(Value::as_object).into_iter().flatten() {
            size += k.len() + v.as_str().map_or(0, str::len);
        }
        for (k, v) in obj.get("binaryData").and_then(Value::as_object).into_iter().flatten() {
            size += k.len() + v.as_str().map_or(0, |b| b.len() / 4 * 3);
        }
        if size > MAX_DATA_BYTES {
            c.push(too_long("[]"));
        }
        c
    }
}

/// Core events.
pub struct EventStrategy;
impl Strategy for EventStrategy {
    fn field_labels(&self) -> &'static [FieldLabel] {
        const {
            &[
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
            ]
        }
    }
    fn field_value(&self, obj: &Value, label: &FieldLabel) -> String {
        let path = if label.path == "source" { "source.component" } else { label.path };
        vkube_core::selector::field_value(obj, path).unwrap_or_default()
    }
}

/// events.k8s.io/v1 Events.
pub struct EventsV1Strategy;
impl Strategy for EventsV1Strategy {
    fn field_labels(&self) -> &'static [FieldLabel] {
        const {
            &[
                label("regarding.kind"),
                label("regarding.namespace"),
                label("regarding.name"),
                label("regarding.uid"),
                label("regarding.apiVersion"),
                label("reason"),
                label("reportingController"),
                label("type"),
            ]
        }
    }
}

/// PersistentVolumeClaims.
pub struct PvcStrategy;
impl Strategy for PvcStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }
    fn default(&self, obj: &mut Value) {
        set_default(obj, &["spec", "volumeMode"], json!("Filesystem"));
    }
}

/// PersistentVolumes.
pub struct PvStrategy;
impl Strategy for PvStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }
    fn default(&self, obj: &mut Value) {
        set_default(obj, &["spec", "persistentVolumeReclaimPolicy"], json!("Retain"));
        set_default(obj, &["spec", "volumeMode"], json!("Filesystem"));
    }
}

/// The apps/v1 workloads.
pub enum WorkloadStrategy {
    /// Deployments.
    Deployment,
    /// ReplicaSets.
    ReplicaSet,
    /// StatefulSets.
    StatefulSet,
    /// DaemonSets.
    DaemonSet,
}

impl Strategy for WorkloadStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
    fn default(&self, obj: &mut Value) {
        match self {
            WorkloadStrategy::Deployment => {
                set_default(obj, &["spec", "replicas"], json!(1));
                set_default(obj, &["spec", "strategy", "type"], json!("RollingUpdate"));
                if str_at(obj, "/spec/strategy/type") == "RollingUpdate" {
                    set_default(obj, &["spec", "strategy", "rollingUpdate", "maxUnavailable"], json!("25%"));
                    set_default(obj, &["spec", "strategy", "rollingUpdate", "maxSurge"], json!("25%"));
                }
                set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
                set_default(obj, &["spec", "progressDeadlineSeconds"], json!(600));
            }
            WorkloadStrategy::ReplicaSet => set_default(obj, &["spec", "replicas"], json!(1)),
            WorkloadStrategy::StatefulSet => {
                set_default(obj, &["spec", "replicas"], json!(1));
                set_default(obj, &["spec", "podManagementPolicy"], json!("OrderedReady"));
                set_default(obj, &["spec", "updateStrategy", "type"], json!("RollingUpdate"));
                if str_at(obj, "/spec/updateStrategy/type") == "RollingUpdate" {
                    set_default(obj, &["spec", "updateStrategy", "rollingUpdate", "partition"], json!(0));
                }
                set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
                set_default(
                    obj,
                    &["spec", "persistentVolumeClaimRetentionPolicy"],
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
            }
            WorkloadStrategy::DaemonSet => {
                set_default(obj, &["spec", "updateStrategy", "type"], json!("RollingUpdate"));
                if str_at(obj, "/spec/updateStrategy/type") == "RollingUpdate" {
                    set_default(obj, &["spec", "updateStrategy", "rollingUpdate", "maxUnavailable"], json!(1));
                    set_default(obj, &["spec", "updateStrategy", "rollingUpdate", "maxSurge"], json!(0));
                }
                set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
            }
        }
        if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
            default_pod_spec(spec);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = vec![];
        validate_selector_and_template(obj, &mut causes);
        if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64)
            && r < 0
        {
            causes.push(Cause::invalid("spec.replicas", &r.to_string(), "must be greater than or equal to 0"));
        }
        if let Some(spec) = obj.pointer("/spec/template/spec") {
            validate_pod_spec(spec, "spec.template.spec", &mut causes);
            let rp = str_at(spec, "/restartPolicy");
            if rp != "Always" && !rp.is_empty() {
                causes.push(Cause::not_supported("spec.template.spec.restartPolicy", rp, &["Always"]));
            }
        }
        causes
    }
    fn validate_update(&self, obj: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(obj);
        if obj.pointer("/spec/selector") != old.pointer("/spec/selector") {
            causes.push(Cause::invalid("spec.selector", &compact(obj.pointer("/spec/selector")), "field is immutable"));
        }
        causes
    }
    fn tracks_generation(&self) -> bool {
        true
    }
}

fn compact(v: Option<&Value>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn validate_selector_and_template(obj: &Value, causes: &mut Vec<Cause>) {
    let selector = obj.pointer("/spec/selector");
    let Some(sel) = selector.filter(|s| !s.is_null()) else {
        causes.push(Cause::required("spec.selector"));
        return;
    };
    match vkube_core::selector::LabelSelector::from_object(Some(sel)) {
        Ok(s) if s.requirements.is_empty() => {
            causes.push(Cause::invalid("spec.selector", &sel.to_string(), "empty selector is invalid for deployment"))
        }
        Ok(s) => {
            let labels = obj
                .pointer("/spec/template/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
                .unwrap_or_default();
            if !s.matches(&labels) {
                causes.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    &compact(obj.pointer("/spec/template/metadata/labels")),
                    "`selector` does not match template `labels`",
                ));
            }
        }
        Err(e) => causes.push(Cause::invalid("spec.selector", &sel.to_string(), e.0)),
    }
}

/// Jobs.
pub struct JobStrategy;
impl Strategy for JobStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
    fn default(&self, obj: &mut Value) {
        set_default(obj, &["spec", "parallelism"], json!(1));
        set_default(obj, &["spec", "completions"], json!(1));
        set_default(obj, &["spec", "backoffLimit"], json!(6));
        set_default(obj, &["spec", "completionMode"], json!("NonIndexed"));
        set_default(obj, &["spec", "suspend"], json!(false));
        set_default(obj, &["spec", "podReplacementPolicy"], json!("TerminatingOrFailed"));
        // Generate the selector from the job's uid, as kube-apiserver does.
        let manual = obj.pointer("/spec/manualSelector").and_then(Value::as_bool).unwrap_or(false);
        let uid = str_at(obj, "/metadata/uid").to_string();
        let name = meta::name(obj).to_string();
        if !manual && !uid.is_empty() && obj.pointer("/spec/selector").is_none_or(Value::is_null) {
            obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
            set_default(obj, &["spec", "template", "metadata", "labels"], json!({}));
            if let Some(l) = obj.pointer_mut("/spec/template/metadata/labels").and_then(Value::as_object_mut) {
                l.insert("batch.kubernetes.io/controller-uid".into(), json!(uid));
                l.insert("batch.kubernetes.io/job-name".into(), json!(name));
                l.insert("controller-uid".into(), json!(uid));
                l.insert("job-name".into(), json!(name));
            }
        }
        if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
            default_pod_spec(spec);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = vec![];
        match obj.pointer("/spec/template/spec") {
            Some(spec) => {
                validate_pod_spec(spec, "spec.template.spec", &mut causes);
                let rp = str_at(spec, "/restartPolicy");
                if rp != "Never" && rp != "OnFailure" {
                    causes.push(Cause::not_supported("spec.template.spec.restartPolicy", rp, &["OnFailure", "Never"]));
                }
            }
            None => causes.push(Cause::required("spec.template.spec.containers")),
        }
        causes
    }
    fn validate_update(&self, obj: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(obj);
        if obj.pointer("/spec/selector") != old.pointer("/spec/selector") {
            causes.push(Cause::immutable("spec.selector"));
        }
        let strip = |v: Option<&Value>| {
            let mut t = v.cloned().unwrap_or_default();
            if let Some(m) = t.pointer_mut("/spec").and_then(Value::as_object_mut) {
                for f in ["nodeSelector", "tolerations", "schedulingGates"] {
                    m.remove(f);
                }
            }
            t
        };
        if strip(obj.pointer("/spec/template")) != strip(old.pointer("/spec/template")) {
            causes.push(Cause::immutable("spec.template"));
        }
        causes
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn field_labels(&self) -> &'static [FieldLabel] {
        const { &[FieldLabel { path: "status.successful", zero: "0" }] }
    }
    fn unsupported_field_label(&self, field: &str) -> String {
        format!("field label \"{field}\" not supported for Job")
    }
}

/// The name rule for a resource's objects: (DNS label?).
pub fn name_causes(strategy: &dyn Strategy, name: &str) -> Vec<Cause> {
    let mut c = vec![];
    check_name("metadata.name", name, strategy.name_is_dns_label(), &mut c);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_defaults_and_qos() {
        let s = PodStrategy;
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        s.prepare_for_create(&mut pod);
        s.default(&mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
        assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
        assert!(s.validate(&pod).is_empty());
    }

    #[test]
    fn pod_without_containers_is_invalid() {
        let causes = PodStrategy.validate(&json!({"spec": {"restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}}));
        assert_eq!(causes[0].field, "spec.containers");
    }

    #[test]
    fn deployment_selector_must_match_template() {
        let mut d = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        WorkloadStrategy::Deployment.default(&mut d);
        let causes = WorkloadStrategy::Deployment.validate(&d);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
    }

    #[test]
    fn node_allocatable_defaults_to_capacity() {
        let mut n = json!({"status": {"capacity": {"cpu": "2"}}});
        NodeStrategy.default(&mut n);
        assert_eq!(n["status"]["allocatable"]["cpu"], "2");
    }

    #[test]
    fn secret_string_data_folds_into_data() {
        let mut s = json!({"stringData": {"k": "v"}});
        SecretStrategy.default(&mut s);
        assert_eq!(s["data"]["k"], "dg==");
        assert!(s.get("stringData").is_none());
    }
}
