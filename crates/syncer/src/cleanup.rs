//! The "only the host copy exists" side of every syncer: host objects of this virtual
//! cluster whose virtual origin is gone (or no longer synced) are deleted. Only objects
//! carrying this cluster's marks are ever considered.

use crate::SyncContext;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
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

/// What a sweep needs of one host object of this virtual cluster.
struct Mark {
    host_name: String,
    namespace: String,
    name: String,
    origin_uid: String,
}

/// The host objects of one kind, kept current by a metadata-only watch (no list of
/// every host object each pass: with 1,000 pods, those lists were most of the
/// syncer's idle CPU and tens of MiB of short-lived memory).
#[derive(Default)]
struct HostIndex {
    objects: HashMap<String, Mark>,
    synced: bool,
}

type Index = Arc<Mutex<HostIndex>>;

/// Follow one kind's host objects of this virtual cluster into `index`.
async fn follow<K>(ctx: Arc<SyncContext>, index: Index)
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
    let mut stream = watcher(api, watcher::Config::default().labels(&ctx.mapper.selector())).default_backoff().boxed();
    let mut listed: Vec<String> = Vec::new();
    while let Some(ev) = stream.next().await {
        let Ok(mut index) = index.lock() else { return };
        let upsert = |index: &mut HostIndex, o: PartialObjectMeta<K>| -> Option<String> {
            let meta = o.metadata;
            let host_name = meta.name.clone()?;
            let Some((namespace, name)) = ctx.mapper.virtual_of(&meta) else {
                index.objects.remove(&host_name);
                return None;
            };
            let origin_uid =
                meta.annotations.as_ref().and_then(|a| a.get(crate::names::OBJECT_UID)).cloned().unwrap_or_default();
            index.objects.insert(host_name.clone(), Mark { host_name: host_name.clone(), namespace, name, origin_uid });
            Some(host_name)
        };
        match ev {
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(o)) => listed.extend(upsert(&mut index, o)),
            Ok(watcher::Event::InitDone) => {
                let keep: std::collections::HashSet<String> = std::mem::take(&mut listed).into_iter().collect();
                index.objects.retain(|k, _| keep.contains(k));
                index.synced = true;
            }
            Ok(watcher::Event::Apply(o)) => {
                upsert(&mut index, o);
            }
            Ok(watcher::Event::Delete(o)) => {
                if let Some(n) = &o.metadata.name {
                    index.objects.remove(n);
                }
            }
            Err(e) => tracing::debug!("cleanup watch {}: {e}", K::kind(&())),
        }
    }
}

async fn sweep_kind<K>(
    ctx: &SyncContext,
    index: &Index,
    used_check: bool,
    cached: Option<Live>,
) -> Result<(), kube::Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + serde::Serialize,
{
    let marks: Vec<(String, String, String, String)> = match index.lock() {
        Ok(i) if i.synced => i
            .objects
            .values()
            .map(|m| (m.host_name.clone(), m.namespace.clone(), m.name.clone(), m.origin_uid.clone()))
            .collect(),
        _ => return Ok(()),
    };
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
    let kind = K::kind(&()).to_string();
    let host: Api<K> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
    for (host_name, ns, name, origin_uid) in marks {
        let keep = match live.get(&(ns.clone(), name.clone())) {
            None => false,
            Some(uid) if *uid != origin_uid => false,
            Some(_) => {
                let all =
                    (kind == "Secret" && ctx.config.all_secrets) || (kind == "ConfigMap" && ctx.config.all_config_maps);
                !used_check || all || crate::config::is_used(ctx, &kind, &ns, &name).await.unwrap_or(true)
            }
        };
        if !keep {
            let _ = host.delete(&host_name, &DeleteParams::background()).await;
        }
    }
    Ok(())
}

/// The host indexes, one per synced kind.
struct Indexes {
    pods: Index,
    services: Index,
    config_maps: Index,
    secrets: Index,
    claims: Index,
    ingresses: Index,
    service_accounts: Index,
    endpoints: Index,
}

/// One pass over every synced kind.
async fn sweep(ctx: &SyncContext, i: &Indexes) -> Result<(), kube::Error> {
    sweep_kind::<Pod>(ctx, &i.pods, false, cached_pods(ctx)).await?;
    sweep_kind::<Service>(ctx, &i.services, false, None).await?;
    sweep_kind::<ConfigMap>(ctx, &i.config_maps, true, None).await?;
    sweep_kind::<Secret>(ctx, &i.secrets, true, None).await?;
    sweep_kind::<PersistentVolumeClaim>(ctx, &i.claims, false, None).await?;
    sweep_kind::<Ingress>(ctx, &i.ingresses, false, None).await?;
    sweep_kind::<ServiceAccount>(ctx, &i.service_accounts, false, None).await?;
    sweep_kind::<Endpoints>(ctx, &i.endpoints, false, None).await?;
    Ok(())
}

/// Keep the host indexes current and sweep periodically.
pub async fn run(ctx: Arc<SyncContext>, period: Duration) {
    let i = Indexes {
        pods: Index::default(),
        services: Index::default(),
        config_maps: Index::default(),
        secrets: Index::default(),
        claims: Index::default(),
        ingresses: Index::default(),
        service_accounts: Index::default(),
        endpoints: Index::default(),
    };
    let mut set = tokio::task::JoinSet::new();
    set.spawn(follow::<Pod>(ctx.clone(), i.pods.clone()));
    set.spawn(follow::<Service>(ctx.clone(), i.services.clone()));
    set.spawn(follow::<ConfigMap>(ctx.clone(), i.config_maps.clone()));
    set.spawn(follow::<Secret>(ctx.clone(), i.secrets.clone()));
    set.spawn(follow::<PersistentVolumeClaim>(ctx.clone(), i.claims.clone()));
    set.spawn(follow::<Ingress>(ctx.clone(), i.ingresses.clone()));
    set.spawn(follow::<ServiceAccount>(ctx.clone(), i.service_accounts.clone()));
    set.spawn(follow::<Endpoints>(ctx.clone(), i.endpoints.clone()));
    loop {
        if let Err(e) = sweep(&ctx, &i).await {
            tracing::debug!("cleanup: {e}");
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
            for o in api.list(&lp).await?.items {
                if mapper.owns(&o.metadata) {
                    let _ = api
                        .delete(
                            o.metadata.name.as_deref().unwrap_or_default(),
                            &DeleteParams { grace_period_seconds: Some(0), ..Default::default() },
                        )
                        .await;
                    n += 1;
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
    Ok(n)
}
