//! Small file helpers: atomic, fsynced JSON files (vote, purge point, state-machine
//! metadata), directory fsync, and typed I/O errors naming the path.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An I/O or decoding error on one file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("decoding {path}: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl FileError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        FileError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), FileError> {
    fs::create_dir_all(dir).map_err(|e| FileError::io("create directory", dir, e))
}

pub(crate) fn list_dir(dir: &Path) -> Result<Vec<String>, FileError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| FileError::io("list", dir, e))? {
        let e = e.map_err(|e| FileError::io("list", dir, e))?;
        if let Some(n) = e.file_name().to_str() {
            out.push(n.to_string());
        }
    }
    Ok(out)
}

pub(crate) fn remove_file(path: &Path) -> Result<(), FileError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(FileError::io("remove", path, e)),
        _ => Ok(()),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FileError::io("fsync directory", dir, e))
}

/// Cuts a file to `len` bytes and fsyncs it.
pub(crate) fn set_len(path: &Path, len: u64) -> Result<(), FileError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| FileError::io("open", path, e))?;
    f.set_len(len)
        .map_err(|e| FileError::io("truncate", path, e))?;
    f.sync_all().map_err(|e| FileError::io("fsync", path, e))
}

/// Reads a JSON file; `None` when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, FileError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::io("read", path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| FileError::Decode {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes a JSON file atomically (temporary file, rename); with `sync` the data and the
/// directory entry are fsynced, so after a crash the file holds the old or the new value.
pub(crate) fn write_json<T: Serialize>(
    path: &Path,
    value: &T,
    sync: bool,
) -> Result<(), FileError> {
    let bytes = serde_json::to_vec(value).map_err(|source| FileError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| FileError::io("create", &tmp, e))?;
    f.write_all(&bytes)
        .map_err(|e| FileError::io("write", &tmp, e))?;
    if sync {
        f.sync_all().map_err(|e| FileError::io("fsync", &tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| FileError::io("rename into", path, e))?;
    if sync && let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// [`write_json`] with fsync.
pub(crate) fn write_json_synced<T: Serialize>(path: &Path, value: &T) -> Result<(), FileError> {
    write_json(path, value, true)
}
