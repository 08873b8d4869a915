//! What every reconcile needs: the [`Context`] (client, images, metrics, Event
//! recorder, the cache of owned children, the per-object backoff) and best-effort
//! Events.

use std::sync::Arc;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use super::owned;
use super::runner::Backoff;
use crate::builders::Images;
use crate::metrics::Metrics;

/// What every reconcile needs.
pub struct Context {
    pub client: Client,
    pub images: Images,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// The cached children and what was last applied to them.
    pub owned: Arc<owned::Owned>,
    pub(super) backoff: Backoff,
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
