//! Endpoints of services without a selector (the host's endpoints controller makes the
//! others): copied under the host service's name.

use crate::engine::ResourceSyncer;
use crate::names::Naming;
use crate::{Error, SyncContext};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::Api;
use std::sync::Arc;

/// The endpoints syncer.
pub struct EndpointsSyncer;

/// The host endpoints for virtual ones.
pub fn translate(naming: Naming<'_>, ep: &Endpoints) -> Endpoints {
    Endpoints {
        metadata: naming.host_metadata("Endpoints", &ep.metadata),
        subsets: Some(ep.subsets.clone().unwrap_or_default()),
    }
}

#[async_trait]
impl ResourceSyncer for EndpointsSyncer {
    type Object = Endpoints;
    const NAME: &'static str = "endpoints-syncer";

    /// Only the endpoints of a selector-less service (not `default/kubernetes`). A
    /// missing service is an error, so the endpoints are retried: it may be being
    /// recreated with the host's cluster IP.
    async fn wanted(&self, ctx: &SyncContext, ep: &Endpoints) -> Result<bool, Error> {
        let ns = ep.metadata.namespace.clone().unwrap_or_default();
        let name = ep.metadata.name.clone().unwrap_or_default();
        if ns == "default" && name == "kubernetes" {
            return Ok(false);
        }
        let services: Api<Service> = Api::namespaced(ctx.virtual_client.clone(), &ns);
        let svc = services.get(&name).await?;
        Ok(svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_none_or(|s| s.is_empty()))
    }

    fn translate(&self, ctx: &SyncContext, ep: &Endpoints) -> Endpoints {
        translate(ctx.naming(), ep)
    }
}

/// Run the endpoints syncer.
pub async fn run(ctx: Arc<SyncContext>) {
    crate::engine::run(ctx, EndpointsSyncer).await;
}
