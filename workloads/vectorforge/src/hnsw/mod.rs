//! HNSW graph (Malkov & Yashunin): layered proximity graph with M links per node
//! on upper layers and M0 = 2M on layer 0, the paper's neighbour selection
//! heuristic, incremental and concurrent insertion (one lock per node, readers
//! lock-free) and filter-aware search. The graph only stores node ids; vectors
//! are read through a `VectorSource`.

mod links;
mod persist;
mod search;

pub use persist::NONE;
pub use search::{Scored, prefetch};

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::distance::DistFn;
use crate::storage::VectorSource;
use links::Links;

pub struct Hnsw {
    links: Links,
    dist: DistFn,
    ef_construct: usize,
    ml: f64,
    /// Entry point and the top layer.
    entry: RwLock<Option<(u32, u8)>>,
    /// Held by an insert that raises the top layer.
    grow_lock: Mutex<()>,
    inserted: AtomicUsize,
}

impl Hnsw {
    pub fn new(m: usize, ef_construct: usize, dist: DistFn) -> Self {
        let m = m.max(2);
        Hnsw {
            links: Links::new(m),
            dist,
            ef_construct,
            ml: 1.0 / (m as f64).ln(),
            entry: RwLock::new(None),
            grow_lock: Mutex::new(()),
            inserted: AtomicUsize::new(0),
        }
    }

    pub fn m(&self) -> usize {
        self.links.m
    }

    /// Number of nodes inserted so far.
    pub fn inserted(&self) -> usize {
        self.inserted.load(Ordering::Relaxed)
    }

    /// Deterministic layer of a node (a hash of its id), so replicas that insert
    /// the same nodes in the same order build the same graph.
    pub fn level_for(&self, node: u32) -> u8 {
        let mut x = (node as u64) ^ 0x9E37_79B9_7F4A_7C15;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        let u = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        (-u.ln() * self.ml).floor().min(15.0) as u8
    }

