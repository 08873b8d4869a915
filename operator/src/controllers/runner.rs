//! What wraps every reconcile: a tracing span naming the object, metrics, skipping
//! resources being deleted, a Warning Event on failure, and the shared `error_policy`
//! with its per-object exponential backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use super::{Context, Error};

/// Exponential per-object requeue delay after failed reconciles: 1 s, 2 s, 4 s, ... 5 min.
#[derive(Default)]
pub(super) struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    const MAX: Duration = Duration::from_secs(300);

    fn failed(&self, key: String) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = failures.entry(key).or_insert(0);
        let delay = Duration::from_secs(1u64 << (*n).min(9)).min(Self::MAX);
        *n = n.saturating_add(1);
        delay
    }

    fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// Shared `error_policy`: log, count, publish a Warning and requeue with backoff.
pub fn error_policy<K>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let kind = K::kind(&());
    let delay = ctx.backoff.failed(object_key(obj.as_ref()));
    tracing::warn!(%kind, name = %obj.name_any(), error = %err, retry_in = ?delay, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[kind.as_ref(), err.metric_label()])
        .inc();
    Action::requeue(delay)
}

/// Runs one reconcile inside a `reconcile` span naming the object (`kind`, `object` =
/// `namespace/name`, `generation`), with metrics, success-resets of the backoff and a
/// Warning Event on failure; resources being deleted are left to the garbage collector.
pub async fn instrumented<K, F>(
    obj: Arc<K>,
    ctx: Arc<Context>,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: Future<Output = Result<Action, Error>>,
{
    // Being deleted: the garbage collector removes the children; applying them again
    // would race it.
    if obj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let kind = K::kind(&());
    let _timer = ctx
        .metrics
        .reconcile_duration
        .with_label_values(&[kind.as_ref()])
        .start_timer();
    ctx.metrics
        .reconciles
        .with_label_values(&[kind.as_ref()])
        .inc();
    let span = tracing::info_span!(
        "reconcile",
        kind = %kind,
        object = %format!(
            "{}/{}",
            obj.meta().namespace.as_deref().unwrap_or_default(),
            obj.name_any()
        ),
        generation = obj.meta().generation.unwrap_or_default(),
    );
    async {
        let result = reconcile.await;
        match &result {
            Ok(_) => ctx.backoff.succeeded(&object_key(obj.as_ref())),
            Err(err) => {
                ctx.publish(
                    obj.as_ref(),
                    EventType::Warning,
                    "ReconcileFailed",
                    "Reconcile",
                    err.to_string(),
                )
                .await;
            }
        }
        result
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes_and_resets() {
        let b = Backoff::default();
        let delays: Vec<_> = (0..12).map(|_| b.failed("k".into()).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        b.succeeded("k");
        assert_eq!(b.failed("k".into()).as_secs(), 1);
        assert_eq!(b.failed("other".into()).as_secs(), 1);
    }
}
