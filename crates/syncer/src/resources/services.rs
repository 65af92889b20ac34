//! Services: copied to the host with selectors narrowed to this virtual cluster's pods
//! of the same namespace; the host's cluster IP is mirrored back into the virtual
//! service (recreated with that IP, since a cluster IP is immutable).

use crate::engine::ResourceSyncer;
use crate::names::{MANAGED_BY, Naming, VIRTUAL_NAMESPACE};
use crate::{Error, SyncContext};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use std::sync::Arc;
use std::time::Duration;

/// The service syncer.
pub struct ServiceSyncer;

/// The host service for a virtual one: no addresses of the virtual side (the host
/// allocates its own), a selector that picks only this virtual cluster's pods.
pub fn translate(naming: Naming<'_>, svc: &Service) -> Service {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let mut spec = svc.spec.clone().unwrap_or_default();
    let headless = spec.cluster_ip.as_deref() == Some("None");
    spec.cluster_ip = headless.then(|| "None".to_string());
    spec.cluster_ips = None;
    spec.health_check_node_port = None;
    if let Some(selector) = spec.selector.as_mut().filter(|s| !s.is_empty()) {
        selector.insert(MANAGED_BY.into(), naming.mapper.cluster.clone());
        selector.insert(VIRTUAL_NAMESPACE.into(), ns);
    }
    for p in spec.ports.iter_mut().flatten() {
        p.node_port = None;
    }
    Service { metadata: naming.host_metadata("Service", &svc.metadata), spec: Some(spec), status: None }
}

#[async_trait]
impl ResourceSyncer for ServiceSyncer {
    type Object = Service;
    const NAME: &'static str = "service-syncer";

    async fn wanted(&self, _ctx: &SyncContext, svc: &Service) -> Result<bool, Error> {
        Ok(!(svc.metadata.namespace.as_deref() == Some("default")
            && svc.metadata.name.as_deref() == Some("kubernetes")))
    }

    fn translate(&self, ctx: &SyncContext, svc: &Service) -> Service {
        translate(ctx.naming(), svc)
    }

    /// Mirror the host's cluster IP (and node ports): recreate the virtual service with
    /// them, since a cluster IP is immutable.
    async fn after_apply(&self, ctx: &SyncContext, svc: &Service, host: &Service) -> Result<(), Error> {
        let host_spec = host.spec.clone().unwrap_or_default();
        let host_ip = host_spec.cluster_ip.clone().unwrap_or_default();
        let virtual_ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default();
        if host_ip.is_empty() || host_ip == "None" || host_ip == virtual_ip {
            return Ok(());
        }
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let mut next = svc.clone();
        next.metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: svc.metadata.labels.clone(),
            annotations: svc.metadata.annotations.clone(),
            owner_references: svc.metadata.owner_references.clone(),
            finalizers: svc.metadata.finalizers.clone(),
            ..Default::default()
        };
        next.status = None;
        let spec = next.spec.get_or_insert_with(Default::default);
        spec.cluster_ip = Some(host_ip.clone());
        spec.cluster_ips = Some(vec![host_ip]);
        for (p, hp) in spec.ports.iter_mut().flatten().zip(host_spec.ports.iter().flatten()) {
            if hp.node_port.is_some() {
                p.node_port = hp.node_port;
            }
        }
        let virtual_api: Api<Service> = Api::namespaced(ctx.virtual_client.clone(), &ns);
        let dp = DeleteParams {
            preconditions: svc.metadata.uid.clone().map(|u| Preconditions { uid: Some(u), resource_version: None }),
            ..Default::default()
        };
        match virtual_api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        // The service is gone now and nothing would bring it back but this create: a
        // refusal that passes (a ResourceQuota still counting the deleted copy until
        // the quota controller recounts) is retried for a while, not given up on.
        let post = PostParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut wait = Duration::from_millis(50);
        loop {
            match virtual_api.create(&post, &next).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
                Err(kube::Error::Api(e))
                    if (e.code == 403 || e.code == 429 || e.code >= 500) && std::time::Instant::now() < deadline =>
                {
                    tracing::warn!(
                        "re-creating virtual service {ns}/{name} with the host's cluster IP: {}; retrying",
                        e.message
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn resync(&self) -> Duration {
        Duration::from_secs(120)
    }
}

/// Run the service syncer.
pub async fn run(ctx: Arc<SyncContext>) {
    crate::engine::run(ctx, ServiceSyncer).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_services_select_only_this_clusters_pods_and_keep_no_virtual_addresses() {
        let mapper = crate::names::NameMapper::new("vc", "host");
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u"},
            "spec": {"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"], "selector": {"app": "web"},
                "ports": [{"port": 80, "nodePort": 30001}]}}))
        .expect("service");
        let host = translate(mapper.naming(), &svc);
        assert_eq!(host.metadata.name.as_deref(), Some("web-x-ns-x-vc"));
        let spec = host.spec.expect("spec");
        assert_eq!((spec.cluster_ip, spec.cluster_ips), (None, None));
        let selector = spec.selector.expect("selector");
        assert_eq!(
            (selector["app"].as_str(), selector[MANAGED_BY].as_str(), selector[VIRTUAL_NAMESPACE].as_str()),
            ("web", "vc", "ns")
        );
        assert_eq!(spec.ports.expect("ports")[0].node_port, None);
        let headless: Service = serde_json::from_value(
            json!({"metadata": {"name": "h", "namespace": "ns"}, "spec": {"clusterIP": "None"}}),
        )
        .expect("svc");
        assert_eq!(translate(mapper.naming(), &headless).spec.and_then(|s| s.cluster_ip).as_deref(), Some("None"));
    }
}
