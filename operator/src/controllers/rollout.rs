//! The TrafficPolicy rollout as a pure state machine: given the spec, the previous
//! status, the canary's figures of the last analysis window (when one was due and the
//! gateways could be read) and the time, [`advance`] returns the rollout fields of the
//! new status, the Events to publish and when to look again. No I/O and no clock:
//! unit-tested with figures and times built in code (`rollout_tests.rs`).
//!
//! Steps run in order: `setWeight` moves the canary's share and goes on at once,
//! `pause` waits for its duration, `analysis` waits for its number of passed checks.
//! Checks run every `analysis.interval` during pause and analysis steps; the status
//! keeps times to the second, as the API server does.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;

use crate::api::{
    AnalysisSpec, BackendObservation, BackendWeight, Rollout, RolloutPhase, TrafficPolicySpec,
    TrafficPolicyStatus,
};

/// Shortest requeue, so that a wake-up computed from second-truncated times never spins.
const MIN_REQUEUE: Duration = Duration::from_millis(200);

/// One Event to publish about the policy.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutEvent {
    pub type_: EventType,
    pub reason: &'static str,
    pub note: String,
}

/// What [`advance`] decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The previous status with the rollout fields (phase, step, clocks, weights,
    /// checks, observations, revision) brought up to date.
    pub status: TrafficPolicyStatus,
    pub events: Vec<RolloutEvent>,
    /// When the rollout needs another look (pause end, next check, deadline); `None`
    /// when only a spec change can move it.
    pub requeue_after: Option<Duration>,
}

/// Short stable hash of the rollout definition (FNV-1a over its JSON form): a change
/// restarts the rollout from step 0.
pub fn revision(rollout: &Rollout) -> String {
    let bytes = serde_json::to_vec(rollout).unwrap_or_default();
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")[..10].to_owned()
}

/// Whether a check of the canary is due now: the caller then reads the gateways'
/// figures over the last `analysis.interval` and hands them to [`advance`].
pub fn analysis_due(
    spec: &TrafficPolicySpec,
    previous: &TrafficPolicyStatus,
    now: Timestamp,
) -> bool {
    let Some(rollout) = &spec.rollout else {
        return false;
    };
    if spec.abort || spec.promote || spec.suspend || is_terminal(previous.phase) {
        return false;
    }
    if previous.rollout_revision.as_deref() != Some(revision(rollout).as_str()) {
        return false;
    }
    let mut st = previous.clone();
    resume_clocks(&mut st, seconds(now));
    check_due(rollout, &st, seconds(now))
}

/// The window the caller should read figures over: the analysis interval, in seconds
/// the gateway accepts (1 - 300).
pub fn window(rollout: &Rollout) -> Duration {
    let secs = Duration::from(rollout.analysis.interval)
        .as_secs()
        .clamp(1, 300);
    Duration::from_secs(secs)
}

/// Runs the rollout one reconcile further.
pub fn advance(
    spec: &TrafficPolicySpec,
    previous: &TrafficPolicyStatus,
    figures: Option<&[BackendObservation]>,
    now: Timestamp,
) -> Outcome {
    let now = seconds(now);
    let mut m = Machine {
        spec,
        st: previous.clone(),
        events: Vec::new(),
        wake: None,
        now,
    };
    match &spec.rollout {
        None => m.no_rollout(),
        Some(rollout) => m.run(rollout, figures),
    }
    let requeue_after = m.wake.map(|at| elapsed(now, at).max(MIN_REQUEUE));
    Outcome {
        status: m.st,
        events: m.events,
        requeue_after,
    }
}

struct Machine<'a> {
    spec: &'a TrafficPolicySpec,
    st: TrafficPolicyStatus,
    events: Vec<RolloutEvent>,
    wake: Option<Timestamp>,
    now: Timestamp,
}

