//! Collection snapshot archives in the collection service: create, list, delete,
//! recover from a file under the server's snapshot directory, and restore from an
//! uploaded file. An archive is a tar of the collection's params and a fresh engine
//! snapshot per vector space, with its SHA-256 kept beside it. Transports stream the
//! bytes themselves (download, upload) and call these for everything else.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{CollectionService, blocking};
use crate::error::{ServiceError, ServiceResult};
use crate::store::{io, write_atomic};

const EXT: &str = ".snapshot";

/// One snapshot archive, as Qdrant's SnapshotDescription.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotInfo {
    pub name: Option<String>,
    pub creation_time: Option<String>,
    pub size: u64,
    pub checksum: Option<String>,
}

fn sha256_file(p: &Path) -> ServiceResult<String> {
    let mut f = std::fs::File::open(p).map_err(|e| io(p, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io(p, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn checksum_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".checksum");
    PathBuf::from(s)
}

fn describe(p: &Path) -> ServiceResult<SnapshotInfo> {
    let meta = std::fs::metadata(p).map_err(|e| io(p, e))?;
    let creation_time = meta.modified().ok().map(|t| {
        chrono::DateTime::<chrono::Utc>::from(t)
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    });
    Ok(SnapshotInfo {
        name: p.file_name().map(|n| n.to_string_lossy().into_owned()),
        creation_time,
        size: meta.len(),
        checksum: std::fs::read_to_string(checksum_path(p)).ok(),
    })
}

fn verify_checksum(path: &Path, expected: Option<&str>) -> ServiceResult<()> {
    if let Some(want) = expected {
        let got = sha256_file(path)?;
        if !got.eq_ignore_ascii_case(want) {
            return Err(ServiceError::invalid(format!(
                "Wrong input: snapshot checksum mismatch: expected {want}, got {got}"
            )));
        }
    }
    Ok(())
}

fn missing(collection: &str, snap: &str) -> ServiceError {
    ServiceError::not_found(format!(
        "Not found: snapshot {snap} of collection {collection} does not exist"
    ))
}

impl CollectionService {
    /// The file of snapshot `snap` of a collection: a plain name ending in `.snapshot`.
    /// (The collection itself need not exist: archives outlive it.)
    pub fn snapshot_path(&self, collection: &str, snap: &str) -> ServiceResult<PathBuf> {
        if !snap.ends_with(EXT) || snap.contains('/') || snap.starts_with('.') || snap.len() > 255 {
            return Err(ServiceError::invalid(format!(
                "Wrong input: {snap:?} is not a snapshot name"
            )));
        }
        Ok(self.registry.snapshots_dir(collection).join(snap))
    }

    /// Checks a collection name before an upload is accepted (a name becomes a directory).
    pub fn check_name(&self, name: &str) -> ServiceResult<()> {
        crate::registry::validate_name(name)
    }

    /// Where uploads are written before [`CollectionService::restore_upload`].
    pub fn upload_path(&self) -> PathBuf {
        self.registry
            .data_dir()
            .join("snapshots")
            .join(format!(".upload-{}", uuid::Uuid::new_v4()))
    }

    /// Writes a new archive of the collection.
    pub async fn create_snapshot(&self, name: &str) -> ServiceResult<SnapshotInfo> {
        let stamp = chrono::Utc::now().format("%Y-%m-%d-%H-%M-%S-%6f");
        self.write_snapshot(name, format!("{name}-{stamp}{EXT}"))
            .await
            .map(|(info, _)| info)
    }

    /// Writes a new archive of the collection named `file` (ending in `.snapshot`);
    /// returns it and its path. An existing archive of that name is replaced.
    pub async fn write_snapshot(
        &self,
        name: &str,
        file: String,
    ) -> ServiceResult<(SnapshotInfo, PathBuf)> {
        let c = self.collection(name)?;
        let path = self.snapshot_path(name, &file)?;
        let dir = self.registry.snapshots_dir(name);
        blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
            let made = c.archive(&tmp).and_then(|_| {
                let sum = sha256_file(&tmp)?;
                write_atomic(&checksum_path(&path), sum.as_bytes())?;
                std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
                vectorforge::wal::fsync_dir(&dir)?;
                Ok(())
            });
            if let Err(e) = made {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            tracing::info!(collection = c.name(), snapshot = %path.display(), "snapshot archive written");
            describe(&path).map(|info| (info, path))
        })
        .await
    }

    /// Deletes the archives of a collection whose names start with `prefix`, but the
    /// newest `keep` of them (names sort by time); returns the names deleted.
    pub async fn prune_snapshots(
        &self,
        name: &str,
        prefix: &str,
        keep: usize,
    ) -> ServiceResult<Vec<String>> {
        let mut old: Vec<String> = self
            .list_snapshots(name)
            .await?
            .into_iter()
            .filter_map(|s| s.name)
            .filter(|n| n.starts_with(prefix))
            .collect();
        old.sort();
        old.reverse();
        let old: Vec<String> = old.into_iter().skip(keep).collect();
        for snap in &old {
            self.delete_snapshot(name, snap).await?;
        }
        Ok(old)
    }

    /// The archives of a collection, by name.
    pub async fn list_snapshots(&self, name: &str) -> ServiceResult<Vec<SnapshotInfo>> {
        self.collection(name)?;
        let dir = self.registry.snapshots_dir(name);
        blocking(move || {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                return Ok(Vec::new());
            };
            let mut files: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().is_some_and(|n| {
                        n.to_string_lossy().ends_with(EXT) && !n.to_string_lossy().starts_with('.')
                    })
                })
                .collect();
            files.sort();
            files.iter().map(|f| describe(f)).collect()
        })
        .await
    }

    pub async fn delete_snapshot(&self, name: &str, snap: &str) -> ServiceResult<()> {
        let path = self.snapshot_path(name, snap)?;
        let missing = missing(name, snap);
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => {
                let _ = std::fs::remove_file(checksum_path(&path));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing),
            Err(e) => Err(io(&path, e)),
        })
        .await
    }

    /// An existing archive file, opened for streaming, with its length.
    pub async fn open_snapshot(
        &self,
        name: &str,
        snap: &str,
    ) -> ServiceResult<(tokio::fs::File, u64)> {
        let path = self.snapshot_path(name, snap)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|_| missing(name, snap))?;
        let len = file.metadata().await.map_err(|e| io(&path, e))?.len();
        Ok((file, len))
    }

    /// Replaces (or creates) collection `name` from `location`, a `file://` URL that
    /// must lie under the server's snapshot directory (the server fetches no URLs).
    pub async fn recover_snapshot(
        &self,
        name: &str,
        location: &str,
        checksum: Option<String>,
    ) -> ServiceResult<()> {
        let Some(raw) = location.strip_prefix("file://") else {
            return Err(ServiceError::invalid(
                "Wrong input: only file:// locations under the server's snapshot directory can be recovered; upload other snapshots with POST .../snapshots/upload",
            ));
        };
        let root = self.registry.data_dir().join("snapshots");
        let reg = self.registry.clone();
        let (raw, name) = (raw.to_string(), name.to_string());
        blocking(move || {
            let path = std::fs::canonicalize(&raw)
                .map_err(|e| ServiceError::invalid(format!("Wrong input: snapshot {raw}: {e}")))?;
            let root = std::fs::canonicalize(&root).map_err(|e| io(&root, e))?;
            if !path.starts_with(&root) {
                return Err(ServiceError::invalid(format!(
                    "Wrong input: {raw} is outside the snapshot directory {}",
                    root.display()
                )));
            }
            verify_checksum(&path, checksum.as_deref())?;
            reg.restore(&name, &path).map(drop)
        })
        .await
    }

    /// Replaces (or creates) collection `name` from an uploaded archive at `path` (from
    /// [`CollectionService::upload_path`]), which is removed afterwards either way.
    pub async fn restore_upload(
        &self,
        name: &str,
        path: PathBuf,
        checksum: Option<String>,
    ) -> ServiceResult<()> {
        let reg = self.registry.clone();
        let name = name.to_string();
        blocking(move || {
            let result = verify_checksum(&path, checksum.as_deref())
                .and_then(|()| reg.restore(&name, &path).map(drop));
            let _ = std::fs::remove_file(&path);
            result
        })
        .await
    }
}
