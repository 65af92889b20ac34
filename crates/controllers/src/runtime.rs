//! How every controller and syncer runs: [`run`] wires a kube-runtime `Controller` to a
//! reconcile function with one error policy — every failure logged with its object and
//! retried with per-object exponential backoff (reset once it succeeds) — and logs what
//! the controller's stream reports (watch errors, objects gone).
//!
//! # Guarantees
//! No reconcile error is dropped silently, and a failing object never spins: its retry
//! delay doubles from 100 ms up to a minute.

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::reflector::ObjectRef;
use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The first retry delay after a failure.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest retry delay.
pub const MAX_RETRY: Duration = Duration::from_secs(60);

/// Failures per object, for backoff.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Record a failure of `key`; the delay before its next attempt.
    pub fn failed(&self, key: &str) -> (u32, Duration) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let delay = FIRST_RETRY.saturating_mul(1u32 << (*n - 1).min(16)).min(MAX_RETRY);
        (*n, delay)
    }

    /// `key` succeeded: its next failure starts from the first delay again.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

/// Run `controller` with `reconcile` until its stream ends, logging every failure and
/// retrying it with backoff. `name` names the controller in logs.
pub async fn run<K, C, F, Fut, E>(name: &'static str, controller: Controller<K>, reconcile: F, ctx: Arc<C>)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + Debug + Send + Sync + 'static,
    C: Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<C>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let backoff = Arc::new(Backoff::default());
    let reconcile = Arc::new(reconcile);
    let on_success = backoff.clone();
    let key_of = |obj: &K| ObjectRef::from_obj(obj).erase().to_string();
    controller
        .run(
            move |obj: Arc<K>, ctx: Arc<C>| {
                let (reconcile, backoff) = (reconcile.clone(), on_success.clone());
                let key = key_of(&obj);
                async move {
                    let out = reconcile(obj, ctx).await;
                    if out.is_ok() {
                        backoff.succeeded(&key);
                    }
                    out
                }
            },
            move |obj: Arc<K>, error: &E, _ctx: Arc<C>| {
                let key = key_of(&obj);
                let (attempt, delay) = backoff.failed(&key);
                tracing::warn!(controller = name, object = %key, attempt, "reconcile failed, retrying in {delay:?}: {error}");
                Action::requeue(delay)
            },
            ctx,
        )
        .for_each(|result| async move {
            match result {
                Ok((object, action)) => tracing::trace!(controller = name, %object, ?action, "reconciled"),
                // Already logged, with its object, by the error policy.
                Err(ControllerError::ReconcilerFailed(..)) => {}
                Err(ControllerError::ObjectNotFound(object)) => {
                    tracing::debug!(controller = name, %object, "object gone before its reconcile")
                }
                Err(e) => tracing::warn!(controller = name, "{e}"),
            }
        })
        .await;
}

/// [`run`] as a method: `Controller::new(..).owns(..).run_logged("name", reconcile, ctx)`.
pub trait RunLogged<K> {
    /// See [`run`].
    fn run_logged<C, F, Fut, E>(self, name: &'static str, reconcile: F, ctx: Arc<C>) -> impl Future<Output = ()> + Send
    where
        C: Send + Sync + 'static,
        F: Fn(Arc<K>, Arc<C>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static;
}

impl<K> RunLogged<K> for Controller<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn run_logged<C, F, Fut, E>(self, name: &'static str, reconcile: F, ctx: Arc<C>) -> impl Future<Output = ()> + Send
    where
        C: Send + Sync + 'static,
        F: Fn(Arc<K>, Arc<C>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        run(name, self, reconcile, ctx)
    }
}

/// A delete whose object is already gone counts as done.
///
/// # Errors
/// Any other API error.
pub fn gone_is_ok<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_resets() {
        let b = Backoff::default();
        assert_eq!(b.failed("a").1, Duration::from_millis(100));
        assert_eq!(b.failed("a").1, Duration::from_millis(200));
        assert_eq!(b.failed("b").1, Duration::from_millis(100));
        for _ in 0..20 {
            b.failed("a");
        }
        assert_eq!(b.failed("a").1, MAX_RETRY);
        b.succeeded("a");
        assert_eq!(b.failed("a").1, Duration::from_millis(100));
    }
}
