//! Layer search: greedy descent on the upper layers and the best-first beam search
//! of the paper on any layer, with an acceptance predicate so that filtered and
//! deleted points still route the traversal but are never returned.

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

/// Per-thread visited marks, reset in O(1) by bumping an epoch.
pub struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n + n / 4 + 16, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.epoch = 1;
        }
    }

    /// Marks `i`; true when it was not marked yet.
    #[inline]
    pub fn insert(&mut self, i: u32) -> bool {
        match self.marks.get_mut(i as usize) {
            Some(m) if *m != self.epoch => {
                *m = self.epoch;
                true
            }
            _ => false,
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), epoch: 0 }) };
}

/// Runs `f` with this thread's visited set, sized for `n` nodes.
pub fn with_visited<R>(n: usize, f: impl FnOnce(&mut Visited) -> R) -> R {
    VISITED.with(|v| match v.try_borrow_mut() {
        Ok(mut v) => {
            v.reset(n);
            f(&mut v)
        }
        Err(_) => {
            let mut fresh = Visited {
                marks: Vec::new(),
                epoch: 0,
            };
            fresh.reset(n);
            f(&mut fresh)
        }
    })
}

impl Hnsw {
    /// Greedy walk on one upper layer towards `q`, starting at `ep`.
    pub(super) fn greedy<V: VectorSource>(
        &self,
        vecs: &V,
        q: &[f32],
        mut ep: Scored,
        level: u8,
    ) -> Scored {
        let mut buf = Vec::with_capacity(self.links.m0);
        loop {
            let mut changed = false;
            self.links.read(ep.1, level, &mut buf);
            for &n in &buf {
                let d = (self.dist)(q, vecs.vector(n));
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
    pub(super) fn search_layer<V: VectorSource, F: Fn(u32) -> bool>(
        &self,
        vecs: &V,
        q: &[f32],
        eps: &[Scored],
        ef: usize,
        level: u8,
        accept: F,
    ) -> Vec<Scored> {
        let n = vecs.len();
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
                    prefetch(vecs.vector(nb));
                }
                for &nb in &fresh {
                    let d = (self.dist)(q, vecs.vector(nb));
                    if d < bound || res.len() < ef {
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
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint and never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(v.as_ptr() as *const i8);
        if v.len() > 16 {
            _mm_prefetch::<_MM_HINT_T0>(v.as_ptr().add(16) as *const i8);
        }
        if v.len() > 32 {
            _mm_prefetch::<_MM_HINT_T0>(v.as_ptr().add(32) as *const i8);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}
