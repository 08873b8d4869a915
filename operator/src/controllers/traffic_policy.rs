//! Reconciles a `TrafficPolicy` into its gateway Deployment, Service, budget and RBAC;
//! runs its rollout (the state machine in `rollout`, fed with the gateways' figures
//! from `gateway_stats` when a check is due), publishes each rollout transition as an
//! Event, writes the status (effective weights the gateways apply included) and
//! requeues at the rollout's next pause end, check or deadline.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use super::conditions::{self, Observed};
use super::owned::{Triggers, apply, prune};
use super::{Context, Error, instrumented, names, patch_status, publish_transitions, rollout};
use crate::api::{
    BackendObservation, InferenceService, RolloutPhase, TrafficPolicy, condition_type,
};
use crate::builders::traffic_policy::{self as build, HTTP_PORT};

/// Reconcile entry point handed to the kube-runtime `Controller`.
pub async fn reconcile(tp: Arc<TrafficPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    instrumented(tp.clone(), ctx.clone(), reconcile_inner(tp, ctx)).await
}

async fn reconcile_inner(tp: Arc<TrafficPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = tp.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let uid = tp.uid().ok_or(Error::MissingObjectKey("uid"))?;
    let client = &ctx.client;
    let children = build::build(&tp, &ctx.images);
    // Children unchanged since the last apply cost no write. The gateway's identity,
    // permissions and Service first: its pods would start without the right to watch
    // their policy, or run for a Service that belongs to someone else (ChildTaken);
    // then the Deployment and its budget.
    let c = ctx.as_ref();
    tokio::try_join!(
        apply(c, &children.service_account),
        // A RoleBinding is refused while its Role does not exist yet.
        async {
            apply(c, &children.role).await?;
            apply(c, &children.role_binding).await
        },
        apply(c, &children.service),
    )?;
    let (deployment, _) = tokio::try_join!(
        apply(c, &children.deployment),
        futures::future::try_join_all(children.pdb.iter().map(|p| apply(c, p))),
    )?;
    // A budget is only kept while there are two replicas or more.
    prune::<PodDisruptionBudget>(c, &ns, &uid, &names(&children.pdb)).await?;

    // Backends as the cache of InferenceServices sees them (once it is filled); a
    // backend appearing or going away wakes this policy (controllers/owned.rs).
    if ctx
        .owned
        .inference_services
        .wait_until_ready()
        .await
        .is_err()
    {
        // The watch is gone: the operator is shutting down.
        return Ok(Action::await_change());
    }
    let missing: Vec<String> = tp
        .spec
        .backends
        .iter()
        .filter(|b| {
            ctx.owned
                .inference_services
                .get(&ObjectRef::new(&b.service).within(&ns))
                .is_none()
        })
        .map(|b| b.service.clone())
        .collect();

    let previous = tp.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let figures = match &tp.spec.rollout {
        Some(r) if rollout::analysis_due(&tp.spec, &previous, now) => {
            read_figures(&ctx, &tp, &ns, rollout::window(r)).await
        }
        _ => None,
    };
    let outcome = compute_status(&tp, &deployment, &missing, figures.as_deref(), now);
    let status = &outcome.status;
    if *status != previous {
        patch_status(client, tp.as_ref(), status).await?;
    }
    // Published once the status that goes with them is written.
    publish_transitions(&ctx, tp.as_ref(), &previous.conditions, &status.conditions).await;
    for e in &outcome.events {
        ctx.publish(tp.as_ref(), e.type_, e.reason, "Rollout", e.note.clone())
            .await;
    }
    // Backends are watched; the periodic requeue is a safety net.
    let safety_net = Duration::from_secs(300);
    Ok(Action::requeue(
        outcome
            .requeue_after
            .map_or(safety_net, |d| d.min(safety_net)),
    ))
}

