//! Qdrant-compatible REST API (port 6333): the router, the response envelope
//! `{"result", "status": "ok", "time"}` / `{"status": {"error"}, "time", "result": null}`,
//! JSON extraction with Qdrant-style errors, API-key auth, per-request timeouts,
//! body limits and request metrics. Handlers live in the submodules by resource.

mod collections;
mod models;
mod points;
mod query;
mod snapshots;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::auth::ApiKey;
use crate::error::{ServiceError, ServiceResult};
use crate::metrics::Metrics;
use crate::service::CollectionService;

/// The Qdrant version this server answers as (the client checks major.minor).
pub const QDRANT_COMPAT_VERSION: &str = "1.19.0";

/// Everything a handler needs: the collection service plus HTTP settings.
#[derive(Clone)]
pub struct AppState {
    pub service: CollectionService,
    pub metrics: Arc<Metrics>,
    pub api_key: Option<Arc<ApiKey>>,
    pub ready: Arc<AtomicBool>,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    /// Largest snapshot upload (archives are far bigger than API requests).
    pub max_upload_bytes: usize,
}

tokio::task_local! {
    static STARTED: Instant;
}

fn elapsed() -> f64 {
    STARTED
        .try_with(|s| s.elapsed().as_secs_f64())
        .unwrap_or(0.0)
}

/// A successful Qdrant response: `{"result": ..., "status": "ok", "time": ...}`.
pub struct Reply(pub Value);

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        Json(json!({"result": self.0, "status": "ok", "time": elapsed()})).into_response()
    }
}

/// An error only the HTTP edge produces (auth, timeouts, body limits, unknown routes),
/// in the same envelope as service errors.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

/// The HTTP status of a service error: the one place REST maps them.
pub fn http_status(e: &ServiceError) -> StatusCode {
    match e {
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::Invalid(_) => StatusCode::BAD_REQUEST,
        ServiceError::AlreadyExists(_) => StatusCode::CONFLICT,
        // 421: this node cannot answer it, another can (the message names it)
        ServiceError::NotLeader { .. } => StatusCode::MISDIRECTED_REQUEST,
        ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::new(http_status(&e), e.to_string())
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, error = %self.message, "request failed");
        }
        (
            self.status,
            Json(json!({"status": {"error": self.message}, "time": elapsed(), "result": null})),
        )
            .into_response()
    }
}

pub fn reply<T: Serialize>(v: T) -> ServiceResult<Reply> {
    serde_json::to_value(v)
        .map(Reply)
        .map_err(|e| ServiceError::internal(e.to_string()))
}

/// A JSON body: malformed JSON and wrong shapes are 400 with serde's message, bodies over
/// the limit 413, all in Qdrant's error envelope.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "Payload too large: the request body exceeds the server's limit (--max-request-bytes)")
            } else {
                ApiError::new(status, format!("cannot read the request body: {e}"))
            }
        })?;
        let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        serde_json::from_slice(bytes).map(Body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Format error in JSON body: {e}"),
            )
        })
    }
}

async fn root() -> Json<Value> {
    Json(json!({
        "title": "vectorforge - ModelHub vector search engine (Qdrant-compatible API)",
        "version": QDRANT_COMPAT_VERSION,
        "vectorforge_version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn healthz() -> &'static str {
    "healthz check passed"
}

/// Qdrant's `GET /cluster`.
async fn cluster_status(State(st): State<AppState>) -> ServiceResult<Reply> {
    reply(st.service.cluster_status())
}

async fn readyz(State(st): State<AppState>) -> Response {
    if st.ready.load(Ordering::Acquire) {
        "all collections are loaded".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "collections are still loading",
        )
            .into_response()
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    st.metrics.observe_collections(st.service.registry());
    (
        [(
            header::CONTENT_TYPE,
            modelhub_telemetry::metrics::CONTENT_TYPE,
        )],
        st.metrics.render(),
    )
        .into_response()
}

const OPEN_PATHS: [&str; 5] = ["/healthz", "/readyz", "/livez", "/metrics", "/"];

async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.api_key
        && !OPEN_PATHS.contains(&req.uri().path())
        && !key.accepts(req.headers())
    {
        return ApiError::new(StatusCode::UNAUTHORIZED, "Invalid API key or JWT").into_response();
    }
    next.run(req).await
}

/// Timeout from `?timeout=<seconds>` (Qdrant's parameter) or the server default.
fn timeout_of(req: &Request, default: Duration) -> Duration {
    req.uri()
        .query()
        .and_then(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "timeout")
                .and_then(|(_, v)| v.parse::<u64>().ok())
        })
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .map_or(default, |d| d.min(default.max(Duration::from_secs(1)) * 10))
}

