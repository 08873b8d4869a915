//! TrafficPolicy rollouts driven through the API: setWeight and pause steps walk to
//! Promoted with each step's effective weights visible in the status; `promote` and
//! `abort` patches; an analysis step whose gateways cannot be read (no node agent, so
//! no gateway pod runs) never advances and rolls back past the progress deadline.

use kube::api::{Api, Patch, PatchParams, PostParams};
use modelhub_operator::api::{RolloutPhase, TrafficPolicy, TrafficPolicyStatus};
use serde_json::json;

use crate::harness::{client, kubectl, namespace, wait_for};

fn policy(name: &str, rollout: serde_json::Value) -> TrafficPolicy {
    serde_json::from_value(json!({
        "apiVersion": "modelhub.io/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": name},
        "spec": {
            "backends": [
                {"name": "stable", "service": "minilm", "weight": 100},
                {"name": "canary", "service": "minilm-v2", "weight": 0}],
            "gateway": {"replicas": 1},
            "rollout": rollout,
        }
    }))
    .expect("policy")
}

async fn create(tps: &Api<TrafficPolicy>, tp: &TrafficPolicy) {
    tps.create(&PostParams::default(), tp)
        .await
        .expect("create tp");
}

/// Waits until the status has `phase` and, when given, `weights`; returns it.
async fn wait_phase(
    tps: &Api<TrafficPolicy>,
    name: &str,
    phase: RolloutPhase,
    weights: Option<&str>,
) -> TrafficPolicyStatus {
    let what = format!("{name}: {phase:?} {weights:?}");
    wait_for(&what, || async {
        let st = tps.get(name).await.ok()?.status?;
        (st.phase == phase && weights.is_none_or(|w| st.weights_summary.as_deref() == Some(w)))
            .then_some(st)
    })
    .await
}

