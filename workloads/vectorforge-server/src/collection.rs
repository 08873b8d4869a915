//! One collection of the server: a vectorforge engine per vector space (the unnamed
//! vector, or each named vector), all holding the same points and payloads.
//!
//! Writes keep the engines in step. A collection with one vector space writes straight
//! to its engine (whose WAL makes it durable). With several, every write is first
//! appended to the collection's journal (a vectorforge WAL of per-engine operations),
//! fsynced (it is the commit point, whatever the sync policy), and then applied to each
//! engine at the same index with `apply_at`; on open, engines that are behind replay
//! the journal, so a crash between two engines loses nothing. The journal is trimmed once every engine has a
//! snapshot past it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use vectorforge::wal::Wal;
use vectorforge::{
    Applied, Collection, Filter, Operation, Payload, PayloadSchemaType, PointId, PointStruct,
    ScrollRequest, SearchRequest, SyncPolicy,
};

use crate::error::{ApiError, ApiResult};
use crate::params::CollectionParams;

const PARAMS_FILE: &str = "collection.json";
const JOURNAL_SEGMENT_BYTES: u64 = 64 << 20;
/// Engines behind a journal only need their own WAL for speed, not for safety.
const JOURNALED_ENGINE_SYNC: SyncPolicy = SyncPolicy::Interval { millis: 1000 };

/// A point as clients upsert it: one vector per vector space.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedPoint {
    pub id: PointId,
    pub vectors: BTreeMap<String, Vec<f32>>,
    pub payload: Option<Payload>,
}

/// Which points a write applies to.
#[derive(Clone, Debug)]
pub enum Selector {
    Ids(Vec<PointId>),
    Filter(Filter),
}

/// A write request against a collection.
#[derive(Clone, Debug)]
pub enum Write {
    Upsert(Vec<NamedPoint>),
    Delete(Selector),
    /// Merge into the payload, or into the object at `key` (a dotted path) when given.
    SetPayload {
        sel: Selector,
        payload: Payload,
        key: Option<String>,
    },
    OverwritePayload {
        sel: Selector,
        payload: Payload,
    },
    DeletePayload {
        sel: Selector,
        keys: Vec<String>,
    },
    ClearPayload(Selector),
    CreateIndex {
        key: String,
        kind: PayloadSchemaType,
    },
    DropIndex {
        key: String,
    },
}

/// Which vectors to return with points.
#[derive(Clone, Debug, PartialEq)]
pub enum VectorSelection {
    None,
    All,
    Names(Vec<String>),
}

/// Vectors of a returned point: plain for an unnamed collection, else by name.
#[derive(Clone, Debug, PartialEq)]
pub enum VectorOut {
    Single(Vec<f32>),
    Named(BTreeMap<String, Vec<f32>>),
}

/// A point returned by retrieve / scroll / search.
#[derive(Clone, Debug, PartialEq)]
pub struct PointOut {
    pub id: PointId,
    pub score: Option<f32>,
    pub payload: Option<Payload>,
    pub vector: Option<VectorOut>,
}

/// Counts and state for CollectionInfo.
#[derive(Clone, Debug)]
pub struct Info {
    pub points: usize,
    pub indexed_vectors: usize,
    pub stored_vectors: usize,
    pub all_indexed: bool,
    pub last_seq: u64,
    /// Indexed payload fields and their types.
    pub indexed_fields: Vec<(String, PayloadSchemaType)>,
}

impl std::fmt::Debug for PointsCollection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointsCollection")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish()
    }
}

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

fn engine_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join("vectors").join(index.to_string())
}

/// An I/O failure on `path` as a 500.
pub(crate) fn io(path: &Path, e: std::io::Error) -> ApiError {
    ApiError::internal(format!("Service internal error: {}: {e}", path.display()))
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> ApiResult<()> {
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

fn encode_ops(ops: &[Operation]) -> ApiResult<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        let b = op.encode()?;
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        out.extend_from_slice(&b);
    }
    Ok(out)
}

