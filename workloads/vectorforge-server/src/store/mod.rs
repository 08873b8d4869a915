//! One collection of the server: a vectorforge engine per vector space (the unnamed
//! vector, or each named vector), all holding the same points and payloads.
//!
//! Writes keep the engines in step. A collection with one vector space writes straight
//! to its engine (whose WAL makes it durable). With several, every write is first
//! appended to the collection's journal (a vectorforge WAL of per-engine operations),
//! fsynced (it is the commit point, whatever the sync policy), and then applied to each
//! engine at the same index with `apply_at`; on open, engines that are behind replay
//! the journal, so a crash between two engines loses nothing. The journal is trimmed
//! once every engine has a snapshot past it.
//!
//! Files by job: `types` (what clients write and read), `files` (atomic writes, paths),
//! `journal` (the journal's record codec), `recovery` (create and open), `pipeline`
//! (writes and reads), `archive` (snapshots and snapshot archives).

mod archive;
mod files;
mod journal;
mod pipeline;
mod recovery;
mod types;

pub use archive::unpack_archive;
pub(crate) use files::io;
pub use files::{dir_size, write_atomic};
pub use pipeline::Prepared;
pub use types::{Info, NamedPoint, PointOut, Selector, VectorOut, VectorSelection, Write};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use vectorforge::wal::Wal;
use vectorforge::{Collection, Filter, PayloadSchemaType, SyncPolicy};

use crate::error::{ServiceError, ServiceResult};
use crate::params::CollectionParams;

const PARAMS_FILE: &str = "collection.json";
const JOURNAL_SEGMENT_BYTES: u64 = 64 << 20;
/// Engines behind a journal only need their own WAL for speed, not for safety.
const JOURNALED_ENGINE_SYNC: SyncPolicy = SyncPolicy::Interval { millis: 1000 };

pub struct PointsCollection {
    name: String,
    dir: PathBuf,
    params: parking_lot::RwLock<CollectionParams>,
    unnamed: bool,
    /// (vector name, engine), in name order; the first one answers payload-only reads.
    engines: Vec<(String, Collection)>,
    journal: Option<Arc<Wal>>,
    /// Last sequence number written to every engine (journaled collections).
    writer: Mutex<u64>,
    /// Held while snapshots are taken or archived so they see one consistent state.
    maintenance: Mutex<()>,
    /// Sequence of the newest collection-wide snapshot (the journal is kept after the one before).
    snapshotted: Mutex<(u64, u64)>,
}

impl std::fmt::Debug for PointsCollection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointsCollection")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish()
    }
}

impl PointsCollection {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn params(&self) -> CollectionParams {
        self.params.read().clone()
    }

    /// Changes the settings that need no rebuild (metadata, optimizer settings) and
    /// stores them; `f` returns an error to refuse a change.
    pub fn update_params(
        &self,
        f: impl FnOnce(&mut CollectionParams) -> ServiceResult<()>,
    ) -> ServiceResult<()> {
        let mut p = self.params.write();
        let mut next = p.clone();
        f(&mut next)?;
        if next.vectors != p.vectors || next.hnsw != p.hnsw || next.sync != p.sync {
            return Err(ServiceError::invalid(
                "Wrong input: vectors, HNSW and WAL settings of an existing collection cannot change; create a new collection and re-ingest",
            ));
        }
        let bytes =
            serde_json::to_vec_pretty(&next).map_err(|e| ServiceError::internal(e.to_string()))?;
        write_atomic(&self.dir.join(PARAMS_FILE), &bytes)?;
        *p = next;
        Ok(())
    }

    /// The engine of a vector space; "" names the unnamed vector.
    pub fn engine(&self, using: &str) -> ServiceResult<&Collection> {
        self.engines
            .iter()
            .find(|(n, _)| n == using)
            .map(|(_, e)| e)
            .ok_or_else(|| {
                if using.is_empty() {
                    ServiceError::invalid(format!(
                        "Wrong input: collection {} has only named vectors ({}); say which one with `using`",
                        self.name,
                        self.vector_names().join(", ")
                    ))
                } else {
                    ServiceError::invalid(format!(
                        "Wrong input: Not existing vector name error: {using}"
                    ))
                }
            })
    }

    pub fn vector_names(&self) -> Vec<String> {
        self.engines.iter().map(|(n, _)| n.clone()).collect()
    }

    fn primary(&self) -> &Collection {
        &self.engines[0].1
    }

    pub fn info(&self) -> Info {
        let infos: Vec<_> = self.engines.iter().map(|(_, e)| e.info()).collect();
        Info {
            points: infos[0].points,
            indexed_vectors: infos.iter().map(|i| i.indexed_vectors).sum(),
            stored_vectors: infos.iter().map(|i| i.stored_vectors).sum(),
            all_indexed: infos.iter().all(|i| i.indexed_vectors >= i.stored_vectors),
            last_seq: infos.iter().map(|i| i.last_seq).max().unwrap_or(0),
            indexed_fields: infos[0].indexed_fields.clone(),
        }
    }

    /// Indexed payload fields with their types and how many points have a value there
    /// (one count query per field: for CollectionInfo, not for metrics).
    pub fn payload_schema(&self) -> Vec<(String, PayloadSchemaType, usize)> {
        self.primary()
            .info()
            .indexed_fields
            .into_iter()
            .map(|(key, kind)| {
                let has = Filter::from_json(
                    &serde_json::json!({"must_not": [{"is_empty": {"key": key}}]}),
                )
                .map(|f| self.count(Some(&f)))
                .unwrap_or(0);
                (key, kind, has)
            })
            .collect()
    }

    /// Operations applied since the newest collection-wide snapshot (the WAL to replay).
    pub fn wal_lag(&self) -> u64 {
        let last = self
            .engines
            .iter()
            .map(|(_, e)| e.last_seq())
            .max()
            .unwrap_or(0);
        last.saturating_sub(self.snapshotted.lock().1)
    }

    /// Makes every acknowledged write durable (used at shutdown).
    pub fn flush(&self) -> ServiceResult<()> {
        if let Some(j) = &self.journal {
            j.sync_upto(j.last_seq())?;
        }
        Ok(())
    }

    /// Bytes the collection occupies on disk.
    pub fn disk_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;

    use serde_json::json;
    use vectorforge::{HnswConfig, PointId, SyncPolicy};

    use super::NamedPoint;
    use crate::params::{CollectionParams, parse_vectors};

    pub(crate) fn params(vectors: serde_json::Value) -> CollectionParams {
        CollectionParams {
            vectors: parse_vectors(&vectors).unwrap(),
            hnsw: HnswConfig::default(),
            sync: SyncPolicy::Always,
            optimizers_config: None,
            metadata: None,
            created_at: String::new(),
            quantization: Default::default(),
        }
    }

    pub(crate) fn point(id: u64, a: Vec<f32>, b: Vec<f32>) -> NamedPoint {
        NamedPoint {
            id: PointId::Num(id),
            vectors: BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]),
            payload: Some(json!({"n": id}).as_object().unwrap().clone()),
        }
    }
}
