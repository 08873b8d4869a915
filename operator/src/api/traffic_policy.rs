//! `TrafficPolicy` (short name `tp`): one stable endpoint in front of several
//! InferenceServices, served by `gateway` pods — weighted split, header rules, shadow
//! traffic and progressive canary with automatic rollback.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretKeyRef;

/// Desired routing in front of InferenceServices.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modelhub.io",
    version = "v1alpha1",
    kind = "TrafficPolicy",
    namespaced,
    shortname = "tp",
    category = "modelhub",
    status = "TrafficPolicyStatus",
    doc = "Routes inference traffic over several InferenceServices: weights, header rules, mirroring and progressive canary rollouts.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Step", type_ = "integer", json_path = ".status.currentStep"),
    printcolumn(name = "Weights", type_ = "string", json_path = ".status.weightsSummary"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 48").message("metadata.name must be at most 48 characters (the gateway Deployment is named <name>-gateway)"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.backends.map(b, b.weight).sum() == 100").message("backends: weights must sum to 100"))]
#[x_kube(validation = Rule::new("self.backends.all(b, self.backends.exists_one(c, c.name == b.name))").message("backends: names must be unique"))]
#[x_kube(validation = Rule::new("!has(self.rules) || self.rules.all(r, self.backends.exists(b, b.name == r.backend))").message("rules: every rule's backend must be listed in backends"))]
#[x_kube(validation = Rule::new("!has(self.mirror) || self.backends.exists(b, b.name == self.mirror.backend)").message("mirror.backend must be listed in backends"))]
#[x_kube(validation = Rule::new("!has(self.rollout) || self.backends.exists(b, b.name == self.rollout.canaryBackend)").message("rollout.canaryBackend must be listed in backends"))]
#[x_kube(validation = Rule::new("!has(self.rollout) || self.backends.size() >= 2").message("rollout needs at least two backends: the canary and a stable one"))]
pub struct TrafficPolicySpec {
    /// InferenceServices traffic is split over, with their weights (summing to 100).
    #[schemars(length(min = 1, max = 16))]
    pub backends: Vec<Backend>,

    /// Header rules evaluated in order before the weighted split; the first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub rules: Vec<HeaderRule>,

    /// Copy a share of requests to a backend, fire-and-forget (its responses are dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,

    /// Sticky routing: requests carrying the same value of this header land on the same
    /// backend while the weights hold (after the header rules; requests without it are
    /// split by weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new(r#"self.matches("^[A-Za-z0-9!#$%&'*+.^_|~-]+$")"#).message("stickyHeader must be a valid HTTP header name"))]
    pub sticky_header: Option<String>,

    /// Progressive canary: move traffic to `canaryBackend` step by step, checking its
    /// error rate and latency, and roll back automatically when checks fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,

    /// Gateway pods.
    #[serde(default)]
    pub gateway: GatewaySpec,

    /// Freeze the rollout at its current step (phase Paused: no step advances, no check
    /// runs and the progress deadline stops) until unset.
    #[serde(default)]
    pub suspend: bool,

    /// Abort the rollout: all traffic goes back to the stable backends.
    #[serde(default)]
    pub abort: bool,

    /// Skip the remaining rollout steps and promote now: the canary takes all traffic.
    /// Has no effect once the rollout ended (Promoted, RolledBack, Aborted).
    #[serde(default)]
    pub promote: bool,
}

/// One InferenceService behind the gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// Backend name, used by rules, mirror and rollout.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Name of the InferenceService in the same namespace.
    #[schemars(length(min = 1, max = 63))]
    pub service: String,
    /// Share of traffic in percent.
    #[schemars(range(min = 0, max = 100))]
    pub weight: i32,
}

/// Route requests whose headers all match to one backend.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRule {
    /// Header conditions; all must match.
    #[schemars(length(min = 1, max = 16))]
    pub headers: Vec<HeaderMatch>,
    /// Backend that receives matching requests.
    pub backend: String,
}

/// One header condition: exactly one of exact, prefix or regex.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.exact), has(self.prefix), has(self.regex)].filter(x, x).size() == 1").message("a header match needs exactly one of exact, prefix or regex"))]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// The value must equal this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value must start with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The value must match this regular expression (RE2 syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Shadow traffic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Mirror {
    /// Backend that receives the copies.
    pub backend: String,
    /// Share of requests copied, in percent.
    #[schemars(range(min = 0, max = 100))]
    pub percent: i32,
}

