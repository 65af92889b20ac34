//! kube-apiserver's Node authorizer (`--authorization-mode=Node,RBAC`): a kubelet, as
//! `system:node:NAME` in `system:nodes`, reads its own Node and Lease, the pods bound
//! to it (a list or watch only with `spec.nodeName=NAME`), and the secrets,
//! config maps, claims, volumes and service-account tokens those pods use — nothing
//! else of that kind. Everything else a kubelet does is kube's `system:node` rules
//! (register nodes, write pod status and events, …), which NodeRestriction
//! ([`crate::admission::noderestriction`]) then narrows to its own objects.
//!
//! Which pod uses what is a graph kept from the store's pods and claims, as kube keeps
//! it from its informers: followed, so a pod bound a moment ago counts once its change
//! has been seen.

use super::rbac::Rule;
use super::{Attributes, Decision};
use crate::registry::Registry;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use vkube_core::admission::User;

/// The group every kubelet is in.
pub const NODES_GROUP: &str = "system:nodes";
/// A kubelet's user name: this and the node's name.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// Whether `user` is a kubelet, and of which node (`Some("")` for a member of
/// `system:nodes` whose name does not say; kube's `NodeIdentity`).
pub fn node_identity(user: &User) -> Option<&str> {
    if !user.groups.iter().any(|g| g == NODES_GROUP) {
        return None;
    }
    Some(user.name.strip_prefix(NODE_USER_PREFIX).unwrap_or(""))
}

/// What one pod ties to its node.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct PodEdges {
    namespace: String,
    name: String,
    node: String,
    secrets: HashSet<String>,
    configmaps: HashSet<String>,
    claims: HashSet<String>,
    service_account: String,
}

impl PodEdges {
    fn of(pod: &Pod) -> Option<Self> {
        let spec = pod.spec.as_ref()?;
        let node = spec.node_name.clone().filter(|n| !n.is_empty())?;
        let mut e = PodEdges {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            node,
            service_account: spec.service_account_name.clone().unwrap_or_else(|| "default".into()),
            ..Default::default()
        };
        for s in spec.image_pull_secrets.iter().flatten() {
            e.secrets.insert(s.name.clone());
        }
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .map(|c| (&c.env, &c.env_from))
            .chain(spec.ephemeral_containers.iter().flatten().map(|c| (&c.env, &c.env_from)));
        for (env, env_from) in containers {
            for v in env.iter().flatten().filter_map(|v| v.value_from.as_ref()) {
                if let Some(r) = &v.secret_key_ref {
                    e.secrets.insert(r.name.clone());
                }
                if let Some(r) = &v.config_map_key_ref {
                    e.configmaps.insert(r.name.clone());
                }
            }
            for f in env_from.iter().flatten() {
                if let Some(r) = &f.secret_ref {
                    e.secrets.insert(r.name.clone());
                }
                if let Some(r) = &f.config_map_ref {
                    e.configmaps.insert(r.name.clone());
                }
            }
        }
        for v in spec.volumes.iter().flatten() {
            if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
                e.secrets.insert(s);
            }
            if let Some(c) = &v.config_map {
                e.configmaps.insert(c.name.clone());
            }
            for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
                if let Some(s) = &source.secret {
                    e.secrets.insert(s.name.clone());
                }
                if let Some(c) = &source.config_map {
                    e.configmaps.insert(c.name.clone());
                }
            }
            let secret_refs = [
                v.csi.as_ref().and_then(|c| c.node_publish_secret_ref.as_ref()).map(|r| &r.name),
                v.cephfs.as_ref().and_then(|c| c.secret_ref.as_ref()).map(|r| &r.name),
                v.rbd.as_ref().and_then(|c| c.secret_ref.as_ref()).map(|r| &r.name),
                v.iscsi.as_ref().and_then(|c| c.secret_ref.as_ref()).map(|r| &r.name),
                v.flex_volume.as_ref().and_then(|c| c.secret_ref.as_ref()).map(|r| &r.name),
                v.cinder.as_ref().and_then(|c| c.secret_ref.as_ref()).map(|r| &r.name),
                v.azure_file.as_ref().map(|a| &a.secret_name),
            ];
            e.secrets.extend(secret_refs.into_iter().flatten().cloned());
            if let Some(c) = &v.persistent_volume_claim {
                e.claims.insert(c.claim_name.clone());
            }
            if v.ephemeral.is_some() {
                e.claims.insert(format!("{}-{}", e.name, v.name));
            }
        }
        e.secrets.remove("");
        e.configmaps.remove("");
        Some(e)
    }
}

