//! The codes of a collection's vectors, one fixed-size record per stored vector
//! (offsets as in `MmapVectors`, deleted ones included): the code, then one f32
//! correction. Scores approximate the internal ("lower is better") f32 distances:
//!
//! - int8, `x[i] ≈ lo[i] + step[i] · c[i]`:
//!   Dot/Cosine `-q·x ≈ -Σ q·lo - Σ (q·step) c`, Euclid
//!   `|q - x|² ≈ Σ (q - lo)² - 2 Σ (q - lo)·step·c + Σ (step·c)²`; both are
//!   `bias(q) + Σ w(q)[i] c[i] + corr(x)` with `corr = Σ (step·c)²` for Euclid (0
//!   otherwise), so one f32 × u8 dot kernel scores every distance;
//! - binary (sign bits), with `h` the Hamming distance and `θ ≈ π h / dim` the angle
//!   sign bits estimate: `q·x ≈ |q| |x| cos θ` with `corr = |x|`.
//!
//! int8 ranges are trained once the collection holds `INT8_TRAIN_MIN` vectors, and
//! trained again on a sample of all vectors (every code re-encoded into a new set of
//! records, swapped in while searches keep the old one) whenever the collection has
//! grown `RETRAIN_FACTOR`-fold since, up to `RETRAIN_CAP` vectors: ranges learnt on
//! the first vectors would clip later ones. The points depend only on the number of
//! vectors stored, so a replay trains at the same points. Until the first training
//! searches use the f32 vectors; binary codes need no training. The live records
//! sit in memory-mapped files next to the vectors (`always_ram`: anonymous memory);
//! snapshots store them with the trained quantizer, and a load checks them
//! (checksum, settings, a sample re-encoded) or re-encodes the vectors.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;
use rayon::prelude::*;

use serde::{Deserialize, Serialize};

use super::kernels::{self, DotU8Fn, HammingFn};
use super::{Int8Range, ScalarQuantizer, binary_encode};
use crate::error::{Error, IoContext, Result};
use crate::hnsw::prefetch_bytes;
use crate::storage::{MmapCodes, VectorSource};
use crate::types::{Distance, Offset, Quantization};

/// int8 ranges are trained when the collection first holds this many vectors.
pub const INT8_TRAIN_MIN: usize = 1000;
/// int8 ranges are trained again when the collection has grown this many times...
pub const RETRAIN_FACTOR: usize = 4;
/// ...until they were trained on this many vectors.
pub const RETRAIN_CAP: usize = 1_000_000;
/// At most this many vectors (evenly spaced) train the int8 ranges.
const TRAIN_SAMPLE: usize = 100_000;
/// Records re-encoded from the vectors to check codes loaded from a snapshot.
const CHECK_SAMPLE: usize = 32;

pub const CODES_FILE: &str = "codes.bin";
pub const QUANTIZER_FILE: &str = "quantizer.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Trained {
    Int8(ScalarQuantizer),
    Binary,
}

/// `quantizer.json` of a snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct StoredQuantizer {
    quantization: Quantization,
    distance: Distance,
    dim: usize,
    stride: usize,
    count: usize,
    /// Vectors stored when the ranges were trained (schedules the next training).
    #[serde(default)]
    trained_on: usize,
    trained: Trained,
}

/// A query prepared for scoring codes.
pub enum QuantQuery {
    Int8 { w: Vec<f32>, bias: f32 },
    Binary { bits: Vec<u64>, norm: f32 },
}

/// One trained quantizer and the codes made with it.
struct Codes {
    trained: Trained,
    trained_on: usize,
    recs: MmapCodes,
}

pub struct QuantStore {
    config: Quantization,
    distance: Distance,
    dim: usize,
    code_bytes: usize,
    corr_at: usize,
    stride: usize,
    root: PathBuf,
    round: AtomicUsize,
    cur: RwLock<Option<Arc<Codes>>>,
    /// Binary: `cos(π h / dim)` for `h` in `0..=dim`.
    cos: Vec<f32>,
    dot_u8: DotU8Fn,
    hamming: HammingFn,
}

