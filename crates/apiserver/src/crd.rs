//! CustomResourceDefinitions: a CRD written through the API is accepted (its names
//! checked, conditions `NamesAccepted` and `Established` set) and every served version
//! becomes a resource in the catalog, pruned by its structural schema.

use crate::registry::Registry;
use crate::resources::kind::{Checked, FieldLabel, NAME_AGE, Strategy, age_at, common_merge_key, definitions};
use crate::resources::{Resource, Subresource};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// A custom resource's behaviour: pruned by its CRD's structural schema, generation
/// tracked, printed with the CRD's `additionalPrinterColumns` (between NAME and AGE).
pub struct CustomStrategy {
    /// The version's `openAPIV3Schema`.
    pub schema: Option<Value>,
    /// The version's `additionalPrinterColumns`.
    pub printer_columns: Vec<Value>,
}

fn age_cell(obj: &Value) -> Value {
    let created = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
    json!(age_at(created))
}

impl Strategy for CustomStrategy {
    fn prune(&self, obj: &Value) -> Result<Value, String> {
        Ok(match &self.schema {
            Some(schema) => {
                let mut out = prune(obj, schema);
                apply_defaults(&mut out, schema);
                out
            }
            None => obj.clone(),
        })
    }
    fn before_create(&self, obj: &mut Value) -> Checked {
        Checked { causes: self.schema.as_ref().map(|s| validate(obj, s)).unwrap_or_default(), warnings: vec![] }
    }
    fn before_update(&self, obj: &mut Value, _old: &Value, _status_only: bool) -> Checked {
        Checked { causes: self.schema.as_ref().map(|s| validate(obj, s)).unwrap_or_default(), warnings: vec![] }
    }
    fn name_is_dns_label(&self) -> bool {
        false
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn grace_period(&self, _obj: &Value, requested: Option<i64>) -> Option<i64> {
        requested.filter(|g| *g > 0).map(|_| 0)
    }
    fn field_labels(&self) -> &'static [FieldLabel] {
        &[]
    }
    fn field_value(&self, obj: &Value, label: &FieldLabel) -> String {
        vkube_core::selector::field_value(obj, label.path).unwrap_or_default()
    }
    fn unsupported_field_label(&self, field: &str) -> String {
        format!("\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")
    }
    fn column_definitions(&self) -> Vec<Value> {
        if self.printer_columns.is_empty() {
            return definitions(NAME_AGE);
        }
        let mut defs = definitions(&NAME_AGE[..1]);
        for c in &self.printer_columns {
            defs.push(json!({"name": c["name"], "type": c.get("type").cloned().unwrap_or(json!("string")), "format": c.get("format").cloned().unwrap_or(json!("")), "description": c.get("description").cloned().unwrap_or(json!("")), "priority": c.get("priority").cloned().unwrap_or(json!(0))}));
        }
        defs.push(json!({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0}));
        defs
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        let mut cells = vec![json!(vkube_core::meta::name(obj))];
        for c in &self.printer_columns {
            let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or_default();
            let ptr = path.trim_start_matches('.').replace('.', "/");
            let v = obj.pointer(&format!("/{ptr}")).cloned().unwrap_or(Value::Null);
            cells.push(if c["type"] == "date" {
                let at = v.as_str().and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
                json!(v.as_str().map(|_| age_at(at)).unwrap_or_default())
            } else {
                v
            });
        }
        cells.push(age_cell(obj));
        cells
    }
    fn merge_key(&self, path: &[&str]) -> Option<&'static str> {
        common_merge_key(path)
    }
    fn supports_strategic_merge(&self) -> bool {
        false
    }
}

/// Drop fields the schema does not declare (unless it preserves unknown fields).
/// `apiVersion`, `kind` and `metadata` at the top are always kept.
pub fn prune(obj: &Value, schema: &Value) -> Value {
    let mut out = prune_value(obj, schema);
    if let (Value::Object(o), Value::Object(src)) = (&mut out, obj) {
        for k in ["apiVersion", "kind", "metadata"] {
            if let Some(v) = src.get(k) {
                o.insert(k.into(), v.clone());
            }
        }
    }
    out
}

/// Structural defaulting: every property the schema gives a `default` and the object
/// lacks gets it, at every depth (objects, array items, map values); `metadata` at the
/// top is left alone.
pub fn apply_defaults(obj: &mut Value, schema: &Value) {
    default_value(obj, schema, true);
}

fn default_value(v: &mut Value, schema: &Value, top: bool) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if top && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    if !m.contains_key(k)
                        && let Some(d) = s.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                    if let Some(child) = m.get_mut(k) {
                        default_value(child, s, false);
                    }
                }
            } else if let Some(a) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child in m.values_mut() {
                    default_value(child, a, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for i in items {
                    default_value(i, s, false);
                }
            }
        }
        _ => {}
    }
}