/// Which pods are bound where and what they use; which volume each claim is bound to.
#[derive(Debug, Default)]
struct Graph {
    /// By store key.
    pods: HashMap<String, PodEdges>,
    /// Node → store keys of its pods.
    by_node: HashMap<String, HashSet<String>>,
    /// (namespace, claim) → bound volume.
    claims: HashMap<(String, String), String>,
    /// Store key → (namespace, claim).
    claim_keys: HashMap<String, (String, String)>,
}

impl Graph {
    fn remove_pod(&mut self, key: &str) {
        if let Some(old) = self.pods.remove(key)
            && let Some(keys) = self.by_node.get_mut(&old.node)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.by_node.remove(&old.node);
            }
        }
    }

    fn put_pod(&mut self, key: &str, edges: Option<PodEdges>) {
        self.remove_pod(key);
        if let Some(e) = edges {
            self.by_node.entry(e.node.clone()).or_default().insert(key.to_string());
            self.pods.insert(key.to_string(), e);
        }
    }

    fn put_claim(&mut self, key: &str, claim: Option<(String, String, String)>) {
        if let Some(id) = self.claim_keys.remove(key) {
            self.claims.remove(&id);
        }
        if let Some((ns, name, volume)) = claim {
            self.claim_keys.insert(key.to_string(), (ns.clone(), name.clone()));
            self.claims.insert((ns, name), volume);
        }
    }

    fn pods_on<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a PodEdges> + 'a {
        self.by_node.get(node).into_iter().flatten().filter_map(|k| self.pods.get(k))
    }
}

/// The Node authorizer: the graph, and kube's `system:node` rules for what is not
/// subdivided.
pub struct NodeAuthorizer {
    graph: RwLock<Graph>,
    rules: Vec<Rule>,
}

fn no_opinion(reason: impl Into<String>) -> Decision {
    Decision { allowed: false, reason: reason.into() }
}

fn allow() -> Decision {
    Decision { allowed: true, reason: String::new() }
}

/// Kinds the graph knows objects of.
#[derive(Clone, Copy)]
enum Vertex {
    Secret,
    ConfigMap,
    Claim,
    Volume,
    ServiceAccount,
    Pod,
}

impl NodeAuthorizer {
    /// A Node authorizer with kube's `system:node` rules (`NodeRules()`).
    pub fn new(rules: Vec<Rule>) -> Self {
        NodeAuthorizer { graph: RwLock::new(Graph::default()), rules }
    }

