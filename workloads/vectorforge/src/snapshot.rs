//! Snapshots: a directory `snapshot-<seq>` holding everything a shard needs to
//! restart without the WAL before `seq`: vectors (flat f32), point ids and
//! tombstones, payloads, the payload index schema and the HNSW graph, plus a
//! `meta.json` with a CRC32C per file. Written atomically: into a `.tmp`
//! directory, every file fsynced, renamed into place, parent directory fsynced.
//! The payload index bitmaps are rebuilt from the payloads when loading.
//! Quantized collections add `codes.bin` and `quantizer.json` (optional: a load
//! that finds them missing, damaged or made with other settings re-encodes the
//! vectors instead of skipping the snapshot).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::hnsw::Hnsw;
use crate::ops::Cursor;
use crate::payload::PayloadStore;
use crate::payload::index::{PayloadIndex, PayloadSchemaType};
use crate::quantization::QuantStore;
use crate::storage::MmapVectors;
use crate::types::{Distance, Offset, Payload, PointId};
use crate::wal::fsync_dir;

pub const VECTORS: &str = "vectors.bin";
pub const POINTS: &str = "points.bin";
pub const PAYLOADS: &str = "payloads.bin";
pub const GRAPH: &str = "graph.bin";
/// Serialised payload index (absent in snapshots written before it existed: rebuilt then).
pub const PAYLOAD_INDEX: &str = "payload_index.bin";
const META: &str = "meta.json";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub version: u32,
    pub seq: u64,
    pub dim: usize,
    pub distance: Distance,
    /// Vectors stored (offsets `0..count`, deleted ones included).
    pub count: usize,
    /// Offsets `0..indexed` are in the graph.
    pub indexed: usize,
    pub index_schema: Vec<(String, PayloadSchemaType)>,
    /// CRC32C of every data file.
    pub files: BTreeMap<String, u32>,
}

/// What a snapshot is made from (borrowed from a consistent, locked view).
pub struct SnapshotParts<'a> {
    pub seq: u64,
    pub dim: usize,
    pub distance: Distance,
    pub vectors: &'a MmapVectors,
    pub ids: &'a [PointId],
    pub deleted: &'a RoaringBitmap,
    pub payloads: &'a PayloadStore,
    pub graph: &'a Hnsw,
    pub indexed: usize,
    pub index_schema: Vec<(String, PayloadSchemaType)>,
    pub payload_index: &'a PayloadIndex,
    /// Quantized codes (`codes.bin` + `quantizer.json`, once trained).
    pub quant: Option<&'a QuantStore>,
}

pub fn dir_name(seq: u64) -> String {
    format!("snapshot-{seq:020}")
}

pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<u32> {
    let mut f = File::create(path).at(path)?;
    f.write_all(bytes).at(path)?;
    f.sync_all().at(path)?;
    Ok(crc32c::crc32c(bytes))
}