/// The codes a search uses, pinned for its duration (a retraining swaps in new ones).
pub struct CodesView<'a> {
    store: &'a QuantStore,
    codes: Arc<Codes>,
}

/// Settings that change the codes (`always_ram` only moves them).
fn codec_of(q: Quantization) -> Quantization {
    match q {
        Quantization::Int8 {
            quantile,
            global_range,
            ..
        } => Quantization::Int8 {
            quantile,
            always_ram: false,
            global_range,
        },
        Quantization::Binary { .. } => Quantization::Binary { always_ram: false },
        Quantization::None => Quantization::None,
    }
}

impl QuantStore {
    /// An empty store for `config` (None for `Quantization::None`), its files under `dir`.
    pub fn create(
        config: Quantization,
        distance: Distance,
        dim: usize,
        dir: &Path,
    ) -> Result<Option<QuantStore>> {
        let code_bytes = match config {
            Quantization::None => return Ok(None),
            Quantization::Int8 { .. } => dim,
            Quantization::Binary { .. } => dim.div_ceil(64) * 8,
        };
        let corr_at = code_bytes.next_multiple_of(4);
        let stride = (corr_at + 4).next_multiple_of(8);
        let k = kernels::best();
        let cos = match config {
            Quantization::Binary { .. } => (0..=dim)
                .map(|h| (std::f64::consts::PI * h as f64 / dim as f64).cos() as f32)
                .collect(),
            _ => Vec::new(),
        };
        if !config.always_ram() && dir.exists() {
            fs::remove_dir_all(dir).at(dir)?;
        }
        Ok(Some(QuantStore {
            config,
            distance,
            dim,
            code_bytes,
            corr_at,
            stride,
            root: dir.to_path_buf(),
            round: AtomicUsize::new(0),
            cur: RwLock::new(None),
            cos,
            dot_u8: k.dot_u8,
            hamming: k.hamming,
        }))
    }

