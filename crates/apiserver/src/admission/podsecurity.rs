//! kube-apiserver's PodSecurity admission (the Pod Security Standards): a namespace's
//! `pod-security.kubernetes.io/enforce|warn` labels (`privileged`, `baseline`,
//! `restricted`; `-version` accepted, every version judged as `latest`) refuse new pods
//! that violate the enforced level (403) and warn about those that violate the warned
//! level — for workload templates (deployments, jobs, …) too —, with kube's check
//! names and details in kube's order. Setting an enforce level on a namespace warns
//! about the pods already there that violate it; an unknown level is invalid (422).
//! `audit` is accepted and, without an audit log, does nothing.

use super::{Admission, AdmissionOutcome, AdmissionRequest, Operation};
use crate::registry::{ListParams, Registry};
use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use vkube_core::status::{ApiError, Cause, GroupResource};

const PREFIX: &str = "pod-security.kubernetes.io/";

/// The PodSecurity admission plugin.
pub struct PodSecurityAdmission {
    /// Where namespaces and their pods are read.
    pub registry: Arc<Registry>,
}

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Anything goes.
    Privileged,
    /// Known privilege escalations are refused.
    Baseline,
    /// Hardened pods only.
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

fn valid_version(v: &str) -> bool {
    v == "latest"
        || v.strip_prefix("v1.").is_some_and(|minor| !minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit()))
}

/// The invalid pod-security labels of a namespace.
pub fn label_causes(labels: &BTreeMap<String, String>) -> Vec<Cause> {
    let mut causes = Vec::new();
    for mode in ["enforce", "warn", "audit"] {
        let key = format!("{PREFIX}{mode}");
        if let Some(v) = labels.get(&key)
            && Level::parse(v).is_none()
        {
            causes.push(Cause::invalid(
                format!("metadata.labels[{key}]"),
                v,
                "must be one of privileged, baseline, restricted",
            ));
        }
        let vkey = format!("{key}-version");
        if let Some(v) = labels.get(&vkey)
            && !valid_version(v)
        {
            causes.push(Cause::invalid(format!("metadata.labels[{vkey}]"), v, "must be \"latest\" or \"v1.x\""));
        }
    }
    causes
}

fn level_of(labels: &BTreeMap<String, String>, mode: &str) -> (Level, String) {
    let level = labels.get(&format!("{PREFIX}{mode}")).and_then(|v| Level::parse(v)).unwrap_or(Level::Privileged);
    let version = labels.get(&format!("{PREFIX}{mode}-version")).cloned().unwrap_or_else(|| "latest".into());
    (level, version)
}

fn quote_all(names: &[String]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

fn plural<'a>(one: &'a str, many: &'a str, n: usize) -> &'a str {
    if n == 1 { one } else { many }
}

/// Every container of a pod spec (init, main, ephemeral) with its name.
fn containers(spec: &Value) -> Vec<(&str, &Value)> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| spec.get(*f).and_then(Value::as_array).into_iter().flatten())
        .map(|c| (c.get("name").and_then(Value::as_str).unwrap_or_default(), c))
        .collect()
}

