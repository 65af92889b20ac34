//! Service addresses: cluster IPs from the service CIDR and node ports from 30000-32767,
//! allocated on create and on every update that needs more (ClusterIP → NodePort or
//! LoadBalancer, a port added, ExternalName → ClusterIP, `externalTrafficPolicy: Local`
//! on a LoadBalancer) and released when no longer used (the reverse changes, a port
//! removed, the service deleted), with kube-apiserver's validation errors.
//!
//! # Invariants
//! - Every address in use is claimed in the store under
//!   `/vkube/allocations/{serviceips|nodeports}/X`, naming the service that holds it, so
//!   API server replicas sharing a store never hand one out twice.
//! - A claim is valid while its service exists and uses the address, or while it is
//!   younger than a minute (the service may still be being written, by this replica or
//!   another); any other claim is stale and taken over.
//! - A dry run claims nothing: it answers with addresses that are free now.

use super::service::{needs_health_check_port, needs_node_ports, service_type};
use crate::registry::{HookContext, HookGuard, Registry, StorageHooks};
use crate::resources::Resource;
use k8s_openapi::api::core::v1::Service;
use rand::Rng;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use vkube_core::status::{ApiError, Cause};
use vkube_store::{ListOptions, Store, StoreError};

/// Where claims live in the store (outside `/registry/`).
const CLAIMS: &str = "/vkube/allocations/";
/// The node port range (kube-apiserver's default `--service-node-port-range`).
const NODE_PORTS: std::ops::RangeInclusive<i32> = 30000..=32767;
/// How long a claim whose service does not (yet) use it stays valid.
const CLAIM_GRACE_SECONDS: u64 = 60;

/// What kind of address a claim is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    ClusterIp,
    NodePort,
}

impl Kind {
    fn segment(self) -> &'static str {
        match self {
            Kind::ClusterIp => "serviceips",
            Kind::NodePort => "nodeports",
        }
    }
}

/// Allocates cluster IPs and node ports for services.
pub struct ServiceAddresses {
    cidr: (Ipv4Addr, u8),
    lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn cluster_ip(svc: &Service) -> Option<&str> {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).filter(|ip| !ip.is_empty())
}

/// Every address a stored service holds: (kind, value).
fn held(svc: &Service) -> BTreeSet<(Kind, String)> {
    let mut out = BTreeSet::new();
    if service_type(svc) != "ExternalName"
        && let Some(ip) = cluster_ip(svc).filter(|ip| *ip != "None")
    {
        out.insert((Kind::ClusterIp, ip.to_string()));
    }
    let spec = svc.spec.as_ref();
    for p in spec.and_then(|s| s.ports.as_ref()).into_iter().flatten() {
        if let Some(np) = p.node_port.filter(|n| *n > 0) {
            out.insert((Kind::NodePort, np.to_string()));
        }
    }
    if let Some(hc) = spec.and_then(|s| s.health_check_node_port).filter(|n| *n > 0) {
        out.insert((Kind::NodePort, hc.to_string()));
    }
    out
}

fn invalid(name: &str, cause: Cause) -> ApiError {
    ApiError::invalid("", "Service", name, vec![cause])
}

impl ServiceAddresses {
    /// Addresses from `cidr`.
    pub fn new(cidr: (Ipv4Addr, u8)) -> Self {
        ServiceAddresses { cidr, lock: Default::default() }
    }