    /// A store for `vecs`: from the snapshot in `snap` (directory and its files' CRCs)
    /// when it holds codes matching `config` that check out, else encoded from `vecs`
    /// (with the snapshot's quantizer when only the codes are unusable).
    pub fn open<V: VectorSource>(
        config: Quantization,
        distance: Distance,
        dir: &Path,
        snap: Option<(&Path, &BTreeMap<String, u32>)>,
        vecs: &V,
    ) -> Result<Option<QuantStore>> {
        let Some(store) = Self::create(config, distance, vecs.dim(), dir)? else {
            return Ok(None);
        };
        if let Some((sdir, files)) = snap
            && files.contains_key(QUANTIZER_FILE)
        {
            match store.read_quantizer(sdir, files, vecs.len()) {
                Ok((trained, trained_on)) => {
                    match store.restore(sdir, files, &trained, trained_on, vecs) {
                        Ok(()) => {
                            tracing::info!(codes = store.len(), "quantized codes loaded");
                            return Ok(Some(store));
                        }
                        Err(e) => {
                            tracing::warn!(snapshot = %sdir.display(), error = %e, "quantized codes not usable; re-encoding the vectors with the stored quantizer");
                            store.install(trained, trained_on, vecs)?;
                            return Ok(Some(store));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(snapshot = %sdir.display(), error = %e, "quantizer not usable; training a new one on the vectors");
                }
            }
        }
        store.sync(vecs)?;
        if !store.is_empty() {
            tracing::info!(codes = store.len(), "quantized codes built");
        }
        Ok(Some(store))
    }

    /// The trained quantizer of a snapshot and the count it was trained on, if it
    /// matches this store's settings.
    fn read_quantizer(
        &self,
        sdir: &Path,
        files: &BTreeMap<String, u32>,
        count: usize,
    ) -> Result<(Trained, usize)> {
        let bad = |reason: String| Error::SnapshotInvalid {
            path: sdir.to_path_buf(),
            reason,
        };
        let mp = sdir.join(QUANTIZER_FILE);
        let raw = fs::read(&mp).at(&mp)?;
        if files.get(QUANTIZER_FILE) != Some(&crc32c::crc32c(&raw)) {
            return Err(bad(format!("{QUANTIZER_FILE} checksum mismatch")));
        }
        let stored: StoredQuantizer = serde_json::from_slice(&raw)
            .map_err(|e| bad(format!("unreadable {QUANTIZER_FILE}: {e}")))?;
        if codec_of(stored.quantization) != codec_of(self.config)
            || stored.distance != self.distance
            || stored.dim != self.dim
            || stored.stride != self.stride
        {
            return Err(bad(format!(
                "codes were made with {:?} / {:?} / dim {}, the collection uses {:?} / {:?} / dim {}",
                stored.quantization,
                stored.distance,
                stored.dim,
                self.config,
                self.distance,
                self.dim
            )));
        }
        if stored.count != count {
            return Err(bad(format!("{} codes for {count} vectors", stored.count)));
        }
        if let Trained::Int8(sq) = &stored.trained
            && sq.dim() != self.dim
        {
            return Err(bad("int8 ranges of another dimension".into()));
        }
        let trained_on = if stored.trained_on == 0 {
            stored.count
        } else {
            stored.trained_on
        };
        Ok((stored.trained, trained_on))
    }

    /// Fresh (empty) records for the next round, in their own directory.
    fn new_codes(&self, trained: Trained, trained_on: usize) -> Result<Codes> {
        let round = self.round.fetch_add(1, Ordering::Relaxed);
        Ok(Codes {
            trained,
            trained_on,
            recs: MmapCodes::create(
                &self.root.join(format!("round-{round}")),
                self.stride,
                self.config.always_ram(),
            )?,
        })
    }

    /// Loads the snapshot's codes made with `trained`: checksum, size, a sample re-encoded.
    fn restore<V: VectorSource>(
        &self,
        sdir: &Path,
        files: &BTreeMap<String, u32>,
        trained: &Trained,
        trained_on: usize,
        vecs: &V,
    ) -> Result<()> {
        let bad = |reason: String| Error::SnapshotInvalid {
            path: sdir.to_path_buf(),
            reason,
        };
        let count = vecs.len();
        let cp = sdir.join(CODES_FILE);
        let crc = crate::snapshot::file_crc(&cp)?;
        if files.get(CODES_FILE) != Some(&crc) {
            return Err(bad(format!("{CODES_FILE} checksum mismatch")));
        }
        let len = fs::metadata(&cp).at(&cp)?.len();
        if len != (count * self.stride) as u64 {
            return Err(bad(format!(
                "{CODES_FILE} has {len} bytes for {count} codes"
            )));
        }
        let codes = self.new_codes(trained.clone(), trained_on)?;
        codes.recs.restore_from(&cp, count)?;
        let step = (count / CHECK_SAMPLE).max(1);
        let mut rec = vec![0u8; self.stride];
        for off in (0..count).step_by(step) {
            rec.fill(0);
            self.encode_into(&codes.trained, vecs.vector(off as Offset), &mut rec)?;
            if rec != codes.recs.record(off as Offset) {
                self.discard(codes);
                return Err(bad(format!(
                    "code of vector {off} differs from its re-encoding"
                )));
            }
        }
        *self.cur.write() = Some(Arc::new(codes));
        Ok(())
    }

    fn discard(&self, codes: Codes) {
        let dir = codes.recs.dir().to_path_buf();
        let in_ram = codes.recs.in_ram();
        drop(codes);
        if !in_ram && let Err(e) = fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove old code files");
        }
    }

    /// Encodes every vector with `trained` and makes those the current codes.
    fn install<V: VectorSource>(
        &self,
        trained: Trained,
        trained_on: usize,
        vecs: &V,
    ) -> Result<()> {
        let codes = self.new_codes(trained, trained_on)?;
        self.encode_range(&codes, vecs, vecs.len())?;
        let old = self.cur.write().replace(Arc::new(codes));
        if let Some(old) = old {
            let dir = old.recs.dir().to_path_buf();
            let in_ram = old.recs.in_ram();
            // searches still holding the old codes keep their mapping
            drop(old);
            if !in_ram && let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove old code files");
            }
        }
        Ok(())
    }

