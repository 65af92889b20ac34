//! What the API server knows about one kind, in one place: the [`Kind`] trait. A
//! built-in kind implements it once, in its own file under `resources/<group>/`, on its
//! k8s-openapi type — identity (group, version, kind, plural, scope) comes from that
//! type, so the compiler checks it — with its strategy (prepare, default, validate,
//! warn), table printer, field labels and merge keys.
//!
//! The generic registry and the endpoints see every resource through the JSON facade
//! [`Strategy`]; [`Typed`] adapts a [`Kind`] to it (one typed decode per write), and
//! custom resources implement it from their CRD ([`crate::crd`]).
//!
//! # Invariants
//! The registry calls a strategy in a fixed order ([`Strategy::before_create`],
//! [`Strategy::before_update`]): prepare → default → validate → warnings. Strategies see
//! objects that have already been type-checked and pruned ([`Strategy::prune`]).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::marker::PhantomData;
use vkube_core::meta::{DNS1123_LABEL_MSG, DNS1123_SUBDOMAIN_MSG, age_seconds, human_duration};
use vkube_core::status::Cause;

use super::Subresource;
use k8s_openapi::Metadata as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A field selector label of a kind and the value it has when the field is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLabel {
    /// The dotted path, e.g. `spec.unschedulable`.
    pub path: &'static str,
    /// The zero value of the field's Go type, as a field selector compares it.
    pub zero: &'static str,
}

/// A field label whose zero value is `""`.
pub const fn label(path: &'static str) -> FieldLabel {
    FieldLabel { path, zero: "" }
}

/// A boolean field label (zero value `false`).
pub const fn flag(path: &'static str) -> FieldLabel {
    FieldLabel { path, zero: "false" }
}

/// A Table column: kubectl's name, the cell type, and its priority (1: `-o wide` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header, e.g. `Ready`.
    pub name: &'static str,
    /// `string`, `integer`, `boolean` or `date`.
    pub kind: &'static str,
    /// 0: always shown; 1: with `-o wide`.
    pub priority: i64,
}

/// A column shown by default.
pub const fn col(name: &'static str, kind: &'static str) -> Column {
    Column { name, kind, priority: 0 }
}

/// A column shown with `-o wide`.
pub const fn wide(name: &'static str, kind: &'static str) -> Column {
    Column { name, kind, priority: 1 }
}

/// The columns of a kind without its own printer: NAME, AGE.
pub const NAME_AGE: &[Column] = &[col("Name", "string"), col("Age", "string")];

/// The result of a strategy's checks.
#[derive(Debug, Default)]
pub struct Checked {
    /// What is invalid (empty: valid).
    pub causes: Vec<Cause>,
    /// Warnings for the client.
    pub warnings: Vec<String>,
}

/// How deleting an object of a kind goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletionRules {
    /// Whether `propagationPolicy` Orphan/Foreground adds its finalizer (not for
    /// namespaces, which empty themselves).
    pub propagation_finalizers: bool,
}