async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let limit = timeout_of(&req, st.request_timeout);
    let started = Instant::now();
    // one span per request, joined to the caller's trace (W3C traceparent) when OTLP is on
    let span = tracing::info_span!("http.request", http.method = %method, http.route = %route, http.status_code = tracing::field::Empty);
    modelhub_telemetry::propagation::set_parent_from_headers(&span, req.headers());
    let resp = STARTED
        .scope(started, async move {
            match tokio::time::timeout(limit, next.run(req)).await {
                Ok(r) => r,
                Err(_) => ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "Timeout error: the request took longer than {} s",
                        limit.as_secs()
                    ),
                )
                .into_response(),
            }
        })
        .instrument(span.clone())
        .await;
    span.record("http.status_code", resp.status().as_u16());
    st.metrics.observe_http(
        &route,
        method.as_str(),
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not found: no such route")
}

/// The whole REST API.
pub fn router(st: AppState) -> Router {
    let c = "/collections/{collection_name}";
    let api = Router::new()
        .route("/collections", get(collections::list))
        .route("/cluster", get(cluster_status))
        .route(
            c,
            get(collections::get_one)
                .put(collections::create)
                .patch(collections::update)
                .delete(collections::delete),
        )
        .route(&format!("{c}/exists"), get(collections::exists))
        .route(&format!("{c}/index"), put(collections::create_index))
        .route(
            &format!("{c}/index/{{field_name}}"),
            delete(collections::delete_index),
        )
        .route(
            &format!("{c}/points"),
            put(points::upsert).post(points::get_many),
        )
        .route(&format!("{c}/points/{{id}}"), get(points::get_one))
        .route(&format!("{c}/points/delete"), post(points::delete))
        .route(
            &format!("{c}/points/payload"),
            post(points::set_payload).put(points::overwrite_payload),
        )
        .route(
            &format!("{c}/points/payload/delete"),
            post(points::delete_payload),
        )
        .route(
            &format!("{c}/points/payload/clear"),
            post(points::clear_payload),
        )
        .route(&format!("{c}/points/scroll"), post(points::scroll))
        .route(&format!("{c}/points/count"), post(points::count))
        .route(&format!("{c}/points/search"), post(query::search))
        .route(
            &format!("{c}/points/search/batch"),
            post(query::search_batch),
        )
        .route(&format!("{c}/points/query"), post(query::query))
        .route(&format!("{c}/points/query/batch"), post(query::query_batch))
        .route(
            &format!("{c}/snapshots"),
            get(snapshots::list).post(snapshots::create),
        )
        .route(
            &format!("{c}/snapshots/upload"),
            post(snapshots::upload)
                .layer(axum::extract::DefaultBodyLimit::max(st.max_upload_bytes)),
        )
        .route(&format!("{c}/snapshots/recover"), put(snapshots::recover))
        .route(
            &format!("{c}/snapshots/{{snapshot_name}}"),
            get(snapshots::download).delete(snapshots::delete),
        );
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(st.max_body_bytes))
        .layer(middleware::from_fn_with_state(st.clone(), auth))
        .route_layer(middleware::from_fn_with_state(st.clone(), observe))
        .with_state(st)
}

/// `?wait=` of write requests: Qdrant answers `completed` when waiting, `acknowledged`
/// otherwise. vectorforge applies every write before answering either way.
pub fn update_result(seq: u64, headers_wait: bool) -> Value {
    json!({"operation_id": seq, "status": if headers_wait { "completed" } else { "acknowledged" }})
}
