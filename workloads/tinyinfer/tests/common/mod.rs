//! What the integration tests share: where the ONNX Runtime library and the generated
//! test models are (`make ort-lib tinyinfer-models`), and FP32 outputs.

use std::path::PathBuf;

use oip::{Tensor, TensorData};

pub fn cache() -> PathBuf {
    std::env::var_os("CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/modelhub")))
        .unwrap_or_default()
        .join("tinyinfer")
}

static ENV: std::sync::Once = std::sync::Once::new();

/// Points ONNX Runtime at the cached library (unless ORT_DYLIB_PATH is set) and returns
/// the test models' directory.
pub fn setup() -> PathBuf {
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

pub fn f32s(t: &Tensor) -> &[f32] {
    match &t.data {
        TensorData::F32(v) => v,
        other => panic!("expected FP32, got {:?}", other.datatype()),
    }
}
