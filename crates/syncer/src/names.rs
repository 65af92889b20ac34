//! Host-side names and ownership marks.
//!
//! A virtual object `NAME` in namespace `NS` of virtual cluster `VC` is `NAME-x-NS-x-VC`
//! in the host namespace when that string reads back as exactly one (NAME, NS): neither
//! part contains `-x-` nor ends in `-x` (so the first two `-x-` are the separators), and
//! it fits in 63 characters. Otherwise it is a cut of that string ending in a hash.
//!
//! # Guarantees
//! - [`NameMapper::host_name`] is one-to-one on the objects of one virtual cluster:
//!   readable names parse back uniquely, and every name that would not is hashed over
//!   (name, namespace, cluster), which no two objects share (`a-x-b` in `c` and `a` in
//!   `b-x-c` no longer meet in `a-x-b-x-c-x-vc`).
//! - Names given by earlier versions stay valid: [`NameMapper::legacy_host_name`] is the
//!   name an object had before, and a host object found there is its copy only when its
//!   origin annotations say so ([`NameMapper::is_copy_of`]).
//! - Ownership is never read from a name: every host object the syncer creates carries
//!   [`MANAGED_BY`] (the virtual cluster) and annotations naming its virtual origin;
//!   nothing without them is touched.
//!
//! # Caveats
//! A hashed name is a cut plus 10 hex digits (40 bits), so in theory it can meet another
//! object's; the origin annotations catch it, and the syncer then refuses to use the host
//! object rather than share it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::Digest;
use std::collections::BTreeMap;
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

/// Gives the host name of a virtual object of a kind: the plain mapping
/// ([`NameMapper`]), or the syncer's, which also knows the names objects were synced
/// under before ([`crate::SyncContext`]).
pub trait HostNames {
    /// The host name of the virtual `kind` object `namespace/name`.
    fn host_name_for(&self, kind: &str, namespace: &str, name: &str) -> String;
}

impl HostNames for NameMapper {
    fn host_name_for(&self, _kind: &str, namespace: &str, name: &str) -> String {
        self.host_name(name, namespace)
    }
}

/// What translating a virtual object needs to name things on the host: the mapper (marks,
/// host namespace) and the names of objects (which may have been synced under an older
/// name). Pure: tests build it from a [`NameMapper`] alone.
#[derive(Clone, Copy)]
pub struct Naming<'a> {
    /// The mapping and marks.
    pub mapper: &'a NameMapper,
    /// Host names of objects of any kind.
    pub names: &'a dyn HostNames,
}

impl Naming<'_> {
    /// The host name of the virtual `kind` object `namespace/name`.
    pub fn host_name(&self, kind: &str, namespace: &str, name: &str) -> String {
        self.names.host_name_for(kind, namespace, name)
    }

    /// Host metadata for a virtual object (see [`NameMapper::host_metadata`]).
    pub fn host_metadata(&self, kind: &str, virtual_meta: &ObjectMeta) -> ObjectMeta {
        let ns = virtual_meta.namespace.as_deref().unwrap_or_default();
        let name = virtual_meta.name.as_deref().unwrap_or_default();
        self.mapper.host_metadata(kind, virtual_meta, &self.host_name(kind, ns, name))
    }
}

impl NameMapper {
    /// Naming by this mapper alone (objects are named by the current scheme).
    pub fn naming(&self) -> Naming<'_> {
        Naming { mapper: self, names: self }
    }
}

/// Maps virtual names to host names for one virtual cluster in one host namespace.
#[derive(Debug, Clone)]
pub struct NameMapper {
    /// The virtual cluster's name.
    pub cluster: String,
    /// The host namespace everything goes to.
    pub host_namespace: String,
}

/// Whether `part` can stand between `-x-` separators and still read back: it contains no
/// `-x-` and does not end in `-x` (which would make `-x-` start inside it).
fn readable_part(part: &str) -> bool {
    !part.contains("-x-") && !part.ends_with("-x")
}

