//! `Collection`: one shard of a VectorCollection. Opening it recovers the newest
//! valid snapshot plus the WAL after it; every write is validated completely,
//! logged, applied, and (with `SyncPolicy::Always`) fsynced before it returns.
//! A background thread inserts new vectors into the graph; searches also score
//! the not-yet-indexed tail exactly, so every acknowledged point is searchable.

mod core;
mod search;

pub use search::{QuantizationSearchParams, ScrollRequest, ScrollResult, SearchRequest};

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};

use self::core::{Core, State};
use crate::distance::{self, DistFn};
use crate::error::{Error, IoContext, Result};
use crate::hnsw::{Hnsw, NONE};
use crate::ops::Operation;
use crate::payload::PayloadStore;
use crate::payload::index::{PayloadIndex, PayloadSchemaType};
use crate::payload::path::KeyPath;
use crate::quantization::QuantStore;
use crate::snapshot::{self, SnapshotParts};
use crate::storage::{MmapVectors, VectorSource};
use crate::types::{CollectionConfig, Distance, Payload, PointId, PointStruct, Record};
use crate::wal::Wal;

const INDEX_BATCH: usize = 4096;
const KEEP_SNAPSHOTS: usize = 2;

struct Shared {
    core: RwLock<Core>,
    wake: Mutex<bool>,
    wake_cv: Condvar,
    stop: AtomicBool,
}

/// What [`Collection::apply_at`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The operation is logged and applied (and durable per the sync policy).
    Applied,
    /// The index was not newer than `last`, the last applied one: nothing changed.
    AlreadyApplied { last: u64 },
}

/// Counts describing a collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionInfo {
    pub points: usize,
    pub stored_vectors: usize,
    pub deleted_vectors: usize,
    pub indexed_vectors: usize,
    pub last_seq: u64,
    pub indexed_fields: Vec<(String, PayloadSchemaType)>,
    /// Bytes of the f32 vectors stored (deleted ones included).
    pub vector_bytes: usize,
    /// Vectors with a quantized code (0 without quantization or before training).
    pub quantized_vectors: usize,
    /// Bytes of the quantized codes (what a search walks instead of the vectors).
    pub quantized_bytes: usize,
    /// Bytes of the graph's layer-0 records (links, plus f16 copies in cosine
    /// collections without quantization).
    pub graph_bytes: usize,
}

pub struct Collection {
    dir: PathBuf,
    config: CollectionConfig,
    dist: DistFn,
    wal: Arc<Wal>,
    /// Last applied sequence number; held while an operation is logged and applied.
    applied: Mutex<u64>,
    shared: Arc<Shared>,
    generation: AtomicUsize,
    poisoned: Mutex<Option<String>>,
    indexer: Option<JoinHandle<()>>,
}

fn live_dir(dir: &Path, generation: usize) -> PathBuf {
    dir.join("live").join(format!("vectors-{generation}"))
}

fn live_codes_dir(dir: &Path, generation: usize) -> PathBuf {
    dir.join("live").join(format!("codes-{generation}"))
}

