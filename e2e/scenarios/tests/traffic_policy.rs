//! TrafficPolicy rollouts on a running cluster, end to end: two InferenceServices serve a
//! lookup model, a TrafficPolicy puts a gateway in front of them and rolls a canary out
//! while clients keep sending requests through the gateway pod.
//!
//! - A healthy canary passes its analysis and is promoted through every step; no client
//!   sees an error.
//! - A canary whose model fails for most inputs (a 10-row table asked for rows 0..99:
//!   ONNX Runtime's bounds check, HTTP 500) is rolled back at its second failed check,
//!   with the figures in the status and the Events; afterwards every request succeeds.
//! - Deleting the TrafficPolicy removes its gateway.
//! - A TrafficPolicy named like an InferenceService it fronts (both want Service `<name>`)
//!   is refused with an Event instead of taking that Service over.
//!
//! Ignored by a plain `cargo test`: `make test-e2e` runs them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use modelhub_e2e::claims::{env_dir, seed_claim};
use modelhub_e2e::cluster::{
    TestNs, client, events, ready_pod_ips, wait_endpoints, wait_for, wait_ready,
};
use modelhub_e2e::load::{Load, Tally, http_client, post};
use modelhub_operator::api::{InferenceService, RolloutPhase, TrafficPolicy};
use rand::Rng;
use serde_json::json;

/// Analysis interval of the scenarios' rollouts.
const INTERVAL_S: u64 = 4;

/// Puts lookup.onnx and lookup_short.onnx onto claim `models` and creates one
/// InferenceService per `(name, file)`, all serving model `lookup`; waits until Ready.
async fn lookup_services(client: &Client, ns: &str, services: &[(&str, &str)]) {
    let models = env_dir("TINYINFER_MODELS_DIR");
    let files: Vec<(std::path::PathBuf, String)> = ["lookup.onnx", "lookup_short.onnx"]
        .iter()
        .map(|f| (models.join(f), format!("lookup/{f}")))
        .collect();
    let refs: Vec<(&Path, &str)> = files
        .iter()
        .map(|(s, d)| (s.as_path(), d.as_str()))
        .collect();
    seed_claim(client, ns, "models", &refs).await;
    let api: Api<InferenceService> = Api::namespaced(client.clone(), ns);
    for (name, file) in services {
        let isvc: InferenceService = serde_json::from_value(json!({
            "apiVersion": "modelhub.io/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": {
                "model": {"name": "lookup", "version": "1", "storageUri": format!("pvc://models/lookup/{file}")},
                "runtime": {"intraOpThreads": 1},
                "batching": {"maxBatchSize": 8, "maxQueueDelay": "1ms"},
                "replicas": 1,
                "scaling": {"minReplicas": 1, "maxReplicas": 1},
            }
        }))
        .expect("inference service");
        api.create(&PostParams::default(), &isvc)
            .await
            .expect("create inference service");
    }
    for (name, _) in services {
        wait_ready(&api, name).await;
        wait_endpoints(client, ns, name).await;
    }
}

/// A TrafficPolicy `name`: stable `lookup` 100 %, canary `canary_service` rolled out as
/// setWeight 50 → analysis of 2 intervals → setWeight 80 → analysis of 1 interval.
fn rollout_policy(name: &str, canary_service: &str) -> TrafficPolicy {
    serde_json::from_value(json!({
        "apiVersion": "modelhub.io/v1alpha1", "kind": "TrafficPolicy",
        "metadata": {"name": name},
        "spec": {
            "backends": [
                {"name": "stable", "service": "lookup", "weight": 100},
                {"name": "canary", "service": canary_service, "weight": 0}],
            "gateway": {"replicas": 1},
            "rollout": {
                "canaryBackend": "canary",
                "steps": [
                    {"setWeight": 50}, {"analysis": {"intervals": 2}},
                    {"setWeight": 80}, {"analysis": {"intervals": 1}}],
                "analysis": {"interval": format!("{INTERVAL_S}s"), "minRequests": 10,
                             "maxErrorRate": 0.05, "failureThreshold": 2},
                "progressDeadline": "4m",
            },
        }
    }))
    .expect("traffic policy")
}

/// Creates [`rollout_policy`] `name` in `ns`; returns the namespace's policies.
async fn create_policy(
    client: &Client,
    ns: &str,
    name: &str,
    canary_service: &str,
) -> Api<TrafficPolicy> {
    let tps: Api<TrafficPolicy> = Api::namespaced(client.clone(), ns);
    tps.create(
        &PostParams::default(),
        &rollout_policy(name, canary_service),
    )
    .await
    .expect("create traffic policy");
    tps
}