    /// Fill in and claim the addresses `obj` (a Service) needs, given the stored `old`
    /// one on an update. Addresses `old` holds and `obj` keeps need no new claim.
    ///
    /// # Errors
    /// 422 with kube-apiserver's causes for a requested address that is malformed, out
    /// of range or taken; 500 when a range is full or the store fails.
    pub async fn allocate(
        &self,
        store: &dyn Store,
        res: &Resource,
        obj: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let mut svc: Service = serde_json::from_value(obj.clone()).map_err(|e| ApiError::internal(e.to_string()))?;
        let old: Option<Service> = old.map(|o| serde_json::from_value(o.clone())).transpose().ok().flatten();
        let kept = old.as_ref().map(held).unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let owner = (svc.metadata.namespace.clone().unwrap_or_default(), name.clone());
        let claims = Claims { store, res, owner: &owner, dry_run };
        if service_type(&svc) == "ExternalName" {
            return Ok(());
        }
        let spec = svc.spec.get_or_insert_with(Default::default);
        // Cluster IP.
        let requested = spec.cluster_ip.clone().filter(|ip| !ip.is_empty());
        let ip = match requested {
            Some(ip) if ip == "None" => ip,
            Some(ip) if kept.contains(&(Kind::ClusterIp, ip.clone())) => ip,
            Some(ip) => {
                self.check_in_range(&name, &ip)?;
                if !claims.take(Kind::ClusterIp, &ip).await? {
                    return Err(invalid(
                        &name,
                        Cause::invalid_raw(
                            "spec.clusterIPs",
                            &json!([ip]).to_string(),
                            format!("failed to allocate IP {ip}: provided IP is already allocated"),
                        ),
                    ));
                }
                ip
            }
            None => self.allocate_ip(&claims).await?,
        };
        spec.cluster_ip = Some(ip.clone());
        spec.cluster_ips = Some(vec![ip.clone()]);
        if ip == "None" {
            spec.ip_family_policy = None;
        }
        // Node ports.
        let needs_node_ports = needs_node_ports(&svc);
        let needs_health_check = needs_health_check_port(&svc);
        let spec = svc.spec.get_or_insert_with(Default::default);
        let mut mine: BTreeSet<i32> = BTreeSet::new();
        if needs_node_ports {
            for (i, p) in spec.ports.iter_mut().flatten().enumerate() {
                let field = format!("spec.ports[{i}].nodePort");
                let port = match p.node_port.filter(|n| *n > 0) {
                    Some(np) if kept.contains(&(Kind::NodePort, np.to_string())) || mine.contains(&np) => np,
                    Some(np) => self.claim_port(&claims, &name, &field, np).await?,
                    None => self.allocate_port(&claims, &mine).await?,
                };
                mine.insert(port);
                p.node_port = Some(port);
            }
        }
        if needs_health_check {
            let port = match spec.health_check_node_port.filter(|n| *n > 0) {
                Some(np) if kept.contains(&(Kind::NodePort, np.to_string())) => np,
                Some(np) => self.claim_port(&claims, &name, "spec.healthCheckNodePort", np).await?,
                None => self.allocate_port(&claims, &mine).await?,
            };
            spec.health_check_node_port = Some(port);
        }
        *obj = serde_json::to_value(&svc).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(())
    }

