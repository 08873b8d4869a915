//! Prometheus metrics of the engine: requests and failures per model/version, request,
//! queue and compute latency, batch sizes, and the in-flight gauge the autoscaler reads.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, exponential_buckets,
};

/// Every metric tinyinfer exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub failures: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub queue_seconds: HistogramVec,
    pub compute_seconds: HistogramVec,
    pub batch_size: HistogramVec,
    pub inflight: IntGaugeVec,
    /// 1 for the precision each loaded model version serves (`none`, `int8-dynamic`).
    pub precision: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let labels = &["model", "version"];
        let latency = || exponential_buckets(0.0001, 2.0, 18);
        let requests = IntCounterVec::new(
            Opts::new("tinyinfer_requests_total", "Inference requests received"),
            labels,
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "tinyinfer_request_failures_total",
                "Inference requests that failed",
            ),
            &["model", "version", "reason"],
        )?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tinyinfer_request_duration_seconds",
                "End-to-end inference latency",
            )
            .buckets(latency()?),
            labels,
        )?;
        let queue_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tinyinfer_queue_duration_seconds",
                "Time spent waiting in the batch queue",
            )
            .buckets(latency()?),
            labels,
        )?;
        let compute_seconds = HistogramVec::new(
            HistogramOpts::new(
                "tinyinfer_compute_duration_seconds",
                "ONNX Runtime time per batch",
            )
            .buckets(latency()?),
            labels,
        )?;
        let batch_size = HistogramVec::new(
            HistogramOpts::new("tinyinfer_batch_size", "Rows per executed batch")
                .buckets(exponential_buckets(1.0, 2.0, 10)?),
            labels,
        )?;
        let inflight = IntGaugeVec::new(
            Opts::new(
                "tinyinfer_inflight_requests",
                "Inference requests being served now",
            ),
            labels,
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(queue_seconds.clone()))?;
        registry.register(Box::new(compute_seconds.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        let precision = IntGaugeVec::new(
            Opts::new(
                "tinyinfer_model_precision",
                "1 for the precision a loaded model version serves at",
            ),
            &["model", "version", "precision"],
        )?;
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(precision.clone()))?;
        Ok(Self {
            registry,
            requests,
            failures,
            request_seconds,
            queue_seconds,
            compute_seconds,
            batch_size,
            inflight,
            precision,
        })
    }
}
