//! Layer search: greedy descent on the upper layers and the best-first beam search
//! of the paper on any layer, with an acceptance predicate so that filtered and
//! deleted points still route the traversal but are never returned. In graphs
//! whose records hold f16 codes the walk scores codes (half the memory traffic of
//! f32 vectors) and the best candidates are re-scored exactly from storage.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::Hnsw;
use crate::storage::VectorSource;

/// An f32 distance with a total order, paired with a node id.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored(pub f32, pub u32);

impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scored {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// Per-thread visited set: one bit per node (50 KB for 400,000 nodes, so it
/// stays in the L1/L2 cache), cleared between searches through the list of words
/// it touched (or wholesale when most words were touched).
pub struct Visited {
    bits: Vec<u64>,
    touched: Vec<u32>,
}

impl Visited {
    const fn new() -> Self {
        Visited {
            bits: Vec::new(),
            touched: Vec::new(),
        }
    }

    fn reset(&mut self, n: usize) {
        if self.touched.len() * 8 >= self.bits.len() {
            self.bits.fill(0);
        } else {
            for &w in &self.touched {
                self.bits[w as usize] = 0;
            }
        }
        self.touched.clear();
        let words = n.div_ceil(64);
        if self.bits.len() < words {
            self.bits.resize(words + words / 4 + 1, 0);
        }
    }

    /// Marks `i`; true when it was not marked yet (false also beyond the size).
    #[inline]
    pub fn insert(&mut self, i: u32) -> bool {
        let bit = 1u64 << (i & 63);
        match self.bits.get_mut((i >> 6) as usize) {
            Some(w) if *w & bit == 0 => {
                if *w == 0 {
                    self.touched.push(i >> 6);
                }
                *w |= bit;
                true
            }
            _ => false,
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited::new()) };
}

/// Runs `f` with this thread's visited set, sized for `n` nodes.
pub fn with_visited<R>(n: usize, f: impl FnOnce(&mut Visited) -> R) -> R {
    VISITED.with(|v| match v.try_borrow_mut() {
        Ok(mut v) => {
            v.reset(n);
            f(&mut v)
        }
        Err(_) => {
            let mut fresh = Visited::new();
            fresh.reset(n);
            f(&mut fresh)
        }
    })
}

/// A query as the walk scores it: the vector, and for graphs with codes a copy
/// zero-padded to the code length (so the f16 kernel runs whole 8-lane blocks).
pub(super) struct Query<'a> {
    pub raw: &'a [f32],
    padded: Vec<f32>,
}

/// What the walk scores nodes with: the graph's own view (f16 codes or exact
/// vectors, see `GraphScorer`) or another one, such as quantized codes.
pub trait WalkScorer {
    /// Internal ("lower is better") distance of the query to `node`.
    fn score(&self, node: u32) -> f32;
    /// Starts loading what `score(node)` reads.
    fn prefetch(&self, node: u32);
}

/// The graph's own scoring: f16 codes in its records when it has them, else the
/// exact vectors from storage.
pub(super) struct GraphScorer<'a, V> {
    pub g: &'a Hnsw,
    pub vecs: &'a V,
    pub q: &'a Query<'a>,
}

impl<V: VectorSource> WalkScorer for GraphScorer<'_, V> {
    #[inline]
    fn score(&self, node: u32) -> f32 {
        self.g.approx(self.vecs, self.q, node)
    }
    #[inline]
    fn prefetch(&self, node: u32) {
        self.g.prefetch_point(self.vecs, node);
    }
}