impl Collection {
    /// Opens the collection in `dir`, creating it if empty. The dimension and
    /// distance of an existing collection must match `config`.
    pub fn open(dir: impl AsRef<Path>, config: CollectionConfig) -> Result<Collection> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).at(&dir)?;
        let cfg_path = dir.join("config.json");
        if cfg_path.exists() {
            let stored: CollectionConfig =
                serde_json::from_slice(&fs::read(&cfg_path).at(&cfg_path)?)
                    .map_err(|e| Error::InvalidConfig(format!("{}: {e}", cfg_path.display())))?;
            if stored.dim != config.dim || stored.distance != config.distance {
                return Err(Error::InvalidConfig(format!(
                    "collection was created with dim {} / {:?}, opened with dim {} / {:?}",
                    stored.dim, stored.distance, config.dim, config.distance
                )));
            }
        } else {
            let tmp = dir.join("config.json.tmp");
            let b = serde_json::to_vec_pretty(&config)
                .map_err(|e| Error::InvalidConfig(e.to_string()))?;
            fs::write(&tmp, b).at(&tmp)?;
            fs::File::open(&tmp).and_then(|f| f.sync_all()).at(&tmp)?;
            fs::rename(&tmp, &cfg_path).at(&cfg_path)?;
            crate::wal::fsync_dir(&dir)?;
        }
        let dist = distance::internal_fn(config.distance);
        let live_root = dir.join("live");
        if live_root.exists() {
            fs::remove_dir_all(&live_root).at(&live_root)?;
        }
        let (core, snap_seq) = Self::load_core(&dir, &config)?;
        let mut applied = snap_seq;
        let mut replayed = 0usize;
        // The WAL checks that each record follows the one before it; here the first
        // record after the snapshot must follow an operation the snapshot holds.
        let wal = Wal::open(
            &dir.join("wal"),
            config.sync,
            config.wal_segment_bytes,
            |rec| {
                if rec.seq <= snap_seq {
                    return Ok(());
                }
                if replayed == 0 && rec.prev > snap_seq {
                    return Err(Error::Recovery(format!(
                        "the snapshot ends at operation {snap_seq} but the WAL continues after {} with {}: the operations after {snap_seq} up to {} are missing",
                        rec.prev, rec.seq, rec.prev
                    )));
                }
                core.apply(&Operation::decode(rec.body)?)?;
                applied = rec.seq;
                replayed += 1;
                Ok(())
            },
        )?;
        tracing::info!(dir = %dir.display(), snapshot = snap_seq, replayed, last_seq = applied, "collection opened");
        let shared = Arc::new(Shared {
            core: RwLock::new(core),
            wake: Mutex::new(true),
            wake_cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let indexer = if config.background_indexing {
            let s = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("vf-indexer".into())
                    .spawn(move || indexer_loop(&s))
                    .map_err(|e| Error::io(&dir, e))?,
            )
        } else {
            None
        };
        Ok(Collection {
            dir,
            config,
            dist,
            wal,
            applied: Mutex::new(applied),
            shared,
            generation: AtomicUsize::new(1),
            poisoned: Mutex::new(None),
            indexer,
        })
    }

    /// The newest valid snapshot as a core (or an empty core) and its sequence number.
    fn load_core(dir: &Path, config: &CollectionConfig) -> Result<(Core, u64)> {
        let vdir = live_dir(dir, 0);
        for (seq, sdir) in snapshot::list(&dir.join("snapshots"))? {
            let meta = match snapshot::validate(&sdir) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(snapshot = %sdir.display(), error = %e, "skipping invalid snapshot");
                    continue;
                }
            };
            if meta.dim != config.dim || meta.seq != seq {
                tracing::warn!(snapshot = %sdir.display(), "snapshot does not match the collection; skipped");
                continue;
            }
            let vectors =
                MmapVectors::restore(&vdir, meta.dim, &sdir.join(snapshot::VECTORS), meta.count)?;
            let (ids, deleted) = snapshot::read_points(&sdir, meta.count)?;
            let mut st = State {
                ids,
                deleted,
                ..State::default()
            };
            for (off, id) in st.ids.iter().enumerate() {
                if !st.deleted.contains(off as u32) {
                    st.offsets.insert(*id, off as u32);
                    st.live.insert(off as u32);
                }
            }
            let mut payloads = PayloadStore::default();
            for (off, p) in snapshot::read_payloads(&sdir)? {
                payloads.put(off, p);
            }
            let index = match snapshot::read_payload_index(&sdir, &meta)? {
                Some(index) => index,
                None => {
                    let mut index = PayloadIndex::default();
                    for (key, kind) in &meta.index_schema {
                        index.create(key, *kind, payloads.iter().map(|(o, p)| (*o, p)))?;
                    }
                    index
                }
            };
            st.payloads = payloads;
            st.index = index;
            let (graph, _) = Hnsw::load_with_f16(
                &sdir.join(snapshot::GRAPH),
                config.hnsw.ef_construct,
                config.distance,
                &vectors,
                config.quantization.is_none(),
            )?;
            let quant = QuantStore::open(
                config.quantization,
                config.distance,
                &live_codes_dir(dir, 0),
                Some((&sdir, &meta.files)),
                &vectors,
            )?;
            tracing::info!(snapshot = %sdir.display(), points = st.live.len(), "loaded snapshot");
            let core = Core {
                vectors,
                quant,
                graph,
                indexed: AtomicUsize::new(meta.indexed),
                index_lock: Mutex::new(()),
                state: RwLock::new(st),
            };
            return Ok((core, seq));
        }
        let vectors = MmapVectors::create(&vdir, config.dim)?;
        let quant = QuantStore::open(
            config.quantization,
            config.distance,
            &live_codes_dir(dir, 0),
            None,
            &vectors,
        )?;
        let core = Core {
            vectors,
            quant,
            graph: Hnsw::with_f16(
                config.hnsw.m,
                config.hnsw.ef_construct,
                config.distance,
                config.dim,
                config.quantization.is_none(),
            ),
            indexed: AtomicUsize::new(0),
            index_lock: Mutex::new(()),
            state: RwLock::new(State::default()),
        };
        Ok((core, 0))
    }

    pub fn config(&self) -> &CollectionConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks an operation completely (nothing is applied when this fails) and
    /// returns it normalised (cosine vectors scaled to unit length).
    pub fn validate(&self, op: Operation) -> Result<Operation> {
        match op {
            Operation::Upsert(mut points) => {
                let mut seen = HashSet::with_capacity(points.len());
                for p in &mut points {
                    if !seen.insert(p.id) {
                        return Err(Error::DuplicatePoint(p.id));
                    }
                    if p.vector.len() != self.config.dim {
                        return Err(Error::WrongDimension {
                            point: p.id,
                            expected: self.config.dim,
                            got: p.vector.len(),
                        });
                    }
                    if let Some((index, value)) =
                        p.vector.iter().enumerate().find(|(_, x)| !x.is_finite())
                    {
                        return Err(Error::NonFiniteComponent {
                            point: p.id,
                            index,
                            value: *value,
                        });
                    }
                    if self.config.distance == Distance::Cosine
                        && !distance::normalize(&mut p.vector)
                    {
                        return Err(Error::ZeroVector(p.id));
                    }
                }
                Ok(Operation::Upsert(points))
            }
            Operation::CreateIndex { key, kind } => {
                KeyPath::parse(&key)?;
                Ok(Operation::CreateIndex { key, kind })
            }
            Operation::DeletePayloadKeys { ids, keys } => {
                for k in &keys {
                    KeyPath::parse(k)?;
                }
                Ok(Operation::DeletePayloadKeys { ids, keys })
            }
            Operation::SetPayloadAt { ids, key, payload } => {
                if key.is_empty() || key.split('.').any(|p| p.is_empty() || p.contains('[')) {
                    return Err(Error::InvalidKeyPath {
                        path: key,
                        reason: "set_payload needs a dotted path of object keys (no arrays)".into(),
                    });
                }
                Ok(Operation::SetPayloadAt { ids, key, payload })
            }
            other => Ok(other),
        }
    }

    /// Validates, logs, applies and (per the sync policy) persists one operation;
    /// returns its sequence number.
    pub fn submit(&self, op: Operation) -> Result<u64> {
        let op = self.validate(op)?;
        let seq = {
            let mut applied = self.applied.lock();
            let seq = *applied + 1;
            self.log_and_apply(&mut applied, seq, &op)?;
            seq
        };
        self.durable(seq)?;
        Ok(seq)
    }

    /// Applies a committed operation at the index a log gave it (a Raft log, the
    /// server's journal): the state-machine entry point. `op` must already have been
    /// checked by [`Collection::validate`] of a collection with this configuration; it
    /// is not checked again, because a committed entry cannot be refused. Indexes may
    /// skip (blank and membership entries); an index not newer than the applied one is
    /// a re-delivery and changes nothing. Errors are storage failures only (after one,
    /// the collection refuses further writes until it is reopened).
    pub fn apply_at(&self, index: u64, op: &Operation) -> Result<Applied> {
        {
            let mut applied = self.applied.lock();
            if index <= *applied {
                return Ok(Applied::AlreadyApplied { last: *applied });
            }
            self.log_and_apply(&mut applied, index, op)?;
        }
        self.durable(index)?;
        Ok(Applied::Applied)
    }

    fn log_and_apply(&self, applied: &mut u64, seq: u64, op: &Operation) -> Result<()> {
        if let Some(why) = self.poisoned.lock().clone() {
            return Err(Error::Poisoned(why));
        }
        let bytes = op.encode()?;
        self.wal.append(seq, &bytes)?;
        *applied = seq;
        let core = self.shared.core.read();
        if let Err(e) = core.apply(op) {
            // logged but not applied: refuse further writes; a reopen replays it
            *self.poisoned.lock() = Some(e.to_string());
            return Err(e);
        }
        if matches!(op, Operation::Upsert(_)) {
            let mut w = self.shared.wake.lock();
            *w = true;
            self.shared.wake_cv.notify_one();
        }
        Ok(())
    }

    fn durable(&self, seq: u64) -> Result<()> {
        match self.config.sync {
            crate::types::SyncPolicy::Always => self.wal.sync_upto(seq),
            crate::types::SyncPolicy::Interval { .. } => Ok(()),
        }
    }

    pub fn upsert(&self, points: Vec<PointStruct>) -> Result<u64> {
        self.submit(Operation::Upsert(points))
    }

    pub fn delete(&self, ids: Vec<PointId>) -> Result<u64> {
        self.submit(Operation::Delete(ids))
    }

    /// Merges `payload`'s top-level keys into the points' payloads.
    pub fn set_payload(&self, ids: Vec<PointId>, payload: Payload) -> Result<u64> {
        self.submit(Operation::SetPayload { ids, payload })
    }

    pub fn overwrite_payload(&self, ids: Vec<PointId>, payload: Payload) -> Result<u64> {
        self.submit(Operation::OverwritePayload { ids, payload })
    }

    pub fn delete_payload_keys(&self, ids: Vec<PointId>, keys: Vec<String>) -> Result<u64> {
        self.submit(Operation::DeletePayloadKeys { ids, keys })
    }

    pub fn clear_payload(&self, ids: Vec<PointId>) -> Result<u64> {
        self.submit(Operation::ClearPayload { ids })
    }

    pub fn create_payload_index(&self, key: &str, kind: PayloadSchemaType) -> Result<u64> {
        self.submit(Operation::CreateIndex {
            key: key.to_string(),
            kind,
        })
    }

    /// Like `create_payload_index` with Qdrant's `field_schema` JSON.
    pub fn create_payload_index_json(&self, key: &str, schema: &serde_json::Value) -> Result<u64> {
        self.create_payload_index(key, PayloadSchemaType::from_json(schema)?)
    }

    pub fn drop_payload_index(&self, key: &str) -> Result<u64> {
        self.submit(Operation::DropIndex {
            key: key.to_string(),
        })
    }

    pub fn last_seq(&self) -> u64 {
        *self.applied.lock()
    }

    /// Indexes every stored vector now, on the calling thread (and rayon's pool).
    pub fn build_index(&self) {
        let core = self.shared.core.read();
        while core.index_pending(INDEX_BATCH * 4, 1) > 0 {}
    }

    pub fn info(&self) -> CollectionInfo {
        let core = self.shared.core.read();
        let st = core.state.read();
        CollectionInfo {
            points: st.live.len() as usize,
            stored_vectors: core.vectors.len(),
            deleted_vectors: st.deleted.len() as usize,
            indexed_vectors: core.indexed.load(Ordering::Acquire).min(core.vectors.len()),
            last_seq: *self.applied.lock(),
            indexed_fields: st.index.schema(),
            vector_bytes: core.vectors.len() * self.config.dim * 4,
            quantized_vectors: core.quant.as_ref().map_or(0, QuantStore::len),
            quantized_bytes: core.quant.as_ref().map_or(0, QuantStore::bytes),
            graph_bytes: core.graph.layer0_bytes(),
        }
    }

    /// Points by id (missing ids are skipped), in the order asked.
    pub fn retrieve(&self, ids: &[PointId], with_payload: bool, with_vector: bool) -> Vec<Record> {
        let core = self.shared.core.read();
        let st = core.state.read();
        ids.iter()
            .filter_map(|id| {
                let off = *st.offsets.get(id)?;
                Some(Record {
                    id: *id,
                    payload: with_payload
                        .then(|| st.payloads.get(off).cloned().unwrap_or_default()),
                    vector: with_vector.then(|| core.vectors.vector(off).to_vec()),
                })
            })
            .collect()
    }

    /// The quantized code record of a live point (code bytes, then its f32
    /// correction), or None without codes; for checks and tools.
    pub fn quantized_code(&self, id: &PointId) -> Option<Vec<u8>> {
        let core = self.shared.core.read();
        let st = core.state.read();
        let off = *st.offsets.get(id)?;
        core.quant.as_ref()?.record(off)
    }

    /// Writes a snapshot of the current state; returns its sequence number. Older
    /// snapshots beyond the newest two, and WAL segments they no longer need, are removed.
    pub fn snapshot(&self) -> Result<u64> {
        let applied = self.applied.lock();
        let core = self.shared.core.read();
        self.snapshot_locked(*applied, &core)
    }

    fn snapshot_locked(&self, seq: u64, core: &Core) -> Result<u64> {
        let _ix = core.index_lock.lock();
        let st = core.state.read();
        let root = self.dir.join("snapshots");
        snapshot::write(
            &root,
            &SnapshotParts {
                seq,
                dim: self.config.dim,
                distance: self.config.distance,
                vectors: &core.vectors,
                ids: &st.ids,
                deleted: &st.deleted,
                payloads: &st.payloads,
                graph: &core.graph,
                indexed: core.indexed.load(Ordering::Acquire).min(st.ids.len()),
                index_schema: st.index.schema(),
                payload_index: &st.index,
                quant: core.quant.as_ref(),
            },
        )?;
        drop(st);
        let snaps = snapshot::list(&root)?;
        for (_, old) in snaps.iter().skip(KEEP_SNAPSHOTS) {
            fs::remove_dir_all(old).at(old)?;
        }
        if let Some((oldest, _)) = snaps.get(snaps.len().min(KEEP_SNAPSHOTS).wrapping_sub(1)) {
            let removed = self.wal.remove_upto(*oldest)?;
            tracing::info!(seq, removed_wal_segments = removed, "snapshot written");
        }
        Ok(seq)
    }

    /// Rewrites storage without deleted vectors, repairs the graph around them,
    /// and writes a snapshot. Returns how many vectors were reclaimed.
    pub fn compact(&self) -> Result<usize> {
        let applied = self.applied.lock();
        let mut core = self.shared.core.write();
        let _ix = core.index_lock.lock();
        let reclaimed;
        let new_core = {
            let st = core.state.read();
            if st.deleted.is_empty() {
                return Ok(0);
            }
            reclaimed = st.deleted.len() as usize;
            let n = core.vectors.len();
            let indexed = core.indexed.load(Ordering::Acquire).min(n);
            let mut remap = vec![NONE; n];
            let mut graph_remap = vec![NONE; n];
            let gen_ = self.generation.fetch_add(1, Ordering::Relaxed);
            let vectors = MmapVectors::create(&live_dir(&self.dir, gen_), self.config.dim)?;
            let mut new = State::default();
            let mut new_indexed = 0;
            let mut batch: Vec<&[f32]> = Vec::new();
            for off in st.live.iter() {
                let no = new.ids.len() as u32;
                remap[off as usize] = no;
                if (off as usize) < indexed {
                    graph_remap[off as usize] = no;
                    new_indexed += 1;
                }
                let id = st.ids[off as usize];
                new.ids.push(id);
                new.offsets.insert(id, no);
                new.live.insert(no);
                if let Some(p) = st.payloads.get(off) {
                    new.payloads.put(no, p.clone());
                }
                batch.push(core.vectors.vector(off));
                if batch.len() >= 4096 {
                    vectors.append(&batch)?;
                    batch.clear();
                }
            }
            vectors.append(&batch)?;
            drop(batch);
            for (key, kind) in st.index.schema() {
                let State {
                    index, payloads, ..
                } = &mut new;
                index.create(&key, kind, payloads.iter().map(|(o, p)| (*o, p)))?;
            }
            let graph = core.graph.compact(&graph_remap, &vectors);
            // the ranges are retrained on the live vectors
            let quant = QuantStore::open(
                self.config.quantization,
                self.config.distance,
                &live_codes_dir(&self.dir, gen_),
                None,
                &vectors,
            )?;
            Core {
                vectors,
                quant,
                graph,
                indexed: AtomicUsize::new(new_indexed),
                index_lock: Mutex::new(()),
                state: RwLock::new(new),
            }
        };
        drop(_ix);
        let old = std::mem::replace(&mut *core, new_core);
        let mut old_dirs = vec![old.vectors.dir().to_path_buf()];
        old_dirs.extend(
            old.quant
                .as_ref()
                .filter(|q| !q.config().always_ram())
                .map(|q| q.dir().to_path_buf()),
        );
        drop(old);
        for old_dir in old_dirs {
            if let Err(e) = fs::remove_dir_all(&old_dir) {
                tracing::warn!(dir = %old_dir.display(), error = %e, "could not remove old vector files");
            }
        }
        self.snapshot_locked(*applied, &core)?;
        tracing::info!(reclaimed, "compaction done");
        Ok(reclaimed)
    }

    pub(crate) fn dist(&self) -> DistFn {
        self.dist
    }
}

fn indexer_loop(s: &Shared) {
    loop {
        {
            let mut w = s.wake.lock();
            while !*w && !s.stop.load(Ordering::Acquire) {
                s.wake_cv.wait(&mut w);
            }
            *w = false;
        }
        if s.stop.load(Ordering::Acquire) {
            return;
        }
        while !s.stop.load(Ordering::Acquire) {
            let core = s.core.read();
            if core.index_pending(INDEX_BATCH, 1) == 0 {
                break;
            }
        }
    }
}

impl Drop for Collection {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        {
            let _w = self.shared.wake.lock();
            self.shared.wake_cv.notify_all();
        }
        if let Some(h) = self.indexer.take() {
            let _ = h.join();
        }
        let last = self.wal.last_seq();
        if let Err(e) = self.wal.sync_upto(last) {
            tracing::error!(error = %e, "final WAL fsync failed");
        }
    }
}
