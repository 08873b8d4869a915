//! Per-request routing over a [`Policy`]: header rules first, then the sticky header
//! (weighted rendezvous hashing, so a key stays on its backend while the weights hold and
//! only a weight change's share of keys moves), then a weighted random choice. Also
//! decides whether a request is mirrored. Pure: randomness comes from the caller.

use http::HeaderMap;
use rand::Rng;

use crate::policy::Policy;

/// Why a backend was chosen (logged and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Rule(usize),
    Sticky,
    Weighted,
}

impl Reason {
    /// Label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Rule(_) => "rule",
            Self::Sticky => "sticky",
            Self::Weighted => "weighted",
        }
    }
}

/// The routing decision for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Index into [`Policy::backends`].
    pub backend: usize,
    pub reason: Reason,
}

/// No backend can take the request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no backend can take the request: every backend's weight is 0")]
pub struct AllWeightsZero;

/// Chooses the backend for a request with `headers`.
pub fn route(
    policy: &Policy,
    headers: &HeaderMap,
    rng: &mut impl Rng,
) -> Result<Decision, AllWeightsZero> {
    for (i, rule) in policy.rules.iter().enumerate() {
        let all = rule.conditions.iter().all(|(name, m)| {
            headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| m.matches(v)))
        });
        if all {
            return Ok(Decision {
                backend: rule.backend,
                reason: Reason::Rule(i),
            });
        }
    }
    if let Some(key) = policy
        .sticky_header
        .as_ref()
        .and_then(|h| headers.get(h))
        .map(|v| v.as_bytes())
        && let Some(backend) = sticky(policy, key)
    {
        return Ok(Decision {
            backend,
            reason: Reason::Sticky,
        });
    }
    weighted(policy, rng)
        .map(|backend| Decision {
            backend,
            reason: Reason::Weighted,
        })
        .ok_or(AllWeightsZero)
}

/// Weighted random choice; `None` when all weights are 0.
pub fn weighted(policy: &Policy, rng: &mut impl Rng) -> Option<usize> {
    let total: u32 = policy.backends.iter().map(|b| b.weight).sum();
    if total == 0 {
        return None;
    }
    let mut x = rng.random_range(0..total);
    for (i, b) in policy.backends.iter().enumerate() {
        if x < b.weight {
            return Some(i);
        }
        x -= b.weight;
    }
    None
}

/// Weighted rendezvous hashing: each backend scores `-ln(u) / weight` with `u` a hash of
/// (key, backend name) in (0, 1); the lowest score wins. Backends with weight 0 never win.
pub fn sticky(policy: &Policy, key: &[u8]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, b) in policy.backends.iter().enumerate() {
        if b.weight == 0 {
            continue;
        }
        let h = mix(fnv1a(fnv1a(FNV_OFFSET, key) ^ 0xff, b.name.as_bytes()));
        // 53 random bits, shifted off 0 so ln is finite.
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = -u.ln() / f64::from(b.weight);
        if best.is_none_or(|(_, s)| score < s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// Whether this request gets a mirror copy, and to which backend: never to the backend
/// that already serves it.
pub fn mirror(policy: &Policy, primary: usize, rng: &mut impl Rng) -> Option<usize> {
    let (backend, percent) = policy.mirror?;
    (backend != primary && rng.random_range(0..100) < percent).then_some(backend)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a: stable across Rust versions and processes, so every gateway pod agrees.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// SplitMix64's finaliser, to spread FNV's low-entropy high bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
