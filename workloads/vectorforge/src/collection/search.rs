//! Reads: search, scroll, count. The search path, top-down:
//! 1. validate the query (dimension, finite) and normalise it for cosine;
//! 2. turn the filter into a bitmap of candidates with the payload index
//!    (exact when every condition is indexed, else a superset checked per point);
//! 3. estimate how many points match; few → score them all exactly, many → walk
//!    the graph, where non-matching points route but are never returned;
//! 4. score the not-yet-indexed tail exactly, merge, apply offset / limit /
//!    threshold, attach payloads and vectors.
//!
//! With quantized codes (and neither `exact` nor `quantization.ignore`), steps 3
//! and 4 score codes instead of vectors and keep `ceil(k × oversampling)`
//! candidates, which are then rescored with the f32 vectors (unless `rescore` is
//! false), so the scores returned are exact.

use std::collections::{BinaryHeap, HashSet};
use std::sync::atomic::Ordering;

use roaring::RoaringBitmap;

use super::Collection;
use super::core::{Core, State};
use crate::distance;
use crate::error::{Error, Result};
use crate::filter::{Filter, FilterContext, check};
use crate::hnsw::{Scored, WalkScorer, prefetch};
use crate::quantization::{CodesView, QuantQuery};

/// How many points ahead an exact scan starts loading vectors.
const PREFETCH_AHEAD: usize = 8;
use crate::distance::DistFn;
use crate::storage::{MmapVectors, VectorSource};
use crate::types::{Distance, Offset, PointId, Record, ScoredPoint};

/// Qdrant's `params.quantization` of a search; deserializes from its JSON
/// (`{"ignore": false, "rescore": true, "oversampling": 2.0}`, every key optional).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct QuantizationSearchParams {
    /// Search the f32 vectors even though the collection has codes.
    pub ignore: bool,
    /// Rescore the candidates found on the codes with the f32 vectors (default true);
    /// false returns the codes' approximate scores.
    pub rescore: Option<bool>,
    /// The walk keeps `ceil(limit × oversampling)` candidates for rescoring (default
    /// 2.0 for int8, `BINARY_OVERSAMPLING` = 3.0 for binary); at least 1.
    pub oversampling: Option<f64>,
}

/// Scores nodes on their codes (the vectors of the few not coded yet exactly).
struct CodeScorer<'a> {
    qs: &'a CodesView<'a>,
    qq: &'a QuantQuery,
    coded: usize,
    vecs: &'a MmapVectors,
    q: &'a [f32],
    dist: DistFn,
}

impl WalkScorer for CodeScorer<'_> {
    #[inline]
    fn score(&self, node: u32) -> f32 {
        if (node as usize) < self.coded {
            self.qs.score(self.qq, node)
        } else {
            (self.dist)(self.q, self.vecs.vector(node))
        }
    }
    #[inline]
    fn prefetch(&self, node: u32) {
        if (node as usize) < self.coded {
            self.qs.prefetch(node);
        } else {
            prefetch(self.vecs.vector(node));
        }
    }
}

/// A search as Qdrant's `/points/search` describes it.
#[derive(Clone, Debug, Default)]
pub struct SearchRequest {
    pub vector: Vec<f32>,
    pub filter: Option<Filter>,
    pub limit: usize,
    pub offset: usize,
    /// Candidate list size; the collection's default when None.
    pub ef: Option<usize>,
    /// Score every candidate exactly instead of walking the graph.
    pub exact: bool,
    /// Minimal similarity (Cosine, Dot) or maximal distance (Euclid, Manhattan).
    pub score_threshold: Option<f32>,
    pub with_payload: bool,
    pub with_vector: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ScrollRequest {
    pub filter: Option<Filter>,
    pub limit: usize,
    /// First point id of the page (ids are ordered).
    pub offset: Option<PointId>,
    pub with_payload: bool,
    pub with_vector: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScrollResult {
    pub points: Vec<Record>,
    pub next_page_offset: Option<PointId>,
}

/// The candidates a filter leaves and how to test a single point.
struct Candidates<'a> {
    filter: Option<&'a Filter>,
    /// Superset of the matching live points; None means every live point.
    bitmap: Option<RoaringBitmap>,
    /// True when `bitmap` is exactly the matching set.
    exact: bool,
}

impl Candidates<'_> {
    #[inline]
    fn accepts(&self, st: &State, off: Offset) -> bool {
        match &self.bitmap {
            None => !st.deleted.contains(off),
            Some(b) => {
                b.contains(off)
                    && (self.exact
                        || self.filter.is_none_or(|f| {
                            check(f, st.payloads.get(off), st.ids.get(off as usize).copied())
                        }))
            }
        }
    }

    /// The candidate offsets to scan.
    fn set<'s>(&'s self, st: &'s State) -> &'s RoaringBitmap {
        self.bitmap.as_ref().unwrap_or(&st.live)
    }