    /// Encodes vectors `codes.len()..n` and appends them: in parallel blocks for
    /// many (a (re)training encodes every stored vector), inline for a few.
    fn encode_range<V: VectorSource>(&self, codes: &Codes, vecs: &V, n: usize) -> Result<()> {
        const BLOCK: usize = 1 << 14;
        let mut have = codes.recs.len();
        while have < n {
            let m = (n - have).min(BLOCK);
            if m < 256 {
                let mut err = None;
                codes.recs.append_with(m, |i, rec| {
                    if let Err(e) =
                        self.encode_into(&codes.trained, vecs.vector((have + i) as Offset), rec)
                    {
                        err.get_or_insert(e);
                    }
                })?;
                err.map_or(Ok(()), Err)?;
            } else {
                let mut buf = vec![0u8; m * self.stride];
                buf.par_chunks_mut(self.stride)
                    .enumerate()
                    .try_for_each(|(i, rec)| {
                        self.encode_into(&codes.trained, vecs.vector((have + i) as Offset), rec)
                    })?;
                codes.recs.append_with(m, |i, rec| {
                    rec.copy_from_slice(&buf[i * self.stride..(i + 1) * self.stride]);
                })?;
            }
            have += m;
        }
        Ok(())
    }

    fn train<V: VectorSource>(&self, vecs: &V, n: usize) -> Result<Trained> {
        let Quantization::Int8 {
            quantile,
            global_range,
            ..
        } = self.config
        else {
            return Ok(Trained::Binary);
        };
        let step = n.div_ceil(TRAIN_SAMPLE).max(1);
        let mut sample = Vec::with_capacity(n.div_ceil(step) * self.dim);
        for off in (0..n).step_by(step) {
            sample.extend_from_slice(vecs.vector(off as Offset));
        }
        let range = if global_range {
            Int8Range::Global
        } else {
            Int8Range::PerDimension
        };
        let sq = ScalarQuantizer::train(&sample, self.dim, quantile.unwrap_or(1.0), range)?;
        tracing::info!(
            vectors = n,
            sampled = n.div_ceil(step),
            "int8 ranges trained"
        );
        Ok(Trained::Int8(sq))
    }

    pub fn config(&self) -> Quantization {
        self.config
    }

    /// Trains when due (see the module docs) and encodes the vectors without a code.
    /// Called by the collection's single writer after vectors are appended.
    pub fn sync<V: VectorSource>(&self, vecs: &V) -> Result<()> {
        let n = vecs.len();
        let cur = self.cur.read().clone();
        let due = match (&cur, self.config) {
            (None, Quantization::Binary { .. }) => true,
            (None, Quantization::Int8 { .. }) => n >= INT8_TRAIN_MIN,
            (Some(c), Quantization::Int8 { .. }) => {
                c.trained_on < RETRAIN_CAP && n >= RETRAIN_FACTOR.saturating_mul(c.trained_on)
            }
            _ => false,
        };
        if due {
            let trained = self.train(vecs, n)?;
            return self.install(trained, n, vecs);
        }
        match cur {
            Some(c) => self.encode_range(&c, vecs, n),
            None => Ok(()),
        }
    }

