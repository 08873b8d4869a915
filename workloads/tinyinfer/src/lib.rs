//! tinyinfer: an ONNX Runtime inference server speaking the Open Inference Protocol v2
//! over REST and gRPC, with a model repository, dynamic batching and a text embedding
//! pipeline. The binary (`main.rs`) wires these modules to the command line.

pub mod batcher;
pub mod codec;
pub mod config;
pub mod embedding;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod model;
pub mod repository;
pub mod rest;
pub mod runtime;
pub mod storage;
pub mod tensor;
