//! Loopback harness: real `tinyinfer` processes (each serving model `mlp` at a version
//! that tells which backend answered) and the real `gateway` binary with a static policy
//! file, plus small REST and gRPC clients. Needs `TINYINFER_BIN`, `ORT_DYLIB_PATH` and
//! `TINYINFER_MODELS_DIR` (`make test-gateway` sets them).

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway::policy::{EndpointSpec, PolicySpec};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use oip::grpc::pb;
use oip::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use oip::{InferRequest, Tensor, TensorData};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn env_path(var: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: run `make test-gateway`"));
    assert!(
        p.exists(),
        "{var}={} does not exist: run `make test-gateway`",
        p.display()
    );
    p
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(mut cmd: Command, dir: tempfile::TempDir) -> Proc {
    let log = dir.path().join("log");
    let f = std::fs::File::create(&log).expect("log file");
    let f2 = f.try_clone().expect("log file");
    let child = cmd
        .stdout(Stdio::from(f))
        .stderr(Stdio::from(f2))
        .spawn()
        .expect("spawn");
    Proc {
        child,
        log,
        _dir: dir,
    }
}

/// A tinyinfer process serving `mlp` at `version`.
pub struct Backend {
    pub proc: Proc,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
}

impl Backend {
    pub async fn start(version: &str) -> Self {
        let bin = env_path("TINYINFER_BIN");
        let models = env_path("TINYINFER_MODELS_DIR");
        env_path("ORT_DYLIB_PATH");
        let dir = tempfile::tempdir().expect("tempdir");
        let (hp, gp) = (free_port(), free_port());
        let mut cmd = Command::new(bin);
        cmd.args(["--bind", "127.0.0.1", "--http-port", &hp.to_string()])
            .args(["--grpc-port", &gp.to_string(), "--cache-dir"])
            .arg(dir.path().join("cache"))
            .arg("--model")
            .arg(format!(
                "name=mlp,version={version},uri=file://{}/mlp.onnx,maxBatchSize=32,maxQueueDelayUs=500",
                models.display()
            ))
            .env("RUST_LOG", "warn");
        let proc = spawn(cmd, dir);
        let b = Self {
            proc,
            http: SocketAddr::from(([127, 0, 0, 1], hp)),
            grpc: SocketAddr::from(([127, 0, 0, 1], gp)),
        };
        let http = Http::new();
        let url = format!("http://{}/v2/models/mlp/ready", b.http);
        wait_for("tinyinfer ready", Duration::from_secs(120), || async {
            http.get(&url).await.is_ok_and(|(s, _)| s == 200)
        })
        .await;
        b
    }

    pub fn endpoint(&self) -> EndpointSpec {
        EndpointSpec {
            http: Some(self.http),
            grpc: Some(self.grpc),
        }
    }
}

/// `GATEWAY_BIN`, else the binary cargo built for this test.
fn gateway_bin() -> PathBuf {
    std::env::var_os("GATEWAY_BIN")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_BIN_EXE_gateway").map(PathBuf::from))
        .expect("GATEWAY_BIN is not set")
}

/// The gateway binary over a policy file.
pub struct Gateway {
    pub proc: Proc,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub policy_path: PathBuf,
}

impl Gateway {
    pub async fn start(policy: &PolicySpec) -> Self {
        Self::start_with_env(policy, &[]).await
    }

    /// Like [`Gateway::start`], with extra environment variables.
    pub async fn start_with_env(policy: &PolicySpec, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy_path = dir.path().join("policy.json");
        std::fs::write(&policy_path, serde_json::to_vec(policy).unwrap()).unwrap();
        let (hp, gp) = (free_port(), free_port());
        let mut cmd = Command::new(gateway_bin());
        cmd.arg("--policy-file")
            .arg(&policy_path)
            .args(["--bind", "127.0.0.1", "--policy-poll-ms", "100"])
            .args([
                "--http-port",
                &hp.to_string(),
                "--grpc-port",
                &gp.to_string(),
            ])
            .args(["--request-timeout-ms", "20000"])
            .env(
                "RUST_LOG",
                std::env::var("GATEWAY_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().copied());
        let proc = spawn(cmd, dir);
        let g = Self {
            proc,
            http: SocketAddr::from(([127, 0, 0, 1], hp)),
            grpc: SocketAddr::from(([127, 0, 0, 1], gp)),
            policy_path,
        };
        let http = Http::new();
        let url = g.url("/readyz");
        wait_for("gateway ready", Duration::from_secs(30), || async {
            http.get(&url).await.is_ok_and(|(s, _)| s == 200)
        })
        .await;
        g
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Rewrites the policy file (atomically, so the poller never reads half a file).
    pub fn set_policy(&self, policy: &PolicySpec) {
        let tmp = self.policy_path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(policy).unwrap()).unwrap();
        std::fs::rename(&tmp, &self.policy_path).unwrap();
    }

    pub async fn stats(&self, http: &Http) -> serde_json::Value {
        let (s, body) = http.get(&self.url("/stats?window=300s")).await.unwrap();
        assert_eq!(s, 200);
        serde_json::from_slice(&body).unwrap()
    }

    pub async fn grpc_client(&self) -> GrpcInferenceServiceClient<tonic::transport::Channel> {
        GrpcInferenceServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .expect("connect to the gateway's gRPC port")
    }
}

/// `(requests, errors)` of `backend` with `role` in a `/stats` answer.
pub fn figures(stats: &serde_json::Value, backend: &str, role: &str) -> (u64, u64) {
    stats["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["name"] == backend && b["role"] == role)
        .map_or((0, 0), |b| {
            (
                b["requests"].as_u64().unwrap_or(0),
                b["errors"].as_u64().unwrap_or(0),
            )
        })
}

/// A pooled HTTP/1.1 client.
#[derive(Clone)]
pub struct Http(Client<HttpConnector, Full<Bytes>>);

impl Http {
    pub fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }

    pub async fn get(&self, url: &str) -> Result<(u16, Bytes), String> {
        self.send(http::Method::GET, url, &[], Bytes::new()).await
    }

    pub async fn send(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(u16, Bytes), String> {
        let (s, _, body) = self.send_full(method, url, headers, body).await?;
        Ok((s, body))
    }

    /// Like [`Http::send`], with the response headers.
    pub async fn send_full(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(u16, http::HeaderMap, Bytes), String> {
        let mut b = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = self.0.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let resp_headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, resp_headers, body))
    }

    /// POSTs one `mlp` inference; `Ok(model_version)` on 200, else `Err(status, body)`.
    pub async fn infer(&self, base: &str, headers: &[(&str, &str)]) -> Result<String, String> {
        let body = serde_json::to_vec(&infer_json()).unwrap();
        let (s, body) = self
            .send(
                http::Method::POST,
                &format!("{base}/v2/models/mlp/infer"),
                &[&[("content-type", "application/json")], headers].concat(),
                body.into(),
            )
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{s}: not JSON ({e}): {}", String::from_utf8_lossy(&body)))?;
        if s == 200 {
            Ok(v["model_version"].as_str().unwrap_or_default().to_owned())
        } else {
            Err(format!("{s}: {v}"))
        }
    }
}

pub fn infer_json() -> serde_json::Value {
    serde_json::json!({"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32",
        "data": (0..16).map(|i| i as f32 * 0.1).collect::<Vec<_>>()}]})
}

pub fn mlp_request() -> InferRequest {
    InferRequest {
        id: None,
        inputs: vec![Tensor {
            name: "input".into(),
            shape: vec![1, 16],
            data: TensorData::F32((0..16).map(|i| i as f32 * 0.1).collect()),
        }],
        outputs: vec![],
        timeout: None,
    }
}

pub fn grpc_infer(
    headers: &[(&'static str, &'static str)],
) -> tonic::Request<pb::ModelInferRequest> {
    let mut req = tonic::Request::new(oip::grpc::encode_request("mlp", "", &mlp_request()));
    for (k, v) in headers {
        req.metadata_mut()
            .insert(*k, tonic::metadata::MetadataValue::from_static(v));
    }
    req
}
