//! The generic registry: the Kubernetes verbs implemented once over a [`Store`], with
//! per-resource behaviour from each resource's [`Strategy`](crate::resources::Strategy)
//! and [`StorageHooks`].
//!
//! Start with [`Registry::create`], [`Registry::update_with`] (every update, PUT or
//! PATCH, is a read-modify-CAS loop through it) and [`Registry::delete`].
//!
//! # Invariants
//! - Stored values never carry `metadata.resourceVersion`; it is the key's
//!   `mod_revision`, set on the way out ([`Registry::decode`]).
//! - Stored values are serialized with `apiVersion`, `kind`, `metadata` first, so the
//!   resourceVersion can be spliced into raw bytes on hot list paths.
//! - Storage errors become `Status` errors only in [`Registry::store_error`].

use crate::resources::{Catalog, Resource, Subresource};
use bytes::Bytes;
use rand::Rng;
use serde_json::{Map, Value, json};
use std::net::Ipv4Addr;
use std::sync::Arc;
use vkube_core::meta;
use vkube_core::selector::{FieldSelector, LabelSelector, field_value};
use vkube_core::status::{ApiError, Cause};
use vkube_store::{KeyValue, ListOptions, Revision, Store, StoreError};

/// How unknown fields in a request body are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop silently.
    Ignore,
    /// Drop with a warning (the default).
    #[default]
    Warn,
    /// Reject with 400.
    Strict,
}

/// Per-request options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `fieldManager` (for managedFields).
    pub field_manager: Option<String>,
    /// Every field path of a JSON body in document order, a duplicate as often as it
    /// occurs (`spec.replicas` twice): `fieldValidation` reports duplicates like
    /// unknown fields, in the order they come in the body.
    pub body_fields: Vec<String>,
    /// Validating admission to run on the object as it will be stored (after the kind's
    /// defaulting and validation), as kube-apiserver runs its validating plugins.
    pub validation: Option<Validation>,
}

/// A validating admission stage for one write (see [`WriteOptions::validation`]).
#[derive(Clone)]
pub struct Validation(pub Arc<dyn crate::admission::ValidationStage>);

impl std::fmt::Debug for Validation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Validation")
    }
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// The object as stored (with resourceVersion).
    pub object: Value,
    /// Warnings to send in `Warning` headers.
    pub warnings: Vec<String>,
}