    /// Estimated number of matching points (sampling when the bitmap is a superset).
    fn estimate(&self, st: &State) -> usize {
        let set = self.set(st);
        let n = set.len() as usize;
        if self.exact || n == 0 {
            return n;
        }
        let step = (n / 1000).max(1);
        let (mut seen, mut hit) = (0usize, 0usize);
        for off in set.iter().step_by(step) {
            seen += 1;
            hit += usize::from(self.accepts(st, off));
        }
        (n * hit).div_ceil(seen.max(1))
    }
}

fn candidates<'a>(st: &State, filter: Option<&'a Filter>) -> Candidates<'a> {
    match filter.filter(|f| !f.is_empty()) {
        None => Candidates {
            filter: None,
            bitmap: None,
            exact: true,
        },
        Some(f) => {
            let ctx = FilterContext {
                index: &st.index,
                offsets: &st.offsets,
                live: &st.live,
            };
            let (bitmap, exact) = ctx.eval(f);
            Candidates {
                filter: Some(f),
                bitmap: Some(bitmap),
                exact,
            }
        }
    }
}

/// Keeps the `k` best (lowest internal distance) of a stream.
fn push_top(heap: &mut BinaryHeap<Scored>, k: usize, s: Scored) {
    if heap.len() < k {
        heap.push(s);
    } else if heap.peek().is_some_and(|w| s < *w) {
        heap.pop();
        heap.push(s);
    }
}

