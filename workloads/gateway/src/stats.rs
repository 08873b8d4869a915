//! Per-backend figures: Prometheus metrics (requests, errors by kind, latency
//! histograms, mirror drops) and a windowed view of the last N seconds (one bucket per
//! second, latencies in a log-scale histogram) that `GET /stats?window=30s` returns for
//! the operator's canary analysis.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use serde::Serialize;

/// Seconds of history kept for `/stats`.
pub const MAX_WINDOW_SECS: u64 = 300;
/// Latency histogram of the window: bucket `i` holds latencies up to `BASE * GROWTH^i`.
const BUCKETS: usize = 80;
const BASE_SECS: f64 = 50e-6;
const GROWTH: f64 = 1.25;

/// Whether a request went to the backend that answered the client or was a mirror copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Primary,
    Mirror,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Mirror => "mirror",
        }
    }
}

/// How a request ended, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// 5xx from the backend, or a gRPC status other than OK that the server raised.
    ServerError,
    Timeout,
    /// No connection, or the connection failed mid-request.
    Transport,
}

impl Outcome {
    fn error_kind(self) -> Option<&'static str> {
        match self {
            Self::Ok => None,
            Self::ServerError => Some("status"),
            Self::Timeout => Some("timeout"),
            Self::Transport => Some("transport"),
        }
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    second: u64,
    requests: u64,
    errors: u64,
    latency: [u32; BUCKETS],
}

impl Bucket {
    const EMPTY: Self = Self {
        second: u64::MAX,
        requests: 0,
        errors: 0,
        latency: [0; BUCKETS],
    };
}

/// The last [`MAX_WINDOW_SECS`] seconds of one (backend, role).
struct Ring {
    buckets: Box<[Bucket]>,
}

impl Ring {
    fn new() -> Self {
        Self {
            buckets: vec![Bucket::EMPTY; MAX_WINDOW_SECS as usize].into_boxed_slice(),
        }
    }

    fn record(&mut self, second: u64, latency: Duration, error: bool) {
        let b = &mut self.buckets[(second % MAX_WINDOW_SECS) as usize];
        if b.second != second {
            *b = Bucket {
                second,
                ..Bucket::EMPTY
            };
        }
        b.requests += 1;
        b.errors += u64::from(error);
        b.latency[bucket_of(latency)] += 1;
    }

    fn summary(&self, now: u64, window: u64) -> (u64, u64, [u64; BUCKETS]) {
        let mut hist = [0u64; BUCKETS];
        let (mut requests, mut errors) = (0, 0);
        let oldest = now.saturating_sub(window.saturating_sub(1));
        for b in self.buckets.iter() {
            if b.second != u64::MAX && b.second >= oldest && b.second <= now {
                requests += b.requests;
                errors += b.errors;
                for (h, c) in hist.iter_mut().zip(b.latency.iter()) {
                    *h += u64::from(*c);
                }
            }
        }
        (requests, errors, hist)
    }
}

fn bucket_of(latency: Duration) -> usize {
    let s = latency.as_secs_f64();
    if s <= BASE_SECS {
        return 0;
    }
    let i = ((s / BASE_SECS).ln() / GROWTH.ln()).ceil();
    // Non-negative and finite here; clamped to the last bucket.
    (i as usize).min(BUCKETS - 1)
}

/// Upper bound of bucket `i`, in seconds.
fn bucket_upper(i: usize) -> f64 {
    BASE_SECS * GROWTH.powi(i32::try_from(i).unwrap_or(i32::MAX))
}

fn quantile(hist: &[u64; BUCKETS], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    // Rank of the q-quantile, 1-based.
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, c) in hist.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(bucket_upper(i));
        }
    }
    Some(bucket_upper(BUCKETS - 1))
}

/// One backend's figures over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendFigures {
    pub name: String,
    pub role: Role,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    /// Upper bound of the latency bucket holding the quantile (buckets grow by 25 %).
    pub latency_p50_seconds: Option<f64>,
    pub latency_p99_seconds: Option<f64>,
}

