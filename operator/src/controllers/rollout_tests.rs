//! Tests of the rollout state machine: specs, figures and times built in code.

use serde_json::json;

use super::*;

fn spec(v: serde_json::Value) -> TrafficPolicySpec {
    serde_json::from_value(v).unwrap()
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn canary_spec(steps: serde_json::Value) -> TrafficPolicySpec {
    spec(json!({
        "backends": [
            {"name": "stable", "service": "a", "weight": 100},
            {"name": "canary", "service": "b", "weight": 0}],
        "rollout": {"canaryBackend": "canary", "steps": steps, "progressDeadline": "60s",
                    "analysis": {"interval": "10s", "minRequests": 20, "maxErrorRate": 0.05,
                                 "maxLatencyP99": "500ms", "failureThreshold": 2}}}))
}

fn figures(requests: i64, errors: i64, p99: f64) -> Vec<BackendObservation> {
    vec![
        BackendObservation {
            name: "stable".into(),
            requests: 1000,
            errors: 0,
            latency_p99_seconds: Some(0.01),
        },
        BackendObservation {
            name: "canary".into(),
            requests,
            errors,
            latency_p99_seconds: Some(p99),
        },
    ]
}

/// Runs one reconcile, feeding `figs` only when a check is due (as the controller does).
fn tick(
    s: &TrafficPolicySpec,
    prev: &TrafficPolicyStatus,
    figs: Option<&[BackendObservation]>,
    now: Timestamp,
) -> Outcome {
    let figs = figs.filter(|_| analysis_due(s, prev, now));
    advance(s, prev, figs, now)
}

fn reasons(o: &Outcome) -> Vec<&str> {
    o.events.iter().map(|e| e.reason).collect()
}

#[test]
fn split_gives_the_canary_its_share_and_the_rest_in_proportion() {
    let s = spec(json!({"backends": [
        {"name": "a", "service": "a", "weight": 45}, {"name": "b", "service": "b", "weight": 45},
        {"name": "c", "service": "c", "weight": 10}]}));
    assert_eq!(summary(&split(&s, "c", 0)), "a=50,b=50,c=0");
    assert_eq!(summary(&split(&s, "c", 20)), "a=40,b=40,c=20");
    assert_eq!(summary(&split(&s, "c", 100)), "a=0,b=0,c=100");
    let odd = spec(json!({"backends": [
        {"name": "a", "service": "a", "weight": 33}, {"name": "b", "service": "b", "weight": 33},
        {"name": "c", "service": "c", "weight": 33}, {"name": "k", "service": "k", "weight": 1}]}));
    let w = split(&odd, "k", 1);
    assert_eq!(w.iter().map(|w| w.weight).sum::<i32>(), 100);
    assert_eq!(w[3].weight, 1);
    // All the weight on the canary in the spec: the first stable backend takes the rest.
    let all = spec(json!({"backends": [
        {"name": "a", "service": "a", "weight": 0}, {"name": "c", "service": "c", "weight": 100}]}));
    assert_eq!(summary(&split(&all, "c", 30)), "a=70,c=30");
}

#[test]
fn without_a_rollout_the_spec_weights_apply() {
    let s = spec(json!({"backends": [
        {"name": "a", "service": "a", "weight": 70}, {"name": "b", "service": "b", "weight": 30}]}));
    let o = advance(&s, &TrafficPolicyStatus::default(), None, at(0));
    assert_eq!(o.status.phase, RolloutPhase::Stable);
    assert_eq!(o.status.weights_summary.as_deref(), Some("a=70,b=30"));
    assert_eq!(o.status.current_step, None);
    assert!(o.events.is_empty() && o.requeue_after.is_none());
}

#[test]
fn set_weight_and_pause_steps_run_in_order_to_promotion() {
    let s = canary_spec(json!([{"setWeight": 20}, {"pause": {"duration": "2s"}},
                               {"setWeight": 50}, {"pause": {"duration": "2s"}}]));
    let o = tick(&s, &TrafficPolicyStatus::default(), None, at(0));
    assert_eq!(reasons(&o), ["RolloutStarted", "RolloutStep"]);
    assert_eq!(
        (o.status.phase, o.status.current_step),
        (RolloutPhase::Paused, Some(1))
    );
    assert_eq!(
        o.status.weights_summary.as_deref(),
        Some("stable=80,canary=20")
    );
    assert_eq!(o.requeue_after, Some(Duration::from_secs(2)));

    // Still in the pause a second later: nothing changes.
    let same = tick(&s, &o.status, None, at(1));
    assert_eq!(same.status, o.status);
    assert!(same.events.is_empty());
    assert_eq!(same.requeue_after, Some(Duration::from_secs(1)));

    let o = tick(&s, &o.status, None, at(2));
    assert_eq!(
        (o.status.phase, o.status.current_step),
        (RolloutPhase::Paused, Some(3))
    );
    assert_eq!(
        o.status.weights_summary.as_deref(),
        Some("stable=50,canary=50")
    );
    assert_eq!(o.status.step_started_at, Some(Time(at(2))));

    let o = tick(&s, &o.status, None, at(4));
    assert_eq!(o.status.phase, RolloutPhase::Promoted);
    assert_eq!(
        o.status.weights_summary.as_deref(),
        Some("stable=0,canary=100")
    );
    assert_eq!(reasons(&o), ["RolloutStep", "RolloutPromoted"]);
    assert_eq!(o.requeue_after, None);
    // Terminal: stays promoted.
    assert_eq!(tick(&s, &o.status, None, at(100)).status, o.status);
}

#[test]
fn analysis_needs_passed_intervals_and_ignores_thin_ones() {
    let s = canary_spec(json!([{"setWeight": 10}, {"analysis": {"intervals": 2}}]));
    let healthy = figures(100, 1, 0.2);
    let thin = figures(5, 5, 9.0);
    let o = tick(&s, &TrafficPolicyStatus::default(), None, at(0));
    assert_eq!(
        (o.status.phase, o.status.current_step),
        (RolloutPhase::Progressing, Some(1))
    );
    assert_eq!(o.requeue_after, Some(Duration::from_secs(10)));
    // Not due yet: figures are not even asked for.
    assert!(!analysis_due(&s, &o.status, at(9)));
    assert!(analysis_due(&s, &o.status, at(10)));

    // Too few requests: neither passes nor fails.
    let o = tick(&s, &o.status, Some(&thin), at(10));
    assert_eq!((o.status.passed_intervals, o.status.failed_checks), (0, 0));
    assert_eq!(o.status.backends, thin);
    assert_eq!(o.status.last_analysis_at, Some(Time(at(10))));
    // Unreadable gateways (no figures): does not count either.
    let o = tick(&s, &o.status, None, at(20));
    assert_eq!(
        (o.status.passed_intervals, o.status.current_step),
        (0, Some(1))
    );
    let o = tick(&s, &o.status, Some(&healthy), at(30));
    assert_eq!(o.status.passed_intervals, 1);
    let o = tick(&s, &o.status, Some(&healthy), at(40));
    assert_eq!(o.status.phase, RolloutPhase::Promoted);
    assert_eq!(o.status.backends, healthy);
}

#[test]
fn failed_checks_up_to_the_threshold_roll_back_naming_the_figures() {
    let s = canary_spec(json!([{"setWeight": 10}, {"analysis": {"intervals": 3}}]));
    let sick = figures(100, 20, 0.8);
    let o = tick(&s, &TrafficPolicyStatus::default(), None, at(0));
    let o = tick(&s, &o.status, Some(&sick), at(10));
    assert_eq!(o.status.failed_checks, 1);
    assert_eq!(o.status.phase, RolloutPhase::Progressing);
    assert_eq!(reasons(&o), ["AnalysisFailed"]);
    assert_eq!(o.events[0].type_, EventType::Warning);

    let o = tick(&s, &o.status, Some(&sick), at(20));
    assert_eq!(o.status.phase, RolloutPhase::RolledBack);
    assert_eq!(
        o.status.weights_summary.as_deref(),
        Some("stable=100,canary=0")
    );
    assert_eq!(reasons(&o), ["RolloutRolledBack"]);
    let note = &o.events[0].note;
    assert!(
        note.contains("error rate 0.2000 (20 of 100 requests) > 0.05"),
        "{note}"
    );
    assert!(note.contains("p99 latency 0.800s > 0.500s"), "{note}");
    assert_eq!(o.requeue_after, None);
    // A rolled-back rollout stays so, even with healthy figures.
    let later = tick(&s, &o.status, Some(&figures(100, 0, 0.1)), at(30));
    assert_eq!(later.status, o.status);
}

#[test]
fn a_pass_resets_the_consecutive_failures() {
    let s = canary_spec(json!([{"analysis": {"intervals": 5}}]));
    let o = tick(&s, &TrafficPolicyStatus::default(), None, at(0));
    let o = tick(&s, &o.status, Some(&figures(100, 50, 0.1)), at(10));
    assert_eq!(o.status.failed_checks, 1);
    let o = tick(&s, &o.status, Some(&figures(100, 0, 0.1)), at(20));
    assert_eq!((o.status.failed_checks, o.status.passed_intervals), (0, 1));
    assert_eq!(o.status.phase, RolloutPhase::Progressing);
}

#[test]
fn checks_run_during_pauses_and_can_roll_back() {
    let s = canary_spec(json!([{"setWeight": 30}, {"pause": {"duration": "1h"}}]));
    let sick = figures(100, 100, 0.1);
    let o = tick(&s, &TrafficPolicyStatus::default(), None, at(0));
    assert_eq!(o.requeue_after, Some(Duration::from_secs(10)));
    let o = tick(&s, &o.status, Some(&sick), at(10));
    let o = tick(&s, &o.status, Some(&sick), at(20));
    assert_eq!(o.status.phase, RolloutPhase::RolledBack);
}

#[test]
fn an_analysis_step_past_the_progress_deadline_rolls_back() {
    let s = canary_spec(json!([{"setWeight": 10}, {"analysis": {"intervals": 1}}]));
    let mut st = tick(&s, &TrafficPolicyStatus::default(), None, at(0)).status;
    for t in (10..60).step_by(10) {
        st = tick(&s, &st, None, at(t)).status;
        assert_eq!(st.phase, RolloutPhase::Progressing);
    }
    let o = tick(&s, &st, None, at(60));
    assert_eq!(o.status.phase, RolloutPhase::RolledBack);
    assert_eq!(
        o.status.weights_summary.as_deref(),
        Some("stable=100,canary=0")
    );
    assert!(
        o.events[0].note.contains("progress deadline 60s"),
        "{:?}",
        o.events
    );
}

#[test]
fn suspend_freezes_the_step_and_its_clocks() {
    let mut s = canary_spec(
        json!([{"setWeight": 20}, {"pause": {"duration": "10s"}}, {"setWeight": 40}, {"analysis": {}}]),
    );
    let o = tick(&s, &TrafficPolicyStatus::default(), None, at(0));
    s.suspend = true;
    let o = tick(&s, &o.status, None, at(4));
    assert_eq!(
        (o.status.phase, o.status.current_step),
        (RolloutPhase::Paused, Some(1))
    );
    assert_eq!(reasons(&o), ["RolloutSuspended"]);
    assert_eq!(o.requeue_after, None);
    // Long past the pause's end and the deadline: still frozen, no check due.
    let frozen = tick(&s, &o.status, None, at(500));
    assert_eq!(frozen.status, o.status);
    assert!(!analysis_due(&s, &o.status, at(500)));
    s.suspend = false;
    // 6 s of pause were left when suspended at 4 s.
    let o = tick(&s, &o.status, None, at(1000));
    assert_eq!(reasons(&o), ["RolloutResumed"]);
    assert_eq!(o.status.current_step, Some(1));
    assert_eq!(o.status.step_started_at, Some(Time(at(996))));
    assert_eq!(o.requeue_after, Some(Duration::from_secs(6)));
    let o = tick(&s, &o.status, None, at(1006));
    assert_eq!(
        (o.status.phase, o.status.current_step),
        (RolloutPhase::Progressing, Some(3))
    );
    assert_eq!(
        o.status.weights_summary.as_deref(),
        Some("stable=60,canary=40")
    );
}

#[test]
fn promote_skips_the_remaining_steps() {
    let mut s = canary_spec(json!([{"setWeight": 20}, {"analysis": {"intervals": 10}}]));
    let o = tick(&s, &TrafficPolicyStatus::default(), None, at(0));
    s.promote = true;
    let o = tick(&s, &o.status, None, at(1));
    assert_eq!(o.status.phase, RolloutPhase::Promoted);
    assert_eq!(
        o.status.weights_summary.as_deref(),
        Some("stable=0,canary=100")
    );
    assert_eq!(reasons(&o), ["RolloutPromoted"]);
}

#[test]
fn abort_sends_everything_back_to_stable_and_stays_aborted() {
    let mut s = canary_spec(json!([{"setWeight": 20}, {"pause": {"duration": "1m"}}]));
    let o = tick(&s, &TrafficPolicyStatus::default(), None, at(0));
    s.abort = true;
    let o = tick(&s, &o.status, None, at(1));
    assert_eq!(o.status.phase, RolloutPhase::Aborted);
    assert_eq!(
        o.status.weights_summary.as_deref(),
        Some("stable=100,canary=0")
    );
    assert_eq!(reasons(&o), ["RolloutAborted"]);
    assert!(tick(&s, &o.status, None, at(2)).events.is_empty());
    s.abort = false;
    let after = tick(&s, &o.status, None, at(3));
    assert_eq!(after.status.phase, RolloutPhase::Aborted);
}

#[test]
fn a_changed_rollout_definition_restarts_from_step_zero() {
    let s = canary_spec(json!([{"setWeight": 20}, {"pause": {"duration": "2s"}}]));
    let done = tick(
        &s,
        &tick(&s, &TrafficPolicyStatus::default(), None, at(0)).status,
        None,
        at(2),
    );
    assert_eq!(done.status.phase, RolloutPhase::Promoted);
    let s2 = canary_spec(json!([{"setWeight": 30}, {"pause": {"duration": "2s"}}]));
    assert_ne!(
        revision(s.rollout.as_ref().unwrap()),
        revision(s2.rollout.as_ref().unwrap())
    );
    let o = tick(&s2, &done.status, None, at(10));
    assert_eq!(reasons(&o), ["RolloutStarted", "RolloutStep"]);
    assert_eq!(
        (o.status.phase, o.status.current_step),
        (RolloutPhase::Paused, Some(1))
    );
    assert_eq!(
        o.status.weights_summary.as_deref(),
        Some("stable=70,canary=30")
    );
    assert_eq!(
        o.status.rollout_revision,
        Some(revision(s2.rollout.as_ref().unwrap()))
    );
}

#[test]
fn revision_is_short_and_stable() {
    let s = canary_spec(json!([{"setWeight": 20}]));
    let r = revision(s.rollout.as_ref().unwrap());
    assert_eq!(r.len(), 10);
    assert_eq!(r, revision(&s.rollout.clone().unwrap()));
}
