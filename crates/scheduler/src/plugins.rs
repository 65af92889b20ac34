//! Filter and score plugins: pure functions over a pod, a node and a snapshot of what
//! is already placed. Reasons use kube-scheduler's words, so the aggregated message
//! reads like `0/3 nodes are available: 1 node(s) were unschedulable, ...`.

use k8s_openapi::api::core::v1::{Node, NodeSelectorTerm, Pod, Taint, Toleration};
use std::collections::{BTreeMap, HashMap};
use vkube_core::quantity::parse_milli;
use vkube_core::selector::{LabelSelector, Operator, Requirement};

/// What a placed pod contributes to a node.
#[derive(Debug, Clone, Default)]
pub struct PlacedPod {
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// CPU request, milli-cores.
    pub cpu: i128,
    /// Memory request, milli-bytes.
    pub memory: i128,
    /// Host ports (protocol, port).
    pub host_ports: Vec<(String, i32)>,
    /// Required anti-affinity terms of the placed pod (topology key, selector, namespaces).
    pub anti_affinity: Vec<(String, LabelSelector, Vec<String>)>,
    /// The controller owning it (uid), for spreading.
    pub owner: Option<String>,
}

/// A node with what is placed on it, and what filters need of it precomputed.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node.
    pub node: std::sync::Arc<Node>,
    /// Pods placed (bound or assumed).
    pub pods: Vec<PlacedPod>,
    name: String,
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
    unschedulable: bool,
    alloc_cpu: i128,
    alloc_mem: i128,
    alloc_pods: i128,
    used_cpu: i128,
    used_mem: i128,
    has_anti_affinity: bool,
}

impl NodeInfo {
    /// Wrap a node with the pods placed on it.
    pub fn new(node: std::sync::Arc<Node>, pods: Vec<PlacedPod>) -> Self {
        let alloc = |res: &str| {
            node.status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
                .and_then(|a| a.get(res))
                .and_then(|q| parse_milli(&q.0))
                .unwrap_or(0)
        };
        let mut info = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: node_taints(&node),
            unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true),
            alloc_cpu: alloc("cpu"),
            alloc_mem: alloc("memory"),
            alloc_pods: alloc("pods") / 1000,
            used_cpu: 0,
            used_mem: 0,
            has_anti_affinity: false,
            pods: Vec::new(),
            node,
        };
        for p in pods {
            info.add(p);
        }
        info
    }
    /// Place a pod on the node.
    pub fn add(&mut self, p: PlacedPod) {
        self.used_cpu += p.cpu;
        self.used_mem += p.memory;
        self.has_anti_affinity |= !p.anti_affinity.is_empty();
        self.pods.push(p);
    }
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

/// The cluster a filter looks at: every node, and the required anti-affinity terms of
/// pods already placed (domain value included), computed once per pod.
pub struct Cluster<'a> {
    /// All nodes.
    pub nodes: &'a [NodeInfo],
    anti: Vec<(String, String, LabelSelector, Vec<String>)>,
}

impl<'a> Cluster<'a> {
    /// Index a set of nodes.
    pub fn new(nodes: &'a [NodeInfo]) -> Self {
        let mut anti = Vec::new();
        for n in nodes.iter().filter(|n| n.has_anti_affinity) {
            for p in &n.pods {
                for (key, sel, namespaces) in &p.anti_affinity {
                    if let Some(domain) = n.labels.get(key) {
                        anti.push((key.clone(), domain.clone(), sel.clone(), namespaces.clone()));
                    }
                }
            }
        }
        Cluster { nodes, anti }
    }
}

