//! Pod specs, shared by pods and every workload's template: defaults, validation and the
//! QoS class, as kube-apiserver has them.

use crate::resources::kind::default_to;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use vkube_core::meta::DNS1123_LABEL_MSG;
use vkube_core::status::Cause;

/// Defaults of every pod spec.
pub fn default_pod_spec(spec: &mut PodSpec) {
    default_to(&mut spec.restart_policy, || "Always".into());
    default_to(&mut spec.dns_policy, || "ClusterFirst".into());
    default_to(&mut spec.termination_grace_period_seconds, || 30);
    default_to(&mut spec.scheduler_name, || "default-scheduler".into());
    default_to(&mut spec.security_context, Default::default);
    default_to(&mut spec.enable_service_links, || true);
    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        default_container(c);
    }
    for e in spec.ephemeral_containers.iter_mut().flatten() {
        let policy = pull_policy(e.image.as_deref());
        default_to(&mut e.image_pull_policy, || policy);
        default_to(&mut e.termination_message_path, || "/dev/termination-log".into());
        default_to(&mut e.termination_message_policy, || "File".into());
        default_to(&mut e.resources, Default::default);
    }
}

/// `Always` for an image at `:latest` (or untagged), else `IfNotPresent`.
fn pull_policy(image: Option<&str>) -> String {
    let image = image.unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or_default();
    let latest = !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"));
    if latest { "Always".into() } else { "IfNotPresent".into() }
}

fn default_container(c: &mut Container) {
    let policy = pull_policy(c.image.as_deref());
    default_to(&mut c.image_pull_policy, || policy);
    default_to(&mut c.termination_message_path, || "/dev/termination-log".into());
    default_to(&mut c.termination_message_policy, || "File".into());
    default_to(&mut c.resources, Default::default);
    for p in c.ports.iter_mut().flatten() {
        default_to(&mut p.protocol, || "TCP".into());
    }
}

/// Validate a pod spec at `path` (`spec`, `spec.template.spec`).
pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    if spec.containers.is_empty() {
        causes.push(Cause::required(format!("{path}.containers")));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let field = format!("{path}.containers[{i}].name");
        if c.name.is_empty() {
            causes.push(Cause::required(field));
        } else if !vkube_core::meta::is_dns1123_label(&c.name) {
            causes.push(Cause::invalid(field, &c.name, DNS1123_LABEL_MSG));
        } else if !seen.insert(c.name.clone()) {
            causes.push(Cause::duplicate(field, &c.name));
        }
        if c.image.as_deref().unwrap_or_default().trim().is_empty() {
            causes.push(Cause::required(format!("{path}.containers[{i}].image")));
        }
    }
    let rp = spec.restart_policy.as_deref().unwrap_or_default();
    if !["Always", "OnFailure", "Never"].contains(&rp) {
        causes.push(Cause::not_supported(format!("{path}.restartPolicy"), rp, &["Always", "OnFailure", "Never"]));
    }
    let dns = spec.dns_policy.as_deref().unwrap_or_default();
    const DNS: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
    if !DNS.contains(&dns) {
        causes.push(Cause::not_supported(format!("{path}.dnsPolicy"), dns, &DNS));
    }
    causes
}

/// The pod's QoS class (`Guaranteed`, `Burstable`, `BestEffort`).
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut any = false;
    let mut guaranteed = !spec.containers.is_empty();
    for c in &spec.containers {
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = limits.and_then(|l| l.get(res));
            let r = requests.and_then(|r| r.get(res)).or(l);
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