    fn graph(&self) -> std::sync::RwLockReadGuard<'_, Graph> {
        match self.graph.read() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        }
    }

    fn graph_mut(&self) -> std::sync::RwLockWriteGuard<'_, Graph> {
        match self.graph.write() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        }
    }

    /// kube's answer for a kubelet's request; `None` when the user is not a kubelet.
    pub fn decide(&self, a: &Attributes) -> Option<Decision> {
        let node = node_identity(&a.user)?;
        if node.is_empty() {
            return Some(no_opinion(format!("unknown node for user {:?}", a.user.name)));
        }
        if !a.resource_request {
            return Some(self.by_rules(a));
        }
        Some(match (a.api_group.as_str(), a.resource.as_str()) {
            ("", "secrets") => self.read_namespaced(node, Vertex::Secret, a),
            ("", "configmaps") => self.read_namespaced(node, Vertex::ConfigMap, a),
            ("", "persistentvolumeclaims") if a.subresource == "status" => self.status_update(node, a),
            ("", "persistentvolumeclaims") => self.get(node, Vertex::Claim, a),
            ("", "persistentvolumes") => self.get(node, Vertex::Volume, a),
            ("", "serviceaccounts") if a.subresource.is_empty() => self.get(node, Vertex::ServiceAccount, a),
            ("", "serviceaccounts") => self.create_token(node, a),
            ("", "pods") => self.pod(node, a),
            ("", "nodes") => self.node(node, a),
            ("coordination.k8s.io", "leases") => lease(node, a),
            ("storage.k8s.io", "csinodes") => csi_node(node, a),
            ("storage.k8s.io", "volumeattachments") => self.get(node, Vertex::Volume, a),
            _ => self.by_rules(a),
        })
    }

    fn by_rules(&self, a: &Attributes) -> Decision {
        if self.rules.iter().any(|r| r.allows(a)) { allow() } else { no_opinion("") }
    }

    /// Whether a pod bound to `node` uses the object.
    fn related(&self, node: &str, vertex: Vertex, namespace: &str, name: &str) -> bool {
        let graph = self.graph();
        let mut pods = graph.pods_on(node);
        match vertex {
            Vertex::Secret => pods.any(|p| p.namespace == namespace && p.secrets.contains(name)),
            Vertex::ConfigMap => pods.any(|p| p.namespace == namespace && p.configmaps.contains(name)),
            Vertex::Claim => pods.any(|p| p.namespace == namespace && p.claims.contains(name)),
            Vertex::ServiceAccount => pods.any(|p| p.namespace == namespace && p.service_account == name),
            Vertex::Pod => pods.any(|p| p.namespace == namespace && p.name == name),
            Vertex::Volume => pods.any(|p| {
                p.claims
                    .iter()
                    .any(|c| graph.claims.get(&(p.namespace.clone(), c.clone())).is_some_and(|volume| volume == name))
            }),
        }
    }

    fn relation(&self, node: &str, vertex: Vertex, a: &Attributes) -> Decision {
        if a.name.is_empty() {
            return no_opinion("No Object name found");
        }
        if self.related(node, vertex, &a.namespace, &a.name) {
            allow()
        } else {
            no_opinion(format!("no relationship found between node '{node}' and this object"))
        }
    }

    fn read_namespaced(&self, node: &str, vertex: Vertex, a: &Attributes) -> Decision {
        if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
            return no_opinion("can only read resources of this type");
        }
        if !a.subresource.is_empty() {
            return no_opinion("cannot read subresource");
        }
        if a.namespace.is_empty() {
            return no_opinion("can only read namespaced object of this type");
        }
        self.relation(node, vertex, a)
    }

    fn get(&self, node: &str, vertex: Vertex, a: &Attributes) -> Decision {
        if a.verb != "get" {
            return no_opinion("can only get individual resources of this type");
        }
        if !a.subresource.is_empty() {
            return no_opinion("cannot get subresource");
        }
        self.relation(node, vertex, a)
    }

    fn status_update(&self, node: &str, a: &Attributes) -> Decision {
        if !matches!(a.verb.as_str(), "get" | "update" | "patch") {
            return no_opinion("can only get/update/patch this type");
        }
        self.relation(node, Vertex::Claim, a)
    }

    fn create_token(&self, node: &str, a: &Attributes) -> Decision {
        if a.verb != "create" || a.name.is_empty() {
            return no_opinion("can only create tokens for individual service accounts");
        }
        if a.subresource != "token" {
            return no_opinion("can only create token subresource of serviceaccount");
        }
        self.relation(node, Vertex::ServiceAccount, a)
    }

    fn pod(&self, node: &str, a: &Attributes) -> Decision {
        match a.verb.as_str() {
            "get" if a.subresource.is_empty() => self.relation(node, Vertex::Pod, a),
            "list" | "watch" => {
                let own = a.field_selector.split(',').any(|term| {
                    let term = term.trim();
                    let value = term.strip_prefix("spec.nodeName==").or_else(|| term.strip_prefix("spec.nodeName="));
                    value == Some(node)
                });
                if own { allow() } else { no_opinion("can only list/watch pods with spec.nodeName field selector") }
            }
            _ => self.by_rules(a),
        }
    }

    fn node(&self, node: &str, a: &Attributes) -> Decision {
        match a.verb.as_str() {
            "get" | "list" | "watch" if a.name == node => allow(),
            "get" | "list" | "watch" if a.name.is_empty() => {
                no_opinion(format!("node '{node}' cannot read all nodes, only its own Node object"))
            }
            "get" | "list" | "watch" => {
                no_opinion(format!("node '{node}' cannot read '{}', only its own Node object", a.name))
            }
            _ => self.by_rules(a),
        }
    }

    /// Follow the store's pods and claims (through any replica), for ever.
    pub async fn follow(&self, registry: &Registry) {
        let catalog = registry.catalog().clone();
        let (Some(pods), Some(claims)) =
            (catalog.find("", "v1", "pods"), catalog.find("", "v1", "persistentvolumeclaims"))
        else {
            tracing::warn!("pods or claims not served; the Node authorizer relates nothing");
            return;
        };
        let pod_edges = |v: &Value| serde_json::from_value::<Pod>(v.clone()).ok().and_then(|p| PodEdges::of(&p));
        let claim_volume = |v: &Value| {
            let c = serde_json::from_value::<PersistentVolumeClaim>(v.clone()).ok()?;
            let volume = c.spec?.volume_name.filter(|n| !n.is_empty())?;
            Some((c.metadata.namespace.unwrap_or_default(), c.metadata.name.unwrap_or_default(), volume))
        };
        let (pod_prefix, claim_prefix) = (pods.prefix(), claims.prefix());
        tokio::join!(
            follow_objects(
                registry,
                &pod_prefix,
                "pods for the Node authorizer",
                || {
                    let mut g = self.graph_mut();
                    g.pods.clear();
                    g.by_node.clear();
                },
                |key, obj| self.graph_mut().put_pod(key, obj.and_then(pod_edges)),
            ),
            follow_objects(
                registry,
                &claim_prefix,
                "claims for the Node authorizer",
                || {
                    let mut g = self.graph_mut();
                    g.claims.clear();
                    g.claim_keys.clear();
                },
                |key, obj| self.graph_mut().put_claim(key, obj.and_then(claim_volume)),
            ),
        );
    }
}

