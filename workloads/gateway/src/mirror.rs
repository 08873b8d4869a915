//! Shadow traffic: copies of inference requests go through a bounded queue to workers
//! that send them to the mirror backend. Fire-and-forget: a full queue drops the copy
//! (counted in `gateway_mirror_dropped_total`), and the mirror's responses and errors
//! are only recorded (role `mirror` in the metrics and `/stats`), never returned.

use std::sync::Arc;

use oip::grpc::pb::ModelInferRequest;
use tokio::sync::{Semaphore, mpsc};

use crate::stats::{Outcome, Role};
use crate::table::Table;
use crate::upstream::{RestRequest, Upstreams};

/// One copy to send.
pub enum MirrorJob {
    Rest {
        table: Arc<Table>,
        backend: usize,
        request: RestRequest,
    },
    Grpc {
        table: Arc<Table>,
        backend: usize,
        metadata: tonic::metadata::MetadataMap,
        request: ModelInferRequest,
    },
}

/// The sending side of the mirror queue.
#[derive(Clone)]
pub struct Mirror {
    tx: mpsc::Sender<MirrorJob>,
    upstreams: Arc<Upstreams>,
}

impl Mirror {
    /// Starts the mirror worker: a queue of `capacity` copies, `concurrency` in flight.
    pub fn start(upstreams: Arc<Upstreams>, capacity: usize, concurrency: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<MirrorJob>(capacity.max(1));
        let worker_upstreams = Arc::clone(&upstreams);
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(concurrency.max(1)));
            while let Some(job) = rx.recv().await {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break;
                };
                let up = Arc::clone(&worker_upstreams);
                tokio::spawn(async move {
                    send(&up, job).await;
                    drop(permit);
                });
            }
        });
        Self { tx, upstreams }
    }

    /// Queues a copy, or drops and counts it when the queue is full.
    pub fn submit(&self, job: MirrorJob) {
        if self.tx.try_send(job).is_err() {
            self.upstreams.stats.mirror_dropped.inc();
        }
    }
}

async fn send(up: &Upstreams, job: MirrorJob) {
    match job {
        MirrorJob::Rest {
            table,
            backend,
            request,
        } => {
            if let Err(err) = up.rest(&table, backend, Role::Mirror, &request).await {
                tracing::debug!(error = %err, "mirror request failed");
            }
        }
        MirrorJob::Grpc {
            table,
            backend,
            metadata,
            request,
        } => {
            let name = table.policy.backends[backend].name.as_str();
            let pod = match up.pick_grpc(&table, backend, &[]) {
                Ok(pod) => pod,
                Err(err) => {
                    tracing::debug!(error = %err, "mirror has no pod");
                    return;
                }
            };
            let mut req = tonic::Request::new(request);
            *req.metadata_mut() = metadata;
            req.set_timeout(up.timeout);
            let start = std::time::Instant::now();
            let result =
                tokio::time::timeout(up.timeout, up.grpc_client(pod.addr).model_infer(req)).await;
            let outcome = match result {
                Err(_) => Outcome::Timeout,
                Ok(Ok(_)) => Outcome::Ok,
                Ok(Err(status)) => {
                    tracing::debug!(backend = name, %status, "mirror request failed");
                    Outcome::ServerError
                }
            };
            up.stats
                .record(name, "grpc", Role::Mirror, outcome, start.elapsed());
        }
    }
}
