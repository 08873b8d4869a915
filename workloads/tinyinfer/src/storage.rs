//! Model storage: turns a storage URI into a local file. `file://` URIs and plain paths
//! (e.g. a PVC mount) are used in place; `http://` and `https://` URIs are downloaded once
//! into the cache directory with a size limit and an optional sha256 check.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a model file could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{uri}: unsupported URI scheme (use file://, a path, http:// or https://)")]
    Scheme { uri: String },
    #[error("{path}: no such file")]
    Missing { path: String },
    #[error("{uri}: download failed: {reason}")]
    Download { uri: String, reason: String },
    #[error("{uri}: larger than the {limit} byte download limit")]
    TooLarge { uri: String, limit: u64 },
    #[error("{uri}: sha256 is {actual}, expected {expected}")]
    Checksum {
        uri: String,
        expected: String,
        actual: String,
    },
    #[error("cache {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where downloads go and how large they may be.
#[derive(Clone, Debug)]
pub struct Storage {
    pub cache_dir: PathBuf,
    pub max_download_bytes: u64,
    /// One lock per cache file, so concurrent loads of one URI download it once.
    locks: Arc<parking_lot::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Lower-case hex of `bytes` (digests in file names and checks).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file, hex-encoded.
pub async fn sha256_file(path: &Path) -> Result<String, StorageError> {
    let io = |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

impl Storage {
    pub fn new(cache_dir: PathBuf, max_download_bytes: u64) -> Self {
        Self {
            cache_dir,
            max_download_bytes,
            locks: Arc::default(),
        }
    }

    /// Returns a local path holding the file named by `uri`.
    pub async fn resolve(&self, uri: &str, sha256: Option<&str>) -> Result<PathBuf, StorageError> {
        let path = if let Some(rest) = uri.strip_prefix("file://") {
            PathBuf::from(rest)
        } else if uri.starts_with("http://") || uri.starts_with("https://") {
            self.download(uri).await?
        } else if uri.contains("://") {
            return Err(StorageError::Scheme {
                uri: uri.to_owned(),
            });
        } else {
            PathBuf::from(uri)
        };
        if !path.is_file() {
            return Err(StorageError::Missing {
                path: path.display().to_string(),
            });
        }
        if let Some(expected) = sha256 {
            let actual = sha256_file(&path).await?;
            if !actual.eq_ignore_ascii_case(expected.trim()) {
                return Err(StorageError::Checksum {
                    uri: uri.to_owned(),
                    expected: expected.to_owned(),
                    actual,
                });
            }
        }
        Ok(path)
    }

    async fn download(&self, uri: &str) -> Result<PathBuf, StorageError> {
        let file_name = uri
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("model.onnx")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>();
        let key = hex(&Sha256::digest(uri.as_bytes())[..8]);
        let dest = self.cache_dir.join(format!("{key}-{file_name}"));
        let lock = self.locks.lock().entry(dest.clone()).or_default().clone();
        let _held = lock.lock().await;
        if dest.is_file() {
            tracing::info!(uri, path = %dest.display(), "using cached download");
            return Ok(dest);
        }
        let io = |source| StorageError::Io {
            path: dest.display().to_string(),
            source,
        };
        tokio::fs::create_dir_all(&self.cache_dir)
            .await
            .map_err(io)?;
        let partial = dest.with_extension("partial");
        let result = self.fetch(uri, &partial).await;
        if let Err(err) = result {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(err);
        }
        tokio::fs::rename(&partial, &dest).await.map_err(io)?;
        tracing::info!(uri, path = %dest.display(), "model downloaded");
        Ok(dest)
    }

    /// An HTTP/1.0 GET (no chunked encoding to deal with) over TCP or TLS, streamed to
    /// `dest`. TLS trusts the system roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured).
    async fn fetch(&self, uri: &str, dest: &Path) -> Result<(), StorageError> {
        let fail = |reason: String| StorageError::Download {
            uri: uri.to_owned(),
            reason,
        };
        let (tls, rest) = match uri.split_once("://") {
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            _ => {
                return Err(StorageError::Scheme {
                    uri: uri.to_owned(),
                });
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, addr) = match authority.rsplit_once(':') {
            Some((h, _)) => (h, authority.to_owned()),
            None => (
                authority,
                format!("{authority}:{}", if tls { 443 } else { 80 }),
            ),
        };
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| fail(format!("connect {addr}: {e}")))?;
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: tinyinfer\r\n\r\n");
        if !tls {
            return self.exchange(uri, tcp, &request, dest).await;
        }
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(fail("no CA certificates found (set SSL_CERT_FILE)".into()));
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| fail(format!("server name {host:?}: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| fail(format!("TLS: {e}")))?;
        self.exchange(uri, stream, &request, dest).await
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        uri: &str,
        mut stream: S,
        request: &str,
        dest: &Path,
    ) -> Result<(), StorageError> {
        let fail = |reason: String| StorageError::Download {
            uri: uri.to_owned(),
            reason,
        };
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
        // Read the head (status line + headers).
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 64 * 1024 {
                return Err(fail("response head too large".into()));
            }
            let n = stream
                .read(&mut byte)
                .await
                .map_err(|e| fail(e.to_string()))?;
            if n == 0 {
                return Err(fail("connection closed before the response head".into()));
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| fail("malformed status line".into()))?;
        if status != 200 {
            return Err(fail(format!("HTTP status {status}")));
        }
        let length = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<u64>().ok())
                .flatten()
        });
        let limit = self.max_download_bytes;
        let too_large = || StorageError::TooLarge {
            uri: uri.to_owned(),
            limit,
        };
        if length.is_some_and(|l| l > limit) {
            return Err(too_large());
        }
        let io = |source| StorageError::Io {
            path: dest.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        while length.is_none_or(|l| total < l) {
            let n = match stream.read(&mut buf).await {
                Ok(n) => n,
                // TLS peers often close without close_notify after an HTTP/1.0 body.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(fail(e.to_string())),
            };
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > limit {
                return Err(too_large());
            }
            file.write_all(&buf[..n]).await.map_err(io)?;
        }
        if length.is_some_and(|l| l != total) {
            return Err(fail(format!("truncated body: {total} bytes")));
        }
        file.flush().await.map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn serve_once(body: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            }
        });
        format!("http://{addr}/models/m.onnx")
    }

    #[tokio::test]
    async fn http_download_is_cached_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(dir.path().to_path_buf(), 1000);
        let uri = serve_once(b"model-bytes".to_vec()).await;
        let good = hex(&Sha256::digest(b"model-bytes"));
        let path = storage.resolve(&uri, Some(&good)).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"model-bytes");
        assert!(matches!(
            storage.resolve(&uri, Some("00")).await,
            Err(StorageError::Checksum { .. })
        ));
    }

    #[tokio::test]
    async fn http_download_enforces_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(dir.path().to_path_buf(), 4);
        let uri = serve_once(vec![7u8; 100]).await;
        assert!(matches!(
            storage.resolve(&uri, None).await,
            Err(StorageError::TooLarge { .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn missing_files_and_unknown_schemes_are_errors() {
        let storage = Storage::new(PathBuf::from("/nonexistent"), 1);
        assert!(matches!(
            storage.resolve("file:///no/such/model.onnx", None).await,
            Err(StorageError::Missing { .. })
        ));
        assert!(matches!(
            storage.resolve("s3://bucket/m.onnx", None).await,
            Err(StorageError::Scheme { .. })
        ));
    }
}
