//! `modelhub-node-agent`: the development node agent (see the crate docs and README.md).
//! `modelhub-node-agent run` serves a Node; `modelhub-node-agent sandbox <spec>` is the
//! helper the agent re-executes to start each container process.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kube::runtime::events::{Recorder, Reporter};
use modelhub_node_agent::network::Network;
use modelhub_node_agent::pod::Deps;
use modelhub_node_agent::{AgentConfig, kubelet, node, scheduler};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "modelhub-node-agent",
    about = "Runs a cluster's pods as local processes (development only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register the node and run the pods bound to it.
    Run(RunArgs),
    /// Internal: set up a container's namespaces and exec its command.
    #[command(hide = true)]
    Sandbox { spec: PathBuf },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Node name to register.
    #[arg(long, env = "NODE_AGENT_NODE_NAME", default_value = "modelhub-local")]
    node_name: String,
    /// Root of volumes, pod directories and logs.
    #[arg(long, env = "NODE_AGENT_DATA_ROOT")]
    data_root: PathBuf,
    /// Directory of the built binaries that `ghcr.io/modelhub/<name>` images map to.
    #[arg(long, env = "NODE_AGENT_BIN_DIR")]
    bin_dir: PathBuf,
    /// Extra mapping `image-repository=/path/to/binary` (repeatable).
    #[arg(long = "image-map", value_parser = parse_map)]
    image_map: Vec<(String, PathBuf)>,
    /// Bridge that joins the pods' network namespaces.
    #[arg(long, default_value = "mhbr0")]
    bridge: String,
    /// The node's address on the pod network (first address of it).
    #[arg(long, default_value = "10.244.0.1")]
    gateway: Ipv4Addr,
    /// Prefix length of the pod network.
    #[arg(long, default_value_t = 16)]
    prefix_len: u8,
    /// Serve only namespaces starting with this prefix (default: all).
    #[arg(long, default_value = "")]
    namespace_prefix: String,
    /// First restart back-off in seconds (kubelet: 10).
    #[arg(long, default_value_t = 10)]
    backoff_seconds: u64,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    log_format: modelhub_telemetry::LogFormat,
}

fn parse_map(s: &str) -> Result<(String, PathBuf), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), PathBuf::from(v)))
        .ok_or_else(|| format!("expected image=path, got {s:?}"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Sandbox { spec } => modelhub_node_agent::sandbox::run(&spec),
        Command::Run(args) => tokio::runtime::Runtime::new()
            .context("starting the tokio runtime")?
            .block_on(run(args)),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let _telemetry = modelhub_telemetry::init("modelhub-node-agent", args.log_format)?;
    let kube_config = kube::Config::infer()
        .await
        .context("loading the kubeconfig")?;
    let apiserver_port = kube_config.cluster_url.port_u16().unwrap_or(443);
    let client = kube::Client::try_from(kube_config).context("building the API client")?;
    std::fs::create_dir_all(&args.data_root)
        .with_context(|| format!("creating {}", args.data_root.display()))?;
    let config = Arc::new(AgentConfig {
        node_name: args.node_name,
        data_root: std::fs::canonicalize(&args.data_root)?,
        bin_dir: args.bin_dir,
        image_map: args.image_map,
        bridge: args.bridge,
        gateway: args.gateway,
        prefix_len: args.prefix_len,
        apiserver_port,
        namespace_prefix: args.namespace_prefix,
        initial_backoff: Duration::from_secs(args.backoff_seconds.max(1)),
        max_backoff: Duration::from_secs(300),
        self_exe: std::env::current_exe().context("locating the agent executable")?,
    });
    let network = Arc::new(Network::new(&config));
    network.init().await.context("setting up the pod network")?;
    node::register(&client, &config)
        .await
        .context("registering the node")?;
    tracing::info!(node = %config.node_name, gateway = %config.gateway, "node registered");

    let shutdown = CancellationToken::new();
    let reporter = Reporter {
        controller: "kubelet".into(),
        instance: Some(config.node_name.clone()),
    };
    let deps = Deps {
        client: client.clone(),
        config: config.clone(),
        network,
        recorder: Recorder::new(client.clone(), reporter),
        shutdown: shutdown.clone(),
    };
    let heartbeat = tokio::spawn(node::heartbeat(
        client.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    let binder = tokio::spawn(scheduler::run(
        client.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    let kubelet = tokio::spawn(kubelet::run(deps));
    modelhub_telemetry::shutdown_signal().await;
    tracing::info!("shutting down: stopping every container");
    shutdown.cancel();
    let _ = kubelet.await;
    let _ = binder.await;
    let _ = heartbeat.await;
    if let Err(err) = modelhub_node_agent::volumes::reap_released(&client, &config).await {
        tracing::warn!(error = %err, "cannot reap released volumes");
    }
    tracing::info!("node agent stopped");
    Ok(())
}
