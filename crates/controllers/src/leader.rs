//! Leader election through a coordination.k8s.io Lease, so two controller managers never
//! act at once: the holder renews; others take over when `leaseDurationSeconds` passes
//! without a renewal. Writes are compare-and-swap on the Lease's resourceVersion.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::time::Duration;

/// Settings of one election.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This candidate's identity.
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews (and candidates retry).
    pub retry_period: Duration,
}

fn micro_now() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// Try once to acquire or renew; true if this candidate holds the lease afterwards.
pub async fn try_acquire(client: &kube::Client, cfg: &LeaderConfig) -> bool {
    attempt(client, cfg).await == Some(true)
}

/// One attempt: `Some(held)`, or `None` when the API could not be asked (the holder then
/// keeps leading until its renew deadline passes, as client-go's leader election does).
async fn attempt(client: &kube::Client, cfg: &LeaderConfig) -> Option<bool> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let now = k8s_openapi::jiff::Timestamp::now();
    let written = |r: Result<Lease, kube::Error>| match r {
        Ok(_) => Some(true),
        // Someone else wrote first.
        Err(kube::Error::Api(e)) if e.code == 409 => Some(false),
        Err(_) => None,
    };
    match api.get_opt(&cfg.name).await {
        Ok(None) => {
            let lease = json!({"metadata": {"name": cfg.name, "namespace": cfg.namespace}, "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": cfg.lease_duration.as_secs(), "acquireTime": micro_now(), "renewTime": micro_now(), "leaseTransitions": 0}});
            match serde_json::from_value(lease) {
                Ok(l) => written(api.create(&PostParams::default(), &l).await),
                Err(_) => Some(false),
            }
        }
        Ok(Some(mut lease)) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let expired = spec.renew_time.as_ref().is_none_or(|t| {
                now.duration_since(t.0).as_secs() > i64::from(spec.lease_duration_seconds.unwrap_or(15))
            });
            if holder != cfg.identity && !holder.is_empty() && !expired {
                return Some(false);
            }
            let mut next = serde_json::to_value(&spec).unwrap_or_default();
            if holder != cfg.identity {
                next["acquireTime"] = json!(micro_now());
                next["leaseTransitions"] = json!(spec.lease_transitions.unwrap_or(0) + 1);
            }
            next["holderIdentity"] = json!(cfg.identity);
            next["leaseDurationSeconds"] = json!(cfg.lease_duration.as_secs());
            next["renewTime"] = json!(micro_now());
            lease.spec = serde_json::from_value(next).ok();
            let name = cfg.name.clone();
            written(api.replace(&name, &PostParams::default(), &lease).await)
        }
        Err(_) => None,
    }
}

/// Run `work` while holding the lease: started on acquiring, aborted on losing it.
pub async fn run_elected<F, Fut>(client: kube::Client, cfg: LeaderConfig, work: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut running: Option<tokio::task::JoinHandle<()>> = None;
    // client-go's renew deadline: two thirds of the lease.
    let renew_deadline = cfg.lease_duration * 2 / 3;
    let mut renewed = std::time::Instant::now();
    loop {
        let held = match attempt(&client, &cfg).await {
            Some(true) => {
                renewed = std::time::Instant::now();
                true
            }
            Some(false) => false,
            // Unreachable API: a leader keeps leading until its renew deadline.
            None => running.is_some() && renewed.elapsed() < renew_deadline,
        };
        match (held, running.is_some()) {
            (true, false) => {
                tracing::info!("{} became leader of {}/{}", cfg.identity, cfg.namespace, cfg.name);
                running = Some(tokio::spawn(work()));
            }
            (false, true) => {
                tracing::warn!("{} lost leadership of {}/{}", cfg.identity, cfg.namespace, cfg.name);
                if let Some(t) = running.take() {
                    t.abort();
                }
            }
            _ => {}
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
}

/// Give the lease up if this candidate holds it (client-go's `ReleaseOnCancel`), so
/// another candidate takes over at its next retry instead of waiting the lease out.
pub async fn release(client: &kube::Client, cfg: &LeaderConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else { return };
    let spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    let mut next = serde_json::to_value(&spec).unwrap_or_default();
    next["holderIdentity"] = json!("");
    next["leaseDurationSeconds"] = json!(1);
    next["renewTime"] = json!(micro_now());
    lease.spec = serde_json::from_value(next).ok();
    let name = cfg.name.clone();
    // Best effort at shutdown: if the handover fails, the lease simply expires.
    if let Err(e) = api.replace(&name, &PostParams::default(), &lease).await {
        tracing::warn!("handing over the leader lease {name}: {e} (it expires instead)");
    }
}
