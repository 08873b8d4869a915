//! The generated client and server talk to each other over loopback: an echo server
//! built on the server stub answers the client stub, and a request that is not valid
//! protobuf is the caller's error (INVALID_ARGUMENT), not the server's.

use bytes::{Buf, BufMut};
use oip::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use oip::grpc::pb::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use oip::grpc::{self, pb};
use oip::{InferRequest, InferResponse, Tensor, TensorData};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};

/// Answers ModelInfer with its inputs as outputs.
struct Echo;

#[tonic::async_trait]
impl GrpcInferenceService for Echo {
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
        Ok(Response::new(pb::ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        _: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        Ok(Response::new(pb::ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }

    async fn model_metadata(
        &self,
        _: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let req = request.into_inner();
        let decoded =
            grpc::decode_request(&req).map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(grpc::encode_response(InferResponse {
            model_name: req.model_name,
            model_version: req.model_version,
            id: decoded.id,
            outputs: decoded.inputs,
        })))
    }
}

/// Sends and receives bytes as they are, to put a malformed message on the wire.
#[derive(Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

async fn start() -> tonic::transport::Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(GrpcInferenceServiceServer::new(Echo))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn client_and_server_stubs_round_trip_an_inference() {
    let mut client = GrpcInferenceServiceClient::new(start().await);
    let request = InferRequest {
        id: Some("q".into()),
        inputs: vec![Tensor {
            name: "x".into(),
            shape: vec![1, 3],
            data: TensorData::F32(vec![1.0, 2.0, 3.0]),
        }],
        ..Default::default()
    };
    let reply = client
        .model_infer(grpc::encode_request("echo", "1", &request))
        .await
        .unwrap()
        .into_inner();
    let response = grpc::decode_response(&reply).unwrap();
    assert_eq!(response.model_name, "echo");
    assert_eq!(response.id.as_deref(), Some("q"));
    assert_eq!(response.outputs, request.inputs);
}

#[tokio::test]
async fn a_malformed_request_is_invalid_argument() {
    let mut raw = tonic::client::Grpc::new(start().await);
    raw.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/inference.GRPCInferenceService/ModelInfer",
    );
    // A field tag whose varint never ends.
    let status = raw
        .unary(Request::new(vec![0xff, 0xff, 0xff]), path, RawCodec)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("malformed protobuf message"),
        "{status:?}"
    );
}
