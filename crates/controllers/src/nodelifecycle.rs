//! Node lifecycle: a node whose Lease is not renewed within the grace period is marked
//! `Ready=Unknown`; NotReady and unreachable nodes get the usual
//! `node.kubernetes.io/not-ready` / `unreachable` taints (NoSchedule and NoExecute),
//! never twice; pods that do not tolerate a NoExecute taint are evicted (after their
//! `tolerationSeconds`, if any).

use crate::util::{Error, pp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::api::{Api, DeleteParams, ListParams, Patch};
use serde_json::json;
use std::time::Duration;

const MANAGER: &str = "node-lifecycle-controller";
const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Settings.
#[derive(Debug, Clone)]
pub struct NodeLifecycleConfig {
    /// How long a Lease may go unrenewed before the node is Unknown.
    pub grace: Duration,
    /// How often to look.
    pub period: Duration,
    /// Watch Leases and own the not-ready/unreachable taints (off in a virtual cluster,
    /// whose nodes the syncer keeps: there only taint-based eviction runs).
    pub manage_nodes: bool,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig { grace: Duration::from_secs(40), period: Duration::from_secs(1), manage_nodes: true }
    }
}

fn tolerated(tolerations: &[Toleration], t: &Taint) -> Option<Option<i64>> {
    tolerations
        .iter()
        .find(|tol| {
            tol.effect.as_deref().is_none_or(|e| e.is_empty() || e == t.effect)
                && (tol.key.as_deref().is_none_or(|k| k.is_empty()) || tol.key.as_deref() == Some(t.key.as_str()))
                && (tol.operator.as_deref() == Some("Exists")
                    || tol.value.as_deref().unwrap_or_default() == t.value.as_deref().unwrap_or_default())
        })
        .map(|tol| tol.toleration_seconds)
}

/// The taints a node should have for its Ready condition, others kept (no duplicates).
pub fn desired_taints(current: &[Taint], ready: &str, now: &str) -> Vec<Taint> {
    let mut out: Vec<Taint> = current.iter().filter(|t| t.key != NOT_READY && t.key != UNREACHABLE).cloned().collect();
    let key = match ready {
        "True" => None,
        "False" => Some(NOT_READY),
        _ => Some(UNREACHABLE),
    };
    if let Some(k) = key {
        for effect in ["NoSchedule", "NoExecute"] {
            let existing = current.iter().find(|t| t.key == k && t.effect == effect).cloned();
            let time_added = existing.as_ref().and_then(|t| t.time_added.clone());
            out.push(Taint {
                key: k.into(),
                effect: effect.into(),
                value: None,
                time_added: if effect == "NoExecute" {
                    time_added.or_else(|| now.parse().ok().map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time))
                } else {
                    None
                },
            });
        }
    }
    out
}

/// Run until aborted.
pub async fn run(client: kube::Client, cfg: NodeLifecycleConfig) {
    let recorder = crate::util::recorder(&client, MANAGER);
    loop {
        if let Err(e) = pass(&client, &recorder, &cfg).await {
            tracing::warn!("node lifecycle: {e} (retried in {:?})", cfg.period);
        }
        tokio::time::sleep(cfg.period).await;
    }
}

