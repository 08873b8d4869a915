//! Unit tests of the quantization codecs: exact codes for known inputs,
//! error cases, and round-trip bounds over random dimensions.

use super::*;
use proptest::prelude::*;

#[test]
fn global_range_gives_exact_codes() {
    let q = ScalarQuantizer::train(&[0.0, 2.55, 1.0, 0.51], 2, 1.0, Int8Range::Global).unwrap();
    assert_eq!(q.encode(&[0.0, 2.55]).unwrap(), vec![0, 255]);
    assert_eq!(q.encode(&[1.0, 0.51]).unwrap(), vec![100, 51]);
    // Out-of-range values clamp to the ends.
    assert_eq!(q.encode(&[-1.0, 3.0]).unwrap(), vec![0, 255]);
    let back = q.decode(&[100, 255]).unwrap();
    assert!((back[0] - 1.0).abs() < 1e-5 && (back[1] - 2.55).abs() < 1e-5);
}

#[test]
fn per_dimension_range_gives_exact_codes() {
    let q =
        ScalarQuantizer::train(&[0.0, 10.0, 1.0, 20.0], 2, 1.0, Int8Range::PerDimension).unwrap();
    assert_eq!(q.encode(&[0.0, 10.0]).unwrap(), vec![0, 0]);
    assert_eq!(q.encode(&[1.0, 20.0]).unwrap(), vec![255, 255]);
    assert_eq!(q.encode(&[0.2, 12.0]).unwrap(), vec![51, 51]);
    // A global range over the same data would code 0.2 as 3, not 51.
    let g = ScalarQuantizer::train(&[0.0, 10.0, 1.0, 20.0], 2, 1.0, Int8Range::Global).unwrap();
    assert_eq!(g.encode(&[0.2, 12.0]).unwrap(), vec![3, 153]);
}

#[test]
fn quantile_clips_the_tails() {
    let vals: Vec<f32> = (0..=100).map(|i| i as f32).collect();
    let q = ScalarQuantizer::train(&vals, 1, 0.98, Int8Range::Global).unwrap();
    // The range is [1, 99]: 0 and 100 fall outside and clamp.
    assert_eq!(q.encode(&[1.0]).unwrap(), vec![0]);
    assert_eq!(q.encode(&[0.0]).unwrap(), vec![0]);
    assert_eq!(q.encode(&[99.0]).unwrap(), vec![255]);
    assert_eq!(q.encode(&[100.0]).unwrap(), vec![255]);
    assert!((q.decode(&[255]).unwrap()[0] - 99.0).abs() < 1e-4);
}

#[test]
fn constant_dimension_codes_to_zero_and_decodes_to_the_constant() {
    let q = ScalarQuantizer::train(&[3.0, 3.0], 1, 1.0, Int8Range::Global).unwrap();
    assert_eq!(q.encode(&[3.0]).unwrap(), vec![0]);
    assert_eq!(q.decode(&[0]).unwrap(), vec![3.0]);
}

#[test]
fn training_and_encoding_errors_are_typed() {
    let t = |v: &[f32], dim, qt| ScalarQuantizer::train(v, dim, qt, Int8Range::Global);
    assert_eq!(t(&[], 2, 1.0), Err(QuantError::EmptyTraining));
    assert_eq!(t(&[1.0], 0, 1.0), Err(QuantError::EmptyTraining));
    assert_eq!(
        t(&[1.0, 2.0, 3.0], 2, 1.0),
        Err(QuantError::RaggedTraining { len: 3, dim: 2 })
    );
    assert_eq!(t(&[1.0, 2.0], 2, 0.4), Err(QuantError::BadQuantile(0.4)));
    assert!(matches!(
        t(&[1.0, 2.0], 2, f32::NAN),
        Err(QuantError::BadQuantile(_))
    ));
    assert_eq!(t(&[1.0, f32::NAN], 2, 1.0), Err(QuantError::NonFinite));
    let q = t(&[1.0, 2.0], 2, 1.0).unwrap();
    assert_eq!(
        q.encode(&[1.0]),
        Err(QuantError::DimMismatch {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        q.decode(&[1, 2, 3]),
        Err(QuantError::DimMismatch {
            expected: 2,
            got: 3
        })
    );
}

#[test]
fn binary_codes_pack_sign_bits_lsb_first() {
    assert_eq!(binary_encode(&[1.0, -1.0, 0.0, 2.0]), vec![0b1001]);
    let mut v = vec![1.0f32; 65];
    assert_eq!(binary_encode(&v), vec![u64::MAX, 1]);
    v[64] = -1.0;
    v[3] = -1.0;
    let a = binary_encode(&vec![1.0f32; 65]);
    assert_eq!(hamming(&a, &binary_encode(&v)), 2);
    assert_eq!(hamming(&a, &a), 0);
}

#[test]
fn bytes_per_point_is_a_quarter_for_int8() {
    assert_eq!(bytes_per_point(100), (400, 100, 16));
    assert_eq!(bytes_per_point(128), (512, 128, 16));
}

proptest! {
    #[test]
    fn int8_round_trip_is_within_half_a_step(
        dim in 1usize..67,
        seed in prop::collection::vec(-10.0f32..10.0, 67 * 8),
        per_dim in any::<bool>(),
    ) {
        let data = &seed[..dim * 8];
        let range = if per_dim { Int8Range::PerDimension } else { Int8Range::Global };
        let q = ScalarQuantizer::train(data, dim, 1.0, range).unwrap();
        for v in data.chunks(dim) {
            let code = q.encode(v).unwrap();
            let back = q.decode(&code).unwrap();
            for ((x, y), step) in v.iter().zip(&back).zip(&q.step) {
                prop_assert!((x - y).abs() <= step / 2.0 + 1e-4, "{x} vs {y}, step {step}");
            }
            let exact: f32 = v.iter().zip(&back).map(|(a, b)| a * b).sum();
            prop_assert!((q.dot(v, &code) - exact).abs() <= 1e-3 * (1.0 + exact.abs()));
        }
    }

    #[test]
    fn hamming_counts_sign_disagreements(
        a in prop::collection::vec(-1.0f32..1.0, 1..200),
        flip in prop::collection::vec(any::<bool>(), 200),
    ) {
        let b: Vec<f32> = a.iter().zip(&flip).map(|(x, f)| if *f { -x } else { *x }).collect();
        let expected = a.iter().zip(&b).filter(|(x, y)| (**x > 0.0) != (**y > 0.0)).count();
        prop_assert_eq!(hamming(&binary_encode(&a), &binary_encode(&b)) as usize, expected);
    }
}

/// The selection-based bounds are the values a full sort puts at the quantile ranks.
#[test]
fn bounds_by_selection_equal_bounds_by_sorting() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for len in [1usize, 2, 3, 10, 257, 1000] {
        let vals: Vec<f32> = (0..len).map(|_| rng.random_range(-5.0..5.0)).collect();
        let mut sorted = vals.clone();
        sorted.sort_by(f32::total_cmp);
        for q in [0.5f32, 0.9, 0.99, 1.0] {
            let tail = (1.0 - q) / 2.0;
            let want = (
                sorted[quantile_index(len, tail)],
                sorted[quantile_index(len, 1.0 - tail)],
            );
            assert_eq!(bounds(&mut vals.clone(), q), want, "len {len} quantile {q}");
        }
    }
}