/// A pod's resource requests: containers summed, the largest init container if bigger,
/// plus overhead.
pub fn requests(pod: &Pod) -> (i128, i128) {
    let Some(spec) = pod.spec.as_ref() else { return (0, 0) };
    let get = |c: &k8s_openapi::api::core::v1::Container, r: &str| {
        c.resources
            .as_ref()
            .and_then(|res| {
                res.requests.as_ref().and_then(|m| m.get(r)).or_else(|| res.limits.as_ref().and_then(|m| m.get(r)))
            })
            .and_then(|q| parse_milli(&q.0))
            .unwrap_or(0)
    };
    let mut cpu: i128 = spec.containers.iter().map(|c| get(c, "cpu")).sum();
    let mut mem: i128 = spec.containers.iter().map(|c| get(c, "memory")).sum();
    for ic in spec.init_containers.iter().flatten() {
        cpu = cpu.max(get(ic, "cpu"));
        mem = mem.max(get(ic, "memory"));
    }
    if let Some(o) = &spec.overhead {
        cpu += o.get("cpu").and_then(|q| parse_milli(&q.0)).unwrap_or(0);
        mem += o.get("memory").and_then(|q| parse_milli(&q.0)).unwrap_or(0);
    }
    (cpu, mem)
}

fn host_ports(pod: &Pod) -> Vec<(String, i32)> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .filter_map(|p| {
                    p.host_port.filter(|hp| *hp > 0).map(|hp| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), hp))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn controller_uid(pod: &Pod) -> Option<String> {
    pod.metadata.owner_references.as_ref()?.iter().find(|o| o.controller == Some(true)).map(|o| o.uid.clone())
}

fn term_selector(term: &k8s_openapi::api::core::v1::PodAffinityTerm) -> LabelSelector {
    let v = term.label_selector.as_ref().and_then(|s| serde_json::to_value(s).ok());
    LabelSelector::from_object(v.as_ref()).unwrap_or_default()
}

/// What a pod contributes once placed.
pub fn placed(pod: &Pod) -> PlacedPod {
    let (cpu, memory) = requests(pod);
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let anti_affinity = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
        .map(|terms| {
            terms
                .iter()
                .map(|t| {
                    (
                        t.topology_key.clone(),
                        term_selector(t),
                        t.namespaces.clone().unwrap_or_else(|| vec![namespace.clone()]),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    PlacedPod {
        namespace,
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        cpu,
        memory,
        host_ports: host_ports(pod),
        anti_affinity,
        owner: controller_uid(pod),
    }
}

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
        let key_ok = t.key.as_deref().is_none_or(|k| k.is_empty()) || t.key.as_deref() == Some(taint.key.as_str());
        let value_ok = match t.operator.as_deref() {
            Some("Exists") => true,
            _ => {
                t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
                    && t.key.as_deref().is_some_and(|k| !k.is_empty())
            }
        };
        effect_ok && key_ok && value_ok
    })
}

fn node_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone());
    let key = match ready.as_deref() {
        Some("True") => None,
        Some("False") => Some("node.kubernetes.io/not-ready"),
        _ => Some("node.kubernetes.io/unreachable"),
    };
    if let Some(k) = key
        && !taints.iter().any(|t| t.key == k && t.effect == "NoSchedule")
    {
        taints.push(Taint { key: k.into(), effect: "NoSchedule".into(), ..Default::default() });
    }
    taints
}

fn expr_requirement(e: &k8s_openapi::api::core::v1::NodeSelectorRequirement) -> Requirement {
    let operator = match e.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::Gt,
        _ => Operator::Lt,
    };
    Requirement { key: e.key.clone(), operator, values: e.values.clone().unwrap_or_default() }
}

fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let label_sel = LabelSelector { requirements: exprs.iter().map(expr_requirement).collect(), nothing: false };
    let field_labels: BTreeMap<String, String> = [("metadata.name".to_string(), name.to_string())].into();
    let field_sel = LabelSelector { requirements: fields.iter().map(expr_requirement).collect(), nothing: false };
    label_sel.matches(labels) && field_sel.matches(&field_labels)
}

