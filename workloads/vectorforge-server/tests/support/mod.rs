//! Starts the real `vectorforge` binary on free loopback ports with a temporary data
//! directory, and speaks plain HTTP/1.1 to it (no client library: the requests on
//! the wire are exactly what the test writes).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod s3;

/// A loopback port nobody listens on. Taken from below the kernel's ephemeral range
/// (32768 and up), one after another per test process: a port the kernel hands to
/// `bind(0)` elsewhere (another test's client or server) cannot collide with one given
/// to a server here before it binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 400) * 30;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (base - 20_000 + n) % 12_000;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
            drop(l);
            return port as u16;
        }
    }
}

pub struct Server {
    pub http_port: u16,
    pub grpc_port: u16,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    /// Starts the binary on `data_dir` with extra flags and waits until /readyz is 200.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let mut s = Server::new(data_dir, extra);
        s.spawn();
        s
    }

    /// Starts the binary and waits only until it answers /healthz (it may stay unready).
    pub fn launch(data_dir: &Path, extra: &[&str]) -> Server {
        let mut s = Server::new(data_dir, extra);
        s.spawn_with("/healthz");
        s
    }

    fn new(data_dir: &Path, extra: &[&str]) -> Server {
        Server {
            http_port: free_port(),
            grpc_port: free_port(),
            data_dir: data_dir.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            log: data_dir.with_extension("log"),
        }
    }

    fn spawn(&mut self) {
        self.spawn_with("/readyz");
    }

    fn spawn_with(&mut self, probe: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_vectorforge"))
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg("--host=127.0.0.1")
            .arg(format!("--http-port={}", self.http_port))
            .arg(format!("--grpc-port={}", self.grpc_port))
            .args(&self.args)
            .env("RUST_LOG", "info")
            // tracing writes to stdout
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start vectorforge");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("vectorforge exited early ({status}):\n{}", self.logs());
            }
            if let Ok((200, _)) = self.raw("GET", probe, None, &[]) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("vectorforge: {probe} not 200 in 60 s:\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait for a clean exit (drain, flush, snapshot).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc_kill(c.id() as i32, 15) };
            let status = c.wait().expect("wait for vectorforge");
            assert!(
                status.success(),
                "vectorforge exited with {status}:\n{}",
                self.logs()
            );
        }
    }

    /// SIGKILL: a crash, nothing flushed beyond what was acknowledged.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process is frozen (its sockets still accept, nothing answers).
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc_kill(c.id() as i32, 19) };
        }
    }

    /// SIGCONT after [`Server::pause`].
    pub fn resume(&self) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc_kill(c.id() as i32, 18) };
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// One HTTP/1.1 request; returns (status, body bytes).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        request(self.http_port, method, path, body, headers)
    }

    /// A JSON request with an optional api key; returns (status, JSON body).
    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("json"));
        let headers: Vec<(&str, &str)> = key.map(|k| vec![("api-key", k)]).unwrap_or_default();
        let (status, out) = self
            .raw(method, path, bytes.as_deref(), &headers)
            .expect("http request");
        let v = serde_json::from_slice(&out)
            .unwrap_or(Value::String(String::from_utf8_lossy(&out).into_owned()));
        (status, v)
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, body, None)
    }

    /// A call that must succeed; returns `result`.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {v}");
        assert_eq!(v["status"], "ok", "{method} {path}: {v}");
        v["result"].clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = nl + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

/// One HTTP/1.1 request to a loopback port (threads that hold no [`Server`] use it
/// too); returns (status, body bytes).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    if let Some(b) = body {
        // the server may answer (413) and close before the whole body is sent
        let _ = s.write_all(b);
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let mut body = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body))
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