/// Progressive canary rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Backend being rolled out; the other backends are the stable ones.
    pub canary_backend: String,
    /// Steps run in order; after the last one the canary takes all traffic.
    #[schemars(length(min = 1, max = 32))]
    pub steps: Vec<RolloutStep>,
    /// Health checks of the canary, run during analysis steps and pauses.
    #[serde(default)]
    pub analysis: AnalysisSpec,
    /// Longest an analysis step may take to pass its intervals before the rollout is
    /// rolled back (pause steps end by their duration; time suspended does not count).
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: kube::core::Duration,
}

fn default_progress_deadline() -> kube::core::Duration {
    std::time::Duration::from_secs(600).into()
}

/// One rollout step: exactly one of setWeight, pause or analysis.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1").message("a rollout step needs exactly one of setWeight, pause or analysis"))]
pub struct RolloutStep {
    /// Send this percentage of traffic to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub set_weight: Option<i32>,
    /// Wait before the next step (checks keep running while waiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStep>,
    /// Wait for this many passed analysis checks before going on (checks with fewer
    /// than `minRequests` canary requests, or without readable gateways, do not count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStep>,
}

/// A pause step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PauseStep {
    /// How long to wait.
    pub duration: kube::core::Duration,
}

/// An analysis step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStep {
    /// Successful analysis intervals needed to pass the step.
    #[serde(default = "default_intervals")]
    #[schemars(range(min = 1, max = 100))]
    pub intervals: i32,
}

fn default_intervals() -> i32 {
    1
}

/// Canary health checks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// How often the canary's figures are checked.
    #[serde(default = "default_interval")]
    pub interval: kube::core::Duration,
    /// Fewest canary requests in an interval for the check to count.
    #[serde(default = "default_min_requests")]
    #[schemars(range(min = 0))]
    pub min_requests: i64,
    /// Highest tolerated canary error rate (0.0 - 1.0).
    #[serde(default = "default_max_error_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: f64,
    /// Highest tolerated canary p99 latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_p99: Option<kube::core::Duration>,
    /// Failed checks that trigger a rollback.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
}

fn default_interval() -> kube::core::Duration {
    std::time::Duration::from_secs(30).into()
}
fn default_min_requests() -> i64 {
    20
}
fn default_max_error_rate() -> f64 {
    0.01
}
fn default_failure_threshold() -> i32 {
    2
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            min_requests: default_min_requests(),
            max_error_rate: default_max_error_rate(),
            max_latency_p99: None,
            failure_threshold: default_failure_threshold(),
        }
    }
}

/// Gateway pods of the policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Number of gateway pods.
    #[serde(default = "default_gateway_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// CPU and memory requests and limits of every gateway container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Container image overriding the operator's default gateway image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Secret key holding the API key clients must present on every Open Inference
    /// Protocol request (REST and gRPC), as `Authorization: Bearer <key>` or an
    /// `api-key` header / metadata entry; otherwise 401 / UNAUTHENTICATED. The
    /// gateway's own endpoints (`/healthz`, `/readyz`, `/metrics`, and `/stats`, which
    /// the operator reads) stay open. Unset: no authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Per-client token-bucket rate limit, applied by every gateway pod on its own
    /// (the cluster-wide rate is at most this times the number of gateway pods).
    /// Requests over the limit get 429 with `Retry-After` / RESOURCE_EXHAUSTED.
    /// Changes apply without restarting the gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// Token bucket per client key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.requestsPerSecond > 0.0").message("rateLimit.requestsPerSecond must be greater than 0"))]
#[x_kube(validation = Rule::new(r#"!has(self.clientHeader) || self.clientHeader.matches("^[A-Za-z0-9!#$%&'*+.^_|~-]+$")"#).message("rateLimit.clientHeader must be a valid HTTP header name"))]
pub struct RateLimit {
    /// Sustained requests per second allowed to one client (fractions allowed).
    #[schemars(range(max = 1000000.0))]
    pub requests_per_second: f64,
    /// Requests one client may send at once after being idle (the bucket's size).
    #[schemars(range(min = 1, max = 1000000))]
    pub burst: i64,
    /// Header whose value names the client. Default: the API key when
    /// `apiKeySecretRef` is set, otherwise the client's IP address. A request without
    /// the header falls back to that default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub client_header: Option<String>,
}