/// Reasons a node cannot take a pod (empty: it fits). Like kube-scheduler 1.36, plugins
/// run in its default profile's order (NodeUnschedulable, TaintToleration, NodeAffinity,
/// NodePorts, NodeResourcesFit, PodTopologySpread, InterPodAffinity) and the first that
/// fails decides.
pub fn filter(pod: &Pod, node: &NodeInfo, cluster: &Cluster<'_>) -> Vec<String> {
    let all = cluster.nodes;
    let mut reasons = Vec::new();
    let Some(spec) = pod.spec.as_ref() else { return reasons };
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let labels = node.labels();
    // NodeUnschedulable.
    if node.unschedulable {
        let t =
            Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
        if !tolerates(&tolerations, &t) {
            reasons.push("node(s) were unschedulable".to_string());
            return reasons;
        }
    }
    // TaintToleration.
    if node.taints.iter().any(|t| (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerates(&tolerations, t))
    {
        reasons.push("node(s) had untolerated taint(s)".to_string());
        return reasons;
    }
    // NodeAffinity (nodeSelector and required affinity).
    let selector_ok = spec.node_selector.as_ref().is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref())
        .is_none_or(|req| req.node_selector_terms.iter().any(|t| term_matches(t, labels, node.name())));
    if !(selector_ok && affinity_ok) {
        reasons.push("node(s) didn't match Pod's node affinity/selector".to_string());
        return reasons;
    }
    // NodePorts.
    let wanted = host_ports(pod);
    if wanted.iter().any(|w| node.pods.iter().any(|p| p.host_ports.contains(w))) {
        reasons.push("node(s) didn't have free ports for the requested pod ports".to_string());
        return reasons;
    }
    // NodeResourcesFit.
    let (cpu, mem) = requests(pod);
    let (used_cpu, used_mem) = (node.used_cpu, node.used_mem);
    if node.pods.len() as i128 + 1 > node.alloc_pods {
        reasons.push("Too many pods".to_string());
    }
    if cpu > 0 && used_cpu + cpu > node.alloc_cpu {
        reasons.push("Insufficient cpu".to_string());
    }
    if mem > 0 && used_mem + mem > node.alloc_mem {
        reasons.push("Insufficient memory".to_string());
    }
    if !reasons.is_empty() {
        return reasons;
    }
    // PodTopologySpread runs before InterPodAffinity (kube-scheduler's order).
    if let Some(spread) = topology_spread_reason(pod, node, all) {
        reasons.push(spread);
        return reasons;
    }
    // InterPodAffinity.
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    let domain_of = |n: &NodeInfo, key: &str| n.labels().get(key).cloned();
    if let Some(pa) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
    {
        let ok = pa.iter().all(|term| {
            let sel = term_selector(term);
            let namespaces = term.namespaces.clone().unwrap_or_else(|| vec![ns.clone()]);
            let Some(domain) = domain_of(node, &term.topology_key) else { return false };
            let any_match_anywhere =
                all.iter().any(|n| n.pods.iter().any(|p| namespaces.contains(&p.namespace) && sel.matches(&p.labels)));
            // The first pod of a group may land anywhere its own labels match the term.
            if !any_match_anywhere && sel.matches(&pod_labels) {
                return true;
            }
            all.iter()
                .filter(|n| domain_of(n, &term.topology_key).as_deref() == Some(domain.as_str()))
                .any(|n| n.pods.iter().any(|p| namespaces.contains(&p.namespace) && sel.matches(&p.labels)))
        });
        if !ok {
            reasons.push("node(s) didn't match pod affinity rules".to_string());
        }
    }
    let mut anti_ok = true;
    if let Some(anti) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
    {
        anti_ok = anti.iter().all(|term| {
            let sel = term_selector(term);
            let namespaces = term.namespaces.clone().unwrap_or_else(|| vec![ns.clone()]);
            let Some(domain) = domain_of(node, &term.topology_key) else { return true };
            !all.iter()
                .filter(|n| domain_of(n, &term.topology_key).as_deref() == Some(domain.as_str()))
                .any(|n| n.pods.iter().any(|p| namespaces.contains(&p.namespace) && sel.matches(&p.labels)))
        });
    }
    // Existing pods' anti-affinity against this one.
    let existing_ok = cluster.anti.iter().all(|(key, domain, sel, namespaces)| {
        !(node.labels.get(key) == Some(domain) && namespaces.contains(&ns) && sel.matches(&pod_labels))
    });
    if !anti_ok {
        reasons.push("node(s) didn't match pod anti-affinity rules".to_string());
    } else if !existing_ok {
        reasons.push("node(s) didn't satisfy existing pods anti-affinity rules".to_string());
    }
    reasons
}

