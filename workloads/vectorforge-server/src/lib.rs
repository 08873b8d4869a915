//! vectorforge server: collections of the vectorforge engine behind a Qdrant-compatible
//! REST API (6333) and ModelHub's gRPC vector API (6334), with API-key auth,
//! Prometheus metrics, snapshots and graceful shutdown.
//!
//! Layout: `params` (collection settings), `store` (engines of one collection kept
//! in step), `registry` (all collections on disk), `service` (the async collection
//! service every transport calls) with `error` (its typed error), `rest` and `grpc`
//! (the two APIs, mapping errors to statuses), `server` (wiring, background
//! maintenance, shutdown).

pub mod auth;
pub mod backup;
pub mod cluster;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod params;
pub mod registry;
pub mod replication;
pub mod rest;
pub mod server;
pub mod service;
pub mod status;
pub mod store;
