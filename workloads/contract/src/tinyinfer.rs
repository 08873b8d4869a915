//! tinyinfer's configuration: the JSON document the operator writes into
//! `TINYINFER_CONFIG` (`{"models": [...]}`, [`FileConfig`]), the `--model key=value,...`
//! flag form of one model ([`ModelConfig::parse_flag`]), and the checks serde cannot make
//! ([`ModelConfig::validate`]).

use serde::{Deserialize, Serialize};

/// Environment variable holding the JSON document (inline, or a path to it).
pub const CONFIG_ENV: &str = "TINYINFER_CONFIG";
/// Environment variable naming the directory downloaded models are cached in.
pub const CACHE_DIR_ENV: &str = "TINYINFER_CACHE_DIR";

/// Errors in the configuration given on the command line or in a file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("model spec {spec:?}: {reason}")]
    Spec { spec: String, reason: String },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("model {name:?} version {version:?}: {reason}")]
    Invalid {
        name: String,
        version: String,
        reason: String,
    },
}

/// ONNX Runtime graph optimisation level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptLevel {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

/// Where a model's graph runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    #[default]
    Cpu,
    /// CUDA when the loaded ONNX Runtime has it; falls back to CPU with a warning.
    Cuda,
}

/// Precision the model is served at: tinyinfer rewrites the graph when it loads
/// (`tinyinfer::quantize`) and caches the result beside the original.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quantization {
    /// Serve the graph as given.
    #[default]
    None,
    /// INT8 weights of MatMul/Gemm nodes with constant weights (per output channel),
    /// activations quantized at run time.
    Int8Dynamic,
}

impl Quantization {
    /// The name used in the config, logs and metrics (`none`, `int8-dynamic`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Int8Dynamic => "int8-dynamic",
        }
    }
}

/// Session options passed to ONNX Runtime.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RuntimeOptions {
    pub graph_optimization: OptLevel,
    /// Threads inside one operator; 0 lets ONNX Runtime choose.
    pub intra_op_threads: usize,
    /// Threads across independent operators; 0 lets ONNX Runtime choose.
    pub inter_op_threads: usize,
    pub execution_provider: ExecutionProvider,
    /// CPU memory arena (faster repeated runs, more resident memory).
    pub memory_arena: bool,
    /// Rewrite the graph to this precision when it loads.
    pub quantization: Quantization,
    /// Node names (or op types) kept in FP32 by the quantization pass.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quantization_exclude: Vec<String>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            graph_optimization: OptLevel::All,
            intra_op_threads: 0,
            inter_op_threads: 0,
            execution_provider: ExecutionProvider::Cpu,
            memory_arena: true,
            quantization: Quantization::None,
            quantization_exclude: Vec::new(),
        }
    }
}

/// Dynamic batching settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Most rows (first-dimension entries) run together; 1 turns batching off.
    pub max_batch_size: usize,
    /// How long the first queued request waits for others, in microseconds.
    pub max_queue_delay_us: u64,
    /// Requests waiting beyond this are refused with 429 / RESOURCE_EXHAUSTED.
    pub max_queue_size: usize,
    /// Default request deadline in milliseconds (0: none); clients may set a shorter one.
    pub timeout_ms: u64,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_queue_delay_us: 2_000,
            max_queue_size: 1024,
            timeout_ms: 0,
        }
    }
}

/// Post-processing of a text embedding model's token states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over the attention mask, then L2-normalised.
    #[default]
    Mean,
    /// The first ([CLS]) token's state, L2-normalised.
    Cls,
}

/// One model version served by tinyinfer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    #[serde(default = "default_version")]
    pub version: String,
    /// `file:///abs/model.onnx`, a plain path (e.g. on a PVC), or `http://...`.
    pub uri: String,
    /// Expected sha256 (hex) of the downloaded file.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub runtime: RuntimeOptions,
    #[serde(default)]
    pub batching: BatchingConfig,
    /// `tokenizer.json` location (same URI forms): turns the model into a text
    /// embedding pipeline taking a BYTES input of sentences.
    #[serde(default)]
    pub tokenizer: Option<String>,
    #[serde(default)]
    pub pooling: Option<Pooling>,
    /// Tokens kept per sentence in the embedding pipeline.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
}

