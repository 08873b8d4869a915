//! Collection snapshots over Qdrant's paths: create, list, download, delete, recover
//! from a `file://` location under the server's snapshot directory, and upload.
//! An archive is a tar of the collection's params and a fresh engine snapshot per
//! vector space, with its SHA-256 kept beside it.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path as FsPath, PathBuf};

use axum::body::Body as HttpBody;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{AppState, Body, Reply, blocking, reply};
use crate::error::{ServiceError, ServiceResult};
use crate::store::io;

const EXT: &str = ".snapshot";

fn sha256_file(p: &FsPath) -> ServiceResult<String> {
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

fn description(p: &FsPath) -> ServiceResult<Value> {
    let meta = std::fs::metadata(p).map_err(|e| io(p, e))?;
    let created = meta.modified().ok().map(|t| {
        chrono::DateTime::<chrono::Utc>::from(t)
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    });
    let checksum = std::fs::read_to_string(checksum_path(p)).ok();
    Ok(json!({
        "name": p.file_name().map(|n| n.to_string_lossy().into_owned()),
        "creation_time": created,
        "size": meta.len(),
        "checksum": checksum,
    }))
}

fn checksum_path(p: &FsPath) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".checksum");
    PathBuf::from(s)
}

/// A snapshot file name: a plain name ending in `.snapshot`.
fn snapshot_file(st: &AppState, collection: &str, snap: &str) -> ServiceResult<PathBuf> {
    if !snap.ends_with(EXT) || snap.contains('/') || snap.starts_with('.') || snap.len() > 255 {
        return Err(ServiceError::invalid(format!(
            "Wrong input: {snap:?} is not a snapshot name"
        )));
    }
    Ok(st.registry.snapshots_dir(collection).join(snap))
}

pub async fn create(State(st): State<AppState>, Path(name): Path<String>) -> ServiceResult<Reply> {
    let c = st.registry.get(&name)?;
    let dir = st.registry.snapshots_dir(&name);
    let desc = blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let stamp = chrono::Utc::now().format("%Y-%m-%d-%H-%M-%S-%6f");
        let path = dir.join(format!("{}-{stamp}{EXT}", c.name()));
        let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
        let made = c.archive(&tmp).and_then(|()| {
            let sum = sha256_file(&tmp)?;
            crate::store::write_atomic(&checksum_path(&path), sum.as_bytes())?;
            std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
            vectorforge::wal::fsync_dir(&dir)?;
            Ok(())
        });
        if let Err(e) = made {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        tracing::info!(collection = c.name(), snapshot = %path.display(), "snapshot archive written");
        description(&path)
    })
    .await?;
    reply(desc)
}

pub async fn list(State(st): State<AppState>, Path(name): Path<String>) -> ServiceResult<Reply> {
    st.registry.get(&name)?;
    let dir = st.registry.snapshots_dir(&name);
    let list = blocking(move || {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
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
            for f in files {
                out.push(description(&f)?);
            }
        }
        Ok(out)
    })
    .await?;
    reply(list)
}

pub async fn download(
    State(st): State<AppState>,
    Path((name, snap)): Path<(String, String)>,
) -> ServiceResult<Response> {
    let path = snapshot_file(&st, &name, &snap)?;
    let file = tokio::fs::File::open(&path).await.map_err(|_| {
        ServiceError::not_found(format!(
            "Not found: snapshot {snap} of collection {name} does not exist"
        ))
    })?;
    let len = file.metadata().await.map_err(|e| io(&path, e))?.len();
    let body = HttpBody::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{snap}\""),
            ),
        ],
        body,
    )
        .into_response())
}

pub async fn delete(
    State(st): State<AppState>,
    Path((name, snap)): Path<(String, String)>,
) -> ServiceResult<Reply> {
    let path = snapshot_file(&st, &name, &snap)?;
    blocking(move || match std::fs::remove_file(&path) {
        Ok(()) => {
            let _ = std::fs::remove_file(checksum_path(&path));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ServiceError::not_found(
            format!("Not found: snapshot {snap} of collection {name} does not exist"),
        )),
        Err(e) => Err(io(&path, e)),
    })
    .await?;
    reply(true)
}

fn verify_checksum(path: &FsPath, expected: Option<&str>) -> ServiceResult<()> {
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

/// `PUT .../snapshots/recover {"location": "file:///...", "checksum"?}`: the file must
/// lie under the server's snapshot directory (the server does not fetch URLs).
pub async fn recover(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<Value>,
) -> ServiceResult<Reply> {
    let location = body
        .get("location")
        .and_then(Value::as_str)
        .ok_or_else(|| ServiceError::invalid("Wrong input: location: expected a file:// URL"))?;
    let Some(raw) = location.strip_prefix("file://") else {
        return Err(ServiceError::invalid(
            "Wrong input: only file:// locations under the server's snapshot directory can be recovered; upload other snapshots with POST .../snapshots/upload",
        ));
    };
    let root = st.registry.data_dir().join("snapshots");
    let reg = st.registry.clone();
    let checksum = body
        .get("checksum")
        .and_then(Value::as_str)
        .map(str::to_string);
    let raw = raw.to_string();
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
    .await?;
    reply(true)
}

/// `POST .../snapshots/upload` with a multipart field `snapshot`: restores the collection
/// from the uploaded archive.
pub async fn upload(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    mut form: Multipart,
) -> ServiceResult<Reply> {
    crate::registry::validate_name(&name)?;
    let dir = st.registry.data_dir().join("snapshots");
    let tmp = dir.join(format!(".upload-{}", uuid::Uuid::new_v4()));
    let mut got = false;
    let written: ServiceResult<()> =
        async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| io(&tmp, e))?;
            while let Some(mut field) = form
                .next_field()
                .await
                .map_err(|e| ServiceError::invalid(format!("Wrong input: multipart body: {e}")))?
            {
                if field.name() != Some("snapshot") {
                    continue;
                }
                while let Some(chunk) = field.chunk().await.map_err(|e| {
                    ServiceError::invalid(format!("Wrong input: multipart body: {e}"))
                })? {
                    tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                        .await
                        .map_err(|e| io(&tmp, e))?;
                }
                got = true;
            }
            tokio::io::AsyncWriteExt::flush(&mut file)
                .await
                .map_err(|e| io(&tmp, e))?;
            if got {
                Ok(())
            } else {
                Err(ServiceError::invalid(
                    "Wrong input: the multipart body has no `snapshot` field",
                ))
            }
        }
        .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    let reg = st.registry.clone();
    let checksum = q.get("checksum").cloned();
    let result = blocking({
        let tmp = tmp.clone();
        move || {
            verify_checksum(&tmp, checksum.as_deref())?;
            reg.restore(&name, &tmp).map(drop)
        }
    })
    .await;
    let _ = tokio::fs::remove_file(&tmp).await;
    result?;
    reply(true)
}
