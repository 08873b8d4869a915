//! Dynamic batching for one model version: a bounded queue in front of a single worker
//! that concatenates compatible requests (same inputs except the batch dimension) up to
//! `maxBatchSize` rows (and the model's own limit) or until `maxQueueDelay` passes, runs
//! them once on the [`Model`] and splits the outputs back. Cancelled and expired requests
//! are dropped before running; a failed run fails every request of its batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oip::{Tensor, TensorData};
use tokio::sync::{mpsc, oneshot};

use crate::config::BatchingConfig;
use crate::engine::Model;
use crate::error::InferError;
use crate::metrics::Metrics;

type Reply = oneshot::Sender<Result<Vec<Tensor>, InferError>>;

struct Job {
    inputs: Vec<Tensor>,
    deadline: Option<Instant>,
    enqueued: Instant,
    reply: Reply,
}

impl Job {
    fn rows(&self) -> usize {
        self.inputs
            .first()
            .and_then(|t| t.shape.first())
            .map_or(1, |d| usize::try_from(*d).unwrap_or(0))
    }

    /// Same input names, datatypes and non-batch dimensions.
    fn compatible(&self, other: &Job) -> bool {
        self.inputs.len() == other.inputs.len()
            && self.inputs.iter().zip(&other.inputs).all(|(a, b)| {
                a.name == b.name
                    && a.datatype() == b.datatype()
                    && a.shape.len() == b.shape.len()
                    && a.shape.get(1..) == b.shape.get(1..)
            })
    }
}

/// Handle to a model's queue; cloning shares the queue.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    model_name: String,
}

/// Labels and settings for one worker.
pub struct BatcherSettings {
    pub model: String,
    pub version: String,
    pub config: BatchingConfig,
}

impl Batcher {
    /// Starts the worker task for `model`; it ends once every handle is dropped and the
    /// queue is drained, so in-flight batches finish on shutdown.
    pub fn spawn(model: Arc<dyn Model>, settings: BatcherSettings, metrics: Metrics) -> Self {
        let (tx, rx) = mpsc::channel(settings.config.max_queue_size.max(1));
        let model_name = settings.model.clone();
        tokio::spawn(worker(model, settings, metrics, rx));
        Self { tx, model_name }
    }

    /// Requests waiting in the queue (not counting the batch being collected or run).
    pub fn queue_len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues `inputs` (already validated against the model) and waits for the outputs.
    /// The request is queued when this future is first polled; dropping the future later
    /// cancels it (it is skipped if its batch has not run yet).
    pub async fn infer(
        &self,
        inputs: Vec<Tensor>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Tensor>, InferError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            inputs,
            deadline,
            enqueued: Instant::now(),
            reply,
        };
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => InferError::QueueFull(self.model_name.clone()),
            mpsc::error::TrySendError::Closed(_) => InferError::ShuttingDown,
        })?;
        let wait = async { rx.await.unwrap_or(Err(InferError::ShuttingDown)) };
        match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), wait)
                .await
                .unwrap_or(Err(InferError::DeadlineExceeded)),
            None => wait.await,
        }
    }
}

