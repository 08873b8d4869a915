//! The Kubernetes policy source (`--policy`): watches the one TrafficPolicy in
//! `$POD_NAMESPACE` and the namespace's EndpointSlices, and rebuilds the routing table
//! on every change, without a restart. [`translate`] turns the objects into a
//! [`PolicySpec`]: the TrafficPolicy's backends, rules and mirror, its
//! `status.effectiveWeights`, the sticky header from `spec.stickyHeader`
//! (the CRD has no field for it), and each backend's ready endpoints from the slices
//! labelled `kubernetes.io/service-name=<InferenceService>` (ports named `http` / `grpc`,
//! or numbered 8080 / 8081), and `spec.gateway.rateLimit`. The API key is not in the
//! object: it comes from the pod's `GATEWAY_API_KEY` (the Secret the operator names).
//!
//! The gateway reads its own serde view of the fields it needs rather than the
//! operator's types, so it does not depend on the operator crate.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::Deserialize;
use tokio::sync::watch;

use crate::policy::{
    ApiKey, BackendSpec, BackendWeight, EndpointSpec, HeaderRuleSpec, MirrorSpec, Policy,
    PolicyError, PolicySpec, RateLimitSpec,
};
use crate::source_file::publish;
use crate::table::Table;

/// Label EndpointSlices carry with their Service's name.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A TrafficPolicy that cannot be turned into a routing table.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("the TrafficPolicy's spec/status cannot be read: {0}")]
    Shape(#[from] serde_json::Error),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("cannot connect to the Kubernetes API: {0}")]
    Client(#[from] kube::Error),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecView {
    backends: Vec<BackendView>,
    #[serde(default)]
    rules: Vec<HeaderRuleSpec>,
    #[serde(default)]
    mirror: Option<MirrorSpec>,
    #[serde(default)]
    sticky_header: Option<String>,
    #[serde(default)]
    gateway: Option<GatewayView>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GatewayView {
    #[serde(default)]
    rate_limit: Option<RateLimitSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackendView {
    name: String,
    service: String,
    weight: i32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StatusView {
    #[serde(default)]
    effective_weights: Vec<BackendWeight>,
}

/// The routing policy of `tp` with the ready endpoints found in `slices`.
pub fn translate(
    tp: &DynamicObject,
    slices: &[&EndpointSlice],
) -> Result<PolicySpec, KubeSourceError> {
    let spec: SpecView = serde_json::from_value(tp.data.get("spec").cloned().unwrap_or_default())?;
    let status: StatusView = match tp.data.get("status") {
        Some(s) if !s.is_null() => serde_json::from_value(s.clone())?,
        _ => StatusView::default(),
    };
    let sticky_header = spec
        .sticky_header
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let backends = spec
        .backends
        .into_iter()
        .map(|b| BackendSpec {
            endpoints: endpoints_of(&b.service, slices),
            name: b.name,
            service: b.service,
            weight: b.weight,
        })
        .collect();
    Ok(PolicySpec {
        backends,
        rules: spec.rules,
        mirror: spec.mirror,
        sticky_header,
        effective_weights: status.effective_weights,
        api_key: None,
        rate_limit: spec.gateway.and_then(|g| g.rate_limit),
    })
}

/// Ready endpoints of the Service `service` (sorted, without duplicates).
pub fn endpoints_of(service: &str, slices: &[&EndpointSlice]) -> Vec<EndpointSpec> {
    let mut out = Vec::new();
    for s in slices {
        let labels = s.metadata.labels.as_ref();
        if labels
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .map(String::as_str)
            != Some(service)
        {
            continue;
        }
        let port = |name: &str, number: i32| {
            let ports = s.ports.as_deref().unwrap_or_default();
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name))
                .or_else(|| ports.iter().find(|p| p.port == Some(number)))
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
        };
        let (http, grpc) = (port("http", 8080), port("grpc", 8081));
        for e in &s.endpoints {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            for a in &e.addresses {
                let Ok(ip) = a.parse::<IpAddr>() else {
                    tracing::debug!(address = %a, "skipping a non-IP endpoint address");
                    continue;
                };
                out.push(EndpointSpec {
                    http: http.map(|p| SocketAddr::new(ip, p)),
                    grpc: grpc.map(|p| SocketAddr::new(ip, p)),
                });
            }
        }
    }
    out.sort_by_key(|e| (e.http, e.grpc));
    out.dedup();
    out
}

/// Objects seen so far.
#[derive(Default)]
struct World {
    api_key: Option<ApiKey>,
    tp: Option<DynamicObject>,
    slices: BTreeMap<String, EndpointSlice>,
    pending_slices: Option<BTreeMap<String, EndpointSlice>>,
}

impl World {
    fn rebuild(&self, tx: &watch::Sender<Option<Arc<Table>>>) {
        let Some(tp) = &self.tp else { return };
        let slices: Vec<&EndpointSlice> = self.slices.values().collect();
        let spec = translate(tp, &slices).map(|s| PolicySpec {
            api_key: self.api_key.clone(),
            ..s
        });
        match spec.and_then(|s| Ok(Policy::compile(&s)?)) {
            Ok(policy) => {
                let pods: HashMap<&str, usize> = policy
                    .backends
                    .iter()
                    .map(|b| (b.name.as_str(), b.endpoints.len()))
                    .collect();
                tracing::info!(?pods, "routing table rebuilt");
                publish(tx, policy);
            }
            Err(err) => {
                tracing::warn!(error = %err, "TrafficPolicy not applied; keeping the previous table")
            }
        }
    }
}

fn slice_key(s: &EndpointSlice) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

/// Starts watching; returns once the client is built (the watches run in a task).
/// `api_key`: the key clients must present (none: no authentication).
pub async fn start(
    namespace: String,
    policy: String,
    api_key: Option<ApiKey>,
    tx: watch::Sender<Option<Arc<Table>>>,
) -> Result<(), KubeSourceError> {
    let client = kube::Client::try_default().await?;
    let gvk = GroupVersionKind::gvk("modelhub.io", "v1alpha1", "TrafficPolicy");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "trafficpolicies");
    let tps: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &ar);
    let slices: Api<EndpointSlice> = Api::namespaced(client, &namespace);
    let mut tp_events = watcher::watcher(
        tps,
        watcher::Config::default().fields(&format!("metadata.name={policy}")),
    )
    .default_backoff()
    .boxed();
    let mut slice_events = watcher::watcher(
        slices,
        watcher::Config::default().labels(SERVICE_NAME_LABEL),
    )
    .default_backoff()
    .boxed();
    tokio::spawn(async move {
        let mut world = World {
            api_key,
            ..World::default()
        };
        loop {
            let changed = tokio::select! {
                ev = tp_events.next() => match ev {
                    None => break,
                    Some(Err(err)) => { tracing::warn!(error = %err, "TrafficPolicy watch"); false }
                    Some(Ok(Event::Apply(o) | Event::InitApply(o))) => { world.tp = Some(o); true }
                    Some(Ok(Event::Delete(_))) => {
                        tracing::warn!(%policy, "TrafficPolicy deleted; keeping the last table");
                        world.tp = None;
                        false
                    }
                    Some(Ok(Event::Init | Event::InitDone)) => false,
                },
                ev = slice_events.next() => match ev {
                    None => break,
                    Some(Err(err)) => { tracing::warn!(error = %err, "EndpointSlice watch"); false }
                    Some(Ok(Event::Init)) => { world.pending_slices = Some(BTreeMap::new()); false }
                    Some(Ok(Event::InitApply(s))) => {
                        world.pending_slices.get_or_insert_default().insert(slice_key(&s), s);
                        false
                    }
                    Some(Ok(Event::InitDone)) => {
                        world.slices = world.pending_slices.take().unwrap_or_default();
                        true
                    }
                    Some(Ok(Event::Apply(s))) => { world.slices.insert(slice_key(&s), s); true }
                    Some(Ok(Event::Delete(s))) => { world.slices.remove(&slice_key(&s)); true }
                },
            };
            if changed {
                world.rebuild(&tx);
            }
        }
        tracing::error!("Kubernetes watches ended");
    });
    Ok(())
}

#[cfg(test)]
#[path = "source_kube_tests.rs"]
mod tests;