    /// Inserts `node` (whose vector is already readable in `vecs`). Safe to call
    /// from many threads at once and concurrently with searches.
    pub fn insert<V: VectorSource>(&self, vecs: &V, node: u32) {
        let level = self.level_for(node);
        self.links.init_node(node, level);
        let mut _grow = None;
        let entry = *self.entry.read();
        let (ep, top) = match entry {
            Some((ep, top)) if level <= top => (ep, top),
            _ => {
                _grow = Some(self.grow_lock.lock());
                let current = *self.entry.read();
                match current {
                    Some(e) => e,
                    None => {
                        *self.entry.write() = Some((node, level));
                        self.inserted.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        };
        let q = vecs.vector(node);
        let mut cur = Scored((self.dist)(q, vecs.vector(ep)), ep);
        for lc in (level.saturating_add(1)..=top).rev() {
            cur = self.greedy(vecs, q, cur, lc);
        }
        let mut eps = vec![cur];
        for lc in (0..=level.min(top)).rev() {
            let mut w = self.search_layer(vecs, q, &eps, self.ef_construct, lc, |_| true);
            w.retain(|s| s.1 != node);
            let chosen = self.select(vecs, &w, self.links.m);
            let ids: Vec<u32> = chosen.iter().map(|s| s.1).collect();
            {
                let _g = self.links.lock(node);
                self.links.write(node, lc, &ids);
            }
            for s in &chosen {
                self.link_back(vecs, s.1, node, s.0, lc);
            }
            if !w.is_empty() {
                eps = w;
            }
        }
        if level > top {
            *self.entry.write() = Some((node, level));
        }
        self.inserted.fetch_add(1, Ordering::Relaxed);
    }

    /// The paper's heuristic (algorithm 4): walk candidates nearest first and keep
    /// one only if it is closer to the base than to every neighbour kept so far.
    fn select<V: VectorSource>(&self, vecs: &V, sorted: &[Scored], m: usize) -> Vec<Scored> {
        if sorted.len() <= m {
            return sorted.to_vec();
        }
        let mut out: Vec<Scored> = Vec::with_capacity(m);
        for &c in sorted {
            if out.len() >= m {
                break;
            }
            let vc = vecs.vector(c.1);
            if out.iter().all(|r| (self.dist)(vc, vecs.vector(r.1)) > c.0) {
                out.push(c);
            }
        }
        out
    }

    /// Adds `new` to `n`'s list on `level`, re-selecting with the heuristic when full.
    fn link_back<V: VectorSource>(&self, vecs: &V, n: u32, new: u32, d: f32, level: u8) {
        let _g = self.links.lock(n);
        let mut buf = Vec::with_capacity(self.links.m0 + 1);
        self.links.read(n, level, &mut buf);
        if buf.contains(&new) {
            return;
        }
        let cap = self.links.cap(level);
        if buf.len() < cap {
            buf.push(new);
            self.links.write(n, level, &buf);
            return;
        }
        let vn = vecs.vector(n);
        let mut cands: Vec<Scored> = buf
            .iter()
            .map(|&x| Scored((self.dist)(vn, vecs.vector(x)), x))
            .collect();
        cands.push(Scored(d, new));
        cands.sort_unstable();
        let chosen = self.select(vecs, &cands, cap);
        let ids: Vec<u32> = chosen.iter().map(|s| s.1).collect();
        self.links.write(n, level, &ids);
    }

    /// Approximate k nearest accepted nodes to `q` with candidate list size `ef`.
    /// Rejected nodes are traversed but never returned.
    pub fn search<V: VectorSource, F: Fn(u32) -> bool>(
        &self,
        vecs: &V,
        q: &[f32],
        k: usize,
        ef: usize,
        accept: F,
    ) -> Vec<Scored> {
        let entry = *self.entry.read();
        let Some((ep, top)) = entry else {
            return Vec::new();
        };
        let mut cur = Scored((self.dist)(q, vecs.vector(ep)), ep);
        for lc in (1..=top).rev() {
            cur = self.greedy(vecs, q, cur, lc);
        }
        let mut r = self.search_layer(vecs, q, &[cur], ef.max(k), 0, accept);
        r.truncate(k);
        r
    }
}

#[cfg(test)]
#[allow(clippy::ptr_arg)]
mod tests {
    use super::*;
    use crate::distance;
    use crate::types::Distance;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect()
    }

    fn exact(vecs: &Vec<Vec<f32>>, q: &[f32], k: usize, accept: impl Fn(u32) -> bool) -> Vec<u32> {
        let f = distance::internal_fn(Distance::Euclid);
        let mut all: Vec<Scored> = (0..vecs.len() as u32)
            .filter(|&i| accept(i))
            .map(|i| Scored(f(q, &vecs[i as usize]), i))
            .collect();
        all.sort_unstable();
        all.truncate(k);
        all.into_iter().map(|s| s.1).collect()
    }

    fn recall(
        g: &Hnsw,
        vecs: &Vec<Vec<f32>>,
        queries: &[Vec<f32>],
        ef: usize,
        accept: impl Fn(u32) -> bool + Copy,
    ) -> f64 {
        let mut hit = 0;
        let mut total = 0;
        for q in queries {
            let truth = exact(vecs, q, 10, accept);
            let got = g.search(vecs, q, 10, ef, accept);
            assert!(
                got.iter().all(|s| accept(s.1)),
                "a rejected node was returned"
            );
            hit += got.iter().filter(|s| truth.contains(&s.1)).count();
            total += truth.len();
        }
        hit as f64 / total as f64
    }

    #[test]
    fn sequential_build_has_high_recall() {
        let vecs = random(3000, 16, 1);
        let g = Hnsw::new(16, 100, distance::internal_fn(Distance::Euclid));
        for i in 0..vecs.len() as u32 {
            g.insert(&vecs, i);
        }
        let queries = random(50, 16, 2);
        let r = recall(&g, &vecs, &queries, 100, |_| true);
        assert!(r >= 0.95, "recall {r}");
    }

    #[test]
    fn parallel_build_and_filtered_search() {
        use rayon::prelude::*;
        let vecs = random(3000, 12, 3);
        let g = Hnsw::new(8, 64, distance::internal_fn(Distance::Euclid));
        (0..vecs.len() as u32)
            .into_par_iter()
            .for_each(|i| g.insert(&vecs, i));
        assert_eq!(g.inserted(), 3000);
        let queries = random(40, 12, 4);
        assert!(recall(&g, &vecs, &queries, 64, |_| true) >= 0.9);
        // half of the points rejected: results come only from the other half
        assert!(recall(&g, &vecs, &queries, 64, |i| i % 2 == 0) >= 0.9);
    }

    #[test]
    fn levels_are_deterministic_and_geometric() {
        let g = Hnsw::new(16, 10, distance::internal_fn(Distance::Dot));
        let levels: Vec<u8> = (0..100_000).map(|i| g.level_for(i)).collect();
        let upper = levels.iter().filter(|&&l| l > 0).count() as f64 / 100_000.0;
        assert!(
            (upper - 1.0 / 16.0).abs() < 0.01,
            "fraction on upper layers {upper}"
        );
        assert_eq!(g.level_for(12345), g.level_for(12345));
    }

    #[test]
    fn empty_graph_returns_nothing() {
        let g = Hnsw::new(16, 10, distance::internal_fn(Distance::Dot));
        let v: Vec<Vec<f32>> = Vec::new();
        assert!(g.search(&v, &[1.0], 10, 10, |_| true).is_empty());
    }
}
