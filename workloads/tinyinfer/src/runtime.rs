//! ONNX Runtime: loads the shared library once per process (from `ORT_DYLIB_PATH` or
//! beside the binary), opens sessions with the configured options, and runs them on
//! tinyinfer [`Tensor`]s.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, TensorElementType, ValueType};

use crate::config::{ExecutionProvider, OptLevel, RuntimeOptions};
use oip::{DataType, Tensor, TensorData, TensorSpec};

use crate::engine::Model;
use crate::error::InferError;

/// Name of the library file looked for beside the binary.
pub const LIBRARY_NAMES: [&str; 2] = ["libonnxruntime.so", "libonnxruntime.so.1.32.0"];

/// Errors from ONNX Runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found at {path} ({origin}): set ORT_DYLIB_PATH to libonnxruntime.so.1.32.0 from the onnxruntime 1.32.0 wheel (`make ort-lib`) or place libonnxruntime.so beside the binary; in a pod, a volume mounted over that path hides a file the image carries there"
    )]
    LibraryMissing { path: String, origin: &'static str },
    #[error("cannot load ONNX Runtime: {0}")]
    LibraryLoad(String),
    #[error("cannot load model {path}: {message}")]
    Model { path: PathBuf, message: String },
    #[error("model uses {what}, which tinyinfer does not serve")]
    Unsupported { what: String },
    #[error("inference failed: {0}")]
    Run(String),
}

static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// Where the ONNX Runtime library will be loaded from.
pub fn library_path() -> PathBuf {
    library_location().0
}

/// The library's path and what chose it (for the error that says where it looked).
fn library_location() -> (PathBuf, &'static str) {
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH")
        && !p.trim().is_empty()
    {
        return (PathBuf::from(p), "from ORT_DYLIB_PATH");
    }
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let path = LIBRARY_NAMES
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| dir.join(LIBRARY_NAMES[0]));
    (path, "beside the binary")
}

/// Loads ONNX Runtime (once) and returns the process-wide environment.
pub fn environment() -> Result<Environment, RuntimeError> {
    let mut guard = ENVIRONMENT
        .lock()
        .map_err(|_| RuntimeError::LibraryLoad("environment lock poisoned".into()))?;
    if let Some(env) = guard.as_ref() {
        return Ok(env.clone());
    }
    let (path, origin) = library_location();
    if !path.is_file() {
        return Err(RuntimeError::LibraryMissing {
            path: path.display().to_string(),
            origin,
        });
    }
    let path = std::fs::canonicalize(&path)
        .map_err(|e| RuntimeError::LibraryLoad(format!("{}: {e}", path.display())))?;
    let env = ort::init_from(&path)
        .map_err(|e| RuntimeError::LibraryLoad(e.to_string()))?
        .with_name("tinyinfer")
        .with_telemetry(false)
        .build()
        .map_err(|e| RuntimeError::LibraryLoad(e.to_string()))?;
    tracing::info!(library = %path.display(), "ONNX Runtime loaded");
    *guard = Some(env.clone());
    Ok(env)
}

