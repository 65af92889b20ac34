//! The catalog of served resources: the built-in kinds (a static table) and the custom
//! resources that established CRDs add at run time.
//!
//! Each [`Resource`] names its group, version, plural, kind, scope, short names and
//! subresources, carries its [`Strategy`](crate::strategy::Strategy), and knows its
//! storage key prefix (`/registry/{group}/{plural}/`).

use crate::strategy::{self, Strategy};
use serde_json::Value;
use std::sync::{Arc, RwLock};

/// Subresources a resource may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: spec and status written separately.
    Status,
    /// `/scale`: an autoscaling/v1 Scale view of `spec.replicas`.
    Scale,
    /// `/binding` (pods).
    Binding,
    /// `/eviction` (pods).
    Eviction,
    /// `/log` (pods).
    Log,
    /// `/finalize` (namespaces).
    Finalize,
    /// `/token` (serviceaccounts).
    Token,
}

impl Subresource {
    /// The path segment.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Log => "log",
            Subresource::Finalize => "finalize",
            Subresource::Token => "token",
        }
    }
}

/// Checks an object's fields against its type and drops unknown ones: returns the
/// pruned object, or the decoding error kube-apiserver would give for a wrong type.
pub type Pruner = fn(&Value) -> Result<Value, String>;

/// One served resource.
pub struct Resource {
    /// API group ("" for core).
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Plural name, e.g. `pods`.
    pub plural: String,
    /// Singular name, e.g. `pod`.
    pub singular: String,
    /// Kind, e.g. `Pod`.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names, e.g. `po`.
    pub short_names: Vec<String>,
    /// Categories, e.g. `all`.
    pub categories: Vec<String>,
    /// Subresources served.
    pub subresources: Vec<Subresource>,
    /// Per-resource behaviour.
    pub strategy: Arc<dyn Strategy>,
    /// Type check and unknown-field pruning (None: accept any JSON object).
    pub pruner: Option<Pruner>,
    /// The storage group segment (two resources sharing storage share it).
    pub storage_group: String,
    /// For custom resources: the CRD's schema for this version.
    pub schema: Option<Value>,
    /// For custom resources: extra printer columns.
    pub printer_columns: Vec<Value>,
    /// For built-in resources: the OpenAPI schema (a `$ref` into the generator's
    /// definitions).
    pub openapi: Option<OpenApiSchema>,
    /// Served in one form, stored in another (None: stored as served).
    pub conversion: Option<crate::conversion::Conversion>,
}

/// Adds a kind's schema to a generator and returns a reference to it.
pub type OpenApiSchema = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

fn schema_of<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

impl Resource {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }
    /// The `GroupResource` used in error messages.
    pub fn group_resource(&self) -> vkube_core::status::GroupResource<'_> {
        vkube_core::status::GroupResource { group: &self.group, resource: &self.plural }
    }
    /// Whether a subresource is served.
    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }
    /// The key prefix for every object of the resource.
    pub fn prefix(&self) -> String {
        format!("/registry/{}/{}/", self.storage_group, self.plural)
    }
    /// The key prefix for one namespace (or all, if `namespace` is empty).
    pub fn namespace_prefix(&self, namespace: &str) -> String {
        if self.namespaced && !namespace.is_empty() {
            format!("{}{}/", self.prefix(), namespace)
        } else {
            self.prefix()
        }
    }
    /// The key of one object.
    pub fn key(&self, namespace: &str, name: &str) -> String {
        if self.namespaced {
            format!("{}{}/{}", self.prefix(), namespace, name)
        } else {
            format!("{}{}", self.prefix(), name)
        }
    }
    /// The verbs discovery lists.
    pub fn verbs(&self) -> Vec<&'static str> {
        vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }
}

fn prune_as<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    all: bool,
    subs: &'static [Subresource],
    pruner: Pruner,
    schema: OpenApiSchema,
}

macro_rules! builtin {
    ($g:expr, $v:expr, $p:expr, $s:expr, $k:expr, $ns:expr, $short:expr, $all:expr, $subs:expr, $ty:ty) => {
        Builtin {
            group: $g,
            version: $v,
            plural: $p,
            singular: $s,
            kind: $k,
            namespaced: $ns,
            short: $short,
            all: $all,
            subs: $subs,
            pruner: prune_as::<$ty>,
            schema: schema_of::<$ty>,
        }
    };
}

