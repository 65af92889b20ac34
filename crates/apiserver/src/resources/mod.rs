//! The served resources: every built-in kind (one file each under `resources/<group>/`,
//! implementing [`Kind`]) and the custom resources that established CRDs add at run
//! time, in a [`Catalog`].
//!
//! Start with [`Kind`] (what a kind is), [`builtins`] (the list of kinds: adding a
//! built-in kind is its file plus one line there) and [`Resource`] (what the registry
//! and the endpoints use). Each [`Resource`] knows its storage key prefix
//! (`/registry/{group}/{plural}/`).

pub mod admissionregistration;
pub mod apiextensions;
pub mod apiregistration;
pub mod apps;
pub mod autoscaling;
pub mod batch;
pub mod certificates;
pub mod coordination;
pub mod core;
pub mod discovery;
pub mod events;
pub mod flowcontrol;
pub mod kind;
pub mod networking;
pub mod node;
pub mod policy;
pub mod rbac;
pub mod scheduling;
pub mod storage;

pub use kind::{Checked, Column, DeletionRules, FieldLabel, Kind, Strategy, Typed};

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
    /// `/exec` (pods): a command in a container, streamed over an upgraded connection.
    Exec,
    /// `/attach` (pods): the container's main process, streamed.
    Attach,
    /// `/portforward` (pods): connections to the pod's ports, streamed.
    PortForward,
    /// `/ephemeralcontainers` (pods): only `spec.ephemeralContainers` changes (`kubectl debug`).
    EphemeralContainers,
    /// `/approval` (certificate signing requests): only `status.conditions` changes.
    Approval,
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
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::EphemeralContainers => "ephemeralcontainers",
            Subresource::Approval => "approval",
        }
    }
}

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
    /// What the registry does around writes (address allocation, ...), if anything.
    pub hooks: Option<Arc<dyn crate::registry::StorageHooks>>,
    /// Whether this is a custom resource (served for an established CRD).
    pub custom: bool,
    /// The storage group segment (two resources sharing storage share it).
    pub storage_group: String,
    /// For custom resources: the CRD's schema for this version.
    pub schema: Option<Value>,
    /// For built-in resources: the OpenAPI schema (a `$ref` into the generator's
    /// definitions).
    pub openapi: Option<OpenApiSchema>,
    /// Served in one form, stored in another (None: stored as served).
    pub conversion: Option<crate::conversion::Conversion>,
    /// Whether `deletecollection` is served (not for namespaces, as in kube-apiserver).
    pub delete_collection: bool,
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
        ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
            .into_iter()
            .filter(|v| *v != "deletecollection" || self.delete_collection)
            .collect()
    }
}

/// The resource of a built-in kind; `hooks` are its storage hooks, if any.
pub fn resource<K: Kind>(hooks: Option<Arc<dyn crate::registry::StorageHooks>>) -> Resource {
    use k8s_openapi::Resource as _;
    let group = K::Object::GROUP;
    let namespaced = std::any::TypeId::of::<<K::Object as k8s_openapi::Resource>::Scope>()
        == std::any::TypeId::of::<k8s_openapi::NamespaceResourceScope>();
    Resource {
        group: group.into(),
        version: K::Object::VERSION.into(),
        plural: K::Object::URL_PATH_SEGMENT.into(),
        singular: K::singular(),
        kind: K::Object::KIND.into(),
        namespaced,
        short_names: K::SHORT_NAMES.iter().map(|s| s.to_string()).collect(),
        categories: K::IN_ALL
            .then_some("all")
            .into_iter()
            .chain(K::CATEGORIES.iter().copied())
            .map(String::from)
            .collect(),
        subresources: K::SUBRESOURCES.to_vec(),
        strategy: Arc::new(Typed::<K>::default()),
        hooks,
        custom: false,
        // events.k8s.io Events are stored as core Events (conversion below).
        storage_group: if group.is_empty() || group == "events.k8s.io" { "core".into() } else { group.into() },
        schema: None,
        openapi: Some(schema_of::<K::Object>),
        conversion: (group == "events.k8s.io").then_some(crate::conversion::EVENTS_V1),
        delete_collection: K::DELETE_COLLECTION,
    }
}

/// What built-in resources need from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinConfig {
    /// The service cluster IP range.
    pub service_cidr: (std::net::Ipv4Addr, u8),
}

