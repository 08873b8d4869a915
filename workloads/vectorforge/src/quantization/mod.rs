//! Vector quantization codecs (issue 19, first increment): int8 scalar codes
//! (global or per-dimension min/max, clipped to a central quantile) and binary
//! codes (one bit per dimension, packed into u64 words, compared by Hamming
//! distance). This module is the codec layer only: training, encoding,
//! decoding and the scalar reference kernels. `kernels` holds the SIMD kernels
//! on codes and `store` the codes of a collection's vectors, which searches walk
//! the graph on before rescoring with the f32 vectors.

pub mod kernels;
pub mod store;

pub use store::{CodesView, QuantQuery, QuantStore};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a quantizer could not be trained or a vector not encoded.
#[derive(Debug, Error, PartialEq)]
pub enum QuantError {
    #[error("quantizer training needs at least one vector of dimension > 0")]
    EmptyTraining,
    #[error("training data of {len} floats is not a whole number of {dim}-dimensional vectors")]
    RaggedTraining { len: usize, dim: usize },
    #[error("quantile must lie in [0.5, 1], got {0}")]
    BadQuantile(f32),
    #[error("training data holds a non-finite value")]
    NonFinite,
    #[error("expected {expected} values, got {got}")]
    DimMismatch { expected: usize, got: usize },
}

/// Whether the int8 range is shared by all dimensions or kept per dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Range {
    Global,
    PerDimension,
}

/// Int8 scalar quantizer: `code = round((x - lo) / step)` clamped to 0..=255,
/// `x ≈ lo + code * step`, with `lo`/`step` per dimension (a global range is
/// stored replicated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalarQuantizer {
    lo: Vec<f32>,
    step: Vec<f32>,
}

/// Index of quantile `p` (0..=1) among `len` sorted values, nearest rank.
fn quantile_index(len: usize, p: f32) -> usize {
    let last = len - 1;
    (((last as f64) * f64::from(p)).round() as usize).min(last)
}

/// `[lo, hi]` holding the central `quantile` share of `vals` (reordered in place):
/// the values a full sort would put at those ranks, found by selection (linear time).
fn bounds(vals: &mut [f32], quantile: f32) -> (f32, f32) {
    let tail = (1.0 - quantile) / 2.0;
    let (i, j) = (
        quantile_index(vals.len(), tail),
        quantile_index(vals.len(), 1.0 - tail),
    );
    let (_, &mut lo, rest) = vals.select_nth_unstable_by(i, f32::total_cmp);
    // every value after the i-th is >= it, so the j-th overall is the (j - i - 1)-th of `rest`
    let hi = if j > i {
        *rest.select_nth_unstable_by(j - i - 1, f32::total_cmp).1
    } else {
        lo
    };
    (lo, hi)
}

impl ScalarQuantizer {
    /// Trains on `vectors` (row-major, `dim` floats each). `quantile` = 1
    /// uses min/max; below 1 the extreme tails are clipped (Qdrant's meaning).
    pub fn train(
        vectors: &[f32],
        dim: usize,
        quantile: f32,
        range: Int8Range,
    ) -> Result<Self, QuantError> {
        if dim == 0 || vectors.is_empty() {
            return Err(QuantError::EmptyTraining);
        }
        if !vectors.len().is_multiple_of(dim) {
            return Err(QuantError::RaggedTraining {
                len: vectors.len(),
                dim,
            });
        }
        if !(0.5..=1.0).contains(&quantile) {
            return Err(QuantError::BadQuantile(quantile));
        }
        if vectors.iter().any(|x| !x.is_finite()) {
            return Err(QuantError::NonFinite);
        }
        let to_step = |(lo, hi): (f32, f32)| (lo, (hi - lo) / 255.0);
        let (lo, step) = match range {
            Int8Range::Global => {
                let (lo, step) = to_step(bounds(&mut vectors.to_vec(), quantile));
                (vec![lo; dim], vec![step; dim])
            }
            Int8Range::PerDimension => (0..dim)
                .into_par_iter()
                .map(|d| {
                    let mut col: Vec<f32> = vectors.iter().skip(d).step_by(dim).copied().collect();
                    to_step(bounds(&mut col, quantile))
                })
                .unzip(),
        };
        Ok(Self { lo, step })
    }

    pub fn dim(&self) -> usize {
        self.lo.len()
    }

    /// Lower end of each dimension's range.
    pub fn lo(&self) -> &[f32] {
        &self.lo
    }

    /// Value of one code step in each dimension.
    pub fn step(&self) -> &[f32] {
        &self.step
    }

    fn check(&self, got: usize) -> Result<(), QuantError> {
        if got == self.dim() {
            Ok(())
        } else {
            Err(QuantError::DimMismatch {
                expected: self.dim(),
                got,
            })
        }
    }

    /// Encodes one vector into `dim` bytes.
    pub fn encode(&self, v: &[f32]) -> Result<Vec<u8>, QuantError> {
        self.check(v.len())?;
        Ok(v.iter()
            .zip(self.lo.iter().zip(&self.step))
            .map(|(&x, (&lo, &step))| {
                if step > 0.0 {
                    ((x - lo) / step).round().clamp(0.0, 255.0) as u8
                } else {
                    0
                }
            })
            .collect())
    }

    /// Decodes `dim` bytes back to approximate floats.
    pub fn decode(&self, code: &[u8]) -> Result<Vec<f32>, QuantError> {
        self.check(code.len())?;
        Ok(code
            .iter()
            .zip(self.lo.iter().zip(&self.step))
            .map(|(&c, (&lo, &step))| lo + f32::from(c) * step)
            .collect())
    }

    /// Scalar reference: dot product of an f32 query with a code, equal to
    /// `dot(query, decode(code))` up to rounding.
    pub fn dot(&self, query: &[f32], code: &[u8]) -> f32 {
        query
            .iter()
            .zip(code)
            .zip(self.lo.iter().zip(&self.step))
            .map(|((&q, &c), (&lo, &step))| q * (lo + f32::from(c) * step))
            .sum()
    }
}

/// Binary codes: bit `i` is set when dimension `i` is > 0, packed LSB-first
/// into `dim.div_ceil(64)` u64 words.
pub fn binary_encode(v: &[f32]) -> Vec<u64> {
    let mut words = vec![0u64; v.len().div_ceil(64)];
    for (i, &x) in v.iter().enumerate() {
        if x > 0.0 {
            words[i / 64] |= 1u64 << (i % 64);
        }
    }
    words
}

/// Hamming distance of two binary codes of the same dimension (lower is closer).
pub fn hamming(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Bytes per point of each representation of a `dim`-dimensional vector.
pub fn bytes_per_point(dim: usize) -> (usize, usize, usize) {
    (dim * 4, dim, dim.div_ceil(64) * 8)
}

#[cfg(test)]
mod tests;
