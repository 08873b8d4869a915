//! aarch64 NEON kernels (4 lanes, four accumulators); the f16 kernel is the scalar one.

use std::arch::aarch64::*;

use super::Kernels;

pub fn detect() -> Vec<Kernels> {
    if std::arch::is_aarch64_feature_detected!("neon") {
        vec![Kernels {
            name: "neon",
            dot,
            neg_dot,
            l2sq,
            l1,
            // no stable NEON half-precision conversion in std::arch yet
            neg_dot_f16: super::half::neg_dot,
        }]
    } else {
        Vec::new()
    }
}

// SAFETY (wrappers): only handed out by `detect` after NEON was detected.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    unsafe { kernel::<0>(a, b) }
}
fn neg_dot(a: &[f32], b: &[f32]) -> f32 {
    -unsafe { kernel::<0>(a, b) }
}
fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    unsafe { kernel::<1>(a, b) }
}
fn l1(a: &[f32], b: &[f32]) -> f32 {
    unsafe { kernel::<2>(a, b) }
}

#[target_feature(enable = "neon")]
unsafe fn kernel<const KIND: u8>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let step = |acc: float32x4_t, i: usize| -> float32x4_t {
        // SAFETY: callers keep i + 4 <= n.
        let (x, y) = unsafe { (vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i))) };
        match KIND {
            0 => vfmaq_f32(acc, x, y),
            1 => {
                let d = vsubq_f32(x, y);
                vfmaq_f32(acc, d, d)
            }
            _ => vaddq_f32(acc, vabdq_f32(x, y)),
        }
    };
    let (mut a0, mut a1, mut a2, mut a3) = (
        vdupq_n_f32(0.0),
        vdupq_n_f32(0.0),
        vdupq_n_f32(0.0),
        vdupq_n_f32(0.0),
    );
    let mut i = 0;
    while i + 16 <= n {
        a0 = step(a0, i);
        a1 = step(a1, i + 4);
        a2 = step(a2, i + 8);
        a3 = step(a3, i + 12);
        i += 16;
    }
    while i + 4 <= n {
        a0 = step(a0, i);
        i += 4;
    }
    let mut sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    while i < n {
        let (x, y) = (a[i], b[i]);
        sum += match KIND {
            0 => x * y,
            1 => (x - y) * (x - y),
            _ => (x - y).abs(),
        };
        i += 1;
    }
    sum
}
