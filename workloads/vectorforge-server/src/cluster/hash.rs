//! Which shard a point lives on: a stable function of the point id and the shard
//! count, the same on every pod, every build and every platform (it never changes for
//! a given shard count; the golden values in the tests pin it).
//!
//! `shard_of(id, n) = jump(mix(fnv1a64(bytes(id))), n)` where `bytes(Num(k))` is
//! `0x00` followed by `k` as 8 little-endian bytes, `bytes(Uuid(u))` is `0x01`
//! followed by the UUID's 16 bytes, `fnv1a64` is FNV-1a (64 bit), `mix` is
//! SplitMix64's finalizer (FNV alone clusters sequential integers) and `jump` is
//! Lamping and Veach's jump consistent hash, so that growing from n to n+1 shards
//! moves only about 1/(n+1) of the points (what resharding will build on).

use vectorforge::PointId;

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Jump consistent hash: a bucket in `0..buckets` (`buckets` ≥ 1).
fn jump(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = (((b + 1) as f64) * ((1u64 << 31) as f64 / (((key >> 33) + 1) as f64))) as i64;
    }
    b.max(0) as u32
}

/// The shard of `id` among `shards` shards (0 when `shards` is 0 or 1).
pub fn shard_of(id: &PointId, shards: u32) -> u32 {
    if shards <= 1 {
        return 0;
    }
    let mut buf = [0u8; 17];
    let bytes: &[u8] = match id {
        PointId::Num(n) => {
            buf[1..9].copy_from_slice(&n.to_le_bytes());
            &buf[..9]
        }
        PointId::Uuid(u) => {
            buf[0] = 1;
            buf[1..17].copy_from_slice(u.as_bytes());
            &buf[..17]
        }
    };
    jump(mix(fnv1a64(bytes)), shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_is_pinned() {
        // Golden values: if this test fails, existing collections would find their
        // points on the wrong shards. Never update them; add a new function instead.
        let num: Vec<u32> = (0..12).map(|i| shard_of(&PointId::Num(i), 3)).collect();
        assert_eq!(num, GOLDEN_NUM_3);
        let u = PointId::Uuid(uuid::Uuid::from_u128(
            0x550e_8400_e29b_41d4_a716_4466_5544_0000,
        ));
        assert_eq!(
            (shard_of(&u, 2), shard_of(&u, 3), shard_of(&u, 7)),
            GOLDEN_UUID
        );
        assert_eq!(shard_of(&PointId::Num(123), 1), 0);
        assert_eq!(shard_of(&PointId::Num(123), 0), 0);
    }

    const GOLDEN_NUM_3: [u32; 12] = [2, 0, 0, 0, 0, 1, 2, 1, 1, 1, 1, 1];
    const GOLDEN_UUID: (u32, u32, u32) = (0, 0, 3);

    #[test]
    fn points_spread_evenly_and_growing_moves_few() {
        let n = 30_000u64;
        let mut counts = [0usize; 3];
        let mut moved = 0;
        for i in 0..n {
            let s3 = shard_of(&PointId::Num(i), 3);
            counts[s3 as usize] += 1;
            if shard_of(&PointId::Num(i), 4) != s3 {
                moved += 1;
            }
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        // ideal: a quarter of the points move to the new shard, none between old ones
        assert!((6_500..8_500).contains(&moved), "{moved}");
    }
}
