//! Dense f32 vectors in memory-mapped chunk files. Appends are lock-free for
//! readers: a vector is written into its (never remapped) chunk first and only
//! then published by bumping `len`, so searches run while inserts continue.
//! Storage is append-only; deletes are tombstones kept by the collection, and
//! compaction writes a fresh storage.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use memmap2::{MmapMut, MmapOptions};
use parking_lot::Mutex;

use super::VectorSource;
use crate::error::{Error, IoContext, Result};
use crate::types::Offset;

const MAX_CHUNKS: usize = 4096;
const CHUNK_BYTES: usize = 64 << 20;

struct Chunk {
    _map: MmapMut,
    ptr: *mut f32,
}

// SAFETY: the mapping lives as long as the chunk; writes only touch slots that are
// not yet published (offset >= len) and happen under `append_lock`.
unsafe impl Send for Chunk {}
unsafe impl Sync for Chunk {}

pub struct MmapVectors {
    dir: PathBuf,
    dim: usize,
    per_chunk: usize,
    shift: u32,
    chunks: Box<[OnceLock<Chunk>]>,
    len: AtomicUsize,
    append_lock: Mutex<()>,
}

impl MmapVectors {
    /// Creates an empty storage in `dir` (existing chunk files there are removed).
    pub fn create(dir: &Path, dim: usize) -> Result<Self> {
        if dim == 0 || dim > 65_536 {
            return Err(Error::InvalidDimension(dim));
        }
        if dir.exists() {
            fs::remove_dir_all(dir).at(dir)?;
        }
        fs::create_dir_all(dir).at(dir)?;
        // a power of two, so that locating a vector is a shift and a mask
        let per_chunk = 1usize << (CHUNK_BYTES / (dim * 4)).max(1).ilog2();
        Ok(MmapVectors {
            dir: dir.to_path_buf(),
            dim,
            per_chunk,
            shift: per_chunk.trailing_zeros(),
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            append_lock: Mutex::new(()),
        })
    }

