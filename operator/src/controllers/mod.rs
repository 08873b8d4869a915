//! The reconcile loops, one per kind, and what they share: the [`Context`], the
//! [`Error`] type, server-side apply of children, pruning of orphans, status patches,
//! Events and the per-object error backoff.
//!
//! Every reconcile follows the same path: build the desired children (pure builders),
//! apply them all with server-side apply (skipped for children the cache shows
//! unchanged, see [`owned`]), delete the children that are no longer desired, then
//! compute the status from the children's real status and write it if it changed.

pub mod conditions;
pub mod inference_service;
pub mod owned;
pub mod traffic_policy;
pub mod vector_collection;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::builders::Images;
use crate::builders::common::FIELD_MANAGER;
use crate::metrics::Metrics;

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(_)) => "api",
            Self::Kube(_) => "client",
            Self::MissingObjectKey(_) => "missing_key",
            Self::Serialize { .. } => "serialize",
        }
    }
}

/// What every reconcile needs.
pub struct Context {
    pub client: Client,
    pub images: Images,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// The cached children and what was last applied to them.
    pub owned: Arc<owned::Owned>,
    backoff: Backoff,
}

impl Context {
    pub fn new(
        client: Client,
        images: Images,
        metrics: Arc<Metrics>,
        reporter: Reporter,
        owned: Arc<owned::Owned>,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            images,
            metrics,
            owned,
            backoff: Backoff::default(),
        }
    }

    /// Publishes an Event about `obj`; failures are logged, never fatal.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        // Events are best effort: written in the background so that a reconcile never
        // waits for them (under load they were a third of its API round trips).
        let recorder = self.recorder.clone();
        let reference = obj.object_ref(&());
        let reason = reason.to_owned();
        tokio::spawn(async move {
            if let Err(err) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %err, reason, "cannot publish event");
            }
        });
    }
}

/// Publishes one Event when conditions changed between `before` and `after`: Warning
/// when the resource became Degraded, Normal otherwise; the note lists every change.
/// (One Event per reconcile, not per condition: a burst of new resources would
/// otherwise write three Events each.)
pub async fn publish_transitions<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    before: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    after: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) {
    if let Some((type_, reason, note)) = transition_event(before, after) {
        ctx.publish(obj, type_, &reason, "Reconcile", note).await;
    }
}

/// The Event summarising the condition changes, if any: the type, the reason of the
/// most telling change (Degraded, then Ready, then the rest) and a note listing all.
fn transition_event(
    before: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    after: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Option<(EventType, String, String)> {
    use crate::api::condition_type::{DEGRADED, READY};
    let changed = conditions::transitions(before, after);
    let degraded = changed
        .iter()
        .any(|c| c.type_ == DEGRADED && c.status == "True");
    let lead = changed.iter().min_by_key(|c| match c.type_.as_str() {
        DEGRADED => 0,
        READY => 1,
        _ => 2,
    })?;
    let note = changed
        .iter()
        .map(|c| {
            if c.message.is_empty() {
                format!("{} is {} ({})", c.type_, c.status, c.reason)
            } else {
                format!("{} is {} ({}): {}", c.type_, c.status, c.reason, c.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let type_ = if degraded {
        EventType::Warning
    } else {
        EventType::Normal
    };
    Some((type_, lead.reason.clone(), note))
}

/// Exponential per-object requeue delay after failed reconciles: 1 s, 2 s, 4 s, ... 5 min.
#[derive(Default)]
struct Backoff {
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

/// Runs one reconcile with metrics, success-resets of the backoff and a Warning Event
/// on failure; resources being deleted are left to the garbage collector.
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

/// Server-side applies `obj` (force: the operator owns these fields) and returns the
/// stored object, status included.
pub async fn apply<K>(client: &Client, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let ns = obj
        .meta()
        .namespace
        .as_deref()
        .ok_or(Error::MissingObjectKey("namespace"))?;
    let name = obj
        .meta()
        .name
        .as_deref()
        .ok_or(Error::MissingObjectKey("name"))?;
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(name, &params, &Patch::Apply(obj)).await?)
}

/// Writes `status` with server-side apply on the status subresource (nothing when the
/// resource has just been deleted).
pub async fn patch_status<K, S>(client: &Client, obj: &K, status: &S) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
    S: Serialize,
{
    let ns = obj
        .meta()
        .namespace
        .as_deref()
        .ok_or(Error::MissingObjectKey("namespace"))?;
    let name = obj
        .meta()
        .name
        .as_deref()
        .ok_or(Error::MissingObjectKey("name"))?;
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch_status(name, &params, &Patch::Apply(&body)).await {
        Ok(_) => Ok(()),
        // Deleted while this reconcile ran: there is no status left to write.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The API of kind `K` in namespace `ns`, or in all namespaces.
pub fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Names of a list of objects, for `prune`'s keep set.
pub fn names<'a, K: Resource + 'a>(objs: impl IntoIterator<Item = &'a K>) -> BTreeSet<String> {
    objs.into_iter()
        .filter_map(|o| o.meta().name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

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

    fn cond(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
            observed_generation: None,
        }
    }

    #[test]
    fn one_event_sums_up_all_condition_changes() {
        let before = [cond("Ready", "True", "AllShardsReady")];
        let after = [
            cond("Ready", "False", "ShardsNotReady"),
            cond("Progressing", "True", "WaitingForPods"),
            cond("Degraded", "True", "QuorumLost"),
        ];
        let (type_, reason, note) = transition_event(&before, &after).unwrap();
        assert_eq!(type_, EventType::Warning);
        assert_eq!(reason, "QuorumLost");
        assert_eq!(
            note,
            "Ready is False (ShardsNotReady); Progressing is True (WaitingForPods); \
             Degraded is True (QuorumLost)"
        );
        let (type_, reason, _) = transition_event(&[], &after[..2]).unwrap();
        assert_eq!(
            (type_, reason.as_str()),
            (EventType::Normal, "ShardsNotReady")
        );
        assert!(transition_event(&after, &after).is_none());
    }
}
