//! The REST edge (port 8080): the gateway's own endpoints (`/metrics`, `/healthz`,
//! `/readyz`, `/stats?window=30s`) and the Open Inference Protocol paths under `/v2`,
//! forwarded as bytes (binary tensor extension and its `Inference-Header-Content-Length`
//! header included) to the routed backend. Failures the gateway itself raises answer
//! with the protocol's error body `{"error": "..."}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oip::ErrorBody;

use crate::guard::{self, Refusal};
use crate::mirror::MirrorJob;
use crate::state::Gateway;
use crate::stats::{Role, parse_window};
use crate::upstream::{RestRequest, UpstreamError};

/// Largest request body accepted (inference payloads can be large).
pub const MAX_BODY: usize = 256 * 1024 * 1024;

/// The REST router.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .fallback(proxy)
        .with_state(gw)
}

/// A protocol error body with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: message.into(),
    };
    (status, axum::Json(body)).into_response()
}

/// The answer to a refused request.
fn refused(r: &Refusal) -> Response {
    match r {
        Refusal::MissingKey | Refusal::WrongKey => {
            let mut resp = error(StatusCode::UNAUTHORIZED, r.to_string());
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
        Refusal::RateLimited { retry_after_secs } => {
            let mut resp = error(StatusCode::TOO_MANY_REQUESTS, r.to_string());
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            resp
        }
    }
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    if gw.ready() {
        "ok".into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    let text = modelhub_telemetry::metrics::render(&gw.upstreams.stats.registry);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(modelhub_telemetry::metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

async fn stats(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let window = match q.get("window") {
        None => 30,
        Some(w) => match parse_window(w) {
            Some(w) => w,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid window {w:?}: expected seconds like 30s or 2m"),
                );
            }
        },
    };
    axum::Json(gw.upstreams.stats.report(window)).into_response()
}

async fn proxy(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if path != "/v2" && !path.starts_with("/v2/") {
        return error(StatusCode::NOT_FOUND, format!("no route for {path}"));
    }
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Err(r) = gw.admit(&parts.headers, peer) {
        return refused(&r);
    }
    let is_infer = path.ends_with("/infer");
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.to_owned(), |pq| pq.as_str().to_owned());
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            );
        }
    };
    let (table, decision, mirror) = match gw.route(&parts.headers, is_infer) {
        Ok(r) => r,
        Err(e) => {
            gw.upstreams
                .stats
                .no_backend
                .with_label_values(&["rest"])
                .inc();
            return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    };
    let mut headers = parts.headers;
    if table.policy.api_key.is_some() {
        guard::strip_credentials(&mut headers);
    }
    modelhub_telemetry::propagation::inject_into_headers(&tracing::Span::current(), &mut headers);
    let request = RestRequest {
        method: parts.method,
        path_and_query,
        headers,
        body,
    };
    if let Some(m) = mirror {
        gw.mirror.submit(MirrorJob::Rest {
            table: Arc::clone(&table),
            backend: m,
            request: request.clone(),
        });
    }
    match gw
        .upstreams
        .rest(&table, decision.backend, Role::Primary, &request)
        .await
    {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            parts.headers.remove(header::TRANSFER_ENCODING);
            parts.headers.remove(header::CONNECTION);
            Response::from_parts(parts, Body::from(body))
        }
        Err(e) => {
            let status = match &e {
                UpstreamError::NoPods { .. } | UpstreamError::Unreachable { .. } => {
                    gw.upstreams
                        .stats
                        .no_backend
                        .with_label_values(&["rest"])
                        .inc();
                    StatusCode::SERVICE_UNAVAILABLE
                }
                UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                UpstreamError::Transport { .. } => StatusCode::BAD_GATEWAY,
            };
            tracing::warn!(error = %e, "request failed");
            error(status, e.to_string())
        }
    }
}
