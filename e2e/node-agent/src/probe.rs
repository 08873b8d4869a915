//! Container probes as the kubelet runs them: httpGet, tcpSocket and grpc (the standard
//! `grpc.health.v1.Health/Check`) against the pod's address, with thresholds and periods
//! (`exec` probes need the container's sandbox and live in [`crate::container`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Outcome of one probe attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// Timing and thresholds of a probe, with the kubelet's defaults.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Self {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Resolves a numeric or named container port.
fn port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("no container port named {name:?}")),
    }
}

/// Runs one attempt of `probe` against the container at `ip`.
pub async fn check(probe: &Probe, container: &Container, ip: Ipv4Addr) -> Outcome {
    let timeout = Timing::of(probe).timeout;
    match tokio::time::timeout(timeout, attempt(probe, container, ip)).await {
        Ok(Ok(())) => Outcome::Success,
        Ok(Err(msg)) => Outcome::Failure(msg),
        Err(_) => Outcome::Failure(format!("timed out after {}s", timeout.as_secs())),
    }
}

async fn attempt(probe: &Probe, container: &Container, ip: Ipv4Addr) -> Result<(), String> {
    if let Some(h) = &probe.http_get {
        let p = port(container, &h.port)?;
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        return http_get(SocketAddr::from((ip, p)), &path, h).await;
    }
    if let Some(t) = &probe.tcp_socket {
        let p = port(container, &t.port)?;
        return TcpStream::connect((ip, p))
            .await
            .map(|_| ())
            .map_err(|e| format!("dial tcp {ip}:{p}: {e}"));
    }
    if let Some(g) = &probe.grpc {
        let p = u16::try_from(g.port).map_err(|_| format!("invalid port {}", g.port))?;
        return grpc_health(
            SocketAddr::from((ip, p)),
            g.service.clone().unwrap_or_default(),
        )
        .await;
    }
    if probe.exec.is_some() {
        return Err("exec probes run through the container (crate::container)".into());
    }
    Err("probe has no handler".into())
}

async fn http_get(
    addr: SocketAddr,
    path: &str,
    h: &k8s_openapi::api::core::v1::HTTPGetAction,
) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("Get \"http://{addr}{path}\": {e}"))?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.35\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for hdr in h.http_headers.iter().flatten() {
        req.push_str(&format!("{}: {}\r\n", hdr.name, hdr.value));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 4096 {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("malformed HTTP response from {addr}"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

async fn grpc_health(addr: SocketAddr, service: String) -> Result<(), String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("failed to connect service {addr}: {e}"))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let resp = grpc
        .unary(
            tonic::Request::new(HealthCheckRequest { service }),
            path,
            codec,
        )
        .await
        .map_err(|s| format!("health rpc failed: {}", s.message()))?;
    match resp.into_inner().status {
        1 => Ok(()),
        other => Err(format!("service unhealthy (responded with status {other})")),
    }
}