fn prune_value(v: &Value, schema: &Value) -> Value {
    if schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true)
        && schema.get("properties").is_none()
    {
        return v.clone();
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
            let mut out = Map::new();
            for (k, child) in m {
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    out.insert(k.clone(), prune_value(child, s));
                } else if let Some(a) = additional.filter(|a| a.is_object()) {
                    out.insert(k.clone(), prune_value(child, a));
                } else if additional.and_then(Value::as_bool) == Some(true)
                    || preserve
                    || (props.is_none() && schema.get("type").is_none())
                {
                    out.insert(k.clone(), child.clone());
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => match schema.get("items") {
            Some(s) => Value::Array(items.iter().map(|i| prune_value(i, s)).collect()),
            None => v.clone(),
        },
        _ => v.clone(),
    }
}

fn resources_of(crd: &Value) -> Vec<Arc<Resource>> {
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default().to_string();
    let names = crd.pointer("/spec/names").cloned().unwrap_or_default();
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let list = |v: &Value, k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let plural = s(&names, "plural");
    let kind = s(&names, "kind");
    let singular = {
        let x = s(&names, "singular");
        if x.is_empty() { kind.to_lowercase() } else { x }
    };
    let namespaced = crd.pointer("/spec/scope").and_then(Value::as_str) != Some("Cluster");
    let mut out = Vec::new();
    for v in crd.pointer("/spec/versions").and_then(Value::as_array).into_iter().flatten() {
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let mut subresources = vec![];
        if v.pointer("/subresources/status").is_some() {
            subresources.push(Subresource::Status);
        }
        if v.pointer("/subresources/scale").is_some() {
            subresources.push(Subresource::Scale);
        }
        out.push(Arc::new(Resource {
            group: group.clone(),
            version: s(v, "name"),
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            namespaced,
            short_names: list(&names, "shortNames"),
            categories: list(&names, "categories"),
            subresources,
            strategy: Arc::new(CustomStrategy {
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                printer_columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            }),
            hooks: None,
            custom: true,
            storage_group: group.clone(),
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            openapi: None,
            conversion: None,
            delete_collection: true,
        }));
    }
    out
}

/// Rebuild the custom resources from the stored CRDs and mark new ones established.
pub async fn on_change(reg: &Registry) {
    let catalog = reg.catalog().clone();
    let Some(crd_res) = catalog.find("apiextensions.k8s.io", "v1", "customresourcedefinitions") else { return };
    let _rebuilding = catalog.rebuilding().await;
    let list = match reg.store().list(&crd_res.prefix(), Default::default()).await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, "custom resources not rebuilt: the CRDs could not be listed");
            return;
        }
    };
    let mut custom = Vec::new();
    for kv in list.items {
        let Ok(crd) = Registry::decode(&kv) else { continue };
        let deleting = crd.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
        if !deleting {
            custom.extend(resources_of(&crd));
        }
        let established = crd
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Established" && c["status"] == "True"));
        if !established && !deleting {
            let mut next = crd.clone();
            let now = vkube_core::meta::now_rfc3339();
            next["status"] = json!({
                "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or_default(),
                "storedVersions": crd.pointer("/spec/versions").and_then(Value::as_array).map(|vs| vs.iter().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
            });
            if let Ok(bytes) = serde_json::to_vec(&crate::registry::canonical_with_rv(&next, 0)) {
                let mut v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                if let Some(md) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    md.remove("resourceVersion");
                }
                if let Ok(b) = serde_json::to_vec(&v) {
                    // A conflict means another writer got there first; the watch brings
                    // the CRD back here.
                    if let Err(e) = reg.store().update(&kv.key, b.into(), kv.mod_revision).await {
                        tracing::debug!(error = %e, key = %kv.key, "CRD not marked established on this pass");
                    }
                }
            }
        }
    }
    catalog.set_custom(custom);
}

/// Load the CRDs stored before a restart.
pub async fn load_established(reg: &Registry) {
    on_change(reg).await;
}