impl ModelConfig {
    /// A model `name` at `uri` with every other setting at its default.
    pub fn new(name: String, uri: String) -> Self {
        Self {
            name,
            version: default_version(),
            uri,
            sha256: None,
            runtime: RuntimeOptions::default(),
            batching: BatchingConfig::default(),
            tokenizer: None,
            pooling: None,
            max_tokens: default_max_tokens(),
        }
    }
}

fn default_version() -> String {
    "1".to_owned()
}

fn default_max_tokens() -> usize {
    256
}

impl ModelConfig {
    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |reason: &str| ConfigError::Invalid {
            name: self.name.clone(),
            version: self.version.clone(),
            reason: reason.to_owned(),
        };
        let ok_name = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !ok_name(&self.name) {
            return Err(invalid("name must be non-empty [A-Za-z0-9._-]"));
        }
        if !ok_name(&self.version) {
            return Err(invalid("version must be non-empty [A-Za-z0-9._-]"));
        }
        if self.uri.trim().is_empty() {
            return Err(invalid("uri is empty"));
        }
        if self.batching.max_batch_size == 0 {
            return Err(invalid("maxBatchSize must be at least 1"));
        }
        if self.batching.max_queue_size == 0 {
            return Err(invalid("maxQueueSize must be at least 1"));
        }
        if self.max_tokens < 2 {
            return Err(invalid("maxTokens must be at least 2"));
        }
        Ok(())
    }

    /// Parses the flag form `name=mlp,version=2,uri=file:///m.onnx,maxBatchSize=16,...`.
    ///
    /// Keys: name, version, uri, sha256, tokenizer, pooling, maxTokens, optimization,
    /// intraOpThreads, interOpThreads, executionProvider, memoryArena, quantization,
    /// maxBatchSize, maxQueueDelayUs, maxQueueSize, timeoutMs.
    pub fn parse_flag(spec: &str) -> Result<Self, ConfigError> {
        let err = |reason: String| ConfigError::Spec {
            spec: spec.to_owned(),
            reason,
        };
        let mut top = serde_json::Map::new();
        let mut runtime = serde_json::Map::new();
        let mut batching = serde_json::Map::new();
        for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| err(format!("{part:?} is not key=value")))?;
            let (key, value) = (key.trim(), value.trim());
            let num = || {
                value
                    .parse::<u64>()
                    .map(serde_json::Value::from)
                    .map_err(|_| err(format!("{key} must be a non-negative integer")))
            };
            let boolean = || {
                value
                    .parse::<bool>()
                    .map(serde_json::Value::from)
                    .map_err(|_| err(format!("{key} must be true or false")))
            };
            let s = || serde_json::Value::from(value);
            match key {
                "name" | "version" | "uri" | "sha256" | "tokenizer" | "pooling" => {
                    top.insert(key.to_owned(), s());
                }
                "maxTokens" => {
                    top.insert(key.to_owned(), num()?);
                }
                "optimization" | "graphOptimization" => {
                    runtime.insert("graphOptimization".into(), s());
                }
                "executionProvider" | "ep" => {
                    runtime.insert("executionProvider".into(), s());
                }
                "quantization" => {
                    runtime.insert(key.to_owned(), s());
                }
                "intraOpThreads" | "interOpThreads" => {
                    runtime.insert(key.to_owned(), num()?);
                }
                "memoryArena" => {
                    runtime.insert(key.to_owned(), boolean()?);
                }
                "maxBatchSize" | "maxQueueDelayUs" | "maxQueueSize" | "timeoutMs" => {
                    batching.insert(key.to_owned(), num()?);
                }
                other => return Err(err(format!("unknown key {other:?}"))),
            }
        }
        top.insert("runtime".into(), runtime.into());
        top.insert("batching".into(), batching.into());
        let config: ModelConfig =
            serde_json::from_value(top.into()).map_err(|e| err(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }
}

/// The JSON document form: `{"models": [ModelConfig...]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub models: Vec<ModelConfig>,
}

