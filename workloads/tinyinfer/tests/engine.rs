//! Engine tests against the real ONNX Runtime library and the generated test models
//! (`make ort-lib tinyinfer-models minilm-assets`): sessions, the dynamic batcher
//! (merging, splitting, cancellation) and the MiniLM tokenizer. The batcher's own logic is
//! unit-tested against a test double in `src/batcher/tests.rs`.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc};
use std::task::Poll;
use std::time::{Duration, Instant};

use oip::{DataType, Tensor, TensorData, TensorSpec};
use tinyinfer::batcher::{Batcher, BatcherSettings};
use tinyinfer::config::{BatchingConfig, Pooling, RuntimeOptions};
use tinyinfer::embedding::EmbeddingPipeline;
use tinyinfer::engine::Model;
use tinyinfer::error::InferError;
use tinyinfer::metrics::Metrics;
use tinyinfer::runtime::OrtModel;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

mod common;
use common::{cache, f32s, setup};

fn mlp_input(rows: usize, seed: f32) -> Vec<Tensor> {
    vec![Tensor {
        name: "input".into(),
        shape: vec![rows as i64, 16],
        data: TensorData::F32(
            (0..rows * 16)
                .map(|i| (i as f32 * 0.37 + seed).sin())
                .collect(),
        ),
    }]
}

#[test]
fn session_reports_io_and_runs() {
    let dir = setup();
    let model = OrtModel::load(&dir.join("mlp.onnx"), &RuntimeOptions::default()).unwrap();
    assert_eq!(model.inputs[0].shape, vec![-1, 16]);
    assert_eq!(model.outputs[0].datatype, DataType::F32);
    let out = model.run(mlp_input(3, 0.0)).unwrap();
    assert_eq!(out[0].shape, vec![3, 8]);
    let fixed = OrtModel::load(&dir.join("fixed.onnx"), &RuntimeOptions::default()).unwrap();
    assert_eq!(fixed.inputs[0].shape, vec![2, 4]);
}