/// An infer request for row `idx` of the lookup table.
fn lookup_request(idx: i64) -> String {
    json!({"inputs": [{"name": "idx", "datatype": "INT64", "shape": [1, 1], "data": [idx]}]})
        .to_string()
}

/// The infer URL of the policy's Ready gateway pod (waits for one).
async fn gateway_url(client: &Client, ns: &str, policy: &str) -> String {
    let selector = format!("app.kubernetes.io/name=gateway,app.kubernetes.io/instance={policy}");
    let ip = wait_for(&format!("a Ready gateway pod of {policy}"), || async {
        ready_pod_ips(client, ns, &selector)
            .await
            .into_iter()
            .next()
    })
    .await;
    format!("http://{ip}:8080/v2/models/lookup/infer")
}

/// Clients asking for random rows 0..99 (every row exists in the stable model).
fn start_load(url: &str) -> Load {
    let body = Arc::new(|rng: &mut rand::rngs::ThreadRng| lookup_request(rng.random_range(0..100)));
    Load::start(url.to_owned(), 4, Duration::from_millis(20), body)
}

fn count(tally: &Tally, pred: impl Fn(u16) -> bool) -> u64 {
    tally
        .iter()
        .filter(|(s, _)| pred(**s))
        .map(|(_, n)| n)
        .sum()
}

async fn wait_phase(
    api: &Api<TrafficPolicy>,
    name: &str,
    phases: &[RolloutPhase],
) -> TrafficPolicy {
    wait_for(&format!("{name} in one of {phases:?}"), || async {
        let tp = api.get(name).await.ok()?;
        let phase = tp.status.as_ref()?.phase;
        phases.contains(&phase).then_some(tp)
    })
    .await
}

