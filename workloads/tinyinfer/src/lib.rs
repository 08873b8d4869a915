//! tinyinfer: an ONNX Runtime inference server speaking the Open Inference Protocol v2
//! over REST and gRPC, with a model repository, dynamic batching and a text embedding
//! pipeline. The protocol itself (tensors, codecs, gRPC stubs) is the `oip` crate; the
//! batcher runs any [`engine::Model`], ONNX Runtime ([`runtime::OrtModel`]) in production.
//! The binary (`main.rs`) wires these modules to the command line.

pub mod batcher;
pub mod config;
pub mod embedding;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod model;
pub mod quantize;
pub mod repository;
pub mod rest;
pub mod runtime;
pub mod storage;