    fn encode_into(&self, trained: &Trained, v: &[f32], rec: &mut [u8]) -> Result<()> {
        let corr = match trained {
            Trained::Int8(sq) => {
                let code = sq.encode(v)?;
                rec[..self.code_bytes].copy_from_slice(&code);
                match self.distance {
                    Distance::Euclid => code
                        .iter()
                        .zip(sq.step())
                        .map(|(&c, &s)| {
                            let x = s * f32::from(c);
                            x * x
                        })
                        .sum(),
                    _ => 0.0,
                }
            }
            Trained::Binary => {
                for (i, w) in binary_encode(v).iter().enumerate() {
                    rec[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
                }
                v.iter().map(|x| x * x).sum::<f32>().sqrt()
            }
        };
        rec[self.corr_at..self.corr_at + 4].copy_from_slice(&corr.to_le_bytes());
        Ok(())
    }

    /// Number of vectors that have a code (0 until trained).
    pub fn len(&self) -> usize {
        self.cur.read().as_ref().map_or(0, |c| c.recs.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current codes, once there are any.
    pub fn view(&self) -> Option<CodesView<'_>> {
        let codes = self.cur.read().clone()?;
        (!codes.recs.is_empty()).then_some(CodesView { store: self, codes })
    }

    /// Bytes per code record.
    pub fn bytes_per_point(&self) -> usize {
        self.stride
    }

    /// Bytes the codes occupy (`len × bytes_per_point`).
    pub fn bytes(&self) -> usize {
        self.len() * self.stride
    }

    /// The record of `off` (code bytes, then the f32 correction), if coded.
    pub fn record(&self, off: Offset) -> Option<Vec<u8>> {
        let v = self.view()?;
        ((off as usize) < v.len()).then(|| v.codes.recs.record(off).to_vec())
    }

    /// Writes the first `count` codes and the quantizer into snapshot directory `dir`
    /// and adds their CRCs to `files`; writes nothing before training.
    pub fn write_snapshot(
        &self,
        dir: &Path,
        count: usize,
        files: &mut BTreeMap<String, u32>,
    ) -> Result<()> {
        let Some(c) = self.cur.read().clone() else {
            return Ok(());
        };
        if c.recs.len() < count {
            return Ok(());
        }
        files.insert(
            CODES_FILE.to_string(),
            c.recs.write_flat(&dir.join(CODES_FILE), count)?,
        );
        let meta = StoredQuantizer {
            quantization: self.config,
            distance: self.distance,
            dim: self.dim,
            stride: self.stride,
            count,
            trained_on: c.trained_on,
            trained: c.trained.clone(),
        };
        let b =
            serde_json::to_vec_pretty(&meta).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        files.insert(
            QUANTIZER_FILE.to_string(),
            crate::snapshot::write_synced(&dir.join(QUANTIZER_FILE), &b)?,
        );
        Ok(())
    }

    /// The directory the code files live under.
    pub fn dir(&self) -> &Path {
        &self.root
    }
}

impl CodesView<'_> {
    /// Vectors with a code in this view.
    pub fn len(&self) -> usize {
        self.codes.recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Prepares `q` (already normalised for cosine) for `score`.
    pub fn query(&self, q: &[f32]) -> QuantQuery {
        match &self.codes.trained {
            Trained::Int8(sq) => {
                let (lo, step) = (sq.lo(), sq.step());
                match self.store.distance {
                    Distance::Euclid => {
                        let mut bias = 0.0;
                        let w = q
                            .iter()
                            .zip(lo.iter().zip(step))
                            .map(|(&x, (&l, &s))| {
                                bias += (x - l) * (x - l);
                                -2.0 * (x - l) * s
                            })
                            .collect();
                        QuantQuery::Int8 { w, bias }
                    }
                    _ => QuantQuery::Int8 {
                        w: q.iter().zip(step).map(|(&x, &s)| -x * s).collect(),
                        bias: -q.iter().zip(lo).map(|(&x, &l)| x * l).sum::<f32>(),
                    },
                }
            }
            Trained::Binary => QuantQuery::Binary {
                bits: binary_encode(q),
                norm: q.iter().map(|x| x * x).sum::<f32>().sqrt(),
            },
        }
    }

    /// Approximate internal distance of `q` (from this view's `query`) to the vector
    /// at `off` (`off < len()`).
    #[inline]
    pub fn score(&self, q: &QuantQuery, off: Offset) -> f32 {
        let s = self.store;
        let rec = self.codes.recs.record(off);
        if rec.len() < s.stride {
            return f32::INFINITY;
        }
        let corr = f32::from_le_bytes([
            rec[s.corr_at],
            rec[s.corr_at + 1],
            rec[s.corr_at + 2],
            rec[s.corr_at + 3],
        ]);
        match q {
            QuantQuery::Int8 { w, bias } => bias + (s.dot_u8)(w, &rec[..s.code_bytes]) + corr,
            QuantQuery::Binary { bits, norm } => {
                let h = (s.hamming)(bits, &rec[..s.code_bytes]) as usize;
                let c = s.cos[h.min(s.dim)];
                match s.distance {
                    Distance::Cosine => -c,
                    Distance::Euclid => norm * norm + corr * corr - 2.0 * norm * corr * c,
                    _ => -norm * corr * c,
                }
            }
        }
    }

    /// Starts loading the record of `off`.
    #[inline]
    pub fn prefetch(&self, off: Offset) {
        let rec = self.codes.recs.record(off);
        prefetch_bytes(rec.as_ptr(), rec.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance;
    use rand::{Rng, SeedableRng};

    fn data(n: usize, dim: usize, seed: u64, unit: bool) -> Vec<Vec<f32>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let mut v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
                if unit {
                    distance::normalize(&mut v);
                }
                v
            })
            .collect()
    }

    /// int8 scores (the codec's lo/step folded into the query plus the per-vector
    /// correction) approximate the internal f32 distance of every supported metric
    /// to within 1 % of their natural size (|q||x|, or |q|²+|x|² for L2); binary
    /// scores estimate them from the angle to within 25 %.
    #[test]
    fn code_scores_approximate_f32_distances() {
        let dim = 64;
        let tmp = tempfile::tempdir().unwrap();
        for d in [Distance::Cosine, Distance::Dot, Distance::Euclid] {
            let unit = d == Distance::Cosine;
            let vecs = data(2000, dim, 1, unit);
            let queries = data(20, dim, 2, unit);
            let exact = distance::internal_fn(d);
            for (q, tol) in [
                (
                    Quantization::Int8 {
                        quantile: None,
                        always_ram: false,
                        global_range: false,
                    },
                    0.01f32,
                ),
                (Quantization::Binary { always_ram: true }, 0.25),
            ] {
                let s = QuantStore::create(q, d, dim, &tmp.path().join("c"))
                    .unwrap()
                    .unwrap();
                s.sync(&vecs).unwrap();
                assert_eq!(s.len(), 2000);
                let v = s.view().unwrap();
                let (mut err, mut scale) = (0f64, 0f64);
                for qv in &queries {
                    let qq = v.query(qv);
                    let nq = (distance::best().dot)(qv, qv);
                    for (i, x) in vecs.iter().enumerate() {
                        let e = exact(qv, x);
                        err += f64::from((v.score(&qq, i as u32) - e).abs());
                        // the natural size of the distance: |q||x| for products, |q|²+|x|² for L2
                        let nx = (distance::best().dot)(x, x);
                        scale += f64::from(match d {
                            Distance::Euclid => nq + nx,
                            _ => (nq * nx).sqrt(),
                        });
                    }
                }
                let rel = (err / scale) as f32;
                assert!(rel < tol, "{d:?} {q:?}: mean relative error {rel}");
            }
        }
    }
}