/// One built-in kind. Every method has a default; a kind overrides what differs.
pub trait Kind: Send + Sync + 'static {
    /// The kind's type: its identity, schema and shape.
    type Object: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + schemars::JsonSchema
        + Default
        + Send
        + Sync;

    /// Short names (`po`).
    const SHORT_NAMES: &'static [&'static str] = &[];
    /// Whether the kind is in the `all` category.
    const IN_ALL: bool = false;
    /// Other categories (`kubectl get CATEGORY`).
    const CATEGORIES: &'static [&'static str] = &[];
    /// Whether `deletecollection` is served.
    const DELETE_COLLECTION: bool = true;
    /// The subresources served.
    const SUBRESOURCES: &'static [Subresource] = &[];
    /// Whether names must be DNS labels (else DNS subdomains).
    const NAME_IS_DNS_LABEL: bool = false;
    /// Whether any name that is a path segment will do (RBAC's `system:…` names).
    const NAME_IS_PATH_SEGMENT: bool = false;
    /// Whether spec changes bump `metadata.generation`.
    const TRACKS_GENERATION: bool = false;
    /// Field selector labels beyond `metadata.name` and `metadata.namespace`.
    const FIELD_LABELS: &'static [FieldLabel] = &[];
    /// Table columns.
    const COLUMNS: &'static [Column] = NAME_AGE;

    /// The singular name (default: the kind in lower case).
    fn singular() -> String {
        <Self::Object as k8s_openapi::Resource>::KIND.to_lowercase()
    }

    /// Clear what a client may not set on create.
    fn prepare_for_create(_obj: &mut Self::Object) {}
    /// Carry over what a client may not change on update.
    fn prepare_for_update(_obj: &mut Self::Object, _old: &Self::Object) {}
    /// Fill in defaults.
    fn default(_obj: &mut Self::Object) {}
    /// Validate a new object (its metadata is checked by the registry).
    fn validate(_obj: &Self::Object) -> Vec<Cause> {
        vec![]
    }
    /// Validate an update.
    fn validate_update(obj: &Self::Object, _old: &Self::Object) -> Vec<Cause> {
        Self::validate(obj)
    }
    /// Validate a write through `/status` (default: as an update).
    fn validate_status_update(obj: &Self::Object, old: &Self::Object) -> Vec<Cause> {
        Self::validate_update(obj, old)
    }
    /// Validate a write through `/ephemeralcontainers` (pods; only those changed).
    fn validate_ephemeral_update(_obj: &Self::Object, _old: &Self::Object) -> Vec<Cause> {
        vec![]
    }
    /// Warnings to send with a successful write.
    fn warnings(_obj: &Self::Object) -> Vec<String> {
        vec![]
    }
    /// The grace period to delete `obj` with (None or Some(0): at once).
    fn grace_period(_obj: &Self::Object, requested: Option<i64>) -> Option<i64> {
        requested.filter(|g| *g > 0).map(|_| 0)
    }
    /// How deleting goes.
    fn deletion_rules() -> DeletionRules {
        DeletionRules { propagation_finalizers: true }
    }
    /// What deleting (marking for deletion) changes besides the deletion timestamp.
    fn mark_deleting(_obj: &mut Value) {}
    /// Whether the object waits for its own (spec) finalizers before it is removed.
    fn held_by_spec(_obj: &Value) -> bool {
        false
    }

    /// The value of a field label of a stored object (JSON: selectors run over stored
    /// values without decoding them into the type).
    fn field_value(obj: &Value, label: &FieldLabel) -> String {
        vkube_core::selector::field_value(obj, label.path).unwrap_or_else(|| label.zero.to_string())
    }
    /// The refusal for an unsupported field label: kinds with field label conversions in
    /// kube-apiserver say `field label not supported`, the others list what is.
    fn unsupported_field_label(field: &str) -> String {
        if Self::FIELD_LABELS.is_empty() {
            format!("\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")
        } else {
            format!("field label not supported: {field}")
        }
    }
    /// The cells of the object's Table row, one per [`Kind::COLUMNS`].
    fn cells(obj: &Self::Object) -> Vec<Value> {
        vec![json!(name_of(obj.metadata())), json!(age_of(obj.metadata()))]
    }
    /// The strategic-merge-patch merge key of a list field (`path` from the root).
    fn merge_key(path: &[&str]) -> Option<&'static str> {
        common_merge_key(path)
    }
}

/// The JSON facade of a resource's behaviour, as the generic registry and the
/// endpoints use it. See the module docs for the call order.
pub trait Strategy: Send + Sync {
    /// Type-check a body and drop unknown fields; the error is kube-apiserver's
    /// decoding error text.
    ///
    /// # Errors
    /// A field of the wrong type.
    fn prune(&self, obj: &Value) -> Result<Value, String>;
    /// Prepare, default, validate and warn about a new object.
    fn before_create(&self, obj: &mut Value) -> Checked;
    /// Prepare, default, validate and warn about an update; `status_only` for writes
    /// through `/status` (only validated).
    fn before_update(&self, obj: &mut Value, old: &Value, status_only: bool) -> Checked;
    /// Validate a write through `/ephemeralcontainers` (the rest is the old object's).
    fn before_ephemeral_update(&self, _obj: &mut Value, _old: &Value) -> Checked {
        Checked { causes: vec![], warnings: vec![] }
    }
    /// Whether names must be DNS labels.
    fn name_is_dns_label(&self) -> bool;
    /// Whether any path segment is a valid name.
    fn name_is_path_segment(&self) -> bool {
        false
    }
    /// Whether spec changes bump `metadata.generation`.
    fn tracks_generation(&self) -> bool;
    /// The grace period to delete `obj` with.
    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> Option<i64>;
    /// How deleting goes.
    fn deletion_rules(&self) -> DeletionRules {
        DeletionRules { propagation_finalizers: true }
    }
    /// What marking for deletion changes besides the deletion timestamp.
    fn mark_deleting(&self, _obj: &mut Value) {}
    /// Whether the object waits for its own (spec) finalizers.
    fn held_by_spec(&self, _obj: &Value) -> bool {
        false
    }
    /// Field selector labels.
    fn field_labels(&self) -> &'static [FieldLabel];
    /// The value of a field label.
    fn field_value(&self, obj: &Value, label: &FieldLabel) -> String;
    /// The refusal for an unsupported field label.
    fn unsupported_field_label(&self, field: &str) -> String;
    /// Table column definitions (`meta.k8s.io/v1` TableColumnDefinition).
    fn column_definitions(&self) -> Vec<Value>;
    /// One Table row's cells.
    fn cells(&self, obj: &Value) -> Vec<Value>;
    /// The strategic-merge-patch merge key of a list field.
    fn merge_key(&self, path: &[&str]) -> Option<&'static str>;
    /// Whether strategic merge patch applies (not for custom resources).
    fn supports_strategic_merge(&self) -> bool {
        true
    }
}

