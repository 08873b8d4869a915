//! An S3-compatible bucket holding a collection's backups (object_store's S3 client):
//! `<prefix>/<namespace>/<collection>/<id>/shard-<i>-of-<n>.snapshot`, and beside each
//! archive its manifest `shard-<i>-of-<n>.json`, uploaded after the archive, so a
//! manifest means its archive is whole. A backup is complete when the manifests of all
//! `n` shards exist.

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::Arc;

use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{ServiceError, ServiceResult};

/// Where the bucket is and how to sign in (flags `--<what>-s3-*`, env credentials).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Config {
    /// Server URL; unset: AWS S3 in `region`.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub prefix: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// What a backup's shard archive holds, stored beside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Backup id: the scheduled instant, UTC, `YYYYMMDDTHHMMSSZ`.
    pub id: String,
    pub namespace: String,
    pub collection: String,
    pub shard: u32,
    pub shards: u32,
    pub points: u64,
    pub bytes: u64,
    /// SHA-256 of the archive, hex.
    pub sha256: String,
    pub dimension: usize,
    /// Qdrant's name of the distance.
    pub distance: String,
}

/// A backup found in the bucket: its manifests by shard.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub id: String,
    pub manifests: BTreeMap<u32, Manifest>,
}

impl Found {
    /// Shard count the backup was taken with (from its manifests).
    pub fn shards(&self) -> u32 {
        self.manifests.values().map(|m| m.shards).max().unwrap_or(0)
    }

    /// Every shard's archive is there.
    pub fn complete(&self) -> bool {
        let n = self.shards();
        n > 0 && (0..n).all(|i| self.manifests.get(&i).is_some_and(|m| m.shards == n))
    }
}

fn s3_error(what: &str, e: object_store::Error) -> ServiceError {
    ServiceError::Unavailable(format!("S3 {what}: {e}"))
}

const PART_BYTES: usize = 8 << 20;

