//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! which client-go's typed clients — and so kubectl's `create deployment`,
//! `create configmap`, `drain` and friends — send for built-in kinds.
//!
//! The envelope (`k8s\0` + `runtime.Unknown`) names the kind; its raw bytes decode into
//! the k8s-pb (prost) type. prost types carry no JSON names, so the decoded message is
//! turned into JSON through its `Debug` form, with each field's JSON name and special
//! encoding (times, quantities, int-or-string, bytes, raw extensions) taken from the
//! kind's OpenAPI schema in k8s-openapi. Responses stay JSON, which client-go accepts.

use serde_json::{Map, Value, json};
use vkube_core::status::ApiError;

const MAGIC: &[u8] = b"k8s\0";

fn bad(msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("protobuf body: {msg}"))
}

/// Boolean fields that are pointers in Go, so an explicit false differs from unset.
const POINTER_BOOLS: &[&str] = &[
    "automountServiceAccountToken",
    "enableServiceLinks",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "runAsNonRoot",
    "privileged",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "hostUsers",
    "optional",
    "suspend",
    "immutable",
    "allowVolumeExpansion",
    "manualSelector",
    "ready",
    "serving",
    "terminating",
    "controller",
    "blockOwnerDeletion",
    "unschedulable",
    "allocateLoadBalancerNodePorts",
    // Not pointers, but Go writes them without omitempty and they mean something false.
    "served",
    "storage",
    "x-kubernetes-preserve-unknown-fields",
];

const JSON_SCHEMA_PROPS: &str = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";

/// A tree parsed from a `Debug` rendering.
#[derive(Debug, Clone, PartialEq)]
enum Dbg {
    None,
    Str(String),
    Num(String),
    Bool(bool),
    List(Vec<Dbg>),
    Map(Vec<(Dbg, Dbg)>),
    Struct(Vec<(String, Dbg)>),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn ident(&mut self) -> String {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_' || self.s[self.i] == b'#')
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
    fn string(&mut self) -> Result<String, ApiError> {
        // At the opening quote.
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        while self.i < self.s.len() {
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(bad),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or_else(|| bad("truncated escape"))?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'0' => out.push(0),
                        b'u' => {
                            // \u{XXXX}
                            let close = self.s[self.i..]
                                .iter()
                                .position(|&b| b == b'}')
                                .ok_or_else(|| bad("bad unicode escape"))?;
                            let hex = String::from_utf8_lossy(&self.s[self.i + 1..self.i + close]).into_owned();
                            self.i += close + 1;
                            let ch = u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| bad("bad unicode escape"))?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
        Err(bad("unterminated string"))
    }
    fn value(&mut self) -> Result<Dbg, ApiError> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'"') => Ok(Dbg::Str(self.string()?)),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.eat(b']') {
                        break;
                    }
                    items.push(self.value()?);
                    self.eat(b',');
                }
                Ok(Dbg::List(items))
            }
            Some(b'{') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.eat(b'}') {
                        break;
                    }
                    let k = self.value()?;
                    if !self.eat(b':') {
                        return Err(bad("expected ':' in map"));
                    }
                    let v = self.value()?;
                    items.push((k, v));
                    self.eat(b',');
                }
                Ok(Dbg::Map(items))
            }
            Some(c) if c.is_ascii_digit() || *c == b'-' => {
                let start = self.i;
                self.i += 1;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_digit() || matches!(self.s[self.i], b'.' | b'e' | b'E' | b'-' | b'+'))
                {
                    self.i += 1;
                }
                Ok(Dbg::Num(String::from_utf8_lossy(&self.s[start..self.i]).into_owned()))
            }
            _ => {
                let id = self.ident();
                match id.as_str() {
                    "None" => Ok(Dbg::None),
                    "true" => Ok(Dbg::Bool(true)),
                    "false" => Ok(Dbg::Bool(false)),
                    "Some" => {
                        if !self.eat(b'(') {
                            return Err(bad("expected '(' after Some"));
                        }
                        let v = self.value()?;
                        if !self.eat(b')') {
                            return Err(bad("expected ')'"));
                        }
                        Ok(v)
                    }
                    "" => Err(bad(format!("unexpected input at {}", self.i))),
                    _ => {
                        if !self.eat(b'{') {
                            // A unit-like value (e.g. an enum name): keep its text.
                            return Ok(Dbg::Str(id));
                        }
                        let mut fields = Vec::new();
                        loop {
                            if self.eat(b'}') {
                                break;
                            }
                            let name = self.ident();
                            if !self.eat(b':') {
                                return Err(bad(format!("expected ':' after field {name}")));
                            }
                            fields.push((name, self.value()?));
                            self.eat(b',');
                        }
                        Ok(Dbg::Struct(fields))
                    }
                }
            }
        }
    }
}