impl Collection {
    /// Checks a query vector (dimension, finite components) without searching, e.g. to
    /// refuse a batch before any of its results are sent.
    pub fn check_query(&self, v: &[f32]) -> Result<()> {
        if v.len() != self.config.dim {
            return Err(Error::WrongQueryDimension {
                expected: self.config.dim,
                got: v.len(),
            });
        }
        if let Some(index) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFiniteQuery { index });
        }
        Ok(())
    }

    fn prepare_query(&self, v: &[f32]) -> Result<Vec<f32>> {
        self.check_query(v)?;
        let mut q = v.to_vec();
        if self.config.distance == Distance::Cosine {
            distance::normalize(&mut q);
        }
        Ok(q)
    }

    /// Searches with the default quantization parameters: on the codes when the
    /// collection has them (rescored with the f32 vectors), else on the vectors.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<ScoredPoint>> {
        self.search_with(req, &QuantizationSearchParams::default())
    }

    /// Searches with Qdrant's `params.quantization` (`ignore`, `rescore`,
    /// `oversampling`). A collection without codes (no quantization, or int8 before
    /// its ranges are trained) and `exact` searches use the f32 vectors.
    pub fn search_with(
        &self,
        req: &SearchRequest,
        params: &QuantizationSearchParams,
    ) -> Result<Vec<ScoredPoint>> {
        let q = self.prepare_query(&req.vector)?;
        if let Some(o) = params.oversampling
            && !(o.is_finite() && o >= 1.0)
        {
            return Err(Error::InvalidConfig(format!(
                "quantization.oversampling = {o} must be a number >= 1"
            )));
        }
        let k = req.limit.saturating_add(req.offset);
        if k == 0 {
            return Ok(Vec::new());
        }
        let core = self.shared.core.read();
        let st = core.state.read();
        let cand = candidates(&st, req.filter.as_ref());
        // an upsert appends vectors (and codes) before it publishes the points in the
        // state, and the indexer may already have linked them: only offsets the
        // state knows are candidates
        let n = core.vectors.len().min(st.ids.len());
        let indexed = core.indexed.load(Ordering::Acquire).min(n);
        let matching = cand.estimate(&st);
        let dist = self.dist();
        let scan = req.exact || matching <= self.config.hnsw.full_scan_threshold || indexed == 0;
        let ef = || {
            let ef = req.ef.unwrap_or(self.config.hnsw.ef).max(k);
            // a selective filter leaves fewer accepted points per visited node: widen the beam
            let live = st.live.len().max(1) as f64;
            let boost = (live / matching.max(1) as f64).sqrt().clamp(1.0, 2.0);
            (ef as f64 * boost) as usize
        };
        let codes = match core.quant.as_ref() {
            Some(qs) if !req.exact && !params.ignore => qs.view(),
            _ => None,
        };

        let mut found: Vec<Scored> = if let Some(qs) = codes {
            let qq = qs.query(&q);
            let rescore = params.rescore.unwrap_or(true);
            let over = params
                .oversampling
                .unwrap_or_else(|| self.config.quantization.default_oversampling());
            // never more candidates than stored vectors (a huge factor must not allocate)
            let kk = if rescore {
                ((k as f64 * over).ceil() as usize).clamp(k, n.max(k))
            } else {
                k
            };
            let scorer = CodeScorer {
                qs: &qs,
                qq: &qq,
                coded: qs.len(),
                vecs: &core.vectors,
                q: &q,
                dist,
            };
            let mut heap = BinaryHeap::with_capacity(kk + 1);
            if scan {
                let offs: Vec<Offset> = cand
                    .set(&st)
                    .iter()
                    .filter(|&off| cand.exact || cand.accepts(&st, off))
                    .collect();
                for (i, &off) in offs.iter().enumerate() {
                    if let Some(&ahead) = offs.get(i + PREFETCH_AHEAD) {
                        scorer.prefetch(ahead);
                    }
                    push_top(&mut heap, kk, Scored(scorer.score(off), off));
                }
            } else {
                let mut v = core.graph.search_with(n, &scorer, ef().max(kk), kk, |o| {
                    (o as usize) < indexed && cand.accepts(&st, o)
                });
                v.truncate(kk);
                heap.extend(v);
                for off in cand.set(&st).range(indexed as u32..) {
                    if cand.accepts(&st, off) {
                        push_top(&mut heap, kk, Scored(scorer.score(off), off));
                    }
                }
            }
            let mut v = heap.into_vec();
            if rescore {
                for s in &v {
                    prefetch(core.vectors.vector(s.1));
                }
                for s in v.iter_mut() {
                    s.0 = dist(&q, core.vectors.vector(s.1));
                }
            }
            v
        } else if scan {
            // Matching points lie scattered over storage: gather their offsets, then
            // score them with the vectors a few points ahead already being loaded.
            let offs: Vec<Offset> = cand
                .set(&st)
                .iter()
                .filter(|&off| cand.exact || cand.accepts(&st, off))
                .collect();
            let mut heap = BinaryHeap::with_capacity(k + 1);
            for (i, &off) in offs.iter().enumerate() {
                if let Some(&ahead) = offs.get(i + PREFETCH_AHEAD) {
                    prefetch(core.vectors.vector(ahead));
                }
                push_top(
                    &mut heap,
                    k,
                    Scored(dist(&q, core.vectors.vector(off)), off),
                );
            }
            heap.into_vec()
        } else {
            let mut v = core.graph.search(&core.vectors, &q, k, ef(), |o| {
                (o as usize) < indexed && cand.accepts(&st, o)
            });
            let mut heap: BinaryHeap<Scored> = v.drain(..).collect();
            for off in cand.set(&st).range(indexed as u32..) {
                if cand.accepts(&st, off) {
                    push_top(
                        &mut heap,
                        k,
                        Scored(dist(&q, core.vectors.vector(off)), off),
                    );
                }
            }
            heap.into_vec()
        };
        found.sort_unstable();
        let d = self.config.distance;
        let out = found
            .into_iter()
            .skip(req.offset)
            .take(req.limit)
            .map(|s| (s.1, d.to_score(s.0)))
            .filter(|(_, score)| match req.score_threshold {
                None => true,
                Some(t) if d.higher_is_better() => *score >= t,
                Some(t) => *score <= t,
            })
            .map(|(off, score)| {
                self.scored_point(&core, &st, off, score, req.with_payload, req.with_vector)
            })
            .collect();
        Ok(out)
    }

    fn scored_point(
        &self,
        core: &Core,
        st: &State,
        off: Offset,
        score: f32,
        wp: bool,
        wv: bool,
    ) -> ScoredPoint {
        ScoredPoint {
            id: st.ids[off as usize],
            score,
            payload: wp.then(|| st.payloads.get(off).cloned().unwrap_or_default()),
            vector: wv.then(|| core.vectors.vector(off).to_vec()),
        }
    }

    /// Number of live points matching `filter` (all live points without one).
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        let core = self.shared.core.read();
        let st = core.state.read();
        let cand = candidates(&st, filter);
        if cand.exact {
            return cand.set(&st).len() as usize;
        }
        cand.set(&st)
            .iter()
            .filter(|&o| cand.accepts(&st, o))
            .count()
    }

    /// Pages through matching points ordered by id.
    pub fn scroll(&self, req: &ScrollRequest) -> ScrollResult {
        let core = self.shared.core.read();
        let st = core.state.read();
        let cand = candidates(&st, req.filter.as_ref());
        let mut matching: Vec<(PointId, Offset)> = cand
            .set(&st)
            .iter()
            .filter(|&o| cand.accepts(&st, o))
            .map(|o| (st.ids[o as usize], o))
            .filter(|(id, _)| req.offset.is_none_or(|start| *id >= start))
            .collect();
        matching.sort_unstable();
        let next_page_offset = matching.get(req.limit).map(|(id, _)| *id);
        let points = matching
            .into_iter()
            .take(req.limit)
            .map(|(id, off)| Record {
                id,
                payload: req
                    .with_payload
                    .then(|| st.payloads.get(off).cloned().unwrap_or_default()),
                vector: req.with_vector.then(|| core.vectors.vector(off).to_vec()),
            })
            .collect();
        ScrollResult {
            points,
            next_page_offset,
        }
    }

    /// Ids of every live point (unordered); handy for checks.
    pub fn point_ids(&self) -> HashSet<PointId> {
        let core = self.shared.core.read();
        let st = core.state.read();
        st.offsets.keys().copied().collect()
    }
}