fn lease(node: &str, a: &Attributes) -> Decision {
    if !matches!(a.verb.as_str(), "get" | "create" | "update" | "patch" | "delete") {
        return no_opinion("can only get, create, update, patch, or delete a node lease");
    }
    if a.namespace != "kube-node-lease" {
        return no_opinion("can only access leases in the \"kube-node-lease\" system namespace");
    }
    if a.verb != "create" && a.name != node {
        return no_opinion("can only access node lease with the same name as the requesting node");
    }
    allow()
}

fn csi_node(node: &str, a: &Attributes) -> Decision {
    if !matches!(a.verb.as_str(), "get" | "create" | "update" | "patch" | "delete") {
        return no_opinion("can only get, create, update, patch, or delete a CSINode");
    }
    if !a.subresource.is_empty() {
        return no_opinion("cannot authorize CSINode subresources");
    }
    if a.verb != "create" && a.name != node {
        return no_opinion("can only access CSINode with the same name as the requesting node");
    }
    allow()
}

/// List the objects under `prefix` (after `reset`), then apply every change after it
/// (`None` for a delete), listing again whenever the watch ends.
async fn follow_objects(
    registry: &Registry,
    prefix: &str,
    what: &str,
    mut reset: impl FnMut(),
    mut apply: impl FnMut(&str, Option<&Value>),
) {
    use futures::StreamExt;
    use vkube_store::EventKind;
    loop {
        match registry.store().list(prefix, Default::default()).await {
            Ok(list) => {
                // What disappeared while no watch ran goes with the rest.
                reset();
                for kv in &list.items {
                    match Registry::decode(kv) {
                        Ok(obj) => apply(&kv.key, Some(&obj)),
                        Err(e) => tracing::warn!(key = %kv.key, error = %e.message, what, "undecodable object"),
                    }
                }
                match registry.store().watch(prefix, list.revision).await {
                    Ok(mut events) => {
                        while let Some(next) = events.next().await {
                            match next {
                                Ok(ev) if ev.kind == EventKind::Delete => apply(&ev.kv.key, None),
                                Ok(ev) => match Registry::decode(&ev.kv) {
                                    Ok(obj) => apply(&ev.kv.key, Some(&obj)),
                                    Err(e) => tracing::warn!(key = %ev.kv.key, error = %e.message, what, "undecodable"),
                                },
                                Err(e) => {
                                    tracing::warn!(error = %e, what, "watch ended; listing again");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, what, "cannot watch; retrying"),
                }
            }
            Err(e) => tracing::warn!(error = %e, what, "cannot list; retrying"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
