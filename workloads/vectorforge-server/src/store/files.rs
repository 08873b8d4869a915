//! File helpers of a collection's directory: atomic writes, I/O errors as server
//! errors, engine directories, snapshot lookup and disk usage.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{ServiceError, ServiceResult};

/// Directory of the engine of the `index`-th vector space.
pub(crate) fn engine_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join("vectors").join(index.to_string())
}

/// An I/O failure on `path` as an internal service error.
pub(crate) fn io(path: &Path, e: std::io::Error) -> ServiceError {
    ServiceError::internal(format!("Service internal error: {}: {e}", path.display()))
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> ServiceResult<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    if let Some(parent) = path.parent() {
        vectorforge::wal::fsync_dir(parent)?;
    }
    Ok(())
}

/// Sequence number of the newest snapshot of an engine (0 without one).
pub(crate) fn newest_snapshot(engine_dir: &Path) -> u64 {
    vectorforge::snapshot::list(&engine_dir.join("snapshots"))
        .ok()
        .and_then(|l| l.first().map(|(s, _)| *s))
        .unwrap_or(0)
}

pub fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(p) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}