#[test]
fn broken_model_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.onnx");
    std::fs::write(&path, b"not a model").unwrap();
    setup();
    assert!(OrtModel::load(&path, &RuntimeOptions::default()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batcher_merges_concurrent_requests_and_splits_results() {
    let dir = setup();
    let model =
        Arc::new(OrtModel::load(&dir.join("mlp.onnx"), &RuntimeOptions::default()).unwrap());
    let metrics = Metrics::new().unwrap();
    let batcher = Batcher::spawn(
        model.clone(),
        BatcherSettings {
            model: "mlp".into(),
            version: "1".into(),
            config: BatchingConfig {
                max_batch_size: 64,
                max_queue_delay_us: 50_000,
                ..BatchingConfig::default()
            },
        },
        metrics.clone(),
    );
    let mut tasks = Vec::new();
    for i in 0..12 {
        let b = batcher.clone();
        tasks.push(tokio::spawn(async move {
            b.infer(mlp_input(1 + i % 3, i as f32), None).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let got = task.await.unwrap().unwrap();
        let want = model.run(mlp_input(1 + i % 3, i as f32)).unwrap();
        assert_eq!(got[0].shape, want[0].shape);
        for (a, b) in f32s(&got[0]).iter().zip(f32s(&want[0])) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
    let hist = metrics.batch_size.with_label_values(&["mlp", "1"]);
    assert_eq!(
        hist.get_sample_sum() as usize,
        (0..12).map(|i| 1 + i % 3).sum::<usize>()
    );
    assert!(hist.get_sample_count() < 12, "requests were not merged");
}

/// An ONNX Runtime session that reports each run's rows as it starts and then waits for
/// the test to open the gate (drop the sender), so the test knows what is running.
struct Held {
    session: OrtModel,
    gate: Mutex<mpsc::Receiver<()>>,
    started: UnboundedSender<usize>,
}

impl Model for Held {
    fn inputs(&self) -> &[TensorSpec] {
        &self.session.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.session.outputs
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
        let rows = inputs.first().map_or(0, |t| t.shape[0] as usize);
        let _ = self.started.send(rows);
        if let Ok(gate) = self.gate.lock() {
            let _ = gate.recv();
        }
        Ok(self.session.run(inputs)?)
    }
}

type Pending = Pin<Box<dyn Future<Output = Result<Vec<Tensor>, InferError>> + Send>>;

/// Polls a request once, which queues it; returns what is left to await.
async fn queue(batcher: &Batcher, inputs: Vec<Tensor>, deadline: Option<Instant>) -> Pending {
    let b = batcher.clone();
    let mut fut: Pending = Box::pin(async move { b.infer(inputs, deadline).await });
    match futures::poll!(&mut fut) {
        Poll::Pending => fut,
        Poll::Ready(done) => Box::pin(std::future::ready(done)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_expired_requests_are_not_run() {
    let dir = setup();
    let (gate, waiting) = mpsc::channel::<()>();
    let (started_tx, mut started) = unbounded_channel();
    let model = Held {
        session: OrtModel::load(&dir.join("mlp.onnx"), &RuntimeOptions::default()).unwrap(),
        gate: Mutex::new(waiting),
        started: started_tx,
    };
    let metrics = Metrics::new().unwrap();
    let batcher = Batcher::spawn(
        Arc::new(model),
        BatcherSettings {
            model: "mlp".into(),
            version: "1".into(),
            config: BatchingConfig {
                max_batch_size: 8,
                max_queue_delay_us: 0,
                max_queue_size: 4,
                timeout_ms: 0,
            },
        },
        metrics.clone(),
    );
    // Hold the worker in a first run, so what follows is queued behind it.
    let b = batcher.clone();
    let first = tokio::spawn(async move { b.infer(mlp_input(1, 0.0), None).await });
    assert_eq!(started.recv().await, Some(1));
    // A client that gives up while its request is queued.
    drop(queue(&batcher, mlp_input(5, 0.0), None).await);
    // A client whose deadline passes while its request is queued.
    let deadline = Instant::now() + Duration::from_millis(20);
    let expired = queue(&batcher, mlp_input(1, 0.0), Some(deadline)).await;
    let live = queue(&batcher, mlp_input(2, 0.0), None).await;
    assert_eq!(batcher.queue_len(), 3);
    // Not a synchronisation: the deadline must be behind us before the batch is formed.
    tokio::time::sleep_until(deadline.into()).await;
    drop(gate);
    assert_eq!(first.await.unwrap().unwrap()[0].shape, vec![1, 8]);
    assert_eq!(expired.await.unwrap_err(), InferError::DeadlineExceeded);
    assert_eq!(live.await.unwrap()[0].shape, vec![2, 8]);
    // The three queued requests formed one batch; only the live one's 2 rows ran.
    assert_eq!(started.recv().await, Some(2));
    let hist = metrics.batch_size.with_label_values(&["mlp", "1"]);
    assert_eq!(hist.get_sample_count(), 2);
    assert_eq!(
        hist.get_sample_sum() as usize,
        1 + 2,
        "only live requests ran"
    );
}

#[test]
fn minilm_tokenizer_matches_bert_vocabulary() {
    setup();
    let dir = std::env::var_os("TINYINFER_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("minilm"));
    let model = OrtModel::load(&dir.join("model.onnx"), &RuntimeOptions::default()).unwrap();
    let pipeline = EmbeddingPipeline::new(
        &dir.join("tokenizer.json"),
        Pooling::Mean,
        8,
        &model.inputs,
        &model.outputs,
    )
    .unwrap();
    // bert-base-uncased ids: [CLS]=101, hello=7592, world=2088, [SEP]=102.
    assert_eq!(
        pipeline.token_ids("Hello world").unwrap(),
        vec![101, 7592, 2088, 102]
    );
    let long = pipeline.token_ids(&"word ".repeat(50)).unwrap();
    assert_eq!(long.len(), 8);
    assert_eq!(long.last(), Some(&102));
}

#[test]
fn cuda_request_falls_back_to_cpu_without_the_provider() {
    let dir = setup();
    let options = RuntimeOptions {
        execution_provider: tinyinfer::config::ExecutionProvider::Cuda,
        memory_arena: false,
        intra_op_threads: 1,
        graph_optimization: tinyinfer::config::OptLevel::Basic,
        ..RuntimeOptions::default()
    };
    // The CPU wheel's library has no CUDA provider: the model still loads and runs.
    let model = OrtModel::load(&dir.join("mlp.onnx"), &options).unwrap();
    assert_eq!(model.run(mlp_input(1, 0.5)).unwrap()[0].shape, vec![1, 8]);
}
