//! HNSW graph (Malkov & Yashunin): layered proximity graph with M links per node
//! on upper layers and M0 = 2M on layer 0, the paper's neighbour selection
//! heuristic, incremental and concurrent insertion (one lock per node, readers
//! lock-free) and filter-aware search. The graph stores node ids and, for cosine
//! graphs, an f16 copy of each vector next to its layer-0 links (see `links`);
//! exact vectors are read through a `VectorSource`.

mod links;
mod persist;
mod search;

pub use persist::NONE;
pub use search::{Scored, WalkScorer, prefetch, prefetch_bytes};

use search::GraphScorer;

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::distance::{self, DistFn, HalfDistFn};
use crate::storage::VectorSource;
use crate::types::Distance;
use links::Links;

/// How many of the walk's best candidates a search re-scores exactly when the
/// walk scored f16 codes (their error, ~1e-4 on a cosine, only swaps near ties).
fn rescore_len(k: usize) -> usize {
    (2 * k).max(k + 20)
}

pub struct Hnsw {
    links: Links,
    distance: Distance,
    dim: usize,
    dist: DistFn,
    dist_f16: HalfDistFn,
    ef_construct: usize,
    ml: f64,
    /// Entry point and the top layer.
    entry: RwLock<Option<(u32, u8)>>,
    /// Held by an insert that raises the top layer.
    grow_lock: Mutex<()>,
    inserted: AtomicUsize,
}

impl Hnsw {
    /// An empty graph for `dim`-dimensional vectors. Cosine graphs (unit vectors,
    /// components within f16 range) keep f16 codes of the vectors in their
    /// layer-0 records; the others read vectors from storage.
    pub fn new(m: usize, ef_construct: usize, distance: Distance, dim: usize) -> Self {
        Self::with_f16(m, ef_construct, distance, dim, true)
    }

