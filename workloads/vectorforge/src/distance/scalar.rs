//! Portable reference kernels: the fallback and the oracle the SIMD code is tested against.

use super::Kernels;

pub const KERNELS: Kernels = Kernels {
    name: "scalar",
    dot,
    neg_dot,
    l2sq,
    l1,
    neg_dot_f16: super::half::neg_dot,
};

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn neg_dot(a: &[f32], b: &[f32]) -> f32 {
    -dot(a, b)
}

pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

pub fn l1(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}
