//! The `tinyinfer` binary: parses the model configuration from flags / env, loads ONNX
//! Runtime and the models, and serves OIP v2 REST (8080) and gRPC (8081) until SIGTERM,
//! finishing in-flight batches before it exits.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tinyinfer::config::{FileConfig, ModelConfig};
use tinyinfer::metrics::Metrics;
use tinyinfer::repository::Repository;
use tinyinfer::storage::Storage;

/// ONNX Runtime inference server (Open Inference Protocol v2).
#[derive(Parser, Debug)]
#[command(name = "tinyinfer", version)]
struct Cli {
    /// A model as `name=...,version=...,uri=...[,key=value...]`; repeatable. In the env,
    /// several specs are separated by `;`.
    #[arg(long = "model", env = "TINYINFER_MODELS", value_delimiter = ';')]
    models: Vec<String>,
    /// JSON config (`{"models": [...]}`): a file path, or the JSON text itself.
    #[arg(long, env = modelhub_contract::tinyinfer::CONFIG_ENV)]
    config: Option<String>,
    /// Address to bind both servers to.
    #[arg(long, env = "TINYINFER_BIND", default_value = "0.0.0.0")]
    bind: std::net::IpAddr,
    #[arg(long, env = "TINYINFER_HTTP_PORT", default_value_t = 8080)]
    http_port: u16,
    #[arg(long, env = "TINYINFER_GRPC_PORT", default_value_t = 8081)]
    grpc_port: u16,
    /// Where downloaded models are cached.
    #[arg(long, env = modelhub_contract::tinyinfer::CACHE_DIR_ENV, default_value = "/models")]
    cache_dir: PathBuf,
    /// Largest model download accepted.
    #[arg(long, env = "TINYINFER_MAX_DOWNLOAD_BYTES", default_value_t = 4 << 30)]
    max_download_bytes: u64,
    /// Largest inference request body (REST and gRPC).
    #[arg(long, env = "TINYINFER_MAX_BODY_BYTES", default_value_t = 64 << 20)]
    max_body_bytes: usize,
    /// Log format: text or json.
    #[arg(long, env = "TINYINFER_LOG_FORMAT", default_value = "text")]
    log_format: modelhub_telemetry::LogFormat,
}

fn model_configs(cli: &Cli) -> anyhow::Result<Vec<ModelConfig>> {
    let mut models = Vec::new();
    if let Some(source) = &cli.config {
        models.extend(FileConfig::load(source)?.models);
    }
    for spec in cli.models.iter().filter(|s| !s.trim().is_empty()) {
        models.push(ModelConfig::parse_flag(spec)?);
    }
    Ok(models)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_none() {
        // ONNX Runtime logs every graph transformer at info; keep its chatter to warnings.
        // SAFETY: no other thread exists yet (the runtime is built below).
        unsafe { std::env::set_var("RUST_LOG", "info,ort=warn") };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tinyinfer: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> std::process::ExitCode {
    let _telemetry = match modelhub_telemetry::init("tinyinfer", cli.log_format) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("tinyinfer: cannot set up telemetry: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "tinyinfer stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let models = model_configs(&cli)?;
    // Fail early, once, with a clear message when the library is missing or too old.
    tinyinfer::runtime::environment()?;
    let metrics = Metrics::new().context("registering metrics")?;
    let storage = Storage::new(cli.cache_dir.clone(), cli.max_download_bytes);
    let repo = Repository::new(storage, metrics);
    for model in models {
        let repo = repo.clone();
        tokio::spawn(async move {
            // Failures are recorded in the repository and reported by readiness.
            let _ = repo.load(model).await;
        });
    }

    let http_addr = SocketAddr::new(cli.bind, cli.http_port);
    let grpc_addr = SocketAddr::new(cli.bind, cli.grpc_port);
    let http_listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("binding REST on {http_addr}"))?;
    let grpc_listener = tokio::net::TcpListener::bind(grpc_addr)
        .await
        .with_context(|| format!("binding gRPC on {grpc_addr}"))?;
    tracing::info!(%http_addr, %grpc_addr, "tinyinfer listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = {
        let repo = repo.clone();
        async move {
            modelhub_telemetry::shutdown_signal().await;
            repo.begin_shutdown();
            let _ = stop_tx.send(true);
        }
    };
    tokio::spawn(shutdown);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let rest = tinyinfer::rest::router(tinyinfer::rest::RestState {
        repo: repo.clone(),
        max_body_bytes: cli.max_body_bytes,
    });
    let rest_server =
        axum::serve(http_listener, rest).with_graceful_shutdown(wait_stop(stop_rx.clone()));
    let grpc_server = tinyinfer::grpc::serve(
        grpc_listener,
        repo.clone(),
        cli.max_body_bytes,
        wait_stop(stop_rx.clone()),
    );
    let (rest_result, grpc_result) = tokio::join!(rest_server, grpc_server);
    repo.close();
    rest_result.context("REST server")?;
    grpc_result.context("gRPC server")?;
    tracing::info!("tinyinfer stopped cleanly");
    Ok(())
}
