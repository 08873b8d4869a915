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
//! int8 ranges are trained once the collection holds `INT8_TRAIN_MIN` vectors (on
//! the vectors then stored: deterministic, so a replay trains at the same point);
//! until then searches use the f32 vectors. Binary codes need no training. The live
//! records sit in memory-mapped files next to the vectors (`always_ram`: anonymous
//! memory); snapshots store them with the trained quantizer, and a load checks them
//! (checksum, settings, a sample re-encoded) or rebuilds them from the vectors.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::kernels::{self, DotU8Fn, HammingFn};
use super::{Int8Range, ScalarQuantizer, binary_encode};
use crate::error::{Error, IoContext, Result};
use crate::hnsw::prefetch_bytes;
use crate::storage::{MmapCodes, VectorSource};
use crate::types::{Distance, Offset, Quantization};

/// int8 ranges are trained when the collection first holds this many vectors.
pub const INT8_TRAIN_MIN: usize = 1000;
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
    trained: Trained,
}

/// A query prepared for scoring codes.
pub enum QuantQuery {
    Int8 { w: Vec<f32>, bias: f32 },
    Binary { bits: Vec<u64>, norm: f32 },
}

pub struct QuantStore {
    config: Quantization,
    distance: Distance,
    dim: usize,
    code_bytes: usize,
    corr_at: usize,
    trained: OnceLock<Trained>,
    codes: MmapCodes,
    /// Binary: `cos(π h / dim)` for `h` in `0..=dim`.
    cos: Vec<f32>,
    dot_u8: DotU8Fn,
    hamming: HammingFn,
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
    /// An empty store for `config` (None for `Quantization::None`), its files in `dir`.
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
        Ok(Some(QuantStore {
            config,
            distance,
            dim,
            code_bytes,
            corr_at,
            trained: OnceLock::new(),
            codes: MmapCodes::create(dir, stride, config.always_ram())?,
            cos,
            dot_u8: k.dot_u8,
            hamming: k.hamming,
        }))
    }

    /// A store for `vecs`: from the snapshot in `snap` (directory and its files' CRCs)
    /// when it holds codes matching `config` that check out, else encoded from `vecs`.
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
        let mut known = None;
        if let Some((sdir, files)) = snap
            && files.contains_key(QUANTIZER_FILE)
        {
            match store.read_quantizer(sdir, files, vecs.len()) {
                Ok(trained) => match store.restore(sdir, files, &trained, vecs) {
                    Ok(()) => {
                        tracing::info!(codes = store.codes.len(), "quantized codes loaded");
                        return Ok(Some(store));
                    }
                    Err(e) => {
                        tracing::warn!(snapshot = %sdir.display(), error = %e, "quantized codes not usable; re-encoding the vectors with the stored quantizer");
                        known = Some(trained);
                    }
                },
                Err(e) => {
                    tracing::warn!(snapshot = %sdir.display(), error = %e, "quantizer not usable; training a new one on the vectors");
                }
            }
        }
        drop(store);
        let Some(store) = Self::create(config, distance, vecs.dim(), dir)? else {
            return Ok(None);
        };
        if let Some(t) = known {
            let _ = store.trained.set(t);
        }
        store.sync(vecs)?;
        if !store.codes.is_empty() {
            tracing::info!(codes = store.codes.len(), "quantized codes built");
        }
        Ok(Some(store))
    }

    /// The trained quantizer of a snapshot, if it matches this store's settings.
    fn read_quantizer(
        &self,
        sdir: &Path,
        files: &BTreeMap<String, u32>,
        count: usize,
    ) -> Result<Trained> {
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
            || stored.stride != self.codes.stride()
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
        Ok(stored.trained)
    }

    /// Loads the snapshot's codes made with `trained`: checksum, size, a sample re-encoded.
    fn restore<V: VectorSource>(
        &self,
        sdir: &Path,
        files: &BTreeMap<String, u32>,
        trained: &Trained,
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
        if len != (count * self.codes.stride()) as u64 {
            return Err(bad(format!(
                "{CODES_FILE} has {len} bytes for {count} codes"
            )));
        }
        let _ = self.trained.set(trained.clone());
        self.codes.restore_from(&cp, count)?;
        let step = (count / CHECK_SAMPLE).max(1);
        let mut rec = vec![0u8; self.codes.stride()];
        for off in (0..count).step_by(step) {
            rec.fill(0);
            self.encode_into(vecs.vector(off as Offset), &mut rec)?;
            if rec != self.codes.record(off as Offset) {
                return Err(bad(format!(
                    "code of vector {off} differs from its re-encoding"
                )));
            }
        }
        Ok(())
    }

    pub fn config(&self) -> Quantization {
        self.config
    }

    /// Trains when due and encodes the vectors that have no code yet.
    pub fn sync<V: VectorSource>(&self, vecs: &V) -> Result<()> {
        let n = vecs.len();
        if self.trained.get().is_none() {
            let t = match self.config {
                Quantization::Binary { .. } => Trained::Binary,
                Quantization::Int8 {
                    quantile,
                    global_range,
                    ..
                } if n >= INT8_TRAIN_MIN => {
                    let step = n.div_ceil(TRAIN_SAMPLE);
                    let mut sample = Vec::with_capacity(n.div_ceil(step) * self.dim);
                    for off in (0..n).step_by(step) {
                        sample.extend_from_slice(vecs.vector(off as Offset));
                    }
                    let range = if global_range {
                        Int8Range::Global
                    } else {
                        Int8Range::PerDimension
                    };
                    let sq =
                        ScalarQuantizer::train(&sample, self.dim, quantile.unwrap_or(1.0), range)?;
                    tracing::info!(
                        vectors = n,
                        sampled = n.div_ceil(step),
                        "int8 ranges trained"
                    );
                    Trained::Int8(sq)
                }
                _ => return Ok(()),
            };
            let _ = self.trained.set(t);
        }
        let have = self.codes.len();
        if have >= n {
            return Ok(());
        }
        let mut err = None;
        self.codes.append_with(n - have, |i, rec| {
            if let Err(e) = self.encode_into(vecs.vector((have + i) as Offset), rec) {
                err.get_or_insert(e);
            }
        })?;
        err.map_or(Ok(()), Err)
    }

    fn encode_into(&self, v: &[f32], rec: &mut [u8]) -> Result<()> {
        let corr = match self.trained.get() {
            None => return Ok(()),
            Some(Trained::Int8(sq)) => {
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
            Some(Trained::Binary) => {
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
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// True once searches can use the codes.
    pub fn ready(&self) -> bool {
        self.trained.get().is_some() && !self.codes.is_empty()
    }

    /// Bytes per code record.
    pub fn bytes_per_point(&self) -> usize {
        self.codes.stride()
    }

    /// Bytes the codes occupy (`len × bytes_per_point`).
    pub fn bytes(&self) -> usize {
        self.codes.len() * self.codes.stride()
    }

    /// Prepares `q` (already normalised for cosine) for `score`; None until trained.
    pub fn query(&self, q: &[f32]) -> Option<QuantQuery> {
        match self.trained.get()? {
            Trained::Int8(sq) => {
                let (lo, step) = (sq.lo(), sq.step());
                Some(match self.distance {
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
                })
            }
            Trained::Binary => Some(QuantQuery::Binary {
                bits: binary_encode(q),
                norm: q.iter().map(|x| x * x).sum::<f32>().sqrt(),
            }),
        }
    }

    #[inline]
    fn corr(&self, rec: &[u8]) -> f32 {
        rec.get(self.corr_at..self.corr_at + 4)
            .map_or(0.0, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Approximate internal distance of `q` to the vector at `off` (`off < len()`).
    #[inline]
    pub fn score(&self, q: &QuantQuery, off: Offset) -> f32 {
        let rec = self.codes.record(off);
        if rec.len() < self.codes.stride() {
            return f32::INFINITY;
        }
        match q {
            QuantQuery::Int8 { w, bias } => {
                bias + (self.dot_u8)(w, &rec[..self.code_bytes]) + self.corr(rec)
            }
            QuantQuery::Binary { bits, norm } => {
                let h = (self.hamming)(bits, &rec[..self.code_bytes]) as usize;
                let c = self.cos[h.min(self.dim)];
                let x = self.corr(rec);
                match self.distance {
                    Distance::Cosine => -c,
                    Distance::Euclid => norm * norm + x * x - 2.0 * norm * x * c,
                    _ => -norm * x * c,
                }
            }
        }
    }

    /// Starts loading the record of `off`.
    #[inline]
    pub fn prefetch(&self, off: Offset) {
        let rec = self.codes.record(off);
        prefetch_bytes(rec.as_ptr(), rec.len());
    }

    /// Writes the first `count` codes and the quantizer into snapshot directory `dir`
    /// and adds their CRCs to `files`; writes nothing before training.
    pub fn write_snapshot(
        &self,
        dir: &Path,
        count: usize,
        files: &mut BTreeMap<String, u32>,
    ) -> Result<()> {
        let Some(trained) = self.trained.get() else {
            return Ok(());
        };
        if self.codes.len() < count {
            return Ok(());
        }
        files.insert(
            CODES_FILE.to_string(),
            self.codes.write_flat(&dir.join(CODES_FILE), count)?,
        );
        let meta = StoredQuantizer {
            quantization: self.config,
            distance: self.distance,
            dim: self.dim,
            stride: self.codes.stride(),
            count,
            trained: trained.clone(),
        };
        let b =
            serde_json::to_vec_pretty(&meta).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        files.insert(
            QUANTIZER_FILE.to_string(),
            crate::snapshot::write_synced(&dir.join(QUANTIZER_FILE), &b)?,
        );
        Ok(())
    }

    /// The record of `off` (tests compare codes across restarts).
    pub fn record(&self, off: Offset) -> &[u8] {
        self.codes.record(off)
    }

    pub fn dir(&self) -> &Path {
        self.codes.dir()
    }
}