/// Follow every CRD change in the store (through any endpoint, or another API server
/// replica on the same store), so the served custom resources always match the CRDs.
pub async fn follow(reg: Arc<Registry>) {
    use futures::StreamExt;
    let Some(crd_res) = reg.catalog().find("apiextensions.k8s.io", "v1", "customresourcedefinitions") else { return };
    let prefix = crd_res.prefix();
    loop {
        if let Ok(from) = reg.store().current_revision().await {
            on_change(&reg).await;
            if let Ok(mut events) = reg.store().watch(&prefix, from).await {
                while let Some(Ok(_)) = events.next().await {
                    on_change(&reg).await;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The JSON type of a value as kube's OpenAPI validator names it.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(want: &str, v: &Value) -> bool {
    match (want, json_type(v)) {
        ("number", "integer") => true,
        (w, got) => w == got,
    }
}

/// How kube's validator prints a value in `Invalid value: …`.
fn rendered(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Check a custom resource against its version's structural schema as
/// kube-apiserver's OpenAPI validator does: types, `enum`, `required`, `pattern`,
/// string lengths, numeric bounds and item counts — each cause with kube's field path
/// and message. `metadata`, `apiVersion` and `kind` at the top are the API server's.
pub fn validate(obj: &Value, schema: &Value) -> Vec<vkube_core::status::Cause> {
    let mut causes = Vec::new();
    if let (Some(props), Some(fields)) = (schema.get("properties").and_then(Value::as_object), obj.as_object()) {
        for (k, v) in fields {
            if matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
                continue;
            }
            if let Some(s) = props.get(k) {
                validate_value(v, s, k, &mut causes);
            }
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if obj.get(r).is_none_or(Value::is_null) && !matches!(r, "metadata" | "apiVersion" | "kind") {
                causes.push(vkube_core::status::Cause::required(r));
            }
        }
    }
    causes
}

fn validate_value(v: &Value, schema: &Value, path: &str, out: &mut Vec<vkube_core::status::Cause>) {
    use vkube_core::status::Cause;
    let nullable = schema.get("nullable").and_then(Value::as_bool).unwrap_or(false);
    if v.is_null() && nullable {
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool).unwrap_or(false);
    if let Some(want) = schema.get("type").and_then(Value::as_str)
        && !int_or_string
        && !type_matches(want, v)
    {
        let got = json_type(v);
        out.push(Cause {
            reason: "FieldValueTypeInvalid".into(),
            message: format!("Invalid value: \"{got}\": {path} in body must be of type {want}: \"{got}\""),
            field: path.to_string(),
        });
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(v)
    {
        let list: Vec<String> = options.iter().map(rendered).collect();
        out.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!("Unsupported value: {}: supported values: {}", rendered(v), list.join(", ")),
            field: path.to_string(),
        });
    }
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    match v {
        Value::String(s) => {
            if let Some(max) = num("maxLength")
                && s.len() as f64 > max
            {
                out.push(Cause {
                    reason: "FieldValueTooLong".into(),
                    message: format!("Too long: may not be more than {max} bytes"),
                    field: path.to_string(),
                });
            }
            if let Some(min) = num("minLength")
                && (s.chars().count() as f64) < min
            {
                out.push(Cause::invalid(path, s, format!("{path} in body should be at least {min} chars long")));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                && let Ok(re) = regex::Regex::new(pattern)
                && !re.is_match(s)
            {
                out.push(Cause::invalid(path, s, format!("{path} in body should match '{pattern}'")));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            let exclusive = |k: &str| schema.get(k).and_then(Value::as_bool).unwrap_or(false);
            if let Some(min) = num("minimum") {
                if exclusive("exclusiveMinimum") && x <= min {
                    out.push(Cause::invalid_raw(
                        path,
                        &n.to_string(),
                        format!("{path} in body should be greater than {min}"),
                    ));
                } else if x < min {
                    out.push(Cause::invalid_raw(
                        path,
                        &n.to_string(),
                        format!("{path} in body should be greater than or equal to {min}"),
                    ));
                }
            }
            if let Some(max) = num("maximum") {
                if exclusive("exclusiveMaximum") && x >= max {
                    out.push(Cause::invalid_raw(
                        path,
                        &n.to_string(),
                        format!("{path} in body should be less than {max}"),
                    ));
                } else if x > max {
                    out.push(Cause::invalid_raw(
                        path,
                        &n.to_string(),
                        format!("{path} in body should be less than or equal to {max}"),
                    ));
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = num("maxItems")
                && items.len() as f64 > max
            {
                out.push(Cause {
                    reason: "FieldValueTooMany".into(),
                    message: format!("Too many: {}: must have at most {max} items", items.len()),
                    field: path.to_string(),
                });
            }
            if let Some(min) = num("minItems")
                && (items.len() as f64) < min
            {
                out.push(Cause::invalid_raw(
                    path,
                    &items.len().to_string(),
                    format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate_value(item, item_schema, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(fields) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, fv) in fields {
                let sub = props
                    .and_then(|p| p.get(k))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(s) = sub {
                    validate_value(fv, s, &format!("{path}.{k}"), out);
                }
            }
            for r in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                if fields.get(r).is_none_or(Value::is_null) {
                    out.push(Cause::required(format!("{path}.{r}")));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn defaults_fill_missing_fields_at_every_depth_and_keep_given_ones() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string", "default": "A"},
            "spec": {"type": "object", "default": {}, "properties": {
                "n": {"type": "integer", "default": 3},
                "items": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "string", "default": "X"}}}},
            }},
        }});
        let mut obj = json!({"apiVersion": "ex.com/v1", "kind": "Foo", "metadata": {"name": "f"},
            "spec": {"items": [{}, {"x": "given"}]}});
        super::apply_defaults(&mut obj, &schema);
        assert_eq!(obj["a"], "A");
        assert_eq!(obj["spec"]["n"], 3);
        assert_eq!(obj["spec"]["items"][0]["x"], "X");
        assert_eq!(obj["spec"]["items"][1]["x"], "given");
        let mut empty = json!({"metadata": {"name": "g"}});
        super::apply_defaults(&mut empty, &schema);
        assert_eq!(empty["spec"]["n"], 3, "a defaulted object gets its own defaults");
    }
}