    /// Like `new`; `f16 = false` leaves the f16 copies out of cosine graphs (a
    /// quantized collection walks its own codes, so they would only cost memory).
    pub fn with_f16(
        m: usize,
        ef_construct: usize,
        distance: Distance,
        dim: usize,
        f16: bool,
    ) -> Self {
        let m = m.max(2);
        let code_dim = if f16 && distance == Distance::Cosine {
            dim
        } else {
            0
        };
        let kernels = distance::best();
        Hnsw {
            links: Links::new(m, code_dim),
            distance,
            dim,
            dist: kernels.for_distance(distance),
            dist_f16: kernels.neg_dot_f16,
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
    /// A node is inserted once: later calls for it do nothing.
    pub fn insert<V: VectorSource>(&self, vecs: &V, node: u32) {
        let level = self.level_for(node);
        let v = vecs.vector(node);
        if !self.links.init_node(node, level, v) {
            return;
        }
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
        let q = self.query(v);
        let sc = GraphScorer {
            g: self,
            vecs,
            q: &q,
        };
        let mut cur = Scored(sc.score(ep), ep);
        for lc in (level.saturating_add(1)..=top).rev() {
            cur = self.greedy(&sc, cur, lc);
        }
        let mut eps = vec![cur];
        for lc in (0..=level.min(top)).rev() {
            let mut w = self.search_layer(vecs.len(), &sc, &eps, self.ef_construct, lc, |_| true);
            w.retain(|s| s.1 != node);
            if self.lossy() {
                // the neighbour selection works on exact distances
                self.rescore(vecs, v, &mut w, usize::MAX);
            }
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
        let query = self.query(q);
        let sc = GraphScorer {
            g: self,
            vecs,
            q: &query,
        };
        let mut cur = Scored(sc.score(ep), ep);
        for lc in (1..=top).rev() {
            cur = self.greedy(&sc, cur, lc);
        }
        let mut r = self.search_layer(vecs.len(), &sc, &[cur], ef.max(k), 0, accept);
        if self.lossy() {
            self.rescore(vecs, q, &mut r, rescore_len(k));
        }
        r.truncate(k);
        r
    }

    /// Like `search`, but every distance comes from `scorer` (e.g. quantized codes) and
    /// nothing is rescored: up to `max(ef, k)` accepted nodes among ids `0..n`, sorted
    /// by the scorer's distance.
    pub fn search_with<S: WalkScorer, F: Fn(u32) -> bool>(
        &self,
        n: usize,
        scorer: &S,
        ef: usize,
        k: usize,
        accept: F,
    ) -> Vec<Scored> {
        let entry = *self.entry.read();
        let Some((ep, top)) = entry else {
            return Vec::new();
        };
        let mut cur = Scored(scorer.score(ep), ep);
        for lc in (1..=top).rev() {
            cur = self.greedy(scorer, cur, lc);
        }
        self.search_layer(n, scorer, &[cur], ef.max(k), 0, accept)
    }

    /// True when the graph's records hold f16 copies of the vectors.
    pub fn has_f16_codes(&self) -> bool {
        self.lossy()
    }

    /// Bytes of the layer-0 records (links and f16 codes) of the nodes inserted.
    pub fn layer0_bytes(&self) -> usize {
        self.inserted() * self.links.stride()
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
        let g = Hnsw::new(16, 100, Distance::Euclid, 16);
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
        let g = Hnsw::new(8, 64, Distance::Euclid, 12);
        (0..vecs.len() as u32)
            .into_par_iter()
            .for_each(|i| g.insert(&vecs, i));
        assert_eq!(g.inserted(), 3000);
        let queries = random(40, 12, 4);
        assert!(recall(&g, &vecs, &queries, 64, |_| true) >= 0.9);
        // half of the points rejected: results come only from the other half
        assert!(recall(&g, &vecs, &queries, 64, |i| i % 2 == 0) >= 0.9);
    }

    fn unit(vecs: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
        vecs.into_iter()
            .map(|mut v| {
                distance::normalize(&mut v);
                v
            })
            .collect()
    }

    /// Cosine graphs walk f16 codes and re-score exactly: recall holds and the
    /// returned distances are the exact ones.
    #[test]
    fn cosine_graph_with_f16_codes() {
        use rayon::prelude::*;
        let vecs = unit(random(4000, 37, 5));
        let g = Hnsw::new(12, 100, Distance::Cosine, 37);
        assert!(g.lossy());
        (0..vecs.len() as u32)
            .into_par_iter()
            .for_each(|i| g.insert(&vecs, i));
        let f = distance::internal_fn(Distance::Cosine);
        let queries = unit(random(60, 37, 6));
        let mut hit = 0;
        for q in &queries {
            let mut all: Vec<Scored> = (0..vecs.len() as u32)
                .map(|i| Scored(f(q, &vecs[i as usize]), i))
                .collect();
            all.sort_unstable();
            let got = g.search(&vecs, q, 10, 100, |_| true);
            for s in &got {
                assert_eq!(s.0, f(q, &vecs[s.1 as usize]), "exact distance returned");
            }
            assert!(got.windows(2).all(|w| w[0] <= w[1]));
            hit += got.iter().filter(|s| all[..10].contains(s)).count();
        }
        let r = hit as f64 / (queries.len() * 10) as f64;
        assert!(r >= 0.95, "recall {r}");
        // filtered: only odd nodes come back
        let got = g.search(&vecs, &queries[0], 10, 100, |i| i % 2 == 1);
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|s| s.1 % 2 == 1));
    }

    #[test]
    fn a_node_is_inserted_once() {
        let vecs = unit(random(200, 8, 8));
        let g = Hnsw::new(8, 32, Distance::Cosine, 8);
        for i in 0..200 {
            g.insert(&vecs, i);
        }
        let mut before = Vec::new();
        g.links.read(7, 0, &mut before);
        g.insert(&vecs, 7);
        let mut after = Vec::new();
        g.links.read(7, 0, &mut after);
        assert_eq!(before, after);
        assert_eq!(g.inserted(), 200);
    }

    #[test]
    fn levels_are_deterministic_and_geometric() {
        let g = Hnsw::new(16, 10, Distance::Dot, 4);
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
        let g = Hnsw::new(16, 10, Distance::Cosine, 1);
        let v: Vec<Vec<f32>> = Vec::new();
        assert!(g.search(&v, &[1.0], 10, 10, |_| true).is_empty());
    }
}
