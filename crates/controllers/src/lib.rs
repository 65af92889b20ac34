//! vkube-controllers: the in-cluster controllers, as clients of the Kubernetes API
//! (kube-runtime), so they run unchanged in the simulated host and in virtual clusters.
//!
//! Start with [`ControllerManager::run`]: it elects a leader through a Lease and, while
//! leading, runs every controller: [`namespace`], [`gc`], [`deployment`],
//! [`replicaset`], [`statefulset`], [`daemonset`], [`job`], [`cronjob`], [`ttlafterfinished`], [`hpa`], [`endpoints`] (and EndpointSlices), [`serviceaccount`],
//! [`pdb`], [`resourcequota`], [`nodelifecycle`], and [`rootca`] when given the cluster CA.
//!
//! Each controller acts as its own service account in `kube-system`, bound by
//! kube-apiserver's bootstrap policy to its `system:controller:NAME` role, as
//! kube-controller-manager does with `--use-service-account-credentials` ([`Clients`]).

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslicemirroring;
pub mod gc;
pub mod hpa;
pub mod job;
pub mod leader;
pub mod namespace;
pub mod nodelifecycle;
pub mod pdb;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod rootca;
pub mod runtime;
pub mod serviceaccount;
pub mod statefulset;
pub mod ttlafterfinished;
pub mod util;
pub mod volumebinding;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The service accounts (in `kube-system`) the controllers act as, under
/// kube-controller-manager's names: kube-apiserver's bootstrap policy binds each to its
/// `system:controller:NAME` cluster role.
pub const CONTROLLERS: &[&str] = &[
    "namespace-controller",
    "generic-garbage-collector",
    "deployment-controller",
    "replicaset-controller",
    "replication-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "horizontal-pod-autoscaler",
    "daemon-set-controller",
    "statefulset-controller",
    "endpoint-controller",
    "endpointslice-controller",
    "endpointslicemirroring-controller",
    "service-account-controller",
    "disruption-controller",
    "resourcequota-controller",
    "root-ca-cert-publisher",
    "persistent-volume-binder",
    "node-controller",
    "pod-garbage-collector",
];

/// The user kube-controller-manager itself is (leader election).
pub const MANAGER_USER: &str = "system:kube-controller-manager";

/// The user name of controller `name`'s service account.
pub fn controller_user(name: &str) -> String {
    format!("system:serviceaccount:kube-system:{name}")
}

/// The groups of a `kube-system` service account.
pub const CONTROLLER_GROUPS: &[&str] = &["system:serviceaccounts", "system:serviceaccounts:kube-system"];

/// The client each controller uses: one per identity, or one shared by all.
#[derive(Clone)]
pub struct Clients {
    manager: kube::Client,
    each: Arc<BTreeMap<String, kube::Client>>,
}

impl Clients {
    /// Every controller acts as `client`'s user.
    pub fn shared(client: kube::Client) -> Self {
        Clients { manager: client, each: Default::default() }
    }

    /// The manager acts as [`MANAGER_USER`] and each of [`CONTROLLERS`] as its service
    /// account, with the kubeconfigs `kubeconfig(user, groups)` renders for them.
    ///
    /// # Errors
    /// The first error of `kubeconfig`, or a kubeconfig that makes no client.
    pub async fn per_controller<F>(kubeconfig: F) -> anyhow::Result<Self>
    where
        F: Fn(&str, &[&str]) -> anyhow::Result<String>,
    {
        let manager = util::client_from_kubeconfig(&kubeconfig(MANAGER_USER, &[])?).await?;
        let mut each = BTreeMap::new();
        for name in CONTROLLERS {
            let text = kubeconfig(&controller_user(name), CONTROLLER_GROUPS)?;
            each.insert((*name).to_string(), util::client_from_kubeconfig(&text).await?);
        }
        Ok(Clients { manager, each: Arc::new(each) })
    }

    /// The manager's own client (leader election).
    pub fn manager(&self) -> kube::Client {
        self.manager.clone()
    }