struct Schemas {
    defs: Map<String, Value>,
}

impl Schemas {
    fn resolve<'a>(&'a self, s: &'a Value) -> (&'a Value, String) {
        let mut cur = s;
        let mut name = String::new();
        for _ in 0..8 {
            if let Some(r) = cur.get("$ref").and_then(Value::as_str) {
                name = r.rsplit('/').next().unwrap_or_default().to_string();
                match self.defs.get(&name) {
                    Some(d) => cur = d,
                    None => break,
                }
            } else if let Some(first) = cur.get("allOf").and_then(Value::as_array).and_then(|a| a.first()) {
                cur = first;
            } else {
                break;
            }
        }
        (cur, name)
    }
}

/// A field name with only its letters and digits, lower-cased: prost's `r#ref`,
/// `x_kubernetes_int_or_string` and `j_son_schemas` meet JSON's `$ref`,
/// `x-kubernetes-int-or-string` and `JSONSchemas`.
fn norm(s: &str) -> String {
    s.trim_start_matches("r#").chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

fn bytes_of(d: &Dbg) -> Vec<u8> {
    match d {
        Dbg::List(items) => {
            items.iter().filter_map(|i| if let Dbg::Num(n) = i { n.parse::<u8>().ok() } else { None }).collect()
        }
        Dbg::Str(s) => s.clone().into_bytes(),
        _ => vec![],
    }
}

fn field<'a>(fields: &'a [(String, Dbg)], name: &str) -> Option<&'a Dbg> {
    fields.iter().find(|(k, _)| norm(k) == name).map(|(_, v)| v)
}

