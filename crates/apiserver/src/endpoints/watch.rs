//! Watches: a chunked stream of `{"type": ..., "object": ...}` lines, from the store's
//! ordered watch, filtered by label and field selectors (an object leaving the selector
//! is reported DELETED, one entering it ADDED), with initial ADDED events for a watch
//! without a resourceVersion, bookmarks, `sendInitialEvents`, `timeoutSeconds`, and
//! Table output for `kubectl get -w`.

use crate::endpoints::{Output, RequestContext, Route, negotiate};
use crate::registry::{ListParams, Registry};
use crate::resources::Resource;
use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Response, header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use vkube_core::status::ApiError;
use vkube_store::{EventKind, ListOptions};

/// Lines a watch buffers ahead of a slow client. Small on purpose: the store's history
/// is the buffer (the watch task reads it at the client's pace), so a lagging client
/// costs a few lines here, not a copy of every event it has not read yet.
const WATCH_BUFFER: usize = 16;

struct Encoder {
    resource: Arc<Resource>,
    output: Output,
    include: String,
    sent_columns: bool,
}

impl Encoder {
    fn line(&mut self, ty: &str, obj: &Value) -> Bytes {
        let object = match self.output {
            Output::Table => {
                let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or_default()}, "rows": [crate::endpoints::table::row(&self.resource, obj, &self.include)]});
                if !self.sent_columns {
                    t["columnDefinitions"] = json!(crate::endpoints::table::column_definitions(&self.resource));
                    self.sent_columns = true;
                } else {
                    t["columnDefinitions"] = json!([]);
                }
                t
            }
            Output::Metadata => crate::endpoints::table::partial_metadata(obj),
            _ => obj.clone(),
        };
        let mut out = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }

    fn bookmark(&self, revision: i64, initial_end: bool) -> Bytes {
        let mut md = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            md["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let kind = if self.output == Output::Table { "Table".to_string() } else { self.resource.kind.clone() };
        let api_version =
            if self.output == Output::Table { "meta.k8s.io/v1".to_string() } else { self.resource.api_version() };
        let mut out = serde_json::to_vec(
            &json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": md}}),
        )
        .unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }

    /// A watch line spliced from stored bytes, without parsing the object (JSON output,
    /// no selectors, no conversion: the common case for controllers' watches).
    fn raw_line(ty: &str, kv: &vkube_store::KeyValue) -> Bytes {
        let object = crate::registry::splice_resource_version(&kv.value, kv.mod_revision);
        let mut out = Vec::with_capacity(object.len() + 32);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(ty.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        out.extend_from_slice(&object);
        out.extend_from_slice(b"}\n");
        Bytes::from(out)
    }

    fn error(e: &ApiError) -> Bytes {
        let mut out = serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }
}

/// Serve a watch request.
///
/// # Errors
/// 400 for bad parameters, 406 for an unacceptable output.
pub async fn serve(
    ctx: &RequestContext,
    route: &Route,
    params: ListParams,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let output = match negotiate(&ctx.headers)? {
        Output::Yaml => Output::Json,
        o => o,
    };
    let res = route.resource.clone();
    let store = ctx.state.registry.store().clone();
    let prefix = res.namespace_prefix(&route.namespace);
    let rv = q.get("resourceVersion").cloned().unwrap_or_default();
    let send_initial = q.get("sendInitialEvents").map(|s| s == "true");
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|s| s == "true" || s == "1");
    let timeout = q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).filter(|t| *t > 0).unwrap_or(1800);
    let initial = match send_initial {
        Some(b) => b,
        None => rv.is_empty() || rv == "0",
    };
    let start_rev: Option<i64> = if initial || rv.is_empty() || rv == "0" {
        None
    } else {
        Some(rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?)
    };
    let include = q.get("includeObject").cloned().unwrap_or_else(|| "Metadata".into());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(WATCH_BUFFER);
    tokio::spawn(async move {
        let mut enc = Encoder { resource: res.clone(), output, include, sent_columns: false };
        let labels = params.label_selector;
        let fields = params.field_selector;
        let fast = output == Output::Json && labels.is_empty() && fields.is_empty() && res.conversion.is_none();
        // Metadata-only watches (garbage collectors, metadata informers) parse only the
        // metadata of each stored object, unless a field selector needs the rest.
        let metadata_only = output == Output::Metadata && fields.is_empty() && res.conversion.is_none();
        let decode = |kv: &vkube_store::KeyValue| {
            if metadata_only { Registry::decode_metadata(kv) } else { Registry::decode_as(&res, kv) }
        };
        let mut from = match start_rev {
            Some(r) => r,
            None => {
                let list = match store.list(&prefix, ListOptions::default()).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Ok(Encoder::error(&Registry::store_error(&res, "", e)))).await;
                        return;
                    }
                };
                if initial {
                    for kv in &list.items {
                        if fast {
                            if tx.send(Ok(Encoder::raw_line("ADDED", kv))).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        let Ok(obj) = decode(kv) else { continue };
                        if Registry::matches(&res, &obj, &labels, &fields)
                            && tx.send(Ok(enc.line("ADDED", &obj))).await.is_err()
                        {
                            return;
                        }
                    }
                    if send_initial == Some(true) && tx.send(Ok(enc.bookmark(list.revision, true))).await.is_err() {
                        return;
                    }
                }
                list.revision
            }
        };
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(Duration::from_secs(10));
        ticker.tick().await;
        let mut stream = match store.watch(&prefix, from).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Ok(Encoder::error(&Registry::store_error(&res, "", e)))).await;
                return;
            }
        };
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(Ok(enc.bookmark(from, false))).await.is_err() { return }
                }
                next = stream.next() => {
                    let ev = match next {
                        Some(Ok(ev)) => ev,
                        Some(Err(e)) => { let _ = tx.send(Ok(Encoder::error(&Registry::store_error(&res, "", e)))).await; return }
                        None => return,
                    };
                    from = ev.revision();
                    if fast {
                        let ty = match ev.kind { EventKind::Create => "ADDED", EventKind::Update => "MODIFIED", EventKind::Delete => "DELETED" };
                        if tx.send(Ok(Encoder::raw_line(ty, &ev.kv))).await.is_err() { return }
                        continue;
                    }
                    let Ok(cur) = decode(&ev.kv) else { continue };
                    let prev = ev.prev.as_ref().and_then(|p| decode(p).ok());
                    let cur_m = Registry::matches(&res, &cur, &labels, &fields);
                    let prev_m = prev.as_ref().is_some_and(|p| Registry::matches(&res, p, &labels, &fields));
                    let ty = match ev.kind {
                        EventKind::Create if cur_m => "ADDED",
                        EventKind::Update if cur_m && prev_m => "MODIFIED",
                        EventKind::Update if cur_m => "ADDED",
                        EventKind::Update if prev_m => "DELETED",
                        EventKind::Delete if prev_m || cur_m => "DELETED",
                        _ => continue,
                    };
                    if tx.send(Ok(enc.line(ty, &cur))).await.is_err() { return }
                }
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(r)
}