    /// Controller `name`'s client (one of [`CONTROLLERS`]).
    pub fn of(&self, name: &str) -> kube::Client {
        self.each.get(name).cloned().unwrap_or_else(|| self.manager.clone())
    }
}

impl From<kube::Client> for Clients {
    fn from(client: kube::Client) -> Self {
        Clients::shared(client)
    }
}

/// Settings of the controller manager.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Identity for leader election.
    pub identity: String,
    /// Node lifecycle settings.
    pub node_lifecycle: nodelifecycle::NodeLifecycleConfig,
    /// The least time between two garbage-collector passes (changes gather meanwhile).
    pub gc_period: Duration,
    /// Run the node lifecycle controller (off in virtual clusters whose nodes the syncer owns).
    pub node_lifecycle_enabled: bool,
    /// The cluster CA (PEM) to publish as `kube-root-ca.crt` in every namespace.
    pub root_ca_pem: Option<String>,
    /// Bind claims to volumes and provision simulated ones ([`volumebinding`]): on a
    /// host; off in virtual clusters, whose claims the host binds.
    pub volume_binding: bool,
    /// Pod garbage collection ([`podgc`]).
    pub pod_gc: podgc::PodGcConfig,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            identity: format!("vkube-{}", std::process::id()),
            node_lifecycle: Default::default(),
            gc_period: Duration::from_millis(250),
            node_lifecycle_enabled: true,
            root_ca_pem: None,
            volume_binding: false,
            pod_gc: Default::default(),
        }
    }
}

/// All controllers under one leader election.
pub struct ControllerManager;

impl ControllerManager {
    /// Run until aborted.
    pub async fn run(clients: Clients, cfg: ManagerConfig) {
        let lease = leader::LeaderConfig {
            namespace: "kube-system".into(),
            name: "kube-controller-manager".into(),
            identity: cfg.identity.clone(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        };
        let c = clients.clone();
        leader::run_elected(clients.manager(), lease, move || Self::run_unelected(c.clone(), cfg.clone())).await;
    }

    /// Run every controller, without an election of its own (for callers that elect
    /// one leader for more than the controllers).
    pub async fn run_unelected(clients: Clients, cfg: ManagerConfig) {
        let c = |name: &str| clients.of(name);
        let mut set = tokio::task::JoinSet::new();
        set.spawn(namespace::run(c("namespace-controller")));
        set.spawn(gc::run(c("generic-garbage-collector"), cfg.gc_period));
        set.spawn(deployment::run(c("deployment-controller")));
        set.spawn(replicaset::run(c("replicaset-controller")));
        set.spawn(replicaset::run_replication_controllers(c("replication-controller")));
        set.spawn(job::run(c("job-controller")));
        set.spawn(cronjob::run(c("cronjob-controller")));
        set.spawn(ttlafterfinished::run(c("ttl-after-finished-controller")));
        set.spawn(podgc::run(c("pod-garbage-collector"), cfg.pod_gc.clone()));
        set.spawn(hpa::run(c("horizontal-pod-autoscaler")));
        set.spawn(daemonset::run(c("daemon-set-controller")));
        set.spawn(statefulset::run(c("statefulset-controller")));
        set.spawn(endpoints::run(c("endpoint-controller"), c("endpointslice-controller")));
        set.spawn(endpointslicemirroring::run(c("endpointslicemirroring-controller")));
        set.spawn(serviceaccount::run(c("service-account-controller")));
        set.spawn(pdb::run(c("disruption-controller")));
        set.spawn(resourcequota::run(c("resourcequota-controller")));
        if let Some(ca) = cfg.root_ca_pem.clone() {
            set.spawn(rootca::run(c("root-ca-cert-publisher"), ca));
        }
        if cfg.volume_binding {
            set.spawn(volumebinding::run(c("persistent-volume-binder")));
        }
        if cfg.node_lifecycle_enabled {
            set.spawn(nodelifecycle::run(c("node-controller"), cfg.node_lifecycle.clone()));
        }
        while set.join_next().await.is_some() {}
    }
}
