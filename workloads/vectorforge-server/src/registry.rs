//! The collections of one server: created and deleted at run time, each in its own
//! directory under `<data-dir>/collections/<name>`, reopened on start. Collection
//! snapshot archives live under `<data-dir>/snapshots/<name>/` so that they outlive
//! the collection they were taken from.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::{ServiceError, ServiceResult};
use crate::params::CollectionParams;
use crate::store::{self, PointsCollection};

pub struct Registry {
    data_dir: PathBuf,
    collections: RwLock<BTreeMap<String, Arc<PointsCollection>>>,
    /// Serialises creation, deletion and restore so that directories never race.
    ddl: Mutex<()>,
}

/// Checks a collection name: it becomes a directory name and a URL path segment.
pub fn validate_name(name: &str) -> ServiceResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "Validation error in path parameters: collection name {name:?} must be 1..=255 characters of [A-Za-z0-9._-] and must not start with '.'"
        )))
    }
}

impl Registry {
    /// Opens every collection found under `data_dir` (creating the layout if needed).
    /// Blocks on disk I/O.
    pub fn open(data_dir: &Path) -> ServiceResult<Registry> {
        let root = data_dir.join("collections");
        fs::create_dir_all(&root)
            .map_err(|e| ServiceError::internal(format!("{}: {e}", root.display())))?;
        fs::create_dir_all(data_dir.join("snapshots"))
            .map_err(|e| ServiceError::internal(format!("{}: {e}", data_dir.display())))?;
        let mut collections = BTreeMap::new();
        let entries = fs::read_dir(&root)
            .map_err(|e| ServiceError::internal(format!("{}: {e}", root.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') {
                // leftovers of an interrupted create, delete or restore
                tracing::info!(path = %path.display(), "removing leftover directory");
                if let Err(e) = fs::remove_dir_all(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove leftover directory");
                }
                continue;
            }
            if validate_name(&name).is_err() || !path.is_dir() {
                tracing::warn!(path = %path.display(), "ignoring an entry that is not a collection");
                continue;
            }
            let c = PointsCollection::open(&path, &name).map_err(|e| {
                ServiceError::internal(format!("cannot open collection {name}: {e}"))
            })?;
            collections.insert(name, Arc::new(c));
        }
        Ok(Registry {
            data_dir: data_dir.to_path_buf(),
            collections: RwLock::new(collections),
            ddl: Mutex::new(()),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn dir_of(&self, name: &str) -> PathBuf {
        self.data_dir.join("collections").join(name)
    }

    fn scratch(&self, what: &str) -> PathBuf {
        self.data_dir
            .join("collections")
            .join(format!(".{what}-{}", uuid::Uuid::new_v4()))
    }

    /// Where the snapshot archives of a collection are kept.
    pub fn snapshots_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("snapshots").join(name)
    }

    pub fn get(&self, name: &str) -> ServiceResult<Arc<PointsCollection>> {
        self.collections
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| ServiceError::collection_not_found(name))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.collections.read().contains_key(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.collections.read().keys().cloned().collect()
    }

    pub fn all(&self) -> Vec<Arc<PointsCollection>> {
        self.collections.read().values().cloned().collect()
    }

    /// Creates a collection; 409 when it exists. Blocks on disk I/O.
    pub fn create(
        &self,
        name: &str,
        params: CollectionParams,
    ) -> ServiceResult<Arc<PointsCollection>> {
        validate_name(name)?;
        params.validate()?;
        let _ddl = self.ddl.lock();
        if self.exists(name) {
            return Err(ServiceError::already_exists(format!(
                "Wrong input: Collection `{name}` already exists!"
            )));
        }
        // build it aside, then rename: a crash never leaves a half-made collection
        let tmp = self.scratch("create");
        let made = PointsCollection::create(&tmp, name, params)?;
        drop(made);
        let dir = self.dir_of(name);
        fs::rename(&tmp, &dir)
            .map_err(|e| ServiceError::internal(format!("{}: {e}", dir.display())))?;
        vectorforge::wal::fsync_dir(&self.data_dir.join("collections"))?;
        let c = Arc::new(PointsCollection::open(&dir, name)?);
        self.collections.write().insert(name.to_string(), c.clone());
        tracing::info!(collection = name, "collection created");
        Ok(c)
    }

    /// Deletes a collection and its data; false when it did not exist.
    pub fn delete(&self, name: &str) -> ServiceResult<bool> {
        let _ddl = self.ddl.lock();
        let Some(c) = self.collections.write().remove(name) else {
            return Ok(false);
        };
        drop(c);
        let trash = self.scratch("delete");
        let dir = self.dir_of(name);
        fs::rename(&dir, &trash)
            .map_err(|e| ServiceError::internal(format!("{}: {e}", dir.display())))?;
        vectorforge::wal::fsync_dir(&self.data_dir.join("collections"))?;
        if let Err(e) = fs::remove_dir_all(&trash) {
            tracing::warn!(path = %trash.display(), error = %e, "could not remove deleted collection files");
        }
        tracing::info!(collection = name, "collection deleted");
        Ok(true)
    }

    /// Replaces (or creates) collection `name` with the content of a snapshot archive.
    /// The archive is checked completely before the existing collection is touched.
    pub fn restore(&self, name: &str, archive: &Path) -> ServiceResult<Arc<PointsCollection>> {
        validate_name(name)?;
        let tmp = self.scratch("restore");
        let unpacked = store::unpack_archive(archive, &tmp).and_then(|_| {
            // opening it proves the data is usable before the old collection goes
            PointsCollection::open(&tmp, name).map(drop)
        });
        if let Err(e) = unpacked {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let _ddl = self.ddl.lock();
        let dir = self.dir_of(name);
        let old = self.collections.write().remove(name);
        drop(old);
        let trash = self.scratch("delete");
        if dir.exists() {
            fs::rename(&dir, &trash)
                .map_err(|e| ServiceError::internal(format!("{}: {e}", dir.display())))?;
        }
        fs::rename(&tmp, &dir)
            .map_err(|e| ServiceError::internal(format!("{}: {e}", dir.display())))?;
        vectorforge::wal::fsync_dir(&self.data_dir.join("collections"))?;
        let _ = fs::remove_dir_all(&trash);
        let c = Arc::new(PointsCollection::open(&dir, name)?);
        self.collections.write().insert(name.to_string(), c.clone());
        tracing::info!(collection = name, "collection restored from snapshot");
        Ok(c)
    }

    /// Flushes every collection (shutdown).
    pub fn flush_all(&self) {
        for c in self.all() {
            if let Err(e) = c.flush() {
                tracing::error!(collection = c.name(), error = %e, "flush failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::parse_vectors;
    use serde_json::json;

    fn params() -> CollectionParams {
        CollectionParams {
            vectors: parse_vectors(&json!({"size": 2, "distance": "Dot"})).unwrap(),
            hnsw: Default::default(),
            sync: vectorforge::SyncPolicy::Always,
            optimizers_config: None,
            metadata: None,
            created_at: String::new(),
            quantization: Default::default(),
        }
    }

    #[test]
    fn collections_survive_reopen_and_names_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let r = Registry::open(tmp.path()).unwrap();
        r.create("a", params()).unwrap();
        r.create("b", params()).unwrap();
        assert!(matches!(
            r.create("a", params()).unwrap_err(),
            ServiceError::AlreadyExists(_)
        ));
        assert!(matches!(
            r.create("../x", params()).unwrap_err(),
            ServiceError::Invalid(_)
        ));
        assert!(r.delete("b").unwrap());
        assert!(!r.delete("b").unwrap());
        // a leftover of an interrupted create is cleaned up
        fs::create_dir_all(tmp.path().join("collections/.create-x")).unwrap();
        drop(r);
        let r = Registry::open(tmp.path()).unwrap();
        assert_eq!(r.names(), vec!["a".to_string()]);
        assert!(!tmp.path().join("collections/.create-x").exists());
        assert!(matches!(r.get("b").unwrap_err(), ServiceError::NotFound(_)));
    }
}
