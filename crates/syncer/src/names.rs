//! Host-side names and ownership marks.
//!
//! A virtual object `NAME` in namespace `NS` of virtual cluster `VC` is `NAME-x-NS-x-VC`
//! in the host namespace; names over 63 characters are cut and end in a hash so they
//! stay unique. Every host object the syncer creates carries [`MANAGED_BY`] (the virtual
//! cluster) and annotations naming its virtual origin; nothing without them is touched.

use serde_json::{Map, Value, json};
use sha2::Digest;

/// Label: the virtual cluster that created a host object.
pub const MANAGED_BY: &str = "vkube.dev/managed-by";
/// Label: the virtual namespace of a host object.
pub const VIRTUAL_NAMESPACE: &str = "vkube.dev/namespace";
/// Annotation: the virtual object's name.
pub const OBJECT_NAME: &str = "vkube.dev/object-name";
/// Annotation: the virtual object's namespace.
pub const OBJECT_NAMESPACE: &str = "vkube.dev/object-namespace";
/// Annotation: the virtual object's kind.
pub const OBJECT_KIND: &str = "vkube.dev/object-kind";
/// Annotation: the virtual object's uid.
pub const OBJECT_UID: &str = "vkube.dev/object-uid";

/// Maps virtual names to host names for one virtual cluster in one host namespace.
#[derive(Debug, Clone)]
pub struct NameMapper {
    /// The virtual cluster's name.
    pub cluster: String,
    /// The host namespace everything goes to.
    pub host_namespace: String,
}

impl NameMapper {
    /// The host name of a namespaced virtual object.
    pub fn host_name(&self, name: &str, namespace: &str) -> String {
        let full = format!("{name}-x-{namespace}-x-{}", self.cluster);
        if full.len() <= 63 {
            return full;
        }
        let digest = sha2::Sha256::digest(full.as_bytes());
        let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
        let keep: String = full.chars().take(52).collect();
        format!("{}-{hash}", keep.trim_end_matches('-'))
    }

    /// The labels every host object of this virtual cluster carries.
    pub fn marks(&self, namespace: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(MANAGED_BY.into(), json!(self.cluster));
        m.insert(VIRTUAL_NAMESPACE.into(), json!(namespace));
        m
    }

    /// Host metadata for a virtual object: translated name, host namespace, the
    /// virtual labels and annotations plus the ownership marks.
    pub fn host_metadata(&self, kind: &str, virtual_obj: &Value) -> Value {
        let name = virtual_obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let ns = virtual_obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
        let mut labels =
            virtual_obj.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
        labels.extend(self.marks(ns));
        let mut annotations =
            virtual_obj.pointer("/metadata/annotations").and_then(Value::as_object).cloned().unwrap_or_default();
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        annotations.insert(OBJECT_NAME.into(), json!(name));
        annotations.insert(OBJECT_NAMESPACE.into(), json!(ns));
        annotations.insert(OBJECT_KIND.into(), json!(kind));
        annotations.insert(OBJECT_UID.into(), virtual_obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null));
        json!({"name": self.host_name(name, ns), "namespace": self.host_namespace, "labels": labels, "annotations": annotations})
    }

    /// Whether a host object belongs to this virtual cluster.
    pub fn owns(&self, host_meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
        host_meta.labels.as_ref().and_then(|l| l.get(MANAGED_BY)).is_some_and(|c| *c == self.cluster)
    }

    /// The virtual (namespace, name) a host object came from.
    pub fn virtual_of(
        &self,
        host_meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> Option<(String, String)> {
        if !self.owns(host_meta) {
            return None;
        }
        let a = host_meta.annotations.as_ref()?;
        Some((a.get(OBJECT_NAMESPACE)?.clone(), a.get(OBJECT_NAME)?.clone()))
    }

    /// The label selector of this virtual cluster's host objects.
    pub fn selector(&self) -> String {
        format!("{MANAGED_BY}={}", self.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> NameMapper {
        NameMapper { cluster: "vc".into(), host_namespace: "host".into() }
    }

    #[test]
    fn names_follow_the_pattern_and_stay_short_and_unique() {
        assert_eq!(m().host_name("web", "default"), "web-x-default-x-vc");
        let long_a = m().host_name(&"a".repeat(60), "default");
        let long_b = m().host_name(&format!("{}b", "a".repeat(59)), "default");
        assert!(long_a.len() <= 63 && long_b.len() <= 63);
        assert_ne!(long_a, long_b);
    }

    #[test]
    fn host_metadata_marks_origin() {
        let v = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}}});
        let h = m().host_metadata("Pod", &v);
        assert_eq!(h["name"], "p-x-ns-x-vc");
        assert_eq!(h["namespace"], "host");
        assert_eq!(h["labels"]["app"], "x");
        assert_eq!(h["labels"][MANAGED_BY], "vc");
        assert_eq!(h["annotations"][OBJECT_UID], "u1");
    }
}