impl Machine<'_> {
    fn no_rollout(&mut self) {
        let st = &mut self.st;
        st.phase = RolloutPhase::Stable;
        st.current_step = None;
        st.step_started_at = None;
        st.rollout_revision = None;
        st.passed_intervals = 0;
        st.failed_checks = 0;
        st.last_analysis_at = None;
        st.suspended_at = None;
        let weights = self
            .spec
            .backends
            .iter()
            .map(|b| BackendWeight {
                backend: b.name.clone(),
                weight: b.weight,
            })
            .collect();
        self.set_weights(weights);
    }

    fn run(&mut self, rollout: &Rollout, figures: Option<&[BackendObservation]>) {
        let rev = revision(rollout);
        let n = rollout.steps.len();
        if self.st.rollout_revision.as_deref() != Some(rev.as_str()) {
            self.restart(rev.clone());
            self.event(
                EventType::Normal,
                "RolloutStarted",
                format!(
                    "rollout of {} started: {n} steps (revision {rev})",
                    rollout.canary_backend
                ),
            );
        }
        if self.spec.abort {
            self.st.suspended_at = None;
            if self.st.phase != RolloutPhase::Aborted {
                self.st.phase = RolloutPhase::Aborted;
                self.event(
                    EventType::Warning,
                    "RolloutAborted",
                    "abort is set: all traffic back to the stable backends".into(),
                );
            }
            return self.canary_at(rollout, 0);
        }
        match self.st.phase {
            RolloutPhase::Promoted => return self.canary_at(rollout, 100),
            RolloutPhase::RolledBack | RolloutPhase::Aborted => return self.canary_at(rollout, 0),
            _ => {}
        }
        if self.spec.promote {
            return self.promote(rollout, "promote is set: remaining steps skipped".into());
        }
        let step = self.step();
        if self.spec.suspend {
            if self.st.suspended_at.is_none() {
                self.st.suspended_at = Some(Time(self.now));
                self.event(
                    EventType::Normal,
                    "RolloutSuspended",
                    format!("suspend is set: frozen at step {}/{n}", (step + 1).min(n)),
                );
            }
            self.st.phase = RolloutPhase::Paused;
            return self.canary_at(rollout, canary_weight(rollout, step));
        }
        if self.st.suspended_at.is_some() {
            resume_clocks(&mut self.st, self.now);
            self.event(
                EventType::Normal,
                "RolloutResumed",
                format!("suspend is unset: step {}/{n} goes on", (step + 1).min(n)),
            );
        }
        if check_due(rollout, &self.st, self.now) {
            self.st.last_analysis_at = Some(Time(self.now));
            if let Some(figures) = figures
                && self.analyse(rollout, figures)
            {
                return;
            }
        }
        self.steps(rollout);
    }

    /// Checks the canary's figures; true when the rollout was rolled back.
    fn analyse(&mut self, rollout: &Rollout, figures: &[BackendObservation]) -> bool {
        self.st.backends = figures.to_vec();
        let canary = figures.iter().find(|b| b.name == rollout.canary_backend);
        match check(&rollout.analysis, canary) {
            Verdict::Inconclusive => false,
            Verdict::Passed => {
                self.st.failed_checks = 0;
                let step = self.step();
                if rollout
                    .steps
                    .get(step)
                    .is_some_and(|s| s.analysis.is_some())
                {
                    self.st.passed_intervals += 1;
                }
                false
            }
            Verdict::Failed(why) => {
                self.st.failed_checks += 1;
                let (failed, threshold) =
                    (self.st.failed_checks, rollout.analysis.failure_threshold);
                if failed >= threshold {
                    self.roll_back(
                        rollout,
                        format!(
                            "canary {} failed {failed} checks: {why}",
                            rollout.canary_backend
                        ),
                    );
                    true
                } else {
                    self.event(
                        EventType::Warning,
                        "AnalysisFailed",
                        format!(
                            "check {failed}/{threshold} of canary {} failed: {why}",
                            rollout.canary_backend
                        ),
                    );
                    false
                }
            }
        }
    }

    /// Runs steps from the current one until one has to wait, or promotes.
    fn steps(&mut self, rollout: &Rollout) {
        let n = rollout.steps.len();
        loop {
            let i = self.step();
            let Some(step) = rollout.steps.get(i) else {
                return self.promote(rollout, format!("all {n} steps passed"));
            };
            let started = self.st.step_started_at.as_ref().map_or(self.now, |t| t.0);
            if let Some(w) = step.set_weight {
                self.event(
                    EventType::Normal,
                    "RolloutStep",
                    format!(
                        "step {}/{n}: canary {} at {w} %",
                        i + 1,
                        rollout.canary_backend
                    ),
                );
            } else if let Some(pause) = &step.pause {
                let end = plus(started, pause.duration.into());
                if self.now < end {
                    self.st.phase = RolloutPhase::Paused;
                    self.wake_at(end);
                    self.wake_at(next_check(rollout, &self.st));
                    break;
                }
                self.event(
                    EventType::Normal,
                    "RolloutStep",
                    format!("step {}/{n}: pause of {} over", i + 1, pause.duration),
                );
            } else if let Some(analysis) = &step.analysis {
                if self.st.passed_intervals < analysis.intervals {
                    let deadline = plus(started, rollout.progress_deadline.into());
                    if self.now >= deadline {
                        let note = format!(
                            "step {}/{n} ran longer than the progress deadline {} ({}/{} analysis intervals passed)",
                            i + 1,
                            rollout.progress_deadline,
                            self.st.passed_intervals,
                            analysis.intervals
                        );
                        return self.roll_back(rollout, note);
                    }
                    self.st.phase = RolloutPhase::Progressing;
                    self.wake_at(deadline);
                    self.wake_at(next_check(rollout, &self.st));
                    break;
                }
                self.event(
                    EventType::Normal,
                    "RolloutStep",
                    format!(
                        "step {}/{n}: analysis passed {} intervals",
                        i + 1,
                        analysis.intervals
                    ),
                );
            }
            // A step with none of the three is refused by the CRD's validation: skipped.
            self.next_step(i);
        }
        let step = self.step();
        self.canary_at(rollout, canary_weight(rollout, step));
    }

    fn restart(&mut self, rev: String) {
        let st = &mut self.st;
        st.rollout_revision = Some(rev);
        st.phase = RolloutPhase::Progressing;
        st.current_step = Some(0);
        st.step_started_at = Some(Time(self.now));
        st.passed_intervals = 0;
        st.failed_checks = 0;
        st.last_analysis_at = None;
        st.suspended_at = None;
        st.backends.clear();
    }

    fn next_step(&mut self, i: usize) {
        self.st.current_step = Some(i32::try_from(i + 1).unwrap_or(i32::MAX));
        self.st.step_started_at = Some(Time(self.now));
        self.st.passed_intervals = 0;
    }

    fn step(&self) -> usize {
        self.st
            .current_step
            .and_then(|s| usize::try_from(s).ok())
            .unwrap_or(0)
    }

    fn promote(&mut self, rollout: &Rollout, why: String) {
        self.st.phase = RolloutPhase::Promoted;
        self.st.current_step = Some(i32::try_from(rollout.steps.len()).unwrap_or(i32::MAX));
        self.st.suspended_at = None;
        self.event(
            EventType::Normal,
            "RolloutPromoted",
            format!("{why}; canary {} takes all traffic", rollout.canary_backend),
        );
        self.canary_at(rollout, 100);
    }

    fn roll_back(&mut self, rollout: &Rollout, why: String) {
        self.st.phase = RolloutPhase::RolledBack;
        self.event(
            EventType::Warning,
            "RolloutRolledBack",
            format!("{why}; all traffic back to the stable backends"),
        );
        self.canary_at(rollout, 0);
    }

    fn canary_at(&mut self, rollout: &Rollout, weight: i32) {
        let weights = split(self.spec, &rollout.canary_backend, weight);
        self.set_weights(weights);
    }

    fn set_weights(&mut self, weights: Vec<BackendWeight>) {
        self.st.weights_summary = Some(summary(&weights));
        self.st.effective_weights = weights;
    }

    fn wake_at(&mut self, at: Timestamp) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    fn event(&mut self, type_: EventType, reason: &'static str, note: String) {
        self.events.push(RolloutEvent {
            type_,
            reason,
            note,
        });
    }
}

