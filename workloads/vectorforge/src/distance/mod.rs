//! Distance kernels: a scalar reference and SIMD versions (AVX2+FMA, AVX-512,
//! NEON) picked once at run time. Internally every distance is "lower is
//! better": Cosine and Dot use the negated dot product (cosine vectors are
//! normalised at insert), Euclid the squared L2 distance, Manhattan L1. The
//! graph walks cosine collections over half-precision copies of the vectors
//! (`half`), hence the f32-query x f16-vector kernel.

pub mod half;
pub mod scalar;

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

use crate::types::Distance;

/// A distance kernel over two slices of the same length.
pub type DistFn = fn(&[f32], &[f32]) -> f32;

/// A distance kernel of an f32 query and an f16 vector (over their common length).
pub type HalfDistFn = fn(&[f32], &[u16]) -> f32;

/// One instruction set's kernels.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    pub name: &'static str,
    pub dot: DistFn,
    pub neg_dot: DistFn,
    pub l2sq: DistFn,
    pub l1: DistFn,
    /// Negated dot product with a half-precision vector.
    pub neg_dot_f16: HalfDistFn,
}

impl Kernels {
    /// The internal (lower is better) function for a collection's distance.
    pub fn for_distance(&self, d: Distance) -> DistFn {
        match d {
            Distance::Cosine | Distance::Dot => self.neg_dot,
            Distance::Euclid => self.l2sq,
            Distance::Manhattan => self.l1,
        }
    }
}

/// Every kernel set this CPU can run, best last; the scalar one is always first.
pub fn available() -> Vec<Kernels> {
    #[allow(unused_mut)]
    let mut v = vec![scalar::KERNELS];
    #[cfg(target_arch = "x86_64")]
    v.extend(x86::detect());
    #[cfg(target_arch = "aarch64")]
    v.extend(neon::detect());
    v
}

/// The best kernel set for this CPU, chosen once.
pub fn best() -> &'static Kernels {
    static BEST: OnceLock<Kernels> = OnceLock::new();
    BEST.get_or_init(|| {
        let k = available().pop().unwrap_or(scalar::KERNELS);
        tracing::debug!(kernels = k.name, "distance kernels selected");
        k
    })
}

/// The internal distance function for `d` with the best kernels.
pub fn internal_fn(d: Distance) -> DistFn {
    best().for_distance(d)
}

/// Normalises `v` in place to unit length; returns false for a zero vector.
pub fn normalize(v: &mut [f32]) -> bool {
    let norm = (best().dot)(v, v).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return false;
    }
    let inv = 1.0 / norm;
    v.iter_mut().for_each(|x| *x *= inv);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f32, b: f32, scale: f32) -> bool {
        (a - b).abs() <= 1e-4 * scale.max(1.0)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn simd_matches_scalar(dim in 1usize..700, seed in any::<u64>()) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let a: Vec<f32> = (0..dim).map(|_| rng.random_range(-10.0..10.0)).collect();
            let b: Vec<f32> = (0..dim).map(|_| rng.random_range(-10.0..10.0)).collect();
            let s = scalar::KERNELS;
            let mag: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs() + (x - y).abs() * (x - y).abs()).sum();
            for k in available() {
                prop_assert!(close((k.dot)(&a, &b), (s.dot)(&a, &b), mag), "{} dot dim {}", k.name, dim);
                prop_assert!(close((k.neg_dot)(&a, &b), -(s.dot)(&a, &b), mag), "{} neg_dot dim {}", k.name, dim);
                prop_assert!(close((k.l2sq)(&a, &b), (s.l2sq)(&a, &b), mag), "{} l2sq dim {}", k.name, dim);
                prop_assert!(close((k.l1)(&a, &b), (s.l1)(&a, &b), mag), "{} l1 dim {}", k.name, dim);
            }
        }

        #[test]
        fn simd_f16_matches_scalar(dim in 1usize..700, extra in 0usize..9, seed in any::<u64>()) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-10.0..10.0)).collect();
            let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-10.0..10.0)).collect();
            // a code longer than the query (zero padding) reads only the common length
            let mut c = vec![0u16; dim + extra];
            half::encode(&v, &mut c);
            let want = half::neg_dot(&q, &c);
            let mag: f32 = q.iter().zip(&v).map(|(x, y)| (x * y).abs()).sum();
            for k in available() {
                prop_assert!(close((k.neg_dot_f16)(&q, &c), want, mag), "{} neg_dot_f16 dim {}", k.name, dim);
                prop_assert!(close((k.neg_dot_f16)(&q[..dim / 2], &c), half::neg_dot(&q[..dim / 2], &c), mag), "{} short query dim {}", k.name, dim);
            }
            // and the f16 copy is close to the exact f32 product
            prop_assert!((want + s_dot(&q, &v)).abs() <= 2e-3 * mag.max(1.0));
        }
    }

    fn s_dot(a: &[f32], b: &[f32]) -> f32 {
        (scalar::KERNELS.dot)(a, b)
    }

    #[test]
    fn scalar_values() {
        let a = [1.0, 2.0, 3.0];
        let b = [4.0, -5.0, 6.0];
        let s = scalar::KERNELS;
        assert_eq!((s.dot)(&a, &b), 12.0);
        assert_eq!((s.l2sq)(&a, &b), 9.0 + 49.0 + 9.0);
        assert_eq!((s.l1)(&a, &b), 3.0 + 7.0 + 3.0);
    }

    #[test]
    fn normalize_gives_unit_length_and_rejects_zero() {
        let mut v = vec![3.0, 4.0];
        assert!(normalize(&mut v));
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0; 5];
        assert!(!normalize(&mut z));
    }

    #[test]
    fn scores_follow_qdrant_conventions() {
        assert_eq!(Distance::Cosine.to_score(-0.5), 0.5);
        assert_eq!(Distance::Euclid.to_score(9.0), 3.0);
        assert_eq!(Distance::Manhattan.to_score(4.0), 4.0);
    }
}
