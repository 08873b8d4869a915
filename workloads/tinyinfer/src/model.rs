//! A served model version: its ONNX Runtime session, its batch queue, the optional text
//! embedding pipeline, and the checks that turn a protocol request into validated inputs.

use std::sync::Arc;
use std::time::Instant;

use oip::{Tensor, TensorSpec};

use crate::batcher::{Batcher, BatcherSettings};
use crate::config::{ModelConfig, Quantization};
use crate::embedding::EmbeddingPipeline;
use crate::engine::Model;
use crate::error::InferError;
use crate::metrics::Metrics;
use crate::quantize::{self, QuantizeOptions};
use crate::runtime::OrtModel;
use crate::storage::Storage;

/// A decoded inference request, independent of REST or gRPC.
#[derive(Debug, Default)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Output names asked for; empty means every output.
    pub outputs: Vec<String>,
    pub deadline: Option<Instant>,
}

impl From<oip::InferRequest> for InferRequest {
    /// The protocol's `timeout` becomes a deadline counted from now (decoding time).
    fn from(r: oip::InferRequest) -> Self {
        Self {
            id: r.id,
            inputs: r.inputs,
            outputs: r.outputs,
            deadline: r.timeout.map(|t| Instant::now() + t),
        }
    }
}

/// A model version that loaded and can serve requests.
pub struct ServedModel {
    pub config: ModelConfig,
    /// The precision being served (the graph was rewritten when it is not `None`).
    pub precision: Quantization,
    /// What clients send (the embedding pipeline's `text` for tokenizer models).
    pub inputs: Vec<TensorSpec>,
    /// What clients get back.
    pub outputs: Vec<TensorSpec>,
    /// The graph's own inputs (what the batcher receives).
    graph_inputs: Vec<TensorSpec>,
    batchable: bool,
    batcher: Batcher,
    pipeline: Option<EmbeddingPipeline>,
}