/// An open ONNX Runtime session.
pub struct OrtModel {
    session: Mutex<Session>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

fn datatype_of(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::U8,
        TensorElementType::Uint16 => DataType::U16,
        TensorElementType::Uint32 => DataType::U32,
        TensorElementType::Uint64 => DataType::U64,
        TensorElementType::Int8 => DataType::I8,
        TensorElementType::Int16 => DataType::I16,
        TensorElementType::Int32 => DataType::I32,
        TensorElementType::Int64 => DataType::I64,
        TensorElementType::Float16 => DataType::F16,
        TensorElementType::Float32 => DataType::F32,
        TensorElementType::Float64 => DataType::F64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

fn spec_of(name: &str, ty: &ValueType) -> Result<TensorSpec, RuntimeError> {
    let unsupported = || RuntimeError::Unsupported {
        what: format!("{name}: {ty:?}"),
    };
    let ValueType::Tensor {
        ty: elem, shape, ..
    } = ty
    else {
        return Err(unsupported());
    };
    Ok(TensorSpec {
        name: name.to_owned(),
        datatype: datatype_of(*elem).ok_or_else(unsupported)?,
        shape: shape.iter().map(|d| if *d < 0 { -1 } else { *d }).collect(),
    })
}

fn opt_level(level: OptLevel) -> GraphOptimizationLevel {
    match level {
        OptLevel::Disable => GraphOptimizationLevel::Disable,
        OptLevel::Basic => GraphOptimizationLevel::Level1,
        OptLevel::Extended => GraphOptimizationLevel::Level2,
        OptLevel::All => GraphOptimizationLevel::All,
    }
}

impl OrtModel {
    /// Opens the model at `path` with `options`.
    pub fn load(path: &Path, options: &RuntimeOptions) -> Result<Self, RuntimeError> {
        let env = environment()?;
        let model_err = |e: ort::Error| RuntimeError::Model {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut builder = Session::builder(&env)
            .map_err(model_err)?
            .with_optimization_level(opt_level(options.graph_optimization))
            .map_err(|e| model_err(e.into()))?;
        if options.intra_op_threads > 0 {
            builder = builder
                .with_intra_threads(options.intra_op_threads)
                .map_err(|e| model_err(e.into()))?;
        }
        if options.inter_op_threads > 0 {
            builder = builder
                .with_inter_threads(options.inter_op_threads)
                .map_err(|e| model_err(e.into()))?;
        }
        let mut eps = Vec::new();
        if options.execution_provider == ExecutionProvider::Cuda {
            use ort::ep::ExecutionProvider as _;
            if ort::ep::CUDA::is_available().unwrap_or(false) {
                eps.push(ort::ep::CUDA::default().build());
            } else {
                tracing::warn!(
                    model = %path.display(),
                    "CUDA requested but this ONNX Runtime has no CUDA provider; running on CPU"
                );
            }
        }
        eps.push(
            ort::ep::CPU::default()
                .with_arena_allocator(options.memory_arena)
                .build(),
        );
        builder = builder
            .with_execution_providers(eps)
            .map_err(|e| model_err(e.into()))?;
        let session = builder.commit_from_file(path).map_err(model_err)?;
        let inputs = session
            .inputs()
            .iter()
            .map(|o| spec_of(o.name(), o.dtype()))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = session
            .outputs()
            .iter()
            .map(|o| spec_of(o.name(), o.dtype()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            session: Mutex::new(session),
            inputs,
            outputs,
        })
    }

    /// Runs the graph. `inputs` must match [`OrtModel::inputs`] by name; every output is
    /// returned, in [`OrtModel::outputs`] order.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        let mut values: Vec<(String, DynValue)> = Vec::with_capacity(inputs.len());
        for t in inputs {
            values.push((t.name, to_value(t.shape, t.data)?));
        }
        let mut session = self
            .session
            .lock()
            .map_err(|_| RuntimeError::Run("session lock poisoned".into()))?;
        let outputs = session
            .run(values)
            .map_err(|e| RuntimeError::Run(e.to_string()))?;
        let mut result = Vec::with_capacity(self.outputs.len());
        for spec in &self.outputs {
            let value = outputs
                .get(&spec.name)
                .ok_or_else(|| RuntimeError::Run(format!("output {} missing", spec.name)))?;
            result.push(from_value(&spec.name, value)?);
        }
        Ok(result)
    }
}

fn to_value(shape: Vec<i64>, data: TensorData) -> Result<DynValue, RuntimeError> {
    use ort::value::Tensor as OrtTensor;
    let run_err = |e: ort::Error| RuntimeError::Run(e.to_string());
    macro_rules! prim {
        ($v:expr) => {
            OrtTensor::from_array((shape, $v))
                .map_err(run_err)?
                .into_dyn()
        };
    }
    Ok(match data {
        TensorData::Bool(v) => prim!(v),
        TensorData::U8(v) => prim!(v),
        TensorData::U16(v) => prim!(v),
        TensorData::U32(v) => prim!(v),
        TensorData::U64(v) => prim!(v),
        TensorData::I8(v) => prim!(v),
        TensorData::I16(v) => prim!(v),
        TensorData::I32(v) => prim!(v),
        TensorData::I64(v) => prim!(v),
        TensorData::F16(v) => prim!(v),
        TensorData::F32(v) => prim!(v),
        TensorData::F64(v) => prim!(v),
        TensorData::Bytes(v) => {
            let strings = v
                .into_iter()
                .map(String::from_utf8)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| RuntimeError::Run("BYTES input is not valid UTF-8".into()))?;
            OrtTensor::from_string_array((shape, &strings[..]))
                .map_err(run_err)?
                .into_dyn()
        }
    })
}

fn from_value(name: &str, value: &DynValue) -> Result<Tensor, RuntimeError> {
    let run_err = |e: ort::Error| RuntimeError::Run(format!("output {name}: {e}"));
    let elem = value
        .dtype()
        .tensor_type()
        .ok_or_else(|| RuntimeError::Unsupported {
            what: format!("non-tensor output {name}"),
        })?;
    macro_rules! prim {
        ($t:ty, $variant:ident) => {{
            let (shape, data) = value.try_extract_tensor::<$t>().map_err(run_err)?;
            (shape.to_vec(), TensorData::$variant(data.to_vec()))
        }};
    }
    let (shape, data) = match elem {
        TensorElementType::Bool => prim!(bool, Bool),
        TensorElementType::Uint8 => prim!(u8, U8),
        TensorElementType::Uint16 => prim!(u16, U16),
        TensorElementType::Uint32 => prim!(u32, U32),
        TensorElementType::Uint64 => prim!(u64, U64),
        TensorElementType::Int8 => prim!(i8, I8),
        TensorElementType::Int16 => prim!(i16, I16),
        TensorElementType::Int32 => prim!(i32, I32),
        TensorElementType::Int64 => prim!(i64, I64),
        TensorElementType::Float16 => prim!(half::f16, F16),
        TensorElementType::Float32 => prim!(f32, F32),
        TensorElementType::Float64 => prim!(f64, F64),
        TensorElementType::String => {
            let (shape, strings) = value.try_extract_strings().map_err(run_err)?;
            (
                shape.to_vec(),
                TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()),
            )
        }
        other => {
            return Err(RuntimeError::Unsupported {
                what: format!("output {name} of type {other:?}"),
            });
        }
    };
    Ok(Tensor {
        name: name.to_owned(),
        shape,
        data,
    })
}

impl Model for OrtModel {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
        OrtModel::run(self, inputs).map_err(InferError::from)
    }
}
