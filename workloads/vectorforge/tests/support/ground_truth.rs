//! Brute-force ground truth on cosine data, shared by the GloVe recall test
//! (tests/glove.rs) and the ANN benchmark (benches/ann.rs), which both include
//! this file as a module.

use vectorforge::distance;

/// `v` scaled to unit length.
pub fn normalized(v: &[f32]) -> Vec<f32> {
    let mut v = v.to_vec();
    distance::normalize(&mut v);
    v
}

/// Indexes of the `k` rows of `base` (unit vectors) with the highest dot product
/// with `q`, among the rows `keep` accepts, in no particular order.
pub fn exact_top(base: &[Vec<f32>], q: &[f32], k: usize, keep: impl Fn(usize) -> bool) -> Vec<u64> {
    let dot = distance::best().dot;
    let mut v: Vec<(f32, u64)> = (0..base.len())
        .filter(|&i| keep(i))
        .map(|i| (-dot(&base[i], q), i as u64))
        .collect();
    let k = k.min(v.len());
    if k == 0 {
        return Vec::new();
    }
    v.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
    v.truncate(k);
    v.into_iter().map(|x| x.1).collect()
}