fn decode_ops(mut b: &[u8]) -> Result<Vec<Operation>, vectorforge::Error> {
    let bad = || vectorforge::Error::Decode("journal record is truncated".into());
    let take = |b: &mut &[u8], n: usize| -> Result<Vec<u8>, vectorforge::Error> {
        if b.len() < n {
            return Err(bad());
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head.to_vec())
    };
    let n = u32::from_le_bytes(take(&mut b, 4)?.try_into().map_err(|_| bad())?) as usize;
    let mut ops = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let len = u64::from_le_bytes(take(&mut b, 8)?.try_into().map_err(|_| bad())?);
        let len = usize::try_from(len).map_err(|_| bad())?;
        ops.push(Operation::decode(&take(&mut b, len)?)?);
    }
    Ok(ops)
}

impl PointsCollection {
    /// Creates the collection's files in `dir` (which must not exist) and opens it.
    pub fn create(dir: &Path, name: &str, params: CollectionParams) -> ApiResult<Self> {
        params.validate()?;
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let bytes =
            serde_json::to_vec_pretty(&params).map_err(|e| ApiError::internal(e.to_string()))?;
        write_atomic(&dir.join(PARAMS_FILE), &bytes)?;
        Self::open(dir, name)
    }

    /// Reads the stored params of the collection in `dir`.
    pub fn read_params(dir: &Path) -> ApiResult<CollectionParams> {
        let p = dir.join(PARAMS_FILE);
        let bytes = fs::read(&p).map_err(|e| io(&p, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::internal(format!("{}: {e}", p.display())))
    }

    /// Opens the collection in `dir`, recovering every engine and replaying the journal.
    pub fn open(dir: &Path, name: &str) -> ApiResult<Self> {
        let params = Self::read_params(dir)?;
        let journaled = params.vectors.len() > 1;
        let mut engines = Vec::with_capacity(params.vectors.len());
        for (i, vname) in params.vectors.keys().enumerate() {
            let mut cfg = params
                .engine_config(vname)
                .ok_or_else(|| ApiError::internal("vector params vanished"))?;
            if journaled {
                cfg.sync = JOURNALED_ENGINE_SYNC;
            }
            engines.push((vname.clone(), Collection::open(engine_dir(dir, i), cfg)?));
        }
        let mut last = engines.iter().map(|(_, e)| e.last_seq()).max().unwrap_or(0);
        let journal = if journaled {
            let behind = engines.iter().map(|(_, e)| e.last_seq()).min().unwrap_or(0);
            let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
            let wal = Wal::open(
                &dir.join("journal"),
                params.sync,
                JOURNAL_SEGMENT_BYTES,
                |rec| {
                    if rec.seq > behind {
                        pending.push((rec.seq, rec.body.to_vec()));
                    }
                    Ok(())
                },
            )?;
            // engines behind the journal catch up; apply_at skips what one already has
            for (seq, bytes) in pending {
                let ops = decode_ops(&bytes)?;
                if ops.len() != engines.len() {
                    return Err(ApiError::internal(format!(
                        "journal record {seq} has {} operations for {} vectors",
                        ops.len(),
                        engines.len()
                    )));
                }
                for ((vname, engine), op) in engines.iter().zip(ops) {
                    if engine.apply_at(seq, &op)? == Applied::Applied {
                        tracing::debug!(
                            collection = name,
                            vector = vname,
                            seq,
                            "replayed from journal"
                        );
                    }
                }
            }
            last = last.max(wal.last_seq());
            // The journal is synced before any engine applies a record, so an engine
            // ahead of it means the disk lost synced data (or an older build wrote it):
            // nothing can bring the others level. Writes go on after the newest.
            let behind: Vec<&str> = engines
                .iter()
                .filter(|(_, e)| e.last_seq() < last)
                .map(|(n, _)| n.as_str())
                .collect();
            if !behind.is_empty() {
                tracing::error!(
                    collection = name,
                    ?behind,
                    journal = wal.last_seq(),
                    last,
                    "vectors lack operations that neither the journal nor their own WAL holds"
                );
            }
            Some(wal)
        } else {
            None
        };
        let snap = engines
            .iter()
            .map(|(_, e)| newest_snapshot(e.dir()))
            .min()
            .unwrap_or(0);
        tracing::info!(
            collection = name,
            vectors = engines.len(),
            last_seq = last,
            "collection opened"
        );
        Ok(PointsCollection {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            unnamed: params.is_unnamed(),
            params: parking_lot::RwLock::new(params),
            engines,
            journal,
            writer: Mutex::new(last),
            maintenance: Mutex::new(()),
            snapshotted: Mutex::new((snap, snap)),
        })
    }

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
        f: impl FnOnce(&mut CollectionParams) -> ApiResult<()>,
    ) -> ApiResult<()> {
        let mut p = self.params.write();
        let mut next = p.clone();
        f(&mut next)?;
        if next.vectors != p.vectors || next.hnsw != p.hnsw || next.sync != p.sync {
            return Err(ApiError::bad_request(
                "Wrong input: vectors, HNSW and WAL settings of an existing collection cannot change; create a new collection and re-ingest",
            ));
        }
        let bytes =
            serde_json::to_vec_pretty(&next).map_err(|e| ApiError::internal(e.to_string()))?;
        write_atomic(&self.dir.join(PARAMS_FILE), &bytes)?;
        *p = next;
        Ok(())
    }