#[tokio::test]
#[ignore = "needs a cluster with the operator and a node agent: make test-e2e"]
async fn a_healthy_canary_is_promoted_and_clients_see_no_error() {
    let client = client().await;
    let ns = TestNs::create(&client, "promote").await;
    let ns = ns.name.as_str();
    lookup_services(
        &client,
        ns,
        &[("lookup", "lookup.onnx"), ("lookup-v2", "lookup.onnx")],
    )
    .await;
    let tps = create_policy(&client, ns, "split", "lookup-v2").await;
    let url = gateway_url(&client, ns, "split").await;
    let load = start_load(&url);

    let done = wait_phase(
        &tps,
        "split",
        &[RolloutPhase::Promoted, RolloutPhase::RolledBack],
    )
    .await;
    let tally = load.stop().await;
    let st = done.status.expect("status");
    assert_eq!(st.phase, RolloutPhase::Promoted, "status: {st:?}");
    assert_eq!(st.weights_summary.as_deref(), Some("stable=0,canary=100"));
    assert_eq!(st.failed_checks, 0, "status: {st:?}");
    let canary = st
        .backends
        .iter()
        .find(|b| b.name == "canary")
        .expect("canary figures");
    assert!(
        canary.requests >= 10 && canary.errors == 0,
        "canary figures: {canary:?}"
    );
    let ok = count(&tally, |s| s == 200);
    assert!(
        ok > 100 && count(&tally, |s| s != 200) == 0,
        "clients saw {tally:?}"
    );
    let promoted = events(&client, ns, "split", "RolloutPromoted").await;
    assert!(!promoted.is_empty(), "a RolloutPromoted Event");

    // Promoted: every request now reaches the canary and answers.
    let http = http_client();
    for idx in [0, 42, 99] {
        let (status, answer) = post(&http, &url, lookup_request(idx)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let v: serde_json::Value = serde_json::from_slice(&answer).expect("OIP JSON");
        let first = idx as f64 * 4.0;
        assert_eq!(
            v["outputs"][0]["data"][0].as_f64(),
            Some(first),
            "row {idx}: {v}"
        );
    }

    // Deleting the policy removes its gateway.
    tps.delete("split", &DeleteParams::foreground())
        .await
        .expect("delete");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for("the gateway Deployment to go", || async {
        matches!(deployments.get("split-gateway").await, Err(kube::Error::Api(e)) if e.code == 404)
            .then_some(())
    })
    .await;
    let selector = "app.kubernetes.io/name=gateway,app.kubernetes.io/instance=split";
    wait_for("the gateway pods to go", || async {
        ready_pod_ips(&client, ns, selector)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
#[ignore = "needs a cluster with the operator and a node agent: make test-e2e"]
async fn a_canary_failing_for_some_inputs_rolls_back_at_its_second_failed_check() {
    let client = client().await;
    let ns = TestNs::create(&client, "rollback").await;
    let ns = ns.name.as_str();
    lookup_services(
        &client,
        ns,
        &[
            ("lookup", "lookup.onnx"),
            ("lookup-short", "lookup_short.onnx"),
        ],
    )
    .await;
    let tps = create_policy(&client, ns, "split", "lookup-short").await;
    let url = gateway_url(&client, ns, "split").await;
    let load = start_load(&url);

    let done = wait_phase(
        &tps,
        "split",
        &[RolloutPhase::Promoted, RolloutPhase::RolledBack],
    )
    .await;
    let during = load.tally();
    let st = done.status.expect("status");
    assert_eq!(st.phase, RolloutPhase::RolledBack, "status: {st:?}");
    assert_eq!(st.weights_summary.as_deref(), Some("stable=100,canary=0"));
    // Rolled back at the second failed check of the first analysis step: no interval
    // passed, the threshold (2) was reached, and the rollout never got to setWeight 80.
    assert_eq!(st.failed_checks, 2, "status: {st:?}");
    assert_eq!(st.passed_intervals, 0, "status: {st:?}");
    assert_eq!(
        st.current_step,
        Some(1),
        "stopped at the first analysis: {st:?}"
    );
    let canary = st
        .backends
        .iter()
        .find(|b| b.name == "canary")
        .expect("canary figures");
    assert!(
        canary.errors > 0 && canary.requests >= 10,
        "canary figures: {canary:?}"
    );
    let stable = st
        .backends
        .iter()
        .find(|b| b.name == "stable")
        .expect("stable figures");
    assert_eq!(stable.errors, 0, "stable figures: {stable:?}");
    let failed = events(&client, ns, "split", "AnalysisFailed").await;
    assert!(
        failed
            .iter()
            .any(|m| m.contains("check 1/2 of canary canary failed: error rate")),
        "AnalysisFailed Events: {failed:?}"
    );
    let rolled = events(&client, ns, "split", "RolloutRolledBack").await;
    assert!(
        rolled
            .iter()
            .any(|m| m.contains("failed 2 checks: error rate")),
        "RolloutRolledBack Events: {rolled:?}"
    );
    // Clients saw the canary's 500s while it had traffic, nothing else.
    assert!(count(&during, |s| s == 500) > 0, "clients saw {during:?}");
    assert_eq!(
        count(&during, |s| s != 200 && s != 500),
        0,
        "clients saw {during:?}"
    );

    // Once the gateways follow the rolled-back weights, every request succeeds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = load.tally();
    tokio::time::sleep(Duration::from_secs(INTERVAL_S)).await;
    let after = load.stop().await;
    let new_errors = count(&after, |s| s != 200) - count(&before, |s| s != 200);
    let new_ok = count(&after, |s| s == 200) - count(&before, |s| s == 200);
    assert!(
        new_ok > 20 && new_errors == 0,
        "after the rollback: {new_ok} ok, {new_errors} errors"
    );
}

#[tokio::test]
#[ignore = "needs a cluster with the operator and a node agent: make test-e2e"]
async fn a_policy_named_like_an_inference_service_does_not_take_its_service() {
    let client = client().await;
    let ns = TestNs::create(&client, "clash").await;
    let ns = ns.name.as_str();
    lookup_services(
        &client,
        ns,
        &[("lookup", "lookup.onnx"), ("lookup-v2", "lookup.onnx")],
    )
    .await;
    create_policy(&client, ns, "lookup", "lookup-v2").await;
    let why = format!("Service {ns}/lookup already belongs to InferenceService lookup");
    wait_for("a ReconcileFailed Event naming the clash", || async {
        events(&client, ns, "lookup", "ReconcileFailed")
            .await
            .iter()
            .any(|m| m.contains(&why))
            .then_some(())
    })
    .await;
    // The InferenceService keeps its Service: still selecting its own pods, still serving.
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), ns);
    let svc = services.get("lookup").await.expect("service lookup");
    let selector = svc.spec.and_then(|s| s.selector).unwrap_or_default();
    assert_eq!(
        selector.get("app.kubernetes.io/name").map(String::as_str),
        Some("tinyinfer"),
        "selector of Service lookup: {selector:?}"
    );
    wait_endpoints(&client, ns, "lookup").await;
}
