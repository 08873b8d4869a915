//! gRPC API (port 6334): the `grpc.health.v1` health service and ModelHub's vector API.

use tonic::service::Routes;

use crate::rest::AppState;

/// Generated protocol types, server and client.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("modelhub.vectorforge.v1");
}

/// Every gRPC service of the server.
pub fn routes(_st: AppState) -> Routes {
    let (reporter, health) = tonic_health::server::health_reporter();
    drop(reporter);
    Routes::new(health)
}
