//! Open Inference Protocol v2 over gRPC (port 8081): `inference.GRPCInferenceService`
//! with ServerLive/Ready, ModelReady, Server/ModelMetadata and ModelInfer, accepting
//! typed `contents` or `raw_input_contents` and answering with `raw_output_contents`.
//! Messages, stubs and their conversions are `oip::grpc`'s; this module serves them.

use std::sync::Arc;
use std::time::Instant;

use oip::InferResponse;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::error::InferError;
use crate::model::InferRequest;
use crate::repository::Repository;

use oip::grpc::pb;
use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};

/// The gRPC service.
pub struct OipService {
    repo: Arc<Repository>,
}

/// Serves gRPC on `listener` until `shutdown` resolves (in-flight calls finish first).
pub async fn serve(
    listener: tokio::net::TcpListener,
    repo: Arc<Repository>,
    max_message_bytes: usize,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let service = GrpcInferenceServiceServer::new(OipService { repo })
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}

fn version_opt(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

#[tonic::async_trait]
impl GrpcInferenceService for OipService {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.repo.ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = request.into_inner();
        let ready = match self.repo.get(&r.name, version_opt(&r.version)) {
            Ok(_) => true,
            Err(InferError::NotReady(_)) => false,
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(crate::repository::server_metadata().into()))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let model = self.repo.get(&r.name, version_opt(&r.version))?;
        Ok(Response::new(self.repo.metadata(&model).into()))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let headers = request.metadata().clone().into_headers();
        let deadline = headers
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(oip::grpc::parse_timeout)
            .map(|d| Instant::now() + d);
        let req = request.into_inner();
        let span = tracing::info_span!("infer", protocol = "grpc", model = %req.model_name, version = %req.model_version);
        modelhub_telemetry::propagation::set_parent_from_headers(&span, &headers);
        async move {
            let name = req.model_name.clone();
            let version = req.model_version.clone();
            let mut decoded = InferRequest::from(oip::grpc::decode_request(&req)?);
            decoded.deadline = match (decoded.deadline, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let id = decoded.id.clone();
            let (model, outputs) = self
                .repo
                .infer(&name, version_opt(&version), decoded)
                .await?;
            let response = oip::grpc::encode_response(InferResponse {
                model_name: model.config.name.clone(),
                model_version: model.config.version.clone(),
                id,
                outputs,
            });
            Ok(Response::new(response))
        }
        .instrument(span)
        .await
        .map_err(|e: InferError| e.into())
    }
}
