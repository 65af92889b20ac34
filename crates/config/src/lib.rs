//! vkube-config: vCluster's `vcluster.yaml`, as far as vkube implements it.
//!
//! Start with [`VClusterConfig::parse`]. Every key is checked against the schema vkube
//! knows: an unknown key or a wrong type is an error naming the file, line and full
//! path (`vcluster.yaml:7: sync.fromHost.nodes.syncBackChange: unknown key (did you
//! mean syncBackChanges?)`); a key vCluster has that vkube does not implement yet is
//! reported in [`Parsed::not_implemented`], never silently ignored.

use serde_json::Value;
use std::collections::BTreeMap;

/// A bad vcluster.yaml.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not YAML.
    #[error("{file}: {message}")]
    Syntax {
        /// File name.
        file: String,
        /// The parser's message.
        message: String,
    },
    /// One or more keys are wrong.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bool,
    Str,
    StrList,
    StrMap,
    /// A bool, or the string `auto`.
    BoolOrAuto,
    /// Quantities by resource name: strings or numbers (`cpu: 1`, `memory: 512Mi`),
    /// `null` to drop a default.
    QuantityMap,
    /// A list of maps (label selector requirements).
    MapList,
    /// One of a few strings.
    OneOf(&'static [&'static str]),
}

enum Node {
    Leaf(Ty),
    Map(Vec<(&'static str, Node)>),
    /// A key vCluster has and vkube does not implement.
    NotImplemented,
}

use Node::{Leaf, Map, NotImplemented};

fn enabled() -> Vec<(&'static str, Node)> {
    vec![("enabled", Leaf(Ty::Bool))]
}

/// `sync.fromHost.{ingress,runtime,priority}Classes`: on/off and which host objects.
fn from_host_class() -> Node {
    Map(vec![
        ("enabled", Leaf(Ty::Bool)),
        ("selector", Map(vec![("matchLabels", Leaf(Ty::StrMap)), ("matchExpressions", Leaf(Ty::MapList))])),
        ("patches", NotImplemented),
    ])
}

fn schema() -> Node {
    let to_host = |extra: Vec<(&'static str, Node)>| {
        let mut v = enabled();
        v.extend(extra);
        Map(v)
    };
    Map(vec![
        (
            "controlPlane",
            Map(vec![
                ("advanced", Map(vec![("virtualScheduler", Map(enabled()))])),
                (
                    "distro",
                    Map(vec![
                        (
                            "k8s",
                            Map(vec![
                                ("enabled", Leaf(Ty::Bool)),
                                ("scheduler", Map(enabled())),
                                ("version", NotImplemented),
                                ("image", NotImplemented),
                            ]),
                        ),
                        ("k3s", NotImplemented),
                        ("k0s", NotImplemented),
                    ]),
                ),
                (
                    "backingStore",
                    Map(vec![
                        ("database", Map(vec![("embedded", Map(enabled())), ("external", NotImplemented)])),
                        (
                            "etcd",
                            Map(vec![
                                ("embedded", NotImplemented),
                                ("deploy", NotImplemented),
                                (
                                    "external",
                                    Map(vec![
                                        ("enabled", Leaf(Ty::Bool)),
                                        ("endpoint", Leaf(Ty::Str)),
                                        ("endpoints", Leaf(Ty::StrList)),
                                        ("prefix", Leaf(Ty::Str)),
                                        (
                                            "tls",
                                            Map(vec![
                                                ("caFile", Leaf(Ty::Str)),
                                                ("certFile", Leaf(Ty::Str)),
                                                ("keyFile", Leaf(Ty::Str)),
                                            ]),
                                        ),
                                    ]),
                                ),
                            ]),
                        ),
                    ]),
                ),
                ("statefulSet", NotImplemented),
                ("service", NotImplemented),
                ("ingress", NotImplemented),
                ("coredns", NotImplemented),
                ("proxy", NotImplemented),
                ("hostPathMapper", NotImplemented),
                ("serviceMonitor", NotImplemented),
            ]),
        ),
        (
            "sync",
            Map(vec![
                (
                    "toHost",
                    Map(vec![
                        (
                            "pods",
                            to_host(vec![
                                ("enforceTolerations", Leaf(Ty::StrList)),
                                ("translateImage", NotImplemented),
                                ("useSecretsForSATokens", NotImplemented),
                                ("rewriteHosts", NotImplemented),
                                ("patches", NotImplemented),
                            ]),
                        ),
                        ("services", to_host(vec![])),
                        ("endpoints", to_host(vec![])),
                        ("configMaps", to_host(vec![("all", Leaf(Ty::Bool))])),
                        ("secrets", to_host(vec![("all", Leaf(Ty::Bool))])),
                        ("persistentVolumeClaims", to_host(vec![])),
                        ("serviceAccounts", to_host(vec![])),
                        ("ingresses", to_host(vec![])),
                        ("persistentVolumes", NotImplemented),
                        ("storageClasses", NotImplemented),
                        ("priorityClasses", NotImplemented),
                        ("networkPolicies", NotImplemented),
                        ("podDisruptionBudgets", NotImplemented),
                        ("volumeSnapshots", NotImplemented),
                        ("volumeSnapshotContents", NotImplemented),
                        ("customResources", NotImplemented),
                    ]),
                ),
                (
                    "fromHost",
                    Map(vec![
                        (
                            "nodes",
                            Map(vec![
                                ("enabled", Leaf(Ty::Bool)),
                                ("syncBackChanges", Leaf(Ty::Bool)),
                                ("clearImageStatus", Leaf(Ty::Bool)),
                                ("selector", Map(vec![("all", Leaf(Ty::Bool)), ("labels", Leaf(Ty::StrMap))])),
                                ("hideImages", NotImplemented),
                            ]),
                        ),
                        ("events", Map(enabled())),
                        ("storageClasses", Map(vec![("enabled", Leaf(Ty::BoolOrAuto))])),
                        ("ingressClasses", from_host_class()),
                        ("runtimeClasses", from_host_class()),
                        ("priorityClasses", from_host_class()),
                        ("csiDrivers", NotImplemented),
                        ("csiNodes", NotImplemented),
                        ("csiStorageCapacities", NotImplemented),
                        ("customResources", NotImplemented),
                        ("volumeSnapshotClasses", NotImplemented),
                    ]),
                ),
            ]),
        ),
        ("networking", NotImplemented),
        (
            "policies",
            Map(vec![
                (
                    "resourceQuota",
                    Map(vec![
                        ("enabled", Leaf(Ty::BoolOrAuto)),
                        ("labels", Leaf(Ty::StrMap)),
                        ("annotations", Leaf(Ty::StrMap)),
                        ("quota", Leaf(Ty::QuantityMap)),
                        ("scopeSelector", Map(vec![("matchExpressions", Leaf(Ty::MapList))])),
                        ("scopes", Leaf(Ty::StrList)),
                    ]),
                ),
                (
                    "limitRange",
                    Map(vec![
                        ("enabled", Leaf(Ty::BoolOrAuto)),
                        ("labels", Leaf(Ty::StrMap)),
                        ("annotations", Leaf(Ty::StrMap)),
                        ("default", Leaf(Ty::QuantityMap)),
                        ("defaultRequest", Leaf(Ty::QuantityMap)),
                        ("min", Leaf(Ty::QuantityMap)),
                        ("max", Leaf(Ty::QuantityMap)),
                        ("maxLimitRequestRatio", Leaf(Ty::QuantityMap)),
                    ]),
                ),
                ("podSecurityStandard", Leaf(Ty::OneOf(&["", "privileged", "baseline", "restricted"]))),
                ("networkPolicy", NotImplemented),
                ("centralAdmission", NotImplemented),
            ]),
        ),
        ("rbac", NotImplemented),
        ("exportKubeConfig", NotImplemented),
        ("telemetry", NotImplemented),
        ("experimental", NotImplemented),
        ("plugins", NotImplemented),
        ("integrations", NotImplemented),
        ("deploy", NotImplemented),
        ("logging", NotImplemented),
        ("external", NotImplemented),
        ("pro", NotImplemented),
        ("sleepMode", NotImplemented),
    ])
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The line (1-based) of a key path in block-style YAML text, found by indentation.
fn line_of(text: &str, path: &[String]) -> usize {
    let mut line_no = 0;
    let mut min_indent: i64 = -1;
    let lines: Vec<&str> = text.lines().collect();
    for key in path {
        let mut found = None;
        for (i, l) in lines.iter().enumerate().skip(line_no) {
            let trimmed = l.trim_start();
            let indent = (l.len() - trimmed.len()) as i64;
            if trimmed.starts_with('#') || trimmed.is_empty() {
                continue;
            }
            if indent <= min_indent && i > line_no {
                break;
            }
            let unquoted = trimmed.trim_start_matches("- ");
            if unquoted.starts_with(&format!("{key}:"))
                || unquoted.starts_with(&format!("\"{key}\":"))
                || unquoted.contains(&format!(" {key}:"))
                || unquoted.contains(&format!("{{{key}:"))
            {
                found = Some((i, indent));
                break;
            }
        }
        match found {
            Some((i, indent)) => {
                line_no = i;
                min_indent = indent;
            }
            None => break,
        }
    }
    line_no + 1
}

fn type_ok(ty: Ty, v: &Value) -> bool {
    match ty {
        Ty::Bool => v.is_boolean(),
        Ty::Str => v.is_string(),
        Ty::StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        Ty::StrMap => v.as_object().is_some_and(|m| m.values().all(|x| x.is_string())),
        Ty::BoolOrAuto => v.is_boolean() || v.as_str() == Some("auto"),
        Ty::QuantityMap => {
            v.as_object().is_some_and(|m| m.values().all(|x| x.is_string() || x.is_number() || x.is_null()))
        }
        Ty::MapList => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
        Ty::OneOf(options) => v.as_str().is_some_and(|s| options.contains(&s)),
    }
}

fn type_name(ty: Ty) -> String {
    match ty {
        Ty::Bool => "a boolean".into(),
        Ty::Str => "a string".into(),
        Ty::StrList => "a list of strings".into(),
        Ty::StrMap => "a map of strings".into(),
        Ty::BoolOrAuto => "a boolean or \"auto\"".into(),
        Ty::QuantityMap => "a map of quantities".into(),
        Ty::MapList => "a list of maps".into(),
        Ty::OneOf(options) => {
            let quoted: Vec<String> = options.iter().map(|o| format!("{o:?}")).collect();
            format!("one of {}", quoted.join(", "))
        }
    }
}

fn check(
    file: &str,
    text: &str,
    node: &Node,
    v: &Value,
    path: &mut Vec<String>,
    errors: &mut Vec<String>,
    unimplemented: &mut Vec<String>,
) {
    let at = |path: &[String]| format!("{file}:{}: {}", line_of(text, path), path.join("."));
    match node {
        NotImplemented => {
            unimplemented.push(format!("{}: not implemented by vkube yet (a vCluster key; it is ignored)", at(path)))
        }
        Leaf(ty) => {
            if !v.is_null() && !type_ok(*ty, v) {
                errors.push(format!("{}: expected {}, got {}", at(path), type_name(*ty), short(v)));
            }
        }
        Map(children) => {
            if v.is_null() {
                return;
            }
            let Some(m) = v.as_object() else {
                errors.push(format!("{}: expected a map, got {}", at(path), short(v)));
                return;
            };
            for (k, child) in m {
                path.push(k.clone());
                match children.iter().find(|(name, _)| name == k) {
                    Some((_, n)) => check(file, text, n, child, path, errors, unimplemented),
                    None => {
                        let best = children.iter().map(|(name, _)| (edit_distance(name, k), *name)).min();
                        let hint = match best {
                            Some((d, name)) if d <= 3 => format!(" (did you mean {name}?)"),
                            _ => String::new(),
                        };
                        errors.push(format!("{}: unknown key{hint}", at(path)));
                    }
                }
                path.pop();
            }
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 { format!("{}...", &s[..40]) } else { s }
}

/// The settings vkube acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct VClusterConfig {
    /// `controlPlane.advanced.virtualScheduler.enabled` (or `controlPlane.distro.k8s.scheduler.enabled`).
    pub virtual_scheduler: bool,
    /// `sync.fromHost.nodes.enabled`.
    pub sync_nodes: bool,
    /// `sync.fromHost.nodes.syncBackChanges`.
    pub sync_back_changes: bool,
    /// `sync.fromHost.nodes.clearImageStatus`.
    pub clear_image_status: bool,
    /// `sync.fromHost.nodes.selector.all`.
    pub node_selector_all: bool,
    /// `sync.fromHost.nodes.selector.labels`.
    pub node_selector_labels: BTreeMap<String, String>,
    /// `sync.fromHost.events.enabled`.
    pub sync_events: bool,
    /// `sync.fromHost.storageClasses.enabled` (`auto`: when the virtual scheduler is on).
    pub sync_storage_classes: bool,
    /// `sync.fromHost.{ingressClasses, runtimeClasses, priorityClasses}` that are on, by
    /// key, with their `selector` (a label selector; `null` for every host object).
    pub from_host_classes: BTreeMap<String, Value>,
    /// `sync.toHost.*.enabled`, by resource.
    pub to_host: BTreeMap<String, bool>,
    /// `sync.toHost.configMaps.all`.
    pub all_config_maps: bool,
    /// `sync.toHost.secrets.all`.
    pub all_secrets: bool,
    /// `sync.toHost.pods.enforceTolerations` (`key=value:Effect` or `key:Effect`).
    pub enforce_tolerations: Vec<String>,
    /// `controlPlane.backingStore.etcd.external` endpoints (empty: embedded SQLite).
    pub etcd_endpoints: Vec<String>,
    /// `controlPlane.backingStore.etcd.external.prefix`: the key prefix (default `/vkube/NAME`).
    pub etcd_prefix: Option<String>,
    /// `controlPlane.backingStore.etcd.external.tls.{caFile, certFile, keyFile}`.
    pub etcd_tls: EtcdTls,
    /// `policies.resourceQuota`: the ResourceQuota `vc-NAME` in the host namespace, if
    /// deployed.
    pub resource_quota: Option<QuotaPolicy>,
    /// `policies.limitRange`: the LimitRange `vc-NAME` in the host namespace, if deployed.
    pub limit_range: Option<LimitRangePolicy>,
    /// `policies.podSecurityStandard`: the level every virtual namespace enforces and
    /// warns at.
    pub pod_security_standard: Option<String>,
}

/// The host ResourceQuota of a virtual cluster (vCluster's `policies.resourceQuota`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaPolicy {
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// `spec.hard`: vCluster's defaults with the file's keys over them.
    pub hard: BTreeMap<String, String>,
    /// `spec.scopeSelector.matchExpressions`.
    pub scope_selector: Vec<Value>,
    /// `spec.scopes`.
    pub scopes: Vec<String>,
}

/// The host LimitRange of a virtual cluster (vCluster's `policies.limitRange`), one
/// `Container` limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitRangePolicy {
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// `default` (limits): vCluster's defaults with the file's keys over them.
    pub default: BTreeMap<String, String>,
    /// `defaultRequest`, likewise.
    pub default_request: BTreeMap<String, String>,
    /// `min`.
    pub min: BTreeMap<String, String>,
    /// `max`.
    pub max: BTreeMap<String, String>,
    /// `maxLimitRequestRatio`.
    pub max_limit_request_ratio: BTreeMap<String, String>,
}

/// vCluster's default `policies.resourceQuota.quota`.
pub const DEFAULT_QUOTA: [(&str, &str); 15] = [
    ("requests.cpu", "10"),
    ("requests.memory", "20Gi"),
    ("requests.storage", "100Gi"),
    ("requests.ephemeral-storage", "60Gi"),
    ("limits.cpu", "20"),
    ("limits.memory", "40Gi"),
    ("limits.ephemeral-storage", "160Gi"),
    ("services.nodeports", "0"),
    ("services.loadbalancers", "1"),
    ("count/endpoints", "40"),
    ("count/pods", "20"),
    ("count/services", "20"),
    ("count/secrets", "100"),
    ("count/configmaps", "100"),
    ("count/persistentvolumeclaims", "20"),
];
/// vCluster's default `policies.limitRange.default`.
pub const DEFAULT_LIMITS: [(&str, &str); 3] = [("ephemeral-storage", "8Gi"), ("memory", "512Mi"), ("cpu", "1")];
/// vCluster's default `policies.limitRange.defaultRequest`.
pub const DEFAULT_REQUESTS: [(&str, &str); 3] = [("ephemeral-storage", "3Gi"), ("memory", "128Mi"), ("cpu", "100m")];

/// `defaults` with the map at `ptr` in `v` over them, as Helm merges values: a key set
/// to `null` is dropped, numbers become their text.
fn merged(v: &Value, ptr: &str, defaults: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = defaults.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (k, x) in v.pointer(ptr).and_then(Value::as_object).into_iter().flatten() {
        match x {
            Value::Null => {
                out.remove(k);
            }
            Value::String(s) => {
                out.insert(k.clone(), s.clone());
            }
            other => {
                out.insert(k.clone(), other.to_string());
            }
        }
    }
    out
}

fn strings(v: &Value, ptr: &str) -> BTreeMap<String, String> {
    v.pointer(ptr)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, x)| x.as_str().map(|s| (k.clone(), s.to_string())))
        .collect()
}

