//! Fixed-size byte records (quantized codes) in memory-mapped chunks, laid out and
//! published like `MmapVectors`: a record is written into its never-remapped chunk,
//! then `len` is bumped, so readers run lock-free while the writer appends. Chunks
//! are files under `dir` or, with `in_ram`, anonymous memory (Qdrant's `always_ram`).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use memmap2::{MmapMut, MmapOptions};
use parking_lot::Mutex;

use crate::error::{Error, IoContext, Result};
use crate::types::Offset;

const MAX_CHUNKS: usize = 1 << 16;
const CHUNK_BYTES: usize = 16 << 20;

struct Chunk {
    _map: MmapMut,
    ptr: *mut u8,
}

// SAFETY: the mapping lives as long as the chunk; writes only touch records that are
// not yet published (offset >= len) and happen under `append_lock`.
unsafe impl Send for Chunk {}
unsafe impl Sync for Chunk {}

pub struct MmapCodes {
    dir: PathBuf,
    stride: usize,
    in_ram: bool,
    per_chunk: usize,
    shift: u32,
    chunks: Box<[OnceLock<Chunk>]>,
    len: AtomicUsize,
    append_lock: Mutex<()>,
}

impl MmapCodes {
    /// An empty store of `stride`-byte records (a multiple of 8, so records stay
    /// 8-byte aligned) in `dir` (emptied first) or in anonymous memory.
    pub fn create(dir: &Path, stride: usize, in_ram: bool) -> Result<Self> {
        if stride == 0 || !stride.is_multiple_of(8) || stride > CHUNK_BYTES {
            return Err(Error::InvalidConfig(format!(
                "code record of {stride} bytes (must be a positive multiple of 8)"
            )));
        }
        if !in_ram {
            if dir.exists() {
                fs::remove_dir_all(dir).at(dir)?;
            }
            fs::create_dir_all(dir).at(dir)?;
        }
        let per_chunk = 1usize << (CHUNK_BYTES / stride).max(1).ilog2();
        Ok(MmapCodes {
            dir: dir.to_path_buf(),
            stride,
            in_ram,
            per_chunk,
            shift: per_chunk.trailing_zeros(),
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            append_lock: Mutex::new(()),
        })
    }

    fn chunk_for(&self, off: usize) -> Result<&Chunk> {
        let idx = off / self.per_chunk;
        let slot = self
            .chunks
            .get(idx)
            .ok_or_else(|| Error::InvalidConfig(format!("code storage full ({off} records)")))?;
        if let Some(c) = slot.get() {
            return Ok(c);
        }
        let bytes = self.per_chunk * self.stride;
        let mut map = if self.in_ram {
            MmapOptions::new().len(bytes).map_anon().at(&self.dir)?
        } else {
            let path = self.dir.join(format!("codes-{idx:05}.bin"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .at(&path)?;
            file.set_len(bytes as u64).at(&path)?;
            // SAFETY: the file is private to this store and never truncated while mapped.
            unsafe { MmapOptions::new().map_mut(&file) }.at(&path)?
        };
        let ptr = map.as_mut_ptr();
        Ok(slot.get_or_init(|| Chunk { _map: map, ptr }))
    }

    /// Appends records (each `stride` bytes, written by `fill`) and returns the first offset.
    pub fn append_with(&self, n: usize, mut fill: impl FnMut(usize, &mut [u8])) -> Result<Offset> {
        let _g = self.append_lock.lock();
        let first = self.len.load(Ordering::Relaxed);
        if first + n > u32::MAX as usize {
            return Err(Error::InvalidConfig(
                "more than 2^32 codes in one shard".into(),
            ));
        }
        for i in 0..n {
            let off = first + i;
            let chunk = self.chunk_for(off)?;
            // SAFETY: record `off` is unpublished and inside the chunk; we hold append_lock.
            let rec = unsafe {
                std::slice::from_raw_parts_mut(
                    chunk.ptr.add((off % self.per_chunk) * self.stride),
                    self.stride,
                )
            };
            fill(i, rec);
        }
        self.len.store(first + n, Ordering::Release);
        Ok(first as Offset)
    }

    /// Fills the store from a flat file of `count` records (a snapshot's codes file).
    pub fn restore_from(&self, src: &Path, count: usize) -> Result<()> {
        let _g = self.append_lock.lock();
        let mut f = File::open(src).at(src)?;
        let mut done = self.len.load(Ordering::Relaxed);
        let end = done + count;
        while done < end {
            let chunk = self.chunk_for(done)?;
            let in_chunk = done % self.per_chunk;
            let n = (self.per_chunk - in_chunk).min(end - done);
            // SAFETY: records [done, done+n) are inside this chunk and not yet published.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(
                    chunk.ptr.add(in_chunk * self.stride),
                    n * self.stride,
                )
            };
            f.read_exact(bytes).map_err(|e| Error::SnapshotInvalid {
                path: src.to_path_buf(),
                reason: format!("codes file shorter than {count} records: {e}"),
            })?;
            done += n;
        }
        self.len.store(end, Ordering::Release);
        Ok(())
    }

    /// Writes the first `count` records as one flat file and fsyncs it; returns its CRC32C.
    pub fn write_flat(&self, path: &Path, count: usize) -> Result<u32> {
        let mut f = File::create(path).at(path)?;
        let mut crc = 0u32;
        let mut done = 0;
        let count = count.min(self.len());
        while done < count {
            let n = (self.per_chunk - done % self.per_chunk).min(count - done);
            let chunk = self.chunk_for(done)?;
            // SAFETY: [done, done+n) are published records inside this chunk.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    chunk.ptr.add((done % self.per_chunk) * self.stride),
                    n * self.stride,
                )
            };
            crc = crc32c::crc32c_append(crc, bytes);
            f.write_all(bytes).at(path)?;
            done += n;
        }
        f.sync_all().at(path)?;
        Ok(crc)
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    pub fn in_ram(&self) -> bool {
        self.in_ram
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record at `offset` (callers keep `offset < len()`); empty if never mapped.
    #[inline]
    pub fn record(&self, offset: Offset) -> &[u8] {
        let off = offset as usize;
        match self.chunks.get(off >> self.shift).and_then(OnceLock::get) {
            // SAFETY: the chunk holds per_chunk * stride bytes and lives as long as self.
            Some(c) => unsafe {
                std::slice::from_raw_parts(
                    c.ptr.add((off & (self.per_chunk - 1)) * self.stride),
                    self.stride,
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
    fn append_read_flat_and_restore() {
        let tmp = tempfile::tempdir().unwrap();
        for in_ram in [false, true] {
            let s = MmapCodes::create(&tmp.path().join("c"), 16, in_ram).unwrap();
            assert_eq!(s.append_with(3, |i, r| r.fill(i as u8 + 1)).unwrap(), 0);
            assert_eq!(s.len(), 3);
            assert_eq!(s.record(1), &[2u8; 16]);
            let flat = tmp.path().join("flat.bin");
            s.write_flat(&flat, 3).unwrap();
            let r = MmapCodes::create(&tmp.path().join("r"), 16, in_ram).unwrap();
            r.restore_from(&flat, 3).unwrap();
            assert_eq!(r.record(2), &[3u8; 16]);
            let short = MmapCodes::create(&tmp.path().join("r2"), 16, in_ram).unwrap();
            assert!(short.restore_from(&flat, 4).is_err());
        }
        assert!(MmapCodes::create(&tmp.path().join("x"), 12, false).is_err());
    }
}
