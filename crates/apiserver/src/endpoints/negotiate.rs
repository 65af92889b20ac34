//! What requests say and how answers are encoded: content negotiation (JSON, YAML,
//! Table, PartialObjectMetadata), `Status` errors and `Warning` headers, request bodies,
//! and the query parameters of lists, writes and deletes.

use super::RequestContext;
use crate::registry::{DeleteOptions, FieldValidation, ListParams, Registry, WriteOptions};
use crate::resources::Resource;
use axum::body::Body;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::Value;
use std::collections::HashMap;
use vkube_core::selector::{FieldSelector, LabelSelector};
use vkube_core::status::ApiError;

/// How the response is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// A meta.k8s.io/v1 Table.
    Table,
    /// PartialObjectMetadata(List).
    Metadata,
}

/// Negotiate the output form from `Accept`.
///
/// # Errors
/// 406 when nothing acceptable is offered.
pub fn negotiate(headers: &HeaderMap) -> Result<Output, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*");
    let mut any = false;
    for part in accept.split(',') {
        let part = part.trim();
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or_default();
        let opts: Vec<&str> = params.collect();
        let as_ = opts.iter().find_map(|o| o.strip_prefix("as="));
        match (media, as_) {
            ("application/json", Some("Table")) => return Ok(Output::Table),
            ("application/json", Some("PartialObjectMetadata" | "PartialObjectMetadataList")) => {
                return Ok(Output::Metadata);
            }
            ("application/json", Some(_)) => continue,
            ("application/json" | "application/*" | "*/*" | "", None) => return Ok(Output::Json),
            ("application/yaml", None) => return Ok(Output::Yaml),
            ("application/vnd.kubernetes.protobuf", _) => any = true,
            _ => {}
        }
    }
    if any || !accept.is_empty() {
        return Ok(Output::Json).and_then(|o| {
            if any {
                Ok(o)
            } else {
                Err(ApiError::not_acceptable(format!(
                    "only the following media types are accepted: application/json, application/yaml (got {accept})"
                )))
            }
        });
    }
    Ok(Output::Json)
}

pub(crate) fn query_map(uri: &http::Uri) -> HashMap<String, String> {
    uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// Render an error as kube-apiserver would.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let body = serde_json::to_vec(&e.to_status()).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if e.code == 401 {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"kubernetes-master\""));
    }
    r
}

pub(crate) fn json_bytes(status: StatusCode, body: Vec<u8>, warnings: &[String]) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    add_warnings(&mut r, warnings);
    r
}

/// Add `Warning: 299 - "..."` headers.
pub fn add_warnings(r: &mut Response<Body>, warnings: &[String]) {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        let text: String =
            escaped.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' }).collect();
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
}

pub(crate) fn encode(status: StatusCode, obj: &Value, output: Output, warnings: &[String]) -> Response<Body> {
    if output == Output::Yaml {
        let text = serde_saphyr::to_string(obj).unwrap_or_default();
        let mut r = Response::new(Body::from(text));
        *r.status_mut() = status;
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
        add_warnings(&mut r, warnings);
        return r;
    }
    json_bytes(status, serde_json::to_vec(obj).unwrap_or_default(), warnings)
}

pub fn write_options(ctx: &RequestContext, q: &HashMap<String, String>) -> Result<WriteOptions, ApiError> {
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!("Invalid dryRun value: \"{other}\": supported values: \"All\"")));
        }
    };
    let field_validation = match q.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            )));
        }
    };
    let field_manager = q.get("fieldManager").cloned().or_else(|| {
        ctx.headers
            .get(header::USER_AGENT)
            .and_then(|u| u.to_str().ok())
            .map(|u| u.split('/').next().unwrap_or(u).to_string())
    });
    Ok(WriteOptions { dry_run, field_validation, field_manager, body_fields: Vec::new(), validation: None })
}

