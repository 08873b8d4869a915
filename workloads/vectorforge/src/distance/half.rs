//! IEEE 754 half precision (binary16) for the graph's compact vector copies:
//! conversion from and to f32 (round to nearest, ties to even) and the scalar
//! reference kernel for a dot product of an f32 query with an f16 vector.

/// The nearest half-precision value to `x` (ties to even); out-of-range values
/// become infinities, NaN stays NaN.
pub fn from_f32(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let mant = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    // biased half exponent
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // subnormal half (or zero): value = m * 2^(exp - 150), unit 2^-24
        let shift = (14 - e) as u32;
        if shift > 24 {
            return sign;
        }
        let m = mant | 0x80_0000;
        return sign | round_shift(m, shift) as u16;
    }
    // normal: a carry out of the mantissa bumps the exponent (up to infinity)
    let h = ((e as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    let h = if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) {
        h + 1
    } else {
        h
    };
    sign | h as u16
}

/// `m >> shift` rounded to nearest, ties to even (1 <= shift <= 24).
fn round_shift(m: u32, shift: u32) -> u32 {
    let h = m >> shift;
    let rem = m & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    if rem > half || (rem == half && h & 1 == 1) {
        h + 1
    } else {
        h
    }
}

/// The f32 value of a half-precision number (exact).
pub fn to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    match exp {
        0 => {
            let v = mant as f32 * (1.0 / 16_777_216.0);
            if sign != 0 { -v } else { v }
        }
        31 => f32::from_bits(sign | 0x7f80_0000 | (mant << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (mant << 13)),
    }
}

/// Encodes `v` into `out` (which may be longer: the rest is zero-filled).
pub fn encode(v: &[f32], out: &mut [u16]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = v.get(i).map_or(0, |&x| from_f32(x));
    }
}

/// Dot product of an f32 query with an f16 vector over their common length.
pub fn dot(q: &[f32], c: &[u16]) -> f32 {
    q.iter().zip(c).map(|(x, &h)| x * to_f32(h)).sum()
}

pub fn neg_dot(q: &[f32], c: &[u16]) -> f32 {
    -dot(q, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_half_round_trips() {
        for h in 0..=u16::MAX {
            let f = to_f32(h);
            if f.is_nan() {
                assert!(from_f32(f) & 0x7c00 == 0x7c00 && from_f32(f) & 0x3ff != 0);
            } else {
                assert_eq!(from_f32(f), h, "half {h:#06x} = {f}");
            }
        }
    }

    #[test]
    fn known_values_and_rounding() {
        assert_eq!(from_f32(1.0), 0x3c00);
        assert_eq!(from_f32(-2.0), 0xc000);
        assert_eq!(from_f32(65504.0), 0x7bff);
        assert_eq!(from_f32(65520.0), 0x7c00); // rounds up to infinity
        assert_eq!(from_f32(1e10), 0x7c00);
        assert_eq!(from_f32(f32::NEG_INFINITY), 0xfc00);
        assert_eq!(from_f32(5.960_464_5e-8), 0x0001); // smallest subnormal
        assert_eq!(from_f32(2.0e-8), 0x0000); // below half of it
        assert_eq!(from_f32(-0.0), 0x8000);
        // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties to the even 1
        assert_eq!(from_f32(1.0 + 1.0 / 2048.0), 0x3c00);
        assert_eq!(from_f32(1.0 + 3.0 / 2048.0), 0x3c02);
        assert_eq!(to_f32(0x3555), 0.333_251_95);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn conversion_matches_f16c_hardware() {
        use rand::{Rng, SeedableRng};
        use std::arch::x86_64::*;
        if !is_x86_feature_detected!("f16c") {
            return;
        }
        #[target_feature(enable = "f16c")]
        fn hw(x: f32) -> (u16, f32) {
            let h =
                _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set1_ps(x)))
                    as u16;
            (h, _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(h as i16))))
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for i in 0..200_000 {
            let x = match i % 3 {
                0 => f32::from_bits(rng.random()),
                1 => rng.random_range(-1.0f32..1.0),
                _ => rng.random_range(-1e-4f32..1e-4),
            };
            if x.is_nan() {
                continue;
            }
            // SAFETY: f16c was detected above.
            let (h, back) = unsafe { hw(x) };
            assert_eq!(from_f32(x), h, "{x:e}");
            assert_eq!(to_f32(h).to_bits(), back.to_bits(), "{h:#06x}");
        }
    }
}