/// The backups of one collection in one bucket.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// `<prefix>/<namespace>/<collection>`
    base: Path,
    describe: String,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl Bucket {
    pub fn open(cfg: &S3Config, namespace: &str, collection: &str) -> ServiceResult<Bucket> {
        // rustls needs its process-wide crypto provider chosen once (ring, as the rest
        // of the workspace); a second install is refused, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region);
        if let Some(ep) = &cfg.endpoint {
            b = b
                .with_endpoint(ep)
                .with_allow_http(ep.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        let store = b
            .build()
            .map_err(|e| ServiceError::invalid(format!("S3 bucket {}: {e}", cfg.bucket)))?;
        let mut base = String::new();
        if let Some(p) = cfg.prefix.as_deref().filter(|p| !p.is_empty()) {
            base.push_str(p.trim_matches('/'));
            base.push('/');
        }
        base.push_str(&format!("{namespace}/{collection}"));
        let describe = format!(
            "s3://{}/{base} ({})",
            cfg.bucket,
            cfg.endpoint.as_deref().unwrap_or("AWS")
        );
        Ok(Bucket {
            store: Arc::new(store),
            base: Path::from(base),
            describe,
        })
    }

    fn object(&self, id: &str, shard: u32, shards: u32, ext: &str) -> Path {
        self.base
            .clone()
            .join(id)
            .join(format!("shard-{shard}-of-{shards}.{ext}"))
    }

    /// Uploads a shard's archive (in parts), then its manifest.
    pub async fn upload(&self, archive: &FsPath, m: &Manifest) -> ServiceResult<()> {
        let path = self.object(&m.id, m.shard, m.shards, "snapshot");
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| s3_error("upload", e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut f = tokio::fs::File::open(archive)
            .await
            .map_err(|e| crate::store::io(archive, e))?;
        let mut buf = vec![0u8; PART_BYTES];
        loop {
            let n = f
                .read(&mut buf)
                .await
                .map_err(|e| crate::store::io(archive, e))?;
            if n == 0 {
                break;
            }
            w.wait_for_capacity(4)
                .await
                .map_err(|e| s3_error("upload", e))?;
            w.write(&buf[..n]);
        }
        w.finish().await.map_err(|e| s3_error("upload", e))?;
        let body = serde_json::to_vec_pretty(m)
            .map_err(|e| ServiceError::internal(format!("manifest: {e}")))?;
        self.store
            .put(
                &self.object(&m.id, m.shard, m.shards, "json"),
                PutPayload::from(body),
            )
            .await
            .map_err(|e| s3_error("upload", e))?;
        Ok(())
    }

    /// Every backup with at least one manifest, newest first.
    pub async fn list(&self) -> ServiceResult<Vec<Found>> {
        let mut found: BTreeMap<String, Found> = BTreeMap::new();
        let mut objects = self.store.list(Some(&self.base));
        while let Some(meta) = objects.next().await {
            let meta = meta.map_err(|e| s3_error("list", e))?;
            if meta.location.extension() != Some("json") {
                continue;
            }
            let bytes = self
                .store
                .get(&meta.location)
                .await
                .map_err(|e| s3_error("read", e))?
                .bytes()
                .await
                .map_err(|e| s3_error("read", e))?;
            let m: Manifest = match serde_json::from_slice(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(object = %meta.location, error = %e, "not a backup manifest; skipped");
                    continue;
                }
            };
            found
                .entry(m.id.clone())
                .or_insert_with(|| Found {
                    id: m.id.clone(),
                    manifests: BTreeMap::new(),
                })
                .manifests
                .insert(m.shard, m);
        }
        Ok(found.into_values().rev().collect())
    }

    /// Deletes shard `shard`'s objects of every backup but the newest `keep` it has.
    pub async fn prune(&self, shard: u32, keep: usize) -> ServiceResult<Vec<String>> {
        let mut removed = Vec::new();
        let mine = self
            .list()
            .await?
            .into_iter()
            .filter_map(|f| f.manifests.get(&shard).cloned());
        for m in mine.skip(keep) {
            for ext in ["json", "snapshot"] {
                match self
                    .store
                    .delete(&self.object(&m.id, m.shard, m.shards, ext))
                    .await
                {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(s3_error("delete", e)),
                }
            }
            removed.push(m.id);
        }
        Ok(removed)
    }

    /// Downloads shard `m.shard`'s archive of backup `m.id` to `dest`, checking its
    /// length and SHA-256 against the manifest.
    pub async fn download(&self, m: &Manifest, dest: &FsPath) -> ServiceResult<()> {
        use sha2::Digest;
        let path = self.object(&m.id, m.shard, m.shards, "snapshot");
        let mut stream = self
            .store
            .get(&path)
            .await
            .map_err(|e| s3_error("download", e))?
            .into_stream();
        let mut f = tokio::fs::File::create(dest)
            .await
            .map_err(|e| crate::store::io(dest, e))?;
        let (mut sha, mut len) = (sha2::Sha256::new(), 0u64);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| s3_error("download", e))?;
            sha.update(&chunk);
            len += chunk.len() as u64;
            f.write_all(&chunk)
                .await
                .map_err(|e| crate::store::io(dest, e))?;
        }
        f.sync_all().await.map_err(|e| crate::store::io(dest, e))?;
        let got = format!("{:x}", sha.finalize());
        if len != m.bytes || got != m.sha256 {
            return Err(ServiceError::invalid(format!(
                "backup {} shard {}: the archive in the bucket is {len} bytes with SHA-256 {got}, its manifest says {} bytes with {}",
                m.id, m.shard, m.bytes, m.sha256
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, shard: u32, shards: u32) -> Manifest {
        Manifest {
            id: id.into(),
            namespace: "ml".into(),
            collection: "docs".into(),
            shard,
            shards,
            points: 1,
            bytes: 1,
            sha256: String::new(),
            dimension: 4,
            distance: "Cosine".into(),
        }
    }

    #[test]
    fn a_backup_is_complete_when_every_shard_is_there() {
        let mut f = Found {
            id: "20261204T060000Z".into(),
            manifests: BTreeMap::from([(0, manifest("x", 0, 3)), (2, manifest("x", 2, 3))]),
        };
        assert_eq!(f.shards(), 3);
        assert!(!f.complete());
        f.manifests.insert(1, manifest("x", 1, 3));
        assert!(f.complete());
        // a manifest of another layout (same id, shards 2) makes it inconsistent
        f.manifests.insert(1, manifest("x", 1, 2));
        assert!(!f.complete());
    }

    #[test]
    fn object_keys_follow_the_documented_layout() {
        let cfg = S3Config {
            endpoint: Some("http://127.0.0.1:9".into()),
            bucket: "backups".into(),
            prefix: Some("prod/".into()),
            region: "us-east-1".into(),
            ..S3Config::default()
        };
        let b = Bucket::open(&cfg, "ml", "docs").unwrap();
        assert_eq!(
            b.object("20261204T060000Z", 1, 3, "snapshot").as_ref(),
            "prod/ml/docs/20261204T060000Z/shard-1-of-3.snapshot"
        );
    }
}
