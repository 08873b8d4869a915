//! Sending one request to one backend: pick its least-loaded pod, send over a pooled
//! connection (keep-alive HTTP/1.1 for REST, one HTTP/2 channel per pod for gRPC), bound
//! it by the request's deadline, retry on another pod only when the connection could not
//! be made (nothing was sent), and record the outcome in [`Stats`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use oip::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use parking_lot::Mutex;
use tonic::transport::Channel;

use crate::stats::{Outcome, Role, Stats};
use crate::table::{InFlight, Protocol, Table};

/// Most pods tried for one request (the first plus retries after refused connections).
pub const MAX_ATTEMPTS: usize = 3;

/// Why a backend request produced no backend response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("backend {backend:?} has no ready pod serving {protocol}")]
    NoPods {
        backend: String,
        protocol: &'static str,
    },
    #[error("no pod of backend {backend:?} accepted a connection ({attempts} tried)")]
    Unreachable { backend: String, attempts: usize },
    #[error("backend {backend:?} did not answer within {timeout:?}")]
    Timeout { backend: String, timeout: Duration },
    #[error("backend {backend:?} failed: {message}")]
    Transport { backend: String, message: String },
}

/// A REST request to forward: everything but the pod address.
#[derive(Clone, Debug)]
pub struct RestRequest {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Clients to backend pods, shared by the proxies and the mirror.
pub struct Upstreams {
    http: Client<HttpConnector, Full<Bytes>>,
    channels: Mutex<HashMap<SocketAddr, Channel>>,
    pub stats: Arc<Stats>,
    /// Longest any backend request may take.
    pub timeout: Duration,
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and those the client sets itself.
const NOT_FORWARDED: [HeaderName; 8] = [
    header::CONNECTION,
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
];

/// The end-to-end headers of `headers` (the trace context among them).
pub fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for h in &NOT_FORWARDED {
        out.remove(h);
    }
    out.remove("keep-alive");
    out.remove("proxy-connection");
    out
}

impl Upstreams {
    pub fn new(stats: Arc<Stats>, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        Self {
            http,
            channels: Mutex::new(HashMap::new()),
            stats,
            timeout,
        }
    }

    fn pick(
        &self,
        table: &Table,
        backend: usize,
        proto: Protocol,
        tried: &[SocketAddr],
    ) -> Result<InFlight, UpstreamError> {
        let name = &table.policy.backends[backend].name;
        table
            .pick(backend, proto, tried, &mut rand::rng())
            .ok_or_else(|| {
                if tried.is_empty() {
                    UpstreamError::NoPods {
                        backend: name.clone(),
                        protocol: proto.label(),
                    }
                } else {
                    UpstreamError::Unreachable {
                        backend: name.clone(),
                        attempts: tried.len(),
                    }
                }
            })
    }

    /// Sends a REST request to `backend`; the response body is read in full.
    pub async fn rest(
        &self,
        table: &Table,
        backend: usize,
        role: Role,
        req: &RestRequest,
    ) -> Result<http::Response<Bytes>, UpstreamError> {
        let name = table.policy.backends[backend].name.as_str();
        let deadline = Instant::now() + self.timeout;
        let mut tried = Vec::new();
        loop {
            let pod = match self.pick(table, backend, Protocol::Rest, &tried) {
                Ok(pod) => pod,
                Err(e) => {
                    if !tried.is_empty() {
                        // Every pod refused: a failed request of this backend.
                        self.stats
                            .record(name, "rest", role, Outcome::Transport, Duration::ZERO);
                    }
                    return Err(e);
                }
            };
            let mut builder = http::Request::builder()
                .method(req.method.clone())
                .uri(format!("http://{}{}", pod.addr, req.path_and_query));
            if let Some(h) = builder.headers_mut() {
                *h = forwardable(&req.headers);
            }
            let outgoing = builder.body(Full::new(req.body.clone())).map_err(|e| {
                UpstreamError::Transport {
                    backend: name.to_owned(),
                    message: e.to_string(),
                }
            })?;
            let start = Instant::now();
            let sent = tokio::time::timeout_at(deadline.into(), async {
                let resp = self.http.request(outgoing).await?;
                let (parts, body) = resp.into_parts();
                let body = body.collect().await?.to_bytes();
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http::Response::from_parts(
                    parts, body,
                ))
            })
            .await;
            let latency = start.elapsed();
            let record = |o| self.stats.record(name, "rest", role, o, latency);
            match sent {
                Err(_) => {
                    record(Outcome::Timeout);
                    return Err(UpstreamError::Timeout {
                        backend: name.to_owned(),
                        timeout: self.timeout,
                    });
                }
                Ok(Ok(resp)) => {
                    record(if resp.status().is_server_error() {
                        Outcome::ServerError
                    } else {
                        Outcome::Ok
                    });
                    return Ok(resp);
                }
                Ok(Err(err)) => {
                    let connect = err
                        .downcast_ref::<hyper_util::client::legacy::Error>()
                        .is_some_and(hyper_util::client::legacy::Error::is_connect);
                    if connect {
                        tracing::debug!(backend = name, pod = %pod.addr, error = %err, "connect failed");
                        self.stats.record_connect_failure(name, "rest", role);
                        pod.eject();
                        tried.push(pod.addr);
                        if tried.len() < MAX_ATTEMPTS && Instant::now() < deadline {
                            continue;
                        }
                        record(Outcome::Transport);
                        return Err(UpstreamError::Unreachable {
                            backend: name.to_owned(),
                            attempts: tried.len(),
                        });
                    }
                    record(Outcome::Transport);
                    return Err(UpstreamError::Transport {
                        backend: name.to_owned(),
                        message: error_chain(&*err),
                    });
                }
            }
        }
    }

    /// The pooled HTTP/2 channel to a pod's gRPC port (connected on first use).
    pub fn grpc_client(&self, addr: SocketAddr) -> GrpcInferenceServiceClient<Channel> {
        let channel = self
            .channels
            .lock()
            .entry(addr)
            .or_insert_with(|| {
                // A socket address always makes a valid URI.
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .map(|e| {
                        e.tcp_nodelay(true)
                            .connect_timeout(Duration::from_secs(2))
                            .http2_keep_alive_interval(Duration::from_secs(30))
                            .connect_lazy()
                    })
                    .unwrap_or_else(|_| {
                        tonic::transport::Endpoint::from_static("http://0.0.0.0:1").connect_lazy()
                    })
            })
            .clone();
        GrpcInferenceServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    /// Picks a gRPC pod of `backend` (see [`Self::rest`] for the retry rule).
    pub fn pick_grpc(
        &self,
        table: &Table,
        backend: usize,
        tried: &[SocketAddr],
    ) -> Result<InFlight, UpstreamError> {
        self.pick(table, backend, Protocol::Grpc, tried)
    }
}

/// `err` and its sources, joined.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

/// Whether a gRPC error means the connection could not be made (nothing was sent).
pub fn is_connect_failure(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            )
        {
            return true;
        }
        if e.to_string().contains("tcp connect error") {
            return true;
        }
        cur = e.source();
    }
    false
}