/// A [`Kind`] as a [`Strategy`].
pub struct Typed<K>(PhantomData<K>);

impl<K> Default for Typed<K> {
    fn default() -> Self {
        Typed(PhantomData)
    }
}

fn decode<T: DeserializeOwned + Default>(obj: &Value) -> T {
    // Bodies reach strategies pruned through the same type, so this only fails for a
    // stored object written by something else; it then acts on an empty object.
    serde_json::from_value(obj.clone()).unwrap_or_else(|e| {
        tracing::warn!("an object that was type-checked no longer decodes: {e}");
        T::default()
    })
}

fn encode<T: Serialize>(typed: &T, into: &mut Value) {
    match serde_json::to_value(typed) {
        Ok(v) => *into = v,
        Err(e) => tracing::warn!("encoding a typed object: {e}"),
    }
}

/// The name causes for a DNS label or subdomain name.
pub fn name_causes(name: &str, label: bool) -> Vec<Cause> {
    let field = "metadata.name";
    if name.is_empty() {
        vec![Cause::required(field)]
    } else if label && !vkube_core::meta::is_dns1123_label(name) {
        vec![Cause::invalid(field, name, DNS1123_LABEL_MSG)]
    } else if !label && !vkube_core::meta::is_dns1123_subdomain(name) {
        vec![Cause::invalid(field, name, DNS1123_SUBDOMAIN_MSG)]
    } else {
        vec![]
    }
}

/// The name causes for a name that must only be a valid path segment
/// (`path.ValidatePathSegmentName`).
pub fn path_segment_name_causes(name: &str) -> Vec<Cause> {
    let field = "metadata.name";
    let why = match name {
        "" => return vec![Cause::required(field)],
        "." => "may not be '.'",
        ".." => "may not be '..'",
        _ if name.contains('/') => "may not contain '/'",
        _ if name.contains('%') => "may not contain '%'",
        _ => return vec![],
    };
    vec![Cause::invalid(field, name, why)]
}

/// Column definitions for `columns`.
pub fn definitions(columns: &[Column]) -> Vec<Value> {
    columns
        .iter()
        .map(|c| {
            let format = if c.name == "Name" { "name" } else { "" };
            json!({"name": c.name, "type": c.kind, "format": format, "description": c.name, "priority": c.priority})
        })
        .collect()
}

