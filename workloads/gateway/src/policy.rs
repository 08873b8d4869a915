//! The routing policy a gateway applies: the wire form ([`PolicySpec`], what the static
//! `--policy-file` holds and what the Kubernetes source builds from a TrafficPolicy and
//! its backends' EndpointSlices) and the validated form ([`Policy`]) the router reads,
//! with header names parsed and regexes compiled once. It also carries the admission
//! settings (API key, per-client rate limit) that [`crate::guard`] enforces.

use std::collections::HashSet;
use std::net::SocketAddr;

use http::HeaderName;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// A policy that cannot be applied, worded for the operator's log.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    #[error("the policy has no backends")]
    NoBackends,
    #[error("backend name {0:?} is listed twice")]
    DuplicateBackend(String),
    #[error("backend {name:?}: weight {weight} is outside 0..=100")]
    BadWeight { name: String, weight: i32 },
    #[error("{what} names backend {backend:?}, which is not among the backends")]
    UnknownBackend { what: String, backend: String },
    #[error("rule {rule}: invalid header name {name:?}")]
    BadHeaderName { rule: usize, name: String },
    #[error("rule {rule}, header {name:?}: needs exactly one of exact, prefix or regex")]
    AmbiguousMatch { rule: usize, name: String },
    #[error("rule {rule}, header {name:?}: invalid regex: {message}")]
    BadRegex {
        rule: usize,
        name: String,
        message: String,
    },
    #[error("rule {0} has no header conditions")]
    EmptyRule(usize),
    #[error("mirror percent {0} is outside 0..=100")]
    BadMirrorPercent(i32),
    #[error("invalid sticky header name {0:?}")]
    BadStickyHeader(String),
    #[error("the API key is empty")]
    EmptyApiKey,
    #[error("rateLimit.requestsPerSecond {0} must be a finite number greater than 0")]
    BadRate(f64),
    #[error("rateLimit.burst {0} must be at least 1")]
    BadBurst(i64),
    #[error("invalid rateLimit.clientHeader {0:?}")]
    BadClientHeader(String),
}

/// Serialized policy: the static file's format and the Kubernetes source's output.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    pub backends: Vec<BackendSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<HeaderRuleSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorSpec>,
    /// Requests carrying this header stick to one backend per header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_header: Option<String>,
    /// The TrafficPolicy's `status.effectiveWeights`; empty means "use the spec weights".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effective_weights: Vec<BackendWeight>,
    /// When set, every OIP request must present this key. The file may hold it; the
    /// Kubernetes source fills it from `GATEWAY_API_KEY` (the TrafficPolicy's Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKey>,
    /// Per-client token bucket (`spec.gateway.rateLimit` of the TrafficPolicy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
}

/// An API key; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Token bucket per client key, as `spec.gateway.rateLimit` spells it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Tokens added per second (the sustained rate of one client).
    pub requests_per_second: f64,
    /// Bucket size: requests one client may send at once after being idle.
    pub burst: i64,
    /// Header naming the client; absent: the API key when auth is on, else the peer IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_header: Option<String>,
}

/// A validated rate limit.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
    pub client_header: Option<HeaderName>,
}

impl RateLimit {
    fn compile(spec: &RateLimitSpec) -> Result<Self, PolicyError> {
        let rps = spec.requests_per_second;
        if !rps.is_finite() || rps <= 0.0 {
            return Err(PolicyError::BadRate(rps));
        }
        if spec.burst < 1 {
            return Err(PolicyError::BadBurst(spec.burst));
        }
        let client_header = spec
            .client_header
            .as_deref()
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| PolicyError::BadClientHeader(h.to_owned()))
            })
            .transpose()?;
        Ok(Self {
            per_second: rps,
            // Exact for any burst the CRD allows (at most 1e6).
            burst: spec.burst as f64,
            client_header,
        })
    }
}

/// One backend (an InferenceService) and its ready pods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendSpec {
    pub name: String,
    #[serde(default)]
    pub service: String,
    pub weight: i32,
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
}

/// One ready pod of a backend: its OIP REST and gRPC addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<SocketAddr>,
}

/// Route requests whose headers all match to one backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRuleSpec {
    pub headers: Vec<HeaderMatchSpec>,
    pub backend: String,
}

/// One header condition, as the CRD defines it: exactly one of exact, prefix or regex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderMatchSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Shadow traffic: a copy of `percent` % of inference requests goes to `backend`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorSpec {
    pub backend: String,
    pub percent: i32,
}

/// A backend and the share of traffic it gets (the status' `effectiveWeights` entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendWeight {
    pub backend: String,
    pub weight: i32,
}

/// A validated backend.
#[derive(Clone, Debug)]
pub struct Backend {
    pub name: String,
    pub service: String,
    /// The weight in force: the effective weight, or the spec weight until there is one.
    pub weight: u32,
    pub endpoints: Vec<EndpointSpec>,
}

