//! The protocol over gRPC (`inference.GRPCInferenceService`): the generated messages,
//! client ([`pb::grpc_inference_service_client`]) and server
//! ([`pb::grpc_inference_service_server`], decoding with [`codec::StrictCodec`]), and
//! conversions between them and [`crate::types`]. Tensors are read from typed `contents`
//! or `raw_*_contents`; this crate writes raw contents, as tritonclient does.

pub mod codec;

use std::time::Duration;

use crate::error::{CodecError, Role};
use crate::tensor::{DataType, Tensor, TensorData};
use crate::types::{InferRequest, InferResponse, ModelMetadata, ServerMetadata, TensorSpec};

/// Generated protocol messages and service stubs.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("inference");
    include!(concat!(env!("OUT_DIR"), "/server/inference.rs"));
}

use pb::infer_parameter::ParameterChoice;
use pb::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use pb::model_infer_response::InferOutputTensor;

/// Parses a `grpc-timeout` header value (`<digits><unit>`, unit one of H M S m u n).
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn narrow<S: Copy, T: TryFrom<S>>(role: Role, name: &str, v: &[S]) -> Result<Vec<T>, CodecError> {
    v.iter()
        .map(|x| {
            T::try_from(*x).map_err(|_| CodecError::OutOfRange {
                role,
                name: name.to_owned(),
            })
        })
        .collect()
}

/// Decodes one tensor from typed `contents`.
fn from_contents(
    role: Role,
    name: &str,
    dt: DataType,
    contents: Option<&pb::InferTensorContents>,
) -> Result<TensorData, CodecError> {
    let c = contents.ok_or_else(|| CodecError::NoContents {
        role,
        name: name.to_owned(),
    })?;
    Ok(match dt {
        DataType::Bool => TensorData::Bool(c.bool_contents.clone()),
        DataType::I8 => TensorData::I8(narrow(role, name, &c.int_contents)?),
        DataType::I16 => TensorData::I16(narrow(role, name, &c.int_contents)?),
        DataType::I32 => TensorData::I32(c.int_contents.clone()),
        DataType::I64 => TensorData::I64(c.int64_contents.clone()),
        DataType::U8 => TensorData::U8(narrow(role, name, &c.uint_contents)?),
        DataType::U16 => TensorData::U16(narrow(role, name, &c.uint_contents)?),
        DataType::U32 => TensorData::U32(c.uint_contents.clone()),
        DataType::U64 => TensorData::U64(c.uint64_contents.clone()),
        DataType::F32 => TensorData::F32(c.fp32_contents.clone()),
        DataType::F64 => TensorData::F64(c.fp64_contents.clone()),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents.iter().map(|b| b.to_vec()).collect()),
        DataType::F16 => {
            return Err(CodecError::Fp16NotTyped {
                role,
                name: name.to_owned(),
            });
        }
    })
}

/// The tensor fields shared by request inputs and response outputs.
struct Wire<'a> {
    name: &'a str,
    datatype: &'a str,
    shape: &'a [i64],
    contents: Option<&'a pb::InferTensorContents>,
}

/// Decodes tensors from raw contents (one per tensor) or, when none are sent, typed ones.
fn decode_tensors(
    role: Role,
    tensors: Vec<Wire<'_>>,
    raw: &[bytes::Bytes],
) -> Result<Vec<Tensor>, CodecError> {
    if !raw.is_empty() && raw.len() != tensors.len() {
        return Err(CodecError::RawContentsCount {
            role,
            raw: raw.len(),
            tensors: tensors.len(),
        });
    }
    let mut out = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.into_iter().enumerate() {
        let dt = DataType::parse(t.datatype).ok_or_else(|| CodecError::UnsupportedDatatype {
            role,
            name: t.name.to_owned(),
            datatype: t.datatype.to_owned(),
        })?;
        let data = match raw.get(i) {
            Some(bytes) => TensorData::from_raw(t.name, dt, bytes)?,
            None => from_contents(role, t.name, dt, t.contents)?,
        };
        out.push(Tensor {
            name: t.name.to_owned(),
            shape: t.shape.to_vec(),
            data,
        });
    }
    Ok(out)
}

