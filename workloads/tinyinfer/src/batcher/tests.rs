//! Batcher behaviour against a test double instead of ONNX Runtime. The double reports
//! every run it starts and can hold it until the test releases it, so each test knows
//! which requests are queued and which batch is running: nothing depends on timing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::mpsc as std_mpsc;
use std::task::Poll;

use oip::{DataType, TensorSpec};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::*;

const MODEL: &str = "double";

/// Adds 1 to every element of input `x` ([rows, 2] FP32) and returns it as `y`.
struct TestModel {
    specs: Vec<TensorSpec>,
    out_specs: Vec<TensorSpec>,
    limit: Option<usize>,
    fail: bool,
    /// Each run takes one permit; once the sender is dropped every run passes.
    permits: Mutex<std_mpsc::Receiver<()>>,
    /// The row count of every run, sent as the run starts.
    started: UnboundedSender<usize>,
}

fn spec(name: &str) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype: DataType::F32,
        shape: vec![-1, 2],
    }
}

impl Model for TestModel {
    fn inputs(&self) -> &[TensorSpec] {
        &self.specs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.out_specs
    }

    fn max_batch_size(&self) -> Option<usize> {
        self.limit
    }

    fn run(&self, mut inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
        let x = inputs
            .pop()
            .ok_or_else(|| InferError::Internal("no input".into()))?;
        let rows = usize::try_from(x.shape[0]).unwrap_or(0);
        let _ = self.started.send(rows);
        if let Ok(permits) = self.permits.lock() {
            // Err: the test opened the gate for good.
            let _ = permits.recv();
        }
        if self.fail {
            return Err(InferError::Internal("model failed".into()));
        }
        let TensorData::F32(v) = x.data else {
            return Err(InferError::Internal("not FP32".into()));
        };
        Ok(vec![Tensor {
            name: "y".into(),
            shape: x.shape,
            data: TensorData::F32(v.into_iter().map(|e| e + 1.0).collect()),
        }])
    }
}

struct Harness {
    batcher: Batcher,
    metrics: Metrics,
    /// `None` once the gate is open.
    gate: Option<std_mpsc::Sender<()>>,
    started: UnboundedReceiver<usize>,
    /// Runs already taken from `started`.
    seen: Vec<usize>,
}

struct Setup {
    config: BatchingConfig,
    limit: Option<usize>,
    fail: bool,
    held: bool,
}

impl Harness {
    fn new(s: Setup) -> Self {
        let (gate, permits) = std_mpsc::channel();
        let (started_tx, started) = unbounded_channel();
        let model = TestModel {
            specs: vec![spec("x")],
            out_specs: vec![spec("y")],
            limit: s.limit,
            fail: s.fail,
            permits: Mutex::new(permits),
            started: started_tx,
        };
        let metrics = Metrics::new().unwrap();
        let batcher = Batcher::spawn(
            Arc::new(model),
            BatcherSettings {
                model: MODEL.into(),
                version: "1".into(),
                config: s.config,
            },
            metrics.clone(),
        );
        Self {
            batcher,
            metrics,
            gate: s.held.then_some(gate),
            started,
            seen: Vec::new(),
        }
    }

    /// Starts a request that the test does not poll itself and waits until the model is
    /// running it (held, when the gate is closed): the queue behind it is then empty.
    async fn occupy(
        &mut self,
        rows: usize,
    ) -> tokio::task::JoinHandle<Result<Vec<Tensor>, InferError>> {
        let b = self.batcher.clone();
        let task = tokio::spawn(async move { b.infer(input(rows, 100.0), None).await });
        assert_eq!(self.started.recv().await, Some(rows));
        self.seen.push(rows);
        task
    }

    /// Lets every held and future run proceed.
    fn open(&mut self) {
        self.gate = None;
    }

    /// The row counts of the runs started so far (the model has returned or is held).
    fn runs(&mut self) -> Vec<usize> {
        while let Ok(rows) = self.started.try_recv() {
            self.seen.push(rows);
        }
        self.seen.clone()
    }

