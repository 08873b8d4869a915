//! Open Inference Protocol v2 over gRPC (port 8081): `inference.GRPCInferenceService`
//! with ServerLive/Ready, ModelReady, Server/ModelMetadata and ModelInfer, accepting
//! typed `contents` or `raw_input_contents` and answering with `raw_output_contents`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::error::InferError;
use crate::model::InferRequest;
use crate::repository::Repository;
use crate::tensor::{DataType, Tensor, TensorData};

/// Generated protocol types and service stubs.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("inference");
}

use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use pb::model_infer_request::InferInputTensor;
use pb::model_infer_response::InferOutputTensor;

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

/// Parses a `grpc-timeout` header value (`<digits><unit>`, unit one of H M S m u n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
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

fn bad(msg: String) -> InferError {
    InferError::BadRequest(msg)
}

fn narrow<S: Copy, T: TryFrom<S>>(name: &str, v: &[S]) -> Result<Vec<T>, InferError> {
    v.iter()
        .map(|x| T::try_from(*x).map_err(|_| bad(format!("input {name:?}: value out of range"))))
        .collect()
}

/// Decodes one input from typed `contents`.
fn from_contents(input: &InferInputTensor, dt: DataType) -> Result<TensorData, InferError> {
    let c = input
        .contents
        .as_ref()
        .ok_or_else(|| bad(format!("input {:?} has no contents", input.name)))?;
    let n = &input.name;
    Ok(match dt {
        DataType::Bool => TensorData::Bool(c.bool_contents.clone()),
        DataType::I8 => TensorData::I8(narrow(n, &c.int_contents)?),
        DataType::I16 => TensorData::I16(narrow(n, &c.int_contents)?),
        DataType::I32 => TensorData::I32(c.int_contents.clone()),
        DataType::I64 => TensorData::I64(c.int64_contents.clone()),
        DataType::U8 => TensorData::U8(narrow(n, &c.uint_contents)?),
        DataType::U16 => TensorData::U16(narrow(n, &c.uint_contents)?),
        DataType::U32 => TensorData::U32(c.uint_contents.clone()),
        DataType::U64 => TensorData::U64(c.uint64_contents.clone()),
        DataType::F32 => TensorData::F32(c.fp32_contents.clone()),
        DataType::F64 => TensorData::F64(c.fp64_contents.clone()),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents.iter().map(|b| b.to_vec()).collect()),
        DataType::F16 => {
            return Err(bad(format!(
                "input {n:?}: FP16 must be sent in raw_input_contents"
            )));
        }
    })
}

fn decode(req: pb::ModelInferRequest) -> Result<InferRequest, InferError> {
    let raw = &req.raw_input_contents;
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(bad(format!(
            "{} raw_input_contents for {} inputs",
            raw.len(),
            req.inputs.len()
        )));
    }
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (i, input) in req.inputs.iter().enumerate() {
        let dt = DataType::parse(&input.datatype).ok_or_else(|| {
            bad(format!(
                "input {:?}: unsupported datatype {:?}",
                input.name, input.datatype
            ))
        })?;
        let data = match raw.get(i) {
            Some(bytes) => TensorData::from_raw(&input.name, dt, bytes)?,
            None => from_contents(input, dt)?,
        };
        inputs.push(Tensor {
            name: input.name.clone(),
            shape: input.shape.clone(),
            data,
        });
    }
    let timeout = req
        .parameters
        .get("timeout")
        .and_then(|p| match p.parameter_choice {
            Some(pb::infer_parameter::ParameterChoice::Int64Param(us)) => u64::try_from(us).ok(),
            Some(pb::infer_parameter::ParameterChoice::Uint64Param(us)) => Some(us),
            _ => None,
        });
    Ok(InferRequest {
        id: (!req.id.is_empty()).then(|| req.id.clone()),
        inputs,
        outputs: req.outputs.iter().map(|o| o.name.clone()).collect(),
        deadline: timeout
            .filter(|t| *t > 0)
            .map(|t| Instant::now() + Duration::from_micros(t)),
    })
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
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "tinyinfer".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec!["binary_tensor_data".into(), "model_repository".into()],
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let model = self.repo.get(&r.name, version_opt(&r.version))?;
        let specs = |v: &[crate::runtime::TensorSpec]| {
            v.iter()
                .map(|s| pb::model_metadata_response::TensorMetadata {
                    name: s.name.clone(),
                    datatype: s.datatype.as_str().into(),
                    shape: s.shape.clone(),
                })
                .collect()
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: model.config.name.clone(),
            versions: self.repo.versions(&model.config.name),
            platform: "onnxruntime_onnx".into(),
            inputs: specs(&model.inputs),
            outputs: specs(&model.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let headers = request.metadata().clone().into_headers();
        let deadline = headers
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|d| Instant::now() + d);
        let req = request.into_inner();
        let span = tracing::info_span!("infer", protocol = "grpc", model = %req.model_name, version = %req.model_version);
        modelhub_telemetry::propagation::set_parent_from_headers(&span, &headers);
        async move {
            let name = req.model_name.clone();
            let version = req.model_version.clone();
            let mut decoded = decode(req)?;
            decoded.deadline = match (decoded.deadline, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let id = decoded.id.clone().unwrap_or_default();
            let (model, outputs) = self
                .repo
                .infer(&name, version_opt(&version), decoded)
                .await?;
            let mut response = pb::ModelInferResponse {
                model_name: model.config.name.clone(),
                model_version: model.config.version.clone(),
                id,
                ..Default::default()
            };
            for t in outputs {
                response.outputs.push(InferOutputTensor {
                    name: t.name.clone(),
                    datatype: t.datatype().as_str().into(),
                    shape: t.shape.clone(),
                    ..Default::default()
                });
                response.raw_output_contents.push(t.data.to_raw().into());
            }
            Ok(Response::new(response))
        }
        .instrument(span)
        .await
        .map_err(|e: InferError| e.into())
    }
}