async fn pass(
    client: &kube::Client,
    recorder: &kube::runtime::events::Recorder,
    cfg: &NodeLifecycleConfig,
) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease_list = leases.list(&ListParams::default()).await?.items;
    let now = k8s_openapi::jiff::Timestamp::now();
    let now_s = vkube_core::meta::now_rfc3339();
    for node in nodes.list(&ListParams::default()).await?.items {
        let name = node.metadata.name.clone().unwrap_or_default();
        let conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let reported = conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone());
        let young = node
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| (now.duration_since(t.0).as_secs() as u64) < cfg.grace.as_secs());
        if reported.is_none() && young {
            // A node that has not reported yet is not unreachable (yet).
            continue;
        }
        let mut ready = reported.unwrap_or_else(|| "Unknown".into());
        let renewed = lease_list
            .iter()
            .find(|l| l.metadata.name.as_deref() == Some(name.as_str()))
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0);
        let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let last = renewed.or(created);
        let stale =
            cfg.manage_nodes && last.is_some_and(|t| now.duration_since(t).as_secs() as u64 > cfg.grace.as_secs());
        if stale && ready != "Unknown" {
            let patched: Vec<serde_json::Value> = conditions
                .iter()
                .map(|c| {
                    let mut v = serde_json::to_value(c).unwrap_or_default();
                    if matches!(c.type_.as_str(), "Ready" | "MemoryPressure" | "DiskPressure" | "PIDPressure") {
                        v["status"] = json!("Unknown");
                        v["reason"] = json!("NodeStatusUnknown");
                        v["message"] = json!("Kubelet stopped posting node status.");
                        v["lastTransitionTime"] = json!(now_s);
                    }
                    v
                })
                .collect();
            nodes.patch_status(&name, &pp(MANAGER), &Patch::Merge(json!({"status": {"conditions": patched}}))).await?;
            ready = "Unknown".into();
        }
        let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        if !cfg.manage_nodes {
            evict(client, recorder, &name, &current, now).await?;
            continue;
        }
        let desired = desired_taints(&current, &ready, &now_s);
        let same = desired.len() == current.len()
            && desired.iter().all(|d| current.iter().any(|c| c.key == d.key && c.effect == d.effect));
        if !same {
            nodes.patch(&name, &pp(MANAGER), &Patch::Merge(json!({"spec": {"taints": desired}}))).await?;
        }
        evict(client, recorder, &name, &desired, now).await?;
    }
    Ok(())
}

/// Taint-based eviction: pods on `node` that do not tolerate one of its NoExecute taints
/// go (after their `tolerationSeconds`, if any).
async fn evict(
    client: &kube::Client,
    recorder: &kube::runtime::events::Recorder,
    name: &str,
    taints: &[Taint],
    now: k8s_openapi::jiff::Timestamp,
) -> Result<(), Error> {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    if no_execute.is_empty() {
        return Ok(());
    }
    let pods: Api<Pod> = Api::all(client.clone());
    for pod in pods.list(&ListParams::default().fields(&format!("spec.nodeName={name}"))).await?.items {
        if pod.metadata.deletion_timestamp.is_some() || crate::util::is_terminal(&pod) {
            continue;
        }
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
        let evict = no_execute.iter().any(|t| match tolerated(&tolerations, t) {
            None => true,
            Some(None) => false,
            Some(Some(secs)) => {
                let added = t.time_added.as_ref().map(|x| x.0).unwrap_or(now);
                now.duration_since(added).as_secs() >= secs
            }
        });
        if evict {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            crate::runtime::gone_is_ok(api.delete(&pod_name, &DeleteParams::default()).await)?;
            crate::util::record(
                recorder,
                &kube::Resource::object_ref(&pod, &()),
                false,
                "TaintManagerEviction",
                "Evicting",
                format!("Marking for deletion Pod {ns}/{pod_name}"),
            )
            .await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_follow_ready_without_duplicates() {
        let now = "2026-01-01T00:00:00Z";
        let t = desired_taints(&[], "False", now);
        assert_eq!(t.len(), 2);
        let again = desired_taints(&t, "False", now);
        assert_eq!(again.len(), 2, "no duplicates");
        let unreachable = desired_taints(&again, "Unknown", now);
        assert!(unreachable.iter().all(|t| t.key == UNREACHABLE));
        let user =
            Taint { key: "dedicated".into(), effect: "NoSchedule".into(), value: Some("gpu".into()), time_added: None };
        let back = desired_taints(&[user.clone(), unreachable[0].clone()], "True", now);
        assert_eq!(back, vec![user]);
    }
}
