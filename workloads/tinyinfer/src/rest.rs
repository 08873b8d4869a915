//! Open Inference Protocol v2 over REST (port 8080): health, server and model metadata,
//! readiness, inference in JSON and with the binary tensor data extension
//! (`Inference-Header-Content-Length`), the repository extension, and `/metrics`. The
//! bodies are encoded and decoded by `oip::rest`; this module maps them onto the repository.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use oip::rest::{BinaryOutputs, HEADER_LENGTH};
use oip::{ErrorBody, InferResponse, Tensor};
use serde_json::{Value as Json, json};
use tracing::Instrument;

use crate::config::ModelConfig;
use crate::error::InferError;
use crate::model::ServedModel;
use crate::repository::Repository;

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
    let body = ErrorBody {
        error: err.to_string(),
    };
    (status, axum::Json(body)).into_response()
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

async fn server_metadata() -> Response {
    axum::Json(crate::repository::server_metadata()).into_response()
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
        Ok(m) => axum::Json(s.repo.metadata(&m)).into_response(),
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

/// Answers with the outputs, each as JSON or binary as the request asked.
fn encode(
    model: &ServedModel,
    id: Option<String>,
    outputs: Vec<Tensor>,
    binary: &BinaryOutputs,
) -> Response {
    let body = oip::rest::encode_response(
        &InferResponse {
            model_name: model.config.name.clone(),
            model_version: model.config.version.clone(),
            id,
            outputs,
        },
        binary,
    );
    let content_type = HeaderValue::from_static(body.content_type());
    let header_length = body.header_length;
    let mut response = Response::new(Body::from(body.bytes));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    if let Some(n) = header_length {
        h.insert(HEADER_LENGTH, HeaderValue::from(n));
    }
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
        let header_length = headers.get(HEADER_LENGTH).map(HeaderValue::as_bytes);
        let decoded = match oip::rest::decode_request(header_length, &bytes) {
            Ok(d) => d,
            Err(e) => return error_response(&e.into()),
        };
        let id = decoded.request.id.clone();
        match s.repo.infer(&model, version.as_deref(), decoded.request.into()).await {
            Ok((served, outputs)) => encode(&served, id, outputs, &decoded.binary_outputs),
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