impl Hnsw {
    pub(super) fn query<'a>(&self, q: &'a [f32]) -> Query<'a> {
        let n = self.links.code_len();
        let mut padded = Vec::with_capacity(n);
        if n > 0 {
            padded.extend(q.iter().take(n));
            padded.resize(n, 0.0);
        }
        Query { raw: q, padded }
    }

    /// The walk's distance of `q` to `node`: from its code when records hold one
    /// (approximate), else exact from storage.
    #[inline]
    pub(super) fn approx<V: VectorSource>(&self, vecs: &V, q: &Query, node: u32) -> f32 {
        if self.links.code_len() > 0 {
            (self.dist_f16)(&q.padded, self.links.code(node))
        } else {
            (self.dist)(q.raw, vecs.vector(node))
        }
    }

    /// True when `approx` is not the exact distance.
    pub(super) fn lossy(&self) -> bool {
        self.links.code_len() > 0
    }

    /// Replaces the distances of the first `keep` of `r` (the rest is dropped) by
    /// exact ones from storage and sorts them.
    pub(super) fn rescore<V: VectorSource>(
        &self,
        vecs: &V,
        q: &[f32],
        r: &mut Vec<Scored>,
        keep: usize,
    ) {
        r.truncate(keep);
        for s in r.iter() {
            prefetch(vecs.vector(s.1));
        }
        for s in r.iter_mut() {
            s.0 = (self.dist)(q, vecs.vector(s.1));
        }
        r.sort_unstable();
    }

    /// Starts loading what scoring `node` reads.
    #[inline]
    fn prefetch_point<V: VectorSource>(&self, vecs: &V, node: u32) {
        if self.links.code_len() > 0 {
            self.links.prefetch_code(node);
        } else {
            prefetch(vecs.vector(node));
        }
    }

    /// Greedy walk on one upper layer towards the scorer's query, starting at `ep`.
    pub(super) fn greedy<S: WalkScorer>(&self, s: &S, mut ep: Scored, level: u8) -> Scored {
        let mut buf = Vec::with_capacity(self.links.m0);
        loop {
            let mut changed = false;
            self.links.read(ep.1, level, &mut buf);
            for &n in &buf {
                s.prefetch(n);
            }
            for &n in &buf {
                let d = s.score(n);
                if d < ep.0 {
                    ep = Scored(d, n);
                    changed = true;
                }
            }
            if !changed {
                return ep;
            }
        }
    }

    /// Beam search on `level` with candidate list size `ef`; returns up to `ef`
    /// accepted nodes sorted by distance.
    /// `n` bounds the node ids scored (the vectors stored).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn search_layer<S: WalkScorer, F: Fn(u32) -> bool>(
        &self,
        n: usize,
        s: &S,
        eps: &[Scored],
        ef: usize,
        level: u8,
        accept: F,
    ) -> Vec<Scored> {
        with_visited(n, |visited| {
            let mut cand: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef * 2);
            let mut res: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
            for &e in eps {
                if visited.insert(e.1) {
                    cand.push(Reverse(e));
                    if accept(e.1) {
                        res.push(e);
                    }
                }
            }
            while res.len() > ef {
                res.pop();
            }
            let mut bound = if res.len() >= ef {
                res.peek().map_or(f32::INFINITY, |s| s.0)
            } else {
                f32::INFINITY
            };
            let mut buf = Vec::with_capacity(self.links.m0);
            let mut fresh = Vec::with_capacity(self.links.m0);
            while let Some(Reverse(c)) = cand.pop() {
                if c.0 > bound {
                    break;
                }
                self.links.read(c.1, level, &mut buf);
                // only neighbours not seen yet are scored: load just their vectors
                fresh.clear();
                fresh.extend(
                    buf.iter()
                        .copied()
                        .filter(|&nb| (nb as usize) < n && visited.insert(nb)),
                );
                for &nb in &fresh {
                    s.prefetch(nb);
                }
                for &nb in &fresh {
                    let d = s.score(nb);
                    if d < bound || res.len() < ef {
                        // likely expanded soon: start loading its links
                        self.links.prefetch_list(nb, level);
                        cand.push(Reverse(Scored(d, nb)));
                        if accept(nb) {
                            res.push(Scored(d, nb));
                            if res.len() > ef {
                                res.pop();
                            }
                            if res.len() >= ef {
                                bound = res.peek().map_or(f32::INFINITY, |s| s.0);
                            }
                        }
                    }
                }
            }
            res.into_sorted_vec()
        })
    }
}

/// Asks the CPU to start loading a vector that is about to be scored.
#[inline(always)]
pub fn prefetch(v: &[f32]) {
    prefetch_bytes(v.as_ptr() as *const u8, std::mem::size_of_val(v));
}

/// Most cache lines one prefetch asks for; the hardware streamer takes over on
/// longer runs.
const PREFETCH_LINES: usize = 8;

/// Prefetches every cache line of `[p, p + len)` (up to `PREFETCH_LINES` of them).
/// An unaligned 200-byte vector spans four or five lines: all are asked for.
#[inline(always)]
pub fn prefetch_bytes(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        if len == 0 {
            return;
        }
        let first = p as usize & !63;
        let last = (p as usize).wrapping_add(len - 1) & !63;
        let mut line = first;
        for _ in 0..PREFETCH_LINES {
            // SAFETY: prefetching is a hint and never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
            if line >= last {
                break;
            }
            line += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}