/// Every field path of a JSON body (`spec.replicas`, `spec.containers[0].name`) in
/// document order, a field given twice in one object listed twice: serde keeps the
/// last silently, kube-apiserver's strict decoding reports it. Other encodings give
/// none here.
pub fn body_fields(headers: &HeaderMap, body: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
    struct Walk<'a> {
        path: String,
        out: &'a mut Vec<String>,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() { key } else { format!("{}.{key}", self.path) };
                self.out.push(path.clone());
                map.next_value_seed(Walk { path, out: &mut *self.out })?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq.next_element_seed(Walk { path: format!("{}[{i}]", self.path), out: &mut *self.out })?.is_some() {
                i += 1;
            }
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if !matches!(ct.split(';').next().unwrap_or_default().trim(), "application/json" | "" | "*/*") {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    // A body that does not parse is reported by parse_body; nothing to add here.
    let _ = Walk { path: String::new(), out: &mut out }.deserialize(&mut de);
    out
}

/// Parse a request body (JSON or YAML) into an object.
///
/// # Errors
/// 400 with the parser's message, 415 for unknown media types.
pub fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or_default().trim();
    match media {
        "application/json" | "" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let text =
                std::str::from_utf8(body).map_err(|e| ApiError::bad_request(format!("yaml: invalid UTF-8: {e}")))?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| ApiError::bad_request(format!("yaml: {e}")))
        }
        "application/vnd.kubernetes.protobuf" => crate::endpoints::protobuf::decode(body),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// A YAML body as kube-apiserver reads one: a key repeated in a mapping keeps its last
/// value, and each repeat is reported as `line N: key "K" already set in map` (the line of
/// the repeat, counted from the body's first line), for field validation to refuse or
/// warn about.
///
/// # Errors
/// 400 for text that is not YAML.
pub fn parse_yaml_with_repeats(body: &[u8]) -> Result<(Value, Vec<String>), ApiError> {
    use serde_saphyr::{DuplicateKeyPolicy, Options, from_str_with_options};
    let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(format!("yaml: invalid UTF-8: {e}")))?;
    let mut last_wins = Options::default();
    last_wins.duplicate_keys = DuplicateKeyPolicy::LastWins;
    let value: Value =
        from_str_with_options(text, last_wins).map_err(|e| ApiError::bad_request(format!("yaml: {e}")))?;
    // Each repeat, one at a time: the parser names the first; that key is renamed (on its
    // own line, so the lines of the others stay) and the text read again.
    let mut scratch = text.to_string();
    let mut repeats = Vec::new();
    for n in 0..256 {
        let mut strict = Options::default();
        strict.duplicate_keys = DuplicateKeyPolicy::Error;
        strict.with_snippet = false;
        match from_str_with_options::<serde::de::IgnoredAny>(&scratch, strict) {
            Err(serde_saphyr::Error::DuplicateMappingKey { key, location }) => {
                let (line, column) = (location.line() as usize, location.column() as usize);
                repeats.push(format!("line {line}: key {:?} already set in map", key.unwrap_or_default()));
                let Some(offset) = line_column_offset(&scratch, line, column) else { break };
                scratch.insert_str(offset, &format!("vkube-repeat-{n}-"));
            }
            _ => break,
        }
    }
    Ok((value, repeats))
}

/// The byte offset of a 1-based line and column.
fn line_column_offset(text: &str, line: usize, column: usize) -> Option<usize> {
    let start: usize = text.split_inclusive('\n').take(line.checked_sub(1)?).map(str::len).sum();
    let row = text.get(start..)?.split('\n').next()?;
    let within: usize = row.chars().take(column.checked_sub(1)?).map(char::len_utf8).sum();
    Some(start + within)
}

