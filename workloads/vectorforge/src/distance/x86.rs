//! x86_64 kernels: AVX2+FMA (8 lanes, four accumulators, masked tail) and
//! AVX-512F (16 lanes, masked tail); the f16 kernel converts with F16C. The safe wrappers are only handed out by `detect` after the
//! CPU reported the features, which is what makes calling them sound.

use std::arch::x86_64::*;

use super::{HalfDistFn, Kernels};

pub fn detect() -> Vec<Kernels> {
    let mut v = Vec::new();
    let f16: HalfDistFn = if is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
    {
        neg_dot_f16_avx2
    } else {
        super::half::neg_dot
    };
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        v.push(Kernels {
            name: "avx2+fma",
            dot: dot_avx2,
            neg_dot: neg_dot_avx2,
            l2sq: l2sq_avx2,
            l1: l1_avx2,
            neg_dot_f16: f16,
        });
    }
    if is_x86_feature_detected!("avx512f") {
        v.push(Kernels {
            name: "avx512f",
            dot: dot_avx512,
            neg_dot: neg_dot_avx512,
            l2sq: l2sq_avx512,
            l1: l1_avx512,
            neg_dot_f16: f16,
        });
    }
    v
}

// SAFETY (all wrappers below): only reachable through `detect`, which checked the
// CPU features; the kernels read `min(a.len(), b.len())` elements of each slice.
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    unsafe { avx2_kernel::<0>(a, b) }
}
fn neg_dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    -unsafe { avx2_kernel::<0>(a, b) }
}
fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
    unsafe { avx2_kernel::<1>(a, b) }
}
fn l1_avx2(a: &[f32], b: &[f32]) -> f32 {
    unsafe { avx2_kernel::<2>(a, b) }
}
fn neg_dot_f16_avx2(q: &[f32], c: &[u16]) -> f32 {
    -unsafe { f16_avx2_kernel(q, c) }
}
fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    unsafe { avx512_kernel::<0>(a, b) }
}
fn neg_dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    -unsafe { avx512_kernel::<0>(a, b) }
}
fn l2sq_avx512(a: &[f32], b: &[f32]) -> f32 {
    unsafe { avx512_kernel::<1>(a, b) }
}
fn l1_avx512(a: &[f32], b: &[f32]) -> f32 {
    unsafe { avx512_kernel::<2>(a, b) }
}

/// KIND: 0 = dot, 1 = squared L2, 2 = L1.
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_kernel<const KIND: u8>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let sign = _mm256_set1_ps(-0.0);
    let step = |acc: __m256, i: usize| -> __m256 {
        // SAFETY: callers keep i + 8 <= n.
        let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        match KIND {
            0 => _mm256_fmadd_ps(x, y, acc),
            1 => {
                let d = _mm256_sub_ps(x, y);
                _mm256_fmadd_ps(d, d, acc)
            }
            _ => _mm256_add_ps(acc, _mm256_andnot_ps(sign, _mm256_sub_ps(x, y))),
        }
    };
    let (mut a0, mut a1, mut a2, mut a3) = (
        _mm256_setzero_ps(),
        _mm256_setzero_ps(),
        _mm256_setzero_ps(),
        _mm256_setzero_ps(),
    );
    let mut i = 0;
    while i + 32 <= n {
        a0 = step(a0, i);
        a1 = step(a1, i + 8);
        a2 = step(a2, i + 16);
        a3 = step(a3, i + 24);
        i += 32;
    }
    while i + 8 <= n {
        a1 = step(a1, i);
        i += 8;
        if i + 8 <= n {
            a2 = step(a2, i);
            i += 8;
        }
    }
    if i < n {
        // the last 1..7 elements in one masked load: masked-out lanes read as 0
        // (0 for every KIND) and are never touched in memory
        let rest = n - i;
        // SAFETY: the mask window stays inside TAIL_MASK (8 - rest + 8 <= 16); the
        // loads start in bounds (i < n) and fault-suppress the masked-out lanes.
        let (x, y) = unsafe {
            let m = _mm256_loadu_si256(TAIL_MASK.as_ptr().add(8 - rest) as *const __m256i);
            (
                _mm256_maskload_ps(pa.add(i), m),
                _mm256_maskload_ps(pb.add(i), m),
            )
        };
        a1 = match KIND {
            0 => _mm256_fmadd_ps(x, y, a1),
            1 => {
                let d = _mm256_sub_ps(x, y);
                _mm256_fmadd_ps(d, d, a1)
            }
            _ => _mm256_add_ps(a1, _mm256_andnot_ps(sign, _mm256_sub_ps(x, y))),
        };
    }
    let acc = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    let lo = _mm256_castps256_ps128(acc);
    let hi = _mm256_extractf128_ps(acc, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Dot product of an f32 query with an f16 vector: 8 halves per F16C conversion.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_avx2_kernel(q: &[f32], c: &[u16]) -> f32 {
    let n = q.len().min(c.len());
    let (pq, pc) = (q.as_ptr(), c.as_ptr());
    let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    // SAFETY: each step reads 8 floats of q and 8 halves of c at i, with i + 8 <= n.
    unsafe {
        let step = |acc: __m256, i: usize| {
            let x = _mm256_loadu_ps(pq.add(i));
            let y = _mm256_cvtph_ps(_mm_loadu_si128(pc.add(i) as *const __m128i));
            _mm256_fmadd_ps(x, y, acc)
        };
        while i + 16 <= n {
            a0 = step(a0, i);
            a1 = step(a1, i + 8);
            i += 16;
        }
        if i + 8 <= n {
            a0 = step(a0, i);
            i += 8;
        }
    }
    let acc = _mm256_add_ps(a0, a1);
    let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    let mut sum = _mm_cvtss_f32(s);
    while i < n {
        sum += q[i] * super::half::to_f32(c[i]);
        i += 1;
    }
    sum
}

/// Eight all-ones lanes then eight zero lanes: `TAIL_MASK[8 - r..]` masks the first r lanes.
static TAIL_MASK: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

#[target_feature(enable = "avx512f")]
unsafe fn avx512_kernel<const KIND: u8>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let step = |acc: __m512, x: __m512, y: __m512| -> __m512 {
        match KIND {
            0 => _mm512_fmadd_ps(x, y, acc),
            1 => {
                let d = _mm512_sub_ps(x, y);
                _mm512_fmadd_ps(d, d, acc)
            }
            _ => _mm512_add_ps(acc, _mm512_abs_ps(_mm512_sub_ps(x, y))),
        }
    };
    let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    // SAFETY: every load stays below n, the tail load is masked to the remaining lanes.
    unsafe {
        while i + 32 <= n {
            a0 = step(a0, _mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
            a1 = step(
                a1,
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
            );
            i += 32;
        }
        while i + 16 <= n {
            a0 = step(a0, _mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
            i += 16;
        }
        if i < n {
            let mask: __mmask16 = ((1u32 << (n - i)) - 1) as __mmask16;
            let x = _mm512_maskz_loadu_ps(mask, pa.add(i));
            let y = _mm512_maskz_loadu_ps(mask, pb.add(i));
            a1 = step(a1, x, y);
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(a0, a1))
}
