//! ServiceAccounts (`sync.toHost.serviceAccounts`): copied with their pull secrets renamed.

use crate::SyncContext;
use crate::engine::ResourceSyncer;
use crate::names::Naming;
use async_trait::async_trait;
use k8s_openapi::api::core::v1::{LocalObjectReference, ServiceAccount};
use std::sync::Arc;

/// The service account syncer.
pub struct ServiceAccountSyncer;

/// The host service account for a virtual one.
pub fn translate(naming: Naming<'_>, sa: &ServiceAccount) -> ServiceAccount {
    let ns = sa.metadata.namespace.clone().unwrap_or_default();
    ServiceAccount {
        metadata: naming.host_metadata("ServiceAccount", &sa.metadata),
        automount_service_account_token: sa.automount_service_account_token,
        image_pull_secrets: sa.image_pull_secrets.as_ref().map(|secrets| {
            secrets.iter().map(|s| LocalObjectReference { name: naming.host_name("Secret", &ns, &s.name) }).collect()
        }),
        secrets: None,
    }
}

#[async_trait]
impl ResourceSyncer for ServiceAccountSyncer {
    type Object = ServiceAccount;
    const NAME: &'static str = "serviceaccount-syncer";

    fn translate(&self, ctx: &SyncContext, sa: &ServiceAccount) -> ServiceAccount {
        translate(ctx.naming(), sa)
    }
}

/// Run the service account syncer.
pub async fn run(ctx: Arc<SyncContext>) {
    crate::engine::run(ctx, ServiceAccountSyncer).await;
}