/// The `/stats` answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsReport {
    pub window_seconds: u64,
    pub backends: Vec<BackendFigures>,
    pub mirror_dropped: u64,
}

/// Metrics and windowed figures, shared by the REST and gRPC proxies and the mirror.
pub struct Stats {
    pub registry: Registry,
    requests: IntCounterVec,
    errors: IntCounterVec,
    latency: HistogramVec,
    pub mirror_dropped: IntCounter,
    pub no_backend: IntCounterVec,
    /// Requests refused before routing (reason: unauthenticated, rate_limited).
    pub refused: IntCounterVec,
    windows: Mutex<HashMap<(String, Role), Ring>>,
    epoch: Instant,
}

impl Stats {
    /// Creates the metrics and registers them in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let labels = ["backend", "protocol", "role"];
        let requests = IntCounterVec::new(
            Opts::new("gateway_requests_total", "Requests sent to a backend"),
            &labels,
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "gateway_request_errors_total",
                "Failed backend requests (kind: status = 5xx or gRPC error, timeout, transport; connect = refused, retried on another pod)",
            ),
            &["backend", "protocol", "role", "kind"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "gateway_request_duration_seconds",
                "Backend request latency, as the gateway measured it",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16)?),
            &labels,
        )?;
        let mirror_dropped = IntCounter::new(
            "gateway_mirror_dropped_total",
            "Mirror copies dropped because the mirror queue was full",
        )?;
        let no_backend = IntCounterVec::new(
            Opts::new(
                "gateway_no_backend_total",
                "Requests answered 503 because no backend pod was ready",
            ),
            &["protocol"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "gateway_refused_total",
                "OIP requests refused before routing (never forwarded)",
            ),
            &["reason"],
        )?;
        let registry = Registry::new();
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(mirror_dropped.clone()))?;
        registry.register(Box::new(no_backend.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(Self {
            registry,
            requests,
            errors,
            latency,
            mirror_dropped,
            no_backend,
            refused,
            windows: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        })
    }

    /// Records one finished backend request.
    pub fn record(
        &self,
        backend: &str,
        protocol: &str,
        role: Role,
        outcome: Outcome,
        latency: Duration,
    ) {
        let labels = [backend, protocol, role.label()];
        self.requests.with_label_values(&labels).inc();
        self.latency
            .with_label_values(&labels)
            .observe(latency.as_secs_f64());
        if let Some(kind) = outcome.error_kind() {
            self.errors
                .with_label_values(&[backend, protocol, role.label(), kind])
                .inc();
        }
        let second = self.epoch.elapsed().as_secs();
        self.record_at(second, backend, role, outcome != Outcome::Ok, latency);
    }

    /// A pod refused the connection (the request was retried elsewhere or failed).
    pub fn record_connect_failure(&self, backend: &str, protocol: &str, role: Role) {
        self.errors
            .with_label_values(&[backend, protocol, role.label(), "connect"])
            .inc();
    }

    fn record_at(&self, second: u64, backend: &str, role: Role, error: bool, latency: Duration) {
        self.windows
            .lock()
            .entry((backend.to_owned(), role))
            .or_insert_with(Ring::new)
            .record(second, latency, error);
    }

    /// Figures of the last `window` seconds (at most [`MAX_WINDOW_SECS`]).
    pub fn report(&self, window: u64) -> StatsReport {
        self.report_at(self.epoch.elapsed().as_secs(), window)
    }

    fn report_at(&self, now: u64, window: u64) -> StatsReport {
        let window = window.clamp(1, MAX_WINDOW_SECS);
        let mut backends: Vec<BackendFigures> = self
            .windows
            .lock()
            .iter()
            .map(|((name, role), ring)| {
                let (requests, errors, hist) = ring.summary(now, window);
                BackendFigures {
                    name: name.clone(),
                    role: *role,
                    requests,
                    errors,
                    error_rate: if requests == 0 {
                        0.0
                    } else {
                        errors as f64 / requests as f64
                    },
                    latency_p50_seconds: quantile(&hist, requests, 0.5),
                    latency_p99_seconds: quantile(&hist, requests, 0.99),
                }
            })
            .collect();
        backends.sort_by(|a, b| (&a.name, a.role as u8).cmp(&(&b.name, b.role as u8)));
        StatsReport {
            window_seconds: window,
            backends,
            mirror_dropped: self.mirror_dropped.get(),
        }
    }
}

