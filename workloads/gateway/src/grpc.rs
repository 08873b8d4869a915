//! The gRPC edge (port 8081): `inference.GRPCInferenceService` served with the `oip`
//! crate's generated server and forwarded with its generated client over one pooled
//! HTTP/2 channel per backend pod. Routing reads the request metadata (HTTP/2 headers),
//! so header rules and sticky keys work as on REST; `ModelInfer` is mirrored. The
//! proto has no streaming call. A routing failure is UNAVAILABLE with the reason.
//! Admission comes first ([`crate::guard`], metadata as headers): UNAUTHENTICATED
//! without the right API key, RESOURCE_EXHAUSTED (with `retry-after` metadata) over
//! the client's rate.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use oip::grpc::pb;
use oip::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use oip::grpc::pb::grpc_inference_service_server::GrpcInferenceService;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::guard::{self, Refusal};
use crate::mirror::MirrorJob;
use crate::state::Gateway;
use crate::stats::{Outcome, Role};
use crate::upstream::{MAX_ATTEMPTS, UpstreamError, forwardable, is_connect_failure};

/// The gRPC proxy service.
pub struct GrpcProxy {
    gw: Arc<Gateway>,
}

impl GrpcProxy {
    pub fn new(gw: Arc<Gateway>) -> Self {
        Self { gw }
    }

