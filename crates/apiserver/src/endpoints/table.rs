//! Output of gets and lists: JSON (spliced from stored bytes on the hot path), YAML,
//! PartialObjectMetadata, and `meta.k8s.io/v1` Tables, whose columns and cells each kind
//! prints itself (`resources/<group>/<kind>.rs`; `-o wide` columns have priority 1).

use crate::endpoints::Output;
use crate::registry::{ListPage, Registry, splice_resource_version};
use crate::resources::Resource;
use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};
use std::collections::HashMap;

/// The column definitions of a resource's Table (the kind's own, or a CRD's printer
/// columns).
pub fn column_definitions(res: &Resource) -> Vec<Value> {
    res.strategy.column_definitions()
}

/// One Table row.
pub fn row(res: &Resource, obj: &Value, include: &str) -> Value {
    let mut r = json!({"cells": res.strategy.cells(obj)});
    match include {
        "None" => {}
        "Object" => r["object"] = obj.clone(),
        _ => r["object"] = partial_metadata(obj),
    }
    r
}

/// PartialObjectMetadata of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or_default()})
}

fn respond(body: Vec<u8>, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn list_metadata(page: &ListPage) -> Value {
    let mut md = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        md["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        md["remainingItemCount"] = json!(r);
    }
    md
}

/// Encode a list page in the negotiated form.
pub fn list_response(res: &Resource, page: ListPage, output: Output, q: &HashMap<String, String>) -> Response<Body> {
    match output {
        Output::Json if res.conversion.is_none() => {
            let head = json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": list_metadata(&page)});
            let mut out = serde_json::to_vec(&head).unwrap_or_default();
            out.pop();
            out.extend_from_slice(b",\"items\":[");
            for (i, kv) in page.items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&splice_resource_version(&kv.value, kv.mod_revision));
            }
            out.extend_from_slice(b"]}");
            respond(out, "application/json")
        }
        Output::Metadata if res.conversion.is_none() => {
            let items: Vec<Value> = page
                .items
                .iter()
                .filter_map(|kv| Registry::decode_metadata(kv).ok())
                .map(|o| partial_metadata(&o))
                .collect();
            let body = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_metadata(&page), "items": items});
            respond(serde_json::to_vec(&body).unwrap_or_default(), "application/json")
        }
        _ => {
            let items: Vec<Value> = page.items.iter().filter_map(|kv| Registry::decode_as(res, kv).ok()).collect();
            let body = match output {
                Output::Table => {
                    let include = q.get("includeObject").map(String::as_str).unwrap_or("Metadata");
                    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_metadata(&page), "columnDefinitions": column_definitions(res), "rows": items.iter().map(|o| row(res, o, include)).collect::<Vec<_>>()})
                }
                Output::Metadata => {
                    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_metadata(&page), "items": items.iter().map(partial_metadata).collect::<Vec<_>>()})
                }
                _ => {
                    json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": list_metadata(&page), "items": items})
                }
            };
            if output == Output::Yaml {
                respond(serde_saphyr::to_string(&body).unwrap_or_default().into_bytes(), "application/yaml")
            } else {
                respond(serde_json::to_vec(&body).unwrap_or_default(), "application/json")
            }
        }
    }
}

/// Encode one object in the negotiated form.
pub fn object_response(res: &Resource, obj: Value, output: Output, q: &HashMap<String, String>) -> Response<Body> {
    match output {
        Output::Json => respond(serde_json::to_vec(&obj).unwrap_or_default(), "application/json"),
        Output::Yaml => respond(serde_saphyr::to_string(&obj).unwrap_or_default().into_bytes(), "application/yaml"),
        Output::Metadata => {
            respond(serde_json::to_vec(&partial_metadata(&obj)).unwrap_or_default(), "application/json")
        }
        Output::Table => {
            let include = q.get("includeObject").map(String::as_str).unwrap_or("Metadata");
            let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or_default();
            let t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv}, "columnDefinitions": column_definitions(res), "rows": [row(res, &obj, include)]});
            respond(serde_json::to_vec(&t).unwrap_or_default(), "application/json")
        }
    }
}
