//! What the syncer may do on the host, and nothing more: one list of rules, derived
//! from vcluster.yaml, that both renders the manifests a host admin applies (`vkube
//! host-rbac`: a ServiceAccount, a Role in the host namespace, a ClusterRole only for
//! what the config needs cluster-wide — modelled on vCluster's chart) and is checked
//! against the host credentials before the syncer starts, so that a missing permission
//! is a start-up error naming the verb and resource instead of a silent stall.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, ResourceRule, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec, SelfSubjectRulesReview,
    SelfSubjectRulesReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use vkube_config::VClusterConfig;

/// One grant: verbs on resources of an API group, and why the syncer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// API group ("" for core).
    pub group: &'static str,
    /// Resources (`pods`, `pods/log`).
    pub resources: Vec<&'static str>,
    /// Verbs.
    pub verbs: Vec<&'static str>,
    /// What it is for.
    pub why: &'static str,
}

/// Everything the syncer of one virtual cluster needs on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// In the host namespace (a Role).
    pub namespaced: Vec<Rule>,
    /// Cluster-wide (a ClusterRole).
    pub cluster: Vec<Rule>,
}

const WRITE: [&str; 7] = ["create", "delete", "patch", "update", "get", "list", "watch"];
const READ: [&str; 3] = ["get", "list", "watch"];

/// What `config` makes the syncer do on the host.
pub fn needs(config: &VClusterConfig) -> Needs {
    let mut synced = vec!["pods", "configmaps"];
    for (key, resource) in [
        ("services", "services"),
        ("endpoints", "endpoints"),
        ("secrets", "secrets"),
        ("persistentVolumeClaims", "persistentvolumeclaims"),
        ("serviceAccounts", "serviceaccounts"),
    ] {
        if config.syncs(key) {
            synced.push(resource);
        }
    }
    let mut namespaced = vec![
        Rule {
            group: "",
            resources: synced,
            verbs: WRITE.to_vec(),
            why: "the host copies of the virtual cluster's objects (configmaps also for the owner of its pods)",
        },
        Rule { group: "", resources: vec!["pods/log"], verbs: vec!["get"], why: "kubectl logs" },
        Rule {
            group: "",
            resources: vec!["pods/exec", "pods/attach", "pods/portforward"],
            // WebSocket clients open them with GET, which needs create as well.
            verbs: vec!["create", "get"],
            why: "kubectl exec, cp, attach and port-forward, passed to the host pod",
        },
        Rule {
            group: "",
            resources: vec!["pods/ephemeralcontainers"],
            verbs: vec!["patch", "update"],
            why: "kubectl debug: the virtual pod's ephemeral containers on its host copy",
        },
        Rule {
            group: "metrics.k8s.io",
            resources: vec!["pods"],
            verbs: vec!["get", "list"],
            why: "kubectl top pods: the host pods' usage",
        },
    ];
    if config.sync_events {
        namespaced.push(Rule {
            group: "",
            resources: vec!["events"],
            verbs: READ.to_vec(),
            why: "events about host copies, shown in the virtual cluster",
        });
    }
    let mut policies = Vec::new();
    if config.resource_quota.is_some() {
        policies.push("resourcequotas");
    }
    if config.limit_range.is_some() {
        policies.push("limitranges");
    }
    if !policies.is_empty() {
        namespaced.push(Rule {
            group: "",
            resources: policies,
            verbs: vec!["create", "delete", "get", "list", "update"],
            why: "policies.resourceQuota and policies.limitRange: vc-NAME in the host namespace",
        });
    }
    if config.syncs("ingresses") {
        namespaced.push(Rule {
            group: "networking.k8s.io",
            resources: vec!["ingresses"],
            verbs: WRITE.to_vec(),
            why: "sync.toHost.ingresses",
        });
    }
    let mut cluster = vec![
        Rule {
            group: "",
            resources: vec!["nodes"],
            verbs: READ.to_vec(),
            why: "the virtual cluster's nodes are copies of the host nodes",
        },
        Rule {
            group: "metrics.k8s.io",
            resources: vec!["nodes"],
            verbs: vec!["get", "list"],
            why: "kubectl top nodes: the host nodes' usage",
        },
    ];
    if config.sync_back_changes {
        cluster.push(Rule {
            group: "",
            resources: vec!["nodes"],
            verbs: vec!["patch", "update"],
            why: "sync.fromHost.nodes.syncBackChanges writes node edits through",
        });
    }
    if config.virtual_scheduler {
        cluster.push(Rule {
            group: "",
            resources: vec!["pods"],
            verbs: vec!["list"],
            why: "the virtual scheduler leaves room for the host pods of other tenants",
        });
    }
    if config.sync_storage_classes {
        cluster.push(Rule {
            group: "storage.k8s.io",
            resources: vec!["storageclasses"],
            verbs: READ.to_vec(),
            why: "sync.fromHost.storageClasses",
        });
    }
    for key in config.from_host_classes.keys() {
        let (group, resource, why) = match key.as_str() {
            "ingressClasses" => ("networking.k8s.io", "ingressclasses", "sync.fromHost.ingressClasses"),
            "runtimeClasses" => ("node.k8s.io", "runtimeclasses", "sync.fromHost.runtimeClasses"),
            "priorityClasses" => ("scheduling.k8s.io", "priorityclasses", "sync.fromHost.priorityClasses"),
            _ => continue,
        };
        cluster.push(Rule { group, resources: vec![resource], verbs: READ.to_vec(), why });
    }
    Needs { namespaced, cluster }
}