    /// The engine of a vector space; "" names the unnamed vector.
    pub fn engine(&self, using: &str) -> ApiResult<&Collection> {
        self.engines
            .iter()
            .find(|(n, _)| n == using)
            .map(|(_, e)| e)
            .ok_or_else(|| {
                if using.is_empty() {
                    ApiError::bad_request(format!(
                        "Wrong input: collection {} has only named vectors ({}); say which one with `using`",
                        self.name,
                        self.vector_names().join(", ")
                    ))
                } else {
                    ApiError::bad_request(format!(
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

    /// Ids a selector stands for (a filter is resolved against the current state).
    fn resolve(&self, sel: Selector) -> Vec<PointId> {
        match sel {
            Selector::Ids(ids) => ids,
            Selector::Filter(f) => self
                .primary()
                .scroll(&ScrollRequest {
                    filter: Some(f),
                    limit: usize::MAX,
                    offset: None,
                    with_payload: false,
                    with_vector: false,
                })
                .points
                .into_iter()
                .map(|r| r.id)
                .collect(),
        }
    }

    /// One engine operation per vector space, validated by its engine.
    fn split(&self, w: Write) -> ApiResult<Vec<Operation>> {
        let common = |op: Operation| -> ApiResult<Vec<Operation>> {
            let mut out = Vec::with_capacity(self.engines.len());
            for (_, e) in &self.engines {
                out.push(e.validate(op.clone())?);
            }
            Ok(out)
        };
        match w {
            Write::Upsert(points) => {
                let mut per: Vec<Vec<PointStruct>> =
                    vec![Vec::with_capacity(points.len()); self.engines.len()];
                for p in points {
                    if let Some(extra) = p
                        .vectors
                        .keys()
                        .find(|k| !self.engines.iter().any(|(n, _)| n == *k))
                    {
                        return Err(ApiError::bad_request(format!(
                            "Wrong input: Not existing vector name error: {extra} (point {})",
                            p.id
                        )));
                    }
                    let mut vectors = p.vectors;
                    for (i, (vname, _)) in self.engines.iter().enumerate() {
                        let v = vectors.remove(vname).ok_or_else(|| {
                            ApiError::bad_request(if vname.is_empty() {
                                format!("Wrong input: point {} has no vector", p.id)
                            } else {
                                format!("Wrong input: point {} has no vector {vname:?} (vectorforge needs every named vector of the collection)", p.id)
                            })
                        })?;
                        per[i].push(PointStruct {
                            id: p.id,
                            vector: v,
                            payload: p.payload.clone(),
                        });
                    }
                }
                let mut out = Vec::with_capacity(per.len());
                for ((_, e), pts) in self.engines.iter().zip(per) {
                    out.push(e.validate(Operation::Upsert(pts))?);
                }
                Ok(out)
            }
            Write::Delete(sel) => common(Operation::Delete(self.resolve(sel))),
            Write::SetPayload {
                sel,
                payload,
                key: None,
            } => common(Operation::SetPayload {
                ids: self.resolve(sel),
                payload,
            }),
            Write::SetPayload {
                sel,
                payload,
                key: Some(key),
            } => common(Operation::SetPayloadAt {
                ids: self.resolve(sel),
                key,
                payload,
            }),
            Write::OverwritePayload { sel, payload } => common(Operation::OverwritePayload {
                ids: self.resolve(sel),
                payload,
            }),
            Write::DeletePayload { sel, keys } => common(Operation::DeletePayloadKeys {
                ids: self.resolve(sel),
                keys,
            }),
            Write::ClearPayload(sel) => common(Operation::ClearPayload {
                ids: self.resolve(sel),
            }),
            Write::CreateIndex { key, kind } => common(Operation::CreateIndex { key, kind }),
            Write::DropIndex { key } => common(Operation::DropIndex { key }),
        }
    }

    /// Applies a write to every engine; returns its sequence number (Qdrant's operation_id).
    /// Blocks on disk I/O: call it from a blocking thread.
    pub fn write(&self, w: Write) -> ApiResult<u64> {
        let Some(journal) = &self.journal else {
            let ops = self.split(w)?;
            let mut seq = 0;
            for op in ops {
                seq = self.primary().submit(op)?;
            }
            return Ok(seq);
        };
        // Several engines: resolve, journal and apply under one lock so that every
        // engine sees the same operations in the same order.
        // The journal record is the commit point: it is on disk before any engine
        // applies it (whatever the sync policy), so no engine can get ahead of it.
        let mut last = self.writer.lock();
        let ops = self.split(w)?;
        let seq = *last + 1;
        journal.append(seq, &encode_ops(&ops)?)?;
        journal.sync_upto(seq)?;
        *last = seq;
        for ((_, e), op) in self.engines.iter().zip(ops) {
            e.apply_at(seq, &op)?;
        }
        Ok(seq)
    }

    /// Nearest neighbours in one vector space.
    pub fn search(
        &self,
        using: &str,
        mut req: SearchRequest,
        vectors: &VectorSelection,
    ) -> ApiResult<Vec<PointOut>> {
        let engine = self.engine(using)?;
        let only_own = matches!(vectors, VectorSelection::Names(n) if n.len() == 1 && n[0] == using)
            || (matches!(vectors, VectorSelection::All) && self.engines.len() == 1);
        req.with_vector = only_own;
        let hits = engine.search(&req)?;
        let mut out: Vec<PointOut> = hits
            .into_iter()
            .map(|h| PointOut {
                id: h.id,
                score: Some(h.score),
                payload: h.payload,
                vector: h
                    .vector
                    .map(|v| self.wrap_vectors(BTreeMap::from([(using.to_string(), v)]))),
            })
            .collect();
        if !only_own && *vectors != VectorSelection::None {
            self.attach_vectors(&mut out, vectors)?;
        }
        Ok(out)
    }

    fn wrap_vectors(&self, mut m: BTreeMap<String, Vec<f32>>) -> VectorOut {
        if self.unnamed {
            VectorOut::Single(m.remove("").unwrap_or_default())
        } else {
            VectorOut::Named(m)
        }
    }

    fn selected<'a>(
        &'a self,
        vectors: &VectorSelection,
    ) -> ApiResult<Vec<&'a (String, Collection)>> {
        Ok(match vectors {
            VectorSelection::None => Vec::new(),
            VectorSelection::All => self.engines.iter().collect(),
            VectorSelection::Names(names) => {
                let mut v = Vec::new();
                for n in names {
                    self.engine(n)?;
                    v.extend(self.engines.iter().filter(|(en, _)| en == n));
                }
                v
            }
        })
    }

    fn attach_vectors(&self, points: &mut [PointOut], vectors: &VectorSelection) -> ApiResult<()> {
        let engines = self.selected(vectors)?;
        let ids: Vec<PointId> = points.iter().map(|p| p.id).collect();
        let mut by_id: BTreeMap<PointId, BTreeMap<String, Vec<f32>>> = BTreeMap::new();
        for (name, e) in engines {
            for r in e.retrieve(&ids, false, true) {
                if let Some(v) = r.vector {
                    by_id.entry(r.id).or_default().insert(name.clone(), v);
                }
            }
        }
        for p in points {
            let m = by_id.remove(&p.id).unwrap_or_default();
            p.vector = Some(self.wrap_vectors(m));
        }
        Ok(())
    }

    /// Points by id, in the order asked (missing ids are skipped).
    pub fn retrieve(
        &self,
        ids: &[PointId],
        with_payload: bool,
        vectors: &VectorSelection,
    ) -> ApiResult<Vec<PointOut>> {
        let mut out: Vec<PointOut> = self
            .primary()
            .retrieve(ids, with_payload, false)
            .into_iter()
            .map(|r| PointOut {
                id: r.id,
                score: None,
                payload: r.payload,
                vector: None,
            })
            .collect();
        if *vectors != VectorSelection::None {
            self.attach_vectors(&mut out, vectors)?;
        }
        Ok(out)
    }

    /// A page of points ordered by id, and where the next page starts.
    pub fn scroll(
        &self,
        filter: Option<Filter>,
        limit: usize,
        offset: Option<PointId>,
        with_payload: bool,
        vectors: &VectorSelection,
    ) -> ApiResult<(Vec<PointOut>, Option<PointId>)> {
        let r = self.primary().scroll(&ScrollRequest {
            filter,
            limit,
            offset,
            with_payload,
            with_vector: false,
        });
        let mut out: Vec<PointOut> = r
            .points
            .into_iter()
            .map(|r| PointOut {
                id: r.id,
                score: None,
                payload: r.payload,
                vector: None,
            })
            .collect();
        if *vectors != VectorSelection::None {
            self.attach_vectors(&mut out, vectors)?;
        }
        Ok((out, r.next_page_offset))
    }

    pub fn count(&self, filter: Option<&Filter>) -> usize {
        self.primary().count(filter)
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

    /// Snapshots every engine at one sequence number and trims the journal behind the
    /// previous snapshot. Returns the sequence number. Blocks: run on a blocking thread.
    pub fn snapshot(&self) -> ApiResult<u64> {
        let _m = self.maintenance.lock();
        self.snapshot_locked()
    }

    fn snapshot_locked(&self) -> ApiResult<u64> {
        let seq = if self.journal.is_some() {
            let _w = self.writer.lock();
            let mut seq = 0;
            for (_, e) in &self.engines {
                seq = e.snapshot()?;
            }
            seq
        } else {
            self.primary().snapshot()?
        };
        let mut s = self.snapshotted.lock();
        if let Some(j) = &self.journal {
            j.remove_upto(s.1)?;
        }
        *s = (s.1, seq);
        Ok(seq)
    }

    /// Writes a self-contained archive of the collection (params + a fresh snapshot of
    /// every engine) to `dest` as a tar file.
    pub fn archive(&self, dest: &Path) -> ApiResult<()> {
        let _m = self.maintenance.lock();
        let seq = self.snapshot_locked()?;
        let file = fs::File::create(dest).map_err(|e| io(dest, e))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let add = |tar: &mut tar::Builder<_>, src: &Path, name: &str| -> ApiResult<()> {
            tar.append_path_with_name(src, name).map_err(|e| io(src, e))
        };
        add(&mut tar, &self.dir.join(PARAMS_FILE), PARAMS_FILE)?;
        for (i, (_, e)) in self.engines.iter().enumerate() {
            let base = format!("vectors/{i}");
            add(
                &mut tar,
                &e.dir().join("config.json"),
                &format!("{base}/config.json"),
            )?;
            let snap = vectorforge::snapshot::dir_name(seq);
            let sdir = e.dir().join("snapshots").join(&snap);
            let entries = fs::read_dir(&sdir).map_err(|e| io(&sdir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io(&sdir, e))?;
                let fname = entry.file_name().to_string_lossy().into_owned();
                add(
                    &mut tar,
                    &entry.path(),
                    &format!("{base}/snapshots/{snap}/{fname}"),
                )?;
            }
        }
        let w = tar.into_inner().map_err(|e| io(dest, e))?;
        let f = w.into_inner().map_err(|e| io(dest, e.into_error()))?;
        f.sync_all().map_err(|e| io(dest, e))?;
        Ok(())
    }

    /// Makes every acknowledged write durable (used at shutdown).
    pub fn flush(&self) -> ApiResult<()> {
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

/// Sequence number of the newest snapshot of an engine (0 without one).
fn newest_snapshot(engine_dir: &Path) -> u64 {
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

/// Unpacks an archive written by [`PointsCollection::archive`] into `dir` (which must
/// not exist), checking that it holds a collection. Entries may not leave `dir`.
pub fn unpack_archive(archive: &Path, dir: &Path) -> ApiResult<CollectionParams> {
    let file = fs::File::open(archive).map_err(|e| io(archive, e))?;
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let entries = tar
        .entries()
        .map_err(|e| ApiError::bad_request(format!("snapshot is not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry
            .map_err(|e| ApiError::bad_request(format!("snapshot archive is corrupt: {e}")))?;
        // unpack_in refuses paths that escape `dir` (absolute, `..`).
        let ok = entry
            .unpack_in(dir)
            .map_err(|e| ApiError::bad_request(format!("snapshot archive is corrupt: {e}")))?;
        if !ok {
            return Err(ApiError::bad_request(
                "snapshot archive has an entry outside the collection",
            ));
        }
    }
    let params = PointsCollection::read_params(dir).map_err(|e| {
        ApiError::bad_request(format!(
            "snapshot has no valid collection.json: {}",
            e.message
        ))
    })?;
    for i in 0..params.vectors.len() {
        let snaps = vectorforge::snapshot::list(&engine_dir(dir, i).join("snapshots"))
            .map_err(|e| ApiError::bad_request(format!("snapshot archive: {e}")))?;
        let (_, sdir) = snaps.first().ok_or_else(|| {
            ApiError::bad_request(format!("snapshot archive lacks the data of vector {i}"))
        })?;
        vectorforge::snapshot::validate(sdir)
            .map_err(|e| ApiError::bad_request(format!("snapshot archive: {e}")))?;
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{CollectionParams, parse_vectors};
    use serde_json::json;
    use vectorforge::HnswConfig;

    fn params(vectors: serde_json::Value) -> CollectionParams {
        CollectionParams {
            vectors: parse_vectors(&vectors).unwrap(),
            hnsw: HnswConfig::default(),
            sync: SyncPolicy::Always,
            optimizers_config: None,
            metadata: None,
            created_at: String::new(),
        }
    }

    fn point(id: u64, a: Vec<f32>, b: Vec<f32>) -> NamedPoint {
        NamedPoint {
            id: PointId::Num(id),
            vectors: BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]),
            payload: Some(json!({"n": id}).as_object().unwrap().clone()),
        }
    }

    #[test]
    fn journal_records_round_trip() {
        let ops = vec![
            Operation::Delete(vec![PointId::Num(1)]),
            Operation::ClearPayload { ids: vec![] },
        ];
        assert_eq!(decode_ops(&encode_ops(&ops).unwrap()).unwrap(), ops);
        assert!(decode_ops(&[1, 0, 0]).is_err());
    }

    #[test]
    fn named_vectors_write_search_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let p = params(
            json!({"a": {"size": 2, "distance": "Euclid"}, "b": {"size": 3, "distance": "Dot"}}),
        );
        let c = PointsCollection::create(&dir, "c", p).unwrap();
        let pts = (0..50)
            .map(|i| point(i, vec![i as f32, 0.0], vec![1.0, i as f32, 0.5]))
            .collect();
        c.write(Write::Upsert(pts)).unwrap();
        let near = |c: &PointsCollection| {
            let req = SearchRequest {
                vector: vec![10.2, 0.0],
                limit: 1,
                with_payload: true,
                ..Default::default()
            };
            c.search("a", req, &VectorSelection::All).unwrap()
        };
        let hit = &near(&c)[0];
        assert_eq!(hit.id, PointId::Num(10));
        match &hit.vector {
            Some(VectorOut::Named(m)) => assert_eq!(m["b"], vec![1.0, 10.0, 0.5]),
            other => panic!("expected both named vectors, got {other:?}"),
        }
        // a point missing one vector is refused and nothing is applied
        let bad = NamedPoint {
            vectors: BTreeMap::from([("a".to_string(), vec![1.0, 1.0])]),
            ..point(99, vec![], vec![])
        };
        assert!(c.write(Write::Upsert(vec![bad])).is_err());
        assert_eq!(c.count(None), 50);
        // a wrong dimension in the second vector space rejects the whole batch
        let bad = point(98, vec![1.0, 1.0], vec![1.0]);
        assert_eq!(c.write(Write::Upsert(vec![bad])).unwrap_err().status, 400);
        assert_eq!(c.count(None), 50);
        let f = Filter::from_json(&json!({"must": [{"key": "n", "range": {"lt": 5}}]})).unwrap();
        c.write(Write::Delete(Selector::Filter(f))).unwrap();
        assert_eq!(c.count(None), 45);
        drop(c);
        let c = PointsCollection::open(&dir, "c").unwrap();
        assert_eq!(c.count(None), 45);
        assert_eq!(near(&c)[0].id, PointId::Num(10));
        assert_eq!(c.engine("b").unwrap().count(None), 45);
    }

    #[test]
    fn an_engine_behind_the_journal_catches_up_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let p = params(
            json!({"a": {"size": 2, "distance": "Euclid"}, "b": {"size": 3, "distance": "Dot"}}),
        );
        let c = PointsCollection::create(&dir, "c", p).unwrap();
        c.write(Write::Upsert(vec![point(
            1,
            vec![1.0, 1.0],
            vec![1.0, 1.0, 1.0],
        )]))
        .unwrap();
        c.snapshot().unwrap();
        c.write(Write::Upsert(vec![point(
            2,
            vec![2.0, 1.0],
            vec![2.0, 1.0, 1.0],
        )]))
        .unwrap();
        drop(c);
        // simulate a crash that lost engine b's WAL tail (its snapshot holds point 1 only)
        fs::remove_dir_all(engine_dir(&dir, 1).join("wal")).unwrap();
        let c = PointsCollection::open(&dir, "c").unwrap();
        assert_eq!(c.engine("b").unwrap().count(None), 2);
        assert_eq!(
            c.engine("a").unwrap().last_seq(),
            c.engine("b").unwrap().last_seq()
        );
        // it goes on from there: written to and reopened, both engines agree
        c.write(Write::Delete(Selector::Ids(vec![PointId::Num(1)])))
            .unwrap();
        drop(c);
        let c = PointsCollection::open(&dir, "c").unwrap();
        for v in ["a", "b"] {
            assert_eq!(c.engine(v).unwrap().count(None), 1, "{v}");
            assert_eq!(c.engine(v).unwrap().last_seq(), 3, "{v}");
        }
    }

    #[test]
    fn a_write_after_the_journal_lost_its_tail_reopens() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let p = params(
            json!({"a": {"size": 2, "distance": "Euclid"}, "b": {"size": 3, "distance": "Dot"}}),
        );
        let c = PointsCollection::create(&dir, "c", p).unwrap();
        let up = |i: u64| Write::Upsert(vec![point(i, vec![i as f32, 1.0], vec![1.0, 1.0, 1.0])]);
        c.write(up(1)).unwrap();
        c.snapshot().unwrap();
        c.write(up(2)).unwrap();
        drop(c);
        // disk lost data: engine b's WAL tail and the whole journal; a stays at 2, b at 1
        fs::remove_dir_all(engine_dir(&dir, 1).join("wal")).unwrap();
        fs::remove_dir_all(dir.join("journal")).unwrap();
        let c = PointsCollection::open(&dir, "c").unwrap();
        assert_eq!(c.engine("b").unwrap().last_seq(), 1);
        // the next write skips an index in engine b and starts the journal after a gap
        assert_eq!(c.write(up(3)).unwrap(), 3);
        drop(c);
        let c = PointsCollection::open(&dir, "c").unwrap();
        assert_eq!(c.engine("a").unwrap().count(None), 3);
        assert_eq!(c.engine("b").unwrap().count(None), 2);
        assert_eq!(c.engine("b").unwrap().last_seq(), 3);
        assert_eq!(c.write(up(4)).unwrap(), 4);
    }

    #[test]
    fn archives_unpack_into_an_equal_collection() {
        let tmp = tempfile::tempdir().unwrap();
        let c = PointsCollection::create(
            &tmp.path().join("c"),
            "c",
            params(json!({"size": 2, "distance": "Cosine"})),
        )
        .unwrap();
        let pts = (1..=20).map(|i| NamedPoint {
            id: PointId::Num(i),
            vectors: BTreeMap::from([(String::new(), vec![1.0, i as f32])]),
            payload: None,
        });
        c.write(Write::Upsert(pts.collect())).unwrap();
        let archive = tmp.path().join("c.snapshot");
        c.archive(&archive).unwrap();
        let restored = tmp.path().join("r");
        unpack_archive(&archive, &restored).unwrap();
        let r = PointsCollection::open(&restored, "r").unwrap();
        assert_eq!(r.count(None), 20);
        let garbage = tmp.path().join("garbage");
        fs::write(&garbage, b"not a tar").unwrap();
        assert_eq!(
            unpack_archive(&garbage, &tmp.path().join("g"))
                .unwrap_err()
                .status,
            400
        );
    }
}