/// PodTopologySpread's refusal (DoNotSchedule constraints), if any.
fn topology_spread_reason(pod: &Pod, node: &NodeInfo, all: &[NodeInfo]) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    let domain_of = |n: &NodeInfo, key: &str| n.labels().get(key).cloned();
    for c in spec.topology_spread_constraints.iter().flatten() {
        if c.when_unsatisfiable != "DoNotSchedule" {
            continue;
        }
        let sel =
            LabelSelector::from_object(c.label_selector.as_ref().and_then(|s| serde_json::to_value(s).ok()).as_ref())
                .unwrap_or_default();
        let mut counts: HashMap<String, i32> = HashMap::new();
        for n in all {
            if let Some(d) = domain_of(n, &c.topology_key) {
                let k = n.pods.iter().filter(|p| p.namespace == ns && sel.matches(&p.labels)).count() as i32;
                *counts.entry(d).or_insert(0) += k;
            }
        }
        let Some(domain) = domain_of(node, &c.topology_key) else {
            return Some("node(s) didn't match pod topology spread constraints (missing required label)".to_string());
        };
        let min = counts.values().copied().min().unwrap_or(0);
        let mine = counts.get(&domain).copied().unwrap_or(0) + if sel.matches(&pod_labels) { 1 } else { 0 };
        if mine - min > c.max_skew {
            return Some("node(s) didn't match pod topology spread constraints".to_string());
        }
    }
    None
}

/// Score a feasible node (higher is better).
pub fn score(pod: &Pod, node: &NodeInfo) -> i64 {
    // Like kube-scheduler, best-effort pods count as 100m CPU and 200Mi for scoring.
    let (mut cpu, mut mem) = requests(pod);
    if cpu == 0 {
        cpu = 100;
    }
    if mem == 0 {
        mem = 200 * 1024 * 1024 * 1000;
    }
    let used_cpu: i128 = node.pods.iter().map(|p| if p.cpu == 0 { 100 } else { p.cpu }).sum::<i128>() + cpu;
    let used_mem: i128 =
        node.pods.iter().map(|p| if p.memory == 0 { 200 * 1024 * 1024 * 1000 } else { p.memory }).sum::<i128>() + mem;
    let alloc_cpu = node.alloc_cpu.max(1);
    let alloc_mem = node.alloc_mem.max(1);
    let cpu_frac = (used_cpu as f64 / alloc_cpu as f64).min(1.0);
    let mem_frac = (used_mem as f64 / alloc_mem as f64).min(1.0);
    let least_allocated = ((1.0 - cpu_frac) + (1.0 - mem_frac)) / 2.0 * 100.0;
    let balanced = (1.0 - (cpu_frac - mem_frac).abs()) * 100.0;
    let labels = node.labels();
    let mut affinity = 0i64;
    if let Some(prefs) = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_ref())
    {
        for p in prefs {
            if term_matches(&p.preference, labels, node.name()) {
                affinity += i64::from(p.weight);
            }
        }
    }
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let prefer_no =
        node.taints.iter().filter(|t| t.effect == "PreferNoSchedule" && !tolerates(&tolerations, t)).count() as i64;
    // Spread pods of one controller over nodes.
    let owner = controller_uid(pod);
    let siblings =
        owner.as_ref().map(|o| node.pods.iter().filter(|p| p.owner.as_ref() == Some(o)).count() as i64).unwrap_or(0);
    least_allocated as i64 + balanced as i64 / 2 + affinity - prefer_no * 50 - siblings * 30
}