fn to_json(d: &Dbg, schema: &Value, sc: &Schemas) -> Option<Value> {
    use base64::Engine as _;
    let (schema, name) = sc.resolve(schema);
    match name.as_str() {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time" | "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let Dbg::Struct(f) = d else { return None };
            let secs = match field(f, "seconds") {
                Some(Dbg::Num(n)) => n.parse::<i64>().ok()?,
                _ => 0,
            };
            let nanos = match field(f, "nanos") {
                Some(Dbg::Num(n)) => n.parse::<i32>().ok().unwrap_or(0),
                _ => 0,
            };
            // Go's zero time (year 1, or the epoch from an unset field) is JSON null.
            if (secs == 0 || secs == -62_135_596_800) && nanos == 0 {
                return None;
            }
            let ts = jiff::Timestamp::new(secs, nanos).ok()?;
            let fmt = if name.ends_with("MicroTime") { "%Y-%m-%dT%H:%M:%S.%6fZ" } else { "%Y-%m-%dT%H:%M:%SZ" };
            return Some(json!(ts.strftime(fmt).to_string()));
        }
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
            let Dbg::Struct(f) = d else { return None };
            return match field(f, "string") {
                Some(Dbg::Str(s)) => Some(json!(s)),
                _ => None,
            };
        }
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            let Dbg::Struct(f) = d else { return None };
            let is_str = matches!(field(f, "type"), Some(Dbg::Num(n)) if n == "1");
            return if is_str {
                match field(f, "strval") {
                    Some(Dbg::Str(s)) => Some(json!(s)),
                    _ => Some(json!("")),
                }
            } else {
                match field(f, "intval") {
                    Some(Dbg::Num(n)) => n.parse::<i64>().ok().map(|n| json!(n)),
                    _ => Some(json!(0)),
                }
            };
        }
        // A CRD schema's "a schema, or else a bool / list of schemas / list of names".
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray" => {
            let Dbg::Struct(f) = d else { return None };
            let props = json!({ "$ref": format!("#/{JSON_SCHEMA_PROPS}") });
            if let Some(schema) = field(f, "schema").filter(|s| **s != Dbg::None) {
                return to_json(schema, &props, sc);
            }
            return match name.rsplit('.').next() {
                Some("JSONSchemaPropsOrBool") => Some(json!(matches!(field(f, "allows"), Some(Dbg::Bool(true))))),
                Some("JSONSchemaPropsOrArray") => {
                    to_json(field(f, "jsonschemas")?, &json!({ "type": "array", "items": props }), sc)
                }
                _ => to_json(field(f, "property")?, &json!({ "type": "array", "items": { "type": "string" } }), sc),
            };
        }
        "io.k8s.apimachinery.pkg.runtime.RawExtension"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON" => {
            let Dbg::Struct(f) = d else { return None };
            let raw = field(f, "raw").map(bytes_of).unwrap_or_default();
            return serde_json::from_slice(&raw).ok();
        }
        "io.k8s.apimachinery.pkg.apis.meta.v1.Duration" => {
            let Dbg::Struct(f) = d else { return None };
            let ns = match field(f, "duration") {
                Some(Dbg::Num(n)) => n.parse::<i64>().ok()?,
                _ => 0,
            };
            return Some(json!(format!("{}s", ns / 1_000_000_000)));
        }
        _ => {}
    }
    match d {
        Dbg::None => None,
        Dbg::Bool(b) => Some(json!(b)),
        Dbg::Num(n) => {
            if schema.get("type").and_then(Value::as_str) == Some("string") {
                return Some(json!(n));
            }
            n.parse::<i64>().map(|i| json!(i)).ok().or_else(|| n.parse::<f64>().ok().map(|f| json!(f)))
        }
        // An empty message prints as its bare type name (CRD `subresources.status`).
        Dbg::Str(_) if schema.get("type").and_then(Value::as_str) == Some("object") => Some(json!({})),
        Dbg::Str(s) => Some(json!(s)),
        Dbg::List(items) => {
            if schema.get("format").and_then(Value::as_str) == Some("byte") {
                return Some(json!(base64::engine::general_purpose::STANDARD.encode(bytes_of(d))));
            }
            let item_schema = schema.get("items").cloned().unwrap_or(Value::Null);
            let out: Vec<Value> = items.iter().filter_map(|i| to_json(i, &item_schema, sc)).collect();
            if out.is_empty() { None } else { Some(Value::Array(out)) }
        }
        Dbg::Map(entries) => {
            let vs = schema.get("additionalProperties").cloned().unwrap_or(Value::Null);
            let mut m = Map::new();
            for (k, v) in entries {
                let key = match k {
                    Dbg::Str(s) => s.clone(),
                    Dbg::Num(n) => n.clone(),
                    _ => continue,
                };
                if let Some(v) = to_json(v, &vs, sc) {
                    m.insert(key, v);
                }
            }
            if m.is_empty() { None } else { Some(Value::Object(m)) }
        }
        Dbg::Struct(fields) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let mut m = Map::new();
            for (k, v) in fields {
                let nk = norm(k);
                let Some((json_name, prop)) = props.and_then(|p| p.iter().find(|(pk, _)| norm(pk) == nk)) else {
                    // Go's inlined structs (a Volume's `volumeSource`, a PV spec's
                    // `persistentVolumeSource`) are a message of their own in
                    // protobuf: their fields belong to this object.
                    if matches!(v, Dbg::Struct(_))
                        && let Some(Value::Object(inner)) = to_json(v, schema, sc)
                    {
                        m.extend(inner);
                    }
                    continue;
                };
                // Go writes unset string fields as "" in protobuf; JSON's omitempty
                // (and defaulting) treat them as absent.
                if matches!(v, Dbg::Str(s) if s.is_empty()) {
                    continue;
                }
                // Likewise false for non-pointer booleans and the zero generation; pointer
                // booleans where false means something are kept.
                if matches!(v, Dbg::Bool(false)) && !POINTER_BOOLS.contains(&json_name.as_str()) {
                    continue;
                }
                if json_name == "generation" && matches!(v, Dbg::Num(n) if n == "0") {
                    continue;
                }
                if let Some(v) = to_json(v, prop, sc) {
                    m.insert(json_name.clone(), v);
                }
            }
            Some(Value::Object(m))
        }
    }
}

