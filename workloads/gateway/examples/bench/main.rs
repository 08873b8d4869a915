//! `make bench-gateway`: latency and throughput of `mlp` inferences through the gateway
//! against the same tinyinfer called directly, REST and gRPC, 64 concurrent clients,
//! measured in one run side by side, and through nginx doing the same job (the peer,
//! when nginx is installed: `nginx.rs`). Prints figures; asserts nothing about timing.
//! Needs TINYINFER_BIN, GATEWAY_BIN (release builds), ORT_DYLIB_PATH, TINYINFER_MODELS_DIR.

#[path = "../../tests/common/mod.rs"]
mod common;
mod nginx;

use std::time::{Duration, Instant};

use common::{Backend, Gateway, Http, grpc_infer};
use gateway::policy::{BackendSpec, PolicySpec};

const CLIENTS: usize = 64;

struct Figures {
    p50: Duration,
    p99: Duration,
    rps: f64,
    errors: usize,
}

async fn measure<F, Fut>(per_client: usize, call: F) -> Figures
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_client);
                let mut errors = 0;
                for _ in 0..per_client {
                    let t = Instant::now();
                    if !call().await {
                        errors += 1;
                    }
                    lat.push(t.elapsed());
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("client task");
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    let q = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Figures {
        p50: q(0.5),
        p99: q(0.99),
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        errors,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    let per_client: usize = std::env::var("BENCH_REQUESTS_PER_CLIENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let backend = Backend::start("1").await;
    let policy = PolicySpec {
        backends: vec![BackendSpec {
            name: "a".into(),
            service: "a".into(),
            weight: 100,
            endpoints: vec![backend.endpoint()],
        }],
        ..Default::default()
    };
    let gw = Gateway::start(&policy).await;
    let http = Http::new();
    let rest = |base: String| {
        let http = http.clone();
        move || {
            let (http, base) = (http.clone(), base.clone());
            async move { http.infer(&base, &[]).await.is_ok() }
        }
    };
    let grpc =
        |client: oip::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient<
            tonic::transport::Channel,
        >| {
            move || {
                let mut c = client.clone();
                async move { c.model_infer(grpc_infer(&[])).await.is_ok() }
            }
        };
    let direct_grpc =
        oip::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient::connect(format!(
            "http://{}",
            backend.grpc
        ))
        .await
        .expect("connect to tinyinfer");
    let gw_grpc = gw.grpc_client().await;
    let direct_base = format!("http://{}", backend.http);
    let peer = match nginx::binary() {
        Some(bin) => match nginx::Nginx::start(&bin, backend.http, backend.grpc) {
            Ok(n) => {
                println!("peer: {}", nginx::Nginx::version(&bin));
                Some(n)
            }
            Err(e) => {
                println!("peer: nginx did not start ({e}); its rows are skipped");
                None
            }
        },
        None => {
            println!(
                "peer: nginx not installed (BENCH_NGINX or /usr/sbin/nginx); its rows are skipped"
            );
            None
        }
    };
    let peer_base = peer.as_ref().map(|n| format!("http://{}", n.http));
    let peer_grpc = match &peer {
        Some(n) => Some(
            oip::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient::connect(
                format!("http://{}", n.grpc),
            )
            .await
            .expect("connect to nginx"),
        ),
        None => None,
    };
    // Warm-up: connections, ONNX Runtime's first runs.
    measure(10, rest(direct_base.clone())).await;
    measure(10, rest(gw.url(""))).await;
    measure(10, grpc(direct_grpc.clone())).await;
    measure(10, grpc(gw_grpc.clone())).await;
    if let (Some(base), Some(client)) = (&peer_base, &peer_grpc) {
        measure(10, rest(base.clone())).await;
        measure(10, grpc(client.clone())).await;
    }

    println!("mlp inference, {CLIENTS} concurrent clients, {per_client} requests each");
    println!(
        "{:<6} {:<8} {:>9} {:>9} {:>10} {:>7} {:>13} {:>13} {:>11}",
        "proto",
        "path",
        "p50 ms",
        "p99 ms",
        "req/s",
        "errors",
        "p50 added ms",
        "p99 added ms",
        "throughput"
    );
    for proto in ["rest", "grpc"] {
        // One path after the other, each with all 64 clients: direct, gateway, peer.
        let mut rows: Vec<(&str, Figures)> = Vec::new();
        if proto == "rest" {
            rows.push((
                "direct",
                measure(per_client, rest(direct_base.clone())).await,
            ));
            rows.push(("gateway", measure(per_client, rest(gw.url(""))).await));
            if let Some(base) = &peer_base {
                rows.push(("nginx", measure(per_client, rest(base.clone())).await));
            }
        } else {
            rows.push((
                "direct",
                measure(per_client, grpc(direct_grpc.clone())).await,
            ));
            rows.push(("gateway", measure(per_client, grpc(gw_grpc.clone())).await));
            if let Some(client) = &peer_grpc {
                rows.push(("nginx", measure(per_client, grpc(client.clone())).await));
            }
        }
        let direct = (rows[0].1.p50, rows[0].1.p99, rows[0].1.rps);
        for (path, f) in &rows {
            let (added50, added99, ratio) = if *path == "direct" {
                (String::new(), String::new(), String::new())
            } else {
                (
                    format!(
                        "{:.3}",
                        (f.p50.as_secs_f64() - direct.0.as_secs_f64()) * 1e3
                    ),
                    format!(
                        "{:.3}",
                        (f.p99.as_secs_f64() - direct.1.as_secs_f64()) * 1e3
                    ),
                    format!("{:.2}x", f.rps / direct.2),
                )
            };
            println!(
                "{proto:<6} {path:<8} {:>9} {:>9} {:>10.0} {:>7} {added50:>13} {added99:>13} {ratio:>11}",
                ms(f.p50),
                ms(f.p99),
                f.rps,
                f.errors
            );
        }
    }
    drop(peer);
    drop(gw);
    drop(backend);
}
