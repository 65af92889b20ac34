//! Kinds copied to the host as they are, apart from names: PersistentVolumeClaims
//! (status back), Ingresses (backend services and TLS secrets renamed, status back),
//! ServiceAccounts, and the Endpoints of services without a selector.

use crate::{Error, SyncContext};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

fn rename(v: &mut Value, ptr: &str, ctx: &SyncContext, kind: &str, ns: &str) {
    if let Some(Value::String(s)) = v.pointer_mut(ptr) {
        *s = crate::names::HostNames::host_name_for(ctx, kind, ns, s);
    }
}

/// The host copy of a virtual object of `kind`.
pub fn translate(kind: &str, obj: &Value, ctx: &SyncContext) -> Value {
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut out = json!({"apiVersion": obj.get("apiVersion").cloned().unwrap_or(json!("v1")), "kind": kind, "metadata": ctx.host_metadata(kind, obj)});
    match kind {
        "PersistentVolumeClaim" => {
            let mut spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
            if let Some(m) = spec.as_object_mut() {
                m.remove("volumeName");
                m.remove("dataSource");
                m.remove("dataSourceRef");
            }
            out["spec"] = spec;
        }
        "Ingress" => {
            let mut spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
            rename(&mut spec, "/defaultBackend/service/name", ctx, "Service", &ns);
            for rule in spec.get_mut("rules").and_then(Value::as_array_mut).into_iter().flatten() {
                for path in rule.pointer_mut("/http/paths").and_then(Value::as_array_mut).into_iter().flatten() {
                    rename(path, "/backend/service/name", ctx, "Service", &ns);
                }
            }
            for tls in spec.get_mut("tls").and_then(Value::as_array_mut).into_iter().flatten() {
                rename(tls, "/secretName", ctx, "Secret", &ns);
            }
            out["spec"] = spec;
        }
        "Endpoints" => {
            out["subsets"] = obj.get("subsets").cloned().unwrap_or_else(|| json!([]));
        }
        _ => {
            for f in ["automountServiceAccountToken", "imagePullSecrets"] {
                if let Some(v) = obj.get(f) {
                    out[f] = v.clone();
                }
            }
            for s in out.get_mut("imagePullSecrets").and_then(Value::as_array_mut).into_iter().flatten() {
                rename(s, "/name", ctx, "Secret", &ns);
            }
        }
    }
    out
}

async fn reconcile<K>(obj: Arc<K>, ctx: Arc<SyncContext>) -> Result<Action, Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + serde::Serialize,
{
    let kind = K::kind(&()).to_string();
    let v = serde_json::to_value(&*obj)?;
    if obj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    let name = obj.meta().name.clone().unwrap_or_default();
    if kind == "Endpoints" {
        // Only the endpoints of services without a selector; the others come from the
        // host's own endpoints controller.
        let svcs: Api<Service> = Api::namespaced(ctx.virtual_client.clone(), &ns);
        // The service may not exist yet, or be being recreated with the host's IP.
        let Some(svc) = svcs.get_opt(&name).await? else { return Ok(Action::requeue(Duration::from_secs(1))) };
        if svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| !s.is_empty())
            || (ns == "default" && name == "kubernetes")
        {
            return Ok(Action::await_change());
        }
    }
    let host = translate(&kind, &v, &ctx);
    let host_name = host["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if !ctx.may_write::<K>(&kind, &host_name, &ns, &name).await? {
        ctx.report_name_taken(&kind, &v, &host_name).await;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let api: Api<K> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
    let applied = api.patch(&host_name, &PatchParams::apply(crate::MANAGER).force(), &Patch::Apply(host)).await?;
    if matches!(kind.as_str(), "PersistentVolumeClaim" | "Ingress") {
        let status = serde_json::to_value(&applied)?.get("status").cloned().unwrap_or_default();
        if !status.is_null() && v.get("status") != Some(&status) {
            let virtual_api: Api<K> = Api::namespaced(ctx.virtual_client.clone(), &ns);
            virtual_api
                .patch_status(
                    &name,
                    &PatchParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() },
                    &Patch::Merge(json!({"status": status})),
                )
                .await?;
        }
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}

async fn run_kind<K>(ctx: Arc<SyncContext>)
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + serde::Serialize
        + Send
        + Sync
        + 'static,
{
    let virtual_api: Api<K> = Api::all(ctx.virtual_client.clone());
    let host_api: Api<K> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
    let mapper = ctx.mapper.clone();
    Controller::new(virtual_api, watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(crate::RECONCILE_CONCURRENCY))
        .watches(host_api, watcher::Config::default().labels(&ctx.mapper.selector()), move |h: K| {
            mapper.virtual_of(h.meta()).map(|(ns, name)| ObjectRef::new(&name).within(&ns))
        })
        .run(reconcile::<K>, |_, _, _| Action::requeue(Duration::from_secs(1)), ctx)
        .for_each(|_| async {})
        .await;
}

/// Run the simple syncers that are enabled.
pub async fn run(ctx: Arc<SyncContext>) {
    let mut set = tokio::task::JoinSet::new();
    if ctx.config.syncs("persistentVolumeClaims") {
        set.spawn(run_kind::<PersistentVolumeClaim>(ctx.clone()));
    }
    if ctx.config.syncs("ingresses") {
        set.spawn(run_kind::<Ingress>(ctx.clone()));
    }
    if ctx.config.syncs("serviceAccounts") {
        set.spawn(run_kind::<ServiceAccount>(ctx.clone()));
    }
    if ctx.config.syncs("endpoints") {
        set.spawn(run_kind::<Endpoints>(ctx.clone()));
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> SyncContext {
        // Clients are never used by translate.
        let cfg = kube::Config::new("https://127.0.0.1:1".parse().expect("uri"));
        let client = kube::Client::try_from(cfg).expect("client");
        SyncContext::new(client.clone(), client, crate::names::NameMapper::new("vc", "h"), Default::default())
    }

    #[tokio::test]
    async fn ingress_backends_and_tls_are_renamed() {
        let ing = json!({"apiVersion": "networking.k8s.io/v1", "metadata": {"name": "i", "namespace": "ns"}, "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}], "tls": [{"secretName": "cert"}]}});
        let h = translate("Ingress", &ing, &ctx());
        assert_eq!(h["metadata"]["name"], "i-x-ns-x-vc");
        assert_eq!(h["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"], "web-x-ns-x-vc");
        assert_eq!(h["spec"]["tls"][0]["secretName"], "cert-x-ns-x-vc");
    }

    #[tokio::test]
    async fn claims_drop_their_volume_binding() {
        let pvc = json!({"metadata": {"name": "data", "namespace": "ns"}, "spec": {"volumeName": "pv-1", "accessModes": ["ReadWriteOnce"]}});
        let h = translate("PersistentVolumeClaim", &pvc, &ctx());
        assert!(h["spec"].get("volumeName").is_none());
        assert_eq!(h["spec"]["accessModes"][0], "ReadWriteOnce");
    }
}