pub(crate) fn list_params(q: &HashMap<String, String>, res: &Resource) -> Result<ListParams, ApiError> {
    let label_selector =
        LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or_default()).map_err(|e| {
            ApiError::bad_request(format!(
                "unable to parse requirement: {}",
                e.0.trim_start_matches("unable to parse requirement: ")
            ))
        })?;
    let field_selector = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.0))?;
    Registry::check_field_selector(res, &field_selector)?;
    let limit = match q.get("limit").map(String::as_str) {
        None | Some("") => 0,
        Some(l) => l.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?.max(0) as usize,
    };
    let rvm = q.get("resourceVersionMatch").filter(|s| !s.is_empty()).cloned();
    if let Some(m) = &rvm {
        if m != "Exact" && m != "NotOlderThan" {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                vec![vkube_core::status::Cause::not_supported(
                    "resourceVersionMatch",
                    m,
                    &["Exact", "NotOlderThan", ""],
                )],
            ));
        }
        if q.get("resourceVersion").is_none_or(|s| s.is_empty()) {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                vec![vkube_core::status::Cause::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )],
            ));
        }
    }
    Ok(ListParams {
        label_selector,
        field_selector,
        limit,
        continue_token: q.get("continue").filter(|s| !s.is_empty()).cloned(),
        resource_version: q.get("resourceVersion").cloned(),
        resource_version_match: rvm,
    })
}

pub(crate) fn delete_options(
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions::default();
    if !body.is_empty() {
        let v = parse_body(headers, body)?;
        opts.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.propagation_policy = v.get("propagationPolicy").and_then(Value::as_str).map(String::from);
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) && opts.propagation_policy.is_none() {
            opts.propagation_policy = Some("Orphan".into());
        }
        opts.precondition_uid = v.pointer("/preconditions/uid").and_then(Value::as_str).map(String::from);
        opts.precondition_resource_version =
            v.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(String::from);
        opts.dry_run = v.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|x| x == "All"));
    }
    if let Some(g) = q.get("gracePeriodSeconds") {
        opts.grace_period_seconds =
            Some(g.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds: {g}")))?);
    }
    if let Some(p) = q.get("propagationPolicy") {
        opts.propagation_policy = Some(p.clone());
    }
    if let Some(p) = &opts.propagation_policy
        && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
    {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "DeleteOptions",
            "",
            vec![vkube_core::status::Cause::not_supported(
                "propagationPolicy",
                p,
                &["Foreground", "Background", "Orphan", "nil"],
            )],
        ));
    }
    if q.get("dryRun").is_some_and(|d| d == "All") {
        opts.dry_run = true;
    }
    Ok(opts)
}

#[cfg(test)]
mod duplicate_tests {
    /// The lines kube-apiserver 1.36 names for the same body (read back from it).
    #[test]
    fn repeated_yaml_keys_keep_the_last_value_and_are_named_by_line() {
        let body = "\napiVersion: example.com/v1\nkind: Noxu\nmetadata:\n  name: mytest\nspec:\n  unknown: uk1\n  foo: foo1\n  foo: foo2\n  cronSpec: \"* * * * */5\"\n  bar: 1\n  bar: 2\n";
        let (value, repeats) = super::parse_yaml_with_repeats(body.as_bytes()).expect("yaml");
        assert_eq!(value["spec"]["foo"], "foo2");
        assert_eq!(repeats, ["line 9: key \"foo\" already set in map", "line 12: key \"bar\" already set in map"]);
        let (_, none) = super::parse_yaml_with_repeats(b"a: 1\nb: {c: 2}\n").expect("yaml");
        assert!(none.is_empty());
    }

    #[test]
    fn body_fields_are_listed_in_order_with_duplicates() {
        let body = br#"{"spec":{"replicas":1,"replicas":2,"containers":[{"name":"a"}]},"kind":"X"}"#;
        let found = super::body_fields(&http::HeaderMap::new(), body);
        let want = ["spec", "spec.replicas", "spec.replicas", "spec.containers", "spec.containers[0].name", "kind"];
        assert_eq!(found, want.map(String::from).to_vec());
    }
}
