//! gRPC API (port 6334): ModelHub's vector API `modelhub.vectorforge.v1.VectorService`
//! (proto/vectorforge.proto) and the `grpc.health.v1` health service.
//!
//! The vector service calls the same collection service as REST and shares its
//! limits and API key: with a key
//! configured, every vector call must carry `api-key` or `authorization: Bearer`
//! metadata (checked by an interceptor before the request body is decoded); health
//! stays open. Messages larger than the REST body limit are refused (OUT_OF_RANGE).

mod convert;
mod service;

use std::sync::Arc;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::service::{Interceptor, Routes};
use tonic::{Code, Request, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::ApiKey;
use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::service::CollectionService;

/// Generated protocol types, server and client.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("modelhub.vectorforge.v1");
}

pub use pb::vector_service_server::SERVICE_NAME;
pub use service::VectorApi;

/// The gRPC status of a service error: the one place gRPC maps them. A `NotLeader`
/// names the leader in `leader` metadata so a client or proxy can forward the call.
pub fn status_of(e: ServiceError) -> Status {
    let code = match &e {
        ServiceError::NotFound(_) => Code::NotFound,
        ServiceError::Invalid(_) => Code::InvalidArgument,
        ServiceError::AlreadyExists(_) => Code::AlreadyExists,
        ServiceError::NotLeader { .. } | ServiceError::Unavailable(_) => Code::Unavailable,
        ServiceError::Internal(_) => Code::Internal,
    };
    let mut status = Status::new(code, e.to_string());
    if let ServiceError::NotLeader { leader: Some(l) } = &e
        && let Ok(v) = l.parse()
    {
        status.metadata_mut().insert("leader", v);
    }
    status
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        status_of(e)
    }
}

/// What the gRPC API needs: the collection service plus its own settings.
#[derive(Clone)]
pub struct GrpcState {
    pub service: CollectionService,
    pub metrics: Arc<Metrics>,
    pub api_key: Option<Arc<ApiKey>>,
    /// Deadline of a unary call.
    pub request_timeout: Duration,
    /// Largest request message (the REST body limit).
    pub max_message_bytes: usize,
}

/// Rejects vector-service calls without the configured API key.
#[derive(Clone)]
struct Auth {
    key: Option<Arc<ApiKey>>,
    metrics: Arc<Metrics>,
}

impl Interceptor for Auth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(key) = &self.key else { return Ok(req) };
        if key.accepts(&req.metadata().clone().into_headers()) {
            return Ok(req);
        }
        // the interceptor does not see the method: rejected calls share one label
        self.metrics
            .observe_grpc("unauthenticated", Code::Unauthenticated, Duration::ZERO);
        Err(Status::unauthenticated("Invalid API key or JWT"))
    }
}

/// Reports NOT_SERVING for every service once shutdown starts: on the same SIGTERM /
/// Ctrl-C that makes the server drain (every listener of a signal is notified).
fn report_shutdown(reporter: HealthReporter) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        modelhub_telemetry::shutdown_signal().await;
        for name in ["", SERVICE_NAME] {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        tracing::info!("gRPC health: NOT_SERVING");
    });
}

/// Every gRPC service of the server.
pub fn routes(st: GrpcState) -> Routes {
    let (reporter, health) = tonic_health::server::health_reporter();
    // "" starts SERVING; the fresh reporter's lock is free, so this completes at once
    futures::executor::block_on(reporter.set_service_status(SERVICE_NAME, ServingStatus::Serving));
    report_shutdown(reporter);
    let api = pb::vector_service_server::VectorServiceServer::new(VectorApi::new(st.clone()))
        .max_decoding_message_size(st.max_message_bytes);
    let auth = Auth {
        key: st.api_key.clone(),
        metrics: st.metrics.clone(),
    };
    Routes::new(health).add_service(InterceptedService::new(api, auth))
}