fn convert<M: prost::Message + Default + std::fmt::Debug, T: schemars::JsonSchema>(
    raw: &[u8],
    api_version: &str,
    kind: &str,
) -> Result<Value, ApiError> {
    let msg = M::decode(raw).map_err(bad)?;
    let text = format!("{msg:?}");
    let tree = Parser { s: text.as_bytes(), i: 0 }.value()?;
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let root = generator.subschema_for::<T>();
    let defs: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    let sc = Schemas { defs };
    let mut obj = to_json(&tree, root.as_value(), &sc)
        .filter(Value::is_object)
        .ok_or_else(|| bad(format!("the {api_version} {kind} body does not convert to its JSON form")))?;
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(obj)
}

macro_rules! kinds {
    ($av:expr, $kind:expr, $raw:expr; $( ($a:literal, $k:literal, $pb:ty, $oa:ty) ),* $(,)?) => {
        match ($av, $kind) {
            $( ($a, $k) => convert::<$pb, $oa>($raw, $a, $k), )*
            (a, k) => Err(ApiError::unsupported_media_type(&format!("application/vnd.kubernetes.protobuf for {a} {k} (send JSON)"))),
        }
    };
}

/// Decode a protobuf request body into a JSON object.
///
/// # Errors
/// 400 for a malformed body, 415 for a kind without protobuf support here.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    use k8s_openapi::api as oa;
    use k8s_pb::api as pb;
    let rest = body.strip_prefix(MAGIC).ok_or_else(|| bad("missing the k8s\\0 prefix"))?;
    let unknown = <k8s_pb::apimachinery::pkg::runtime::Unknown as prost::Message>::decode(rest).map_err(bad)?;
    let tm = unknown.type_meta.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    // client-go sends DeleteOptions under the group version of the resource it deletes.
    if kind == "DeleteOptions" {
        return convert::<
            k8s_pb::apimachinery::pkg::apis::meta::v1::DeleteOptions,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions,
        >(&raw, &api_version, &kind);
    }
    kinds!(api_version.as_str(), kind.as_str(), &raw;
        ("v1", "Namespace", pb::core::v1::Namespace, oa::core::v1::Namespace),
        ("v1", "ConfigMap", pb::core::v1::ConfigMap, oa::core::v1::ConfigMap),
        ("v1", "Secret", pb::core::v1::Secret, oa::core::v1::Secret),
        ("v1", "Service", pb::core::v1::Service, oa::core::v1::Service),
        ("v1", "ServiceAccount", pb::core::v1::ServiceAccount, oa::core::v1::ServiceAccount),
        ("v1", "Pod", pb::core::v1::Pod, oa::core::v1::Pod),
        ("v1", "Node", pb::core::v1::Node, oa::core::v1::Node),
        ("v1", "Endpoints", pb::core::v1::Endpoints, oa::core::v1::Endpoints),
        ("v1", "Event", pb::core::v1::Event, oa::core::v1::Event),
        ("v1", "Binding", pb::core::v1::Binding, oa::core::v1::Binding),
        ("v1", "PersistentVolumeClaim", pb::core::v1::PersistentVolumeClaim, oa::core::v1::PersistentVolumeClaim),
        ("v1", "PersistentVolume", pb::core::v1::PersistentVolume, oa::core::v1::PersistentVolume),
        ("v1", "ResourceQuota", pb::core::v1::ResourceQuota, oa::core::v1::ResourceQuota),
        ("v1", "LimitRange", pb::core::v1::LimitRange, oa::core::v1::LimitRange),
        ("v1", "PodTemplate", pb::core::v1::PodTemplate, oa::core::v1::PodTemplate),
        ("v1", "ReplicationController", pb::core::v1::ReplicationController, oa::core::v1::ReplicationController),
        ("apps/v1", "Deployment", pb::apps::v1::Deployment, oa::apps::v1::Deployment),
        ("apps/v1", "ReplicaSet", pb::apps::v1::ReplicaSet, oa::apps::v1::ReplicaSet),
        ("apps/v1", "StatefulSet", pb::apps::v1::StatefulSet, oa::apps::v1::StatefulSet),
        ("apps/v1", "DaemonSet", pb::apps::v1::DaemonSet, oa::apps::v1::DaemonSet),
        ("apps/v1", "ControllerRevision", pb::apps::v1::ControllerRevision, oa::apps::v1::ControllerRevision),
        ("authentication.k8s.io/v1", "TokenRequest", pb::authentication::v1::TokenRequest, oa::authentication::v1::TokenRequest),
        ("authentication.k8s.io/v1", "TokenReview", pb::authentication::v1::TokenReview, oa::authentication::v1::TokenReview),
        ("authentication.k8s.io/v1", "SelfSubjectReview", pb::authentication::v1::SelfSubjectReview, oa::authentication::v1::SelfSubjectReview),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview", pb::authorization::v1::SelfSubjectAccessReview, oa::authorization::v1::SelfSubjectAccessReview),
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview", pb::authorization::v1::SelfSubjectRulesReview, oa::authorization::v1::SelfSubjectRulesReview),
        ("authorization.k8s.io/v1", "SubjectAccessReview", pb::authorization::v1::SubjectAccessReview, oa::authorization::v1::SubjectAccessReview),
        ("authorization.k8s.io/v1", "LocalSubjectAccessReview", pb::authorization::v1::LocalSubjectAccessReview, oa::authorization::v1::LocalSubjectAccessReview),
        ("autoscaling/v1", "Scale", pb::autoscaling::v1::Scale, oa::autoscaling::v1::Scale),
        ("autoscaling/v1", "HorizontalPodAutoscaler", pb::autoscaling::v1::HorizontalPodAutoscaler, oa::autoscaling::v1::HorizontalPodAutoscaler),
        ("autoscaling/v2", "HorizontalPodAutoscaler", pb::autoscaling::v2::HorizontalPodAutoscaler, oa::autoscaling::v2::HorizontalPodAutoscaler),
        ("node.k8s.io/v1", "RuntimeClass", pb::node::v1::RuntimeClass, oa::node::v1::RuntimeClass),
        ("storage.k8s.io/v1", "CSIDriver", pb::storage::v1::CSIDriver, oa::storage::v1::CSIDriver),
        ("storage.k8s.io/v1", "CSINode", pb::storage::v1::CSINode, oa::storage::v1::CSINode),
        ("storage.k8s.io/v1", "CSIStorageCapacity", pb::storage::v1::CSIStorageCapacity, oa::storage::v1::CSIStorageCapacity),
        ("storage.k8s.io/v1", "VolumeAttachment", pb::storage::v1::VolumeAttachment, oa::storage::v1::VolumeAttachment),
        ("batch/v1", "Job", pb::batch::v1::Job, oa::batch::v1::Job),
        ("batch/v1", "CronJob", pb::batch::v1::CronJob, oa::batch::v1::CronJob),
        ("policy/v1", "PodDisruptionBudget", pb::policy::v1::PodDisruptionBudget, oa::policy::v1::PodDisruptionBudget),
        ("policy/v1", "Eviction", pb::policy::v1::Eviction, oa::policy::v1::Eviction),
        ("coordination.k8s.io/v1", "Lease", pb::coordination::v1::Lease, oa::coordination::v1::Lease),
        ("events.k8s.io/v1", "Event", pb::events::v1::Event, oa::events::v1::Event),
        ("discovery.k8s.io/v1", "EndpointSlice", pb::discovery::v1::EndpointSlice, oa::discovery::v1::EndpointSlice),
        ("networking.k8s.io/v1", "Ingress", pb::networking::v1::Ingress, oa::networking::v1::Ingress),
        ("networking.k8s.io/v1", "NetworkPolicy", pb::networking::v1::NetworkPolicy, oa::networking::v1::NetworkPolicy),
        ("networking.k8s.io/v1", "IngressClass", pb::networking::v1::IngressClass, oa::networking::v1::IngressClass),
        ("storage.k8s.io/v1", "StorageClass", pb::storage::v1::StorageClass, oa::storage::v1::StorageClass),
        ("scheduling.k8s.io/v1", "PriorityClass", pb::scheduling::v1::PriorityClass, oa::scheduling::v1::PriorityClass),
        ("rbac.authorization.k8s.io/v1", "Role", pb::rbac::v1::Role, oa::rbac::v1::Role),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", pb::rbac::v1::RoleBinding, oa::rbac::v1::RoleBinding),
        ("rbac.authorization.k8s.io/v1", "ClusterRole", pb::rbac::v1::ClusterRole, oa::rbac::v1::ClusterRole),
        ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema", pb::flowcontrol::v1::FlowSchema, oa::flowcontrol::v1::FlowSchema),
        ("flowcontrol.apiserver.k8s.io/v1", "PriorityLevelConfiguration",
            pb::flowcontrol::v1::PriorityLevelConfiguration, oa::flowcontrol::v1::PriorityLevelConfiguration),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition",
            k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", pb::rbac::v1::ClusterRoleBinding, oa::rbac::v1::ClusterRoleBinding),
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration",
            pb::admissionregistration::v1::ValidatingWebhookConfiguration, oa::admissionregistration::v1::ValidatingWebhookConfiguration),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration",
            pb::admissionregistration::v1::MutatingWebhookConfiguration, oa::admissionregistration::v1::MutatingWebhookConfiguration),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy",
            pb::admissionregistration::v1::ValidatingAdmissionPolicy, oa::admissionregistration::v1::ValidatingAdmissionPolicy),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding",
            pb::admissionregistration::v1::ValidatingAdmissionPolicyBinding, oa::admissionregistration::v1::ValidatingAdmissionPolicyBinding),
        ("certificates.k8s.io/v1", "CertificateSigningRequest",
            pb::certificates::v1::CertificateSigningRequest, oa::certificates::v1::CertificateSigningRequest),
        ("apiregistration.k8s.io/v1", "APIService",
            k8s_pb::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
            k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService),
        // k8s-pb 0.9 has these in v1beta1 only; v1 kept their fields and numbers.
        ("admissionregistration.k8s.io/v1", "MutatingAdmissionPolicy",
            pb::admissionregistration::v1beta1::MutatingAdmissionPolicy, oa::admissionregistration::v1::MutatingAdmissionPolicy),
        ("admissionregistration.k8s.io/v1", "MutatingAdmissionPolicyBinding",
            pb::admissionregistration::v1beta1::MutatingAdmissionPolicyBinding, oa::admissionregistration::v1::MutatingAdmissionPolicyBinding),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = k8s_pb::apimachinery::pkg::runtime::Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = MAGIC.to_vec();
        out.extend(u.encode_to_vec());
        out
    }

    #[test]
    fn decodes_webhook_configurations_and_mutating_policies() {
        use k8s_pb::api::admissionregistration::{v1 as ar, v1beta1 as arb};
        use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
        let c = ar::ValidatingWebhookConfiguration {
            metadata: Some(meta::ObjectMeta { name: Some("hooks".into()), ..Default::default() }),
            webhooks: vec![ar::ValidatingWebhook {
                name: Some("a.b.c".into()),
                client_config: Some(ar::WebhookClientConfig {
                    ca_bundle: Some(b"PEM".to_vec()),
                    url: Some("https://h/x".into()),
                    ..Default::default()
                }),
                side_effects: Some("None".into()),
                admission_review_versions: vec!["v1".into()],
                match_conditions: vec![ar::MatchCondition { name: Some("m".into()), expression: Some("true".into()) }],
                ..Default::default()
            }],
        };
        let v =
            decode(&envelope("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", c.encode_to_vec()))
                .expect("decodes");
        assert_eq!(v["webhooks"][0]["clientConfig"]["caBundle"], json!("UEVN"));
        assert_eq!(v["webhooks"][0]["matchConditions"][0]["expression"], json!("true"));
        let p = arb::MutatingAdmissionPolicy {
            metadata: Some(meta::ObjectMeta { name: Some("p".into()), ..Default::default() }),
            spec: Some(arb::MutatingAdmissionPolicySpec {
                reinvocation_policy: Some("Never".into()),
                mutations: vec![arb::Mutation {
                    patch_type: Some("ApplyConfiguration".into()),
                    apply_configuration: Some(arb::ApplyConfiguration { expression: Some("Object{}".into()) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        };
        let v = decode(&envelope("admissionregistration.k8s.io/v1", "MutatingAdmissionPolicy", p.encode_to_vec()))
            .expect("decodes");
        assert_eq!(v["spec"]["mutations"][0]["applyConfiguration"]["expression"], json!("Object{}"));
        assert_eq!(v["apiVersion"], json!("admissionregistration.k8s.io/v1"));
    }

    #[test]
    fn decodes_a_deployment_with_special_types() {
        use k8s_pb::api::apps::v1 as apps;
        use k8s_pb::api::core::v1 as core;
        use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
        let d = apps::Deployment {
            metadata: Some(meta::ObjectMeta {
                name: Some("web".into()),
                labels: [("app".to_string(), "web \"q\"".to_string())].into(),
                ..Default::default()
            }),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(3),
                selector: Some(meta::LabelSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(meta::ObjectMeta {
                        labels: [("app".to_string(), "web".to_string())].into(),
                        ..Default::default()
                    }),
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container {
                            name: Some("nginx".into()),
                            image: Some("nginx".into()),
                            resources: Some(core::ResourceRequirements {
                                requests: [(
                                    "cpu".to_string(),
                                    k8s_pb::apimachinery::pkg::api::resource::Quantity { string: Some("100m".into()) },
                                )]
                                .into(),
                                ..Default::default()
                            }),
                            ports: vec![core::ContainerPort {
                                container_port: Some(80),
                                host_ip: Some("1.2.3.4".into()),
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                strategy: Some(apps::DeploymentStrategy {
                    r#type: Some("RollingUpdate".into()),
                    rolling_update: Some(apps::RollingUpdateDeployment {
                        max_surge: Some(k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
                            r#type: Some(1),
                            int_val: None,
                            str_val: Some("25%".into()),
                        }),
                        max_unavailable: Some(k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
                            r#type: Some(0),
                            int_val: Some(1),
                            str_val: None,
                        }),
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&envelope("apps/v1", "Deployment", d.encode_to_vec())).expect("decodes");
        assert_eq!(v["kind"], "Deployment");
        assert_eq!(v["metadata"]["name"], "web");
        assert_eq!(v["metadata"]["labels"]["app"], "web \"q\"");
        assert_eq!(v["spec"]["replicas"], 3);
        assert_eq!(v["spec"]["selector"]["matchLabels"]["app"], "web");
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["resources"]["requests"]["cpu"], "100m");
        assert_eq!(c["ports"][0]["containerPort"], 80);
        assert_eq!(c["ports"][0]["hostIP"], "1.2.3.4");
        assert_eq!(v["spec"]["strategy"]["type"], "RollingUpdate");
        assert_eq!(v["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(v["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 1);
    }

    /// A Volume's source is a message of its own in protobuf and inline in JSON; a pod
    /// updated through client-go (protobuf) must keep its projected token volume.
    #[test]
    fn inlined_structs_merge_into_their_parent() {
        use k8s_pb::api::core::v1 as core;
        let pod = core::Pod {
            spec: Some(core::PodSpec {
                volumes: vec![core::Volume {
                    name: Some("v".into()),
                    volume_source: Some(core::VolumeSource {
                        config_map: Some(core::ConfigMapVolumeSource {
                            local_object_reference: Some(core::LocalObjectReference { name: Some("cm".into()) }),
                            default_mode: Some(420),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = decode(&envelope("v1", "Pod", pod.encode_to_vec())).expect("decodes");
        assert_eq!(v["spec"]["volumes"][0]["name"], "v");
        assert_eq!(v["spec"]["volumes"][0]["configMap"]["name"], "cm");
        assert_eq!(v["spec"]["volumes"][0]["configMap"]["defaultMode"], 420);
    }

    #[test]
    fn secret_bytes_become_base64() {
        let s = k8s_pb::api::core::v1::Secret { data: [("k".to_string(), b"v".to_vec())].into(), ..Default::default() };
        let v = decode(&envelope("v1", "Secret", s.encode_to_vec())).expect("decodes");
        assert_eq!(v["data"]["k"], "dg==");
    }

    /// client-go's apiextensions clientset (the conformance suite's CRD specs) sends
    /// CRDs as protobuf: recursive schemas, "schema or bool", raw JSON values.
    #[test]
    fn decodes_a_custom_resource_definition() {
        use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
        let string = ext::JsonSchemaProps {
            r#type: Some("string".into()),
            r#enum: vec![ext::Json { raw: Some(br#""a""#.to_vec()) }],
            ..Default::default()
        };
        let schema = ext::JsonSchemaProps {
            r#type: Some("object".into()),
            properties: [("spec".to_string(), string.clone())].into(),
            additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool { allows: Some(false), schema: None })),
            x_kubernetes_preserve_unknown_fields: Some(false),
            items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                schema: Some(Box::new(string)),
                j_son_schemas: vec![],
            })),
            default: Some(ext::Json { raw: Some(br#"{"spec":"a"}"#.to_vec()) }),
            ..Default::default()
        };
        let crd = ext::CustomResourceDefinition {
            metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("foos.example.com".into()),
                ..Default::default()
            }),
            spec: Some(ext::CustomResourceDefinitionSpec {
                group: Some("example.com".into()),
                names: Some(ext::CustomResourceDefinitionNames {
                    plural: Some("foos".into()),
                    kind: Some("Foo".into()),
                    ..Default::default()
                }),
                scope: Some("Namespaced".into()),
                versions: vec![ext::CustomResourceDefinitionVersion {
                    name: Some("v1".into()),
                    served: Some(true),
                    storage: Some(false),
                    schema: Some(ext::CustomResourceValidation { open_apiv3_schema: Some(schema) }),
                    subresources: Some(ext::CustomResourceSubresources {
                        status: Some(ext::CustomResourceSubresourceStatus {}),
                        scale: None,
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd.encode_to_vec()))
            .expect("decodes");
        let version = &v["spec"]["versions"][0];
        assert_eq!(version["served"], true);
        assert_eq!(version["storage"], false);
        assert_eq!(version["subresources"]["status"], json!({}));
        let s = &version["schema"]["openAPIV3Schema"];
        assert_eq!(s["type"], "object");
        assert_eq!(s["properties"]["spec"]["type"], "string");
        assert_eq!(s["properties"]["spec"]["enum"], json!(["a"]));
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["x-kubernetes-preserve-unknown-fields"], false);
        assert_eq!(s["items"]["type"], "string");
        assert_eq!(s["default"], json!({"spec": "a"}));
        assert_eq!(v["spec"]["names"]["plural"], "foos");
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(b"nope").is_err());
        assert!(decode(b"k8s\0\xff\xff").is_err());
    }
}