async fn worker(
    model: Arc<dyn Model>,
    settings: BatcherSettings,
    metrics: Metrics,
    mut rx: mpsc::Receiver<Job>,
) {
    let labels = [settings.model.as_str(), settings.version.as_str()];
    let max_rows = settings
        .config
        .max_batch_size
        .max(1)
        .min(model.max_batch_size().unwrap_or(usize::MAX).max(1));
    let delay = Duration::from_micros(settings.config.max_queue_delay_us);
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        let mut rows = first.rows();
        let window_end = first.enqueued + delay;
        let mut batch = vec![first];
        while max_rows > 1 && rows < max_rows {
            // Take what is already queued; then wait for more until the window closes.
            let next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if Instant::now() >= window_end {
                        None
                    } else {
                        tokio::time::timeout_at(window_end.into(), rx.recv())
                            .await
                            .ok()
                            .flatten()
                    }
                }
            };
            let Some(job) = next else { break };
            if job.compatible(&batch[0]) && rows + job.rows() <= max_rows {
                rows += job.rows();
                batch.push(job);
            } else {
                held = Some(job);
                break;
            }
        }
        // Drop requests whose client went away or whose deadline passed.
        let now = Instant::now();
        let mut live = Vec::with_capacity(batch.len());
        for job in batch {
            if job.reply.is_closed() {
                continue;
            }
            if job.deadline.is_some_and(|d| d <= now) {
                let _ = job.reply.send(Err(InferError::DeadlineExceeded));
                continue;
            }
            metrics
                .queue_seconds
                .with_label_values(&labels)
                .observe(now.duration_since(job.enqueued).as_secs_f64());
            live.push(job);
        }
        if live.is_empty() {
            continue;
        }
        let total_rows: usize = live.iter().map(Job::rows).sum();
        metrics
            .batch_size
            .with_label_values(&labels)
            .observe(total_rows as f64);
        let model = model.clone();
        let started = Instant::now();
        let row_counts: Vec<usize> = live.iter().map(Job::rows).collect();
        let (replies, inputs): (Vec<Reply>, Vec<Vec<Tensor>>) =
            live.into_iter().map(|j| (j.reply, j.inputs)).unzip();
        let result = tokio::task::spawn_blocking(move || run_batch(&*model, inputs, &row_counts))
            .await
            .unwrap_or_else(|e| Err(InferError::Internal(format!("batch task failed: {e}"))));
        metrics
            .compute_seconds
            .with_label_values(&labels)
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(per_job) => {
                for (reply, outputs) in replies.into_iter().zip(per_job) {
                    let _ = reply.send(Ok(outputs));
                }
            }
            Err(err) => {
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
    tracing::debug!(model = %settings.model, version = %settings.version, "batch worker stopped");
}

/// Concatenates the jobs' inputs, runs the model once and splits every output by rows.
fn run_batch(
    model: &dyn Model,
    mut jobs: Vec<Vec<Tensor>>,
    row_counts: &[usize],
) -> Result<Vec<Vec<Tensor>>, InferError> {
    if jobs.len() == 1 {
        let inputs = jobs.pop().unwrap_or_default();
        return Ok(vec![model.run(inputs)?]);
    }
    let total: usize = row_counts.iter().sum();
    let mut merged = Vec::with_capacity(jobs[0].len());
    for (i, first) in jobs[0].iter().enumerate() {
        let parts: Vec<&TensorData> = jobs.iter().map(|j| &j[i].data).collect();
        let mut shape = first.shape.clone();
        if let Some(d) = shape.first_mut() {
            *d = total as i64;
        }
        merged.push(Tensor {
            name: first.name.clone(),
            shape,
            data: TensorData::concat(&parts)?,
        });
    }
    let outputs = model.run(merged)?;
    let mut per_job: Vec<Vec<Tensor>> = vec![Vec::with_capacity(outputs.len()); jobs.len()];
    for out in outputs {
        if out.shape.first().copied() != Some(total as i64) {
            return Err(InferError::Internal(format!(
                "output {} has shape {:?}, not batched along dimension 0",
                out.name, out.shape
            )));
        }
        let row_elems = out.shape[1..].iter().product::<i64>().max(0) as usize;
        let sizes: Vec<usize> = row_counts.iter().map(|r| r * row_elems).collect();
        for ((job, data), rows) in per_job
            .iter_mut()
            .zip(out.data.split(&sizes)?)
            .zip(row_counts)
        {
            let mut shape = out.shape.clone();
            shape[0] = *rows as i64;
            job.push(Tensor {
                name: out.name.clone(),
                shape,
                data,
            });
        }
    }
    Ok(per_job)
}

#[cfg(test)]
mod tests;