/// TLS files for etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA bundle of the members' serving certificates.
    pub ca_file: Option<String>,
    /// Client certificate.
    pub cert_file: Option<String>,
    /// Client certificate key.
    pub key_file: Option<String>,
}

impl VClusterConfig {
    /// The node selector every host pod gets: `sync.fromHost.nodes.selector.labels` when
    /// nodes are synced and the host scheduler places pods (vCluster's
    /// `EnforceNodeSelector`); with the virtual scheduler, pods arrive bound instead.
    pub fn enforced_node_selector(&self) -> Option<&BTreeMap<String, String>> {
        (self.sync_nodes && !self.virtual_scheduler && !self.node_selector_labels.is_empty())
            .then_some(&self.node_selector_labels)
    }
}

impl Default for VClusterConfig {
    fn default() -> Self {
        // vCluster's defaults.
        let to_host = [
            ("pods", true),
            ("services", true),
            ("endpoints", true),
            ("configMaps", true),
            ("secrets", true),
            ("persistentVolumeClaims", true),
            ("serviceAccounts", false),
            ("ingresses", false),
        ];
        VClusterConfig {
            virtual_scheduler: false,
            sync_nodes: false,
            sync_back_changes: false,
            clear_image_status: false,
            node_selector_all: false,
            node_selector_labels: BTreeMap::new(),
            sync_events: true,
            sync_storage_classes: false,
            from_host_classes: BTreeMap::new(),
            to_host: to_host.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            all_config_maps: false,
            all_secrets: false,
            enforce_tolerations: vec![],
            etcd_endpoints: vec![],
            etcd_prefix: None,
            etcd_tls: EtcdTls::default(),
            resource_quota: None,
            limit_range: None,
            pod_security_standard: None,
        }
    }
}

