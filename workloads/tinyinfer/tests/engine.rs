//! Engine tests against the real ONNX Runtime library and the generated test models
//! (`make ort-lib tinyinfer-models minilm-assets`): sessions, the dynamic batcher
//! (merging, splitting, cancellation) and the MiniLM tokenizer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tinyinfer::batcher::{Batcher, BatcherSettings};
use tinyinfer::config::{BatchingConfig, Pooling, RuntimeOptions};
use tinyinfer::embedding::EmbeddingPipeline;
use tinyinfer::error::InferError;
use tinyinfer::metrics::Metrics;
use tinyinfer::runtime::OrtModel;
use tinyinfer::tensor::{DataType, Tensor, TensorData};

fn cache() -> PathBuf {
    std::env::var_os("CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/modelhub")))
        .unwrap_or_default()
        .join("tinyinfer")
}

static ENV: std::sync::Once = std::sync::Once::new();

fn setup() -> PathBuf {
    ENV.call_once(|| {
        if std::env::var_os("ORT_DYLIB_PATH").is_none() {
            let lib = cache().join("ort-1.32.0/libonnxruntime.so.1.32.0");
            // SAFETY: runs once, before any test reads the variable (ONNX Runtime is
            // loaded only after setup returns).
            unsafe { std::env::set_var("ORT_DYLIB_PATH", lib) };
        }
    });
    let dir = std::env::var_os("TINYINFER_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("models"));
    assert!(
        dir.join("mlp.onnx").is_file(),
        "test models missing in {}: run `make tinyinfer-models`",
        dir.display()
    );
    dir
}

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

fn f32s(t: &Tensor) -> &[f32] {
    match &t.data {
        TensorData::F32(v) => v,
        other => panic!("expected FP32, got {:?}", other.datatype()),
    }
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
            batchable: true,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_expired_requests_are_not_run() {
    let dir = setup();
    let model =
        Arc::new(OrtModel::load(&dir.join("mlp.onnx"), &RuntimeOptions::default()).unwrap());
    let metrics = Metrics::new().unwrap();
    let batcher = Batcher::spawn(
        model,
        BatcherSettings {
            model: "mlp".into(),
            version: "1".into(),
            config: BatchingConfig {
                max_batch_size: 8,
                max_queue_delay_us: 200_000,
                max_queue_size: 2,
                timeout_ms: 0,
            },
            batchable: true,
        },
        metrics.clone(),
    );
    // A client that gives up: its request is dropped before the batch runs.
    let b = batcher.clone();
    let cancelled = tokio::spawn(async move { b.infer(mlp_input(5, 0.0), None).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    cancelled.abort();
    let expired = batcher
        .infer(
            mlp_input(1, 0.0),
            Some(Instant::now() + Duration::from_millis(10)),
        )
        .await;
    assert_eq!(expired.unwrap_err(), InferError::DeadlineExceeded);
    let ok = batcher.infer(mlp_input(2, 0.0), None).await.unwrap();
    assert_eq!(ok[0].shape, vec![2, 8]);
    let hist = metrics.batch_size.with_label_values(&["mlp", "1"]);
    assert_eq!(
        hist.get_sample_sum() as usize,
        2,
        "only the live request ran"
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
