//! Adjacency storage of the graph: fixed-stride atomic link lists in chunks that
//! are never moved, so readers traverse without locks while writers (one per
//! node, under the node's mutex) update lists in place.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use parking_lot::{Mutex, MutexGuard};

const CHUNK_BITS: u32 = 14;
const CHUNK: usize = 1 << CHUNK_BITS;
const MAX_CHUNKS: usize = 1 << 18;

struct NodeChunk {
    level0: Box<[AtomicU32]>,
    levels: Box<[AtomicU8]>,
    upper: Box<[OnceLock<Box<[AtomicU32]>>]>,
    locks: Box<[Mutex<()>]>,
}

pub struct Links {
    pub m: usize,
    pub m0: usize,
    chunks: Box<[OnceLock<NodeChunk>]>,
}

/// A link list as stored: slot 0 is the count, then up to `cap` node ids.
pub type LinkList = [AtomicU32];

impl Links {
    pub fn new(m: usize) -> Self {
        Links {
            m,
            m0: 2 * m,
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }

    fn chunk(&self, node: u32) -> Option<&NodeChunk> {
        self.chunks
            .get((node >> CHUNK_BITS) as usize)
            .and_then(OnceLock::get)
    }

    fn chunk_or_alloc(&self, node: u32) -> &NodeChunk {
        let m0 = self.m0;
        self.chunks[(node >> CHUNK_BITS) as usize].get_or_init(|| NodeChunk {
            level0: (0..CHUNK * (m0 + 1)).map(|_| AtomicU32::new(0)).collect(),
            levels: (0..CHUNK).map(|_| AtomicU8::new(0)).collect(),
            upper: (0..CHUNK).map(|_| OnceLock::new()).collect(),
            locks: (0..CHUNK).map(|_| Mutex::new(())).collect(),
        })
    }

    /// Makes room for `node` with `level` upper layers; must happen before it is linked.
    pub fn init_node(&self, node: u32, level: u8) {
        let c = self.chunk_or_alloc(node);
        let i = node as usize & (CHUNK - 1);
        c.levels[i].store(level, Ordering::Release);
        if level > 0 {
            let stride = self.m + 1;
            let _ = c.upper[i].get_or_init(|| {
                (0..level as usize * stride)
                    .map(|_| AtomicU32::new(0))
                    .collect()
            });
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
            let s = self.m0 + 1;
            &c.level0[i * s..(i + 1) * s]
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