/// The result of parsing.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The settings.
    pub config: VClusterConfig,
    /// vCluster keys present in the file that vkube ignores, with their lines.
    pub not_implemented: Vec<String>,
}

impl VClusterConfig {
    /// Whether a `sync.toHost` resource is synced.
    pub fn syncs(&self, resource: &str) -> bool {
        self.to_host.get(resource).copied().unwrap_or(false)
    }

    /// Parse and validate a vcluster.yaml; `file` names it in messages.
    ///
    /// # Errors
    /// Syntax errors, unknown keys and wrong types, each with its line and path.
    pub fn parse(file: &str, text: &str) -> Result<Parsed, ConfigError> {
        let v: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_saphyr::from_str(text)
                .map_err(|e| ConfigError::Syntax { file: file.into(), message: e.to_string() })?
        };
        let mut errors = Vec::new();
        let mut not_implemented = Vec::new();
        check(file, text, &schema(), &v, &mut Vec::new(), &mut errors, &mut not_implemented);
        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors));
        }
        let b = |p: &str| v.pointer(p).and_then(Value::as_bool);
        let mut c = VClusterConfig { virtual_scheduler: false, ..Default::default() };
        c.virtual_scheduler = b("/controlPlane/advanced/virtualScheduler/enabled")
            .or(b("/controlPlane/distro/k8s/scheduler/enabled"))
            .unwrap_or(false);
        c.sync_nodes = b("/sync/fromHost/nodes/enabled").unwrap_or(false);
        c.sync_back_changes = b("/sync/fromHost/nodes/syncBackChanges").unwrap_or(false);
        c.clear_image_status = b("/sync/fromHost/nodes/clearImageStatus").unwrap_or(false);
        c.node_selector_all = b("/sync/fromHost/nodes/selector/all").unwrap_or(false);
        if let Some(m) = v.pointer("/sync/fromHost/nodes/selector/labels").and_then(Value::as_object) {
            c.node_selector_labels =
                m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect();
        }
        c.sync_events = b("/sync/fromHost/events/enabled").unwrap_or(true);
        c.sync_storage_classes = match v.pointer("/sync/fromHost/storageClasses/enabled") {
            Some(Value::Bool(x)) => *x,
            _ => c.virtual_scheduler,
        };
        for key in ["ingressClasses", "runtimeClasses", "priorityClasses"] {
            if b(&format!("/sync/fromHost/{key}/enabled")) == Some(true) {
                let selector = v.pointer(&format!("/sync/fromHost/{key}/selector")).cloned().unwrap_or(Value::Null);
                c.from_host_classes.insert(key.to_string(), selector);
            }
        }
        let resources: Vec<String> = c.to_host.keys().cloned().collect();
        for r in resources {
            if let Some(e) = b(&format!("/sync/toHost/{r}/enabled")) {
                c.to_host.insert(r, e);
            }
        }
        c.all_config_maps = b("/sync/toHost/configMaps/all").unwrap_or(false);
        c.all_secrets = b("/sync/toHost/secrets/all").unwrap_or(false);
        c.enforce_tolerations = v
            .pointer("/sync/toHost/pods/enforceTolerations")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
            .unwrap_or_default();
        if b("/controlPlane/backingStore/etcd/external/enabled") == Some(true) {
            let mut eps: Vec<String> = v
                .pointer("/controlPlane/backingStore/etcd/external/endpoints")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                .unwrap_or_default();
            if let Some(e) = v.pointer("/controlPlane/backingStore/etcd/external/endpoint").and_then(Value::as_str) {
                eps.push(e.to_string());
            }
            c.etcd_endpoints = eps;
            let s = |p: &str| {
                v.pointer(&format!("/controlPlane/backingStore/etcd/external/{p}"))
                    .and_then(Value::as_str)
                    .map(String::from)
            };
            c.etcd_prefix = s("prefix");
            c.etcd_tls = EtcdTls { ca_file: s("tls/caFile"), cert_file: s("tls/certFile"), key_file: s("tls/keyFile") };
        }
        // vCluster's chart: each is deployed when either is `true` and it is not `false`
        // (`auto` follows the other).
        let enabled = |p: &str| match v.pointer(p) {
            Some(Value::Bool(true)) => Some(true),
            Some(Value::Bool(false)) => Some(false),
            _ => None,
        };
        let (quota_on, limits_on) =
            (enabled("/policies/resourceQuota/enabled"), enabled("/policies/limitRange/enabled"));
        let either = quota_on == Some(true) || limits_on == Some(true);
        if either && quota_on != Some(false) {
            c.resource_quota = Some(QuotaPolicy {
                labels: strings(&v, "/policies/resourceQuota/labels"),
                annotations: strings(&v, "/policies/resourceQuota/annotations"),
                hard: merged(&v, "/policies/resourceQuota/quota", &DEFAULT_QUOTA),
                scope_selector: v
                    .pointer("/policies/resourceQuota/scopeSelector/matchExpressions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                scopes: v
                    .pointer("/policies/resourceQuota/scopes")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                    .unwrap_or_default(),
            });
        }
        if either && limits_on != Some(false) {
            c.limit_range = Some(LimitRangePolicy {
                labels: strings(&v, "/policies/limitRange/labels"),
                annotations: strings(&v, "/policies/limitRange/annotations"),
                default: merged(&v, "/policies/limitRange/default", &DEFAULT_LIMITS),
                default_request: merged(&v, "/policies/limitRange/defaultRequest", &DEFAULT_REQUESTS),
                min: merged(&v, "/policies/limitRange/min", &[]),
                max: merged(&v, "/policies/limitRange/max", &[]),
                max_limit_request_ratio: merged(&v, "/policies/limitRange/maxLimitRequestRatio", &[]),
            });
        }
        c.pod_security_standard = v
            .pointer("/policies/podSecurityStandard")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from);
        Ok(Parsed { config: c, not_implemented })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_vcluster() {
        let p = VClusterConfig::parse("vcluster.yaml", "").expect("empty is fine");
        assert!(p.config.syncs("pods") && p.config.syncs("configMaps") && !p.config.syncs("ingresses"));
        assert!(!p.config.virtual_scheduler && !p.config.sync_back_changes);
    }

    #[test]
    fn reads_the_node_modes_and_both_scheduler_keys() {
        let text = "controlPlane:\n  advanced:\n    virtualScheduler:\n      enabled: true\nsync:\n  fromHost:\n    nodes:\n      enabled: true\n      syncBackChanges: true\n      selector:\n        labels:\n          pool: a\n";
        let p = VClusterConfig::parse("vcluster.yaml", text).expect("parses");
        assert!(p.config.virtual_scheduler && p.config.sync_nodes && p.config.sync_back_changes);
        assert_eq!(p.config.node_selector_labels.get("pool").map(String::as_str), Some("a"));
        let newer = VClusterConfig::parse(
            "v.yaml",
            "controlPlane:\n  distro:\n    k8s:\n      scheduler:\n        enabled: true\n",
        )
        .expect("parses");
        assert!(newer.config.virtual_scheduler);
    }

    #[test]
    fn unknown_keys_name_line_and_suggest() {
        let text =
            "sync:\n  fromHost:\n    nodes:\n      enabled: true\n\n      # comment\n      syncBackChange: true\n";
        let err = VClusterConfig::parse("vcluster.yaml", text).expect_err("unknown key");
        assert_eq!(
            err.to_string(),
            "vcluster.yaml:7: sync.fromHost.nodes.syncBackChange: unknown key (did you mean syncBackChanges?)"
        );
        let err = VClusterConfig::parse("vcluster.yaml", "sync:\n  toHost:\n    pods:\n      enabled: yes please\n")
            .expect_err("wrong type");
        assert!(err.to_string().starts_with("vcluster.yaml:4: sync.toHost.pods.enabled: expected a boolean"), "{err}");
    }

    #[test]
    fn vcluster_keys_vkube_lacks_are_reported() {
        let p = VClusterConfig::parse(
            "vcluster.yaml",
            "networking:\n  replicateServices: {}\nsync:\n  toHost:\n    priorityClasses:\n      enabled: true\n",
        )
        .expect("parses");
        assert_eq!(p.not_implemented.len(), 2);
        assert!(
            p.not_implemented[1].starts_with("vcluster.yaml:5: sync.toHost.priorityClasses: not implemented"),
            "{:?}",
            p.not_implemented
        );
    }

    #[test]
    fn policies_follow_vclusters_chart() {
        let off = VClusterConfig::parse("vcluster.yaml", "").expect("parses").config;
        assert!(off.resource_quota.is_none() && off.limit_range.is_none() && off.pod_security_standard.is_none());
        // `auto` follows the other; the file's quota keys go over vCluster's defaults.
        let text = "policies:\n  podSecurityStandard: baseline\n  resourceQuota:\n    enabled: true\n    quota:\n      count/pods: 3\n      services.nodeports: 6\n      count/secrets: null\n";
        let c = VClusterConfig::parse("vcluster.yaml", text).expect("parses").config;
        let quota = c.resource_quota.expect("quota on");
        assert_eq!(quota.hard.get("count/pods").map(String::as_str), Some("3"));
        assert_eq!(quota.hard.get("services.nodeports").map(String::as_str), Some("6"));
        assert_eq!(quota.hard.get("requests.cpu").map(String::as_str), Some("10"));
        assert!(!quota.hard.contains_key("count/secrets"));
        let limits = c.limit_range.expect("auto follows the quota");
        assert_eq!(limits.default.get("cpu").map(String::as_str), Some("1"));
        assert_eq!(limits.default_request.get("memory").map(String::as_str), Some("128Mi"));
        assert_eq!(c.pod_security_standard.as_deref(), Some("baseline"));
        let only_limits = "policies:\n  resourceQuota:\n    enabled: false\n  limitRange:\n    enabled: true\n";
        let c = VClusterConfig::parse("vcluster.yaml", only_limits).expect("parses").config;
        assert!(c.resource_quota.is_none() && c.limit_range.is_some());
        let err = VClusterConfig::parse("vcluster.yaml", "policies:\n  podSecurityStandard: strict\n")
            .expect_err("not a level");
        assert_eq!(
            err.to_string(),
            "vcluster.yaml:2: policies.podSecurityStandard: expected one of \"\", \"privileged\", \"baseline\", \"restricted\", got \"strict\""
        );
    }

    #[test]
    fn reads_the_external_etcd() {
        let text = "controlPlane:\n  backingStore:\n    etcd:\n      external:\n        enabled: true\n        endpoint: https://e0:2379\n        prefix: /tenants/a\n        tls:\n          caFile: /pki/ca.crt\n          certFile: /pki/c.crt\n          keyFile: /pki/c.key\n";
        let c = VClusterConfig::parse("vcluster.yaml", text).expect("parses").config;
        assert_eq!(c.etcd_endpoints, ["https://e0:2379"]);
        assert_eq!(c.etcd_prefix.as_deref(), Some("/tenants/a"));
        assert_eq!(c.etcd_tls.ca_file.as_deref(), Some("/pki/ca.crt"));
        assert_eq!(c.etcd_tls.key_file.as_deref(), Some("/pki/c.key"));
        let off = text.replace("enabled: true", "enabled: false");
        assert!(VClusterConfig::parse("vcluster.yaml", &off).expect("parses").config.etcd_endpoints.is_empty());
    }
}
