//! A real S3-compatible server for the backup tests: the Versity S3 Gateway (posix
//! backend) that `make tools` builds from e2e/tools/versitygw, at `$VERSITYGW_BIN`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub const ACCESS_KEY: &str = "modelhub-test";
pub const SECRET_KEY: &str = "modelhub-test-secret";

pub struct S3Server {
    pub port: u16,
    /// Buckets are directories under it, objects files below them.
    pub root: PathBuf,
    child: Child,
}

impl S3Server {
    /// Starts the server on a free port with `buckets` created.
    pub fn start(dir: &Path, buckets: &[&str]) -> S3Server {
        let bin = std::env::var("VERSITYGW_BIN").unwrap_or_else(|_| {
            panic!("VERSITYGW_BIN is not set: run these tests through `make test-vectorforge-server`, which builds the S3 server")
        });
        let root = dir.join("buckets");
        let meta = dir.join("meta");
        for b in buckets {
            std::fs::create_dir_all(root.join(b)).unwrap();
        }
        std::fs::create_dir_all(&meta).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("versitygw.log")).unwrap();
        let child = Command::new(&bin)
            .arg(format!("--port=127.0.0.1:{port}"))
            .arg("posix")
            .arg(format!("--sidecar={}", meta.display()))
            .arg(&root)
            .env("ROOT_ACCESS_KEY", ACCESS_KEY)
            .env("ROOT_SECRET_KEY", SECRET_KEY)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "versitygw did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server { port, root, child }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The object keys under `prefix` in `bucket`, sorted (read from its files).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue; // the gateway's temporary files
                }
                if p.is_dir() {
                    walk(&p, base, out);
                } else if let Ok(rel) = p.strip_prefix(base) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        let base = self.root.join(bucket);
        let mut out = Vec::new();
        walk(&base.join(prefix), &base, &mut out);
        out.sort();
        out
    }

    /// The bytes of one object.
    pub fn read(&self, bucket: &str, key: &str) -> Vec<u8> {
        std::fs::read(self.root.join(bucket).join(key)).unwrap()
    }

    /// Overwrites an object's bytes behind the server's back (a corrupted upload).
    pub fn corrupt(&self, bucket: &str, key: &str) {
        let p = self.root.join(bucket).join(key);
        let mut b = std::fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0xff;
        std::fs::write(p, b).unwrap();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
