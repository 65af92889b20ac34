//! Services: copied to the host with selectors narrowed to this virtual cluster's pods
//! of the same namespace; the host's cluster IP is mirrored back into the virtual
//! service (recreated with that IP, since a cluster IP is immutable).

use crate::names::{MANAGED_BY, VIRTUAL_NAMESPACE};
use crate::{Error, SyncContext};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The host service for a virtual one.
pub fn translate(virtual_svc: &Value, ctx: &SyncContext) -> Value {
    let ns = virtual_svc.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    let mut spec = virtual_svc.get("spec").cloned().unwrap_or_else(|| json!({}));
    if let Some(m) = spec.as_object_mut() {
        m.remove("clusterIP");
        m.remove("clusterIPs");
        m.remove("healthCheckNodePort");
        if let Some(Value::Object(sel)) = m.get_mut("selector")
            && !sel.is_empty()
        {
            sel.insert(MANAGED_BY.into(), json!(ctx.mapper.cluster));
            sel.insert(VIRTUAL_NAMESPACE.into(), json!(ns));
        }
        if let Some(ports) = m.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                if let Some(pm) = p.as_object_mut() {
                    pm.remove("nodePort");
                }
            }
        }
    }
    if virtual_svc.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None") {
        spec["clusterIP"] = json!("None");
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": ctx.host_metadata("Service", virtual_svc), "spec": spec})
}

/// Run the service syncer.
pub async fn run(ctx: Arc<SyncContext>) {
    let api: Api<Service> = Api::all(ctx.virtual_client.clone());
    let host: Api<Service> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
    let mapper = ctx.mapper.clone();
    Controller::new(api, watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(crate::RECONCILE_CONCURRENCY))
        .watches(host, watcher::Config::default().labels(&ctx.mapper.selector()), move |h: Service| {
            mapper.virtual_of(&h.metadata).map(|(ns, name)| ObjectRef::new(&name).within(&ns))
        })
        .run(reconcile, |_, _, _| Action::requeue(Duration::from_secs(1)), ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<SyncContext>) -> Result<Action, Error> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    if svc.metadata.deletion_timestamp.is_some() || (ns == "default" && name == "kubernetes") {
        return Ok(Action::await_change());
    }
    let virtual_v = serde_json::to_value(&*svc)?;
    let host = translate(&virtual_v, &ctx);
    let host_name = host["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if !ctx.may_write::<Service>("Service", &host_name, &ns, &name).await? {
        ctx.report_name_taken("Service", &virtual_v, &host_name).await;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let host_api: Api<Service> = Api::namespaced(ctx.host_client.clone(), &ctx.mapper.host_namespace);
    let applied = host_api.patch(&host_name, &PatchParams::apply(crate::MANAGER).force(), &Patch::Apply(host)).await?;
    let host_ip = applied.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default();
    let virtual_ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default();
    if !host_ip.is_empty() && host_ip != "None" && host_ip != virtual_ip {
        // Mirror the host IP: recreate the virtual service with it.
        let virtual_api: Api<Service> = Api::namespaced(ctx.virtual_client.clone(), &ns);
        let mut next = virtual_v.clone();
        if let Some(md) = next.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in ["uid", "resourceVersion", "creationTimestamp", "managedFields", "generation"] {
                md.remove(f);
            }
        }
        next["spec"]["clusterIP"] = json!(host_ip);
        next["spec"]["clusterIPs"] = json!([host_ip]);
        if let Some(ports) = next.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            let host_ports = applied.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
            for (p, hp) in ports.iter_mut().zip(host_ports.iter()) {
                if let Some(np) = hp.node_port {
                    p["nodePort"] = json!(np);
                }
            }
        }
        let dp = DeleteParams {
            preconditions: svc
                .metadata
                .uid
                .clone()
                .map(|u| kube::api::Preconditions { uid: Some(u), resource_version: None }),
            ..Default::default()
        };
        match virtual_api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
        match virtual_api
            .create(
                &PostParams { field_manager: Some(crate::MANAGER.into()), ..Default::default() },
                &serde_json::from_value(next)?,
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(Duration::from_secs(120)))
}
