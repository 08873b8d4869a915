//! Reconciles a `TrafficPolicy` into its gateway Deployment, Service, budget and RBAC;
//! computes the effective weights the gateways apply and the policy's status.
//!
//! Rollout steps (setWeight / pause / analysis on the gateways' figures) are executed
//! once the gateway workload reports per-backend figures; until then the effective
//! weights are the spec's, and `abort` sends all traffic back to the stable backends.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use super::conditions::{self, Observed};
use super::owned::{Triggers, apply, prune};
use super::{Context, Error, instrumented, names, patch_status, publish_transitions};
use crate::api::{
    BackendWeight, InferenceService, RolloutPhase, TrafficPolicy, TrafficPolicySpec,
    TrafficPolicyStatus, condition_type,
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
    // Every child at once; children unchanged since the last apply cost no write.
    let c = ctx.as_ref();
    let (_, _, deployment, _, _) = tokio::try_join!(
        apply(c, &children.service_account),
        // A RoleBinding is refused while its Role does not exist yet.
        async {
            apply(c, &children.role).await?;
            apply(c, &children.role_binding).await
        },
        apply(c, &children.deployment),
        apply(c, &children.service),
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
    let status = compute_status(&tp, &deployment, &missing, Timestamp::now());
    publish_transitions(&ctx, tp.as_ref(), &previous.conditions, &status.conditions).await;
    if status != previous {
        patch_status(client, tp.as_ref(), &status).await?;
    }
    // Backends are watched; the periodic requeue is a safety net.
    Ok(Action::requeue(Duration::from_secs(300)))
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

/// Weights the gateways apply: the spec's, or with `abort` during a rollout the stable
/// backends' weights scaled up to 100 and the canary's set to 0.
pub fn effective_weights(spec: &TrafficPolicySpec) -> Vec<BackendWeight> {
    let canary = spec
        .rollout
        .as_ref()
        .filter(|_| spec.abort)
        .map(|r| r.canary_backend.as_str());
    let weights: Vec<i64> = spec
        .backends
        .iter()
        .map(|b| {
            if Some(b.name.as_str()) == canary {
                0
            } else {
                i64::from(b.weight)
            }
        })
        .collect();
    let total: i64 = weights.iter().sum();
    let scaled = if total == 0 {
        // Every non-canary weight was 0: the first stable backend takes everything.
        let first = spec
            .backends
            .iter()
            .position(|b| Some(b.name.as_str()) != canary);
        (0..weights.len())
            .map(|i| if Some(i) == first { 100 } else { 0 })
            .collect()
    } else {
        largest_remainder(&weights, total)
    };
    spec.backends
        .iter()
        .zip(scaled)
        .map(|(b, weight)| BackendWeight {
            backend: b.name.clone(),
            weight: weight as i32,
        })
        .collect()
}

/// Scales `weights` (summing to `total`) to integers summing to exactly 100.
fn largest_remainder(weights: &[i64], total: i64) -> Vec<i64> {
    let mut out: Vec<i64> = weights.iter().map(|w| w * 100 / total).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((weights[i] * 100) % total));
    let short = 100 - out.iter().sum::<i64>();
    for &i in order.iter().take(short.max(0) as usize) {
        out[i] += 1;
    }
    out
}

/// `a=90,b=10`.
pub fn summary(weights: &[BackendWeight]) -> String {
    weights
        .iter()
        .map(|w| format!("{}={}", w.backend, w.weight))
        .collect::<Vec<_>>()
        .join(",")
}

/// Status of `tp` given its gateway Deployment and the backends' missing services.
pub fn compute_status(
    tp: &TrafficPolicy,
    deployment: &Deployment,
    missing: &[String],
    now: Timestamp,
) -> TrafficPolicyStatus {
    let previous = tp.status.clone().unwrap_or_default();
    let desired = tp.spec.gateway.replicas;
    let st = deployment.status.clone().unwrap_or_default();
    let ready = st.ready_replicas.unwrap_or(0);
    let rolled = st.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0)
        && st.updated_replicas.unwrap_or(0) >= desired
        && st.replicas.unwrap_or(0) == desired;
    let weights = effective_weights(&tp.spec);
    let phase = if tp.spec.rollout.is_some() && tp.spec.abort {
        RolloutPhase::Aborted
    } else {
        RolloutPhase::Stable
    };

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

    TrafficPolicyStatus {
        observed_generation: tp.meta().generation,
        conditions: conditions::merge(
            &previous.conditions,
            vec![ready_cond, progressing, degraded],
            tp.meta().generation,
            now,
        ),
        phase,
        current_step: None,
        step_started_at: None,
        weights_summary: Some(summary(&weights)),
        effective_weights: weights,
        backends: previous.backends,
        failed_checks: previous.failed_checks,
        ready_replicas: ready,
        url: tp
            .namespace()
            .map(|ns| format!("http://{}.{ns}.svc:{HTTP_PORT}", tp.name_any())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(v: serde_json::Value) -> TrafficPolicySpec {
        serde_json::from_value(v).unwrap()
    }

    fn weights(s: &TrafficPolicySpec) -> Vec<(String, i32)> {
        effective_weights(s)
            .into_iter()
            .map(|w| (w.backend, w.weight))
            .collect()
    }

    #[test]
    fn spec_weights_pass_through() {
        let s = spec(json!({"backends": [
            {"name": "a", "service": "a", "weight": 70}, {"name": "b", "service": "b", "weight": 30}]}));
        assert_eq!(weights(&s), [("a".into(), 70), ("b".into(), 30)]);
        assert_eq!(summary(&effective_weights(&s)), "a=70,b=30");
    }

    #[test]
    fn abort_moves_canary_traffic_to_stable_backends() {
        let s = spec(json!({
            "backends": [
                {"name": "a", "service": "a", "weight": 45}, {"name": "b", "service": "b", "weight": 45},
                {"name": "c", "service": "c", "weight": 10}],
            "rollout": {"canaryBackend": "c", "steps": [{"setWeight": 10}]},
            "abort": true}));
        assert_eq!(
            weights(&s),
            [("a".into(), 50), ("b".into(), 50), ("c".into(), 0)]
        );
    }

    #[test]
    fn abort_rounding_still_sums_to_100() {
        let s = spec(json!({
            "backends": [
                {"name": "a", "service": "a", "weight": 33}, {"name": "b", "service": "b", "weight": 33},
                {"name": "c", "service": "c", "weight": 33}, {"name": "k", "service": "k", "weight": 1}],
            "rollout": {"canaryBackend": "k", "steps": [{"setWeight": 1}]},
            "abort": true}));
        let w = weights(&s);
        assert_eq!(w.iter().map(|(_, w)| w).sum::<i32>(), 100);
        assert_eq!(w[3].1, 0);
    }

    #[test]
    fn abort_with_all_weight_on_canary_falls_back_to_first_stable() {
        let s = spec(json!({
            "backends": [{"name": "a", "service": "a", "weight": 0}, {"name": "c", "service": "c", "weight": 100}],
            "rollout": {"canaryBackend": "c", "steps": [{"setWeight": 100}]},
            "abort": true}));
        assert_eq!(weights(&s), [("a".into(), 100), ("c".into(), 0)]);
    }
}