/// Parses a window like `30s`, `2m` or `45` (seconds).
pub fn parse_window(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, mult) = if let Some(d) = s.strip_suffix('s') {
        (d, 1)
    } else if let Some(d) = s.strip_suffix('m') {
        (d, 60)
    } else {
        (s, 1)
    };
    digits
        .parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|w| *w > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_only_recent_seconds_and_computes_quantiles() {
        let stats = Stats::new().unwrap();
        // Old traffic, outside a 30 s window ending at second 100.
        for _ in 0..50 {
            stats.record_at(60, "a", Role::Primary, true, Duration::from_secs(1));
        }
        for i in 0..100u64 {
            let latency = Duration::from_millis(if i < 98 { 10 } else { 500 });
            stats.record_at(90 + i % 10, "a", Role::Primary, i % 20 == 0, latency);
        }
        stats.record_at(95, "shadow", Role::Mirror, false, Duration::from_millis(1));
        let r = stats.report_at(100, 30);
        assert_eq!(r.window_seconds, 30);
        let a = &r.backends[0];
        assert_eq!((a.name.as_str(), a.role), ("a", Role::Primary));
        assert_eq!((a.requests, a.errors), (100, 5));
        assert!((a.error_rate - 0.05).abs() < 1e-9);
        let p50 = a.latency_p50_seconds.unwrap();
        assert!((0.010..0.0126).contains(&p50), "{p50}");
        let p99 = a.latency_p99_seconds.unwrap();
        assert!((0.5..0.63).contains(&p99), "{p99}");
        assert_eq!(r.backends[1].role, Role::Mirror);
        // The old errors are inside a longer window.
        assert_eq!(stats.report_at(100, 60).backends[0].errors, 55);
    }

    #[test]
    fn ring_slots_are_reused_for_new_seconds() {
        let stats = Stats::new().unwrap();
        stats.record_at(5, "a", Role::Primary, false, Duration::from_millis(1));
        stats.record_at(
            5 + MAX_WINDOW_SECS,
            "a",
            Role::Primary,
            false,
            Duration::from_millis(1),
        );
        let r = stats.report_at(5 + MAX_WINDOW_SECS, MAX_WINDOW_SECS);
        assert_eq!(r.backends[0].requests, 1);
        assert!(r.backends[0].latency_p50_seconds.is_some());
        assert_eq!(
            stats.report_at(1000, 10).backends[0].latency_p99_seconds,
            None
        );
    }

    #[test]
    fn prometheus_text_has_per_backend_series() {
        let stats = Stats::new().unwrap();
        stats.record(
            "a",
            "rest",
            Role::Primary,
            Outcome::Timeout,
            Duration::from_millis(3),
        );
        let text = modelhub_telemetry::metrics::render(&stats.registry);
        assert!(text.contains(
            r#"gateway_request_errors_total{backend="a",kind="timeout",protocol="rest",role="primary"} 1"#
        ), "{text}");
        assert!(
            text.contains("gateway_request_duration_seconds_bucket"),
            "{text}"
        );
    }

    #[test]
    fn windows_parse_with_units() {
        assert_eq!(parse_window("30s"), Some(30));
        assert_eq!(parse_window("2m"), Some(120));
        assert_eq!(parse_window("45"), Some(45));
        assert_eq!(parse_window("0s"), None);
        assert_eq!(parse_window("abc"), None);
    }
}