/// Decodes a `ModelInferRequest` (the model name and version stay in `req`).
pub fn decode_request(req: &pb::ModelInferRequest) -> Result<InferRequest, CodecError> {
    let wire = req
        .inputs
        .iter()
        .map(|t| Wire {
            name: &t.name,
            datatype: &t.datatype,
            shape: &t.shape,
            contents: t.contents.as_ref(),
        })
        .collect();
    let inputs = decode_tensors(Role::Input, wire, &req.raw_input_contents)?;
    let timeout = req
        .parameters
        .get("timeout")
        .and_then(|p| match p.parameter_choice {
            Some(ParameterChoice::Int64Param(us)) => u64::try_from(us).ok(),
            Some(ParameterChoice::Uint64Param(us)) => Some(us),
            _ => None,
        });
    Ok(InferRequest {
        id: (!req.id.is_empty()).then(|| req.id.clone()),
        inputs,
        outputs: req.outputs.iter().map(|o| o.name.clone()).collect(),
        timeout: timeout.filter(|t| *t > 0).map(Duration::from_micros),
    })
}

/// Encodes a request for `model_name` / `model_version` (empty: the server's choice),
/// inputs in raw contents (the client side).
pub fn encode_request(
    model_name: &str,
    model_version: &str,
    request: &InferRequest,
) -> pb::ModelInferRequest {
    let mut out = pb::ModelInferRequest {
        model_name: model_name.to_owned(),
        model_version: model_version.to_owned(),
        id: request.id.clone().unwrap_or_default(),
        ..Default::default()
    };
    for t in &request.inputs {
        out.inputs.push(InferInputTensor {
            name: t.name.clone(),
            datatype: t.datatype().as_str().into(),
            shape: t.shape.clone(),
            ..Default::default()
        });
        out.raw_input_contents.push(t.data.to_raw().into());
    }
    out.outputs = request
        .outputs
        .iter()
        .map(|name| InferRequestedOutputTensor {
            name: name.clone(),
            ..Default::default()
        })
        .collect();
    if let Some(t) = request.timeout {
        let us = i64::try_from(t.as_micros()).unwrap_or(i64::MAX).max(1);
        out.parameters.insert(
            "timeout".into(),
            pb::InferParameter {
                parameter_choice: Some(ParameterChoice::Int64Param(us)),
            },
        );
    }
    out
}

/// Encodes a response, outputs in raw contents.
pub fn encode_response(response: InferResponse) -> pb::ModelInferResponse {
    let mut out = pb::ModelInferResponse {
        model_name: response.model_name,
        model_version: response.model_version,
        id: response.id.unwrap_or_default(),
        ..Default::default()
    };
    for t in response.outputs {
        out.outputs.push(InferOutputTensor {
            name: t.name.clone(),
            datatype: t.datatype().as_str().into(),
            shape: t.shape.clone(),
            ..Default::default()
        });
        out.raw_output_contents.push(t.data.to_raw().into());
    }
    out
}

/// Decodes a `ModelInferResponse` (the client side).
pub fn decode_response(resp: &pb::ModelInferResponse) -> Result<InferResponse, CodecError> {
    let wire = resp
        .outputs
        .iter()
        .map(|t| Wire {
            name: &t.name,
            datatype: &t.datatype,
            shape: &t.shape,
            contents: t.contents.as_ref(),
        })
        .collect();
    Ok(InferResponse {
        model_name: resp.model_name.clone(),
        model_version: resp.model_version.clone(),
        id: (!resp.id.is_empty()).then(|| resp.id.clone()),
        outputs: decode_tensors(Role::Output, wire, &resp.raw_output_contents)?,
    })
}

impl From<ServerMetadata> for pb::ServerMetadataResponse {
    fn from(m: ServerMetadata) -> Self {
        Self {
            name: m.name,
            version: m.version,
            extensions: m.extensions,
        }
    }
}

impl From<TensorSpec> for pb::model_metadata_response::TensorMetadata {
    fn from(s: TensorSpec) -> Self {
        Self {
            name: s.name,
            datatype: s.datatype.as_str().into(),
            shape: s.shape,
        }
    }
}

impl From<ModelMetadata> for pb::ModelMetadataResponse {
    fn from(m: ModelMetadata) -> Self {
        Self {
            name: m.name,
            versions: m.versions,
            platform: m.platform,
            inputs: m.inputs.into_iter().map(Into::into).collect(),
            outputs: m.outputs.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