/// kube-scheduler's message for a pod that fits nowhere (v1.36: the filters' reasons,
/// then what its PostFilter plugins found — DynamicResources had no claims to free,
/// and preemption, which vkube does not do, could not help).
pub fn failure_message(total: usize, reasons: &HashMap<String, usize>) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!(
        "0/{total} nodes are available: {}. no new claims to deallocate, preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, extra: serde_json::Value) -> NodeInfo {
        let mut n = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": "a"}}, "spec": {}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "3"}, "conditions": [{"type": "Ready", "status": "True"}]}});
        json_merge(&mut n, &extra);
        NodeInfo::new(std::sync::Arc::new(serde_json::from_value(n).expect("node")), vec![])
    }

    fn json_merge(a: &mut serde_json::Value, b: &serde_json::Value) {
        if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(x) if x.is_object() && v.is_object() => json_merge(x, v),
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut p = json!({"metadata": {"name": "p", "namespace": "default", "labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        json_merge(&mut p, &json!({"spec": spec}));
        serde_json::from_value(p).expect("pod")
    }

    #[test]
    fn unschedulable_and_taints_give_kube_scheduler_message() {
        let nodes = vec![
            node("a", json!({"spec": {"unschedulable": true}})),
            node("b", json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}})),
            node("c", json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}})),
        ];
        let p = pod(json!({}));
        let mut reasons: HashMap<String, usize> = HashMap::new();
        for n in &nodes {
            for r in filter(&p, n, &Cluster::new(&nodes)) {
                *reasons.entry(r).or_default() += 1;
            }
        }
        assert_eq!(
            failure_message(3, &reasons),
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had untolerated taint(s). no new claims to deallocate, preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        assert_eq!(failure_message(0, &HashMap::new()), "no nodes available to schedule pods");
        let tolerating = pod(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
        );
        assert!(filter(&tolerating, &nodes[1], &Cluster::new(&nodes)).is_empty());
    }

    #[test]
    fn resources_selector_affinity_and_ports() {
        let mut n = node("a", json!({}));
        let big = pod(json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "3"}}}]}));
        assert_eq!(filter(&big, &n, &Cluster::new(&[])), vec!["Insufficient cpu"]);
        let sel = pod(json!({"nodeSelector": {"zone": "b"}}));
        assert_eq!(filter(&sel, &n, &Cluster::new(&[])), vec!["node(s) didn't match Pod's node affinity/selector"]);
        let aff = pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}}}),
        );
        assert_eq!(filter(&aff, &n, &Cluster::new(&[])).len(), 1);
        let fields = pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}}}}),
        );
        assert!(filter(&fields, &n, &Cluster::new(&[])).is_empty());
        let hp = pod(
            json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        );
        n.add(placed(&hp));
        assert_eq!(
            filter(&hp, &n, &Cluster::new(&[])),
            vec!["node(s) didn't have free ports for the requested pod ports"]
        );
        n.add(placed(&pod(json!({}))));
        n.add(placed(&pod(json!({}))));
        assert!(filter(&pod(json!({})), &n, &Cluster::new(&[])).contains(&"Too many pods".to_string()));
    }

    #[test]
    fn not_ready_nodes_are_tainted() {
        let n = node("a", json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert_eq!(filter(&pod(json!({})), &n, &Cluster::new(&[])), vec!["node(s) had untolerated taint(s)"]);
    }

    #[test]
    fn anti_affinity_and_spread() {
        let mut a = node("a", json!({}));
        let b = node("b", json!({}));
        let anti = pod(
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "x"}}}]}}}),
        );
        a.add(placed(&anti));
        let all = vec![a.clone(), b.clone()];
        assert_eq!(filter(&anti, &a, &Cluster::new(&all)), vec!["node(s) didn't match pod anti-affinity rules"]);
        assert!(filter(&anti, &b, &Cluster::new(&all)).is_empty());
        let spread = pod(
            json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "x"}}}]}),
        );
        let mut a = node("a", json!({}));
        a.add(placed(&pod(json!({}))));
        let all = vec![a.clone(), b.clone()];
        assert_eq!(
            filter(&spread, &a, &Cluster::new(&all)),
            vec!["node(s) didn't match pod topology spread constraints"]
        );
        assert!(filter(&spread, &b, &Cluster::new(&all)).is_empty());
        assert!(score(&pod(json!({})), &b) > score(&pod(json!({})), &a), "emptier node scores higher");
    }
}