impl ServedModel {
    /// Fetches the model file (and tokenizer), opens the session and starts its batcher.
    pub async fn load(
        config: ModelConfig,
        storage: &Storage,
        metrics: Metrics,
    ) -> Result<Self, String> {
        let path = storage
            .resolve(&config.uri, config.sha256.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        let tokenizer_path = match &config.tokenizer {
            Some(uri) => Some(
                storage
                    .resolve(uri, None)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let options = config.runtime.clone();
        let precision = options.quantization;
        let cache_dir = storage.cache_dir.clone();
        let engine = tokio::task::spawn_blocking(move || load_engine(&path, &cache_dir, &options))
            .await
            .map_err(|e| format!("load task failed: {e}"))??;
        let engine: Arc<dyn Model> = Arc::new(engine);
        let batchable = engine.max_batch_size() != Some(1);
        let pipeline = match tokenizer_path {
            Some(p) => Some(EmbeddingPipeline::new(
                &p,
                config.pooling.unwrap_or_default(),
                config.max_tokens,
                engine.inputs(),
                engine.outputs(),
            )?),
            None => None,
        };
        let (inputs, outputs) = match &pipeline {
            Some(p) => (vec![p.input_spec()], p.output_specs()),
            None => (engine.inputs().to_vec(), engine.outputs().to_vec()),
        };
        metrics
            .precision
            .with_label_values(&[&config.name, &config.version, precision.as_str()])
            .set(1);
        let batcher = Batcher::spawn(
            engine.clone(),
            BatcherSettings {
                model: config.name.clone(),
                version: config.version.clone(),
                config: config.batching.clone(),
            },
            metrics,
        );
        tracing::info!(
            model = %config.name,
            version = %config.version,
            batchable,
            max_batch_size = config.batching.max_batch_size,
            embedding = pipeline.is_some(),
            precision = precision.as_str(),
            "model ready"
        );
        Ok(Self {
            config,
            precision,
            inputs,
            outputs,
            graph_inputs: engine.inputs().to_vec(),
            batchable,
            batcher,
            pipeline,
        })
    }

    /// Whether requests to this model are concatenated with others.
    pub fn batchable(&self) -> bool {
        self.batchable
    }

    /// Validates `request`, runs it (batched with others where possible) and returns the
    /// requested outputs in the model's output order.
    pub async fn infer(&self, request: InferRequest) -> Result<Vec<Tensor>, InferError> {
        for name in &request.outputs {
            if !self.outputs.iter().any(|o| &o.name == name) {
                return Err(InferError::BadRequest(format!(
                    "unknown output {name:?} for model {}",
                    self.config.name
                )));
            }
        }
        let inputs = check_inputs(&self.config.name, &self.inputs, request.inputs)?;
        let deadline = request.deadline.or_else(|| {
            (self.config.batching.timeout_ms > 0).then(|| {
                Instant::now() + std::time::Duration::from_millis(self.config.batching.timeout_ms)
            })
        });
        let outputs = match &self.pipeline {
            Some(p) => {
                let (graph_inputs, encoded) = p.encode(&inputs[0])?;
                let graph_inputs =
                    check_inputs(&self.config.name, &self.graph_inputs, graph_inputs)?;
                let wants_ids = request.outputs.is_empty()
                    || request
                        .outputs
                        .iter()
                        .any(|o| o == crate::embedding::IDS_OUTPUT);
                let ids = if wants_ids {
                    p.ids_output(&graph_inputs)
                } else {
                    None
                };
                let hidden = self.batcher.infer(graph_inputs, deadline).await?;
                let mut out = vec![p.pool(&hidden, &encoded)?];
                out.extend(ids);
                out
            }
            None => self.batcher.infer(inputs, deadline).await?,
        };
        Ok(outputs
            .into_iter()
            .filter(|t| request.outputs.is_empty() || request.outputs.contains(&t.name))
            .collect())
    }
}

/// Opens the session on `path`, first running the quantization pass (or taking its
/// cached result) when the runtime options ask for it. Loading the quantized graph into
/// ONNX Runtime is the check of the pass; a result ONNX Runtime refuses is removed from
/// the cache so a fixed pass redoes it.
fn load_engine(
    path: &std::path::Path,
    cache_dir: &std::path::Path,
    options: &crate::config::RuntimeOptions,
) -> Result<OrtModel, String> {
    if options.quantization == Quantization::None {
        return OrtModel::load(path, options).map_err(|e| e.to_string());
    }
    let mode = options.quantization.as_str();
    let quantized =
        quantize::quantize_cached(path, cache_dir, &QuantizeOptions::from_runtime(options))
            .map_err(|e| format!("{mode} quantization of {} failed: {e}", path.display()))?;
    OrtModel::load(&quantized.path, options).map_err(|e| {
        let _ = std::fs::remove_file(&quantized.path);
        format!("{mode} quantized model does not load in ONNX Runtime: {e}")
    })
}

/// Matches request tensors to the model's inputs by name, checking datatype, rank, fixed
/// dimensions and element counts; returns them in the model's input order.
pub fn check_inputs(
    model: &str,
    specs: &[TensorSpec],
    mut given: Vec<Tensor>,
) -> Result<Vec<Tensor>, InferError> {
    let bad = |msg: String| InferError::BadRequest(msg);
    if let Some(unknown) = given
        .iter()
        .find(|t| !specs.iter().any(|s| s.name == t.name))
    {
        return Err(bad(format!(
            "unknown input {:?} for model {model}",
            unknown.name
        )));
    }
    let mut ordered = Vec::with_capacity(specs.len());
    for spec in specs {
        let pos = given
            .iter()
            .position(|t| t.name == spec.name)
            .ok_or_else(|| bad(format!("missing input {:?} for model {model}", spec.name)))?;
        let tensor = given.swap_remove(pos);
        if tensor.datatype() != spec.datatype {
            return Err(bad(format!(
                "input {:?}: datatype {} does not match the model's {}",
                spec.name,
                tensor.datatype(),
                spec.datatype
            )));
        }
        let shape_ok = tensor.shape.len() == spec.shape.len()
            && tensor
                .shape
                .iter()
                .zip(&spec.shape)
                .all(|(got, want)| *want < 0 || got == want);
        if !shape_ok {
            return Err(bad(format!(
                "input {:?}: shape {:?} does not match the model's {:?}",
                spec.name, tensor.shape, spec.shape
            )));
        }
        tensor.validate()?;
        ordered.push(tensor);
    }
    if !given.is_empty() {
        return Err(bad(format!("duplicate inputs for model {model}")));
    }
    if specs.iter().all(|s| s.shape.first() == Some(&-1)) && ordered.len() > 1 {
        let rows = ordered[0].shape.first();
        if ordered.iter().any(|t| t.shape.first() != rows) {
            return Err(bad(format!(
                "inputs of model {model} disagree on the batch dimension"
            )));
        }
    }
    Ok(ordered)
}