use Subresource::*;
use k8s_openapi::api as k;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;

fn builtins() -> Vec<Builtin> {
    vec![
        builtin!(
            "",
            "v1",
            "namespaces",
            "namespace",
            "Namespace",
            false,
            &["ns"],
            false,
            &[Status, Finalize],
            k::core::v1::Namespace
        ),
        builtin!("", "v1", "nodes", "node", "Node", false, &["no"], false, &[Status], k::core::v1::Node),
        builtin!(
            "",
            "v1",
            "pods",
            "pod",
            "Pod",
            true,
            &["po"],
            true,
            &[Status, Binding, Eviction, Log],
            k::core::v1::Pod
        ),
        builtin!("", "v1", "services", "service", "Service", true, &["svc"], true, &[Status], k::core::v1::Service),
        builtin!("", "v1", "endpoints", "endpoints", "Endpoints", true, &["ep"], false, &[], k::core::v1::Endpoints),
        builtin!("", "v1", "configmaps", "configmap", "ConfigMap", true, &["cm"], false, &[], k::core::v1::ConfigMap),
        builtin!("", "v1", "secrets", "secret", "Secret", true, &[], false, &[], k::core::v1::Secret),
        builtin!(
            "",
            "v1",
            "serviceaccounts",
            "serviceaccount",
            "ServiceAccount",
            true,
            &["sa"],
            false,
            &[Token],
            k::core::v1::ServiceAccount
        ),
        builtin!("", "v1", "events", "event", "Event", true, &["ev"], false, &[], k::core::v1::Event),
        builtin!(
            "",
            "v1",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
            false,
            &[Status],
            k::core::v1::PersistentVolumeClaim
        ),
        builtin!(
            "",
            "v1",
            "persistentvolumes",
            "persistentvolume",
            "PersistentVolume",
            false,
            &["pv"],
            false,
            &[Status],
            k::core::v1::PersistentVolume
        ),
        builtin!(
            "",
            "v1",
            "resourcequotas",
            "resourcequota",
            "ResourceQuota",
            true,
            &["quota"],
            false,
            &[Status],
            k::core::v1::ResourceQuota
        ),
        builtin!(
            "",
            "v1",
            "limitranges",
            "limitrange",
            "LimitRange",
            true,
            &["limits"],
            false,
            &[],
            k::core::v1::LimitRange
        ),
        builtin!(
            "apps",
            "v1",
            "deployments",
            "deployment",
            "Deployment",
            true,
            &["deploy"],
            true,
            &[Status, Scale],
            k::apps::v1::Deployment
        ),
        builtin!(
            "apps",
            "v1",
            "replicasets",
            "replicaset",
            "ReplicaSet",
            true,
            &["rs"],
            true,
            &[Status, Scale],
            k::apps::v1::ReplicaSet
        ),
        builtin!(
            "apps",
            "v1",
            "statefulsets",
            "statefulset",
            "StatefulSet",
            true,
            &["sts"],
            true,
            &[Status, Scale],
            k::apps::v1::StatefulSet
        ),
        builtin!(
            "apps",
            "v1",
            "daemonsets",
            "daemonset",
            "DaemonSet",
            true,
            &["ds"],
            true,
            &[Status],
            k::apps::v1::DaemonSet
        ),
        builtin!(
            "apps",
            "v1",
            "controllerrevisions",
            "controllerrevision",
            "ControllerRevision",
            true,
            &[],
            false,
            &[],
            k::apps::v1::ControllerRevision
        ),
        builtin!(
            "coordination.k8s.io",
            "v1",
            "leases",
            "lease",
            "Lease",
            true,
            &[],
            false,
            &[],
            k::coordination::v1::Lease
        ),
        builtin!("events.k8s.io", "v1", "events", "event", "Event", true, &["ev"], false, &[], k::events::v1::Event),
        builtin!(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "endpointslice",
            "EndpointSlice",
            true,
            &[],
            false,
            &[],
            k::discovery::v1::EndpointSlice
        ),
        builtin!(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            "PodDisruptionBudget",
            true,
            &["pdb"],
            false,
            &[Status],
            k::policy::v1::PodDisruptionBudget
        ),
        builtin!(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            "storageclass",
            "StorageClass",
            false,
            &["sc"],
            false,
            &[],
            k::storage::v1::StorageClass
        ),
        builtin!(
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "priorityclass",
            "PriorityClass",
            false,
            &["pc"],
            false,
            &[],
            k::scheduling::v1::PriorityClass
        ),
        builtin!("batch", "v1", "jobs", "job", "Job", true, &[], true, &[Status], k::batch::v1::Job),
        builtin!(
            "batch",
            "v1",
            "cronjobs",
            "cronjob",
            "CronJob",
            true,
            &["cj"],
            true,
            &[Status],
            k::batch::v1::CronJob
        ),
        builtin!(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "ingress",
            "Ingress",
            true,
            &["ing"],
            false,
            &[Status],
            k::networking::v1::Ingress
        ),
        builtin!(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "networkpolicy",
            "NetworkPolicy",
            true,
            &["netpol"],
            false,
            &[],
            k::networking::v1::NetworkPolicy
        ),
        builtin!(
            "networking.k8s.io",
            "v1",
            "ingressclasses",
            "ingressclass",
            "IngressClass",
            false,
            &[],
            false,
            &[],
            k::networking::v1::IngressClass
        ),
        builtin!("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", true, &[], false, &[], k::rbac::v1::Role),
        builtin!(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "rolebinding",
            "RoleBinding",
            true,
            &[],
            false,
            &[],
            k::rbac::v1::RoleBinding
        ),
        builtin!(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "clusterrole",
            "ClusterRole",
            false,
            &[],
            false,
            &[],
            k::rbac::v1::ClusterRole
        ),
        builtin!(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "clusterrolebinding",
            "ClusterRoleBinding",
            false,
            &[],
            false,
            &[],
            k::rbac::v1::ClusterRoleBinding
        ),
        builtin!(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "customresourcedefinition",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            false,
            &[Status],
            apiext::CustomResourceDefinition
        ),
    ]
}