/// How one header is matched.
#[derive(Clone, Debug)]
pub enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl Matcher {
    /// Whether `value` satisfies this condition (a regex must match the whole value).
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(v) => value == v,
            Self::Prefix(p) => value.starts_with(p.as_str()),
            Self::Regex(re) => re.is_match(value),
        }
    }
}

/// A validated header rule; `backend` indexes [`Policy::backends`].
#[derive(Clone, Debug)]
pub struct Rule {
    pub conditions: Vec<(HeaderName, Matcher)>,
    pub backend: usize,
}

/// A validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub backends: Vec<Backend>,
    pub rules: Vec<Rule>,
    /// Mirror backend index and percent.
    pub mirror: Option<(usize, u32)>,
    pub sticky_header: Option<HeaderName>,
    /// Key every OIP request must present; `None`: no authentication.
    pub api_key: Option<ApiKey>,
    pub rate_limit: Option<RateLimit>,
}

impl Policy {
    /// Validates `spec`; every name a rule or the mirror uses must be a backend.
    pub fn compile(spec: &PolicySpec) -> Result<Self, PolicyError> {
        if spec.backends.is_empty() {
            return Err(PolicyError::NoBackends);
        }
        let mut seen = HashSet::new();
        for b in &spec.backends {
            if !seen.insert(b.name.as_str()) {
                return Err(PolicyError::DuplicateBackend(b.name.clone()));
            }
            check_weight(&b.name, b.weight)?;
        }
        let index_of = |what: String, name: &str| {
            spec.backends
                .iter()
                .position(|b| b.name == name)
                .ok_or_else(|| PolicyError::UnknownBackend {
                    what,
                    backend: name.to_owned(),
                })
        };
        for w in &spec.effective_weights {
            index_of("status.effectiveWeights".into(), &w.backend)?;
            check_weight(&w.backend, w.weight)?;
        }
        let backends = spec
            .backends
            .iter()
            .map(|b| {
                let weight = if spec.effective_weights.is_empty() {
                    b.weight
                } else {
                    spec.effective_weights
                        .iter()
                        .find(|w| w.backend == b.name)
                        .map_or(0, |w| w.weight)
                };
                Backend {
                    name: b.name.clone(),
                    service: b.service.clone(),
                    weight: u32::try_from(weight).unwrap_or(0),
                    endpoints: b.endpoints.clone(),
                }
            })
            .collect();
        let mut rules = Vec::with_capacity(spec.rules.len());
        for (i, r) in spec.rules.iter().enumerate() {
            if r.headers.is_empty() {
                return Err(PolicyError::EmptyRule(i));
            }
            let backend = index_of(format!("rule {i}"), &r.backend)?;
            let conditions = r
                .headers
                .iter()
                .map(|h| compile_match(i, h))
                .collect::<Result<_, _>>()?;
            rules.push(Rule {
                conditions,
                backend,
            });
        }
        let mirror = match &spec.mirror {
            None => None,
            Some(m) => {
                let idx = index_of("mirror".into(), &m.backend)?;
                let percent = u32::try_from(m.percent)
                    .map_err(|_| PolicyError::BadMirrorPercent(m.percent))?;
                if percent > 100 {
                    return Err(PolicyError::BadMirrorPercent(m.percent));
                }
                (percent > 0).then_some((idx, percent))
            }
        };
        let sticky_header = spec
            .sticky_header
            .as_deref()
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| PolicyError::BadStickyHeader(h.to_owned()))
            })
            .transpose()?;
        if spec.api_key.as_ref().is_some_and(|k| k.0.is_empty()) {
            return Err(PolicyError::EmptyApiKey);
        }
        let rate_limit = spec
            .rate_limit
            .as_ref()
            .map(RateLimit::compile)
            .transpose()?;
        Ok(Self {
            backends,
            rules,
            mirror,
            sticky_header,
            api_key: spec.api_key.clone(),
            rate_limit,
        })
    }

    /// Index of the backend named `name`.
    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }
}

fn check_weight(name: &str, weight: i32) -> Result<(), PolicyError> {
    if (0..=100).contains(&weight) {
        Ok(())
    } else {
        Err(PolicyError::BadWeight {
            name: name.to_owned(),
            weight,
        })
    }
}

fn compile_match(rule: usize, h: &HeaderMatchSpec) -> Result<(HeaderName, Matcher), PolicyError> {
    let name =
        HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| PolicyError::BadHeaderName {
            rule,
            name: h.name.clone(),
        })?;
    let matcher = match (&h.exact, &h.prefix, &h.regex) {
        (Some(v), None, None) => Matcher::Exact(v.clone()),
        (None, Some(p), None) => Matcher::Prefix(p.clone()),
        (None, None, Some(re)) => {
            // Anchored: the CRD's regex describes the whole header value.
            let re = Regex::new(&format!("^(?:{re})$")).map_err(|e| PolicyError::BadRegex {
                rule,
                name: h.name.clone(),
                message: e.to_string(),
            })?;
            Matcher::Regex(re)
        }
        _ => {
            return Err(PolicyError::AmbiguousMatch {
                rule,
                name: h.name.clone(),
            });
        }
    };
    Ok((name, matcher))
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
