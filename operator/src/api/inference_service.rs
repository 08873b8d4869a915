//! `InferenceService` (short name `isvc`): an ONNX model served by `tinyinfer` pods over
//! the Open Inference Protocol v2, with dynamic batching and autoscaling.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of an inference service.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modelhub.io",
    version = "v1alpha1",
    kind = "InferenceService",
    namespaced,
    shortname = "isvc",
    category = "modelhub",
    status = "InferenceServiceStatus",
    doc = "An ONNX model served over the Open Inference Protocol v2 by tinyinfer, with dynamic batching and autoscaling.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model.name"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.loadedModelVersion"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready-Replicas", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 52").message("metadata.name must be at most 52 characters (the StatefulSet and its pods are named after it)"),
    validation = Rule::new("!has(self.spec.scaling) || (self.spec.replicas >= self.spec.scaling.minReplicas && self.spec.replicas <= self.spec.scaling.maxReplicas)").message("spec.replicas must lie within spec.scaling.minReplicas..maxReplicas"),
    validation = Rule::new("!has(self.spec.runtime) || self.spec.runtime.executionProvider != 'CUDA' || (has(self.spec.gpus) && self.spec.gpus > 0)").message("runtime.executionProvider CUDA needs spec.gpus > 0"),
)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceSpec {
    /// The model to serve.
    pub model: ModelSpec,

    /// ONNX Runtime session options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeSpec>,

    /// Dynamic batching; requests run one by one when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<BatchingSpec>,

    /// Number of serving pods. Written by `kubectl scale` or by the autoscaler when
    /// `scaling` is set.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// Autoscaling bounds and target; the replica count stays as set when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingSpec>,

    /// NVIDIA GPUs per pod (`nvidia.com/gpu`), needed by the CUDA execution provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16))]
    pub gpus: Option<i32>,

    /// CPU and memory requests and limits of every tinyinfer container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Container image overriding the operator's default tinyinfer image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
}

fn default_replicas() -> i32 {
    1
}

/// Which model is served and where it comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// Model name in the inference API (`/v2/models/{name}`).
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9][A-Za-z0-9_.-]*$')").message("model.name may contain letters, digits, '_', '.' and '-' and must start with a letter or digit"))]
    pub name: String,
    /// Model version in the inference API.
    #[serde(default = "default_version")]
    #[schemars(length(min = 1, max = 64))]
    pub version: String,
    /// Model file format.
    #[serde(default)]
    pub format: ModelFormat,
    /// Where the model file is: `file:///path`, `pvc://<claim>/<path>` or `http(s)://...`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^(file:///|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/|https?://).+')").message("model.storageUri must start with file:///, pvc://<claim>/ or http(s)://"))]
    pub storage_uri: String,
    /// Expected SHA-256 (hex) of the downloaded model file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{64}$')").message("model.sha256 must be 64 lowercase hex digits"))]
    pub sha256: Option<String>,
    /// `tokenizer.json` for text models (same URI forms as storageUri); inputs are then
    /// sentences (BYTES) and outputs pooled sentence embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_uri: Option<String>,
}

fn default_version() -> String {
    "1".to_owned()
}

/// Model file format.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// ONNX (served by ONNX Runtime).
    #[default]
    Onnx,
}

/// ONNX Runtime session options.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSpec {
    /// Graph optimization level.
    #[serde(default)]
    pub graph_optimization_level: GraphOptimizationLevel,
    /// Threads used inside one operator; ONNX Runtime's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub intra_op_threads: Option<i32>,
    /// Threads used across independent operators; ONNX Runtime's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub inter_op_threads: Option<i32>,
    /// Execution provider.
    #[serde(default)]
    pub execution_provider: ExecutionProvider,
    /// Precision the model is served at: tinyinfer rewrites the graph when it loads
    /// (MatMul/Gemm weights to INT8) and caches the result beside the original; a model
    /// that cannot be quantized is reported as failed, not served in FP32.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self != 'Int8Static'").message("runtime.quantization Int8Static (calibrated QDQ) is not implemented yet; use Int8Dynamic"))]
    pub quantization: ModelQuantization,
    /// Node names or op types (e.g. `Gemm`) the quantization pass keeps in FP32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub quantization_exclude: Vec<String>,
}