impl FileConfig {
    /// The document as the operator writes it into `TINYINFER_CONFIG`.
    pub fn to_json(&self) -> String {
        // Plain data (strings, numbers, enums as strings): serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads `source`: inline JSON when it starts with `{`, a file path otherwise.
    pub fn load(source: &str) -> Result<Self, ConfigError> {
        let text = if source.trim_start().starts_with('{') {
            source.to_owned()
        } else {
            std::fs::read_to_string(source).map_err(|e| ConfigError::Read {
                path: source.to_owned(),
                source: e,
            })?
        };
        let config: FileConfig = serde_json::from_str(&text)?;
        for model in &config.models {
            model.validate()?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_form_sets_nested_options() {
        let m = ModelConfig::parse_flag(
            "name=mlp,version=2,uri=file:///m.onnx,maxBatchSize=16,intraOpThreads=1,optimization=basic,memoryArena=false",
        )
        .unwrap();
        assert_eq!(m.name, "mlp");
        assert_eq!(m.version, "2");
        assert_eq!(m.batching.max_batch_size, 16);
        assert_eq!(m.batching.max_queue_size, 1024);
        assert_eq!(m.runtime.intra_op_threads, 1);
        assert_eq!(m.runtime.graph_optimization, OptLevel::Basic);
        assert!(!m.runtime.memory_arena);
        assert_eq!(m.runtime.quantization, Quantization::None);
        let q = ModelConfig::parse_flag("name=m,uri=/m.onnx,quantization=int8-dynamic").unwrap();
        assert_eq!(q.runtime.quantization, Quantization::Int8Dynamic);
        assert!(ModelConfig::parse_flag("name=m,uri=/m.onnx,quantization=int4").is_err());
    }

    #[test]
    fn flag_form_rejects_unknown_keys_and_bad_values() {
        assert!(ModelConfig::parse_flag("name=a,uri=x,colour=red").is_err());
        assert!(ModelConfig::parse_flag("name=a,uri=x,maxBatchSize=-1").is_err());
        assert!(ModelConfig::parse_flag("name=a,uri=x,maxBatchSize=0").is_err());
        assert!(ModelConfig::parse_flag("uri=x").is_err());
        assert!(ModelConfig::parse_flag("name=a/b,uri=x").is_err());
    }

    #[test]
    fn inline_json_config_loads() {
        let c = FileConfig::load(
            r#"{"models":[{"name":"e","uri":"/m.onnx","tokenizer":"/t.json","pooling":"mean","batching":{"maxBatchSize":4}}]}"#,
        )
        .unwrap();
        assert_eq!(c.models.len(), 1);
        assert_eq!(c.models[0].version, "1");
        assert_eq!(c.models[0].pooling, Some(Pooling::Mean));
        assert_eq!(c.models[0].batching.max_batch_size, 4);
    }

    #[test]
    fn operator_written_config_parses() {
        // The shape the operator's InferenceService builder writes into TINYINFER_CONFIG.
        let c = FileConfig::load(
            r#"{"models":[{"name":"m","version":"3","uri":"file:///mnt/pvc/c/m.onnx",
                "sha256":"ab","tokenizer":"file:///mnt/pvc/c/tokenizer.json",
                "runtime":{"graphOptimization":"extended","executionProvider":"cuda","intraOpThreads":4,
                           "quantization":"int8-dynamic","quantizationExclude":["head"]},
                "batching":{"maxBatchSize":8,"maxQueueDelayUs":500,"maxQueueSize":64}}]}"#,
        )
        .unwrap();
        let m = &c.models[0];
        assert_eq!(m.runtime.execution_provider, ExecutionProvider::Cuda);
        assert_eq!(m.runtime.graph_optimization, OptLevel::Extended);
        assert_eq!(m.batching.max_queue_delay_us, 500);
        assert_eq!(m.batching.max_queue_size, 64);
        assert_eq!(m.runtime.quantization, Quantization::Int8Dynamic);
        assert_eq!(m.runtime.quantization_exclude, vec!["head".to_owned()]);
        assert!(
            FileConfig::load(
                r#"{"models":[{"name":"m","uri":"x","batching":{"maxBatchSize":1}}]}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn what_the_operator_writes_reads_back_the_same() {
        let mut model = ModelConfig::new("m".into(), "file:///m.onnx".into());
        model.tokenizer = Some("file:///t.json".into());
        model.batching.max_batch_size = 8;
        model.runtime.execution_provider = ExecutionProvider::Cuda;
        model.runtime.quantization = Quantization::Int8Dynamic;
        model.runtime.quantization_exclude = vec!["lm_head".into()];
        let config = FileConfig {
            models: vec![model],
        };
        assert_eq!(FileConfig::load(&config.to_json()).unwrap(), config);
    }
}
