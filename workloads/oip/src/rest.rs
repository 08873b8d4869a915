//! REST bodies of `POST /v2/models/{model}[/versions/{v}]/infer`: JSON tensors, and the
//! binary tensor data extension, where the body is the JSON part followed by raw tensor
//! blobs and the `Inference-Header-Content-Length` header gives the JSON part's length.
//! Both directions of both messages, so a server and a client (or a proxy) share them.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::error::{CodecError, Role};
use crate::tensor::{DataType, Tensor, TensorData};
use crate::types::{InferRequest, InferResponse};

/// Header carrying the JSON part's length in binary-extension bodies (lower case, as
/// HTTP/2 and the `http` crate name headers).
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Which outputs the client wants as raw binary blobs instead of JSON arrays:
/// `parameters.binary_data_output` for all, `outputs[i].parameters.binary_data` each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BinaryOutputs {
    pub all: bool,
    /// Outputs named in the request, each with its own choice (defaulting to `all`).
    pub outputs: Vec<(String, bool)>,
}

impl BinaryOutputs {
    /// Whether the output `name` is sent as a binary blob.
    pub fn is_binary(&self, name: &str) -> bool {
        self.outputs
            .iter()
            .find(|(n, _)| n == name)
            .map_or(self.all, |(_, b)| *b)
    }
}

/// A decoded REST inference request: the request plus how to encode its outputs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestInferRequest {
    pub request: InferRequest,
    pub binary_outputs: BinaryOutputs,
}

/// An encoded REST body; `header_length` is set when binary blobs follow the JSON part
/// (send it as [`HEADER_LENGTH`], with [`Body::content_type`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    pub bytes: Vec<u8>,
    pub header_length: Option<usize>,
}

impl Body {
    /// `application/json`, or `application/octet-stream` when blobs follow the JSON.
    pub fn content_type(&self) -> &'static str {
        if self.header_length.is_some() {
            "application/octet-stream"
        } else {
            "application/json"
        }
    }

    fn new(json: &Json, blobs: Vec<Vec<u8>>) -> Self {
        // Serializing a `Value` (string keys only) cannot fail.
        let head = serde_json::to_vec(json).unwrap_or_default();
        if blobs.is_empty() {
            return Self {
                bytes: head,
                header_length: None,
            };
        }
        let header_length = head.len();
        let mut bytes = head;
        bytes.reserve(blobs.iter().map(Vec::len).sum());
        blobs.iter().for_each(|b| bytes.extend_from_slice(b));
        Self {
            bytes,
            header_length: Some(header_length),
        }
    }
}

/// One tensor as the JSON part carries it (request inputs and response outputs alike).
#[derive(Deserialize)]
struct JsonTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Json>,
    #[serde(default)]
    data: Option<Json>,
}

#[derive(Deserialize)]
struct JsonRequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Json>,
}

#[derive(Deserialize)]
struct JsonRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Json>,
    inputs: Vec<JsonTensor>,
    #[serde(default)]
    outputs: Vec<JsonRequestedOutput>,
}

#[derive(Deserialize)]
struct JsonResponse {
    model_name: String,
    #[serde(default)]
    model_version: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    outputs: Vec<JsonTensor>,
}

/// Splits a body into its JSON part and the binary blobs after it.
fn split_body<'a>(
    header_length: Option<&[u8]>,
    body: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), CodecError> {
    let len = match header_length {
        Some(v) => {
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or(CodecError::InvalidHeaderLength)?;
            if n > body.len() {
                return Err(CodecError::HeaderLengthExceedsBody);
            }
            n
        }
        None => body.len(),
    };
    Ok(body.split_at(len))
}

/// Decodes the tensors of the JSON part, taking each `binary_data_size` blob in order.
fn decode_tensors(
    role: Role,
    tensors: Vec<JsonTensor>,
    mut binary: &[u8],
) -> Result<Vec<Tensor>, CodecError> {
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        let datatype =
            DataType::parse(&t.datatype).ok_or_else(|| CodecError::UnsupportedDatatype {
                role,
                name: t.name.clone(),
                datatype: t.datatype.clone(),
            })?;
        let binary_size = t.parameters.get("binary_data_size").and_then(Json::as_u64);
        let data = match (binary_size, &t.data) {
            (Some(size), _) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > binary.len() {
                    return Err(CodecError::BinaryDataShort { role, name: t.name });
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                TensorData::from_raw(&t.name, datatype, mine)?
            }
            (None, Some(data)) => TensorData::from_json(&t.name, datatype, data)?,
            (None, None) => return Err(CodecError::NoData { role, name: t.name }),
        };
        out.push(Tensor {
            name: t.name,
            shape: t.shape,
            data,
        });
    }
    if !binary.is_empty() {
        return Err(CodecError::UnusedBinaryData { role });
    }
    Ok(out)
}