/// ONNX Runtime graph optimization level.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GraphOptimizationLevel {
    /// No graph optimization.
    Disable,
    /// Constant folding and redundant node removal.
    Basic,
    /// Basic plus complex node fusions.
    Extended,
    /// Everything, including layout optimizations.
    #[default]
    All,
}

/// Where the model runs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExecutionProvider {
    /// CPU.
    #[default]
    #[serde(rename = "CPU")]
    Cpu,
    /// NVIDIA GPU through CUDA (needs `gpus`).
    #[serde(rename = "CUDA")]
    Cuda,
}

/// Weight quantization.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ModelQuantization {
    /// Serve the model as given.
    #[default]
    None,
    /// Same as `Int8Dynamic` (the name manifests used before the variants were split).
    Int8,
    /// INT8 weights (per output channel) of MatMul/Gemm nodes with constant weights;
    /// activations are quantized at run time.
    Int8Dynamic,
    /// INT8 weights and activations with calibrated scales (QDQ); not implemented yet,
    /// rejected by the API server.
    Int8Static,
}

/// Dynamic batching.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BatchingSpec {
    /// Largest batch run at once.
    #[serde(default = "default_max_batch_size")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_batch_size: i32,
    /// Longest a request waits for others to join its batch (e.g. `5ms`).
    #[serde(default = "default_max_queue_delay")]
    pub max_queue_delay: kube::core::Duration,
    /// Requests queued per model before new ones are refused with 429.
    #[serde(default = "default_max_queue_size")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_queue_size: i32,
}

fn default_max_batch_size() -> i32 {
    8
}
fn default_max_queue_delay() -> kube::core::Duration {
    std::time::Duration::from_millis(5).into()
}
fn default_max_queue_size() -> i32 {
    1024
}

/// Autoscaling on in-flight requests per pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("scaling.minReplicas must not exceed scaling.maxReplicas"))]
#[x_kube(validation = Rule::new("self.minReplicas > 0 || self.scaleToZero").message("scaling.minReplicas may be 0 only when scaling.scaleToZero is true"))]
pub struct ScalingSpec {
    /// Fewest replicas the autoscaler keeps.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,
    /// Most replicas the autoscaler creates.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// In-flight requests per pod the autoscaler aims for.
    #[serde(default = "default_target_concurrency")]
    #[schemars(range(min = 1, max = 10000))]
    pub target_concurrency: i32,
    /// Allow scaling to zero replicas when idle.
    #[serde(default)]
    pub scale_to_zero: bool,
}

fn default_target_concurrency() -> i32 {
    8
}

/// Observed state of an inference service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, ModelLoaded, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// In-cluster URL of the Open Inference Protocol REST API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Pods of the StatefulSet (for the scale subresource).
    #[serde(default)]
    pub replicas: i32,
    /// Ready pods.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the serving pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Model version served by the ready pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_model_version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec: InferenceServiceSpec = serde_json::from_str(
            r#"{"model": {"name": "mlp", "storageUri": "file:///models/mlp.onnx"}}"#,
        )
        .unwrap();
        assert_eq!(spec.replicas, 1);
        assert_eq!(spec.model.version, "1");
        assert_eq!(spec.model.format, ModelFormat::Onnx);
        assert!(spec.batching.is_none());
    }

    #[test]
    fn batching_defaults_and_durations_parse() {
        let b: BatchingSpec = serde_json::from_str(r#"{"maxQueueDelay": "2ms"}"#).unwrap();
        assert_eq!(b.max_batch_size, 8);
        let delay: std::time::Duration = b.max_queue_delay.into();
        assert_eq!(delay, std::time::Duration::from_millis(2));
    }

    #[test]
    fn execution_provider_wire_names_are_upper_case() {
        let r: RuntimeSpec = serde_json::from_str(r#"{"executionProvider": "CUDA"}"#).unwrap();
        assert_eq!(r.execution_provider, ExecutionProvider::Cuda);
    }
}
