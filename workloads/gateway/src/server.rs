//! Runs the two listeners over one [`Gateway`] until shutdown: REST (axum) and gRPC
//! (tonic). On shutdown `/readyz` turns 503 first, then both servers stop accepting and
//! drain in-flight requests, bounded by the drain timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use oip::grpc::pb::grpc_inference_service_server::GrpcInferenceServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::grpc::GrpcProxy;
use crate::state::Gateway;

/// A listener could not be set up or a server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("REST server failed: {0}")]
    Rest(#[source] std::io::Error),
    #[error("gRPC server failed: {0}")]
    Grpc(#[source] tonic::transport::Error),
}

/// Binds both ports (fails fast if either is taken).
pub async fn bind(
    http: SocketAddr,
    grpc: SocketAddr,
) -> Result<(TcpListener, TcpListener), ServeError> {
    let h = TcpListener::bind(http)
        .await
        .map_err(|source| ServeError::Bind { addr: http, source })?;
    let g = TcpListener::bind(grpc)
        .await
        .map_err(|source| ServeError::Bind { addr: grpc, source })?;
    Ok((h, g))
}

/// Serves until `shutdown` resolves, then drains for at most `drain`.
pub async fn serve(
    gw: Arc<Gateway>,
    http: TcpListener,
    grpc: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let gw_for_signal = Arc::clone(&gw);
    tokio::spawn(async move {
        shutdown.await;
        gw_for_signal.drain();
        let _ = stop_tx.send(true);
    });
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let app =
        crate::rest::router(Arc::clone(&gw)).into_make_service_with_connect_info::<SocketAddr>();
    let rest = axum::serve(http, app).with_graceful_shutdown(wait(stop_rx.clone()));
    let grpc_service = GrpcInferenceServiceServer::new(GrpcProxy::new(Arc::clone(&gw)))
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let grpc = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(grpc_service)
        .serve_with_incoming_shutdown(tokio_stream_from(grpc), wait(stop_rx.clone()));
    let both = async {
        let (r, g) = tokio::join!(rest, grpc);
        r.map_err(ServeError::Rest)?;
        g.map_err(ServeError::Grpc)
    };
    tokio::select! {
        res = both => res,
        () = async {
            wait(stop_rx).await;
            tokio::time::sleep(drain).await;
        } => {
            tracing::warn!(?drain, "drain timeout: closing with requests in flight");
            Ok(())
        }
    }
}

fn tokio_stream_from(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((r, l))
    })
}
