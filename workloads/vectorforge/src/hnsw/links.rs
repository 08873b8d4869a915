//! Adjacency storage of the graph, in chunks that are never moved, so readers
//! traverse without locks while writers (one per node, under the node's mutex)
//! update lists in place. Layer 0 is one fixed-size record per node (hnswlib's
//! layout): its link list and, when the graph has one, a half-precision copy of
//! its vector (`code`), so the layer-0 walk reads one contiguous, cache-line
//! aligned record per node instead of a list here and a vector in storage.
//! Upper layers are small per-node arrays.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use parking_lot::{Mutex, MutexGuard};

use crate::distance::half;

const CHUNK_BITS: u32 = 14;
const CHUNK: usize = 1 << CHUNK_BITS;
const MAX_CHUNKS: usize = 1 << 18;

/// Zeroed memory for `CHUNK` layer-0 records (anonymous, huge-page advised).
struct Block {
    _map: memmap2::MmapMut,
    ptr: *mut u8,
}

// SAFETY: the mapping lives as long as the block. Link slots are only accessed as
// atomics; a record's code is written once, by the thread that initialised the
// node (see `init_node`), before the node is reachable from any list or entry
// point, and only read after that.
unsafe impl Send for Block {}
unsafe impl Sync for Block {}

struct NodeChunk {
    level0: Block,
    levels: Box<[AtomicU8]>,
    ready: Box<[AtomicBool]>,
    upper: Box<[OnceLock<Box<[AtomicU32]>>]>,
    locks: Box<[Mutex<()>]>,
}

pub struct Links {
    pub m: usize,
    pub m0: usize,
    /// Halves per record code (the dimension rounded up to 8; 0 = no code).
    code_len: usize,
    /// Bytes per layer-0 record.
    stride: usize,
    chunks: Box<[OnceLock<NodeChunk>]>,
}

/// A link list as stored: slot 0 is the count, then up to `cap` node ids.
pub type LinkList = [AtomicU32];