fn is_terminal(phase: RolloutPhase) -> bool {
    matches!(
        phase,
        RolloutPhase::Promoted | RolloutPhase::RolledBack | RolloutPhase::Aborted
    )
}

/// After a suspension, moves the step's clocks on by the time spent suspended.
fn resume_clocks(st: &mut TrafficPolicyStatus, now: Timestamp) {
    if let Some(at) = st.suspended_at.take() {
        let frozen = elapsed(at.0, now);
        for t in [&mut st.step_started_at, &mut st.last_analysis_at]
            .into_iter()
            .flatten()
        {
            t.0 = plus(t.0, frozen);
        }
    }
}

/// Checks run during pause and analysis steps, one interval after the step started
/// or the last check, whichever is later.
fn check_due(rollout: &Rollout, st: &TrafficPolicyStatus, now: Timestamp) -> bool {
    let step = st
        .current_step
        .and_then(|s| usize::try_from(s).ok())
        .unwrap_or(0);
    let checking = rollout
        .steps
        .get(step)
        .is_some_and(|s| s.pause.is_some() || s.analysis.is_some());
    checking && now >= next_check(rollout, st)
}

fn next_check(rollout: &Rollout, st: &TrafficPolicyStatus) -> Timestamp {
    let started = st.step_started_at.as_ref().map(|t| t.0);
    let last = st.last_analysis_at.as_ref().map(|t| t.0);
    let base = started.max(last).unwrap_or(Timestamp::UNIX_EPOCH);
    plus(base, rollout.analysis.interval.into())
}