fn default_gateway_replicas() -> i32 {
    2
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            replicas: default_gateway_replicas(),
            resources: None,
            image: None,
            api_key_secret_ref: None,
            rate_limit: None,
        }
    }
}

/// Rollout phase.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RolloutPhase {
    /// Traffic follows the spec's weights; no rollout is running.
    #[default]
    Stable,
    /// A rollout is moving through its steps.
    Progressing,
    /// A rollout waits (pause step or `suspend`).
    Paused,
    /// The rollout finished; the canary takes all traffic.
    Promoted,
    /// Checks failed or the deadline passed; traffic went back to the stable backends.
    RolledBack,
    /// `abort` was set; traffic went back to the stable backends.
    Aborted,
}

/// Observed state of a traffic policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicyStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Rollout phase.
    #[serde(default)]
    pub phase: RolloutPhase,
    /// Index of the rollout step being run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<i32>,
    /// When the current step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    /// Weights the gateways apply now (they watch this field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effective_weights: Vec<BackendWeight>,
    /// `name=weight` pairs of the effective weights, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_summary: Option<String>,
    /// Per-backend figures observed by the gateways in the last analysis interval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendObservation>,
    /// Consecutive failed canary checks (a passed check resets it); at
    /// `failureThreshold` the rollout is rolled back.
    #[serde(default)]
    pub failed_checks: i32,
    /// Ready gateway pods.
    #[serde(default)]
    pub ready_replicas: i32,
    /// In-cluster URL of the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Short hash of `spec.rollout` the rollout state belongs to; when the rollout
    /// definition changes the rollout restarts from step 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_revision: Option<String>,
    /// Passed analysis intervals in the current analysis step.
    #[serde(default)]
    pub passed_intervals: i32,
    /// When the canary's figures were last checked (or found unreadable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis_at: Option<Time>,
    /// When `suspend` froze the rollout; on resume the current step's clock is moved
    /// on by the time spent suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_at: Option<Time>,
}

/// A backend and the share of traffic it gets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackendWeight {
    /// Backend name.
    pub backend: String,
    /// Percent of traffic.
    pub weight: i32,
}

/// Figures of one backend as seen by the gateways.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendObservation {
    /// Backend name.
    pub name: String,
    /// Requests in the interval.
    #[serde(default)]
    pub requests: i64,
    /// Failed requests (5xx, timeouts, connection errors) in the interval.
    #[serde(default)]
    pub errors: i64,
    /// 99th percentile latency in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99_seconds: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_defaults() {
        let r: Rollout =
            serde_json::from_str(r#"{"canaryBackend": "v2", "steps": [{"setWeight": 10}]}"#)
                .unwrap();
        assert_eq!(r.analysis.failure_threshold, 2);
        assert_eq!(r.analysis.min_requests, 20);
        let deadline: std::time::Duration = r.progress_deadline.into();
        assert_eq!(deadline.as_secs(), 600);
    }

    #[test]
    fn gateway_defaults_to_two_replicas() {
        let spec: TrafficPolicySpec = serde_json::from_str(
            r#"{"backends": [{"name": "a", "service": "isvc-a", "weight": 100}]}"#,
        )
        .unwrap();
        assert_eq!(spec.gateway.replicas, 2);
        assert!(!spec.suspend && !spec.abort && !spec.promote);
        assert!(spec.gateway.api_key_secret_ref.is_none() && spec.gateway.rate_limit.is_none());
    }

    #[test]
    fn gateway_auth_and_rate_limit_use_camel_case_wire_names() {
        let g: GatewaySpec = serde_json::from_value(serde_json::json!({
            "apiKeySecretRef": {"name": "gw-key", "key": "token"},
            "rateLimit": {"requestsPerSecond": 2.5, "burst": 10, "clientHeader": "x-user"}
        }))
        .unwrap();
        assert_eq!(g.replicas, 2);
        assert_eq!(g.api_key_secret_ref.unwrap().name, "gw-key");
        let rl = g.rate_limit.unwrap();
        assert_eq!((rl.requests_per_second, rl.burst), (2.5, 10));
        assert_eq!(rl.client_header.as_deref(), Some("x-user"));
    }
}