    /// After a write (or the removal, `new` None) of a service: release the claims of
    /// what `old` held and `new` no longer does. Failures are logged; a claim left
    /// behind is stale (its service no longer uses it) and taken over when next needed.
    pub async fn release_unused(&self, store: &dyn Store, new: Option<&Value>, old: &Value) {
        let Ok(old) = serde_json::from_value::<Service>(old.clone()) else { return };
        let still: BTreeSet<(Kind, String)> =
            new.and_then(|n| serde_json::from_value::<Service>(n.clone()).ok()).map(|n| held(&n)).unwrap_or_default();
        let owner = (old.metadata.namespace.clone().unwrap_or_default(), old.metadata.name.clone().unwrap_or_default());
        for (kind, value) in held(&old).difference(&still) {
            let key = format!("{CLAIMS}{}/{value}", kind.segment());
            match store.get(&key).await {
                Ok(Some(kv)) => {
                    let holder: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
                    if holder["namespace"] == owner.0.as_str()
                        && holder["name"] == owner.1.as_str()
                        && let Err(e) = store.delete(&key, Some(kv.mod_revision)).await
                    {
                        tracing::warn!("releasing {key}: {e}");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("releasing {key}: {e}"),
            }
        }
    }

    fn check_in_range(&self, name: &str, ip: &str) -> Result<(), ApiError> {
        let parsed: Ipv4Addr = ip.parse().map_err(|_| {
            invalid(
                name,
                Cause::invalid(
                    "spec.clusterIPs[0]",
                    ip,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ),
            )
        })?;
        let (base, bits) = self.cidr;
        let size = 1u64 << (32 - u32::from(bits));
        let offset = u64::from(u32::from(parsed)).wrapping_sub(u64::from(u32::from(base)));
        if u32::from(parsed) < u32::from(base) || offset >= size {
            return Err(invalid(
                name,
                Cause::invalid_raw(
                    "spec.clusterIPs",
                    &json!([ip]).to_string(),
                    format!("failed to allocate IP {ip}: the provided network does not match the current range"),
                ),
            ));
        }
        Ok(())
    }

    async fn allocate_ip(&self, claims: &Claims<'_>) -> Result<String, ApiError> {
        let (base, bits) = self.cidr;
        let base = u32::from(base);
        let size = 1u32 << (32 - u32::from(bits));
        let start = rand::rng().random_range(2..size.saturating_sub(1).max(3));
        for i in 0..size {
            let off = (start + i) % size;
            // The network address, the `kubernetes` service's and the broadcast address.
            if off == 0 || off == 1 || off == size - 1 {
                continue;
            }
            let candidate = Ipv4Addr::from(base + off).to_string();
            if claims.take(Kind::ClusterIp, &candidate).await? {
                return Ok(candidate);
            }
        }
        Err(ApiError::internal("failed to allocate a serviceIP: range is full"))
    }

    async fn claim_port(&self, claims: &Claims<'_>, name: &str, field: &str, port: i32) -> Result<i32, ApiError> {
        if !NODE_PORTS.contains(&port) {
            return Err(invalid(
                name,
                Cause::invalid_raw(
                    field,
                    &port.to_string(),
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORTS.start(),
                        NODE_PORTS.end()
                    ),
                ),
            ));
        }
        if !claims.take(Kind::NodePort, &port.to_string()).await? {
            return Err(invalid(
                name,
                Cause::invalid_raw(field, &port.to_string(), "provided port is already allocated"),
            ));
        }
        Ok(port)
    }

    async fn allocate_port(&self, claims: &Claims<'_>, mine: &BTreeSet<i32>) -> Result<i32, ApiError> {
        let span = NODE_PORTS.end() - NODE_PORTS.start() + 1;
        let start = rand::rng().random_range(0..span);
        for i in 0..span {
            let port = NODE_PORTS.start() + (start + i) % span;
            if !mine.contains(&port) && claims.take(Kind::NodePort, &port.to_string()).await? {
                return Ok(port);
            }
        }
        Err(ApiError::internal("failed to allocate a nodePort: range is full"))
    }
}

#[async_trait::async_trait]
impl StorageHooks for ServiceAddresses {
    async fn begin_create(&self, ctx: HookContext<'_>, obj: &mut Value) -> Result<HookGuard, ApiError> {
        let guard = self.lock.clone().lock_owned().await;
        self.allocate(ctx.store, ctx.resource, obj, None, ctx.dry_run).await?;
        Ok(Some(guard))
    }

    async fn begin_update(&self, ctx: HookContext<'_>, obj: &mut Value, old: &Value) -> Result<HookGuard, ApiError> {
        let guard = self.lock.clone().lock_owned().await;
        self.allocate(ctx.store, ctx.resource, obj, Some(old), ctx.dry_run).await?;
        Ok(Some(guard))
    }

    async fn after_update(&self, store: &dyn Store, new: &Value, old: &Value) {
        self.release_unused(store, Some(new), old).await;
    }

    async fn after_delete(&self, store: &dyn Store, old: &Value) {
        self.release_unused(store, None, old).await;
    }
}

/// Claims for one service in one request.
struct Claims<'a> {
    store: &'a dyn Store,
    res: &'a Resource,
    owner: &'a (String, String),
    dry_run: bool,
}

