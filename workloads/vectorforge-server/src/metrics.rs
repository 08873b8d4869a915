//! Prometheus metrics of the server: REST and gRPC requests by route and status with
//! latency histograms, and per-collection gauges (points, vectors, unindexed vectors,
//! bytes on disk, operations since the last snapshot) refreshed at scrape time; scheduled
//! snapshots and backup uploads by result, and the time of the last good backup.

use std::time::Duration;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry as PromRegistry,
};

use crate::registry::Registry;

pub struct Metrics {
    registry: PromRegistry,
    http_requests: IntCounterVec,
    http_latency: HistogramVec,
    grpc_requests: IntCounterVec,
    grpc_latency: HistogramVec,
    points: IntGaugeVec,
    vectors: IntGaugeVec,
    unindexed: IntGaugeVec,
    disk_bytes: IntGaugeVec,
    wal_lag: IntGaugeVec,
    backups: IntCounterVec,
    last_backup: IntGauge,
}

const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = PromRegistry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "vectorforge_http_requests_total",
                "REST requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let http_latency = HistogramVec::new(
            HistogramOpts::new(
                "vectorforge_http_request_duration_seconds",
                "REST request latency",
            )
            .buckets(BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        let grpc_requests = IntCounterVec::new(
            Opts::new(
                "vectorforge_grpc_requests_total",
                "gRPC requests by method and code",
            ),
            &["method", "code"],
        )?;
        let grpc_latency = HistogramVec::new(
            HistogramOpts::new(
                "vectorforge_grpc_request_duration_seconds",
                "gRPC request latency",
            )
            .buckets(BUCKETS.to_vec()),
            &["method"],
        )?;
        let gauge =
            |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["collection"]);
        let points = gauge("vectorforge_collection_points", "live points")?;
        let vectors = gauge(
            "vectorforge_collection_stored_vectors",
            "stored vectors, all vector spaces, deleted included until compaction",
        )?;
        let unindexed = gauge(
            "vectorforge_collection_unindexed_vectors",
            "stored vectors not yet in the HNSW graph",
        )?;
        let disk_bytes = gauge(
            "vectorforge_collection_disk_bytes",
            "bytes on disk (vectors, graph, payloads, WAL, snapshots)",
        )?;
        let wal_lag = gauge(
            "vectorforge_collection_wal_lag_operations",
            "operations since the newest snapshot (replayed from the WAL on restart)",
        )?;
        let backups = IntCounterVec::new(
            Opts::new(
                "vectorforge_backups_total",
                "scheduled snapshots (step=snapshot) and their uploads (step=upload) by result",
            ),
            &["step", "result"],
        )?;
        let last_backup = IntGauge::new(
            "vectorforge_backup_last_success_timestamp_seconds",
            "when this pod last finished a scheduled snapshot (and its upload, as the leader)",
        )?;
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(backups.clone()),
            Box::new(last_backup.clone()),
            Box::new(http_latency.clone()),
            Box::new(grpc_requests.clone()),
            Box::new(grpc_latency.clone()),
            Box::new(points.clone()),
            Box::new(vectors.clone()),
            Box::new(unindexed.clone()),
            Box::new(disk_bytes.clone()),
            Box::new(wal_lag.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Metrics {
            registry,
            http_requests,
            http_latency,
            grpc_requests,
            grpc_latency,
            points,
            vectors,
            unindexed,
            disk_bytes,
            wal_lag,
            backups,
            last_backup,
        })
    }

    pub fn observe_http(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_latency
            .with_label_values(&[route, method])
            .observe(took.as_secs_f64());
    }

    pub fn observe_grpc(&self, method: &str, code: tonic::Code, took: Duration) {
        self.grpc_requests
            .with_label_values(&[method, &format!("{code:?}")])
            .inc();
        self.grpc_latency
            .with_label_values(&[method])
            .observe(took.as_secs_f64());
    }

    /// One scheduled snapshot or upload finished (`ok`) or failed.
    pub fn observe_backup(&self, step: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.backups.with_label_values(&[step, result]).inc();
    }

    /// A scheduled snapshot and (when this pod uploads) its upload succeeded.
    pub fn backup_done(&self) {
        self.last_backup.set(chrono::Utc::now().timestamp());
    }

    /// Refreshes the per-collection gauges (deleted collections drop out).
    pub fn observe_collections(&self, reg: &Registry) {
        for g in [
            &self.points,
            &self.vectors,
            &self.unindexed,
            &self.disk_bytes,
            &self.wal_lag,
        ] {
            g.reset();
        }
        for c in reg.all() {
            let info = c.info();
            let l = [c.name()];
            self.points.with_label_values(&l).set(info.points as i64);
            self.vectors
                .with_label_values(&l)
                .set(info.stored_vectors as i64);
            self.unindexed
                .with_label_values(&l)
                .set(info.stored_vectors.saturating_sub(info.indexed_vectors) as i64);
            self.disk_bytes
                .with_label_values(&l)
                .set(c.disk_bytes() as i64);
            self.wal_lag.with_label_values(&l).set(c.wal_lag() as i64);
        }
    }

    pub fn render(&self) -> String {
        modelhub_telemetry::metrics::render(&self.registry)
    }
}
