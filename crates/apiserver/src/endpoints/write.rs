//! The write verbs: create, update (PUT, also through `/status` and `/finalize`),
//! delete and deletecollection. Each runs the admission chain, then the registry.

use super::negotiate::{Output, delete_options, encode, list_params, parse_body, write_options};
use super::{RequestContext, Route, admit};
use crate::admission::Operation;
use crate::registry::{ListParams, Registry};
use crate::resources::Subresource;
use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use vkube_core::status::ApiError;

/// `POST` a new object.
///
/// # Errors
/// Those of admission and the registry's create.
pub async fn create(
    ctx: &RequestContext,
    route: &Route,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let (res, reg) = (&route.resource, ctx.registry());
    let mut opts = write_options(ctx, q)?;
    let obj = parse_body(&ctx.headers, body)?;
    if opts.field_validation != crate::registry::FieldValidation::Ignore {
        opts.body_fields = crate::endpoints::negotiate::body_fields(&ctx.headers, body);
    }
    let (obj, mut warnings) = admit(ctx, route, Operation::Create, opts.dry_run, obj, None).await?;
    opts.validation = super::validation_stage(ctx, route, Operation::Create, opts.dry_run);
    let out = reg.create(res, &route.namespace, obj, &opts).await?;
    warnings.extend(out.warnings);
    if res.group == "apiextensions.k8s.io" && !opts.dry_run {
        crate::crd::on_change(reg).await;
    }
    Ok(encode(StatusCode::CREATED, &out.object, Output::Json, &warnings))
}

/// `PUT` an object, its status, or a namespace's finalizers (`/finalize`).
///
/// # Errors
/// Those of admission and the registry's update.
pub async fn update(
    ctx: &RequestContext,
    route: &Route,
    name: &str,
    sub: Option<Subresource>,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let (res, reg) = (&route.resource, ctx.registry());
    let mut opts = write_options(ctx, q)?;
    let obj = parse_body(&ctx.headers, body)?;
    if opts.field_validation != crate::registry::FieldValidation::Ignore {
        opts.body_fields = crate::endpoints::negotiate::body_fields(&ctx.headers, body);
    }
    let finalize = sub == Some(Subresource::Finalize);
    let storage_sub = if finalize { None } else { sub };
    let old = reg.get(res, &route.namespace, name).await.ok();
    let (obj, mut warnings) = admit(ctx, route, Operation::Update, opts.dry_run, obj, old.as_ref()).await?;
    opts.validation = super::validation_stage(ctx, route, Operation::Update, opts.dry_run);
    let out = reg
        .update_with(res, &route.namespace, name, storage_sub, &opts, |current| {
            if finalize {
                let mut next = current.clone();
                next["spec"]["finalizers"] = obj.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
                if let Some(rv) = obj.pointer("/metadata/resourceVersion") {
                    next["metadata"]["resourceVersion"] = rv.clone();
                }
                return Ok(next);
            }
            Ok(obj.clone())
        })
        .await?;
    warnings.extend(out.warnings);
    let object = crate::namespaces::maybe_finish_namespace(reg, res, out.object, opts.dry_run).await?;
    if res.group == "apiextensions.k8s.io" && !opts.dry_run {
        crate::crd::on_change(reg).await;
    }
    Ok(encode(StatusCode::OK, &object, Output::Json, &warnings))
}

/// `DELETE` one object: 200 with it, deleted or only marked (finalizers, grace).
///
/// # Errors
/// Those of admission and the registry's delete.
pub async fn delete(
    ctx: &RequestContext,
    route: &Route,
    name: &str,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let (res, reg) = (&route.resource, ctx.registry());
    let opts = delete_options(q, &ctx.headers, body)?;
    let current = reg.get(res, &route.namespace, name).await?;
    let (_, mut warnings) = admit(ctx, route, Operation::Delete, opts.dry_run, current.clone(), Some(&current)).await?;
    let facts = super::facts(ctx, route, Operation::Delete, opts.dry_run);
    warnings.extend(ctx.state.admission.dynamic.validate(&facts, None, Some(&current)).await?);
    let (obj, gone) = reg.delete(res, &route.namespace, name, &opts).await?;
    if res.group == "apiextensions.k8s.io" && gone && !opts.dry_run {
        crate::crd::on_change(reg).await;
    }
    if gone && !opts.dry_run {
        crate::admission::resourcequota::release(reg, res, &route.namespace, &current).await;
    }
    Ok(encode(StatusCode::OK, &obj, Output::Json, &warnings))
}

/// `DELETE` a collection (selected by label and field selectors); each item passes
/// admission.
///
/// # Errors
/// Bad parameters, the first refusal.
pub async fn delete_collection(
    ctx: &RequestContext,
    route: &Route,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let (res, reg) = (&route.resource, ctx.registry());
    let opts = delete_options(q, &ctx.headers, body)?;
    let p = list_params(q, res)?;
    let page = reg.list(res, &route.namespace, &ListParams { limit: 0, continue_token: None, ..p }).await?;
    let mut items = Vec::new();
    for kv in &page.items {
        let obj = Registry::decode_as(res, kv)?;
        let ns = vkube_core::meta::namespace(&obj).to_string();
        let name = vkube_core::meta::name(&obj).to_string();
        let item = Route { namespace: ns.clone(), name: Some(name.clone()), ..route.clone() };
        admit(ctx, &item, Operation::Delete, opts.dry_run, obj.clone(), Some(&obj)).await?;
        let facts = super::facts(ctx, &item, Operation::Delete, opts.dry_run);
        ctx.state.admission.dynamic.validate(&facts, None, Some(&obj)).await?;
        match reg.delete(res, &ns, &name, &opts).await {
            Ok((o, _)) => items.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let list =
        json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": {}, "items": items});
    Ok(encode(StatusCode::OK, &list, Output::Json, &[]))
}
