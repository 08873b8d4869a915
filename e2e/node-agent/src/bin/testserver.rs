//! `node-agent-testserver`: the small workload the node agent's tests run. It answers HTTP on
//! `--port` (`/healthz`, `/readyz`, `/info`, `/ready/true|false` to flip readiness,
//! `/healthz/false` to fail liveness (and the gRPC health service on `--grpc-port`), `/exit`,
//! `/api` to check the API server is reachable from the pod, `/whoami` to ask it who the
//! pod is with its service-account token),
//! counts its starts in `<data-dir>/starts` (to prove a PVC survives pod deletion), with
//! `--beside FILE` refuses to start unless FILE lies beside its own binary (as tinyinfer
//! needs ONNX Runtime) and serves its content at `/beside`, and exits cleanly on SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Directory to count starts in (a PVC in the tests).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Also serve `grpc.health.v1.Health` on this port (SERVING until `/healthz/false`).
    #[arg(long)]
    grpc_port: Option<u16>,
    /// A file that must lie beside this binary (found through its own path, as a program
    /// finds a shared library it ships with); served at `/beside`.
    #[arg(long)]
    beside: Option<String>,
}

struct State {
    grpc_health: tonic_health::server::HealthReporter,
    ready: AtomicBool,
    healthy: AtomicBool,
    starts: u64,
    beside: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry =
        modelhub_telemetry::init("node-agent-testserver", modelhub_telemetry::LogFormat::Text)?;
    let args = Args::parse();
    let mut starts = 0;
    if let Some(dir) = &args.data_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join("starts");
        starts = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0u64)
            + 1;
        std::fs::write(&file, starts.to_string()).context("writing the start counter")?;
    }
    let beside = match &args.beside {
        Some(name) => {
            let exe = std::env::current_exe().context("own path")?;
            let path = exe.parent().unwrap_or(&exe).join(name);
            std::fs::read_to_string(&path)
                .with_context(|| format!("{} (beside {})", path.display(), exe.display()))?
        }
        None => String::new(),
    };
    let (grpc_health, grpc_service) = tonic_health::server::health_reporter();
    grpc_health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    if let Some(port) = args.grpc_port {
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(grpc_service)
                .serve(addr)
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "gRPC health server failed");
            }
        });
    }
    let state = Arc::new(State {
        grpc_health,
        ready: AtomicBool::new(true),
        healthy: AtomicBool::new(true),
        starts,
        beside,
    });
    let listener = TcpListener::bind(("0.0.0.0", args.port))
        .await
        .context("binding")?;
    tracing::info!(port = args.port, starts, pod = %env("POD_NAME"), ip = %env("POD_IP"), "listening");
    let serve = async {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (code, body) = match path.as_str() {
                    "/healthz" if state.healthy.load(Ordering::SeqCst) => (200, "ok".to_owned()),
                    "/healthz" => (503, "unhealthy".to_owned()),
                    "/healthz/false" => {
                        state.healthy.store(false, Ordering::SeqCst);
                        state
                            .grpc_health
                            .set_service_status("", tonic_health::ServingStatus::NotServing)
                            .await;
                        (200, "ok".to_owned())
                    }
                    "/readyz" if state.ready.load(Ordering::SeqCst) => (200, "ready".to_owned()),
                    "/readyz" => (503, "not ready".to_owned()),
                    "/ready/true" => { state.ready.store(true, Ordering::SeqCst); (200, "ok".to_owned()) }
                    "/ready/false" => { state.ready.store(false, Ordering::SeqCst); (200, "ok".to_owned()) }
                    "/exit" => std::process::exit(3),
                    "/beside" => (200, state.beside.clone()),
                    "/whoami" => match whoami().await {
                        Ok(user) => (200, user),
                        Err(e) => (503, format!("{e:#}")),
                    },
                    "/api" => {
                        let addr = format!("{}:{}", env("KUBERNETES_SERVICE_HOST"), env("KUBERNETES_SERVICE_PORT"));
                        match tokio::net::TcpStream::connect(&addr).await {
                            Ok(_) => (200, format!("connected to {addr}")),
                            Err(e) => (503, format!("cannot connect to {addr}: {e}")),
                        }
                    }
                    _ => (200, serde_json::json!({
                        "pod": env("POD_NAME"), "namespace": env("POD_NAMESPACE"), "ip": env("POD_IP"),
                        "node": env("NODE_NAME"), "version": env("VERSION"), "secret": env("SECRET_VALUE"),
                        "config": env("CONFIG_VALUE"), "pid": std::process::id(), "starts": state.starts,
                        "hostname": std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
                        "exe": std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
                        "mounted_config": std::fs::read_to_string("/etc/testserver/greeting").unwrap_or_default(),
                    }).to_string()),
                };
                let reason = if code == 200 {
                    "OK"
                } else {
                    "Service Unavailable"
                };
                let resp = format!(
                    "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    };
    tokio::select! {
        _ = serve => {}
        _ = modelhub_telemetry::shutdown_signal() => tracing::info!("SIGTERM: exiting"),
    }
    Ok(())
}

/// Who the API server says this pod is, through the in-cluster configuration (service
/// account token, CA and `KUBERNETES_SERVICE_HOST/PORT`), as the workloads' clients do.
async fn whoami() -> anyhow::Result<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let config = kube::Config::incluster().context("in-cluster config")?;
    let client = kube::Client::try_from(config).context("client")?;
    let api: kube::Api<SelfSubjectReview> = kube::Api::all(client);
    let review: SelfSubjectReview = serde_json::from_value(serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}
    }))?;
    let resp = api
        .create(&kube::api::PostParams::default(), &review)
        .await
        .context("SelfSubjectReview")?;
    Ok(resp
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default())
}
