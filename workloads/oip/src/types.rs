//! The protocol's messages independent of the transport: an inference request and its
//! response, server and model metadata, and the REST error body. [`crate::rest`] and
//! [`crate::grpc`] convert them to and from the wire.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::tensor::{DataType, Tensor};

/// Name, datatype and shape (-1 for a dynamic dimension) of a model input or output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

/// A decoded inference request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Output names asked for; empty means every output.
    pub outputs: Vec<String>,
    /// The `timeout` parameter (microseconds on the wire), when given and non-zero.
    pub timeout: Option<Duration>,
}

/// The outputs of one inference.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    pub outputs: Vec<Tensor>,
}

/// `GET /v2` and gRPC `ServerMetadata`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub extensions: Vec<String>,
}

/// `GET /v2/models/{model}` and gRPC `ModelMetadata`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub name: String,
    #[serde(default)]
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// The body of a failed REST call: `{"error": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_metadata_json_round_trip_names_datatypes_as_the_protocol_does() {
        let meta = ModelMetadata {
            name: "mlp".into(),
            versions: vec!["1".into()],
            platform: "onnxruntime_onnx".into(),
            inputs: vec![TensorSpec {
                name: "input".into(),
                datatype: DataType::F32,
                shape: vec![-1, 16],
            }],
            outputs: vec![TensorSpec {
                name: "output".into(),
                datatype: DataType::I64,
                shape: vec![-1],
            }],
        };
        let json = serde_json::to_value(&meta).unwrap();
        assert_eq!(json["inputs"][0]["datatype"], "FP32");
        assert_eq!(json["outputs"][0]["datatype"], "INT64");
        assert_eq!(serde_json::from_value::<ModelMetadata>(json).unwrap(), meta);
    }

    #[test]
    fn unknown_datatype_in_metadata_is_a_clear_error() {
        let json = serde_json::json!({"name": "x", "datatype": "FP8", "shape": [1]});
        let err = serde_json::from_value::<TensorSpec>(json).unwrap_err();
        assert!(
            err.to_string().contains("unsupported datatype \"FP8\""),
            "{err}"
        );
    }
}