    /// Routes and forwards one unary call; `call` performs it on a client.
    async fn forward<Q, R, F, Fut>(
        &self,
        req: Request<Q>,
        is_infer: bool,
        call: F,
    ) -> Result<Response<R>, Status>
    where
        Q: Clone + Send + 'static,
        F: Fn(GrpcInferenceServiceClient<Channel>, Request<Q>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
        MirrorPayload: From<Q>,
    {
        let up = &self.gw.upstreams;
        let mut headers = req.metadata().clone().into_headers();
        let peer = req.remote_addr().map(|a| a.ip());
        self.gw.admit(&headers, peer).map_err(|r| refused(&r))?;
        let timeout = headers
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(oip::grpc::parse_timeout)
            .map_or(up.timeout, |t| t.min(up.timeout));
        let span = tracing::info_span!("grpc_proxy");
        modelhub_telemetry::propagation::set_parent_from_headers(&span, &headers);
        modelhub_telemetry::propagation::inject_into_headers(&span, &mut headers);
        let (table, decision, mirror) = self.gw.route(&headers, is_infer).map_err(|e| {
            up.stats.no_backend.with_label_values(&["grpc"]).inc();
            Status::unavailable(e.to_string())
        })?;
        let mut fwd = forwardable(&headers);
        if table.policy.api_key.is_some() {
            guard::strip_credentials(&mut fwd);
        }
        for h in [
            "grpc-timeout",
            "content-type",
            "user-agent",
            "grpc-accept-encoding",
        ] {
            fwd.remove(h);
        }
        let metadata = MetadataMap::from_headers(fwd);
        let message = req.into_inner();
        if let Some(m) = mirror
            && let MirrorPayload::Infer(request) = MirrorPayload::from(message.clone())
        {
            self.gw.mirror.submit(MirrorJob::Grpc {
                table: Arc::clone(&table),
                backend: m,
                metadata: metadata.clone(),
                request,
            });
        }
        let backend = decision.backend;
        let name = table.policy.backends[backend].name.as_str();
        let deadline = Instant::now() + timeout;
        let mut tried = Vec::new();
        loop {
            let pod = up.pick_grpc(&table, backend, &tried).map_err(|e| {
                up.stats.no_backend.with_label_values(&["grpc"]).inc();
                if !tried.is_empty() {
                    let zero = std::time::Duration::ZERO;
                    up.stats
                        .record(name, "grpc", Role::Primary, Outcome::Transport, zero);
                }
                Status::unavailable(e.to_string())
            })?;
            let mut out = Request::new(message.clone());
            *out.metadata_mut() = metadata.clone();
            let remaining = deadline.saturating_duration_since(Instant::now());
            out.set_timeout(remaining);
            let start = Instant::now();
            let result = tokio::time::timeout(remaining, call(up.grpc_client(pod.addr), out)).await;
            let latency = start.elapsed();
            let record = |o| up.stats.record(name, "grpc", Role::Primary, o, latency);
            match result {
                Err(_) => {
                    record(Outcome::Timeout);
                    let e = UpstreamError::Timeout {
                        backend: name.to_owned(),
                        timeout,
                    };
                    return Err(Status::deadline_exceeded(e.to_string()));
                }
                Ok(Ok(resp)) => {
                    record(Outcome::Ok);
                    return Ok(Response::new(resp.into_inner()));
                }
                Ok(Err(status)) if is_connect_failure(&status) => {
                    tracing::debug!(backend = name, pod = %pod.addr, %status, "connect failed");
                    up.stats.record_connect_failure(name, "grpc", Role::Primary);
                    pod.eject();
                    tried.push(pod.addr);
                    if tried.len() >= MAX_ATTEMPTS || Instant::now() >= deadline {
                        record(Outcome::Transport);
                        let e = UpstreamError::Unreachable {
                            backend: name.to_owned(),
                            attempts: tried.len(),
                        };
                        return Err(Status::unavailable(e.to_string()));
                    }
                }
                Ok(Err(status)) => {
                    record(if status.code() == tonic::Code::DeadlineExceeded {
                        Outcome::Timeout
                    } else {
                        Outcome::ServerError
                    });
                    // Only code, message and details travel back, not transport internals.
                    return Err(Status::with_details(
                        status.code(),
                        status.message(),
                        status.details().to_vec().into(),
                    ));
                }
            }
        }
    }
}

/// The status of a refused call.
fn refused(r: &Refusal) -> Status {
    match r {
        Refusal::MissingKey | Refusal::WrongKey => Status::unauthenticated(r.to_string()),
        Refusal::RateLimited { retry_after_secs } => {
            let mut s = Status::resource_exhausted(r.to_string());
            s.metadata_mut()
                .insert("retry-after", (*retry_after_secs).into());
            s
        }
    }
}

/// What of a request can be mirrored (only `ModelInfer`).
pub enum MirrorPayload {
    Infer(pb::ModelInferRequest),
    None,
}

macro_rules! not_mirrored {
    ($($t:ty),*) => {$(
        impl From<$t> for MirrorPayload {
            fn from(_: $t) -> Self {
                Self::None
            }
        }
    )*};
}
not_mirrored!(
    pb::ServerLiveRequest,
    pb::ServerReadyRequest,
    pb::ModelReadyRequest,
    pb::ServerMetadataRequest,
    pb::ModelMetadataRequest
);

impl From<pb::ModelInferRequest> for MirrorPayload {
    fn from(r: pb::ModelInferRequest) -> Self {
        Self::Infer(r)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for GrpcProxy {
    async fn server_live(
        &self,
        req: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        self.forward(req, false, |mut c, r| async move { c.server_live(r).await })
            .await
    }

    async fn server_ready(
        &self,
        req: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        self.forward(
            req,
            false,
            |mut c, r| async move { c.server_ready(r).await },
        )
        .await
    }

    async fn model_ready(
        &self,
        req: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        self.forward(req, false, |mut c, r| async move { c.model_ready(r).await })
            .await
    }

    async fn server_metadata(
        &self,
        req: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        self.forward(
            req,
            false,
            |mut c, r| async move { c.server_metadata(r).await },
        )
        .await
    }

    async fn model_metadata(
        &self,
        req: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        self.forward(
            req,
            false,
            |mut c, r| async move { c.model_metadata(r).await },
        )
        .await
    }

    async fn model_infer(
        &self,
        req: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        self.forward(req, true, |mut c, r| async move { c.model_infer(r).await })
            .await
    }
}
