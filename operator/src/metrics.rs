//! The operator's Prometheus metrics: reconciles, errors and durations per kind, child
//! applies (written or skipped as unchanged), and whether this replica holds the leader
//! lease.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Metrics of the operator, registered in their own registry.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub child_applies: IntCounterVec,
    pub leader: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("modelhub_operator".to_owned()), None)?;
        let reconciles = IntCounterVec::new(
            Opts::new("reconciles_total", "Reconciles started, by kind"),
            &["kind"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "reconcile_errors_total",
                "Failed reconciles, by kind and error class",
            ),
            &["kind", "error"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "reconcile_duration_seconds",
                "Duration of one reconcile, by kind",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind"],
        )?;
        let child_applies = IntCounterVec::new(
            Opts::new(
                "child_applies_total",
                "Child objects reconciled, by kind and result (applied: a server-side apply \
                 was sent; skipped: the cache showed it unchanged)",
            ),
            &["kind", "result"],
        )?;
        let leader = IntGauge::new("leader", "1 while this replica holds the leader lease")?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(child_applies.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            child_applies,
            leader,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_prefixed_and_rendered() {
        let m = Metrics::new().unwrap();
        m.reconciles.with_label_values(&["VectorCollection"]).inc();
        m.leader.set(1);
        let text = modelhub_telemetry::metrics::render(&m.registry);
        assert!(
            text.contains("modelhub_operator_reconciles_total{kind=\"VectorCollection\"} 1"),
            "{text}"
        );
        assert!(text.contains("modelhub_operator_leader 1"), "{text}");
    }
}