/// Waits until an Event with `reason` about `name` exists; returns all their notes.
async fn wait_event(ns: &str, name: &str, reason: &str) -> String {
    let selector = format!("involvedObject.name={name},reason={reason}");
    wait_for(&format!("event {reason} for {name}"), || async {
        let (ok, out) = kubectl(&[
            "-n",
            ns,
            "get",
            "events",
            "--field-selector",
            &selector,
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        (ok && !out.trim().is_empty()).then_some(out)
    })
    .await
}

async fn patch(tps: &Api<TrafficPolicy>, name: &str, spec: serde_json::Value) {
    tps.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": spec})),
    )
    .await
    .expect("patch tp");
}

#[tokio::test]
#[ignore = "needs the local control plane: make test-operator-e2e"]
async fn a_rollout_of_weights_and_pauses_walks_its_steps_to_promoted() {
    let client = client().await;
    let ns = namespace(&client, "tp-rollout").await;
    let tps: Api<TrafficPolicy> = Api::namespaced(client.clone(), &ns);
    create(
        &tps,
        &policy(
            "walk",
            json!({"canaryBackend": "canary", "steps": [
        {"setWeight": 20}, {"pause": {"duration": "6s"}},
        {"setWeight": 50}, {"pause": {"duration": "6s"}}]}),
        ),
    )
    .await;

    let first = wait_phase(
        &tps,
        "walk",
        RolloutPhase::Paused,
        Some("stable=80,canary=20"),
    )
    .await;
    assert_eq!(first.current_step, Some(1));
    assert!(first.rollout_revision.is_some());
    let second = wait_phase(
        &tps,
        "walk",
        RolloutPhase::Paused,
        Some("stable=50,canary=50"),
    )
    .await;
    assert_eq!(second.current_step, Some(3));
    let done = wait_phase(
        &tps,
        "walk",
        RolloutPhase::Promoted,
        Some("stable=0,canary=100"),
    )
    .await;
    assert_eq!(done.current_step, Some(4));
    let ew: Vec<(String, i32)> = done
        .effective_weights
        .into_iter()
        .map(|w| (w.backend, w.weight))
        .collect();
    assert_eq!(ew, [("stable".into(), 0), ("canary".into(), 100)]);
    let notes = wait_event(&ns, "walk", "RolloutPromoted").await;
    assert!(notes.contains("all 4 steps passed"), "{notes}");
    wait_event(&ns, "walk", "RolloutStep").await;

    // A new rollout definition starts again from step 0.
    patch(
        &tps,
        "walk",
        json!({"rollout": {"canaryBackend": "canary", "steps": [
        {"setWeight": 30}, {"pause": {"duration": "10m"}}]}}),
    )
    .await;
    let again = wait_phase(
        &tps,
        "walk",
        RolloutPhase::Paused,
        Some("stable=70,canary=30"),
    )
    .await;
    assert_eq!(again.current_step, Some(1));
    assert_ne!(again.rollout_revision, done.rollout_revision);
}

#[tokio::test]
#[ignore = "needs the local control plane: make test-operator-e2e"]
async fn promote_skips_the_remaining_steps_and_abort_goes_back_to_stable() {
    let client = client().await;
    let ns = namespace(&client, "tp-promote").await;
    let tps: Api<TrafficPolicy> = Api::namespaced(client.clone(), &ns);
    let steps = json!({"canaryBackend": "canary", "steps": [
        {"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 60}, {"pause": {"duration": "1h"}}]});
    create(&tps, &policy("promoted", steps.clone())).await;
    create(&tps, &policy("aborted", steps)).await;
    wait_phase(
        &tps,
        "promoted",
        RolloutPhase::Paused,
        Some("stable=90,canary=10"),
    )
    .await;
    wait_phase(
        &tps,
        "aborted",
        RolloutPhase::Paused,
        Some("stable=90,canary=10"),
    )
    .await;

    patch(&tps, "promoted", json!({"promote": true})).await;
    wait_phase(
        &tps,
        "promoted",
        RolloutPhase::Promoted,
        Some("stable=0,canary=100"),
    )
    .await;
    let notes = wait_event(&ns, "promoted", "RolloutPromoted").await;
    assert!(notes.contains("promote is set"), "{notes}");

    patch(&tps, "aborted", json!({"abort": true})).await;
    wait_phase(
        &tps,
        "aborted",
        RolloutPhase::Aborted,
        Some("stable=100,canary=0"),
    )
    .await;
    wait_event(&ns, "aborted", "RolloutAborted").await;
    // Aborted is terminal: clearing abort does not resume the rollout.
    patch(&tps, "aborted", json!({"abort": false})).await;
    // Once the operator has reconciled that generation the phase is still Aborted.
    let st = wait_for("aborted: abort=false reconciled", || async {
        let tp = tps.get("aborted").await.ok()?;
        let st = tp.status?;
        (st.observed_generation.is_some() && st.observed_generation == tp.metadata.generation)
            .then_some(st)
    })
    .await;
    assert_eq!(st.phase, RolloutPhase::Aborted);
    assert_eq!(st.weights_summary.as_deref(), Some("stable=100,canary=0"));
}

#[tokio::test]
#[ignore = "needs the local control plane: make test-operator-e2e"]
async fn an_analysis_without_readable_gateways_does_not_advance_and_rolls_back_at_the_deadline() {
    let client = client().await;
    let ns = namespace(&client, "tp-deadline").await;
    let tps: Api<TrafficPolicy> = Api::namespaced(client.clone(), &ns);
    create(
        &tps,
        &policy(
            "stuck",
            json!({
        "canaryBackend": "canary",
        "progressDeadline": "15s",
        "analysis": {"interval": "3s"},
        "steps": [{"setWeight": 25}, {"analysis": {"intervals": 1}}, {"setWeight": 75}]}),
        ),
    )
    .await;

    let running = wait_phase(
        &tps,
        "stuck",
        RolloutPhase::Progressing,
        Some("stable=75,canary=25"),
    )
    .await;
    assert_eq!(running.current_step, Some(1));
    // No gateway pod runs: the checks cannot read figures and say so once.
    let notes = wait_event(&ns, "stuck", "GatewayStatsUnreadable").await;
    assert!(notes.contains("no Ready gateway pod"), "{notes}");
    // Past the deadline the rollout rolls back without having passed the step.
    let st = wait_phase(
        &tps,
        "stuck",
        RolloutPhase::RolledBack,
        Some("stable=100,canary=0"),
    )
    .await;
    assert_eq!((st.current_step, st.passed_intervals), (Some(1), 0));
    let notes = wait_event(&ns, "stuck", "RolloutRolledBack").await;
    assert!(notes.contains("progress deadline"), "{notes}");
}