fn hash10(input: &[u8]) -> String {
    let digest = sha2::Sha256::digest(input);
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

/// A cut of `full` to 52 characters (no trailing `-`), then `-` and the hash.
fn cut_with_hash(full: &str, hash: &str) -> String {
    let keep: String = full.chars().take(52).collect();
    format!("{}-{hash}", keep.trim_end_matches('-'))
}

impl NameMapper {
    /// A mapper for virtual cluster `cluster` syncing into `host_namespace`.
    pub fn new(cluster: impl Into<String>, host_namespace: impl Into<String>) -> Self {
        NameMapper { cluster: cluster.into(), host_namespace: host_namespace.into() }
    }

    /// The host name of a namespaced virtual object (see the module docs).
    pub fn host_name(&self, name: &str, namespace: &str) -> String {
        let full = format!("{name}-x-{namespace}-x-{}", self.cluster);
        if !(readable_part(name) && readable_part(namespace)) {
            // Hashed over the parts themselves, not over `full`: `full` is what two
            // objects share here.
            let hash = hash10(format!("{name}/{namespace}/{}", self.cluster).as_bytes());
            return cut_with_hash(&full, &hash);
        }
        if full.len() <= 63 {
            return full;
        }
        cut_with_hash(&full, &hash10(full.as_bytes()))
    }

    /// The host name vkube gave the object before names were made one-to-one, when it
    /// differs from [`NameMapper::host_name`] (only for names that did not read back).
    pub fn legacy_host_name(&self, name: &str, namespace: &str) -> Option<String> {
        if readable_part(name) && readable_part(namespace) {
            return None;
        }
        let full = format!("{name}-x-{namespace}-x-{}", self.cluster);
        if full.len() <= 63 { Some(full.clone()) } else { Some(cut_with_hash(&full, &hash10(full.as_bytes()))) }
    }

    /// The labels every host object of this virtual cluster carries.
    pub fn marks(&self, namespace: &str) -> BTreeMap<String, String> {
        [(MANAGED_BY.to_string(), self.cluster.clone()), (VIRTUAL_NAMESPACE.to_string(), namespace.to_string())].into()
    }

    /// Host metadata for a virtual object: the host name given, the host namespace, the
    /// virtual labels and annotations plus the ownership marks and origin annotations.
    pub fn host_metadata(&self, kind: &str, virtual_meta: &ObjectMeta, host_name: &str) -> ObjectMeta {
        let ns = virtual_meta.namespace.clone().unwrap_or_default();
        let mut labels = virtual_meta.labels.clone().unwrap_or_default();
        labels.extend(self.marks(&ns));
        let mut annotations = virtual_meta.annotations.clone().unwrap_or_default();
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        annotations.insert(OBJECT_NAME.into(), virtual_meta.name.clone().unwrap_or_default());
        annotations.insert(OBJECT_NAMESPACE.into(), ns);
        annotations.insert(OBJECT_KIND.into(), kind.into());
        if let Some(uid) = &virtual_meta.uid {
            annotations.insert(OBJECT_UID.into(), uid.clone());
        }
        ObjectMeta {
            name: Some(host_name.into()),
            namespace: Some(self.host_namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        }
    }

    /// Whether `host_meta` is the host copy of the virtual `kind` object `namespace/name`
    /// of this cluster: by its marks and origin annotations, never by its name.
    pub fn is_copy_of(&self, host_meta: &ObjectMeta, kind: &str, namespace: &str, name: &str) -> bool {
        let Some(a) = host_meta.annotations.as_ref() else { return false };
        self.owns(host_meta)
            && a.get(OBJECT_NAMESPACE).map(String::as_str) == Some(namespace)
            && a.get(OBJECT_NAME).map(String::as_str) == Some(name)
            && a.get(OBJECT_KIND).is_none_or(|k| k == kind)
    }

    /// Whether a host object belongs to this virtual cluster.
    pub fn owns(&self, host_meta: &ObjectMeta) -> bool {
        host_meta.labels.as_ref().and_then(|l| l.get(MANAGED_BY)).is_some_and(|c| *c == self.cluster)
    }

    /// The virtual (namespace, name) a host object came from.
    pub fn virtual_of(&self, host_meta: &ObjectMeta) -> Option<(String, String)> {
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
        NameMapper::new("vc", "host")
    }

    #[test]
    fn names_follow_the_pattern_and_stay_short_and_unique() {
        assert_eq!(m().host_name("web", "default"), "web-x-default-x-vc");
        let long_a = m().host_name(&"a".repeat(60), "default");
        let long_b = m().host_name(&format!("{}b", "a".repeat(59)), "default");
        assert!(long_a.len() <= 63 && long_b.len() <= 63);
        assert_ne!(long_a, long_b);
        // Long names keep the name older versions gave them.
        assert_eq!(m().legacy_host_name(&"a".repeat(60), "default"), None);
    }

    #[test]
    fn names_that_would_not_read_back_are_hashed_and_never_meet() {
        // The pairs that met in one host name before.
        let pairs = [
            (("a-x-b", "c"), ("a", "b-x-c")),
            (("a-x", "x-b"), ("a", "x-x-b")),
            (("a-x", "b"), ("a", "x-b")),
            (("web-x-prod", "default"), ("web", "prod-x-default")),
        ];
        for ((n1, s1), (n2, s2)) in pairs {
            let (h1, h2) = (m().host_name(n1, s1), m().host_name(n2, s2));
            assert_ne!(h1, h2, "{n1}/{s1} and {n2}/{s2}");
            assert!(h1.len() <= 63 && h2.len() <= 63);
            assert!(vkube_core::meta::is_dns1123_label(&h1) && vkube_core::meta::is_dns1123_label(&h2), "{h1} {h2}");
        }
        assert_eq!(m().legacy_host_name("a-x-b", "c").as_deref(), Some("a-x-b-x-c-x-vc"));
        assert_ne!(m().host_name("a-x-b", "c"), "a-x-b-x-c-x-vc");
        // A namespace that starts with `x-` still reads back: `a` / `x-b` is the only parse.
        assert_eq!(m().host_name("a", "x-b"), "a-x-x-b-x-vc");
    }

    #[test]
    fn every_readable_name_parses_back_to_its_parts() {
        let parts = ["a", "x", "a-x", "x-a", "a-x-b", "ax", "xa", "a--x", "x-x", "b-xa", "ab-x-"];
        let mut seen = std::collections::HashMap::new();
        for n in parts {
            for ns in parts {
                let h = m().host_name(n, ns);
                if let Some(other) = seen.insert(h.clone(), (n, ns)) {
                    panic!("{n}/{ns} and {}/{} both map to {h}", other.0, other.1);
                }
            }
        }
    }

    #[test]
    fn host_metadata_marks_origin_and_copies_are_told_by_it() {
        let virtual_meta = ObjectMeta {
            name: Some("p".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            labels: Some([("app".to_string(), "x".to_string())].into()),
            ..Default::default()
        };
        let mapper = m();
        let meta = mapper.host_metadata("Pod", &virtual_meta, &mapper.host_name("p", "ns"));
        assert_eq!(meta.name.as_deref(), Some("p-x-ns-x-vc"));
        assert_eq!(meta.namespace.as_deref(), Some("host"));
        let labels = meta.labels.clone().unwrap_or_default();
        assert_eq!((labels["app"].as_str(), labels[MANAGED_BY].as_str()), ("x", "vc"));
        assert_eq!(meta.annotations.as_ref().map(|a| a[OBJECT_UID].as_str()), Some("u1"));
        assert!(mapper.is_copy_of(&meta, "Pod", "ns", "p"));
        assert!(!mapper.is_copy_of(&meta, "Pod", "ns", "q"));
        assert!(!mapper.is_copy_of(&meta, "Service", "ns", "p"));
        assert!(!NameMapper::new("other", "host").is_copy_of(&meta, "Pod", "ns", "p"));
    }
}