/// The set of served resources; readers take a cheap snapshot.
pub struct Catalog {
    resources: RwLock<Arc<Vec<Arc<Resource>>>>,
}

impl Catalog {
    /// The built-in resources.
    pub fn builtin() -> Self {
        let list = builtins()
            .into_iter()
            .map(|b| {
                Arc::new(Resource {
                    group: b.group.into(),
                    version: b.version.into(),
                    plural: b.plural.into(),
                    singular: b.singular.into(),
                    kind: b.kind.into(),
                    namespaced: b.namespaced,
                    short_names: b.short.iter().map(|s| s.to_string()).collect(),
                    categories: if b.all { vec!["all".into()] } else { vec![] },
                    subresources: b.subs.to_vec(),
                    strategy: strategy::for_kind(b.group, b.kind),
                    pruner: Some(b.pruner),
                    storage_group: if b.group.is_empty() || b.group == "events.k8s.io" {
                        "core".into()
                    } else {
                        b.group.into()
                    },
                    schema: None,
                    printer_columns: vec![],
                    openapi: Some(b.schema),
                    conversion: (b.group == "events.k8s.io").then_some(crate::conversion::EVENTS_V1),
                })
            })
            .collect();
        Catalog { resources: RwLock::new(Arc::new(list)) }
    }

    /// A snapshot of all served resources.
    pub fn all(&self) -> Arc<Vec<Arc<Resource>>> {
        self.resources.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Find a resource by group, version and plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.all().iter().find(|r| r.group == group && r.version == version && r.plural == plural).cloned()
    }

    /// Find a resource by group and kind (any version).
    pub fn find_kind(&self, group: &str, kind: &str) -> Option<Arc<Resource>> {
        self.all().iter().find(|r| r.group == group && r.kind == kind).cloned()
    }

    /// Whether any resource is served in `group/version`.
    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.all().iter().any(|r| r.group == group && r.version == version)
    }

    /// Replace the custom resources (those not built in) with `custom`.
    pub fn set_custom(&self, custom: Vec<Arc<Resource>>) {
        let builtin: Vec<Arc<Resource>> = self.all().iter().filter(|r| r.pruner.is_some()).cloned().collect();
        let mut next = builtin;
        next.extend(custom);
        if let Ok(mut w) = self.resources.write() {
            *w = Arc::new(next);
        }
    }
}
