//! Kernels on codes: the dot product of an f32 query with int8 (u8) codes, which
//! every int8 score is built from (see `store`: the codec's `lo`/`step` are folded
//! into the query and a per-vector correction), and the Hamming distance of binary
//! codes. A scalar reference and, on x86_64, AVX2+FMA / POPCNT versions picked at
//! run time; tests compare them.

use std::sync::OnceLock;

/// `Σ q[i] · code[i]` over the common length.
pub type DotU8Fn = fn(&[f32], &[u8]) -> f32;
/// Hamming distance of a query's words and a code stored as little-endian bytes
/// (8 per word), over the common length.
pub type HammingFn = fn(&[u64], &[u8]) -> u32;

/// One instruction set's code kernels.
#[derive(Clone, Copy, Debug)]
pub struct CodeKernels {
    pub name: &'static str,
    pub dot_u8: DotU8Fn,
    pub hamming: HammingFn,
}

pub mod scalar {
    pub fn dot_u8(q: &[f32], c: &[u8]) -> f32 {
        q.iter().zip(c).map(|(x, &b)| x * f32::from(b)).sum()
    }

    pub fn hamming(q: &[u64], c: &[u8]) -> u32 {
        q.iter()
            .zip(c.chunks_exact(8))
            .map(|(w, b)| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (w ^ u64::from_le_bytes(a)).count_ones()
            })
            .sum()
    }
}

pub const SCALAR: CodeKernels = CodeKernels {
    name: "scalar",
    dot_u8: scalar::dot_u8,
    hamming: scalar::hamming,
};

/// Every code kernel set this CPU can run, the scalar one first, best last.
pub fn available() -> Vec<CodeKernels> {
    #[allow(unused_mut)]
    let mut v = vec![SCALAR];
    #[cfg(target_arch = "x86_64")]
    v.extend(x86::detect());
    v
}

/// The best code kernels for this CPU, chosen once.
pub fn best() -> &'static CodeKernels {
    static BEST: OnceLock<CodeKernels> = OnceLock::new();
    BEST.get_or_init(|| {
        let k = available().pop().unwrap_or(SCALAR);
        tracing::debug!(kernels = k.name, "code kernels selected");
        k
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::CodeKernels;

    pub fn detect() -> Vec<CodeKernels> {
        let popcnt = is_x86_feature_detected!("popcnt");
        let hamming: super::HammingFn = if popcnt {
            hamming_popcnt
        } else {
            super::scalar::hamming
        };
        let mut v = Vec::new();
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            v.push(CodeKernels {
                name: if popcnt {
                    "avx2+fma+popcnt"
                } else {
                    "avx2+fma"
                },
                dot_u8: dot_u8_avx2,
                hamming,
            });
        } else if popcnt {
            v.push(CodeKernels {
                name: "popcnt",
                dot_u8: super::scalar::dot_u8,
                hamming,
            });
        }
        v
    }

    // SAFETY (both wrappers): only handed out by `detect` after the CPU reported the
    // features; the kernels read within the common length of their slices.
    fn dot_u8_avx2(q: &[f32], c: &[u8]) -> f32 {
        unsafe { dot_u8_kernel(q, c) }
    }

    fn hamming_popcnt(q: &[u64], c: &[u8]) -> u32 {
        unsafe { hamming_kernel(q, c) }
    }

    /// Eight codes per step: widened u8 → i32 → f32, then a fused multiply-add.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_u8_kernel(q: &[f32], c: &[u8]) -> f32 {
        let n = q.len().min(c.len());
        let (pq, pc) = (q.as_ptr(), c.as_ptr());
        let (mut a0, mut a1, mut a2, mut a3) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        let step = |acc: __m256, i: usize| -> __m256 {
            // SAFETY: callers keep i + 8 <= n; an 8-byte load of codes, 8 floats of q.
            unsafe {
                let b = _mm_loadl_epi64(pc.add(i) as *const __m128i);
                let y = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
                _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(i)), y, acc)
            }
        };
        let mut i = 0;
        while i + 32 <= n {
            a0 = step(a0, i);
            a1 = step(a1, i + 8);
            a2 = step(a2, i + 16);
            a3 = step(a3, i + 24);
            i += 32;
        }
        while i + 8 <= n {
            a0 = step(a0, i);
            i += 8;
        }
        let acc = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        let mut sum = _mm_cvtss_f32(s);
        while i < n {
            sum += q[i] * f32::from(c[i]);
            i += 1;
        }
        sum
    }

    /// `count_ones` compiled with POPCNT (one instruction per 64 dimensions).
    #[target_feature(enable = "popcnt")]
    unsafe fn hamming_kernel(q: &[u64], c: &[u8]) -> u32 {
        let n = q.len().min(c.len() / 8);
        let mut h = 0u32;
        for (i, w) in q.iter().enumerate().take(n) {
            // SAFETY: i < c.len() / 8, so the 8 bytes at 8 * i are inside `c`.
            let x = unsafe { std::ptr::read_unaligned(c.as_ptr().add(8 * i) as *const u64) };
            h += (w ^ u64::from_le(x)).count_ones();
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Every kernel set agrees with the scalar reference (AVX2/POPCNT where the CPU has them).
        #[test]
        fn code_kernels_match_scalar(dim in 1usize..700, extra in 0usize..9, seed in any::<u64>()) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-10.0..10.0)).collect();
            let c: Vec<u8> = (0..dim + extra).map(|_| rng.random()).collect();
            let words: Vec<u64> = (0..dim.div_ceil(64)).map(|_| rng.random()).collect();
            let bits: Vec<u8> = (0..dim.div_ceil(64) * 8 + extra).map(|_| rng.random()).collect();
            let want = scalar::dot_u8(&q, &c);
            let mag: f32 = q.iter().map(|x| x.abs() * 255.0).sum();
            let hw = scalar::hamming(&words, &bits);
            for k in available() {
                let got = (k.dot_u8)(&q, &c);
                prop_assert!((got - want).abs() <= 1e-5 * mag.max(1.0), "{} dot_u8 dim {dim}: {got} vs {want}", k.name);
                prop_assert_eq!((k.hamming)(&words, &bits), hw, "{} hamming dim {}", k.name, dim);
            }
        }
    }

    #[test]
    fn scalar_values() {
        assert_eq!(
            scalar::dot_u8(&[1.0, -2.0, 0.5], &[3, 4, 255]),
            3.0 - 8.0 + 127.5
        );
        let c = 0b1011u64.to_le_bytes();
        assert_eq!(scalar::hamming(&[0b0110], &c), 3);
        assert!(!available().is_empty());
        assert!(!best().name.is_empty());
    }
}