/// The gateways' figures over `window`, or `None` when they cannot be read (logged,
/// and one Warning Event per run of failures): the analysis interval then does not
/// count.
async fn read_figures(
    ctx: &Context,
    tp: &TrafficPolicy,
    ns: &str,
    window: Duration,
) -> Option<Vec<BackendObservation>> {
    let key = (ns.to_owned(), tp.name_any());
    let result = ctx.figures.figures(ns, &key.1, window).await;
    let unreadable = || {
        ctx.unreadable_gateways
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    match result {
        Ok(figures) => {
            unreadable().remove(&key);
            Some(figures)
        }
        Err(err) => {
            tracing::warn!(namespace = ns, name = %key.1, error = %err, "cannot read the gateways' figures; the analysis interval does not count");
            let first = unreadable().insert(key);
            if first {
                let note = format!(
                    "cannot read the gateways' figures ({err}); analysis intervals do not count until they can be read"
                );
                ctx.publish(
                    tp,
                    EventType::Warning,
                    "GatewayStatsUnreadable",
                    "Analysis",
                    note,
                )
                .await;
            }
            None
        }
    }
}

/// Keeps the InferenceService metadata store (`Owned::inference_services`) and wakes
/// the TrafficPolicies (in `policies`) whose backends name a changed InferenceService.
pub async fn watch_backends(
    api: Api<PartialObjectMeta<InferenceService>>,
    writer: reflector::store::Writer<PartialObjectMeta<InferenceService>>,
    triggers: &Triggers,
    policies: &Store<TrafficPolicy>,
) {
    let mut events = std::pin::pin!(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|m| m.metadata.managed_fields = None)
            .reflect(writer)
            .touched_objects()
    );
    while let Some(event) = events.next().await {
        match event {
            Ok(isvc) => {
                let (ns, name) = (isvc.namespace(), isvc.name_any());
                for tp in policies.state() {
                    if tp.namespace() == ns && tp.spec.backends.iter().any(|b| b.service == name) {
                        let _ = triggers
                            .traffic_policies
                            .unbounded_send(ObjectRef::from_obj(tp.as_ref()));
                    }
                }
            }
            Err(err) => {
                tracing::warn!(kind = "InferenceService", error = %err, "watch of backends failed; retrying");
            }
        }
    }
}