    fn batch_sizes(&self) -> (u64, f64) {
        let h = self.metrics.batch_size.with_label_values(&[MODEL, "1"]);
        (h.get_sample_count(), h.get_sample_sum())
    }
}

fn config(max_batch_size: usize, max_queue_delay_us: u64, max_queue_size: usize) -> BatchingConfig {
    BatchingConfig {
        max_batch_size,
        max_queue_delay_us,
        max_queue_size,
        timeout_ms: 0,
    }
}

fn input(rows: usize, seed: f32) -> Vec<Tensor> {
    vec![Tensor {
        name: "x".into(),
        shape: vec![rows as i64, 2],
        data: TensorData::F32((0..rows * 2).map(|i| seed + i as f32).collect()),
    }]
}

fn expected(rows: usize, seed: f32) -> Vec<Tensor> {
    vec![Tensor {
        name: "y".into(),
        shape: vec![rows as i64, 2],
        data: TensorData::F32((0..rows * 2).map(|i| seed + i as f32 + 1.0).collect()),
    }]
}

type Pending = Pin<Box<dyn Future<Output = Result<Vec<Tensor>, InferError>> + Send>>;

/// Queues a request: the first poll of `infer` enqueues it, so it is in the queue (or
/// done, if the model is not held and already answered) when this returns.
async fn queue(batcher: &Batcher, rows: usize, seed: f32, deadline: Option<Instant>) -> Pending {
    let b = batcher.clone();
    let mut fut: Pending = Box::pin(async move { b.infer(input(rows, seed), deadline).await });
    match futures::poll!(&mut fut) {
        Poll::Pending => fut,
        Poll::Ready(done) => Box::pin(std::future::ready(done)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_queued_requests_up_to_the_max_batch_size_and_splits_results() {
    let mut h = Harness::new(Setup {
        config: config(4, 0, 64),
        limit: None,
        fail: false,
        held: true,
    });
    let first = h.occupy(1).await;
    let rows = [1, 1, 2, 1, 3, 1];
    let mut pending = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        pending.push(queue(&h.batcher, *r, i as f32 * 10.0, None).await);
    }
    assert_eq!(h.batcher.queue_len(), rows.len());
    h.open();
    assert_eq!(first.await.unwrap().unwrap(), expected(1, 100.0));
    for (i, (fut, r)) in pending.into_iter().zip(rows).enumerate() {
        assert_eq!(
            fut.await.unwrap(),
            expected(r, i as f32 * 10.0),
            "request {i}"
        );
    }
    // 1 + 1 + 2 fill a batch of 4; 3 does not fit beside 1 + 1 + 2, so 1 + 3; then 1.
    assert_eq!(h.runs(), vec![1, 4, 4, 1]);
    assert_eq!(h.batch_sizes(), (4, 10.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_limit_caps_the_configured_batch_size() {
    let mut h = Harness::new(Setup {
        config: config(8, 0, 64),
        limit: Some(2),
        fail: false,
        held: true,
    });
    let first = h.occupy(1).await;
    let mut pending = Vec::new();
    for i in 0..3 {
        pending.push(queue(&h.batcher, 1, i as f32, None).await);
    }
    h.open();
    first.await.unwrap().unwrap();
    for fut in pending {
        fut.await.unwrap();
    }
    assert_eq!(h.runs(), vec![1, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_company_within_the_queue_delay() {
    // A delay far longer than the test: the batch runs because it filled up.
    let mut h = Harness::new(Setup {
        config: config(2, 600_000_000, 64),
        limit: None,
        fail: false,
        held: false,
    });
    let early = queue(&h.batcher, 1, 0.0, None).await;
    // Wait until the worker has taken the request and is collecting a batch around it.
    while h.batcher.queue_len() > 0 {
        tokio::task::yield_now().await;
    }
    let late = queue(&h.batcher, 1, 5.0, None).await;
    assert_eq!(early.await.unwrap(), expected(1, 0.0));
    assert_eq!(late.await.unwrap(), expected(1, 5.0));
    assert_eq!(
        h.runs(),
        vec![2],
        "the late request joined the early one's batch"
    );

    // With a short delay a lone request runs without a full batch.
    let mut h = Harness::new(Setup {
        config: config(8, 1_000, 64),
        limit: None,
        fail: false,
        held: false,
    });
    let lone = h.batcher.infer(input(3, 1.0), None).await.unwrap();
    assert_eq!(lone, expected(3, 1.0));
    assert_eq!(h.runs(), vec![3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_with_a_clear_error() {
    let mut h = Harness::new(Setup {
        config: config(1, 0, 2),
        limit: None,
        fail: false,
        held: true,
    });
    let first = h.occupy(1).await;
    let a = queue(&h.batcher, 1, 1.0, None).await;
    let b = queue(&h.batcher, 1, 2.0, None).await;
    let refused = h.batcher.infer(input(1, 3.0), None).await.unwrap_err();
    assert_eq!(refused, InferError::QueueFull(MODEL.into()));
    assert_eq!(refused.to_string(), "queue of model double is full");
    assert_eq!(refused.http_status(), 429);
    h.open();
    first.await.unwrap().unwrap();
    assert_eq!(a.await.unwrap(), expected(1, 1.0));
    assert_eq!(b.await.unwrap(), expected(1, 2.0));
    assert_eq!(h.runs(), vec![1, 1, 1], "the refused request never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_expired_requests_are_not_run() {
    let mut h = Harness::new(Setup {
        config: config(16, 0, 64),
        limit: None,
        fail: false,
        held: true,
    });
    let first = h.occupy(1).await;
    // A client that gives up while its request is queued.
    drop(queue(&h.batcher, 2, 0.0, None).await);
    // A client still waiting whose deadline passes while it is queued.
    let deadline = Instant::now() + Duration::from_millis(20);
    let expired = queue(&h.batcher, 3, 0.0, Some(deadline)).await;
    let live = queue(&h.batcher, 4, 7.0, None).await;
    assert_eq!(h.batcher.queue_len(), 3);
    // Not a synchronisation: the deadline must be behind us before the batch is formed.
    tokio::time::sleep_until(deadline.into()).await;
    assert!(Instant::now() >= deadline);
    h.open();
    first.await.unwrap().unwrap();
    assert_eq!(expired.await.unwrap_err(), InferError::DeadlineExceeded);
    assert_eq!(live.await.unwrap(), expected(4, 7.0));
    // The 2-, 3- and 4-row requests formed one batch; only the live one reached the model.
    assert_eq!(h.runs(), vec![1, 4]);
    assert_eq!(h.batch_sizes(), (2, 5.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_fails_every_request_of_its_batch() {
    let mut h = Harness::new(Setup {
        config: config(8, 0, 64),
        limit: None,
        fail: true,
        held: true,
    });
    let first = h.occupy(1).await;
    let mut pending = Vec::new();
    for (i, rows) in [1, 2, 1].into_iter().enumerate() {
        pending.push(queue(&h.batcher, rows, i as f32, None).await);
    }
    h.open();
    let failed = InferError::Internal("model failed".into());
    assert_eq!(first.await.unwrap().unwrap_err(), failed);
    for fut in pending {
        assert_eq!(fut.await.unwrap_err(), failed);
    }
    assert_eq!(
        h.runs(),
        vec![1, 4],
        "the three requests failed as one batch"
    );
}

/// A model with a fixed first dimension: only the trait's defaults.
struct Fixed(Vec<TensorSpec>);

impl Model for Fixed {
    fn inputs(&self) -> &[TensorSpec] {
        &self.0
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.0
    }
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
        Ok(inputs)
    }
}

#[test]
fn models_batch_by_default_only_with_a_dynamic_first_dimension() {
    let fixed = Fixed(vec![TensorSpec {
        name: "x".into(),
        datatype: DataType::F32,
        shape: vec![2, 4],
    }]);
    assert_eq!(fixed.max_batch_size(), Some(1));
    let dynamic = Fixed(vec![spec("x")]);
    assert_eq!(dynamic.max_batch_size(), None);
}