/// The JSON of one tensor; a binary one gets `binary_data_size` and its blob is pushed.
fn encode_tensor(t: &Tensor, binary: bool, blobs: &mut Vec<Vec<u8>>) -> Json {
    let mut o = json!({ "name": t.name, "datatype": t.datatype().as_str(), "shape": t.shape });
    if binary {
        let raw = t.data.to_raw();
        o["parameters"] = json!({ "binary_data_size": raw.len() });
        blobs.push(raw);
    } else {
        o["data"] = t.data.to_json();
    }
    o
}

/// Decodes a request body; `header_length` is the raw [`HEADER_LENGTH`] header, if sent.
pub fn decode_request(
    header_length: Option<&[u8]>,
    body: &[u8],
) -> Result<RestInferRequest, CodecError> {
    let (json_part, binary) = split_body(header_length, body)?;
    let req: JsonRequest = serde_json::from_slice(json_part).map_err(|e| CodecError::Json {
        what: "request",
        message: e.to_string(),
    })?;
    let inputs = decode_tensors(Role::Input, req.inputs, binary)?;
    let timeout = req
        .parameters
        .get("timeout")
        .and_then(Json::as_u64)
        .filter(|t| *t > 0)
        .map(Duration::from_micros);
    let all = req
        .parameters
        .get("binary_data_output")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let outputs = req
        .outputs
        .iter()
        .map(|o| {
            let bin = o
                .parameters
                .get("binary_data")
                .and_then(Json::as_bool)
                .unwrap_or(all);
            (o.name.clone(), bin)
        })
        .collect();
    Ok(RestInferRequest {
        request: InferRequest {
            id: req.id,
            inputs,
            outputs: req.outputs.into_iter().map(|o| o.name).collect(),
            timeout,
        },
        binary_outputs: BinaryOutputs { all, outputs },
    })
}

/// Encodes a request (the client side); `binary_inputs` sends every input as a blob.
/// Requested outputs not listed in `binary_outputs.outputs` get its `all` choice.
pub fn encode_request(
    request: &InferRequest,
    binary_outputs: &BinaryOutputs,
    binary_inputs: bool,
) -> Body {
    let mut blobs = Vec::new();
    let inputs: Vec<Json> = request
        .inputs
        .iter()
        .map(|t| encode_tensor(t, binary_inputs, &mut blobs))
        .collect();
    let outputs: Vec<Json> = request
        .outputs
        .iter()
        .map(|name| {
            json!({ "name": name, "parameters": { "binary_data": binary_outputs.is_binary(name) } })
        })
        .collect();
    let mut parameters = Map::new();
    if binary_outputs.all {
        parameters.insert("binary_data_output".into(), Json::Bool(true));
    }
    if let Some(t) = request.timeout {
        let us = u64::try_from(t.as_micros()).unwrap_or(u64::MAX).max(1);
        parameters.insert("timeout".into(), Json::from(us));
    }
    let mut body = json!({ "inputs": inputs });
    if !outputs.is_empty() {
        body["outputs"] = Json::Array(outputs);
    }
    if !parameters.is_empty() {
        body["parameters"] = Json::Object(parameters);
    }
    if let Some(id) = &request.id {
        body["id"] = Json::String(id.clone());
    }
    Body::new(&body, blobs)
}

/// Encodes a response, each output as JSON or as a blob as `binary` asks.
pub fn encode_response(response: &InferResponse, binary: &BinaryOutputs) -> Body {
    let mut blobs = Vec::new();
    let outputs: Vec<Json> = response
        .outputs
        .iter()
        .map(|t| encode_tensor(t, binary.is_binary(&t.name), &mut blobs))
        .collect();
    let mut body = json!({
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    });
    if let Some(id) = &response.id {
        body["id"] = Json::String(id.clone());
    }
    Body::new(&body, blobs)
}

/// Decodes a response body (the client side).
pub fn decode_response(
    header_length: Option<&[u8]>,
    body: &[u8],
) -> Result<InferResponse, CodecError> {
    let (json_part, binary) = split_body(header_length, body)?;
    let resp: JsonResponse = serde_json::from_slice(json_part).map_err(|e| CodecError::Json {
        what: "response",
        message: e.to_string(),
    })?;
    Ok(InferResponse {
        model_name: resp.model_name,
        model_version: resp.model_version,
        id: resp.id,
        outputs: decode_tensors(Role::Output, resp.outputs, binary)?,
    })
}

#[cfg(test)]
#[path = "rest_tests.rs"]
mod tests;