fn policy(rules: &[Rule]) -> Vec<PolicyRule> {
    rules
        .iter()
        .map(|r| PolicyRule {
            api_groups: Some(vec![r.group.to_string()]),
            resources: Some(r.resources.iter().map(|s| s.to_string()).collect()),
            verbs: r.verbs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .collect()
}

/// The names `vkube host-rbac` gives: vCluster's (`vc-NAME`, and `vc-NAME-v-NAMESPACE`
/// for the cluster-wide objects).
pub fn service_account_name(name: &str) -> String {
    format!("vc-{name}")
}

fn labels(name: &str) -> Option<std::collections::BTreeMap<String, String>> {
    Some([("app".to_string(), "vkube".to_string()), ("release".to_string(), name.to_string())].into())
}

/// The manifests that grant the syncer of virtual cluster `name` in host namespace
/// `namespace` what `needs` lists: the namespace, a ServiceAccount, Role and RoleBinding
/// in it, a ClusterRole and ClusterRoleBinding. YAML documents, for `kubectl apply -f -`.
///
/// # Errors
/// Serialization (not expected).
pub fn manifests(name: &str, namespace: &str, needs: &Needs) -> Result<String, String> {
    let sa = service_account_name(name);
    let cluster_name = format!("vc-{name}-v-{namespace}");
    let meta = |n: &str, ns: Option<&str>| ObjectMeta {
        name: Some(n.to_string()),
        namespace: ns.map(String::from),
        labels: labels(name),
        ..Default::default()
    };
    let subject = Subject {
        kind: "ServiceAccount".into(),
        name: sa.clone(),
        namespace: Some(namespace.to_string()),
        ..Default::default()
    };
    let mut docs: Vec<serde_json::Value> = Vec::new();
    let mut push = |v: Result<serde_json::Value, serde_json::Error>| v.map(|v| docs.push(v)).map_err(|e| e.to_string());
    push(serde_json::to_value(Namespace { metadata: meta(namespace, None), ..Default::default() }))?;
    push(serde_json::to_value(ServiceAccount { metadata: meta(&sa, Some(namespace)), ..Default::default() }))?;
    push(serde_json::to_value(Role { metadata: meta(&sa, Some(namespace)), rules: Some(policy(&needs.namespaced)) }))?;
    push(serde_json::to_value(RoleBinding {
        metadata: meta(&sa, Some(namespace)),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: sa.clone(),
        },
        subjects: Some(vec![subject.clone()]),
    }))?;
    if !needs.cluster.is_empty() {
        push(serde_json::to_value(ClusterRole {
            metadata: meta(&cluster_name, None),
            rules: Some(policy(&needs.cluster)),
            ..Default::default()
        }))?;
        push(serde_json::to_value(ClusterRoleBinding {
            metadata: meta(&cluster_name, None),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: cluster_name.clone(),
            },
            subjects: Some(vec![subject]),
        }))?;
    }
    serde_saphyr::to_string_multiple(&docs).map_err(|e| e.to_string())
}

/// A permission the host credentials lack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The verb.
    pub verb: String,
    /// `resource` or `resource.group`.
    pub resource: String,
    /// The namespace, for a namespaced grant.
    pub namespace: Option<String>,
    /// What it is for.
    pub why: &'static str,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {} in namespace {ns:?}", self.verb, self.resource),
            None => write!(f, "{} {} (cluster-wide)", self.verb, self.resource),
        }
    }
}

/// `gaps` as lines under what each is for.
pub fn describe(gaps: &[Missing]) -> String {
    let mut out = String::new();
    let mut last: Option<&str> = None;
    for g in gaps {
        if last != Some(g.why) {
            out.push_str(&format!("  for {}:\n", g.why));
            last = Some(g.why);
        }
        out.push_str(&format!("    - {g}\n"));
    }
    out
}

/// Who the host credentials are (SelfSubjectReview), when the host says.
pub async fn who(client: &kube::Client) -> Option<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api.create(&PostParams::default(), &SelfSubjectReview::default()).await.ok()?;
    review.status?.user_info?.username
}

/// RBAC's matching of one rule (`k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac`).
fn rule_allows(rule: &ResourceRule, verb: &str, group: &str, resource: &str) -> bool {
    let any = |list: &[String], want: &str| list.iter().any(|x| x == "*" || x == want);
    let subresource = resource.split_once('/').map(|(_, s)| s);
    let resource_ok = rule
        .resources
        .iter()
        .flatten()
        .any(|r| r == "*" || r == resource || subresource.is_some_and(|s| r.strip_prefix("*/") == Some(s)));
    any(&rule.verbs, verb)
        && any(rule.api_groups.as_deref().unwrap_or_default(), group)
        && resource_ok
        && rule.resource_names.as_ref().is_none_or(Vec::is_empty)
}