fn sc<'a>(c: &'a Value, field: &str) -> Option<&'a Value> {
    c.get("securityContext").and_then(|s| s.get(field))
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// One violated check: its name and the details.
type Violation = (&'static str, String);

fn added_caps(c: &Value) -> Vec<String> {
    sc(c, "capabilities")
        .and_then(|k| k.get("add"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

/// The checks of `level` a pod spec (with the pod's metadata) fails, in kube's order.
pub fn violations(level: Level, meta: &Value, spec: &Value) -> Vec<Violation> {
    if level == Level::Privileged {
        return vec![];
    }
    let restricted = level == Level::Restricted;
    let all = containers(spec);
    let mut out: Vec<Violation> = Vec::new();
    // AppArmor: the annotations and fields that ask for no profile.
    let mut apparmor = Vec::new();
    for (k, v) in meta.get("annotations").and_then(Value::as_object).into_iter().flatten() {
        if k.starts_with("container.apparmor.security.beta.kubernetes.io/") {
            let v = v.as_str().unwrap_or_default();
            if !(v.is_empty() || v == "runtime/default" || v.starts_with("localhost/")) {
                apparmor.push(format!("{k}={v:?}"));
            }
        }
    }
    if spec.pointer("/securityContext/appArmorProfile/type").and_then(Value::as_str) == Some("Unconfined") {
        apparmor.push("pod must not set securityContext.appArmorProfile.type to \"Unconfined\"".into());
    }
    for (name, c) in &all {
        if sc(c, "appArmorProfile").and_then(|p| p.get("type")).and_then(Value::as_str) == Some("Unconfined") {
            apparmor.push(format!(
                "container {name:?} must not set securityContext.appArmorProfile.type to \"Unconfined\""
            ));
        }
    }
    if !apparmor.is_empty() {
        out.push(("forbidden AppArmor profile", apparmor.join(", ")));
    }
    if !restricted {
        let mut parts = Vec::new();
        for (name, c) in &all {
            let bad: Vec<String> =
                added_caps(c).into_iter().filter(|k| !BASELINE_CAPABILITIES.contains(&k.as_str())).collect();
            if !bad.is_empty() {
                parts.push(format!(
                    "container {name:?} must not include {} in securityContext.capabilities.add",
                    quote_all(&sorted(bad))
                ));
            }
        }
        if !parts.is_empty() {
            out.push(("non-default capabilities", parts.join("; ")));
        }
    }
    let hosts: Vec<&str> =
        [("hostNetwork", "hostNetwork=true"), ("hostPID", "hostPID=true"), ("hostIPC", "hostIPC=true")]
            .iter()
            .filter(|(f, _)| spec.get(*f).and_then(Value::as_bool) == Some(true))
            .map(|(_, s)| *s)
            .collect();
    if !hosts.is_empty() {
        out.push(("host namespaces", hosts.join(", ")));
    }
    let volumes: Vec<&Value> = spec.get("volumes").and_then(Value::as_array).into_iter().flatten().collect();
    let volume_name = |v: &Value| v.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    if !restricted {
        let host_paths: Vec<String> =
            volumes.iter().filter(|v| v.get("hostPath").is_some()).map(|v| volume_name(v)).collect();
        if !host_paths.is_empty() {
            out.push((
                "hostPath volumes",
                format!("{} {}", plural("volume", "volumes", host_paths.len()), quote_all(&host_paths)),
            ));
        }
    }
    let (mut port_containers, mut ports) = (Vec::new(), Vec::new());
    for (name, c) in &all {
        let mut uses = false;
        for p in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(hp) = p.get("hostPort").and_then(Value::as_i64).filter(|p| *p != 0) {
                uses = true;
                ports.push(hp.to_string());
            }
        }
        if uses {
            port_containers.push(name.to_string());
        }
    }
    if !port_containers.is_empty() {
        out.push((
            "hostPort",
            format!(
                "{} {} {} {} {}",
                plural("container", "containers", port_containers.len()),
                quote_all(&port_containers),
                plural("uses", "use", port_containers.len()),
                plural("hostPort", "hostPorts", ports.len()),
                ports.join(", ")
            ),
        ));
    }
    let named = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        all.iter().filter(|(_, c)| pred(c)).map(|(n, _)| n.to_string()).collect()
    };
    let privileged = named(&|c| sc(c, "privileged").and_then(Value::as_bool) == Some(true));
    if !privileged.is_empty() {
        out.push((
            "privileged",
            format!(
                "{} {} must not set securityContext.privileged=true",
                plural("container", "containers", privileged.len()),
                quote_all(&privileged)
            ),
        ));
    }
    let unmasked = named(&|c| sc(c, "procMount").and_then(Value::as_str).is_some_and(|m| m != "Default"));
    if !unmasked.is_empty() {
        out.push((
            "procMount",
            format!(
                "{} {} must not set securityContext.procMount to \"Unmasked\"",
                plural("container", "containers", unmasked.len()),
                quote_all(&unmasked)
            ),
        ));
    }
    let seccomp_type = |v: Option<&Value>| v.and_then(|s| s.get("type")).and_then(Value::as_str).map(String::from);
    let pod_seccomp = seccomp_type(spec.pointer("/securityContext/seccompProfile"));
    let unconfined = |t: &Option<String>| t.as_deref() == Some("Unconfined");
    let mut seccomp_bad = Vec::new();
    if unconfined(&pod_seccomp) {
        seccomp_bad.push("pod must not set securityContext.seccompProfile.type to \"Unconfined\"".to_string());
    }
    let bad_containers = named(&|c| unconfined(&seccomp_type(sc(c, "seccompProfile"))));
    if !bad_containers.is_empty() {
        seccomp_bad.push(format!(
            "{} {} must not set securityContext.seccompProfile.type to \"Unconfined\"",
            plural("container", "containers", bad_containers.len()),
            quote_all(&bad_containers)
        ));
    }
    if !restricted && !seccomp_bad.is_empty() {
        out.push(("seccompProfile", seccomp_bad.join("; ")));
    }
    let selinux_ok = |o: Option<&Value>| {
        let Some(o) = o else { return true };
        let t = o.get("type").and_then(Value::as_str).unwrap_or_default();
        ["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"].contains(&t)
            && o.get("user").and_then(Value::as_str).unwrap_or_default().is_empty()
            && o.get("role").and_then(Value::as_str).unwrap_or_default().is_empty()
    };
    let selinux_containers = named(&|c| !selinux_ok(sc(c, "seLinuxOptions")));
    let pod_selinux_bad = !selinux_ok(spec.pointer("/securityContext/seLinuxOptions"));
    if pod_selinux_bad || !selinux_containers.is_empty() {
        let who = match (pod_selinux_bad, selinux_containers.is_empty()) {
            (true, true) => "pod".to_string(),
            (true, false) => format!(
                "pod and {} {}",
                plural("container", "containers", selinux_containers.len()),
                quote_all(&selinux_containers)
            ),
            _ => format!(
                "{} {}",
                plural("container", "containers", selinux_containers.len()),
                quote_all(&selinux_containers)
            ),
        };
        out.push(("seLinuxOptions", format!("{who} set forbidden securityContext.seLinuxOptions")));
    }
    let sysctls: Vec<String> = spec
        .pointer("/securityContext/sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .map(String::from)
        .collect();
    if !sysctls.is_empty() {
        out.push(("forbidden sysctls", sysctls.join(", ")));
    }
    let host_process =
        spec.pointer("/securityContext/windowsOptions/hostProcess").and_then(Value::as_bool) == Some(true);
    let host_process_containers =
        named(&|c| sc(c, "windowsOptions").and_then(|w| w.get("hostProcess")).and_then(Value::as_bool) == Some(true));
    if host_process || !host_process_containers.is_empty() {
        out.push((
            "hostProcess",
            "pod or containers must not set securityContext.windowsOptions.hostProcess=true".into(),
        ));
    }
    if !restricted {
        return out;
    }
    let escalating = named(&|c| sc(c, "allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false));
    if !escalating.is_empty() {
        out.push((
            "allowPrivilegeEscalation != false",
            format!(
                "{} {} must set securityContext.allowPrivilegeEscalation=false",
                plural("container", "containers", escalating.len()),
                quote_all(&escalating)
            ),
        ));
    }
    let mut caps = Vec::new();
    let not_dropping = named(&|c| {
        !sc(c, "capabilities")
            .and_then(|k| k.get("drop"))
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x.as_str() == Some("ALL")))
    });
    if !not_dropping.is_empty() {
        caps.push(format!(
            "{} {} must set securityContext.capabilities.drop=[\"ALL\"]",
            plural("container", "containers", not_dropping.len()),
            quote_all(&not_dropping)
        ));
    }
    for (name, c) in &all {
        let bad: Vec<String> = added_caps(c).into_iter().filter(|k| k != "NET_BIND_SERVICE").collect();
        if !bad.is_empty() {
            caps.push(format!(
                "container {name:?} must not include {} in securityContext.capabilities.add",
                quote_all(&sorted(bad))
            ));
        }
    }
    if !caps.is_empty() {
        out.push(("unrestricted capabilities", caps.join("; ")));
    }
    let (mut bad_volumes, mut bad_types) = (Vec::new(), Vec::new());
    for v in &volumes {
        if let Some(t) =
            v.as_object().and_then(|m| m.keys().find(|k| *k != "name" && !RESTRICTED_VOLUMES.contains(&k.as_str())))
        {
            bad_volumes.push(volume_name(v));
            if !bad_types.contains(t) {
                bad_types.push(t.clone());
            }
        }
    }
    if !bad_volumes.is_empty() {
        out.push((
            "restricted volume types",
            format!(
                "{} {} {} restricted volume {} {}",
                plural("volume", "volumes", bad_volumes.len()),
                quote_all(&bad_volumes),
                plural("uses", "use", bad_volumes.len()),
                plural("type", "types", bad_types.len()),
                quote_all(&bad_types)
            ),
        ));
    }
    let pod_non_root = spec.pointer("/securityContext/runAsNonRoot").and_then(Value::as_bool);
    let mut non_root = Vec::new();
    if pod_non_root == Some(false) {
        non_root.push("pod must not set securityContext.runAsNonRoot=false".to_string());
    }
    let explicit_false = named(&|c| sc(c, "runAsNonRoot").and_then(Value::as_bool) == Some(false));
    if !explicit_false.is_empty() {
        non_root.push(format!(
            "{} {} must not set securityContext.runAsNonRoot=false",
            plural("container", "containers", explicit_false.len()),
            quote_all(&explicit_false)
        ));
    }
    if pod_non_root != Some(true) {
        let implicit = named(&|c| sc(c, "runAsNonRoot").is_none_or(Value::is_null));
        if !implicit.is_empty() {
            non_root.push(format!(
                "pod or {} {} must set securityContext.runAsNonRoot=true",
                plural("container", "containers", implicit.len()),
                quote_all(&implicit)
            ));
        }
    }
    if !non_root.is_empty() {
        out.push(("runAsNonRoot != true", non_root.join("; ")));
    }
    let mut root_user = Vec::new();
    if spec.pointer("/securityContext/runAsUser").and_then(Value::as_i64) == Some(0) {
        root_user.push("pod must not set runAsUser=0".to_string());
    }
    let root_containers = named(&|c| sc(c, "runAsUser").and_then(Value::as_i64) == Some(0));
    if !root_containers.is_empty() {
        root_user.push(format!(
            "{} {} must not set runAsUser=0",
            plural("container", "containers", root_containers.len()),
            quote_all(&root_containers)
        ));
    }
    if !root_user.is_empty() {
        out.push(("runAsUser=0", root_user.join("; ")));
    }
    let good = |t: &Option<String>| matches!(t.as_deref(), Some("RuntimeDefault") | Some("Localhost"));
    if pod_seccomp.is_none() || good(&pod_seccomp) {
        // Explicitly bad containers first, then those that set none while the pod sets none.
        let mut parts = Vec::new();
        let bad = named(&|c| {
            seccomp_type(sc(c, "seccompProfile")).is_some_and(|t| t != "RuntimeDefault" && t != "Localhost")
        });
        if !bad.is_empty() {
            parts.push(format!(
                "{} {} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                plural("container", "containers", bad.len()),
                quote_all(&bad)
            ));
        }
        if pod_seccomp.is_none() {
            let unset = named(&|c| seccomp_type(sc(c, "seccompProfile")).is_none());
            if !unset.is_empty() {
                parts.push(format!(
                    "pod or {} {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                    plural("container", "containers", unset.len()),
                    quote_all(&unset)
                ));
            }
        }
        if !parts.is_empty() {
            out.push(("seccompProfile", parts.join("; ")));
        }
    } else {
        let mut parts = vec![format!(
            "pod must not set securityContext.seccompProfile.type to {:?}",
            pod_seccomp.clone().unwrap_or_default()
        )];
        parts.extend(seccomp_bad.into_iter().filter(|p| p.starts_with("container")));
        out.push(("seccompProfile", parts.join("; ")));
    }
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn summary(v: &[Violation]) -> String {
    v.iter().map(|(name, detail)| format!("{name} ({detail})")).collect::<Vec<_>>().join(", ")
}

/// Where a kind keeps its pod template (workload resources), by group and resource.
fn template_of<'a>(group: &str, resource: &str, obj: &'a Value) -> Option<(&'a Value, &'a Value)> {
    let path = match (group, resource) {
        ("", "podtemplates") => "/template",
        ("", "replicationcontrollers")
        | ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => "/spec/template",
        ("batch", "cronjobs") => "/spec/jobTemplate/spec/template",
        _ => return None,
    };
    let t = obj.pointer(path)?;
    Some((t.get("metadata").unwrap_or(&Value::Null), t.get("spec")?))
}

impl PodSecurityAdmission {
    async fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let Some(res) = self.registry.catalog().find("", "v1", "namespaces") else { return BTreeMap::new() };
        match self.registry.get(&res, "", namespace).await {
            Ok(ns) => vkube_core::meta::labels(&ns),
            Err(_) => BTreeMap::new(),
        }
    }

    /// The warnings for a namespace whose enforce level is raised: its pods that violate it.
    async fn existing_pod_warnings(&self, namespace: &str, level: Level, version: &str) -> Vec<String> {
        let Some(pods) = self.registry.catalog().find("", "v1", "pods") else { return vec![] };
        let Ok(page) = self.registry.list(&pods, namespace, &ListParams::default()).await else { return vec![] };
        let mut lines = Vec::new();
        for kv in &page.items {
            let Ok(p) = Registry::decode_as(&pods, kv) else { continue };
            let v = violations(level, p.get("metadata").unwrap_or(&Value::Null), p.get("spec").unwrap_or(&Value::Null));
            if !v.is_empty() {
                lines.push(format!(
                    "{}: {}",
                    vkube_core::meta::name(&p),
                    v.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        if lines.is_empty() {
            return vec![];
        }
        let mut out = vec![format!(
            "existing pods in namespace {namespace:?} violate the new PodSecurity enforce level \"{}:{version}\"",
            level.name()
        )];
        out.extend(lines);
        out
    }
}

#[async_trait]
impl Admission for PodSecurityAdmission {
    async fn admit(&self, req: &AdmissionRequest<'_>, object: Value) -> Result<AdmissionOutcome, ApiError> {
        let t = req.target;
        if req.is_core("Namespace") && req.operation != Operation::Delete {
            let labels = vkube_core::meta::labels(&object);
            let causes = label_causes(&labels);
            if !causes.is_empty() {
                let name = vkube_core::meta::name(&object).to_string();
                return Err(ApiError::invalid("", "Namespace", &name, causes));
            }
            let mut warnings = Vec::new();
            if req.operation == Operation::Update {
                let (new_level, version) = level_of(&labels, "enforce");
                let old = req.old.map(vkube_core::meta::labels).unwrap_or_default();
                let (old_level, old_version) = level_of(&old, "enforce");
                if new_level > Level::Privileged && (new_level != old_level || version != old_version) {
                    warnings = self.existing_pod_warnings(req.name, new_level, &version).await;
                }
            }
            return Ok(AdmissionOutcome { object, warnings });
        }
        if req.operation != Operation::Create || req.namespace.is_empty() || t.subresource.is_some() {
            return Ok(AdmissionOutcome::pass(object));
        }
        let is_pod = req.is_core("Pod");
        let template = if is_pod { None } else { template_of(t.group, t.resource, &object) };
        if !is_pod && template.is_none() {
            return Ok(AdmissionOutcome::pass(object));
        }
        let labels = self.namespace_labels(req.namespace).await;
        if !labels.keys().any(|k| k.starts_with(PREFIX)) {
            return Ok(AdmissionOutcome::pass(object));
        }
        let (meta, spec) = match template {
            Some((m, s)) => (m, s),
            None => (object.get("metadata").unwrap_or(&Value::Null), object.get("spec").unwrap_or(&Value::Null)),
        };
        let (enforce, enforce_version) = level_of(&labels, "enforce");
        if is_pod {
            let v = violations(enforce, meta, spec);
            if !v.is_empty() {
                let name = if req.name.is_empty() {
                    vkube_core::meta::name(&object).to_string()
                } else {
                    req.name.to_string()
                };
                return Err(ApiError::forbidden(
                    GroupResource { group: "", resource: "pods" },
                    &name,
                    format!("violates PodSecurity \"{}:{enforce_version}\": {}", enforce.name(), summary(&v)),
                ));
            }
        }
        let (warn, warn_version) = level_of(&labels, "warn");
        let mut warnings = Vec::new();
        let v = violations(warn, meta, spec);
        if !v.is_empty() {
            warnings.push(format!("would violate PodSecurity \"{}:{warn_version}\": {}", warn.name(), summary(&v)));
        }
        Ok(AdmissionOutcome { object, warnings })
    }
}

/// vCluster's `policies.podSecurityStandard`: every namespace enforces (and warns at)
/// one level — a namespace whose `enforce` label says anything else gets it, with
/// `enforce-version`, `warn` and `warn-version`, on every create and update, so a
/// tenant cannot take it off.
pub struct NamespaceStandard {
    /// `privileged`, `baseline` or `restricted`.
    pub level: String,
}

#[async_trait]
impl Admission for NamespaceStandard {
    async fn admit(&self, req: &AdmissionRequest<'_>, mut object: Value) -> Result<AdmissionOutcome, ApiError> {
        if !req.is_core("Namespace") || req.operation == Operation::Delete {
            return Ok(AdmissionOutcome::pass(object));
        }
        let enforce = format!("{PREFIX}enforce");
        let current = object.pointer("/metadata/labels").and_then(|l| l.get(&enforce)).and_then(Value::as_str);
        if current != Some(self.level.as_str())
            && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
        {
            let labels = meta.entry("labels").or_insert_with(|| Value::Object(Default::default()));
            if let Some(labels) = labels.as_object_mut() {
                for (key, value) in [
                    ("enforce", self.level.as_str()),
                    ("enforce-version", "latest"),
                    ("warn", self.level.as_str()),
                    ("warn-version", "latest"),
                ] {
                    labels.insert(format!("{PREFIX}{key}"), Value::String(value.into()));
                }
            }
        }
        Ok(AdmissionOutcome::pass(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(level: Level, spec: Value) -> String {
        summary(&violations(level, &json!({}), &spec))
    }

    #[test]
    fn a_plain_pod_fails_restricted_as_kube_says() {
        assert_eq!(
            check(Level::Restricted, json!({"containers": [{"name": "p1", "image": "x"}]})),
            "allowPrivilegeEscalation != false (container \"p1\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"p1\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"p1\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"p1\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        assert_eq!(check(Level::Baseline, json!({"containers": [{"name": "p1", "image": "x"}]})), "");
    }

    #[test]
    fn a_privileged_pod_fails_in_kubes_order() {
        let spec = json!({"hostNetwork": true, "hostPID": true,
            "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 80}],
                "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}, "runAsUser": 0}}],
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}, {"name": "e", "emptyDir": {}}]});
        assert_eq!(
            check(Level::Restricted, spec.clone()),
            "host namespaces (hostNetwork=true, hostPID=true), hostPort (container \"a\" uses hostPort 80), privileged (container \"a\" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container \"a\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"a\" must set securityContext.capabilities.drop=[\"ALL\"]; container \"a\" must not include \"CHOWN\", \"NET_ADMIN\" in securityContext.capabilities.add), restricted volume types (volume \"h\" uses restricted volume type \"hostPath\"), runAsNonRoot != true (pod or container \"a\" must set securityContext.runAsNonRoot=true), runAsUser=0 (container \"a\" must not set runAsUser=0), seccompProfile (pod or container \"a\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        assert_eq!(
            check(Level::Baseline, spec),
            "non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in securityContext.capabilities.add), host namespaces (hostNetwork=true, hostPID=true), hostPath volumes (volume \"h\"), hostPort (container \"a\" uses hostPort 80), privileged (container \"a\" must not set securityContext.privileged=true)"
        );
    }

    #[test]
    fn a_hardened_pod_passes_restricted() {
        let spec = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "x", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}],
            "volumes": [{"name": "cm", "configMap": {"name": "x"}}]});
        assert_eq!(check(Level::Restricted, spec), "");
    }
}