/// Options of a list.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    /// Label selector.
    pub label_selector: LabelSelector,
    /// Field selector.
    pub field_selector: FieldSelector,
    /// Page size (0: all).
    pub limit: usize,
    /// Continue token.
    pub continue_token: Option<String>,
    /// `resourceVersion` (as given).
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// The items as stored values with their revisions.
    pub items: Vec<KeyValue>,
    /// The list's resourceVersion.
    pub revision: Revision,
    /// The continue token, if more follow.
    pub continue_token: Option<String>,
    /// How many more items follow (when known).
    pub remaining: Option<usize>,
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`: Orphan, Background, Foreground.
    pub propagation_policy: Option<String>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// The verbs over a store.
pub struct Registry {
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    service_cidr: (Ipv4Addr, u8),
}

/// What a storage hook gets to work with.
pub struct HookContext<'a> {
    /// The store (claims of addresses live there, outside `/registry/`).
    pub store: &'a dyn Store,
    /// The resource written.
    pub resource: &'a Resource,
    /// `dryRun=All`: nothing may be claimed or written.
    pub dry_run: bool,
}

/// Held by the registry from a hook's `begin_*` until the write is done.
pub type HookGuard = Option<tokio::sync::OwnedMutexGuard<()>>;

/// What a kind does around the store's writes, beyond its strategy: allocations that
/// must be claimed before a write and released after (service addresses). Called only
/// for resources that have hooks.
///
/// # Errors
/// A `begin_*` error refuses the write.
#[async_trait::async_trait]
pub trait StorageHooks: Send + Sync {
    /// Before a create is written (after validation).
    async fn begin_create(&self, ctx: HookContext<'_>, obj: &mut Value) -> Result<HookGuard, ApiError>;
    /// Before an update is written (after validation); `old` is the stored object.
    async fn begin_update(&self, ctx: HookContext<'_>, obj: &mut Value, old: &Value) -> Result<HookGuard, ApiError>;
    /// After an update was written.
    async fn after_update(&self, store: &dyn Store, new: &Value, old: &Value);
    /// After an object was removed from the store.
    async fn after_delete(&self, store: &dyn Store, old: &Value);
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// Reorder an object so `apiVersion`, `kind`, `metadata` come first; drop the
/// resourceVersion.
fn canonical(obj: &Value) -> Value {
    let Value::Object(map) = obj else { return obj.clone() };
    let mut out = Map::new();
    for k in ["apiVersion", "kind", "metadata"] {
        if let Some(v) = map.get(k) {
            out.insert(k.to_string(), v.clone());
        }
    }
    if let Some(Value::Object(md)) = out.get_mut("metadata") {
        md.remove("resourceVersion");
        md.remove("selfLink");
    }
    for (k, v) in map {
        if !out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// Splice `"resourceVersion":"N"` into a stored value's metadata without parsing it.
pub fn splice_resource_version(raw: &[u8], revision: Revision) -> Vec<u8> {
    const NEEDLE: &[u8] = b"\"metadata\":{";
    if let Some(pos) = raw.windows(NEEDLE.len()).position(|w| w == NEEDLE) {
        let at = pos + NEEDLE.len();
        let mut out = Vec::with_capacity(raw.len() + 32);
        out.extend_from_slice(&raw[..at]);
        out.extend_from_slice(format!("\"resourceVersion\":\"{revision}\"").as_bytes());
        if raw.get(at) != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(&raw[at..]);
        out
    } else {
        let mut v: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
        meta::metadata_mut(&mut v).insert("resourceVersion".into(), json!(revision.to_string()));
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

pub(crate) fn diff_unknown(orig: &Value, pruned: &Value, path: &str, out: &mut Vec<String>) {
    match (orig, pruned) {
        (Value::Object(o), Value::Object(p)) => {
            for (k, v) in o {
                if v.is_null() {
                    continue;
                }
                let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match p.get(k) {
                    None => out.push(sub),
                    Some(pv) => diff_unknown(v, pv, &sub, out),
                }
            }
        }
        (Value::Array(o), Value::Array(p)) => {
            for (i, (a, b)) in o.iter().zip(p.iter()).enumerate() {
                diff_unknown(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The fields two objects differ in outside metadata and status (a spec change).
fn spec_changed(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(a) != strip(b)
}

impl Registry {
    /// Call `refresh` now and after every change under `prefix` (made through any
    /// replica on the store), listing again when the watch ends; `what` names the
    /// follower in logs. Runs until its task is aborted.
    pub async fn follow_prefix<F, Fut>(&self, prefix: &str, what: &str, mut refresh: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        use futures::StreamExt;
        loop {
            match self.store.current_revision().await {
                Ok(from) => {
                    refresh().await;
                    match self.store.watch(prefix, from).await {
                        Ok(mut events) => {
                            while let Some(next) = events.next().await {
                                if let Err(e) = next {
                                    tracing::warn!(error = %e, what, "watch ended; listing again");
                                    break;
                                }
                                // One refresh for every change already there: a burst of
                                // writes costs one reload, not one each.
                                let mut ended = false;
                                loop {
                                    match futures::FutureExt::now_or_never(events.next()) {
                                        Some(Some(Ok(_))) => {}
                                        Some(Some(Err(e))) => {
                                            tracing::warn!(error = %e, what, "watch ended; listing again");
                                            ended = true;
                                            break;
                                        }
                                        Some(None) => {
                                            ended = true;
                                            break;
                                        }
                                        None => break,
                                    }
                                }
                                refresh().await;
                                if ended {
                                    break;
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, what, "cannot watch; retrying"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, what, "cannot read the store; retrying"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// A registry over `store` serving `catalog`, allocating service IPs from `service_cidr`.
    pub fn new(store: Arc<dyn Store>, catalog: Arc<Catalog>, service_cidr: (Ipv4Addr, u8)) -> Self {
        Registry { store, catalog, service_cidr }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Map a storage error for an object of `res` named `name`.
    pub fn store_error(res: &Resource, name: &str, e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(_) => ApiError::not_found(res.group_resource(), name),
            StoreError::AlreadyExists(_) => ApiError::already_exists(res.group_resource(), name),
            StoreError::Conflict { .. } => ApiError::stale(res.group_resource(), name),
            StoreError::Compacted { requested, oldest } => {
                ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
            }
            StoreError::FutureRevision(r) => {
                let mut e = ApiError::new(504, "Timeout", format!("Too large resource version: {r}, current: unknown"));
                e.details = Some(
                    json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
                );
                e
            }
            StoreError::WatchLagged => ApiError::expired("watch fell behind; resume from the last resourceVersion"),
            StoreError::Backend(m) => ApiError::internal(m),
            StoreError::Closed => ApiError::unavailable("storage is shutting down"),
        }
    }

    /// Parse a stored value into an object with its resourceVersion.
    pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
        let mut v: Value = serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
        meta::metadata_mut(&mut v).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        Ok(v)
    }

    fn encode(obj: &Value) -> Result<Bytes, ApiError> {
        serde_json::to_vec(&canonical(obj)).map(Bytes::from).map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Parse only the metadata of a stored value (the rest is scanned, not built): for
    /// PartialObjectMetadata lists, which garbage collectors ask for often.
    ///
    /// # Errors
    /// A corrupt stored value.
    pub fn decode_metadata(kv: &KeyValue) -> Result<Value, ApiError> {
        #[derive(serde::Deserialize)]
        struct MetadataOnly {
            #[serde(default)]
            metadata: serde_json::Map<String, Value>,
        }
        let mut m: MetadataOnly = serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
        m.metadata.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        Ok(json!({"metadata": m.metadata}))
    }

    /// Parse a stored value into the form `res` serves.
    pub fn decode_as(res: &Resource, kv: &KeyValue) -> Result<Value, ApiError> {
        let v = Self::decode(kv)?;
        let mut v = match res.conversion {
            Some(c) => (c.from_storage)(v),
            None => v,
        };
        // A custom resource gets its schema's defaults on every read, so a default added
        // to the CRD later shows on objects stored before it (as kube-apiserver does).
        if res.custom
            && let Some(schema) = &res.schema
        {
            crate::crd::apply_defaults(&mut v, schema);
        }
        Ok(v)
    }

    fn encode_as(res: &Resource, obj: &Value) -> Result<Bytes, ApiError> {
        match res.conversion {
            Some(c) => Self::encode(&(c.to_storage)(obj.clone())),
            None => Self::encode(obj),
        }
    }

    /// Read one object.
    ///
    /// # Errors
    /// 404 if absent.
    pub async fn get(&self, res: &Resource, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.get_kv(res, namespace, name).await.and_then(|kv| Self::decode_as(res, &kv))
    }

    async fn get_kv(&self, res: &Resource, namespace: &str, name: &str) -> Result<KeyValue, ApiError> {
        match self.store.get(&res.key(namespace, name)).await {
            Ok(Some(kv)) => Ok(kv),
            Ok(None) => Err(ApiError::not_found(res.group_resource(), name)),
            Err(e) => Err(Self::store_error(res, name, e)),
        }
    }

    /// Check a field selector's labels against what the resource supports.
    ///
    /// # Errors
    /// 400 with kube-apiserver's message for an unsupported label.
    pub fn check_field_selector(res: &Resource, fs: &FieldSelector) -> Result<(), ApiError> {
        for r in &fs.requirements {
            // A cluster-scoped kind with its own field labels refuses metadata.namespace;
            // one without accepts it (and nothing has one), as kube-apiserver does.
            let ok = r.field == "metadata.name"
                || (r.field == "metadata.namespace" && (res.namespaced || res.strategy.field_labels().is_empty()))
                || res.strategy.field_labels().iter().any(|l| l.path == r.field);
            if !ok {
                return Err(ApiError::bad_request(res.strategy.unsupported_field_label(&r.field)));
            }
        }
        Ok(())
    }

    /// Whether an object of `res` matches label and field selectors. A field the object
    /// does not have compares as its zero value (`spec.unschedulable=false` matches a
    /// node that never set it), as kube-apiserver's typed field sets do.
    pub fn matches(res: &Resource, obj: &Value, labels: &LabelSelector, fields: &FieldSelector) -> bool {
        labels.matches_object(obj)
            && (fields.is_empty()
                || fields.matches(|f| match f {
                    "metadata.name" | "metadata.namespace" => field_value(obj, f),
                    _ => res
                        .strategy
                        .field_labels()
                        .iter()
                        .find(|l| l.path == f)
                        .map(|l| res.strategy.field_value(obj, l)),
                }))
    }

    /// List one page.
    ///
    /// # Errors
    /// 400 for a bad continue token or resourceVersion, 410 for a compacted one.
    pub async fn list(&self, res: &Resource, namespace: &str, p: &ListParams) -> Result<ListPage, ApiError> {
        let prefix = res.namespace_prefix(namespace);
        let (mut revision, mut start_after) = (None, None);
        if let Some(token) = &p.continue_token {
            let (rv, start) = decode_continue(token)?;
            revision = Some(rv);
            start_after = Some(format!("{prefix}{start}"));
        } else if let Some(rv) = p.resource_version.as_deref().filter(|s| !s.is_empty() && *s != "0") {
            let rv: Revision =
                rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
            match p.resource_version_match.as_deref() {
                Some("Exact") => revision = Some(rv),
                _ => {
                    let current = self.store.current_revision().await.map_err(|e| Self::store_error(res, "", e))?;
                    if rv > current {
                        return Err(Self::store_error(res, "", StoreError::FutureRevision(rv)));
                    }
                }
            }
        }
        let filtering = !p.label_selector.is_empty() || !p.field_selector.is_empty();
        let store_err = |e| match e {
            StoreError::Compacted { .. } if p.continue_token.is_some() => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            ),
            e => Self::store_error(res, "", e),
        };
        if !filtering {
            let result = self
                .store
                .list(&prefix, ListOptions { revision, start_after, limit: p.limit })
                .await
                .map_err(store_err)?;
            let continue_token = (result.remaining > 0)
                .then(|| result.items.last().map(|kv| encode_continue(result.revision, &kv.key[prefix.len()..])))
                .flatten();
            return Ok(ListPage {
                remaining: (result.remaining > 0).then_some(result.remaining),
                items: result.items,
                revision: result.revision,
                continue_token,
            });
        }
        // With selectors, scan the snapshot and keep what matches.
        let result =
            self.store.list(&prefix, ListOptions { revision, start_after, limit: 0 }).await.map_err(store_err)?;
        let mut items = Vec::new();
        let mut continue_token = None;
        for kv in result.items {
            let obj = Self::decode_as(res, &kv)?;
            if Self::matches(res, &obj, &p.label_selector, &p.field_selector) {
                if p.limit > 0 && items.len() == p.limit {
                    let last: &KeyValue = items.last().unwrap_or(&kv);
                    continue_token = Some(encode_continue(result.revision, &last.key[prefix.len()..]));
                    break;
                }
                items.push(kv);
            }
        }
        Ok(ListPage { items, revision: result.revision, continue_token, remaining: None })
    }

    /// Check and prune a request body against the resource's type.
    fn admit_body(
        &self,
        res: &Resource,
        obj: &mut Value,
        opts: &WriteOptions,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: expected an object",
                res.kind, res.version, res.kind
            )));
        }
        let api_version = res.api_version();
        match obj.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v != api_version => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({api_version})"
                )));
            }
            _ => obj["apiVersion"] = json!(api_version),
        }
        match obj.get("kind").and_then(Value::as_str) {
            Some(k) if k != res.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    res.kind
                )));
            }
            _ => obj["kind"] = json!(res.kind),
        }
        let pruned = res.strategy.prune(obj).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                res.kind, res.version, res.kind
            ))
        })?;
        let mut unknown = Vec::new();
        diff_unknown(obj, &pruned, "", &mut unknown);
        // As kube-apiserver's strict decoding: duplicate and unknown fields in the
        // order the body has them.
        let mut seen = std::collections::HashSet::new();
        let mut ordered: Vec<(usize, String)> = opts
            .body_fields
            .iter()
            .enumerate()
            .filter(|(_, f)| !seen.insert(f.as_str()))
            .map(|(i, f)| (i, format!("duplicate field \"{f}\"")))
            .collect();
        for f in &unknown {
            let at = opts.body_fields.iter().position(|b| b == f).unwrap_or(usize::MAX);
            ordered.push((at, format!("unknown field \"{f}\"")));
        }
        ordered.sort_by_key(|(at, _)| *at);
        let problems: Vec<String> = ordered.into_iter().map(|(_, p)| p).collect();
        if !problems.is_empty() {
            match opts.field_validation {
                FieldValidation::Strict => {
                    let list = problems;
                    return Err(ApiError::bad_request(format!(
                        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                        res.kind,
                        res.version,
                        res.kind,
                        list.join(", ")
                    )));
                }
                FieldValidation::Warn => warnings.extend(problems),
                FieldValidation::Ignore => {}
            }
        }
        *obj = pruned;
        Ok(())
    }

    async fn check_namespace(&self, res: &Resource, namespace: &str) -> Result<(), ApiError> {
        if !res.namespaced {
            return Ok(());
        }
        let ns_res =
            self.catalog.find("", "v1", "namespaces").ok_or_else(|| ApiError::internal("namespaces not served"))?;
        match self.store.get(&ns_res.key("", namespace)).await {
            Ok(Some(kv)) => {
                let ns = Self::decode(&kv)?;
                if ns.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
                    let mut e = ApiError::forbidden(
                        res.group_resource(),
                        "",
                        format!("unable to create new content in namespace {namespace} because it is being terminated"),
                    );
                    e.details = Some(
                        json!({"causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {namespace} is being terminated"), "field": "metadata.namespace"}]}),
                    );
                    return Err(e);
                }
                Ok(())
            }
            Ok(None) => Err(ApiError::not_found(ns_res.group_resource(), namespace)),
            Err(e) => Err(Self::store_error(&ns_res, namespace, e)),
        }
    }

    fn validate_metadata(res: &Resource, obj: &Value, causes: &mut Vec<Cause>) {
        if res.strategy.name_is_path_segment() {
            causes.extend(crate::resources::kind::path_segment_name_causes(meta::name(obj)));
        } else {
            causes.extend(crate::resources::kind::name_causes(meta::name(obj), res.strategy.name_is_dns_label()));
        }
        for (field, map) in [("metadata.labels", "/metadata/labels"), ("metadata.annotations", "/metadata/annotations")]
        {
            if let Some(m) = obj.pointer(map).and_then(Value::as_object) {
                for (k, v) in m {
                    if !vkube_core::selector::valid_label_key(k) {
                        causes.push(Cause::invalid(field, k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
                    } else if field == "metadata.labels" {
                        let s = v.as_str().unwrap_or_default();
                        let ok = LabelSelector::parse(&format!("k={s}")).is_ok();
                        if !ok {
                            causes.push(Cause::invalid(field, s, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"));
                        }
                    }
                }
            }
        }
    }

    /// Create an object.
    ///
    /// # Errors
    /// 400 for a malformed body, 404/403 for a missing/terminating namespace, 409 if it
    /// exists, 422 if invalid.
    pub async fn create(
        &self,
        res: &Resource,
        namespace: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<WriteOutcome, ApiError> {
        let mut warnings = Vec::new();
        self.admit_body(res, &mut obj, opts, &mut warnings)?;
        let body_ns = meta::namespace(&obj).to_string();
        if res.namespaced && !body_ns.is_empty() && body_ns != namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        {
            let md = meta::metadata_mut(&mut obj);
            if res.namespaced {
                md.insert("namespace".into(), json!(namespace));
            } else {
                md.remove("namespace");
            }
            let name = md.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            if name.is_empty()
                && let Some(prefix) = md.get("generateName").and_then(Value::as_str).filter(|s| !s.is_empty())
            {
                let generated = format!("{prefix}{}", random_suffix());
                md.insert("name".into(), json!(generated));
            }
            md.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            md.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
            for f in ["deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "selfLink"] {
                md.remove(f);
            }
            if res.strategy.tracks_generation() {
                md.insert("generation".into(), json!(1));
            } else {
                md.remove("generation");
            }
        }
        let name = meta::name(&obj).to_string();
        if name.is_empty() {
            return Err(ApiError::invalid(&res.group, &res.kind, "", vec![Cause::required("metadata.name")])
                .with_message_override(format!(
                    "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    res.kind
                )));
        }
        // Status is written through /status (for custom resources with the subresource
        // too, as kube-apiserver does).
        if res.has(Subresource::Status)
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        let checked = res.strategy.before_create(&mut obj);
        let mut causes = Vec::new();
        Self::validate_metadata(res, &obj, &mut causes);
        causes.extend(checked.causes);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&res.group, &res.kind, &name, causes));
        }
        warnings.extend(checked.warnings);
        self.check_namespace(res, namespace).await?;
        if let Some(v) = &opts.validation {
            warnings.extend(v.0.check(&obj, None).await?);
        }
        crate::endpoints::apply::record_update(
            res.strategy.as_ref(),
            &mut obj,
            None,
            opts.field_manager.as_deref(),
            "Update",
            &res.api_version(),
            None,
        );
        let _guard = match &res.hooks {
            Some(hooks) => {
                // Nothing is allocated for an object that exists already.
                if self.store.get(&res.key(namespace, &name)).await.ok().flatten().is_some() {
                    return Err(ApiError::already_exists(res.group_resource(), &name));
                }
                let ctx = HookContext { store: self.store.as_ref(), resource: res, dry_run: opts.dry_run };
                hooks.begin_create(ctx, &mut obj).await?
            }
            None => None,
        };
        if opts.dry_run {
            if self.store.get(&res.key(namespace, &name)).await.ok().flatten().is_some() {
                return Err(ApiError::already_exists(res.group_resource(), &name));
            }
            return Ok(WriteOutcome { object: obj, warnings });
        }
        let bytes = Self::encode_as(res, &obj)?;
        let rev =
            self.store.create(&res.key(namespace, &name), bytes).await.map_err(|e| Self::store_error(res, &name, e))?;
        meta::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rev.to_string()));
        Ok(WriteOutcome { object: canonical_with_rv(&obj, rev), warnings })
    }

    /// Read-modify-write with compare-and-swap. `mutate` gets the current object and
    /// returns the desired one; if it carries a resourceVersion, that is a precondition.
    /// Retries on conflict when the caller set no resourceVersion.
    ///
    /// # Errors
    /// Those of `mutate`, 404, 409 on a stale resourceVersion, 422 if invalid.
    pub async fn update_with<F>(
        &self,
        res: &Resource,
        namespace: &str,
        name: &str,
        sub: Option<Subresource>,
        opts: &WriteOptions,
        mut mutate: F,
    ) -> Result<WriteOutcome, ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError> + Send,
    {
        for _attempt in 0..16 {
            let kv = self.get_kv(res, namespace, name).await?;
            let old = Self::decode_as(res, &kv)?;
            let mut obj = mutate(&old)?;
            let mut warnings = Vec::new();
            self.admit_body(res, &mut obj, opts, &mut warnings)?;
            let requested_rv = meta::resource_version(&obj);
            let has_rv =
                obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
            if has_rv && requested_rv != Some(kv.mod_revision) {
                if requested_rv.is_none() {
                    return Err(ApiError::bad_request("metadata.resourceVersion: Invalid value: must be a number"));
                }
                return Err(ApiError::stale(res.group_resource(), name));
            }
            if meta::name(&obj) != name && !meta::name(&obj).is_empty() {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta::name(&obj)
                )));
            }
            if res.namespaced && !meta::namespace(&obj).is_empty() && meta::namespace(&obj) != namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            let checked = self.prepare_update(res, sub, &mut obj, &old);
            let mut causes = Vec::new();
            Self::validate_metadata(res, &obj, &mut causes);
            causes.extend(checked.causes);
            if !causes.is_empty() {
                return Err(ApiError::invalid(&res.group, &res.kind, name, causes));
            }
            warnings.extend(checked.warnings);
            if let Some(v) = &opts.validation {
                warnings.extend(v.0.check(&obj, Some(&old)).await?);
            }
            // Hooks (a service's addresses follow its type and ports), held until the write.
            let _guard = match (&res.hooks, sub) {
                (Some(hooks), None) => {
                    let ctx = HookContext { store: self.store.as_ref(), resource: res, dry_run: opts.dry_run };
                    hooks.begin_update(ctx, &mut obj, &old).await?
                }
                _ => None,
            };
            let operation_sub = sub.map(|s| s.name());
            crate::endpoints::apply::record_update(
                res.strategy.as_ref(),
                &mut obj,
                Some(&old),
                opts.field_manager.as_deref(),
                "Update",
                &res.api_version(),
                operation_sub,
            );
            if canonical(&obj) == canonical(&old) {
                // No-op updates do not write (and keep the resourceVersion).
                return Ok(WriteOutcome { object: old, warnings });
            }
            if opts.dry_run {
                return Ok(WriteOutcome { object: obj, warnings });
            }
            let finalized = obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
                && obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_none_or(|f| f.is_empty())
                && obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) == 0
                // A namespace is held by spec.finalizers too: a status write to a
                // terminating namespace (its deletion conditions) must not remove it.
                && !res.strategy.held_by_spec(&obj);
            let key = res.key(namespace, name);
            if finalized {
                match self.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok(gone) => {
                        self.after_removal(res, &obj).await;
                        return Ok(WriteOutcome { object: canonical_with_rv(&obj, gone.mod_revision), warnings });
                    }
                    Err(StoreError::Conflict { .. }) if !has_rv => continue,
                    Err(e) => return Err(Self::store_error(res, name, e)),
                }
            }
            let bytes = Self::encode_as(res, &obj)?;
            match self.store.update(&key, bytes, kv.mod_revision).await {
                Ok(rev) => {
                    if let Some(hooks) = &res.hooks {
                        hooks.after_update(self.store.as_ref(), &obj, &old).await;
                    }
                    return Ok(WriteOutcome { object: canonical_with_rv(&obj, rev), warnings });
                }
                Err(StoreError::Conflict { .. }) if !has_rv => continue,
                Err(e) => return Err(Self::store_error(res, name, e)),
            }
        }
        Err(ApiError::stale(res.group_resource(), name))
    }

    /// Carry identity and system fields over from `old`, split spec and status, then run
    /// the strategy's update steps.
    fn prepare_update(
        &self,
        res: &Resource,
        sub: Option<Subresource>,
        obj: &mut Value,
        old: &Value,
    ) -> crate::resources::Checked {
        // Identity and system fields always come from the stored object.
        let old_md = old.get("metadata").cloned().unwrap_or_default();
        {
            let md = meta::metadata_mut(obj);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match old_md.get(f) {
                    Some(v) => {
                        md.insert(f.into(), v.clone());
                    }
                    None => {
                        md.remove(f);
                    }
                }
            }
            if old_md.get("deletionTimestamp").is_some() {
                // Once deleting, finalizers may only be removed.
                if let (Some(Value::Array(new_f)), Some(Value::Array(old_f))) =
                    (md.get("finalizers"), old_md.get("finalizers"))
                {
                    let kept: Vec<Value> = new_f.iter().filter(|f| old_f.contains(f)).cloned().collect();
                    md.insert("finalizers".into(), Value::Array(kept));
                }
            }
        }
        match sub {
            Some(Subresource::EphemeralContainers) => {
                // Only the ephemeral containers change through /ephemeralcontainers.
                let mut next = old.clone();
                match obj.pointer("/spec/ephemeralContainers").cloned() {
                    Some(e) => next["spec"]["ephemeralContainers"] = e,
                    None => {
                        if let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) {
                            spec.remove("ephemeralContainers");
                        }
                    }
                }
                if let (Some(rv), Some(md)) =
                    (obj.pointer("/metadata/resourceVersion").cloned(), next.get_mut("metadata"))
                {
                    md["resourceVersion"] = rv;
                }
                *obj = next;
                let checked = res.strategy.before_ephemeral_update(obj, old);
                if res.strategy.tracks_generation() && spec_changed(obj, old) {
                    let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
                    meta::metadata_mut(obj).insert("generation".into(), json!(g));
                }
                checked
            }
            Some(Subresource::Approval) => {
                // Only the conditions change through /approval.
                let conditions = obj.pointer("/status/conditions").cloned();
                let mut next = old.clone();
                match (conditions, next.as_object_mut()) {
                    (Some(c), Some(m)) => {
                        let status = m.entry("status").or_insert_with(|| json!({}));
                        status["conditions"] = c;
                    }
                    (None, _) => {
                        if let Some(s) = next.get_mut("status").and_then(Value::as_object_mut) {
                            s.remove("conditions");
                        }
                    }
                    _ => {}
                }
                if let (Some(rv), Some(md)) =
                    (obj.pointer("/metadata/resourceVersion").cloned(), next.get_mut("metadata"))
                {
                    md["resourceVersion"] = rv;
                }
                *obj = next;
                res.strategy.before_update(obj, old, true)
            }
            Some(Subresource::Status) => {
                // Only status changes through /status.
                let status = obj.get("status").cloned();
                let mut next = old.clone();
                match status {
                    Some(s) => next["status"] = s,
                    None => {
                        if let Some(m) = next.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                if let (Some(rv), Some(md)) =
                    (obj.pointer("/metadata/resourceVersion").cloned(), next.get_mut("metadata"))
                {
                    md["resourceVersion"] = rv;
                }
                *obj = next;
                res.strategy.before_update(obj, old, true)
            }
            _ => {
                if res.has(Subresource::Status) && sub.is_none() {
                    match old.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            if let Some(m) = obj.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                let checked = res.strategy.before_update(obj, old, false);
                // Binding a pod is not a new generation of it (kube-apiserver's binding
                // writes nodeName past the update strategy).
                if res.strategy.tracks_generation() && sub != Some(Subresource::Binding) && spec_changed(obj, old) {
                    let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
                    meta::metadata_mut(obj).insert("generation".into(), json!(g));
                }
                checked
            }
        }
    }

    /// Delete an object (gracefully, or marking it for finalizers).
    /// Returns the object as deleted (or as now marked) and whether it is gone.
    ///
    /// # Errors
    /// 404, 409 on a failed precondition.
    pub async fn delete(
        &self,
        res: &Resource,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<(Value, bool), ApiError> {
        for _attempt in 0..16 {
            let kv = self.get_kv(res, namespace, name).await?;
            let mut obj = Self::decode_as(res, &kv)?;
            if let Some(uid) = &opts.precondition_uid {
                let actual = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
                if uid != actual {
                    return Err(ApiError::conflict(
                        res.group_resource(),
                        name,
                        &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_resource_version
                && rv != &kv.mod_revision.to_string()
            {
                return Err(ApiError::conflict(
                    res.group_resource(),
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    ),
                ));
            }
            let has_finalizers =
                |o: &Value| o.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
            let grace = res.strategy.grace_period(&obj, opts.grace_period_seconds).unwrap_or(0);
            let already = obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
            let mut extra_finalizer = None;
            if !already {
                match opts.propagation_policy.as_deref() {
                    Some("Orphan") => extra_finalizer = Some("orphan"),
                    Some("Foreground") => extra_finalizer = Some("foregroundDeletion"),
                    _ => {}
                }
                if !res.strategy.deletion_rules().propagation_finalizers {
                    extra_finalizer = None;
                }
            }
            let held_by_spec = res.strategy.held_by_spec(&obj);
            let immediate = grace == 0 && !has_finalizers(&obj) && extra_finalizer.is_none() && !held_by_spec;
            if !immediate {
                let current_grace = obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
                if already && current_grace.is_none_or(|g| grace >= g) && extra_finalizer.is_none() {
                    return Ok((obj, false));
                }
                let md = meta::metadata_mut(&mut obj);
                md.insert("deletionTimestamp".into(), json!(meta::rfc3339_in(grace)));
                md.insert("deletionGracePeriodSeconds".into(), json!(grace));
                // As kube-apiserver's BeforeDelete: a graceful deletion is a new
                // generation of an object that tracks them (kubelets see it as one).
                if !already && let Some(g) = md.get("generation").and_then(Value::as_i64).filter(|g| *g > 0) {
                    md.insert("generation".into(), json!(g + 1));
                }
                if let Some(f) = extra_finalizer {
                    let list = md.entry("finalizers").or_insert_with(|| json!([]));
                    if let Value::Array(a) = list
                        && !a.iter().any(|x| x == f)
                    {
                        a.push(json!(f));
                    }
                }
                res.strategy.mark_deleting(&mut obj);
                if opts.dry_run {
                    return Ok((obj, false));
                }
                let bytes = Self::encode_as(res, &obj)?;
                match self.store.update(&kv.key, bytes, kv.mod_revision).await {
                    Ok(rev) => return Ok((canonical_with_rv(&obj, rev), false)),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(Self::store_error(res, name, e)),
                }
            }
            if opts.dry_run {
                return Ok((obj, true));
            }
            match self.store.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(gone) => {
                    self.after_removal(res, &obj).await;
                    return Ok((canonical_with_rv(&obj, gone.mod_revision), true));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(Self::store_error(res, name, e)),
            }
        }
        Err(ApiError::stale(res.group_resource(), name))
    }

    /// After an object is removed from the store: its hooks' releases.
    async fn after_removal(&self, res: &Resource, obj: &Value) {
        if let Some(hooks) = &res.hooks {
            hooks.after_delete(self.store.as_ref(), obj).await;
        }
    }

    /// The `kubernetes` service's fixed address: the first of the range.
    pub fn first_service_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.service_cidr.0) + 1)
    }
}

/// An object re-ordered canonically with its resourceVersion set.
pub fn canonical_with_rv(obj: &Value, rev: Revision) -> Value {
    let mut v = canonical(obj);
    meta::metadata_mut(&mut v).insert("resourceVersion".into(), json!(rev.to_string()));
    v
}

fn encode_continue(rev: Revision, start: &str) -> String {
    use base64::Engine as _;
    let token = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    use base64::Engine as _;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?.to_string();
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rev, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_resource_version() {
        let raw = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{}}"#;
        let out = splice_resource_version(raw, 42);
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        assert_eq!(v["metadata"]["name"], "a");
        let empty = splice_resource_version(br#"{"apiVersion":"v1","kind":"Pod","metadata":{}}"#, 7);
        let v: Value = serde_json::from_slice(&empty).expect("json");
        assert_eq!(v["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(12, "ns/name");
        assert_eq!(decode_continue(&t).expect("decodes"), (12, "ns/name".to_string()));
        assert!(decode_continue("garbage!").is_err());
    }

    #[test]
    fn unknown_fields_are_found() {
        let orig = json!({"spec": {"a": 1, "b": [{"x": 1, "y": 2}], "n": null}});
        let pruned = json!({"spec": {"a": 1, "b": [{"x": 1}]}});
        let mut out = vec![];
        diff_unknown(&orig, &pruned, "", &mut out);
        assert_eq!(out, vec!["spec.b[0].y"]);
    }
}
