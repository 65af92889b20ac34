//! The "only the host copy exists" side of every syncer: host objects of this virtual
//! cluster whose virtual origin is gone (or no longer synced) are deleted. Only objects
//! carrying this cluster's marks are ever considered.

use crate::SyncContext;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

type Live = HashMap<(String, String), String>;

/// The virtual pods (namespace, name) → uid, from the pod syncer's cache once it has
/// listed (no list of every pod each pass).
fn cached_pods(ctx: &SyncContext) -> Option<Live> {
    let cache = ctx.virtual_pods.get()?;
    futures::FutureExt::now_or_never(cache.wait_until_ready())?.ok()?;
    Some(
        cache
            .state()
            .iter()
            .filter_map(|p| {
                let m = &p.metadata;
                Some(((m.namespace.clone()?, m.name.clone()?), m.uid.clone().unwrap_or_default()))
            })
            .collect(),
    )
}

async fn sweep_kind<K>(ctx: &SyncContext, used_check: bool, cached: Option<Live>) -> Result<(), kube::Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + serde::Serialize,
{
    let kind = K::kind(&()).to_string();
    let Some(marks) = ctx.host_index.snapshot(&kind) else { return Ok(()) };
    if marks.is_empty() {
        return Ok(());
    }
    // One list of the virtual side per pass, not one read per host object.
    let live: Live = match cached {
        Some(live) => live,
        None => Api::<K>::all(ctx.virtual_client.clone())
            .list_metadata(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|o| Some(((o.metadata.namespace?, o.metadata.name?), o.metadata.uid.unwrap_or_default())))
            .collect(),
    };
    let host: Api<K> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
    for (host_name, origin) in marks {
        let (ns, name) = (origin.namespace, origin.name);
        // A copy is kept under the name its origin maps to (or mapped to, before names
        // were made one-to-one); a copy under any other name is a stale duplicate.
        let named_right = host_name == ctx.mapper.host_name(&name, &ns)
            || ctx.mapper.legacy_host_name(&name, &ns).as_deref() == Some(host_name.as_str());
        let keep = match live.get(&(ns.clone(), name.clone())) {
            None => false,
            Some(uid) if *uid != origin.uid => false,
            Some(_) if !named_right => false,
            Some(_) => {
                let all =
                    (kind == "Secret" && ctx.config.all_secrets) || (kind == "ConfigMap" && ctx.config.all_config_maps);
                !used_check || all || crate::config::is_used(ctx, &kind, &ns, &name).await.unwrap_or(true)
            }
        };
        if !keep {
            match host.delete(&host_name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => tracing::warn!("cleanup: deleting host {kind} {host_name}: {e}"),
            }
        }
    }
    Ok(())
}

/// One pass over every synced kind.
async fn sweep(ctx: &SyncContext) -> Result<(), kube::Error> {
    sweep_kind::<Pod>(ctx, false, cached_pods(ctx)).await?;
    sweep_kind::<Service>(ctx, false, None).await?;
    sweep_kind::<ConfigMap>(ctx, true, None).await?;
    sweep_kind::<Secret>(ctx, true, None).await?;
    sweep_kind::<PersistentVolumeClaim>(ctx, false, None).await?;
    sweep_kind::<Ingress>(ctx, false, None).await?;
    sweep_kind::<ServiceAccount>(ctx, false, None).await?;
    sweep_kind::<Endpoints>(ctx, false, None).await?;
    Ok(())
}

/// Sweep periodically (the host index is followed by [`crate::Syncer::run`]).
pub async fn run(ctx: Arc<SyncContext>, period: Duration) {
    ctx.host_index.wait_ready().await;
    loop {
        if let Err(e) = sweep(&ctx).await {
            tracing::warn!("cleanup: {e}");
        }
        tokio::time::sleep(period).await;
    }
}

/// Delete every host object this virtual cluster created, and nothing else (uninstall).
///
/// # Errors
/// API errors.
pub async fn uninstall(host_client: kube::Client, mapper: &crate::names::NameMapper) -> Result<usize, kube::Error> {
    let mut n = 0;
    let lp = ListParams::default().labels(&mapper.selector());
    macro_rules! wipe {
        ($k:ty) => {{
            let api: Api<$k> = Api::namespaced(host_client.clone(), &mapper.host_namespace);
            let items = match api.list(&lp).await {
                Ok(list) => list.items,
                // Credentials for what the virtual cluster syncs (`vkube host-rbac`) may
                // not list a kind it does not sync: it made none of those.
                Err(kube::Error::Api(e)) if e.code == 403 => {
                    tracing::warn!("uninstall: skipping {}: {}", stringify!($k), e.message);
                    Vec::new()
                }
                Err(e) => return Err(e),
            };
            for o in items {
                if mapper.owns(&o.metadata) {
                    let name = o.metadata.name.as_deref().unwrap_or_default();
                    match api.delete(name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await
                    {
                        Ok(_) => n += 1,
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }};
    }
    wipe!(Pod);
    wipe!(Service);
    wipe!(ConfigMap);
    wipe!(Secret);
    wipe!(PersistentVolumeClaim);
    wipe!(Ingress);
    wipe!(ServiceAccount);
    wipe!(Endpoints);
    wipe!(k8s_openapi::api::core::v1::ResourceQuota);
    wipe!(k8s_openapi::api::core::v1::LimitRange);
    Ok(n)
}
