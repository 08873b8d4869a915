//! What every reconcile needs: the [`Context`] (client, images, metrics, Event
//! recorder, the cache of owned children, the per-object backoff, the source of the
//! gateways' figures) and best-effort Events.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use super::gateway_stats::{FigureSource, GatewayStats};
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
    /// Where the rollout analysis reads the gateways' per-backend figures.
    pub figures: Arc<dyn FigureSource>,
    /// TrafficPolicies (namespace, name) whose gateways could not be read at the last
    /// try: the Warning Event is published once per run of failures.
    pub(super) unreadable_gateways: Mutex<HashSet<(String, String)>>,
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
            figures: Arc::new(GatewayStats::new(client.clone())),
            unreadable_gateways: Mutex::default(),
            client,
            images,
            metrics,
            owned,
            backoff: Backoff::default(),
        }
    }

    /// The same context reading the gateways' figures from `figures` (tests).
    pub fn with_figures(mut self, figures: Arc<dyn FigureSource>) -> Self {
        self.figures = figures;
        self
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
