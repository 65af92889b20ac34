//! PersistentVolumeClaims: copied without their binding (the host binds its own volume);
//! their status flows back.

use crate::engine::ResourceSyncer;
use crate::names::Naming;
use crate::{Error, SyncContext};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use std::sync::Arc;

/// The claim syncer.
pub struct ClaimSyncer;

/// The host claim for a virtual one.
pub fn translate(naming: Naming<'_>, pvc: &PersistentVolumeClaim) -> PersistentVolumeClaim {
    let mut spec = pvc.spec.clone().unwrap_or_default();
    spec.volume_name = None;
    spec.data_source = None;
    spec.data_source_ref = None;
    PersistentVolumeClaim {
        metadata: naming.host_metadata("PersistentVolumeClaim", &pvc.metadata),
        spec: Some(spec),
        status: None,
    }
}

#[async_trait]
impl ResourceSyncer for ClaimSyncer {
    type Object = PersistentVolumeClaim;
    const NAME: &'static str = "claim-syncer";

    fn translate(&self, ctx: &SyncContext, pvc: &PersistentVolumeClaim) -> PersistentVolumeClaim {
        translate(ctx.naming(), pvc)
    }

    async fn after_apply(
        &self,
        ctx: &SyncContext,
        pvc: &PersistentVolumeClaim,
        host: &PersistentVolumeClaim,
    ) -> Result<(), Error> {
        crate::engine::status_back(ctx, pvc, &pvc.status, &host.status).await
    }
}

/// Run the claim syncer.
pub async fn run(ctx: Arc<SyncContext>) {
    crate::engine::run(ctx, ClaimSyncer).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_drop_their_volume_binding() {
        let mapper = crate::names::NameMapper::new("vc", "h");
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "ns"}, "spec": {"volumeName": "pv-1", "accessModes": ["ReadWriteOnce"]}})).expect("pvc");
        let h = translate(mapper.naming(), &pvc);
        let spec = h.spec.expect("spec");
        assert_eq!(spec.volume_name, None);
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
        assert_eq!(h.metadata.name.as_deref(), Some("data-x-ns-x-vc"));
    }
}
