//! The INT8 dynamic quantization pass against the real ONNX Runtime: the generated test
//! MLP and BERT-sized encoder (`make ort-lib tinyinfer-models`) are quantized, opened in a
//! session, and their outputs compared with the FP32 graph's.

use oip::{Tensor, TensorData};
use tinyinfer::config::{Quantization, RuntimeOptions};
use tinyinfer::engine::Model;
use tinyinfer::quantize::{QuantizeOptions, quantize_cached};
use tinyinfer::runtime::OrtModel;

mod common;
use common::{f32s, setup};

#[tokio::test]
async fn quantized_mlp_loads_in_onnx_runtime_and_stays_close() {
    let dir = setup();
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("mlp.onnx");
    std::fs::copy(dir.join("mlp.onnx"), &original).unwrap();
    let runtime = RuntimeOptions {
        quantization: Quantization::Int8Dynamic,
        intra_op_threads: 1,
        ..RuntimeOptions::default()
    };
    let q = quantize_cached(
        &original,
        work.path(),
        &QuantizeOptions::from_runtime(&runtime),
    )
    .unwrap();
    let report = q.report.unwrap();
    assert!(!report.quantized.is_empty(), "{report:?}");
    let fp32 = OrtModel::load(&original, &runtime).unwrap();
    let int8 = OrtModel::load(&q.path, &runtime).unwrap();
    assert_eq!(fp32.inputs(), int8.inputs());
    let input = Tensor {
        name: fp32.inputs()[0].name.clone(),
        shape: vec![4, 16],
        data: TensorData::F32((0..64).map(|i| (i as f32 * 0.37).sin()).collect()),
    };
    let a = fp32.run(vec![input.clone()]).unwrap();
    let b = int8.run(vec![input]).unwrap();
    let (a, b) = (f32s(&a[0]), f32s(&b[0]));
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err / scale < 0.05,
        "max error {err} against max |y| {scale}"
    );
}

#[tokio::test]
async fn quantized_bert_encoder_loads_and_keeps_token_states_aligned() {
    let dir = setup();
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("bert.onnx");
    std::fs::copy(dir.join("bert.onnx"), &original).unwrap();
    let runtime = RuntimeOptions {
        quantization: Quantization::Int8Dynamic,
        ..RuntimeOptions::default()
    };
    let q = quantize_cached(
        &original,
        work.path(),
        &QuantizeOptions::from_runtime(&runtime),
    )
    .unwrap();
    let report = q.report.unwrap();
    // 2 layers x (q, k, v, o, ffn1, ffn2), each with its bias Add folded in.
    assert_eq!(report.quantized.len(), 12, "{report:?}");
    assert_eq!(report.folded_bias, 12);
    assert!(
        std::fs::metadata(&q.path).unwrap().len() < std::fs::metadata(&original).unwrap().len()
    );
    let fp32 = OrtModel::load(&original, &runtime).unwrap();
    let int8 = OrtModel::load(&q.path, &runtime).unwrap();
    let (batch, seq) = (2usize, 16usize);
    let inputs = vec![
        Tensor {
            name: "input_ids".into(),
            shape: vec![batch as i64, seq as i64],
            data: TensorData::I64((0..batch * seq).map(|i| (i * 37 % 8000) as i64).collect()),
        },
        Tensor {
            name: "attention_mask".into(),
            shape: vec![batch as i64, seq as i64],
            data: TensorData::I64(vec![1; batch * seq]),
        },
    ];
    let a = fp32.run(inputs.clone()).unwrap();
    let b = int8.run(inputs).unwrap();
    let (a, b) = (f32s(&a[0]), f32s(&b[0]));
    assert_eq!(a.len(), b.len());
    // Cosine similarity of every token's hidden state.
    for (x, y) in a.chunks(768).zip(b.chunks(768)) {
        let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
        let norm = |v: &[f32]| v.iter().map(|p| p * p).sum::<f32>().sqrt();
        let cosine = dot / (norm(x) * norm(y));
        assert!(cosine > 0.99, "token cosine {cosine}");
    }
}

#[tokio::test]
async fn a_served_int8_model_reports_its_precision_and_a_corrupt_one_fails_with_the_reason() {
    use tinyinfer::config::ModelConfig;
    use tinyinfer::metrics::Metrics;
    use tinyinfer::model::ServedModel;
    use tinyinfer::storage::Storage;
    let dir = setup();
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("mlp.onnx");
    std::fs::copy(dir.join("mlp.onnx"), &original).unwrap();
    let storage = Storage::new(work.path().join("cache"), 1 << 30);
    let metrics = Metrics::new().unwrap();
    let mut config = ModelConfig::new("mlp".into(), original.display().to_string());
    config.runtime.quantization = Quantization::Int8Dynamic;
    let served = ServedModel::load(config.clone(), &storage, metrics.clone())
        .await
        .unwrap();
    assert_eq!(served.precision, Quantization::Int8Dynamic);
    assert_eq!(
        metrics
            .precision
            .with_label_values(&["mlp", "1", "int8-dynamic"])
            .get(),
        1
    );
    let corrupt = work.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"\xff\xff\xffnot a model").unwrap();
    config.uri = corrupt.display().to_string();
    let err = ServedModel::load(config, &storage, metrics)
        .await
        .err()
        .unwrap();
    assert!(err.contains("int8-dynamic quantization of"), "{err}");
    assert!(err.contains("not a valid ONNX model"), "{err}");
}

#[tokio::test]
async fn the_precision_series_lists_only_loaded_versions() {
    use tinyinfer::config::ModelConfig;
    use tinyinfer::metrics::Metrics;
    use tinyinfer::repository::Repository;
    use tinyinfer::storage::Storage;
    let dir = setup();
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("mlp.onnx");
    std::fs::copy(dir.join("mlp.onnx"), &original).unwrap();
    let metrics = Metrics::new().unwrap();
    let repo = Repository::new(
        Storage::new(work.path().join("cache"), 1 << 30),
        metrics.clone(),
    );
    let series = || {
        metrics
            .registry
            .gather()
            .iter()
            .filter(|f| f.name() == "tinyinfer_model_precision")
            .map(|f| f.get_metric().len())
            .sum::<usize>()
    };
    let mut config = ModelConfig::new("mlp".into(), original.display().to_string());
    config.runtime.quantization = Quantization::Int8Dynamic;
    repo.load(config.clone()).await.unwrap();
    assert_eq!(series(), 1, "int8-dynamic served");
    // Reloaded at FP32: the int8 series goes, the none series comes.
    config.runtime.quantization = Quantization::None;
    repo.load(config).await.unwrap();
    assert_eq!(
        metrics
            .precision
            .with_label_values(&["mlp", "1", "none"])
            .get(),
        1
    );
    assert_eq!(series(), 1, "only the precision now served");
    repo.unload("mlp").unwrap();
    assert_eq!(series(), 0, "nothing loaded, nothing listed");
}
