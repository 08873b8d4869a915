//! The ModelHub gateway: the data plane of a TrafficPolicy. It routes Open Inference
//! Protocol v2 requests (REST and gRPC) over the policy's InferenceServices by header
//! rules, sticky keys and weights, mirrors a share of them, and records per-backend
//! figures for the operator's canary analysis.

pub mod bucket;
pub mod cli;
pub mod grpc;
pub mod guard;
pub mod mirror;
pub mod policy;
pub mod rest;
pub mod router;
pub mod server;
pub mod source_file;
pub mod source_kube;
pub mod state;
pub mod stats;
pub mod table;
pub mod upstream;