/// Every built-in kind kube-apiserver serves that vkube serves.
pub fn builtins(config: BuiltinConfig) -> Vec<Resource> {
    let services: Arc<dyn crate::registry::StorageHooks> =
        Arc::new(core::service_addresses::ServiceAddresses::new(config.service_cidr));
    vec![
        resource::<core::namespace::NamespaceKind>(None),
        resource::<core::node::NodeKind>(None),
        resource::<core::pod::PodKind>(None),
        resource::<core::service::ServiceKind>(Some(services)),
        resource::<core::endpoints::EndpointsKind>(None),
        resource::<core::configmap::ConfigMapKind>(None),
        resource::<core::secret::SecretKind>(None),
        resource::<core::serviceaccount::ServiceAccountKind>(None),
        resource::<core::event::EventKind>(None),
        resource::<core::persistentvolumeclaim::PersistentVolumeClaimKind>(None),
        resource::<core::persistentvolume::PersistentVolumeKind>(None),
        resource::<core::resourcequota::ResourceQuotaKind>(None),
        resource::<core::limitrange::LimitRangeKind>(None),
        resource::<core::podtemplate::PodTemplateKind>(None),
        resource::<core::replicationcontroller::ReplicationControllerKind>(None),
        resource::<apps::deployment::DeploymentKind>(None),
        resource::<apps::replicaset::ReplicaSetKind>(None),
        resource::<apps::statefulset::StatefulSetKind>(None),
        resource::<apps::daemonset::DaemonSetKind>(None),
        resource::<apps::controllerrevision::ControllerRevisionKind>(None),
        resource::<coordination::lease::LeaseKind>(None),
        resource::<events::event::EventKind>(None),
        resource::<discovery::endpointslice::EndpointSliceKind>(None),
        resource::<policy::poddisruptionbudget::PodDisruptionBudgetKind>(None),
        resource::<storage::storageclass::StorageClassKind>(None),
        resource::<storage::csidriver::CSIDriverKind>(None),
        resource::<storage::csinode::CSINodeKind>(None),
        resource::<storage::csistoragecapacity::CSIStorageCapacityKind>(None),
        resource::<storage::volumeattachment::VolumeAttachmentKind>(None),
        resource::<storage::volumeattributesclass::VolumeAttributesClassKind>(None),
        resource::<node::runtimeclass::RuntimeClassKind>(None),
        resource::<autoscaling::horizontalpodautoscaler::HorizontalPodAutoscalerKind>(None),
        Resource {
            conversion: Some(crate::conversion::HPA_V1),
            ..resource::<autoscaling::horizontalpodautoscaler::HorizontalPodAutoscalerV1Kind>(None)
        },
        resource::<scheduling::priorityclass::PriorityClassKind>(None),
        resource::<batch::job::JobKind>(None),
        resource::<batch::cronjob::CronJobKind>(None),
        resource::<networking::ingress::IngressKind>(None),
        resource::<networking::networkpolicy::NetworkPolicyKind>(None),
        resource::<networking::ingressclass::IngressClassKind>(None),
        resource::<rbac::role::RoleKind>(None),
        resource::<rbac::rolebinding::RoleBindingKind>(None),
        resource::<rbac::clusterrole::ClusterRoleKind>(None),
        resource::<rbac::clusterrolebinding::ClusterRoleBindingKind>(None),
        resource::<apiextensions::customresourcedefinition::CustomResourceDefinitionKind>(None),
        resource::<admissionregistration::validatingwebhookconfiguration::ValidatingWebhookConfigurationKind>(None),
        resource::<admissionregistration::mutatingwebhookconfiguration::MutatingWebhookConfigurationKind>(None),
        resource::<admissionregistration::validatingadmissionpolicy::ValidatingAdmissionPolicyKind>(None),
        resource::<admissionregistration::validatingadmissionpolicybinding::ValidatingAdmissionPolicyBindingKind>(None),
        resource::<admissionregistration::mutatingadmissionpolicy::MutatingAdmissionPolicyKind>(None),
        resource::<admissionregistration::mutatingadmissionpolicybinding::MutatingAdmissionPolicyBindingKind>(None),
        resource::<apiregistration::apiservice::APIServiceKind>(None),
        resource::<certificates::certificatesigningrequest::CertificateSigningRequestKind>(None),
        resource::<flowcontrol::flowschema::FlowSchemaKind>(None),
        resource::<flowcontrol::prioritylevelconfiguration::PriorityLevelConfigurationKind>(None),
    ]
}

/// The set of served resources; readers take a cheap snapshot.
pub struct Catalog {
    resources: RwLock<Arc<Vec<Arc<Resource>>>>,
    /// Held while the custom resources are rebuilt from the stored CRDs, so a rebuild
    /// from an older list never lands after a newer one (a CRD would vanish from
    /// discovery until the next change).
    rebuild: tokio::sync::Mutex<()>,
    /// Whether `metrics.k8s.io` is served (a usage source is set).
    metrics: std::sync::atomic::AtomicBool,
}

impl Catalog {
    /// The built-in resources.
    pub fn builtin(config: BuiltinConfig) -> Self {
        let list = builtins(config).into_iter().map(Arc::new).collect();
        Catalog {
            resources: RwLock::new(Arc::new(list)),
            rebuild: tokio::sync::Mutex::new(()),
            metrics: Default::default(),
        }
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

    /// Serve `metrics.k8s.io` (in discovery too) or not.
    pub fn serve_metrics(&self, on: bool) {
        self.metrics.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether `metrics.k8s.io` is served.
    pub fn serves_metrics(&self) -> bool {
        self.metrics.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hold this while reading the stored CRDs and replacing the custom resources.
    pub async fn rebuilding(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.rebuild.lock().await
    }

    /// Replace the custom resources (those not built in) with `custom`.
    pub fn set_custom(&self, custom: Vec<Arc<Resource>>) {
        let builtin: Vec<Arc<Resource>> = self.all().iter().filter(|r| !r.custom).cloned().collect();
        let mut next = builtin;
        next.extend(custom);
        if let Ok(mut w) = self.resources.write() {
            *w = Arc::new(next);
        }
    }
}
