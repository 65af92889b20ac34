//! The read verbs: get (also through `/status`), list (in every negotiated form) and
//! watch.

use super::negotiate::{Output, encode, list_params, negotiate};
use super::{RequestContext, Route};
use axum::body::Body;
use http::{Response, StatusCode};
use std::collections::HashMap;
use vkube_core::status::ApiError;

/// `GET` a collection.
///
/// # Errors
/// Bad parameters, 410 for a compacted resourceVersion.
pub async fn list(
    ctx: &RequestContext,
    route: &Route,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let output = negotiate(&ctx.headers)?;
    let p = list_params(q, &route.resource)?;
    let page = ctx.registry().list(&route.resource, &route.namespace, &p).await?;
    Ok(super::table::list_response(&route.resource, page, output, q))
}

/// `GET` one object.
///
/// # Errors
/// 404.
pub async fn get(
    ctx: &RequestContext,
    route: &Route,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let output = negotiate(&ctx.headers)?;
    let obj = ctx.registry().get(&route.resource, &route.namespace, name).await?;
    Ok(super::table::object_response(&route.resource, obj, output, q))
}

/// `GET .../status`: the whole object, as kube-apiserver answers.
///
/// # Errors
/// 404.
pub async fn get_status(ctx: &RequestContext, route: &Route, name: &str) -> Result<Response<Body>, ApiError> {
    let output = negotiate(&ctx.headers)?;
    let obj = ctx.registry().get(&route.resource, &route.namespace, name).await?;
    Ok(encode(StatusCode::OK, &obj, if output == Output::Yaml { Output::Yaml } else { Output::Json }, &[]))
}

/// A watch of a collection, or of one object (`name`).
///
/// # Errors
/// Bad parameters.
pub async fn watch(
    ctx: &RequestContext,
    route: &Route,
    name: Option<&str>,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let mut p = list_params(q, &route.resource)?;
    if let Some(name) = name {
        p.field_selector.requirements.push(vkube_core::selector::FieldRequirement {
            field: "metadata.name".into(),
            negated: false,
            value: name.to_string(),
        });
    }
    super::watch::serve(ctx, route, p, q).await
}