impl Claims<'_> {
    /// Claim `value` for the service (on a dry run: whether it could be claimed).
    async fn take(&self, kind: Kind, value: &str) -> Result<bool, ApiError> {
        let key = format!("{CLAIMS}{}/{value}", kind.segment());
        let internal = |e: StoreError| ApiError::internal(format!("allocating {value}: {e}"));
        let record: bytes::Bytes =
            json!({"namespace": self.owner.0, "name": self.owner.1, "at": now_seconds()}).to_string().into();
        let existing = self.store.get(&key).await.map_err(internal)?;
        let Some(kv) = existing else {
            if self.dry_run {
                return Ok(true);
            }
            return match self.store.create(&key, record).await {
                Ok(_) => Ok(true),
                Err(StoreError::AlreadyExists(_)) => Ok(false),
                Err(e) => Err(internal(e)),
            };
        };
        let holder: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        let (ns, name) =
            (holder["namespace"].as_str().unwrap_or_default(), holder["name"].as_str().unwrap_or_default());
        if (ns, name) == (self.owner.0.as_str(), self.owner.1.as_str()) {
            return Ok(true);
        }
        if now_seconds().saturating_sub(holder["at"].as_u64().unwrap_or(0)) < CLAIM_GRACE_SECONDS {
            return Ok(false);
        }
        // Older than the grace period: valid only while its service uses the address.
        if let Some(service) = self.store.get(&self.res.key(ns, name)).await.map_err(internal)? {
            let in_use = Registry::decode(&service)
                .ok()
                .and_then(|v| serde_json::from_value::<Service>(v).ok())
                .is_some_and(|s| held(&s).contains(&(kind, value.to_string())));
            if in_use {
                return Ok(false);
            }
        }
        if self.dry_run {
            return Ok(true);
        }
        match self.store.update(&key, record, kv.mod_revision).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(internal(e)),
        }
    }
}

/// Addresses held by the services in the store that have no claim (written before claims
/// existed, or by a restore): claim them for their services, so nothing hands them out.
///
/// # Errors
/// Store errors.
pub async fn claim_unclaimed(store: &dyn Store, res: &Resource) -> Result<usize, ApiError> {
    let all = store.list(&res.prefix(), ListOptions::default()).await.map_err(|e| Registry::store_error(res, "", e))?;
    let mut claimed = 0;
    for kv in &all.items {
        let Ok(svc) = Registry::decode(kv)
            .and_then(|v| serde_json::from_value::<Service>(v).map_err(|e| ApiError::internal(e.to_string())))
        else {
            continue;
        };
        let owner = (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default());
        let claims = Claims { store, res, owner: &owner, dry_run: false };
        for (kind, value) in held(&svc) {
            let key = format!("{CLAIMS}{}/{value}", kind.segment());
            if store.get(&key).await.map_err(|e| ApiError::internal(e.to_string()))?.is_none()
                && claims.take(kind, &value).await?
            {
                claimed += 1;
            }
        }
    }
    Ok(claimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(v: Value) -> Service {
        serde_json::from_value(v).expect("service")
    }

    #[test]
    fn what_a_service_holds_depends_on_its_type() {
        let np = svc(
            json!({"spec": {"type": "NodePort", "clusterIP": "10.0.0.3", "ports": [{"port": 80, "nodePort": 30001}]}}),
        );
        assert!(needs_node_ports(&np));
        assert_eq!(
            held(&np),
            [(Kind::ClusterIp, "10.0.0.3".to_string()), (Kind::NodePort, "30001".to_string())].into()
        );
        let headless = svc(json!({"spec": {"clusterIP": "None"}}));
        assert!(held(&headless).is_empty());
        let lb = svc(
            json!({"spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "externalTrafficPolicy": "Local"}}),
        );
        assert!(!needs_node_ports(&lb) && needs_health_check_port(&lb));
        let external = svc(json!({"spec": {"type": "ExternalName", "clusterIP": "10.0.0.9"}}));
        assert!(held(&external).is_empty());
    }
}