impl Links {
    /// Lists for `m` links per upper layer (2m on layer 0); with `code_dim` > 0
    /// each layer-0 record also holds an f16 copy of a `code_dim`-long vector.
    pub fn new(m: usize, code_dim: usize) -> Self {
        let m0 = 2 * m;
        let code_len = code_dim.next_multiple_of(8);
        let lists = 4 * (m0 + 1);
        // with a code, whole cache lines per record, so each record starts a line
        let stride = if code_len == 0 {
            lists
        } else {
            (lists + 2 * code_len).next_multiple_of(64)
        };
        Links {
            m,
            m0,
            code_len,
            stride,
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Length of a record's code (0 when records hold no vector copy).
    /// Bytes per layer-0 record.
    pub fn stride(&self) -> usize {
        self.stride
    }

    pub fn code_len(&self) -> usize {
        self.code_len
    }

    fn chunk(&self, node: u32) -> Option<&NodeChunk> {
        self.chunks
            .get((node >> CHUNK_BITS) as usize)
            .and_then(OnceLock::get)
    }

    fn chunk_or_alloc(&self, node: u32) -> &NodeChunk {
        let bytes = CHUNK * self.stride;
        self.chunks[(node >> CHUNK_BITS) as usize].get_or_init(|| {
            let mut map = match memmap2::MmapMut::map_anon(bytes) {
                Ok(m) => m,
                Err(_) => std::alloc::handle_alloc_error(
                    std::alloc::Layout::from_size_align(bytes, 4096)
                        .unwrap_or(std::alloc::Layout::new::<u8>()),
                ),
            };
            // fewer TLB misses on the random walk; only a hint
            #[cfg(target_os = "linux")]
            let _ = map.advise(memmap2::Advice::HugePage);
            let ptr = map.as_mut_ptr();
            NodeChunk {
                level0: Block { _map: map, ptr },
                levels: (0..CHUNK).map(|_| AtomicU8::new(0)).collect(),
                ready: (0..CHUNK).map(|_| AtomicBool::new(false)).collect(),
                upper: (0..CHUNK).map(|_| OnceLock::new()).collect(),
                locks: (0..CHUNK).map(|_| Mutex::new(())).collect(),
            }
        })
    }

    /// Start of `node`'s layer-0 record (None when its chunk does not exist).
    #[inline]
    fn record(&self, node: u32) -> Option<*mut u8> {
        let c = self.chunk(node)?;
        // SAFETY: the offset stays inside the chunk's CHUNK * stride bytes.
        Some(unsafe {
            c.level0
                .ptr
                .add((node as usize & (CHUNK - 1)) * self.stride)
        })
    }

    /// Makes room for `node` with `level` upper layers and stores the code of its
    /// vector `v`; must happen before it is linked. Only the first call for a node
    /// does anything: it returns false for a node already initialised.
    pub fn init_node(&self, node: u32, level: u8, v: &[f32]) -> bool {
        let c = self.chunk_or_alloc(node);
        let i = node as usize & (CHUNK - 1);
        if c.ready[i].swap(true, Ordering::AcqRel) {
            return false;
        }
        if self.code_len > 0
            && let Some(rec) = self.record(node)
        {
            // SAFETY: the code area lies inside this node's record; this thread won
            // `ready` above, so it is the only writer, and nobody reads the code
            // before the node is published through a list or the entry point.
            let code = unsafe {
                std::slice::from_raw_parts_mut(
                    rec.add(4 * (self.m0 + 1)) as *mut u16,
                    self.code_len,
                )
            };
            half::encode(v, code);
        }
        c.levels[i].store(level, Ordering::Release);
        if level > 0 {
            let stride = self.m + 1;
            let _ = c.upper[i].get_or_init(|| {
                (0..level as usize * stride)
                    .map(|_| AtomicU32::new(0))
                    .collect()
            });
        }
        true
    }

    /// The f16 copy of `node`'s vector (`code_len` halves, zero-padded; empty when
    /// records hold no code or the node does not exist).
    #[inline]
    pub fn code(&self, node: u32) -> &[u16] {
        match self.record(node) {
            // SAFETY: inside the record; written once before the node became
            // reachable (see `init_node`), read-only afterwards. The record starts
            // 4-byte aligned, so the code (after the u32 list) is 2-byte aligned.
            Some(rec) if self.code_len > 0 => unsafe {
                std::slice::from_raw_parts(rec.add(4 * (self.m0 + 1)) as *const u16, self.code_len)
            },
            _ => &[],
        }
    }

    pub fn level(&self, node: u32) -> u8 {
        self.chunk(node).map_or(0, |c| {
            c.levels[node as usize & (CHUNK - 1)].load(Ordering::Acquire)
        })
    }

    pub fn lock(&self, node: u32) -> Option<MutexGuard<'_, ()>> {
        self.chunk(node)
            .map(|c| c.locks[node as usize & (CHUNK - 1)].lock())
    }

    /// The link list of `node` on `level` (empty when the node has no such layer).
    #[inline]
    pub fn list(&self, node: u32, level: u8) -> &LinkList {
        let Some(c) = self.chunk(node) else {
            return &[];
        };
        let i = node as usize & (CHUNK - 1);
        if level == 0 {
            // SAFETY: the list is the first 4 * (m0 + 1) bytes of the node's record
            // (4-byte aligned, zero-initialised), accessed only as atomics.
            unsafe {
                std::slice::from_raw_parts(
                    c.level0.ptr.add(i * self.stride) as *const AtomicU32,
                    self.m0 + 1,
                )
            }
        } else {
            let s = self.m + 1;
            match c.upper[i].get() {
                Some(u) if (level as usize) * s <= u.len() => {
                    &u[(level as usize - 1) * s..level as usize * s]
                }
                _ => &[],
            }
        }
    }

    /// Asks the CPU to start loading a node's list (a hint; never faults).
    #[inline]
    pub fn prefetch_list(&self, node: u32, level: u8) {
        let l = self.list(node, level);
        super::search::prefetch_bytes(l.as_ptr() as *const u8, std::mem::size_of_val(l));
    }

    /// Asks the CPU to start loading a node's code.
    #[inline]
    pub fn prefetch_code(&self, node: u32) {
        let c = self.code(node);
        super::search::prefetch_bytes(c.as_ptr() as *const u8, std::mem::size_of_val(c));
    }

    pub fn cap(&self, level: u8) -> usize {
        if level == 0 { self.m0 } else { self.m }
    }

    /// Reads a list into `out` (cleared first).
    #[inline]
    pub fn read(&self, node: u32, level: u8, out: &mut Vec<u32>) {
        out.clear();
        let l = self.list(node, level);
        if l.is_empty() {
            return;
        }
        let n = (l[0].load(Ordering::Acquire) as usize).min(l.len() - 1);
        out.extend(l[1..=n].iter().map(|a| a.load(Ordering::Relaxed)));
    }

    /// Replaces a list; the caller holds the node's lock.
    pub fn write(&self, node: u32, level: u8, ids: &[u32]) {
        let l = self.list(node, level);
        if l.is_empty() {
            return;
        }
        let n = ids.len().min(l.len() - 1);
        for (slot, id) in l[1..=n].iter().zip(ids) {
            slot.store(*id, Ordering::Relaxed);
        }
        l[0].store(n as u32, Ordering::Release);
    }
}
