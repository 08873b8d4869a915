//! The `gateway` binary: parses the operator's flags, starts the policy source (the
//! Kubernetes API, or a static file), and serves OIP REST and gRPC until SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use gateway::cli::Args;
use gateway::mirror::Mirror;
use gateway::policy::ApiKey;
use gateway::state::Gateway;
use gateway::stats::Stats;
use gateway::upstream::Upstreams;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = modelhub_telemetry::init("gateway", args.log_format)?;
    let stats = Arc::new(Stats::new().context("cannot register metrics")?);
    let upstreams = Arc::new(Upstreams::new(stats, args.request_timeout()));
    let mirror = Mirror::start(
        Arc::clone(&upstreams),
        args.mirror_queue,
        args.mirror_concurrency,
    );
    let (tx, rx) = watch::channel(None);
    let api_key = std::env::var(modelhub_contract::gateway::API_KEY_ENV)
        .ok()
        .filter(|k| !k.trim().is_empty())
        .map(|k| ApiKey(k.trim().to_owned()));
    if api_key.is_some() {
        tracing::info!("API key authentication on");
    }
    if let Some(path) = &args.policy_file {
        gateway::source_file::start(
            path.clone(),
            tx,
            Duration::from_millis(args.policy_poll_ms.max(10)),
            api_key,
        )?;
    } else if let Some(policy) = &args.policy {
        let namespace = std::env::var(modelhub_contract::gateway::NAMESPACE_ENV)
            .context("POD_NAMESPACE must name the TrafficPolicy's namespace")?;
        gateway::source_kube::start(namespace, policy.clone(), api_key, tx)
            .await
            .context("cannot start the Kubernetes policy source")?;
    }
    let gw = Arc::new(Gateway::new(rx, upstreams, mirror));
    let (http, grpc) = gateway::server::bind(
        SocketAddr::new(args.bind, args.http_port),
        SocketAddr::new(args.bind, args.grpc_port),
    )
    .await?;
    tracing::info!(http = %http.local_addr()?, grpc = %grpc.local_addr()?, "gateway listening");
    gateway::server::serve(
        gw,
        http,
        grpc,
        modelhub_telemetry::shutdown_signal(),
        Duration::from_secs(args.drain_secs),
    )
    .await?;
    tracing::info!("gateway stopped");
    Ok(())
}