async fn access_review(
    client: &kube::Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> Result<Option<bool>, kube::Error> {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                namespace: namespace.map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    match api.create(&PostParams::default(), &review).await {
        Ok(r) => Ok(Some(r.status.is_some_and(|s| s.allowed))),
        // A host without the authorization API: nothing to ask.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// What of `needs` the host credentials of `client` may not do (empty: all granted, or
/// a host that does not answer access reviews).
///
/// # Errors
/// API errors asking the host.
pub async fn missing(client: &kube::Client, namespace: &str, needs: &Needs) -> Result<Vec<Missing>, kube::Error> {
    // One rules review answers most; an access review confirms each gap (other
    // authorizers than RBAC, e.g. a webhook, may grant what the rules do not show).
    let rules_api: Api<SelfSubjectRulesReview> = Api::all(client.clone());
    let review = SelfSubjectRulesReview {
        spec: SelfSubjectRulesReviewSpec { namespace: Some(namespace.to_string()) },
        ..Default::default()
    };
    let rules = match rules_api.create(&PostParams::default(), &review).await {
        Ok(r) => r.status.map(|s| s.resource_rules).unwrap_or_default(),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut gaps = Vec::new();
    let wanted = needs.namespaced.iter().map(|r| (r, Some(namespace))).chain(needs.cluster.iter().map(|r| (r, None)));
    for (rule, ns) in wanted {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                if rules.iter().any(|r| rule_allows(r, verb, rule.group, resource)) {
                    continue;
                }
                match access_review(client, verb, rule.group, resource, ns).await? {
                    Some(false) => gaps.push(Missing {
                        verb: verb.to_string(),
                        resource: if rule.group.is_empty() {
                            resource.to_string()
                        } else {
                            format!("{resource}.{}", rule.group)
                        },
                        namespace: ns.map(String::from),
                        why: rule.why,
                    }),
                    Some(true) => {}
                    None => return Ok(Vec::new()),
                }
            }
        }
    }
    Ok(gaps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_decides_the_grants() {
        let plain = needs(&VClusterConfig::default());
        let all: Vec<&str> = plain.namespaced.iter().flat_map(|r| r.resources.clone()).collect();
        for r in [
            "pods",
            "configmaps",
            "services",
            "endpoints",
            "secrets",
            "persistentvolumeclaims",
            "pods/log",
            "pods/exec",
            "pods/portforward",
            "events",
        ] {
            assert!(all.contains(&r), "{r} missing from {all:?}");
        }
        assert!(!all.contains(&"ingresses") && !all.contains(&"serviceaccounts"), "{all:?}");
        // Cluster-wide: only reading nodes and their usage.
        assert_eq!(plain.cluster.len(), 2);
        assert_eq!(plain.cluster[0].verbs, READ.to_vec());
        assert!(plain.cluster.iter().all(|r| r.resources == ["nodes"] && !r.verbs.contains(&"create")));
        let mut config = VClusterConfig { sync_back_changes: true, virtual_scheduler: true, ..Default::default() };
        config.to_host.insert("ingresses".into(), true);
        let more = needs(&config);
        assert!(more.namespaced.iter().any(|r| r.group == "networking.k8s.io"));
        assert!(more.cluster.iter().any(|r| r.resources == ["nodes"] && r.verbs == ["patch", "update"]));
        assert!(more.cluster.iter().any(|r| r.resources == ["pods"] && r.verbs == ["list"]));
    }

    #[test]
    fn rules_match_as_rbac_does() {
        let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| ResourceRule {
            api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
            resources: Some(resources.iter().map(|s| s.to_string()).collect()),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            resource_names: None,
        };
        assert!(rule_allows(&rule(&["*"], &["*"], &["*"]), "list", "", "pods"));
        assert!(rule_allows(&rule(&[""], &["pods"], &["get", "list"]), "list", "", "pods"));
        assert!(!rule_allows(&rule(&[""], &["pods"], &["get"]), "list", "", "pods"));
        assert!(!rule_allows(&rule(&["apps"], &["pods"], &["list"]), "list", "", "pods"));
        assert!(!rule_allows(&rule(&[""], &["pods"], &["get"]), "get", "", "pods/log"));
        assert!(rule_allows(&rule(&[""], &["*/log"], &["get"]), "get", "", "pods/log"));
        let mut named = rule(&[""], &["pods"], &["get"]);
        named.resource_names = Some(vec!["one".into()]);
        assert!(!rule_allows(&named, "get", "", "pods"));
    }

    #[test]
    fn manifests_bind_the_rules_to_one_service_account() {
        let text = manifests("vc", "team-a", &needs(&VClusterConfig::default())).expect("yaml");
        for want in [
            "kind: Namespace",
            "kind: ServiceAccount",
            "kind: Role\n",
            "kind: RoleBinding",
            "kind: ClusterRole\n",
            "kind: ClusterRoleBinding",
            "name: vc-vc-v-team-a",
            "namespace: team-a",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}
