//! Open Inference Protocol v2 over REST (port 8080): health, server and model metadata,
//! readiness, inference in JSON and with the binary tensor data extension
//! (`Inference-Header-Content-Length`), the repository extension, and `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use tracing::Instrument;

use crate::config::ModelConfig;
use crate::error::InferError;
use crate::model::{InferRequest, ServedModel};
use crate::repository::Repository;
use crate::tensor::{DataType, Tensor, TensorData};

/// Header carrying the JSON part's length in binary-extension bodies.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Shared state of the REST server.
#[derive(Clone)]
pub struct RestState {
    pub repo: Arc<Repository>,
    pub max_body_bytes: usize,
}

/// Builds the REST router.
pub fn router(state: RestState) -> Router {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/healthz", get(live))
        .route("/readyz", get(ready))
        .route("/v2", get(server_metadata))
        .route("/metrics", get(metrics))
        .route("/v2/models/{model}", get(model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(model_metadata_v),
        )
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_ready_v),
        )
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer_v))
        .route(
            "/v2/repository/index",
            post(repository_index).get(repository_index),
        )
        .route("/v2/repository/models/{model}/load", post(repository_load))
        .route(
            "/v2/repository/models/{model}/unload",
            post(repository_unload),
        )
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

fn error_response(err: &InferError) -> Response {
    let status =
        StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({ "error": err.to_string() }))).into_response()
}

async fn live() -> Response {
    axum::Json(json!({ "live": true })).into_response()
}

async fn ready(State(s): State<RestState>) -> Response {
    let ready = s.repo.ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({ "ready": ready }))).into_response()
}

async fn metrics(State(s): State<RestState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            modelhub_telemetry::metrics::CONTENT_TYPE,
        )],
        modelhub_telemetry::metrics::render(&s.repo.metrics().registry),
    )
        .into_response()
}

/// Server metadata (shared with gRPC).
pub fn server_metadata_json() -> Json {
    json!({
        "name": "tinyinfer",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_repository"],
    })
}

async fn server_metadata() -> Response {
    axum::Json(server_metadata_json()).into_response()
}

fn metadata_json(repo: &Repository, model: &ServedModel) -> Json {
    let specs = |v: &[crate::runtime::TensorSpec]| {
        v.iter()
            .map(|s| json!({ "name": s.name, "datatype": s.datatype.as_str(), "shape": s.shape }))
            .collect::<Vec<_>>()
    };
    json!({
        "name": model.config.name,
        "versions": repo.versions(&model.config.name),
        "platform": "onnxruntime_onnx",
        "inputs": specs(&model.inputs),
        "outputs": specs(&model.outputs),
    })
}

async fn model_metadata(State(s): State<RestState>, Path(model): Path<String>) -> Response {
    metadata(&s, &model, None)
}

async fn model_metadata_v(
    State(s): State<RestState>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    metadata(&s, &model, Some(&version))
}

fn metadata(s: &RestState, model: &str, version: Option<&str>) -> Response {
    match s.repo.get(model, version) {
        Ok(m) => axum::Json(metadata_json(&s.repo, &m)).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn model_ready(State(s): State<RestState>, Path(model): Path<String>) -> Response {
    readiness(&s, &model, None)
}

async fn model_ready_v(
    State(s): State<RestState>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    readiness(&s, &model, Some(&version))
}

fn readiness(s: &RestState, model: &str, version: Option<&str>) -> Response {
    match s.repo.get(model, version) {
        Ok(_) => axum::Json(json!({ "name": model, "ready": true })).into_response(),
        Err(InferError::NotReady(reason)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "name": model, "ready": false, "error": reason })),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

#[derive(Deserialize)]
struct RestInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Json>,
    #[serde(default)]
    data: Option<Json>,
}

#[derive(Deserialize)]
struct RestOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Json>,
}

#[derive(Deserialize)]
struct RestRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Json>,
    inputs: Vec<RestInput>,
    #[serde(default)]
    outputs: Vec<RestOutput>,
}

/// Decoded REST request plus how each output should be encoded.
struct Decoded {
    request: InferRequest,
    binary_all: bool,
    binary_outputs: Vec<(String, bool)>,
}

fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Decoded, InferError> {
    let bad = |m: String| InferError::BadRequest(m);
    let header_len = match headers.get(HEADER_LENGTH) {
        Some(v) => {
            let n = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| bad("invalid Inference-Header-Content-Length".into()))?;
            if n > body.len() {
                return Err(bad(
                    "Inference-Header-Content-Length exceeds the body".into()
                ));
            }
            n
        }
        None => body.len(),
    };
    let (json_part, mut binary) = body.split_at(header_len);
    let req: RestRequest =
        serde_json::from_slice(json_part).map_err(|e| bad(format!("invalid request JSON: {e}")))?;
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for input in req.inputs {
        let datatype = DataType::parse(&input.datatype).ok_or_else(|| {
            bad(format!(
                "input {:?}: unsupported datatype {:?}",
                input.name, input.datatype
            ))
        })?;
        let binary_size = input
            .parameters
            .get("binary_data_size")
            .and_then(Json::as_u64);
        let data = match (binary_size, &input.data) {
            (Some(size), _) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > binary.len() {
                    return Err(bad(format!(
                        "input {:?}: binary data shorter than binary_data_size",
                        input.name
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                TensorData::from_raw(&input.name, datatype, mine)?
            }
            (None, Some(data)) => TensorData::from_json(&input.name, datatype, data)?,
            (None, None) => return Err(bad(format!("input {:?} has no data", input.name))),
        };
        inputs.push(Tensor {
            name: input.name,
            shape: input.shape,
            data,
        });
    }
    if !binary.is_empty() {
        return Err(bad("unused binary data after the declared inputs".into()));
    }
    let timeout_us = req.parameters.get("timeout").and_then(Json::as_u64);
    let deadline = timeout_us
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_micros(t));
    let binary_all = req
        .parameters
        .get("binary_data_output")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let binary_outputs = req
        .outputs
        .iter()
        .map(|o| {
            let bin = o
                .parameters
                .get("binary_data")
                .and_then(Json::as_bool)
                .unwrap_or(binary_all);
            (o.name.clone(), bin)
        })
        .collect();
    Ok(Decoded {
        request: InferRequest {
            id: req.id,
            inputs,
            outputs: req.outputs.into_iter().map(|o| o.name).collect(),
            deadline,
        },
        binary_all,
        binary_outputs,
    })
}

fn encode(
    model: &ServedModel,
    id: Option<String>,
    outputs: Vec<Tensor>,
    decoded_binary: (bool, &[(String, bool)]),
) -> Response {
    let (binary_all, per_output) = decoded_binary;
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    let mut out_json = Vec::with_capacity(outputs.len());
    for t in outputs {
        let binary = per_output
            .iter()
            .find(|(n, _)| n == &t.name)
            .map_or(binary_all, |(_, b)| *b);
        let mut o = json!({ "name": t.name, "datatype": t.datatype().as_str(), "shape": t.shape });
        if binary {
            let raw = t.data.to_raw();
            o["parameters"] = json!({ "binary_data_size": raw.len() });
            blobs.push(raw);
        } else {
            o["data"] = t.data.to_json();
        }
        out_json.push(o);
    }
    let mut body = json!({
        "model_name": model.config.name,
        "model_version": model.config.version,
        "outputs": out_json,
    });
    if let Some(id) = id {
        body["id"] = Json::String(id);
    }
    let head = serde_json::to_vec(&body).unwrap_or_default();
    if blobs.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], head).into_response();
    }
    let mut bytes = Vec::with_capacity(head.len() + blobs.iter().map(Vec::len).sum::<usize>());
    bytes.extend_from_slice(&head);
    blobs.iter().for_each(|b| bytes.extend_from_slice(b));
    let mut response = Response::new(Body::from(bytes));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(HEADER_LENGTH, HeaderValue::from(head.len()));
    response
}

async fn infer(
    State(s): State<RestState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_infer(s, model, None, headers, body).await
}

async fn infer_v(
    State(s): State<RestState>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_infer(s, model, Some(version), headers, body).await
}

async fn run_infer(
    s: RestState,
    model: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::info_span!("infer", protocol = "rest", model = %model, version = version.as_deref().unwrap_or(""));
    modelhub_telemetry::propagation::set_parent_from_headers(&span, &headers);
    async move {
        let bytes: Bytes = match axum::body::to_bytes(body, s.max_body_bytes).await {
            Ok(b) => b,
            Err(_) => {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    axum::Json(json!({ "error": format!("request body larger than {} bytes", s.max_body_bytes) })),
                )
                    .into_response();
            }
        };
        let decoded = match decode(&headers, &bytes) {
            Ok(d) => d,
            Err(e) => return error_response(&e),
        };
        let id = decoded.request.id.clone();
        match s.repo.infer(&model, version.as_deref(), decoded.request).await {
            Ok((served, outputs)) => encode(&served, id, outputs, (decoded.binary_all, &decoded.binary_outputs)),
            Err(e) => {
                tracing::debug!(error = %e, "inference failed");
                error_response(&e)
            }
        }
    }
    .instrument(span)
    .await
}

async fn repository_index(State(s): State<RestState>) -> Response {
    axum::Json(s.repo.index()).into_response()
}

async fn repository_load(
    State(s): State<RestState>,
    Path(model): Path<String>,
    body: Bytes,
) -> Response {
    // Optional body: {"parameters": {"config": "<ModelConfig JSON>"}} (Triton style).
    let config = if body.is_empty() {
        None
    } else {
        let parsed: Result<Json, _> = serde_json::from_slice(&body);
        let Ok(v) = parsed else {
            return error_response(&InferError::BadRequest("invalid JSON body".into()));
        };
        match v.pointer("/parameters/config") {
            Some(Json::String(text)) => match serde_json::from_str::<ModelConfig>(text) {
                Ok(c) if c.name == model => Some(c),
                Ok(_) => {
                    return error_response(&InferError::BadRequest(
                        "config name differs from the URL".into(),
                    ));
                }
                Err(e) => {
                    return error_response(&InferError::BadRequest(format!(
                        "invalid model config: {e}"
                    )));
                }
            },
            Some(_) => {
                return error_response(&InferError::BadRequest(
                    "parameters.config must be a JSON string".into(),
                ));
            }
            None => None,
        }
    };
    let result = match config {
        Some(c) => s.repo.load(c).await,
        None => s.repo.reload(&model).await,
    };
    match result {
        Ok(()) => axum::Json(json!({})).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn repository_unload(State(s): State<RestState>, Path(model): Path<String>) -> Response {
    match s.repo.unload(&model) {
        Ok(()) => axum::Json(json!({})).into_response(),
        Err(e) => error_response(&e),
    }
}