enum Verdict {
    /// Too few canary requests: the interval neither passes nor fails.
    Inconclusive,
    Passed,
    /// What failed, worded for an Event.
    Failed(String),
}

fn check(a: &AnalysisSpec, canary: Option<&BackendObservation>) -> Verdict {
    let Some(c) = canary.filter(|c| c.requests > 0 && c.requests >= a.min_requests) else {
        return Verdict::Inconclusive;
    };
    let mut failed = Vec::new();
    let rate = c.errors as f64 / c.requests as f64;
    if rate > a.max_error_rate {
        failed.push(format!(
            "error rate {rate:.4} ({} of {} requests) > {}",
            c.errors, c.requests, a.max_error_rate
        ));
    }
    if let (Some(max), Some(p99)) = (a.max_latency_p99, c.latency_p99_seconds) {
        let max = Duration::from(max).as_secs_f64();
        if p99 > max {
            failed.push(format!("p99 latency {p99:.3}s > {max:.3}s"));
        }
    }
    if failed.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed(failed.join(", "))
    }
}

/// The canary's share after the steps before `step`: the last setWeight done (0
/// before any).
pub fn canary_weight(rollout: &Rollout, step: usize) -> i32 {
    rollout
        .steps
        .iter()
        .take(step)
        .filter_map(|s| s.set_weight)
        .next_back()
        .unwrap_or(0)
}

/// The canary at `weight` %, the other backends sharing the rest in proportion to
/// their spec weights (integers summing to 100; when they all weigh 0 the first one
/// takes the rest).
pub fn split(spec: &TrafficPolicySpec, canary: &str, weight: i32) -> Vec<BackendWeight> {
    let weight = i64::from(weight.clamp(0, 100));
    let rest = 100 - weight;
    let stable: Vec<i64> = spec
        .backends
        .iter()
        .map(|b| {
            if b.name == canary {
                0
            } else {
                i64::from(b.weight.max(0))
            }
        })
        .collect();
    let total: i64 = stable.iter().sum();
    let shares = if total == 0 {
        let first = spec.backends.iter().position(|b| b.name != canary);
        (0..stable.len())
            .map(|i| if Some(i) == first { rest } else { 0 })
            .collect()
    } else {
        largest_remainder(&stable, total, rest)
    };
    spec.backends
        .iter()
        .zip(shares)
        .map(|(b, share)| BackendWeight {
            backend: b.name.clone(),
            weight: if b.name == canary { weight } else { share } as i32,
        })
        .collect()
}

/// Scales `weights` (summing to `total` > 0) to integers summing to exactly `target`.
fn largest_remainder(weights: &[i64], total: i64, target: i64) -> Vec<i64> {
    let mut out: Vec<i64> = weights.iter().map(|w| w * target / total).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((weights[i] * target) % total));
    let short = target - out.iter().sum::<i64>();
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

/// `now` truncated to the second, as the API server stores times.
fn seconds(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_millisecond(t.as_millisecond().saturating_add(ms)).unwrap_or(Timestamp::MAX)
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    let ms = to
        .as_millisecond()
        .saturating_sub(from.as_millisecond())
        .max(0);
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