/// Status of `tp` given its gateway Deployment, the backends' missing services and the
/// gateways' figures of the analysis window (when one was due and could be read); also
/// the rollout's Events and next wake-up (see [`rollout::advance`]).
pub fn compute_status(
    tp: &TrafficPolicy,
    deployment: &Deployment,
    missing: &[String],
    figures: Option<&[BackendObservation]>,
    now: Timestamp,
) -> rollout::Outcome {
    let previous = tp.status.clone().unwrap_or_default();
    let mut outcome = rollout::advance(&tp.spec, &previous, figures, now);
    let phase = outcome.status.phase;
    let desired = tp.spec.gateway.replicas;
    let st = deployment.status.clone().unwrap_or_default();
    let ready = st.ready_replicas.unwrap_or(0);
    let rolled = st.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0)
        && st.updated_replicas.unwrap_or(0) >= desired
        && st.replicas.unwrap_or(0) == desired;

    let ready_cond = if !missing.is_empty() {
        Observed::new(
            condition_type::READY,
            false,
            "BackendNotFound",
            format!("InferenceServices not found: {}", missing.join(", ")),
        )
    } else if ready >= desired && rolled {
        Observed::new(
            condition_type::READY,
            true,
            "GatewayReady",
            format!("{ready}/{desired} gateway replicas ready"),
        )
    } else {
        Observed::new(
            condition_type::READY,
            false,
            "GatewayNotReady",
            format!("{ready}/{desired} gateway replicas ready"),
        )
    };
    let progressing = if !rolled {
        Observed::new(
            condition_type::PROGRESSING,
            true,
            "RollingOut",
            "the gateway Deployment is being updated",
        )
    } else {
        Observed::new(
            condition_type::PROGRESSING,
            false,
            "Settled",
            "the gateway runs the current spec",
        )
    };
    let degraded = if !missing.is_empty() {
        Observed::new(
            condition_type::DEGRADED,
            true,
            "BackendNotFound",
            format!("InferenceServices not found: {}", missing.join(", ")),
        )
    } else if phase == RolloutPhase::RolledBack {
        Observed::new(
            condition_type::DEGRADED,
            true,
            "RolloutRolledBack",
            "rollout rolled back; the canary gets no traffic",
        )
    } else if phase == RolloutPhase::Aborted {
        Observed::new(
            condition_type::DEGRADED,
            true,
            "RolloutAborted",
            "rollout aborted; the canary gets no traffic",
        )
    } else {
        Observed::new(condition_type::DEGRADED, false, "AsExpected", "")
    };

    let st = &mut outcome.status;
    st.observed_generation = tp.meta().generation;
    st.conditions = conditions::merge(
        &previous.conditions,
        vec![ready_cond, progressing, degraded],
        tp.meta().generation,
        now,
    );
    st.ready_replicas = ready;
    st.url = tp
        .namespace()
        .map(|ns| format!("http://{}.{ns}.svc:{HTTP_PORT}", tp.name_any()));
    outcome
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use futures::future::BoxFuture;
    use serde_json::json;

    use super::*;
    use crate::controllers::gateway_stats::{FigureSource, StatsError};
    use crate::controllers::owned::Owned;

    fn tp(spec: serde_json::Value, status: Option<serde_json::Value>) -> TrafficPolicy {
        let mut v = json!({
            "apiVersion": "modelhub.io/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": "p", "namespace": "ns", "generation": 3},
            "spec": spec});
        if let Some(s) = status {
            v["status"] = s;
        }
        serde_json::from_value(v).unwrap()
    }

    fn rollout_spec() -> serde_json::Value {
        json!({
            "backends": [{"name": "s", "service": "s", "weight": 100}, {"name": "c", "service": "c", "weight": 0}],
            "rollout": {"canaryBackend": "c", "steps": [{"setWeight": 10}, {"analysis": {}}],
                        "analysis": {"interval": "10s", "minRequests": 1, "failureThreshold": 1}}})
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn the_status_carries_the_rollout_and_a_roll_back_is_degraded() {
        let first = compute_status(
            &tp(rollout_spec(), None),
            &Deployment::default(),
            &[],
            None,
            at(0),
        );
        let st = first.status;
        assert_eq!(
            (st.phase, st.current_step),
            (RolloutPhase::Progressing, Some(1))
        );
        assert_eq!(st.weights_summary.as_deref(), Some("s=90,c=10"));
        assert_eq!(
            (st.observed_generation, st.url.as_deref()),
            (Some(3), Some("http://p.ns.svc:8080"))
        );
        assert_eq!(first.requeue_after, Some(Duration::from_secs(10)));

        let sick = [BackendObservation {
            name: "c".into(),
            requests: 10,
            errors: 10,
            latency_p99_seconds: None,
        }];
        let policy = tp(rollout_spec(), Some(serde_json::to_value(&st).unwrap()));
        let out = compute_status(&policy, &Deployment::default(), &[], Some(&sick), at(10));
        assert_eq!(out.status.phase, RolloutPhase::RolledBack);
        assert_eq!(out.status.backends, sick);
        let degraded = out
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "RolloutRolledBack")
        );
    }

    /// Answers each read with the next queued result.
    struct Scripted(Mutex<VecDeque<Result<Vec<BackendObservation>, StatsError>>>);

    impl FigureSource for Scripted {
        fn figures<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: Duration,
        ) -> BoxFuture<'a, Result<Vec<BackendObservation>, StatsError>> {
            let next = self
                .0
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Err(StatsError::NoReadyPod));
            Box::pin(async move { next })
        }
    }

    #[tokio::test]
    async fn unreadable_gateways_give_no_figures_and_are_remembered_until_read() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let figs = vec![BackendObservation {
            name: "c".into(),
            requests: 5,
            ..Default::default()
        }];
        let script = Scripted(Mutex::new(VecDeque::from([
            Err(StatsError::NoReadyPod),
            Err(StatsError::NoReadyPod),
            Ok(figs.clone()),
        ])));
        let ctx = Context::new(
            client,
            crate::builders::Images::default(),
            Arc::new(crate::metrics::Metrics::new().unwrap()),
            kube::runtime::events::Reporter {
                controller: "test".into(),
                instance: None,
            },
            Arc::new(Owned::new().0),
        )
        .with_figures(Arc::new(script));
        let policy = tp(rollout_spec(), None);
        let key = ("ns".to_owned(), "p".to_owned());
        let marked = |ctx: &Context| ctx.unreadable_gateways.lock().unwrap().contains(&key);

        assert_eq!(
            read_figures(&ctx, &policy, "ns", Duration::from_secs(10)).await,
            None
        );
        assert!(marked(&ctx));
        assert_eq!(
            read_figures(&ctx, &policy, "ns", Duration::from_secs(10)).await,
            None
        );
        assert!(marked(&ctx));
        assert_eq!(
            read_figures(&ctx, &policy, "ns", Duration::from_secs(10)).await,
            Some(figs)
        );
        assert!(!marked(&ctx));
    }
}
