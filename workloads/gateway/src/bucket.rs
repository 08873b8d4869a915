//! Token buckets per client key, for the per-client rate limit: a bucket holds up to
//! `burst` tokens, refills at `per_second`, and each request takes one. The clock is a
//! parameter (`now`), so the arithmetic is tested without real time. Memory is bounded:
//! at most `max_keys` buckets are kept; when a new client would exceed that, buckets
//! that have refilled completely (indistinguishable from a fresh one, so dropping them
//! changes nothing) are dropped first, then the least recently used eighth.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Default bound on the number of client keys tracked at once.
pub const DEFAULT_MAX_KEYS: usize = 65_536;

/// The limit a request is checked against (read from the policy in force per request,
/// so a policy edit applies to existing buckets at once).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Tokens at `now`, capped at the burst.
    fn level(&self, limit: Limit, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * limit.per_second).min(limit.burst)
    }
}

/// All buckets. Keys are hashed with a per-process random hasher, so a key's text
/// (possibly the API key itself) is not kept and every entry has the same size.
pub struct Buckets {
    max_keys: usize,
    hasher: RandomState,
    map: Mutex<HashMap<u64, Bucket>>,
}

impl Buckets {
    pub fn new(max_keys: usize) -> Self {
        Self {
            max_keys: max_keys.max(1),
            hasher: RandomState::new(),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `key`'s bucket at `now`. `Err(wait)`: the bucket is empty
    /// and one token will be there after `wait`.
    pub fn take(&self, key: &str, limit: Limit, now: Instant) -> Result<(), Duration> {
        let id = self.hasher.hash_one(key);
        let mut map = self.map.lock();
        if !map.contains_key(&id) && map.len() >= self.max_keys {
            evict(&mut map, self.max_keys, limit, now);
        }
        let bucket = map.entry(id).or_insert(Bucket {
            tokens: limit.burst,
            last: now,
        });
        let tokens = bucket.level(limit, now);
        bucket.last = now;
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            bucket.tokens = tokens;
            Err(Duration::from_secs_f64((1.0 - tokens) / limit.per_second))
        }
    }

    /// Client keys tracked now.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Buckets {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_KEYS)
    }
}

/// Makes room for at least one more key.
fn evict(map: &mut HashMap<u64, Bucket>, max_keys: usize, limit: Limit, now: Instant) {
    map.retain(|_, b| b.level(limit, now) < limit.burst);
    if map.len() < max_keys {
        return;
    }
    // Every bucket is in use: drop the least recently used eighth (at least one), so
    // a flood of new keys costs one scan per max_keys/8 of them, not one per key.
    let mut lasts: Vec<Instant> = map.values().map(|b| b.last).collect();
    let n = (lasts.len() / 8).max(1);
    let (_, cutoff, _) = lasts.select_nth_unstable(n - 1);
    let cutoff = *cutoff;
    map.retain(|_, b| b.last > cutoff);
}

/// `Retry-After` seconds for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Limit = Limit {
        per_second: 2.0,
        burst: 3.0,
    };

    #[test]
    fn a_burst_passes_then_the_bucket_refuses_until_it_refills() {
        let b = Buckets::new(16);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.take("a", LIMIT, t0), Ok(()));
        }
        let wait = b.take("a", LIMIT, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Half a token after 250 ms: still refused, with the rest of the wait.
        let wait = b
            .take("a", LIMIT, t0 + Duration::from_millis(250))
            .unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        assert_eq!(b.take("a", LIMIT, t0 + Duration::from_millis(500)), Ok(()));
        assert!(b.take("a", LIMIT, t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn refill_stops_at_the_burst() {
        let b = Buckets::new(16);
        let t0 = Instant::now();
        b.take("a", LIMIT, t0).unwrap();
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(b.take("a", LIMIT, later), Ok(()));
        }
        assert!(b.take("a", LIMIT, later).is_err());
    }

    #[test]
    fn clients_have_their_own_buckets() {
        let b = Buckets::new(16);
        let t0 = Instant::now();
        for _ in 0..3 {
            b.take("a", LIMIT, t0).unwrap();
        }
        assert!(b.take("a", LIMIT, t0).is_err());
        assert_eq!(b.take("b", LIMIT, t0), Ok(()));
    }

    #[test]
    fn a_lower_rate_applies_to_an_existing_bucket() {
        let b = Buckets::new(16);
        let t0 = Instant::now();
        let strict = Limit {
            per_second: 1.0,
            burst: 1.0,
        };
        b.take("a", LIMIT, t0).unwrap();
        // Two tokens left under LIMIT, but the new burst caps them at one.
        assert_eq!(b.take("a", strict, t0), Ok(()));
        assert_eq!(b.take("a", strict, t0).unwrap_err(), Duration::from_secs(1));
    }

    #[test]
    fn tracked_keys_stay_bounded_under_a_flood_of_new_clients() {
        let max = 64;
        let b = Buckets::new(max);
        let t0 = Instant::now();
        for i in 0..10 * max {
            b.take(&format!("client-{i}"), LIMIT, t0).unwrap();
            assert!(b.len() <= max, "{} keys tracked", b.len());
        }
    }

    #[test]
    fn refilled_buckets_are_dropped_before_busy_ones() {
        let max = 64;
        let b = Buckets::new(max);
        let t0 = Instant::now();
        for i in 0..max - 1 {
            b.take(&format!("client-{i}"), LIMIT, t0).unwrap();
        }
        // Much later every one-shot client has refilled; a busy one has just drained.
        let late = t0 + Duration::from_secs(10);
        for _ in 0..3 {
            b.take("busy", LIMIT, late).unwrap();
        }
        assert_eq!(b.len(), max);
        b.take("newcomer", LIMIT, late).unwrap();
        assert_eq!(b.len(), 2);
        assert!(b.take("busy", LIMIT, late).is_err());
    }

    #[test]
    fn when_every_bucket_is_in_use_the_least_recently_used_go() {
        let max = 16;
        let b = Buckets::new(max);
        let t0 = Instant::now();
        let slow = Limit {
            per_second: 0.001,
            burst: 1.0,
        };
        for i in 0..max {
            let now = t0 + Duration::from_millis(i as u64);
            b.take(&format!("c{i}"), slow, now).unwrap();
        }
        let now = t0 + Duration::from_millis(100);
        b.take("new", slow, now).unwrap();
        assert!(b.len() <= max);
        // c0 was the least recently used: evicted, so it starts with a full bucket.
        assert_eq!(b.take("c0", slow, now), Ok(()));
        // The most recent one kept its empty bucket.
        assert!(b.take(&format!("c{}", max - 1), slow, now).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