    /// Creates a storage in `dir` filled from a flat little-endian f32 file of `count`
    /// vectors (a snapshot's `vectors.bin`), read block-wise straight into the mappings.
    pub fn restore(dir: &Path, dim: usize, src: &Path, count: usize) -> Result<Self> {
        let s = Self::create(dir, dim)?;
        let mut f = File::open(src).at(src)?;
        let mut done = 0;
        while done < count {
            let off = done;
            let chunk = s.chunk_for(off)?;
            let in_chunk = off % s.per_chunk;
            let n = (s.per_chunk - in_chunk).min(count - done);
            // SAFETY: the slots [off, off+n) are inside this chunk and not yet published.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(
                    chunk.ptr.add(in_chunk * dim) as *mut u8,
                    n * dim * 4,
                )
            };
            f.read_exact(bytes).map_err(|e| Error::SnapshotInvalid {
                path: src.to_path_buf(),
                reason: format!("vectors file shorter than {count} vectors: {e}"),
            })?;
            done += n;
        }
        s.len.store(count, Ordering::Release);
        Ok(s)
    }

    fn chunk_for(&self, off: usize) -> Result<&Chunk> {
        let idx = off / self.per_chunk;
        let slot = self
            .chunks
            .get(idx)
            .ok_or_else(|| Error::InvalidConfig(format!("vector storage full ({off} vectors)")))?;
        if let Some(c) = slot.get() {
            return Ok(c);
        }
        let path = self.dir.join(format!("chunk-{idx:05}.bin"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .at(&path)?;
        file.set_len((self.per_chunk * self.dim * 4) as u64)
            .at(&path)?;
        // SAFETY: the file is private to this storage and never truncated while mapped.
        let mut map = unsafe { MmapOptions::new().map_mut(&file) }.at(&path)?;
        let ptr = map.as_mut_ptr() as *mut f32;
        Ok(slot.get_or_init(|| Chunk { _map: map, ptr }))
    }

    /// Appends vectors (already validated, of length `dim`) and returns the first offset.
    pub fn append(&self, vectors: &[&[f32]]) -> Result<Offset> {
        let _g = self.append_lock.lock();
        let first = self.len.load(Ordering::Relaxed);
        if first + vectors.len() > u32::MAX as usize {
            return Err(Error::InvalidConfig(
                "more than 2^32 vectors in one shard".into(),
            ));
        }
        for (i, v) in vectors.iter().enumerate() {
            let off = first + i;
            let chunk = self.chunk_for(off)?;
            let n = v.len().min(self.dim);
            // SAFETY: slot `off` is unpublished and inside the chunk; we hold append_lock.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    v.as_ptr(),
                    chunk.ptr.add((off % self.per_chunk) * self.dim),
                    n,
                );
            }
        }
        self.len.store(first + vectors.len(), Ordering::Release);
        Ok(first as Offset)
    }

    /// Writes the first `count` vectors as one flat file (for snapshots) and fsyncs it.
    pub fn write_flat(&self, path: &Path, count: usize) -> Result<u32> {
        let mut f = File::create(path).at(path)?;
        let mut crc = 0u32;
        let mut done = 0;
        while done < count {
            let n = (self.per_chunk - done % self.per_chunk).min(count - done);
            let chunk = self.chunk_for(done)?;
            // SAFETY: [done, done+n) are published vectors inside this chunk.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    chunk.ptr.add((done % self.per_chunk) * self.dim) as *const u8,
                    n * self.dim * 4,
                )
            };
            crc = crc32c::crc32c_append(crc, bytes);
            f.write_all(bytes).at(path)?;
            done += n;
        }
        f.sync_all().at(path)?;
        Ok(crc)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl VectorSource for MmapVectors {
    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    #[inline]
    fn vector(&self, offset: Offset) -> &[f32] {
        let off = offset as usize;
        match self.chunks.get(off >> self.shift).and_then(OnceLock::get) {
            // SAFETY: the chunk holds per_chunk * dim floats and lives as long as self.
            Some(c) => unsafe {
                std::slice::from_raw_parts(
                    c.ptr.add((off & (self.per_chunk - 1)) * self.dim),
                    self.dim,
                )
            },
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_get_and_restore() {
        let tmp = tempfile::tempdir().unwrap();
        let s = MmapVectors::create(&tmp.path().join("v"), 3).unwrap();
        assert_eq!(s.append(&[&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]]).unwrap(), 0);
        assert_eq!(s.append(&[&[7.0, 8.0, 9.0]]).unwrap(), 2);
        assert_eq!(s.len(), 3);
        assert_eq!(s.vector(1), &[4.0, 5.0, 6.0]);
        let flat = tmp.path().join("flat.bin");
        s.write_flat(&flat, 3).unwrap();
        let r = MmapVectors::restore(&tmp.path().join("r"), 3, &flat, 3).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r.vector(2), &[7.0, 8.0, 9.0]);
        assert!(MmapVectors::restore(&tmp.path().join("r2"), 3, &flat, 4).is_err());
    }

    #[test]
    fn many_chunks_with_large_dimension() {
        let tmp = tempfile::tempdir().unwrap();
        let dim = 65_536;
        let s = MmapVectors::create(&tmp.path().join("v"), dim).unwrap();
        let vs: Vec<Vec<f32>> = (0..300).map(|i| vec![i as f32; dim]).collect();
        let refs: Vec<&[f32]> = vs.iter().map(|v| v.as_slice()).collect();
        s.append(&refs).unwrap();
        for i in [0u32, 255, 256, 299] {
            assert_eq!(s.vector(i)[dim - 1], i as f32);
        }
        assert!(MmapVectors::create(&tmp.path().join("x"), 65_537).is_err());
        assert!(MmapVectors::create(&tmp.path().join("x"), 0).is_err());
    }
}