impl<K: Kind> Strategy for Typed<K> {
    fn prune(&self, obj: &Value) -> Result<Value, String> {
        let typed: K::Object = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }
    fn before_create(&self, obj: &mut Value) -> Checked {
        let mut typed: K::Object = decode(obj);
        K::prepare_for_create(&mut typed);
        K::default(&mut typed);
        let causes = K::validate(&typed);
        let warnings = if causes.is_empty() { K::warnings(&typed) } else { vec![] };
        encode(&typed, obj);
        Checked { causes, warnings }
    }
    fn before_update(&self, obj: &mut Value, old: &Value, status_only: bool) -> Checked {
        let mut typed: K::Object = decode(obj);
        let old: K::Object = decode(old);
        let causes = if status_only {
            K::validate_status_update(&typed, &old)
        } else {
            K::prepare_for_update(&mut typed, &old);
            K::default(&mut typed);
            K::validate_update(&typed, &old)
        };
        let warnings = if causes.is_empty() { K::warnings(&typed) } else { vec![] };
        encode(&typed, obj);
        Checked { causes, warnings }
    }
    fn before_ephemeral_update(&self, obj: &mut Value, old: &Value) -> Checked {
        let mut typed: K::Object = decode(obj);
        K::default(&mut typed);
        let causes = K::validate_ephemeral_update(&typed, &decode(old));
        encode(&typed, obj);
        Checked { causes, warnings: vec![] }
    }
    fn name_is_dns_label(&self) -> bool {
        K::NAME_IS_DNS_LABEL
    }
    fn name_is_path_segment(&self) -> bool {
        K::NAME_IS_PATH_SEGMENT
    }
    fn tracks_generation(&self) -> bool {
        K::TRACKS_GENERATION
    }
    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        K::grace_period(&decode(obj), requested)
    }
    fn deletion_rules(&self) -> DeletionRules {
        K::deletion_rules()
    }
    fn mark_deleting(&self, obj: &mut Value) {
        K::mark_deleting(obj)
    }
    fn held_by_spec(&self, obj: &Value) -> bool {
        K::held_by_spec(obj)
    }
    fn field_labels(&self) -> &'static [FieldLabel] {
        K::FIELD_LABELS
    }
    fn field_value(&self, obj: &Value, label: &FieldLabel) -> String {
        K::field_value(obj, label)
    }
    fn unsupported_field_label(&self, field: &str) -> String {
        K::unsupported_field_label(field)
    }
    fn column_definitions(&self) -> Vec<Value> {
        definitions(K::COLUMNS)
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        K::cells(&decode(obj))
    }
    fn merge_key(&self, path: &[&str]) -> Option<&'static str> {
        K::merge_key(path)
    }
}

/// The merge keys every kind's lists share (Kubernetes' `patchMergeKey` tags on the
/// types they all embed: pod specs, metadata, conditions).
pub fn common_merge_key(path: &[&str]) -> Option<&'static str> {
    let field = *path.last()?;
    let in_container =
        path.iter().rev().skip(1).any(|p| matches!(*p, "containers" | "initContainers" | "ephemeralContainers"));
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "secrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ports" if in_container => Some("containerPort"),
        "conditions" => Some("type"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "ownerReferences" if path.len() == 2 => Some("uid"),
        _ => None,
    }
}

/// `<none>` for an empty cell.
pub fn none_if_empty(x: impl Into<String>) -> String {
    let x = x.into();
    if x.is_empty() { "<none>".into() } else { x }
}

/// The object's name.
pub fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// kubectl's AGE of an object.
pub fn age_of(meta: &ObjectMeta) -> String {
    age_at(meta.creation_timestamp.as_ref().map(|t| t.0))
}

/// kubectl's rendering of a time as an age (`<unknown>` when absent).
pub fn age_at(t: Option<k8s_openapi::jiff::Timestamp>) -> String {
    match t {
        Some(t) => human_duration(age_seconds(&t.to_string())),
        None => "<unknown>".into(),
    }
}

/// kubectl's rendering of a label selector (`app=web,tier in (a,b)`).
pub fn selector_string(sel: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>) -> String {
    let Some(sel) = sel else { return "<none>".into() };
    let mut parts: Vec<String> = sel.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    none_if_empty(parts.join(","))
}

/// Containers and images of a pod template, comma-separated.
pub fn containers_images(spec: Option<&k8s_openapi::api::core::v1::PodSpec>) -> (String, String) {
    let cs = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    (
        cs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(","),
        cs.iter().map(|c| c.image.as_deref().unwrap_or_default()).collect::<Vec<_>>().join(","),
    )
}

/// kubectl's short access mode names.
pub fn short_mode(m: &str) -> &str {
    match m {
        "ReadWriteOnce" => "RWO",
        "ReadOnlyMany" => "ROX",
        "ReadWriteMany" => "RWX",
        "ReadWriteOncePod" => "RWOP",
        other => other,
    }
}

/// A spec's default: set when absent.
pub fn default_to<T>(field: &mut Option<T>, value: impl FnOnce() -> T) {
    if field.is_none() {
        *field = Some(value());
    }
}
