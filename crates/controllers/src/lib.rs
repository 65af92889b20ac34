//! vkube-controllers: the in-cluster controllers, as clients of the Kubernetes API
//! (kube-runtime), so they run unchanged in the simulated host and in virtual clusters.
//!
//! Start with [`ControllerManager::run`]: it elects a leader through a Lease and, while
//! leading, runs every controller: [`namespace`], [`gc`], [`deployment`],
//! [`replicaset`], [`statefulset`], [`daemonset`], [`job`], [`cronjob`], [`ttlafterfinished`], [`hpa`], [`endpoints`] (and EndpointSlices), [`serviceaccount`],
//! [`pdb`], [`resourcequota`], [`nodelifecycle`], and [`rootca`] when given the cluster CA.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod hpa;
pub mod job;
pub mod leader;
pub mod namespace;
pub mod nodelifecycle;
pub mod pdb;
pub mod replicaset;
pub mod resourcequota;
pub mod rootca;
pub mod runtime;
pub mod serviceaccount;
pub mod statefulset;
pub mod ttlafterfinished;
pub mod util;
pub mod volumebinding;

use std::time::Duration;

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
        }
    }
}

/// All controllers under one leader election.
pub struct ControllerManager;

impl ControllerManager {
    /// Run until aborted.
    pub async fn run(client: kube::Client, cfg: ManagerConfig) {
        let lease = leader::LeaderConfig {
            namespace: "kube-system".into(),
            name: "vkube-controller-manager".into(),
            identity: cfg.identity.clone(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        };
        let c = client.clone();
        leader::run_elected(client, lease, move || Self::run_unelected(c.clone(), cfg.clone())).await;
    }

    /// Run every controller, without an election of its own (for callers that elect
    /// one leader for more than the controllers).
    pub async fn run_unelected(client: kube::Client, cfg: ManagerConfig) {
        let mut set = tokio::task::JoinSet::new();
        set.spawn(namespace::run(client.clone()));
        set.spawn(gc::run(client.clone(), cfg.gc_period));
        set.spawn(deployment::run(client.clone()));
        set.spawn(replicaset::run(client.clone()));
        set.spawn(replicaset::run_replication_controllers(client.clone()));
        set.spawn(job::run(client.clone()));
        set.spawn(cronjob::run(client.clone()));
        set.spawn(ttlafterfinished::run(client.clone()));
        set.spawn(hpa::run(client.clone()));
        set.spawn(daemonset::run(client.clone()));
        set.spawn(statefulset::run(client.clone()));
        set.spawn(endpoints::run(client.clone()));
        set.spawn(serviceaccount::run(client.clone()));
        set.spawn(pdb::run(client.clone()));
        set.spawn(resourcequota::run(client.clone()));
        if let Some(ca) = cfg.root_ca_pem.clone() {
            set.spawn(rootca::run(client.clone(), ca));
        }
        if cfg.volume_binding {
            set.spawn(volumebinding::run(client.clone()));
        }
        if cfg.node_lifecycle_enabled {
            set.spawn(nodelifecycle::run(client.clone(), cfg.node_lifecycle.clone()));
        }
        while set.join_next().await.is_some() {}
    }
}
