//! Namespace lifecycle in the API server: a namespace being deleted is removed once its
//! `spec.finalizers` and `metadata.finalizers` are empty. Emptying it is the namespace
//! controller's job (controllers crate); until one runs, the namespace stays
//! `Terminating` and its objects stay listed, never lost.

use crate::registry::{DeleteOptions, Registry};
use crate::resources::Resource;
use serde_json::Value;
use vkube_core::status::ApiError;

/// After a write to a namespace: if it is deleting and nothing holds it, delete it (on a
/// dry run, answer as if it were deleted and delete nothing).
///
/// # Errors
/// Storage errors.
pub async fn maybe_finish_namespace(
    reg: &Registry,
    res: &Resource,
    obj: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    if !(res.group.is_empty() && res.kind == "Namespace") {
        return Ok(obj);
    }
    let deleting = obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
    let empty = |p: &str| obj.pointer(p).and_then(Value::as_array).is_none_or(|a| a.is_empty());
    if deleting && empty("/spec/finalizers") && empty("/metadata/finalizers") {
        let name = vkube_core::meta::name(&obj).to_string();
        match reg.delete(res, "", &name, &DeleteOptions { dry_run, ..Default::default() }).await {
            Ok((o, _)) => return Ok(o),
            Err(e) if e.code == 404 => return Ok(obj),
            Err(e) => return Err(e),
        }
    }
    Ok(obj)
}
