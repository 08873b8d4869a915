//! The peer of the gateway benchmark: nginx as a reverse proxy in front of the same
//! tinyinfer (REST through `proxy_pass` with pooled keep-alive connections, gRPC through
//! `grpc_pass` over HTTP/2; `keepalive_requests` raised so nginx does not close a
//! client's HTTP/2 connection after its default 1,000 requests, which failed in-flight
//! calls), started from a generated config in a temporary directory.
//! Absent nginx, the peer rows are skipped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx; stopped (and its directory removed) on drop.
pub struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
}

/// The nginx binary: `$BENCH_NGINX`, else `/usr/sbin/nginx` when it exists.
pub fn binary() -> Option<PathBuf> {
    std::env::var_os("BENCH_NGINX")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")))
        .filter(|p| p.is_file())
}

fn free_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn config(
    dir: &Path,
    http: SocketAddr,
    grpc: SocketAddr,
    up_http: SocketAddr,
    up_grpc: SocketAddr,
) -> String {
    let d = dir.display();
    format!(
        "worker_processes 2;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         upstream rest {{ server {up_http}; keepalive 128; keepalive_requests 1000000; }}\n\
         upstream grpcb {{ server {up_grpc}; keepalive 128; keepalive_requests 1000000; }}\n\
         server {{ listen {http}; location / {{ proxy_pass http://rest; proxy_http_version 1.1; \
         proxy_set_header Connection \"\"; }} }}\n\
         server {{ listen {grpc} http2; location / {{ grpc_pass grpc://grpcb; }} }}\n}}\n"
    )
}

impl Nginx {
    /// Starts nginx in front of `up_http` (REST) and `up_grpc` (gRPC) and waits until it
    /// accepts connections (30 s at most).
    pub fn start(bin: &Path, up_http: SocketAddr, up_grpc: SocketAddr) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let (http, grpc) = (
            free_port().map_err(|e| e.to_string())?,
            free_port().map_err(|e| e.to_string())?,
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config(dir.path(), http, grpc, up_http, up_grpc))
            .map_err(|e| format!("writing {}: {e}", conf.display()))?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let nginx = Nginx {
            child,
            _dir: dir,
            http,
            grpc,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(http).is_err()
            || std::net::TcpStream::connect(grpc).is_err()
        {
            if Instant::now() > deadline {
                return Err("nginx did not start listening within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nginx)
    }

    /// `nginx -v`, for the figures' header.
    pub fn version(bin: &Path) -> String {
        Command::new(bin)
            .arg("-v")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
            .unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