pub(crate) fn file_crc(path: &Path) -> Result<u32> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path).at(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut crc = 0;
    loop {
        let n = r.read(&mut buf).at(path)?;
        if n == 0 {
            return Ok(crc);
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
    }
}

/// Writes a snapshot under `root` and returns its directory.
pub fn write(root: &Path, p: &SnapshotParts<'_>) -> Result<PathBuf> {
    fs::create_dir_all(root).at(root)?;
    let name = dir_name(p.seq);
    let tmp = root.join(format!("{name}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    fs::create_dir_all(&tmp).at(&tmp)?;
    let count = p.ids.len();
    let mut files = BTreeMap::new();
    files.insert(
        VECTORS.to_string(),
        p.vectors.write_flat(&tmp.join(VECTORS), count)?,
    );

    let mut pts = Vec::with_capacity(count * 10);
    for (off, id) in p.ids.iter().enumerate() {
        let flags = u8::from(p.deleted.contains(off as u32));
        match id {
            PointId::Num(n) => {
                pts.extend_from_slice(&[flags, 0]);
                pts.extend_from_slice(&n.to_le_bytes());
            }
            PointId::Uuid(u) => {
                pts.extend_from_slice(&[flags, 1]);
                pts.extend_from_slice(u.as_bytes());
            }
        }
    }
    files.insert(POINTS.to_string(), write_synced(&tmp.join(POINTS), &pts)?);

    let mut pl = Vec::new();
    let mut entries: Vec<(&Offset, &Payload)> = p.payloads.iter().collect();
    entries.sort_by_key(|(o, _)| **o);
    for (off, payload) in entries {
        let b = serde_json::to_vec(payload).map_err(|e| Error::InvalidPayload(e.to_string()))?;
        pl.extend_from_slice(&off.to_le_bytes());
        pl.extend_from_slice(&(b.len() as u32).to_le_bytes());
        pl.extend_from_slice(&b);
    }
    files.insert(
        PAYLOADS.to_string(),
        write_synced(&tmp.join(PAYLOADS), &pl)?,
    );

    files.insert(
        PAYLOAD_INDEX.to_string(),
        write_synced(&tmp.join(PAYLOAD_INDEX), &p.payload_index.encode()?)?,
    );

    p.graph.save(&tmp.join(GRAPH), p.indexed)?;
    files.insert(GRAPH.to_string(), file_crc(&tmp.join(GRAPH))?);

    if let Some(q) = p.quant {
        q.write_snapshot(&tmp, count, &mut files)?;
    }

    let meta = SnapshotMeta {
        version: 1,
        seq: p.seq,
        dim: p.dim,
        distance: p.distance,
        count,
        indexed: p.indexed,
        index_schema: p.index_schema.clone(),
        files,
    };
    let mb = serde_json::to_vec_pretty(&meta).map_err(|e| Error::InvalidPayload(e.to_string()))?;
    write_synced(&tmp.join(META), &mb)?;
    fsync_dir(&tmp)?;
    let dst = root.join(&name);
    if dst.exists() {
        fs::remove_dir_all(&dst).at(&dst)?;
    }
    fs::rename(&tmp, &dst).at(&dst)?;
    fsync_dir(root)?;
    Ok(dst)
}

/// Snapshot directories under `root`, newest first (unfinished `.tmp` ones are removed).
pub fn list(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    if !root.exists() {
        return Ok(v);
    }
    for e in fs::read_dir(root).at(root)? {
        let p = e.at(root)?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if name.ends_with(".tmp") {
            tracing::info!(path = %p.display(), "removing unfinished snapshot");
            fs::remove_dir_all(&p).at(&p)?;
            continue;
        }
        if let Some(seq) = name
            .strip_prefix("snapshot-")
            .and_then(|s| s.parse::<u64>().ok())
        {
            v.push((seq, p));
        }
    }
    v.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(v)
}

/// Reads `meta.json` and checks every file against its checksum.
pub fn validate(dir: &Path) -> Result<SnapshotMeta> {
    let bad = |reason: String| Error::SnapshotInvalid {
        path: dir.to_path_buf(),
        reason,
    };
    let mp = dir.join(META);
    let meta: SnapshotMeta = serde_json::from_slice(&fs::read(&mp).at(&mp)?)
        .map_err(|e| bad(format!("unreadable meta.json: {e}")))?;
    if meta.version != 1 {
        return Err(bad(format!("unknown snapshot version {}", meta.version)));
    }
    for name in [VECTORS, POINTS, PAYLOADS, GRAPH] {
        let want = meta
            .files
            .get(name)
            .ok_or_else(|| bad(format!("meta.json lists no {name}")))?;
        let got = file_crc(&dir.join(name))?;
        if got != *want {
            return Err(bad(format!("{name} checksum mismatch")));
        }
    }
    if let Some(want) = meta.files.get(PAYLOAD_INDEX)
        && file_crc(&dir.join(PAYLOAD_INDEX))? != *want
    {
        return Err(bad(format!("{PAYLOAD_INDEX} checksum mismatch")));
    }
    let vlen = fs::metadata(dir.join(VECTORS))
        .at(&dir.join(VECTORS))?
        .len();
    if vlen != (meta.count * meta.dim * 4) as u64 {
        return Err(bad(format!(
            "{VECTORS} has {vlen} bytes for {} vectors",
            meta.count
        )));
    }
    Ok(meta)
}

/// Point ids by offset and the deleted offsets.
pub fn read_points(dir: &Path, count: usize) -> Result<(Vec<PointId>, RoaringBitmap)> {
    let p = dir.join(POINTS);
    let data = fs::read(&p).at(&p)?;
    let mut c = Cursor::new(&data);
    let mut ids = Vec::with_capacity(count);
    let mut deleted = RoaringBitmap::new();
    for off in 0..count {
        if c.u8()? != 0 {
            deleted.insert(off as u32);
        }
        ids.push(c.id()?);
    }
    if !c.done() {
        return Err(Error::SnapshotInvalid {
            path: p,
            reason: "trailing bytes".into(),
        });
    }
    Ok((ids, deleted))
}

pub fn read_payloads(dir: &Path) -> Result<Vec<(Offset, Payload)>> {
    let p = dir.join(PAYLOADS);
    let data = fs::read(&p).at(&p)?;
    let mut c = Cursor::new(&data);
    let mut out = Vec::new();
    while !c.done() {
        let off = c.u32()?;
        let n = c.u32()? as usize;
        let payload: Payload =
            serde_json::from_slice(c.bytes(n)?).map_err(|e| Error::Decode(e.to_string()))?;
        out.push((off, payload));
    }
    Ok(out)
}

/// The stored payload index, or None for snapshots written before it was stored.
pub fn read_payload_index(dir: &Path, meta: &SnapshotMeta) -> Result<Option<PayloadIndex>> {
    if !meta.files.contains_key(PAYLOAD_INDEX) {
        return Ok(None);
    }
    let p = dir.join(PAYLOAD_INDEX);
    let idx = PayloadIndex::decode(&fs::read(&p).at(&p)?).map_err(|e| Error::SnapshotInvalid {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    if idx.schema() != meta.index_schema {
        return Err(Error::SnapshotInvalid {
            path: p,
            reason: "payload index fields differ from meta.json".into(),
        });
    }
    Ok(Some(idx))
}
