//! Ingresses: backend services and TLS secrets renamed to their host copies; status
//! (the load balancer's address) flows back.

use crate::engine::ResourceSyncer;
use crate::names::Naming;
use crate::{Error, SyncContext};
use async_trait::async_trait;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use std::sync::Arc;

/// The ingress syncer.
pub struct IngressSyncer;

/// The host ingress for a virtual one.
pub fn translate(naming: Naming<'_>, ing: &Ingress) -> Ingress {
    let ns = ing.metadata.namespace.clone().unwrap_or_default();
    let mut spec = ing.spec.clone().unwrap_or_default();
    let rename_backend = |b: &mut IngressBackend| {
        if let Some(svc) = b.service.as_mut() {
            svc.name = naming.host_name("Service", &ns, &svc.name);
        }
    };
    if let Some(b) = spec.default_backend.as_mut() {
        rename_backend(b);
    }
    for rule in spec.rules.iter_mut().flatten() {
        for path in rule.http.iter_mut().flat_map(|h| h.paths.iter_mut()) {
            rename_backend(&mut path.backend);
        }
    }
    for tls in spec.tls.iter_mut().flatten() {
        if let Some(secret) = tls.secret_name.as_mut() {
            *secret = naming.host_name("Secret", &ns, secret);
        }
    }
    Ingress { metadata: naming.host_metadata("Ingress", &ing.metadata), spec: Some(spec), status: None }
}

#[async_trait]
impl ResourceSyncer for IngressSyncer {
    type Object = Ingress;
    const NAME: &'static str = "ingress-syncer";

    fn translate(&self, ctx: &SyncContext, ing: &Ingress) -> Ingress {
        translate(ctx.naming(), ing)
    }

    async fn after_apply(&self, ctx: &SyncContext, ing: &Ingress, host: &Ingress) -> Result<(), Error> {
        crate::engine::status_back(ctx, ing, &ing.status, &host.status).await
    }
}

/// Run the ingress syncer.
pub async fn run(ctx: Arc<SyncContext>) {
    crate::engine::run(ctx, IngressSyncer).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backends_and_tls_are_renamed() {
        let mapper = crate::names::NameMapper::new("vc", "h");
        let ing: Ingress = serde_json::from_value(json!({"metadata": {"name": "i", "namespace": "ns"}, "spec": {"defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}}, "rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}], "tls": [{"secretName": "cert"}]}})).expect("ingress");
        let h = serde_json::to_value(translate(mapper.naming(), &ing)).expect("json");
        assert_eq!(h["metadata"]["name"], "i-x-ns-x-vc");
        assert_eq!(h["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"], "web-x-ns-x-vc");
        assert_eq!(h["spec"]["defaultBackend"]["service"]["name"], "fallback-x-ns-x-vc");
        assert_eq!(h["spec"]["tls"][0]["secretName"], "cert-x-ns-x-vc");
    }
}
