//! The Open Inference Protocol v2 (KServe / Triton) without an inference runtime: tensor
//! datatypes and data ([`tensor`]), the transport-neutral messages ([`types`]), the REST
//! JSON bodies with the binary tensor data extension ([`rest`]) and the gRPC messages,
//! client and server stubs and their conversions ([`grpc`]). Servers (tinyinfer) and
//! proxies (the gateway) share it, so neither side depends on the other.

pub mod error;
pub mod grpc;
pub mod rest;
pub mod tensor;
pub mod types;

pub use error::{CodecError, Role};
pub use tensor::{DataType, Tensor, TensorData, TensorError};
pub use types::{
    ErrorBody, InferRequest, InferResponse, ModelMetadata, ServerMetadata, TensorSpec,
};
