//! The root CA publisher: a `kube-root-ca.crt` ConfigMap holding the cluster's CA
//! bundle in every active namespace (kube-controller-manager's root-ca-cert-publisher),
//! which the service-account volume of every pod mounts.

use crate::runtime::RunLogged;
use crate::util::Error;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use std::sync::Arc;

/// The ConfigMap's name.
pub const NAME: &str = "kube-root-ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

struct Ctx {
    client: kube::Client,
    ca_pem: String,
}

/// Run the publisher with the CA bundle `ca_pem`.
pub async fn run(client: kube::Client, ca_pem: String) {
    let ns: Api<Namespace> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::all(client.clone());
    Controller::new(ns, watcher::Config::default())
        .watches(cms, watcher::Config::default().fields(&format!("metadata.name={NAME}")), |cm| {
            cm.metadata.namespace.clone().map(|ns| kube::runtime::reflector::ObjectRef::new(&ns))
        })
        .run_logged("rootca", reconcile, Arc::new(Ctx { client, ca_pem }))
        .await;
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let data = json!({"ca.crt": ctx.ca_pem});
    match cms.get_opt(NAME).await? {
        None => {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": NAME, "annotations": {"kubernetes.io/description": DESCRIPTION}},
                "data": data,
            }))?;
            match cms
                .create(&PostParams { field_manager: Some("root-ca-cert-publisher".into()), ..Default::default() }, &cm)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(cm) if cm.data.as_ref().and_then(|d| d.get("ca.crt")) != Some(&ctx.ca_pem) => {
            let pp = PatchParams { field_manager: Some("root-ca-cert-publisher".into()), ..Default::default() };
            cms.patch(NAME, &pp, &Patch::Merge(json!({"data": data}))).await?;
        }
        Some(_) => {}
    }
    Ok(Action::await_change())
}
