//! A `default` ServiceAccount in every active namespace.

use crate::runtime::RunLogged;
use crate::util::Error;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use std::sync::Arc;

struct Ctx {
    client: kube::Client,
}

/// Run the service account controller.
pub async fn run(client: kube::Client) {
    let ns: Api<Namespace> = Api::all(client.clone());
    let sas: Api<ServiceAccount> = Api::all(client.clone());
    Controller::new(ns, watcher::Config::default())
        .watches(sas, watcher::Config::default().fields("metadata.name=default"), |sa| {
            sa.metadata.namespace.clone().map(|ns| kube::runtime::reflector::ObjectRef::new(&ns))
        })
        .run_logged("serviceaccount", reconcile, Arc::new(Ctx { client }))
        .await;
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let sas: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    if sas.get_opt("default").await?.is_none() {
        let sa: ServiceAccount = serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}}))?;
        match sas
            .create(&PostParams { field_manager: Some("serviceaccount-controller".into()), ..Default::default() }, &sa)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}
